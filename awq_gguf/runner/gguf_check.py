"""Validate a GGUF file's header before gguf.GGUFReader parses it.

GGUFReader trusts every count and length in the header: an array length of 2**60 makes it loop (practically)
forever, a string length past the end yields short reads, a tensor offset past the end gives an empty view. This
module walks the same structure with explicit bounds checks, so every count is bounded by the bytes that remain,
every string and tensor lies inside the file, and every type code is known. It reads only the header (through an
mmap), never the tensor data, and raises CorruptModelError with one line naming the first problem.

Layout (GGUF v2/v3, little-endian):
  magic "GGUF" | version u32 | n_tensors u64 | n_kv u64
  n_kv x    key: str | value type u32 | value      (str = u64 length + UTF-8 bytes; array = item type u32,
                                                   u64 count, items; arrays of arrays are not allowed)
  n_tensors x  name: str | n_dims u32 | dims u64[n_dims] | ggml type u32 | offset u64 (from the data start)
  padding to general.alignment (default 32) | tensor data
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from pathlib import Path

from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFValueType

from awq_gguf.errors import CorruptModelError

SUPPORTED_VERSIONS = (2, 3)
MAX_DIMS = 4  # GGML_MAX_DIMS
MAX_ELEMENTS = 1 << 48  # far above any real tensor, low enough that byte counts stay exact
DEFAULT_ALIGNMENT = 32

# Fixed-size value types: struct format per GGUFValueType code.
_SCALAR_FMT: dict[int, str] = {
    GGUFValueType.UINT8: "<B",
    GGUFValueType.INT8: "<b",
    GGUFValueType.UINT16: "<H",
    GGUFValueType.INT16: "<h",
    GGUFValueType.UINT32: "<I",
    GGUFValueType.INT32: "<i",
    GGUFValueType.FLOAT32: "<f",
    GGUFValueType.BOOL: "<B",
    GGUFValueType.UINT64: "<Q",
    GGUFValueType.INT64: "<q",
    GGUFValueType.FLOAT64: "<d",
}
_SCALAR_SIZE = {code: struct.calcsize(fmt) for code, fmt in _SCALAR_FMT.items()}


@dataclass(frozen=True)
class TensorInfo:
    name: str
    ggml_type: GGMLQuantizationType
    dims: tuple[int, ...]  # ggml order: dims[0] is the row length
    offset: int  # absolute offset in the file
    n_bytes: int


@dataclass(frozen=True)
class HeaderSummary:
    version: int
    n_kv: int
    tensors: tuple[TensorInfo, ...]
    alignment: int
    data_offset: int
    file_size: int


class _Cursor:
    """Bounds-checked reads over a bytes-like buffer; every overrun is a CorruptModelError."""

    def __init__(self, buf, size: int, path: Path) -> None:
        self.buf, self.size, self.path, self.pos = buf, size, path, 0

    def fail(self, what: str) -> CorruptModelError:
        return CorruptModelError(f"{self.path}: corrupt GGUF header: {what} (at byte {self.pos})")

    def remaining(self) -> int:
        return self.size - self.pos

    def need(self, n: int, what: str) -> None:
        if n < 0 or n > self.remaining():
            raise CorruptModelError(
                f"{self.path}: truncated or corrupt GGUF: {what} needs {n} bytes at byte {self.pos}, "
                f"{self.remaining()} remain"
            )

    def scalar(self, code: int, what: str):
        size = _SCALAR_SIZE[code]
        self.need(size, what)
        (value,) = struct.unpack_from(_SCALAR_FMT[code], self.buf, self.pos)
        self.pos += size
        return value

    def u32(self, what: str) -> int:
        return self.scalar(GGUFValueType.UINT32, what)

    def u64(self, what: str) -> int:
        return self.scalar(GGUFValueType.UINT64, what)

    def string(self, what: str) -> str:
        n = self.u64(f"{what} length")
        self.need(n, what)
        raw = bytes(self.buf[self.pos : self.pos + n])
        self.pos += n
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise self.fail(f"{what} is not valid UTF-8") from None

    def skip_string(self, what: str) -> None:
        n = self.u64(f"{what} length")
        self.need(n, what)
        self.pos += n


def _value_type(cur: _Cursor, code: int, what: str) -> int:
    if code not in _SCALAR_FMT and code not in (GGUFValueType.STRING, GGUFValueType.ARRAY):
        raise cur.fail(f"{what} has unknown value type {code}")
    return code


def _read_value(cur: _Cursor, code: int, key: str):
    """Read (or skip) one value; returns scalars and strings (needed: general.alignment), None for arrays."""
    if code in _SCALAR_FMT:
        return cur.scalar(code, f"value of {key!r}")
    if code == GGUFValueType.STRING:
        return cur.string(f"value of {key!r}")
    item = _value_type(cur, cur.u32(f"item type of {key!r}"), f"array {key!r}")
    count = cur.u64(f"length of array {key!r}")
    if item == GGUFValueType.ARRAY:
        raise cur.fail(f"array {key!r} holds arrays (not supported by GGUF readers)")
    if item in _SCALAR_SIZE:
        cur.need(count * _SCALAR_SIZE[item], f"array {key!r} of {count} items")
        cur.pos += count * _SCALAR_SIZE[item]
        return None
    cur.need(count * 8, f"array {key!r} of {count} strings")  # each string has at least its 8-byte length
    for i in range(count):
        cur.skip_string(f"string {i} of array {key!r}")
    return None


def check_header(path: Path) -> HeaderSummary:
    """Walk the whole GGUF header of `path` with bounds checks; CorruptModelError on the first problem."""
    try:
        f = open(path, "rb")
    except OSError as e:
        raise CorruptModelError(f"{path}: cannot be read ({e.strerror})") from None
    with f:
        try:
            size = f.seek(0, 2)
        except OSError as e:
            raise CorruptModelError(f"{path}: cannot be read ({e.strerror})") from None
        if size < 24:
            raise CorruptModelError(f"{path}: truncated GGUF ({size} bytes; the header alone needs 24)")
        try:
            buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError) as e:
            raise CorruptModelError(f"{path}: cannot be mapped ({e})") from None
        try:
            return _walk(_Cursor(buf, size, path))
        finally:
            buf.close()


def _walk(cur: _Cursor) -> HeaderSummary:
    path = cur.path
    magic = bytes(cur.buf[0:4])
    if magic != b"GGUF":
        raise CorruptModelError(f"{path}: not a GGUF file (magic {magic!r})")
    cur.pos = 4
    version = cur.u32("version")
    if version not in SUPPORTED_VERSIONS:
        if int.from_bytes(version.to_bytes(4, "little"), "big") in SUPPORTED_VERSIONS:
            raise CorruptModelError(f"{path}: big-endian GGUF files are not supported")
        raise CorruptModelError(f"{path}: GGUF version {version} is not supported (only 2 and 3)")
    n_tensors = cur.u64("tensor count")
    n_kv = cur.u64("metadata count")
    # Each key/value takes at least 8 (key length) + 4 (type) + 1 bytes; each tensor info at least 8 + 4 + 8 + 4 + 8.
    if n_kv * 13 > cur.remaining():
        raise cur.fail(f"metadata count {n_kv} cannot fit in the file")
    if n_tensors * 32 > cur.remaining():
        raise cur.fail(f"tensor count {n_tensors} cannot fit in the file")

    keys: set[str] = set()
    alignment = DEFAULT_ALIGNMENT
    for i in range(n_kv):
        key = cur.string(f"metadata key {i}")
        if key in keys:
            raise cur.fail(f"metadata key {key!r} appears twice")
        keys.add(key)
        code = _value_type(cur, cur.u32(f"type of {key!r}"), f"metadata {key!r}")
        value = _read_value(cur, code, key)
        if key == "general.alignment":
            if code != GGUFValueType.UINT32 or value == 0 or value & (value - 1):
                raise cur.fail(f"general.alignment must be a non-zero power of two (uint32), got {value!r}")
            alignment = value

    infos: list[tuple[str, GGMLQuantizationType, tuple[int, ...], int, int]] = []
    names: set[str] = set()
    for i in range(n_tensors):
        name = cur.string(f"tensor {i} name")
        if name in names:
            raise cur.fail(f"tensor {name!r} appears twice")
        names.add(name)
        n_dims = cur.u32(f"tensor {name!r} dimension count")
        if not 1 <= n_dims <= MAX_DIMS:
            raise cur.fail(f"tensor {name!r} has {n_dims} dimensions (1 to {MAX_DIMS} allowed)")
        dims = tuple(cur.u64(f"tensor {name!r} dimension") for _ in range(n_dims))
        raw_type = cur.u32(f"tensor {name!r} type")
        try:
            ggml_type = GGMLQuantizationType(raw_type)
            block, type_size = GGML_QUANT_SIZES[ggml_type]
        except (ValueError, KeyError):
            raise cur.fail(f"tensor {name!r} has unknown ggml type {raw_type}") from None
        offset = cur.u64(f"tensor {name!r} offset")
        n_el = 1
        for d in dims:
            if d < 1:
                raise cur.fail(f"tensor {name!r} has a zero dimension {dims}")
            n_el *= d
            if n_el > MAX_ELEMENTS:
                raise cur.fail(f"tensor {name!r} dimensions {dims} are implausibly large")
        if dims[0] % block:
            raise cur.fail(f"tensor {name!r} row length {dims[0]} is not a multiple of {ggml_type.name}'s block {block}")
        if offset % alignment:
            raise cur.fail(f"tensor {name!r} offset {offset} is not aligned to {alignment}")
        infos.append((name, ggml_type, dims, offset, n_el // block * type_size))

    data_offset = -(-cur.pos // alignment) * alignment
    tensors = []
    for name, ggml_type, dims, offset, n_bytes in infos:
        start = data_offset + offset
        if start + n_bytes > cur.size:
            raise CorruptModelError(
                f"{path}: truncated GGUF: tensor {name!r} ({n_bytes} bytes at {start}) runs past the end "
                f"of the file ({cur.size} bytes)"
            )
        tensors.append(TensorInfo(name, ggml_type, dims, start, n_bytes))
    return HeaderSummary(version, n_kv, tuple(tensors), alignment, data_offset, cur.size)
