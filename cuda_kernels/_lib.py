"""The cffi (ABI mode) binding of libawq_gguf_cuda.so and the one-time availability check."""

from __future__ import annotations

import threading
from typing import Any

ABI_VERSION = 6  # api.h's AWQ_CUDA_ABI

# api.h's declarations, as cffi's C parser takes them (no preprocessor).
CDEF = """
int awq_cuda_abi_version(void);
int awq_cuda_gemv(int qtype, const void* p0, const void* p1, const void* p2, const void* x, int act, float* y,
                  int rows, int cols, int batch, int nr, int mode, void* ws, long long ws_bytes, void* stream);
int awq_cuda_dequant(int qtype, const void* p0, const void* p1, const void* p2, void* out, int out_type, int rows,
                     int cols, void* stream);
const char* awq_cuda_error_string(int code);
int awq_cuda_read_probe(const void* p, long long nbytes, unsigned* out, void* stream);
int awq_cuda_add_rmsnorm_q8(float* x, const float* r, const float* w, float eps, int batch, int cols, void* ws,
                            long long ws_bytes, float* out, void* stream);
int awq_cuda_silu_mul_q8(const float* gate, long long gate_stride, const float* up, long long up_stride,
                         int batch, int cols, void* ws, long long ws_bytes, float* out, void* stream);
int awq_cuda_rope_kv(const float* q, long long q_stride, const float* k, long long k_stride, const float* v,
                     long long v_stride, const float* bq, const float* bk, const float* bv, const float* q_norm,
                     const float* k_norm, float eps, const float* cos, const float* sin, int max_pos,
                     const long long* pos, int n_tok, int n_head, int n_head_kv, int head_dim, int n_rot,
                     int neox, void* q_out, void* k_cache, void* v_cache, int n_ctx, void* stream);
int awq_cuda_attn_decode_q8(const void* q, const void* k_cache, const void* v_cache, const long long* pos,
                            int n_head, int n_head_kv, int n_ctx, int head_dim, int t, float scale, void* ws,
                            long long ws_bytes, void* stream);
"""

_lock = threading.Lock()
_state: dict[str, Any] = {}


def _load() -> tuple[Any, Any]:
    try:
        import torch
    except ImportError as e:  # pragma: no cover - torch is a dependency
        raise RuntimeError(f"torch is not importable: {e}") from None
    if not torch.cuda.is_available():
        raise RuntimeError("torch sees no CUDA device (CPU-only torch build or no GPU)")
    from ._build import built_archs

    major, minor = torch.cuda.get_device_capability()
    if f"{major}{minor}" not in built_archs():
        raise RuntimeError(f"the GPU is sm_{major}{minor}; the kernels are built for "
                           f"{', '.join('sm_' + a for a in built_archs())} (set AWQ_GGUF_CUDA_ARCH)")
    try:
        import cffi
    except ImportError:
        raise RuntimeError("cffi is not installed (pip install cffi)") from None
    from ._build import BuildError, build

    try:
        path = build()
    except BuildError as e:
        raise RuntimeError(f"building the CUDA kernels failed: {e}") from None
    ffi = cffi.FFI()
    ffi.cdef(CDEF)
    try:
        lib = ffi.dlopen(str(path))
    except OSError as e:
        raise RuntimeError(f"loading {path} failed: {e}") from None
    version = lib.awq_cuda_abi_version()
    if version != ABI_VERSION:
        raise RuntimeError(f"{path} has ABI {version}, this package expects {ABI_VERSION}")
    return ffi, lib


def load() -> tuple[Any, Any]:
    """(ffi, lib), building the library on first use. Raises RuntimeError saying why the kernels are unusable."""
    with _lock:
        if "lib" not in _state and "error" not in _state:
            try:
                _state["ffi"], _state["lib"] = _load()
            except RuntimeError as e:
                _state["error"] = str(e)
        if "error" in _state:
            raise RuntimeError(f"awq_gguf CUDA kernels unavailable: {_state['error']}")
        return _state["ffi"], _state["lib"]


def available() -> bool:
    try:
        load()
        return True
    except RuntimeError:
        return False


def unavailable_reason() -> str:
    """Why available() is False; "" when it is True."""
    try:
        load()
        return ""
    except RuntimeError as e:
        return str(e)
