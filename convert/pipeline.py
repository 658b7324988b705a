"""The conversion: open a source, choose each tensor's type, quantize and stream it into an atomic GGUF file."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Callable
from pathlib import Path

import gguf
import numpy as np
import torch
from tqdm import tqdm

from awq_gguf import __version__
from awq_gguf.config import ConvertConfig
from awq_gguf.errors import AwqGgufError

from .mix import ModelShape, file_type_of, plan_types
from .output_file import AtomicOutput, check_output
from .quants import get_format, quantize
from .source import ModelSource, SourceTensor, open_source

logger = logging.getLogger(__name__)


FLOAT_QTYPES = (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16, gguf.GGMLQuantizationType.BF16)


@dataclass(frozen=True)
class ConvertResult:
    out: Path
    type: str
    n_bytes: int  # tensor data bytes
    n_params: int
    seconds: float
    type_counts: dict[str, int]

    @property
    def bpw(self) -> float:
        return self.n_bytes * 8 / max(self.n_params, 1)

    def summary(self) -> str:
        return (
            f"wrote {self.out}: {self.type}, {self.n_bytes / 2**20:.1f} MiB, {self.bpw:.2f} bits per weight, "
            f"{self.seconds:.1f} s"
        )


def default_output(source_name: str, type_name: str) -> Path:
    return Path.cwd() / f"{source_name}-{type_name}.gguf"


def resolve_model(model: Path | None) -> Path:
    if model is not None:
        return model
    from awq_gguf.demo import demo_hf_folder

    return demo_hf_folder()


def convert_model(cfg: ConvertConfig) -> ConvertResult:
    start = time.perf_counter()
    if cfg.out is not None:  # fail on the output before any heavy work
        check_output(cfg.out, cfg.force)
    model = resolve_model(cfg.model)
    source = open_source(model)
    try:
        out = cfg.out or default_output(source.name, cfg.type)
        if cfg.out is None:  # the default name is known only now: fail before any heavy work
            check_output(out, cfg.force)
        settings = {"source": str(model.resolve()), "pure": cfg.pure, **cfg.extra}
        if cfg.method == "awq":
            settings |= {"calib": str(cfg.calib.resolve()) if cfg.calib else "data-free",
                         "calib_samples": cfg.calib_samples, "calib_seqlen": cfg.calib_seqlen, "clip": cfg.clip,
                         "refine": cfg.refine}
        if cfg.imatrix is not None:
            settings["imatrix"] = str(cfg.imatrix.resolve())
        return _write(source, out, cfg, start, settings=settings)
    finally:
        source.close()


def _write(source: ModelSource, out: Path, cfg: ConvertConfig, start: float, settings: dict) -> ConvertResult:
    shape = ModelShape(
        n_layer=source.n_layer,
        n_head=source.n_head,
        n_head_kv=source.n_head_kv,
        has_output=any(t.name == "output.weight" for t in source.tensors),
    )
    types = plan_types([(t.name, t.shape) for t in source.tensors], cfg.type, shape, pure=cfg.pure)
    weights_for = _weights_source(source, types, cfg)  # AWQ search (or imatrix) before the file is opened

    writer = gguf.GGUFWriter(path=None, arch=source.arch.gguf_name)
    source.write_metadata(writer)  # for GGUF inputs this carries general.name etc. over
    if "general.type" not in writer.kv_data[0]:
        writer.add_type(gguf.GGUFType.MODEL)
    if "general.name" not in writer.kv_data[0]:
        writer.add_name(source.name)
    writer.add_file_type(int(file_type_of(cfg.type)))
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    writer.add_string("awq_gguf.version", __version__)
    method = _method(cfg, types)
    if method != cfg.method:
        logger.info("%s keeps the block weights as floats: no AWQ search needed", cfg.type)
    writer.add_string("awq_gguf.method", method)
    writer.add_string("awq_gguf.type", cfg.type)
    writer.add_string("awq_gguf.settings", json.dumps(settings, sort_keys=True))

    n_bytes = n_params = 0
    counts: dict[str, int] = {}
    for t in source.tensors:
        qtype = types[t.name]
        nb = _nbytes(t, qtype)
        writer.add_tensor_info(t.name, _byte_shape(t, qtype), np.dtype(np.uint8), nb, raw_dtype=qtype)
        n_bytes += nb
        n_params += int(np.prod(t.shape))
        counts[qtype.name] = counts.get(qtype.name, 0) + 1

    with AtomicOutput(out, cfg.force) as tmp:
        try:
            writer.write_header_to_file(tmp)
            writer.write_kv_data_to_file()
            writer.write_ti_data_to_file()
            with tqdm(total=n_params, desc="quantize", unit="w", unit_scale=True, disable=not cfg.progress) as bar:
                for t in source.tensors:
                    w, importance, moments = weights_for(t)
                    if not cfg.refine:
                        moments = None
                    writer.write_tensor_data(_quantize_tensor(t, w, importance, types[t.name], moments))
                    bar.update(int(np.prod(t.shape)))
        finally:
            writer.close()
    return ConvertResult(out, cfg.type, n_bytes, n_params, time.perf_counter() - start, counts)


def _byte_shape(t: SourceTensor, qtype: gguf.GGMLQuantizationType) -> tuple[int, ...]:
    return (*t.shape[:-1], get_format(qtype).row_bytes(t.shape[-1]))


def _nbytes(t: SourceTensor, qtype: gguf.GGMLQuantizationType) -> int:
    return int(np.prod(_byte_shape(t, qtype)))


# tensor -> (float32 values to write, per-column importance or None, input second moments per 32 columns or None)
WeightsFor = Callable[[SourceTensor], tuple[torch.Tensor, "torch.Tensor | None", "torch.Tensor | None"]]


def _weights_source(source: ModelSource, types: dict, cfg: ConvertConfig) -> WeightsFor:
    """WeightsFor the chosen method."""
    imatrix = None
    if cfg.imatrix is not None:
        from awq_gguf.awq_scale.imatrix import read_imatrix

        imatrix = read_imatrix(cfg.imatrix)
    if _method(cfg, types) == "awq":
        return _awq_weights(source, types, cfg)

    def plain(t: SourceTensor) -> tuple[torch.Tensor, torch.Tensor | None, None]:
        imp = None if imatrix is None else imatrix.get(t.name)
        if imp is not None and imp.shape != (t.shape[-1],):
            raise AwqGgufError(f"the imatrix entry for {t.name} has {imp.numel()} columns; the tensor has "
                               f"{t.shape[-1]}: the imatrix was made for another model")
        return t.load_checked(), imp, None
    return plain


def _method(cfg: ConvertConfig, types: dict) -> str:
    """The method that really runs: AWQ has nothing to do where every block weight stays a float."""
    if cfg.method == "awq" and all(q in FLOAT_QTYPES for n, q in types.items() if n.startswith("blk.")):
        return "rtn"
    return cfg.method


def _awq_weights(source: ModelSource, types: dict, cfg: ConvertConfig) -> WeightsFor:
    from awq_gguf.awq_scale.awq import AwqSettings
    from awq_gguf.awq_scale.run import AwqRequest, prepare_awq

    settings = AwqSettings(clip=cfg.clip, threads=cfg.threads, device=cfg.device, progress=cfg.progress)
    req = AwqRequest(cfg.calib, cfg.calib_samples, cfg.calib_seqlen, settings, cfg.resume, cfg.scales, cfg.type)
    applier, _ = prepare_awq(source, types, req)

    def awq(t: SourceTensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        w, imp, moments = applier.tensor(t.name)
        return (t.load_checked() if w is None else w), imp, moments
    return awq


def _quantize_tensor(t: SourceTensor, w: torch.Tensor, importance: torch.Tensor | None,
                     qtype: gguf.GGMLQuantizationType, moments: torch.Tensor | None = None) -> np.ndarray:
    # w: float32, t.shape
    with torch.no_grad():
        imp = None if importance is None or qtype in FLOAT_QTYPES else importance.float()
        mom = None if moments is None or qtype in FLOAT_QTYPES else moments.float()
        q = quantize(w.reshape(-1, t.shape[-1]).float().cpu(), qtype, imp, mom)  # uint8 [rows, row_bytes]
    return q.cpu().numpy().reshape(_byte_shape(t, qtype))

