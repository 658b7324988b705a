"""Fixtures for the runner tests: converted tiny models, cached per (architecture, type) for the session."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


# The converter's Q4_1/Q5_1 scale search takes minutes on a loaded 2-core machine even for the tiny models;
# the runner tests only need valid blocks of those types, so they come from gguf-py's reference quantizer.
GGUF_PY_TYPES = ("Q4_1", "Q5_1")


def requantize_with_gguf_py(src: Path, dst: Path, type_: str) -> Path:
    """Copy the F32 GGUF `src` to `dst` with every 2-D weight quantized to `type_` by gguf.quants.quantize."""
    import gguf
    import numpy as np

    from awq_gguf.convert.gguf_source import GgufSource

    qt = gguf.GGMLQuantizationType[type_]
    source = GgufSource(src)
    writer = gguf.GGUFWriter(dst, source.reader.get_field("general.architecture").contents())
    source.write_metadata(writer)
    writer.add_file_type(gguf.LlamaFileType[f"MOSTLY_{type_}"])
    for t in source.reader.tensors:
        data = np.asarray(t.data, dtype=np.float32)
        if data.ndim == 2 and data.shape[1] % gguf.GGML_QUANT_SIZES[qt][0] == 0:
            writer.add_tensor(t.name, gguf.quants.quantize(data, qt), raw_dtype=qt)
        else:
            writer.add_tensor(t.name, np.array(data))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return dst


@pytest.fixture(scope="session")
def tiny_gguf(tiny_model, tmp_path_factory: pytest.TempPathFactory):
    """tiny_gguf(arch, type) -> path of the tiny random model of `arch` converted to `type` (built once)."""
    from awq_gguf.config import ConvertConfig
    from awq_gguf.convert.pipeline import convert_model

    built: dict[tuple[str, str], Path] = {}

    def get(arch: str, type_: str) -> Path:
        key = (arch, type_)
        if key not in built:
            out = tmp_path_factory.mktemp("gguf") / f"{arch}-{type_}.gguf"
            if type_ in GGUF_PY_TYPES:
                requantize_with_gguf_py(get(arch, "F32"), out, type_)
            else:
                convert_model(ConvertConfig(method="rtn", model=tiny_model(arch), out=out, type=type_, progress=False))
            built[key] = out
        return built[key]

    return get
