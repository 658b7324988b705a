"""Q8_0: blocks of 32 weights, fp16 d then 32 int8 levels; weight = d * q.

Without importance this is llama.cpp's quantize_row_q8_0_ref exactly (d = amax/127, q = roundf(x/d)), the
format's definition and byte for byte what llama-quantize and gguf.quants write; at 8 bits a scale search gains
next to nothing there. With importance (AWQ, imatrix) a small search over d minimizes the weighted error.
"""

from __future__ import annotations

import torch
from gguf import GGMLQuantizationType as QT

from . import BlockFormat, register
from .refine import symmetric_refiner
from .block_search import (
    block_quantizer,
    QK, f16_bytes, f16_from_bytes, round_half_away, safe_recip, search_symmetric,
)

TYPE_SIZE = 34
QMIN, QMAX = -128, 127
# Weighted search only: the block's largest-magnitude weight is mapped to level -t.
GRID = tuple(124.0 + 0.5 * k for k in range(9))  # 124 .. 128


def ref_blocks(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """llama.cpp's quantize_row_q8_0_ref on blocks x [n, 32] -> (fp32 d [n, 1], levels [n, 32] as float)."""
    d = x.abs().amax(dim=-1, keepdim=True) / 127.0
    return d, round_half_away(x * safe_recip(d))


def _pack(d16: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """d [n, 1], levels [n, 32] -> uint8 [n, 34]."""
    return torch.cat([f16_bytes(d16), q.to(torch.int8).view(torch.uint8)], dim=1)


def _levels(b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """blocks uint8 [n, 34] -> (d [n, 1], levels [n, 32] as float)."""
    return f16_from_bytes(b[:, 0:2]), b[:, 2:].contiguous().view(torch.int8).to(torch.float32)


def _search(x: torch.Tensor, wt: torch.Tensor | None, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return search_symmetric(x, wt, QMIN, QMAX, d, GRID)


quantize = block_quantizer(ref_blocks, _pack, TYPE_SIZE, _search, search_needs_importance=True)
quantize.refine = symmetric_refiner(QMIN, QMAX, TYPE_SIZE, _levels, _pack)  # type: ignore[attr-defined]
quantize_ref = block_quantizer(ref_blocks, _pack, TYPE_SIZE, None)  # same bytes as quantize(w, None)


@torch.no_grad()
def dequantize(q: torch.Tensor) -> torch.Tensor:
    # q: uint8 [rows, nb * 34] -> float32 [rows, nb * 32]
    rows, nb = q.shape[0], q.shape[1] // TYPE_SIZE
    b = q.reshape(rows, nb, TYPE_SIZE)  # [rows, nb, 34]
    d = f16_from_bytes(b[..., 0:2])  # [rows, nb, 1]
    lv = b[..., 2:].contiguous().view(torch.int8).to(torch.float32)  # [rows, nb, 32]
    return (d * lv).reshape(rows, nb * QK)


FORMAT = register(BlockFormat(QT.Q8_0, quantize, dequantize))
