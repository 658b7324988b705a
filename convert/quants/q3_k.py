"""Q3_K: super-blocks of 256 = 16 sub-blocks of 16, value d*sc_j*q, q in -4..3, sc_j 6-bit signed (-32..31).

Block (110 bytes): hmask[32] (bit k of byte l: 3rd bit of the stored level q+4 of element 32k+l), qs[64] (low
2 bits of q+4, laid out as Q2_K), scales[12] (u_j = sc_j+32: bytes 0-7 hold u_j & 15 of sub-blocks j and j+8 in
the low/high nibble; byte 8+i holds u_(i+4k) >> 4 at bits 2k), d f16.
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
    quantize_rows,
    quantize_symmetric,
    read_f16,
    unpack_2bit,
)

TYPE_SIZE = 110
# offsets r: the sub-block's extreme element is tried at level -(4 + r) and at 3 + r
GRID = [-0.4 + 0.24 * i for i in range(6)]


@graph_search
def _search(x: torch.Tensor, imp: torch.Tensor | None, ws: Scratch | None):
    # x [n, 256] -> the search result (levels, scales) of each super-block
    n = x.shape[0]
    w = element_weights(x, imp, 2.0)
    r = quantize_symmetric(x.reshape(n, 16, 16), None if w is None else w.reshape(n, 16, 16), 4, -32, 31, GRID, ws)
    return r


def _quantize_blocks(x: torch.Tensor, imp: torch.Tensor | None, ws: Scratch) -> torch.Tensor:
    # x [n, 256] -> uint8 [n, 110]
    n = x.shape[0]
    r = _search(x, imp, ws)
    L = (r.L.reshape(n, QK_K).to(torch.int16) + 4).to(torch.uint8)  # 0..7
    hbit = (L >> 2).reshape(n, 8, 32)
    shifts = torch.arange(8, dtype=torch.uint8, device=x.device).reshape(1, 8, 1)
    hmask = (hbit << shifts).sum(dim=1, dtype=torch.int32).to(torch.uint8)  # [n, 32]
    qs = pack_2bit(L & 3)
    u = (r.sc + 32).to(torch.uint8)  # [n, 16], 0..63
    low = (u[:, :8] & 15) | ((u[:, 8:] & 15) << 4)
    u4 = (u >> 4).reshape(n, 4, 4)  # [n, k, i] = u_(4k+i) >> 4
    high = u4[:, 0] | (u4[:, 1] << 2) | (u4[:, 2] << 4) | (u4[:, 3] << 6)
    return torch.cat([hmask, qs, low, high, f16_bytes(r.d)], dim=1)


def quantize(w: torch.Tensor, importance: torch.Tensor | None) -> torch.Tensor:
    # w float32 [rows, cols] -> uint8 [rows, cols // 256 * 110]
    return quantize_rows(w, importance, TYPE_SIZE, _quantize_blocks)


with_fake(quantize, _search)


def dequantize(q: torch.Tensor) -> torch.Tensor:
    # q uint8 [rows, nb*110] -> float32 [rows, nb*256]
    rows = q.shape[0]
    b = q.reshape(-1, TYPE_SIZE)
    s8 = torch.arange(8, dtype=torch.uint8, device=q.device).reshape(1, 8, 1)
    hbit = ((b[:, 0:32].reshape(-1, 1, 32) >> s8) & 1).reshape(-1, QK_K)
    lv = (unpack_2bit(b[:, 32:96]).to(torch.int16) - 4 * (1 - hbit.to(torch.int16))).float().reshape(-1, 16, 16)
    sb = b[:, 96:108]
    low = torch.cat([sb[:, 0:8] & 15, sb[:, 0:8] >> 4], dim=1)  # [n, 16]
    s4 = torch.tensor([0, 2, 4, 6], dtype=torch.uint8, device=q.device).reshape(1, 4, 1)
    high = ((sb[:, 8:12].reshape(-1, 1, 4) >> s4) & 3).reshape(-1, 16)  # index 4k+i
    sc = (low | (high << 4)).to(torch.int16) - 32
    d = read_f16(b[:, 108:110])
    dl = (d[:, None] * sc.float())[..., None]
    return (dl * lv).reshape(rows, -1)


FORMAT = register(BlockFormat(QT.Q3_K, quantize, dequantize))
assert FORMAT.type_size == TYPE_SIZE and FORMAT.block_size == QK_K
