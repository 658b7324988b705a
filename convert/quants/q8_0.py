"""Q8_0: blocks of 32 weights, fp16 d then 32 int8 levels; weight = d * q.

Without importance this is llama.cpp's quantize_row_q8_0_ref exactly (d = amax/127, q = roundf(x/d)), the
format's definition and byte for byte what llama-quantize and gguf.quants write; at 8 bits a scale search gains
next to nothing there. With importance (AWQ, imatrix) a small search over d minimizes the weighted error.
"""

from __future__ import annotations

import torch
from gguf import GGMLQuantizationType as QT

from . import BlockFormat, register
from .block_search import (
    QK, element_weights, f16_bytes, f16_from_bytes, map_row_chunks, round_half_away, safe_recip, search_symmetric,
    to_f16,
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


@torch.no_grad()
def quantize(w: torch.Tensor, importance: torch.Tensor | None) -> torch.Tensor:
    # w: float32 [rows, cols] -> uint8 [rows, cols // 32 * 34]
    rows, cols = w.shape

    def chunk(wc: torch.Tensor) -> torch.Tensor:  # [r, cols] -> [r, row_bytes]
        x = wc.reshape(-1, QK)
        d, q = ref_blocks(x)
        if importance is None:
            d = to_f16(d)
        else:
            wt = element_weights(wc, importance).reshape(-1, QK)
            d, q = search_symmetric(x, wt, QMIN, QMAX, d, GRID)
        return _pack(d, q).view(wc.shape[0], -1)

    return map_row_chunks(chunk, w, cols // QK * TYPE_SIZE, torch.uint8)


@torch.no_grad()
def quantize_ref(w: torch.Tensor, importance: torch.Tensor | None = None) -> torch.Tensor:
    """llama.cpp's plain reference rounding (importance ignored): same bytes as quantize(w, None)."""
    return quantize(w, None)


@torch.no_grad()
def dequantize(q: torch.Tensor) -> torch.Tensor:
    # q: uint8 [rows, nb * 34] -> float32 [rows, nb * 32]
    rows, nb = q.shape[0], q.shape[1] // TYPE_SIZE
    b = q.reshape(rows, nb, TYPE_SIZE)  # [rows, nb, 34]
    d = f16_from_bytes(b[..., 0:2])  # [rows, nb, 1]
    lv = b[..., 2:].contiguous().view(torch.int8).to(torch.float32)  # [rows, nb, 32]
    return (d * lv).reshape(rows, nb * QK)


FORMAT = register(BlockFormat(QT.Q8_0, quantize, dequantize))
