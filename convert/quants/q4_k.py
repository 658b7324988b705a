"""Q4_K: super-blocks of 256 = 8 sub-blocks of 32, value d*sc_j*q - dmin*m_j, q 4-bit, sc/m 6-bit.

Block (144 bytes): d f16, dmin f16, scales[12] (6-bit sc/m, get_scale_min_k4 layout), qs[128]: byte 32c+l holds
element 64c+l in its low nibble and element 64c+32+l in its high nibble.
"""

from __future__ import annotations

import torch
from gguf import GGMLQuantizationType as QT

from . import BlockFormat, register
from .k_common import (
    graph_search,
    with_fake,
    Scratch,
    QK_K,
    element_weights,
    f16_bytes,
    pack_scales_k4,
    quantize_affine,
    quantize_rows,
    read_f16,
    unpack_scales_k4,
)

TYPE_SIZE = 144
# offsets r of the trial inverse scales (15 + r) / (max - min) of the per-sub-block search
GRID = [-1.0 + 0.3 * i for i in range(9)]


@graph_search
def _search(x: torch.Tensor, imp: torch.Tensor | None, ws: Scratch | None):
    # x [n, 256] -> the search result (levels, scales) of each super-block
    n = x.shape[0]
    w = element_weights(x, imp, 2.0)
    r = quantize_affine(x.reshape(n, 8, 32), None if w is None else w.reshape(n, 8, 32), 15, 63, 63, GRID, ws)
    return r


def _quantize_blocks(x: torch.Tensor, imp: torch.Tensor | None, ws: Scratch) -> torch.Tensor:
    # x [n, 256] -> uint8 [n, 144]
    n = x.shape[0]
    r = _search(x, imp, ws)
    L = r.L.reshape(n, 4, 2, 32)
    qs = (L[:, :, 0] | (L[:, :, 1] << 4)).reshape(n, 128)
    return torch.cat([f16_bytes(r.d), f16_bytes(r.dmin), pack_scales_k4(r.sc, r.m), qs], dim=1)


def quantize(w: torch.Tensor, importance: torch.Tensor | None) -> torch.Tensor:
    # w float32 [rows, cols] -> uint8 [rows, cols // 256 * 144]
    return quantize_rows(w, importance, TYPE_SIZE, _quantize_blocks)


with_fake(quantize, _search)


def dequantize(q: torch.Tensor) -> torch.Tensor:
    # q uint8 [rows, nb*144] -> float32 [rows, nb*256]
    rows = q.shape[0]
    b = q.reshape(-1, TYPE_SIZE)
    d = read_f16(b[:, 0:2])
    dmin = read_f16(b[:, 2:4])
    sc, m = unpack_scales_k4(b[:, 4:16])
    shifts = torch.tensor([0, 4], dtype=torch.uint8, device=q.device).reshape(1, 1, 2, 1)
    lv = ((b[:, 16:].reshape(-1, 4, 1, 32) >> shifts) & 15).reshape(-1, 8, 32).float()
    dl = (d[:, None] * sc.float())[..., None]
    ml = (dmin[:, None] * m.float())[..., None]
    return (dl * lv - ml).reshape(rows, -1)


FORMAT = register(BlockFormat(QT.Q4_K, quantize, dequantize))
assert FORMAT.type_size == TYPE_SIZE and FORMAT.block_size == QK_K
