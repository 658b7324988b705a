"""CPU kernels (C through cffi): 8-bit activation quantization, quantized matrix products and dequantization
for the GGUF weight types, with scalar / AVX2 / AVX-512 / NEON variants chosen at run time. See ops.py."""

from .ops import (
    ISAS,
    SUPPORTED,
    KernelError,
    KernelShapeError,
    KernelTypeError,
    KernelUnavailableError,
    available,
    available_isas,
    dequantize,
    get_rows,
    isa,
    isa_detail,
    matmul,
    quantize_activations,
    set_isa,
    stream_read,
    vec_dot,
)

__all__ = [
    "ISAS", "SUPPORTED", "KernelError", "KernelShapeError", "KernelTypeError", "KernelUnavailableError",
    "available", "available_isas", "dequantize", "get_rows", "isa", "isa_detail", "matmul", "quantize_activations",
    "set_isa", "stream_read", "vec_dot",
]  # fmt: skip
