"""Q5_1: blocks of 32 weights, fp16 d, fp16 m, u32 qh, 16 bytes of low nibbles; weight = d * q + m, q in 0..31.

Bit j of qh (little-endian) is bit 4 of q_j; byte j of qs holds the low nibbles of q_j and q_(j+16).
"""

from __future__ import annotations

import torch
from gguf import GGMLQuantizationType as QT

from . import BlockFormat, register
from .block_search import (
    block_quantizer,
    QK, f16_bytes, f16_from_bytes, pack_high_bits, pack_nibbles, safe_recip,
    search_asymmetric, unpack_high_bits, unpack_nibbles,
)

TYPE_SIZE = 24
QMAX = 31
# Search targets: the block's range max - min spans t level steps; candidates anchored at both ends.
GRID = tuple(28.0 + 0.25 * k for k in range(17))  # 28.0 .. 32.0


def ref_blocks(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """llama.cpp's quantize_row_q5_1_ref on blocks x [n, 32] -> (fp32 d, fp32 m [n, 1], levels [n, 32] as float)."""
    mn = x.amin(dim=-1, keepdim=True)
    d = (x.amax(dim=-1, keepdim=True) - mn) / 31.0
    q = torch.trunc((x - mn) * safe_recip(d) + 0.5).clamp_(0, 31)
    return d, mn, q


def _pack(d16: torch.Tensor, m16: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """d, m [n, 1], levels [n, 32] -> uint8 [n, 24]."""
    return torch.cat([f16_bytes(d16), f16_bytes(m16), pack_high_bits(q), pack_nibbles(q)], dim=1)


def _search(x: torch.Tensor, wt: torch.Tensor | None, d: torch.Tensor, m: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return search_asymmetric(x, wt, QMAX, d, m, GRID)


quantize = block_quantizer(ref_blocks, _pack, TYPE_SIZE, _search)
quantize_ref = block_quantizer(ref_blocks, _pack, TYPE_SIZE, None)  # llama.cpp's plain reference rounding, byte for byte


@torch.no_grad()
def dequantize(q: torch.Tensor) -> torch.Tensor:
    # q: uint8 [rows, nb * 24] -> float32 [rows, nb * 32]
    rows, nb = q.shape[0], q.shape[1] // TYPE_SIZE
    b = q.reshape(rows, nb, TYPE_SIZE)  # [rows, nb, 24]
    d = f16_from_bytes(b[..., 0:2])  # [rows, nb, 1]
    m = f16_from_bytes(b[..., 2:4])
    lv = (unpack_nibbles(b[..., 8:]) | unpack_high_bits(b[..., 4:8])).to(torch.float32)  # [rows, nb, 32]
    return (d * lv + m).reshape(rows, nb * QK)  # a product then a sum (no fma), as gguf.quants


FORMAT = register(BlockFormat(QT.Q5_1, quantize, dequantize))
