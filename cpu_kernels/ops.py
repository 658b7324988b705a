"""Python facade over the C kernels: argument checks, then one C call (cffi releases the GIL during it).

Weights are GGUF tensor bytes as uint8 [rows, row_bytes] (C-contiguous; a read-only memmap slice is fine;
F32/F16 weights may also be passed as float32/float16 [rows, cols]). Activations are float32 [n, cols].
Every check happens here, so a wrong dtype, shape or layout raises KernelTypeError / KernelShapeError
naming the argument and its shape instead of reaching C.

ISA: the best one this CPU and OS support, or AWQ_GGUF_ISA=scalar|avx2|avx512|neon (an unavailable choice
raises KernelUnavailableError on first use, never falls back silently). Threads: the `threads` argument,
else AWQ_GGUF_THREADS, else os.cpu_count().
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

from ._loader import KernelBuildError, load

ISAS = ("scalar", "avx2", "avx512", "neon")
SUPPORTED = (
    GGMLQuantizationType.F32, GGMLQuantizationType.F16,
    GGMLQuantizationType.Q4_0, GGMLQuantizationType.Q4_1, GGMLQuantizationType.Q5_0,
    GGMLQuantizationType.Q5_1, GGMLQuantizationType.Q8_0,
    GGMLQuantizationType.Q2_K, GGMLQuantizationType.Q3_K, GGMLQuantizationType.Q4_K,
    GGMLQuantizationType.Q5_K, GGMLQuantizationType.Q6_K,
)  # fmt: skip
_RC = {-1: "type not supported by the kernels", -2: "bad sizes", -3: "out of memory", -4: "threads failed"}


class KernelError(Exception):
    """Base class of the kernel facade's errors."""


class KernelTypeError(KernelError, TypeError):
    """An argument has the wrong Python type or dtype, or the weight type is unsupported."""


class KernelShapeError(KernelError, ValueError):
    """An argument has the wrong shape, size, layout (contiguity/alignment) or value range."""


class KernelUnavailableError(KernelError, RuntimeError):
    """The requested ISA is not compiled in or not supported by this CPU/OS, or the kernels cannot be built."""


_mod: ModuleType | None = None


def _lib() -> Any:
    global _mod
    if _mod is None:
        try:
            mod = load()
        except KernelBuildError as exc:
            raise KernelUnavailableError(str(exc)) from exc
        want = os.environ.get("AWQ_GGUF_ISA", "").strip().lower()
        if want:
            _select(mod, want)
        else:
            mod.lib.awq_set_isa(mod.lib.awq_isa_best())
        _mod = mod
    return _mod.lib


def _select(mod: ModuleType, name: str) -> None:
    if name not in ISAS:
        raise KernelUnavailableError(f"AWQ_GGUF_ISA={name!r}: expected one of {', '.join(ISAS)}")
    if mod.lib.awq_set_isa(ISAS.index(name)) != 0:
        have = [n for i, n in enumerate(ISAS) if mod.lib.awq_isa_available(i)]
        raise KernelUnavailableError(f"ISA {name!r} is not available on this machine/build (available: {have})")


def available() -> bool:
    """Whether the kernels can run here (built, or buildable now); False instead of KernelUnavailableError."""
    try:
        _lib()
    except KernelUnavailableError:
        return False
    return True


def isa() -> str:
    """The ISA the kernels run with: 'scalar', 'avx2', 'avx512' or 'neon'."""
    lib = _lib()
    return ISAS[lib.awq_get_isa()]


def isa_detail() -> str:
    """The kernel table's own name, e.g. 'avx512-vnni'."""
    lib = _lib()
    return _mod.ffi.string(lib.awq_kernels_name()).decode()  # type: ignore[union-attr]


def available_isas() -> list[str]:
    lib = _lib()
    return [n for i, n in enumerate(ISAS) if lib.awq_isa_available(i)]


def set_isa(name: str) -> None:
    """Switch the ISA for the whole process (tests use this to cover every variant)."""
    _lib()
    _select(_mod, name)  # type: ignore[arg-type]


_default_threads: int | None = None


def _threads(threads: int | None) -> int:
    global _default_threads
    if threads is None:
        if _default_threads is None:  # read once: os.cpu_count() and the environment cost microseconds
            env = os.environ.get("AWQ_GGUF_THREADS", "")
            _default_threads = int(env) if env.isdigit() and int(env) > 0 else (os.cpu_count() or 1)
        return _default_threads
    if type(threads) is int and threads >= 1:
        return threads
    if not isinstance(threads, (int, np.integer)) or isinstance(threads, bool) or threads < 1:
        raise KernelShapeError(f"threads must be a positive int, got {threads!r}")
    return int(threads)


