"""The cffi (ABI mode) binding of libawq_gguf_cuda.so and the one-time availability check."""

from __future__ import annotations

import threading
from typing import Any

ABI_VERSION = 3  # api.h's AWQ_CUDA_ABI

# api.h's declarations, as cffi's C parser takes them (no preprocessor).
CDEF = """
int awq_cuda_abi_version(void);
int awq_cuda_gemv(int qtype, const void* p0, const void* p1, const void* p2, const void* x, int act, float* y,
                  int rows, int cols, int batch, int nr, int mode, void* ws, long long ws_bytes, void* stream);
int awq_cuda_dequant(int qtype, const void* p0, const void* p1, const void* p2, void* out, int out_type, int rows,
                     int cols, void* stream);
const char* awq_cuda_error_string(int code);
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
