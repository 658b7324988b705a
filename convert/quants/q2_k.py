"""Q2_K: super-blocks of 256 = 16 sub-blocks of 16, value d*sc_j*q - dmin*m_j, q 2-bit, sc/m 4-bit.

Block (84 bytes): scales[16] (sc_j in the low nibble, m_j in the high nibble), qs[64] (2-bit levels, byte 32h+l
holds element 128h+32k+l at bits 2k), d f16, dmin f16.
"""

from __future__ import annotations

import torch
from gguf import GGMLQuantizationType as QT

from . import BlockFormat, register
from .k_common import (
    graph_search,
    with_fake,
    QK_K,
    Scratch,
    element_weights,
    f16_bytes,
    pack_2bit,
    quantize_affine,
    quantize_rows,
    read_f16,
    unpack_2bit,
)

TYPE_SIZE = 84
# offsets r of the trial inverse scales (3 + r) / (max - min) of the per-sub-block search
GRID = [-0.9 + 0.7 * i / 3 for i in range(10)]


@graph_search
def _search(x: torch.Tensor, imp: torch.Tensor | None, ws: Scratch | None):
    # x [n, 256] -> the search result (levels, scales) of each super-block
    n = x.shape[0]
    w = element_weights(x, imp, 1.0)
    r = quantize_affine(x.reshape(n, 16, 16), None if w is None else w.reshape(n, 16, 16), 3, 15, 15, GRID, ws)
    return r


def _quantize_blocks(x: torch.Tensor, imp: torch.Tensor | None, ws: Scratch) -> torch.Tensor:
    # x [n, 256] -> uint8 [n, 84]
    n = x.shape[0]
    r = _search(x, imp, ws)
    scales = r.sc | (r.m << 4)
    return torch.cat([scales, pack_2bit(r.L.reshape(n, QK_K)), f16_bytes(r.d), f16_bytes(r.dmin)], dim=1)


def quantize(w: torch.Tensor, importance: torch.Tensor | None) -> torch.Tensor:
    # w float32 [rows, cols] -> uint8 [rows, cols // 256 * 84]
    return quantize_rows(w, importance, TYPE_SIZE, _quantize_blocks)


with_fake(quantize, _search)


def dequantize(q: torch.Tensor) -> torch.Tensor:
    # q uint8 [rows, nb*84] -> float32 [rows, nb*256]
    rows = q.shape[0]
    b = q.reshape(-1, TYPE_SIZE)
    scales = b[:, 0:16]
    lv = unpack_2bit(b[:, 16:80]).reshape(-1, 16, 16).float()
    d = read_f16(b[:, 80:82])
    dmin = read_f16(b[:, 82:84])
    dl = (d[:, None] * (scales & 15).float())[..., None]
    ml = (dmin[:, None] * (scales >> 4).float())[..., None]
    return (dl * lv - ml).reshape(rows, -1)


FORMAT = register(BlockFormat(QT.Q2_K, quantize, dequantize))
assert FORMAT.type_size == TYPE_SIZE and FORMAT.block_size == QK_K
