"""An existing GGUF file as a converter input: its tensors dequantized to float32, its metadata carried over."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
import torch

from awq_gguf.errors import CorruptModelError

from .arch import arch_for_gguf
from .source import SourceTensor

# Keys rewritten by the converter rather than copied from the input.
_REWRITTEN = ("GGUF.", "general.architecture", "general.file_type", "general.quantization_version", "awq_gguf.")


def open_gguf(path: Path) -> gguf.GGUFReader:
    """GGUFReader with a one-line error for anything that is not a complete GGUF file."""
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as e:
        raise CorruptModelError(f"{path}: cannot be read ({e.strerror})") from None
    if magic != b"GGUF":
        raise CorruptModelError(f"{path}: not a GGUF file (magic {magic!r}); give a .gguf file or a model folder")
    try:
        reader = gguf.GGUFReader(path, "r")
    except Exception as e:  # the reader raises ValueError, IndexError, struct errors... on damaged files
        raise CorruptModelError(f"{path}: truncated or corrupt GGUF ({type(e).__name__}: {e})") from None
    size = path.stat().st_size
    for t in reader.tensors:
        if t.data_offset + t.n_bytes > size:
            raise CorruptModelError(f"{path}: truncated: tensor {t.name} runs past the end of the file")
    return reader


def field_value(reader: gguf.GGUFReader, key: str, default=None):
    f = reader.get_field(key)
    return default if f is None else f.contents()


class GgufSource:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.reader = open_gguf(path)
        arch_name = field_value(self.reader, "general.architecture")
        if arch_name is None:
            raise CorruptModelError(f"{path}: no general.architecture key; not a model GGUF")
        self.arch = arch_for_gguf(arch_name)
        self.n_layer = int(field_value(self.reader, f"{arch_name}.block_count", 0))
        self.n_head = int(field_value(self.reader, f"{arch_name}.attention.head_count", 0))
        self.n_head_kv = int(field_value(self.reader, f"{arch_name}.attention.head_count_kv", self.n_head))
        self.name = _model_name(path)
        self.tensors = [
            SourceTensor(t.name, tuple(int(x) for x in reversed(t.shape)), self._loader(t), t.name)
            for t in self.reader.tensors
        ]

    @staticmethod
    def _loader(t):
        def load() -> torch.Tensor:
            shape = tuple(int(x) for x in reversed(t.shape))
            w = gguf.quants.dequantize(t.data, t.tensor_type)  # float32, [.., cols]
            return torch.from_numpy(np.array(w, dtype=np.float32).reshape(shape))  # a copy: the mmap is read-only

        return load

    def write_metadata(self, writer: gguf.GGUFWriter) -> None:
        for key, field in self.reader.fields.items():
            if key.startswith(_REWRITTEN):
                continue
            vtype = field.types[0]
            sub = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
            writer.add_key_value(key, field.contents(), vtype, sub_type=sub)

    def close(self) -> None:
        pass


def _model_name(path: Path) -> str:
    """'SmolLM2-135M-Instruct.Q4_1.gguf' -> 'SmolLM2-135M-Instruct': the stem less a trailing type suffix."""
    stem = path.stem
    types = {t.name.upper() for t in gguf.GGMLQuantizationType} | {t.name.upper() for t in gguf.LlamaFileType}
    types |= {n.replace("MOSTLY_", "") for n in types}
    for sep in (".", "-", "_"):
        head, _, tail = stem.rpartition(sep)
        if head and tail.upper() in types:
            return head
    return stem
