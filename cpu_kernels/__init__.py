"""CPU kernels (C through cffi): 8-bit activation quantization, quantized matrix products and dequantization
for the GGUF weight types, with scalar / AVX2 / AVX-512 / NEON variants chosen at run time (see ops.py); and
the one-token decode step of whole transformer layers on those kernels (see decode.py)."""

from .decode import DecodeConfig, DecodeLayer, DecodeStack
from .ops import (
    ISAS,
    SUPPORTED,
    KernelError,
    KernelShapeError,
    KernelTypeError,
    KernelUnavailableError,
    PackedMatrix,
    available,
    available_isas,
    dequantize,
    get_rows,
    isa,
    isa_detail,
    matmul,
    matmul_packed,
    pack_weights,
    packed_gemm_native,
    quantize_activations,
    set_isa,
    stream_read,
    vec_dot,
)

__all__ = [
    "DecodeConfig", "DecodeLayer", "DecodeStack", "ISAS", "SUPPORTED", "KernelError", "KernelShapeError",
    "KernelTypeError", "KernelUnavailableError", "PackedMatrix",
    "available", "available_isas", "dequantize", "get_rows", "isa", "isa_detail", "matmul", "matmul_packed", "pack_weights",
    "packed_gemm_native", "quantize_activations",
    "set_isa", "stream_read", "vec_dot",
]  # fmt: skip
