"""Q4_0: blocks of 32 weights, fp16 d then 16 bytes of 4-bit levels; weight = d * (q - 8), q in 0..15.

Byte j of the levels holds q_j in its low nibble and q_(j+16) in its high nibble.
"""

from __future__ import annotations

import torch
from gguf import GGMLQuantizationType as QT

from . import BlockFormat, register
from .refine import symmetric_refiner
from .block_search import (
    block_quantizer,
    QK, f16_bytes, f16_from_bytes, pack_nibbles, safe_recip, search_symmetric,
    signed_absmax, unpack_nibbles,
)

TYPE_SIZE = 18
QMIN, QMAX = -8, 7  # signed levels (stored q - 8)
# Search targets: the block's largest-magnitude weight is mapped to level -t (make_qx_quants tries
# -(8 + 0.1*k) for k in -9..9; the wider, coarser grid here did slightly better on real and gaussian weights).
GRID = tuple(6.0 + 0.25 * k for k in range(13))  # 6.0 .. 9.0


def ref_blocks(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """llama.cpp's quantize_row_q4_0_ref on blocks x [n, 32] -> (fp32 d [n, 1], signed levels [n, 32] as float)."""
    d = signed_absmax(x) / -8.0
    q = torch.trunc(x * safe_recip(d) + 8.5).clamp_(0, 15)
    return d, q - 8


def _pack(d16: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """d [n, 1], signed levels [n, 32] -> uint8 [n, 18]."""
    return torch.cat([f16_bytes(d16), pack_nibbles(q + 8)], dim=1)


def _levels(b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """blocks uint8 [n, 18] -> (d [n, 1], signed levels [n, 32] as float)."""
    return f16_from_bytes(b[:, 0:2]), (unpack_nibbles(b[:, 2:]) - 8).to(torch.float32)


def _search(x: torch.Tensor, wt: torch.Tensor | None, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return search_symmetric(x, wt, QMIN, QMAX, d, GRID)


quantize = block_quantizer(ref_blocks, _pack, TYPE_SIZE, _search)
quantize.refine = symmetric_refiner(QMIN, QMAX, TYPE_SIZE, _levels, _pack)  # type: ignore[attr-defined]
quantize_ref = block_quantizer(ref_blocks, _pack, TYPE_SIZE, None)  # llama.cpp's plain reference rounding, byte for byte


@torch.no_grad()
def dequantize(q: torch.Tensor) -> torch.Tensor:
    # q: uint8 [rows, nb * 18] -> float32 [rows, nb * 32]
    rows, nb = q.shape[0], q.shape[1] // TYPE_SIZE
    b = q.reshape(rows, nb, TYPE_SIZE)  # [rows, nb, 18]
    d = f16_from_bytes(b[..., 0:2])  # [rows, nb, 1]
    lv = (unpack_nibbles(b[..., 2:]) - 8).to(torch.float32)  # [rows, nb, 32]
    return (d * lv).reshape(rows, nb * QK)


FORMAT = register(BlockFormat(QT.Q4_0, quantize, dequantize))
