"""Q6_K: super-blocks of 256 = 16 sub-blocks of 16, value d*sc_j*q, q in -32..31, sc_j int8.

Block (210 bytes): ql[128], qh[64], scales[16] int8, d f16. With stored level u = q+32 and element e = 128h+32k+l:
low 4 bits of u in ql[64h + 32*(k&1) + l] (low nibble for k < 2, high nibble for k >= 2), high 2 bits in
qh[32h + l] at bits 2k.
"""

from __future__ import annotations

import torch
from gguf import GGMLQuantizationType as QT

from . import BlockFormat, register
from .k_common import graph_search, with_fake, QK_K, Scratch, f16_bytes, quantize_rows, quantize_symmetric, read_f16

TYPE_SIZE = 210
# offsets r: the sub-block's extreme element is tried at level -(32 + r) and at 31 + r
GRID = [-1.0 + 0.4 * i for i in range(7)]


@graph_search
def _search(x: torch.Tensor, imp: torch.Tensor | None, ws: Scratch | None):
    # x [n, 256] -> the search result (levels, scales) of each super-block
    n = x.shape[0]
    # llama.cpp's Q6_K imatrix path weighs the error by the importance alone
    w = None if imp is None else imp.reshape(n, 16, 16)
    r = quantize_symmetric(x.reshape(n, 16, 16), w, 32, -128, 127, GRID, ws)
    return r


def _quantize_blocks(x: torch.Tensor, imp: torch.Tensor | None, ws: Scratch) -> torch.Tensor:
    # x [n, 256] -> uint8 [n, 210]
    n = x.shape[0]
    r = _search(x, imp, ws)
    u = (r.L.reshape(n, 2, 4, 32).to(torch.int16) + 32).to(torch.uint8)  # [n, h, k, l], 0..63
    lo = u & 15
    ql = torch.cat([lo[:, :, 0] | (lo[:, :, 2] << 4), lo[:, :, 1] | (lo[:, :, 3] << 4)], dim=2).reshape(n, 128)
    hi = u >> 4
    qh = (hi[:, :, 0] | (hi[:, :, 1] << 2) | (hi[:, :, 2] << 4) | (hi[:, :, 3] << 6)).reshape(n, 64)
    scales = r.sc.to(torch.int8).view(torch.uint8)
    return torch.cat([ql, qh, scales, f16_bytes(r.d)], dim=1)


def quantize(w: torch.Tensor, importance: torch.Tensor | None) -> torch.Tensor:
    # w float32 [rows, cols] -> uint8 [rows, cols // 256 * 210]
    return quantize_rows(w, importance, TYPE_SIZE, _quantize_blocks)


with_fake(quantize, _search)


def dequantize(q: torch.Tensor) -> torch.Tensor:
    # q uint8 [rows, nb*210] -> float32 [rows, nb*256]
    rows = q.shape[0]
    b = q.reshape(-1, TYPE_SIZE)
    ql = b[:, 0:128].reshape(-1, 2, 2, 32)  # [n, h, k&1, l]
    lo = torch.stack([ql[:, :, 0] & 15, ql[:, :, 1] & 15, ql[:, :, 0] >> 4, ql[:, :, 1] >> 4], dim=2)  # [n, h, k, l]
    s4 = torch.tensor([0, 2, 4, 6], dtype=torch.uint8, device=q.device).reshape(1, 1, 4, 1)
    hi = (b[:, 128:192].reshape(-1, 2, 1, 32) >> s4) & 3  # [n, h, k, l]
    lv = ((lo | (hi << 4)).to(torch.int16) - 32).float().reshape(-1, 16, 16)
    sc = b[:, 192:208].contiguous().view(torch.int8).float()
    d = read_f16(b[:, 208:210])
    dl = (d[:, None] * sc)[..., None]
    return (dl * lv).reshape(rows, -1)


FORMAT = register(BlockFormat(QT.Q6_K, quantize, dequantize))
assert FORMAT.type_size == TYPE_SIZE and FORMAT.block_size == QK_K
