"""Q4_0: blocks of 32 weights, fp16 d then 16 bytes of 4-bit levels; weight = d * (q - 8), q in 0..15.

Byte j of the levels holds q_j in its low nibble and q_(j+16) in its high nibble.
"""

from __future__ import annotations

import torch
from gguf import GGMLQuantizationType as QT

from . import BlockFormat, QuantizeFn, register
from .block_search import (
    QK, element_weights, f16_bytes, f16_from_bytes, map_row_chunks, pack_nibbles, safe_recip, search_symmetric,
    signed_absmax, to_f16, unpack_nibbles,
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


def _quantizer(search: bool) -> QuantizeFn:
    @torch.no_grad()
    def quantize(w: torch.Tensor, importance: torch.Tensor | None) -> torch.Tensor:
        # w: float32 [rows, cols] -> uint8 [rows, cols // 32 * 18]
        rows, cols = w.shape

        def chunk(wc: torch.Tensor) -> torch.Tensor:  # [r, cols] -> [r, row_bytes]
            wt = element_weights(wc, importance)
            x = wc.reshape(-1, QK)  # [r * cols/32, 32]
            d, q = ref_blocks(x)
            if search:
                d, q = search_symmetric(x, None if wt is None else wt.reshape(-1, QK), QMIN, QMAX, d, GRID)
            else:
                d = to_f16(d)
            return _pack(d, q).view(wc.shape[0], -1)

        return map_row_chunks(chunk, w, cols // QK * TYPE_SIZE, torch.uint8)

    return quantize


quantize = _quantizer(search=True)
quantize_ref = _quantizer(search=False)  # llama.cpp's plain reference rounding, byte for byte


@torch.no_grad()
def dequantize(q: torch.Tensor) -> torch.Tensor:
    # q: uint8 [rows, nb * 18] -> float32 [rows, nb * 32]
    rows, nb = q.shape[0], q.shape[1] // TYPE_SIZE
    b = q.reshape(rows, nb, TYPE_SIZE)  # [rows, nb, 18]
    d = f16_from_bytes(b[..., 0:2])  # [rows, nb, 1]
    lv = (unpack_nibbles(b[..., 2:]) - 8).to(torch.float32)  # [rows, nb, 32]
    return (d * lv).reshape(rows, nb * QK)


FORMAT = register(BlockFormat(QT.Q4_0, quantize, dequantize))
