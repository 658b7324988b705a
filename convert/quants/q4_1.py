"""Q4_1: blocks of 32 weights, fp16 d, fp16 m, 16 bytes of 4-bit levels; weight = d * q + m, q in 0..15.

Byte j of the levels holds q_j in its low nibble and q_(j+16) in its high nibble.
"""

from __future__ import annotations

import torch
from gguf import GGMLQuantizationType as QT

from . import BlockFormat, register
from .block_search import (
    block_quantizer,
    QK, f16_bytes, f16_from_bytes, pack_nibbles, safe_recip, search_asymmetric,
    unpack_nibbles,
)

TYPE_SIZE = 20
QMAX = 15
# Search targets: the block's range max - min spans t level steps (make_qkx3_quants: 15 - 0.9 .. 15 + 0.9);
# candidates anchored at both ends of the range.
GRID = tuple(13.0 + 0.25 * k for k in range(13))  # 13.0 .. 16.0


def ref_blocks(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """llama.cpp's quantize_row_q4_1_ref on blocks x [n, 32] -> (fp32 d, fp32 m [n, 1], levels [n, 32] as float)."""
    mn = x.amin(dim=-1, keepdim=True)
    d = (x.amax(dim=-1, keepdim=True) - mn) / 15.0
    q = torch.trunc((x - mn) * safe_recip(d) + 0.5).clamp_(0, 15)
    return d, mn, q


def _pack(d16: torch.Tensor, m16: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """d, m [n, 1], levels [n, 32] -> uint8 [n, 20]."""
    return torch.cat([f16_bytes(d16), f16_bytes(m16), pack_nibbles(q)], dim=1)


def _search(x: torch.Tensor, wt: torch.Tensor | None, d: torch.Tensor, m: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return search_asymmetric(x, wt, QMAX, d, m, GRID)


quantize = block_quantizer(ref_blocks, _pack, TYPE_SIZE, _search)
quantize_ref = block_quantizer(ref_blocks, _pack, TYPE_SIZE, None)  # llama.cpp's plain reference rounding, byte for byte


@torch.no_grad()
def dequantize(q: torch.Tensor) -> torch.Tensor:
    # q: uint8 [rows, nb * 20] -> float32 [rows, nb * 32]
    rows, nb = q.shape[0], q.shape[1] // TYPE_SIZE
    b = q.reshape(rows, nb, TYPE_SIZE)  # [rows, nb, 20]
    d = f16_from_bytes(b[..., 0:2])  # [rows, nb, 1]
    m = f16_from_bytes(b[..., 2:4])
    lv = unpack_nibbles(b[..., 4:]).to(torch.float32)  # [rows, nb, 32]
    return (d * lv + m).reshape(rows, nb * QK)  # a product then a sum (no fma), as gguf.quants


FORMAT = register(BlockFormat(QT.Q4_1, quantize, dequantize))