_TYPE_INFO = {int(t): (t, *GGML_QUANT_SIZES[t]) for t in SUPPORTED}  # id -> (type, block, bytes)
_U8 = np.dtype(np.uint8)
_F32 = np.dtype(np.float32)


def _qtype(qtype: Any) -> GGMLQuantizationType:
    info = _TYPE_INFO.get(qtype) if isinstance(qtype, int) else None
    if info is not None:
        return info[0]
    try:
        t = GGMLQuantizationType(qtype)
    except ValueError:
        raise KernelTypeError(f"qtype {qtype!r} is not a GGML type") from None
    if t not in SUPPORTED:
        raise KernelTypeError(f"qtype {t.name} is not supported by the CPU kernels (supported: "
                              f"{', '.join(s.name for s in SUPPORTED)})")
    return t


def _weights(w: Any, t: GGMLQuantizationType, name: str = "w") -> tuple[np.ndarray, int]:
    """Checks the weight array; returns it as uint8 [rows, row_bytes] and the row length in elements."""
    if not isinstance(w, np.ndarray):
        raise KernelTypeError(f"{name} must be a numpy array, got {type(w).__name__}")
    if w.ndim != 2:
        raise KernelShapeError(f"{name} must be 2-D [rows, row_bytes], got shape {w.shape}")
    if not w.flags.c_contiguous:
        raise KernelShapeError(f"{name} must be C-contiguous (shape {w.shape}, strides {w.strides})")
    if w.dtype is not _U8 and t in (GGMLQuantizationType.F32, GGMLQuantizationType.F16):
        if w.dtype == (np.float32 if t == GGMLQuantizationType.F32 else np.float16):
            w = w.view(np.uint8)
    if w.dtype is not _U8 and w.dtype != _U8:
        raise KernelTypeError(f"{name} must be uint8 GGUF bytes for {t.name}, got dtype {w.dtype}")
    _, block, size = _TYPE_INFO[int(t)]
    if w.shape[1] % size:
        raise KernelShapeError(f"{name}: row of {w.shape[1]} bytes is not a whole number of {t.name} blocks ({size} B)")
    return w, w.shape[1] // size * block


def _check_rc(rc: int, what: str) -> None:
    if rc != 0:
        raise KernelShapeError(f"{what}: kernel refused the call ({_RC.get(rc, rc)})")


def _ptr(a: np.ndarray, ctype: str) -> Any:
    """A C pointer to a's buffer (a stays alive through the call); ctype 'void *' or 'float *' etc."""
    return _mod.ffi.from_buffer(_ARRAY_OF[ctype], a)  # type: ignore[union-attr]


_ARRAY_OF = {"void *": "char[]", "float *": "float[]", "int64_t *": "int64_t[]"}


