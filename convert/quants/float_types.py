"""F32, F16 and BF16: the unquantized types, stored as little-endian bytes."""

from __future__ import annotations

import torch
from gguf import GGMLQuantizationType as QT

from . import BlockFormat, register


def _to_bytes(dtype: torch.dtype):
    def quantize(w: torch.Tensor, importance: torch.Tensor | None) -> torch.Tensor:
        # w: float32 [rows, cols] -> uint8 [rows, cols * itemsize]; importance has nothing to weigh here.
        # BF16: round to nearest even, as ggml's fp32 -> bf16 does (torch's cast rounds the same way).
        return w.to(dtype).contiguous().view(torch.uint8)

    return quantize


def _from_bytes(dtype: torch.dtype):
    def dequantize(q: torch.Tensor) -> torch.Tensor:
        return q.contiguous().view(dtype).float()

    return dequantize


for _qt, _dt in ((QT.F32, torch.float32), (QT.F16, torch.float16), (QT.BF16, torch.bfloat16)):
    register(BlockFormat(_qt, _to_bytes(_dt), _from_bytes(_dt)))
