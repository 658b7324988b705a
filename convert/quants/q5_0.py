"""Q5_0: blocks of 32 weights, fp16 d, u32 qh, 16 bytes of low nibbles; weight = d * (q - 16), q in 0..31.

Bit j of qh (little-endian) is bit 4 of q_j; byte j of qs holds the low nibbles of q_j and q_(j+16).
"""

from __future__ import annotations

import torch
from gguf import GGMLQuantizationType as QT

from . import BlockFormat, register
from .refine import symmetric_refiner
from .block_search import (
    block_quantizer,
    QK, f16_bytes, f16_from_bytes, pack_high_bits, pack_nibbles, safe_recip,
    search_symmetric, signed_absmax, unpack_high_bits, unpack_nibbles,
)

TYPE_SIZE = 22
QMIN, QMAX = -16, 15  # signed levels (stored q - 16)
# Search targets: the block's largest-magnitude weight is mapped to level -t.
GRID = tuple(13.0 + 0.25 * k for k in range(17))  # 13.0 .. 17.0


def ref_blocks(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """llama.cpp's quantize_row_q5_0_ref on blocks x [n, 32] -> (fp32 d [n, 1], signed levels [n, 32] as float)."""
    d = signed_absmax(x) / -16.0
    q = torch.trunc(x * safe_recip(d) + 16.5).clamp_(0, 31)
    return d, q - 16


def _pack(d16: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """d [n, 1], signed levels [n, 32] -> uint8 [n, 22]."""
    u = q + 16
    return torch.cat([f16_bytes(d16), pack_high_bits(u), pack_nibbles(u)], dim=1)


def _levels(b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """blocks uint8 [n, 22] -> (d [n, 1], signed levels [n, 32] as float)."""
    return f16_from_bytes(b[:, 0:2]), ((unpack_nibbles(b[:, 6:]) | unpack_high_bits(b[:, 2:6])) - 16).to(torch.float32)


def _search(x: torch.Tensor, wt: torch.Tensor | None, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return search_symmetric(x, wt, QMIN, QMAX, d, GRID)


quantize = block_quantizer(ref_blocks, _pack, TYPE_SIZE, _search)
quantize.refine = symmetric_refiner(QMIN, QMAX, TYPE_SIZE, _levels, _pack)  # type: ignore[attr-defined]
quantize_ref = block_quantizer(ref_blocks, _pack, TYPE_SIZE, None)  # llama.cpp's plain reference rounding, byte for byte


@torch.no_grad()
def dequantize(q: torch.Tensor) -> torch.Tensor:
    # q: uint8 [rows, nb * 22] -> float32 [rows, nb * 32]
    rows, nb = q.shape[0], q.shape[1] // TYPE_SIZE
    b = q.reshape(rows, nb, TYPE_SIZE)  # [rows, nb, 22]
    d = f16_from_bytes(b[..., 0:2])  # [rows, nb, 1]
    lv = (unpack_nibbles(b[..., 6:]) | unpack_high_bits(b[..., 2:6])) - 16  # [rows, nb, 32]
    return (d * lv.to(torch.float32)).reshape(rows, nb * QK)


FORMAT = register(BlockFormat(QT.Q5_0, quantize, dequantize))
