"""A GGUF file opened for running: header validated first (gguf_check), then parsed by gguf.GGUFReader.

The reader memory-maps the file read-only; tensor data stays in the page cache, nothing is copied.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf
import numpy as np
from gguf import GGUFValueType

from awq_gguf.errors import CorruptModelError
from awq_gguf.runner.gguf_check import HeaderSummary, check_header

_MISSING = object()


@dataclass
class GgufFile:
    path: Path
    reader: gguf.GGUFReader
    header: HeaderSummary
    tensors: dict[str, Any]  # name -> gguf ReaderTensor (its .data is a view into the mmap)

    def field(self, key: str, kind: type, default: Any = _MISSING) -> Any:
        """Metadata value of `key` as `kind` (int, float, str, bool, list); CorruptModelError if absent or mistyped."""
        f = self.reader.get_field(key)
        if f is None:
            if default is _MISSING:
                raise CorruptModelError(f"{self.path}: metadata key {key!r} is missing")
            return default
        vtype = f.types[0] if f.types else None
        ok = {
            int: vtype in _INT_TYPES,
            float: vtype in _INT_TYPES or vtype in (GGUFValueType.FLOAT32, GGUFValueType.FLOAT64),
            str: vtype == GGUFValueType.STRING,
            bool: vtype == GGUFValueType.BOOL,
            list: vtype == GGUFValueType.ARRAY,
        }[kind]
        if not ok:
            got = vtype.name if vtype is not None else "nothing"
            raise CorruptModelError(f"{self.path}: metadata key {key!r} has type {got}, expected {kind.__name__}")
        try:
            value = f.contents()
        except Exception as e:  # damaged string bytes, short arrays
            raise CorruptModelError(f"{self.path}: metadata key {key!r} cannot be read ({type(e).__name__})") from None
        return kind(value) if kind in (int, float, bool) else value

    def has(self, key: str) -> bool:
        return self.reader.get_field(key) is not None


_INT_TYPES = {
    GGUFValueType.UINT8, GGUFValueType.INT8, GGUFValueType.UINT16, GGUFValueType.INT16,
    GGUFValueType.UINT32, GGUFValueType.INT32, GGUFValueType.UINT64, GGUFValueType.INT64,
}


def open_checked(path: Path) -> GgufFile:
    """Validate and open `path`. Every failure is a one-line CorruptModelError; nothing here can hang."""
    path = Path(path)
    if not path.is_file():
        raise CorruptModelError(f"{path}: no such file")
    header = check_header(path)
    try:
        reader = gguf.GGUFReader(path, "r")
    except Exception as e:  # the header passed our checks, so this is a case gguf_check does not model
        raise CorruptModelError(f"{path}: corrupt GGUF ({type(e).__name__}: {e})") from None
    tensors = {t.name: t for t in reader.tensors}
    ours = {t.name: t for t in header.tensors}
    if set(tensors) != set(ours):
        raise CorruptModelError(f"{path}: corrupt GGUF (tensor table does not parse consistently)")
    for name, t in tensors.items():
        info = ours[name]
        if int(t.data_offset) != info.offset or int(t.n_bytes) != info.n_bytes or np.asarray(t.data).nbytes != info.n_bytes:
            raise CorruptModelError(f"{path}: corrupt GGUF (tensor {name!r} data does not match its header)")
    return GgufFile(path, reader, header, tensors)