def _out(out: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    if out is None:
        return np.empty(shape, np.float32)
    if not isinstance(out, np.ndarray) or out.dtype != np.float32:
        raise KernelTypeError(f"out must be a float32 numpy array, got {getattr(out, 'dtype', type(out))}")
    if out.shape != shape or not out.flags.c_contiguous or not out.flags.writeable or not out.flags.aligned:
        raise KernelShapeError(f"out must be a writable C-contiguous aligned float32 array of shape {shape}, "
                               f"got shape {out.shape}")
    return out


def _activations(x: Any) -> tuple[np.ndarray, bool]:
    """Checks x (float32 [n, cols] or [cols], C-contiguous, aligned); returns it as [n, cols] and whether it
    was 1-D."""
    if not isinstance(x, np.ndarray):
        raise KernelTypeError(f"x must be a numpy array, got {type(x).__name__}")
    if x.dtype is not _F32 and x.dtype != _F32:
        raise KernelTypeError(f"x must be float32, got dtype {x.dtype}")
    squeeze = x.ndim == 1
    x2 = x[None, :] if squeeze else x
    if x2.ndim != 2:
        raise KernelShapeError(f"x must be [n, cols] or [cols], got shape {x.shape}")
    if not x2.flags.c_contiguous or not x2.flags.aligned:
        raise KernelShapeError(f"x must be C-contiguous and aligned (shape {x.shape}, strides {x.strides})")
    return x2, squeeze


def matmul(w: np.ndarray, qtype: Any, x: np.ndarray, threads: int | None = None,
           out: np.ndarray | None = None) -> np.ndarray:
    """y = x @ W^T. w: uint8 [rows, row_bytes]; x: float32 [n, cols] (or [cols], giving [rows]).
    Returns float32 [n, rows]. n = 1 is the GEMV path, n > 1 the GEMM path."""
    lib = _lib()
    t = _qtype(qtype)
    w, cols_w = _weights(w, t)
    x2, squeeze = _activations(x)
    n, cols = x2.shape
    if cols != cols_w:
        block, size = GGML_QUANT_SIZES[t]
        raise KernelShapeError(f"x has {cols} columns but w {tuple(w.shape)} holds rows of {cols_w} {t.name} "
                               f"elements ({w.shape[1]} B); {cols} columns need {cols // block * size} B"
                               + ("" if cols % block == 0 else f" and a multiple of {block}"))
    rows = w.shape[0]
    y = _out(out, (n, rows))
    if n and rows:
        rc = lib.awq_matmul(int(t), _ptr(w, "void *"), rows, w.shape[1], cols, _ptr(x2, "float *"), n,
                            _ptr(y, "float *"), _threads(threads))
        _check_rc(rc, f"matmul {t.name} w{tuple(w.shape)} x{tuple(x.shape)}")
    return y[0] if squeeze and out is None else y


@dataclass(frozen=True)
class PackedMatrix:
    """A weight matrix with its rows interleaved by 8 for the prompt GEMM and the decode step (pack_weights;
    Q4_0, Q4_1, Q5_0, Q5_1, Q2_K or Q3_K; layouts blk_q4_0x8 ... blk_q5_1x8, blk_q2_Kx8, blk_q3_Kx8 in
    kernels.h): data uint8 [rows // 8, 8 * row_bytes], as many bytes as the file's rows."""

    data: np.ndarray
    qtype: GGMLQuantizationType
    rows: int
    cols: int


def packed_gemm_native(qtype: Any) -> bool:
    """Whether the current ISA has its own kernel over interleaved rows for qtype (Q4_0, Q4_1, Q5_0, Q5_1, Q2_K,
    Q3_K: scalar, AVX2, AVX-512 through AVX2's, NEON). Where one has none, matmul_packed still works, on the scalar
    kernel: keep the file's rows there."""
    return bool(_lib().awq_packed_gemm_native(int(_qtype(qtype))))


def pack_weights(w: np.ndarray, qtype: Any) -> PackedMatrix:
    """The rows of w (uint8 [rows, row_bytes] of qtype) interleaved by 8; rows must be a multiple of 8 and
    qtype Q4_0, Q4_1, Q5_0, Q5_1, Q2_K or Q3_K (KernelShapeError / KernelTypeError otherwise). A one-time copy of
    w's size."""
    lib = _lib()
    t = _qtype(qtype)
    w, cols = _weights(w, t)
    rows = w.shape[0]
    if lib.awq_packed_bytes(int(t), 8, cols) == 0:  # the type (cols is a whole number of blocks here)
        raise KernelTypeError(f"{t.name} has no interleaved layout (only Q4_0, Q4_1, Q5_0, Q5_1, Q2_K and Q3_K have)")
    if rows == 0 or rows % 8:
        raise KernelShapeError(f"pack_weights needs a positive multiple of 8 rows, got w {tuple(w.shape)}")
    data = np.empty((rows // 8, w.shape[1] * 8), np.uint8)
    _check_rc(lib.awq_pack(int(t), _ptr(w, "void *"), rows, w.shape[1], cols, _ptr(data, "void *"), data.nbytes),
              f"pack_weights {t.name} w{tuple(w.shape)}")
    return PackedMatrix(data, t, rows, cols)


def _packed(p: Any, name: str = "p") -> tuple[np.ndarray, GGMLQuantizationType]:
    """Checks a PackedMatrix (its data against its rows, cols and type); returns its data and type."""
    if not isinstance(p, PackedMatrix):
        raise KernelTypeError(f"{name} must be a PackedMatrix from pack_weights, got {type(p).__name__}")
    t = _qtype(p.qtype)
    expect = _lib().awq_packed_bytes(int(t), p.rows, p.cols)
    d = p.data
    if (not isinstance(d, np.ndarray) or d.dtype != _U8 or not d.flags.c_contiguous or expect == 0
            or d.nbytes != expect or d.ndim != 2 or d.shape[0] != p.rows // 8):
        raise KernelShapeError(f"{name} does not hold {p.rows} interleaved {t.name} rows of {p.cols} columns "
                               f"({expect} B); data {getattr(d, 'shape', None)}")
    return d, t


def matmul_packed(p: PackedMatrix, x: np.ndarray, threads: int | None = None,
                  out: np.ndarray | None = None) -> np.ndarray:
    """matmul on pack_weights' interleaved rows: y = x @ W^T, x float32 [n, cols] (or [cols]) -> [n, rows]."""
    lib = _lib()
    d, t = _packed(p)
    x2, squeeze = _activations(x)
    n, cols = x2.shape
    if cols != p.cols:
        raise KernelShapeError(f"x has {cols} columns but p holds rows of {p.cols} {t.name} elements")
    y = _out(out, (n, p.rows))
    if n:
        rc = lib.awq_matmul_packed(int(t), _ptr(d, "void *"), d.nbytes, p.rows, cols, _ptr(x2, "float *"), n,
                                   _ptr(y, "float *"), _threads(threads))
        _check_rc(rc, f"matmul_packed {t.name} [{p.rows}, {p.cols}] x{tuple(x.shape)}")
    return y[0] if squeeze and out is None else y


def get_rows(w: np.ndarray, qtype: Any, ids: Any, threads: int | None = None,
             out: np.ndarray | None = None) -> np.ndarray:
    """Dequantized rows ids of w: float32 [len(ids), cols] (token embeddings)."""
    lib = _lib()
    t = _qtype(qtype)
    w, cols = _weights(w, t)
    idx = np.asarray(ids)
    if idx.ndim != 1 or not (np.issubdtype(idx.dtype, np.integer) or idx.size == 0):
        raise KernelTypeError(f"ids must be a 1-D integer array, got dtype {idx.dtype} shape {idx.shape}")
    idx = np.ascontiguousarray(idx, dtype=np.int64)
    rows = w.shape[0]
    if idx.size and (idx.min() < 0 or idx.max() >= rows):
        raise KernelShapeError(f"ids must lie in [0, {rows}) for w {tuple(w.shape)}, got min {idx.min()} max {idx.max()}")
    y = _out(out, (idx.size, cols))
    if idx.size:
        rc = lib.awq_get_rows(int(t), _ptr(w, "void *"), rows, w.shape[1], cols, _ptr(idx, "int64_t *"),
                              idx.size, _ptr(y, "float *"), _threads(threads))
        _check_rc(rc, f"get_rows {t.name} w{tuple(w.shape)}")
    return y


def dequantize(w: np.ndarray, qtype: Any, threads: int | None = None) -> np.ndarray:
    """All of w as float32 [rows, cols]."""
    return get_rows(w, qtype, np.arange(_weights(w, _qtype(qtype))[0].shape[0]), threads)


def quantize_activations(x: np.ndarray, qtype: Any) -> np.ndarray:
    """x float32 [n, cols] as the 8-bit activation rows the kernels use with weights of qtype:
    uint8 [n, act_row_bytes] (32-blocks: {f32 d, i32 sum, i8 q[32]}; K types: {f32 d, i16 bsums[16], i8 q[256]})."""
    lib = _lib()
    t = _qtype(qtype)
    if not isinstance(x, np.ndarray) or x.dtype != np.float32 or x.ndim != 2 or not x.flags.c_contiguous:
        raise KernelTypeError(f"x must be a C-contiguous float32 [n, cols] array, got {getattr(x, 'shape', x)!r}")
    n, cols = x.shape
    nb = lib.awq_act_row_bytes(int(t), cols)
    if nb <= 0:
        raise KernelShapeError(f"{cols} columns do not fit {t.name} blocks of {GGML_QUANT_SIZES[t][0]}")
    out = np.empty((n, nb), np.uint8)
    for i in range(n):
        _check_rc(lib.awq_quantize_act(int(t), cols, _ptr(x[i], "float *"), _ptr(out[i], "void *")), "quantize")
    return out


def vec_dot(w_row: np.ndarray, qtype: Any, xq_row: np.ndarray) -> float:
    """One weight row (uint8 [row_bytes]) against one quantize_activations row."""
    lib = _lib()
    t = _qtype(qtype)
    w, cols = _weights(np.ascontiguousarray(w_row).reshape(1, -1), t, "w_row")
    if xq_row.dtype != np.uint8 or xq_row.size != lib.awq_act_row_bytes(int(t), cols):
        raise KernelShapeError(f"xq_row must be uint8 of {lib.awq_act_row_bytes(int(t), cols)} bytes")
    res = _mod.ffi.new("float *")  # type: ignore[union-attr]
    _check_rc(lib.awq_vec_dot(int(t), cols, _ptr(w, "void *"), _ptr(np.ascontiguousarray(xq_row), "void *"), res), "vec_dot")
    return float(res[0])


def stream_read(buf: np.ndarray, threads: int | None = None) -> int:
    """Reads every byte of buf (C-contiguous, a multiple of 4 KiB) on `threads` threads: a memory-bandwidth
    probe for benchmarks. Returns a checksum so the reads cannot be skipped."""
    lib = _lib()
    if not isinstance(buf, np.ndarray) or not buf.flags.c_contiguous or buf.nbytes % 4096:
        raise KernelShapeError("buf must be a C-contiguous array of a multiple of 4096 bytes")
    return int(lib.awq_stream_read(_ptr(buf, "void *"), buf.nbytes, _threads(threads)))
