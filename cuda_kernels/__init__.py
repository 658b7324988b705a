"""CUDA kernels for GGUF block weights: GEMV for decode (batch 1..16), dequantization for the prompt path.

Built lazily with nvcc (sm_90) into a cache folder on first use and bound with cffi in ABI mode (_build.py,
_lib.py); importing this package never builds or fails. `available()` says whether the kernels can run here,
`unavailable_reason()` why not (no GPU, no cffi, no nvcc, a build error).

  from awq_gguf.cuda_kernels import QuantMatrix, gemv, matmul, dequantize
  w = QuantMatrix.from_gguf(raw, GGMLQuantizationType.Q4_K, rows, cols)   # file bytes -> GPU layout
  y = gemv(x_fp16, w)    # float32 [batch, rows]

Weight types: Q4_0, Q8_0, Q4_K, Q6_K. Activations: float16 or bfloat16. Accumulation is float32. By default gemv
rounds the activations to int8 per 32 values (llama.cpp's q8 blocks, ~5e-3 relative) and multiplies with dp4a;
`gemv(..., mode=3)` keeps them in float32 (~1e-6). See ops.gemv and NOTES.md. The GPU runner's decode step also
uses the fused elementwise kernels of `cuda_kernels.fused` (RMSNorm / SiLU x up / attention with the int8 rounding,
RoPE with the KV-cache write; fused.cu).
"""

from __future__ import annotations

from ._lib import available, unavailable_reason

__all__ = ["SUPPORTED", "QuantMatrix", "available", "dequantize", "gemv", "matmul", "unavailable_reason"]


def __getattr__(name: str):
    if name in ("QuantMatrix", "SUPPORTED", "gemv", "dequantize", "matmul", "MAX_GEMV_BATCH"):
        from . import ops

        return getattr(ops, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
