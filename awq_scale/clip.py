"""AWQ's clipping search, in the target GGUF format.

For each output row and each block of the target type (32 weights, or 256 for the K types), try clamping the
block to +-max|w| * (1 - i/n_grid) for i = 0 .. max_shrink*n_grid - 1, quantize the whole tensor with the real
quantizer, and keep per block the clamp whose partial dot products with the inputs move least:
  err(row, block) = mean over tokens of (sum_{j in block} x_j * (q_j - w_j))^2, w the unclamped weight.
i = 0 is no clamping, and wins ties. Skipped for attn_q / attn_k, whose error is squeezed through q.k^T.

Unlike AutoAWQ (512 sampled tokens), the error is exact over every calibration token, through each block's
second moment E[x_b x_b^T] [bs, bs]: err = d^T E[x_b x_b^T] d with d = q_b - w_b. Rare tokens matter here: the
first token of each window carries activations hundreds of times the others' (the attention sink), and a
clamp chosen without it can wreck that token's output.
"""

from __future__ import annotations

import torch
from gguf import GGMLQuantizationType

from awq_gguf.convert.quants import fake_quantize

from .search import FLOAT_TYPES, block_size

NO_CLIP = ("attn_q", "attn_k")


def block_moments(x: torch.Tensor, bs: int) -> torch.Tensor:
    """x [T, cols] -> [nb, bs, bs]: sum over tokens of x_b x_b^T for each block b of bs columns."""
    xb = x.reshape(x.shape[0], -1, bs).transpose(0, 1)  # [nb, T, bs]
    return torch.bmm(xb.transpose(1, 2), xb)


def scale_moments(m: torch.Tensor, s_cols: torch.Tensor) -> torch.Tensor:
    """Second moments m [nb, bs, bs] of x -> those of x / s_cols."""
    inv = (1.0 / s_cols.to(m.dtype)).view(m.shape[0], m.shape[1])  # [nb, bs]
    return m * inv[:, :, None] * inv[:, None, :]


def block_output_error(w: torch.Tensor, wq: torch.Tensor, moments: torch.Tensor) -> torch.Tensor:
    """w, wq [rows, cols], moments E[x_b x_b^T] [nb, bs, bs] -> [rows, nb]: mean over tokens of the squared
    change of each block's partial dot product."""
    nb, bs, _ = moments.shape
    d = (wq - w).reshape(w.shape[0], nb, bs).transpose(0, 1).to(moments.dtype)  # [nb, rows, bs]
    return (torch.bmm(d, moments) * d).sum(-1).T.float()  # [rows, nb]


def apply_clip(w: torch.Tensor, max_val: torch.Tensor) -> torch.Tensor:
    """w [rows, cols] with each (row, block) clamped to +-max_val [rows, nb]."""
    rows, cols = w.shape
    m = max_val.to(w.device, w.dtype)[..., None]  # [rows, nb, 1]
    wb = w.view(rows, max_val.shape[1], -1)  # [rows, nb, bs]
    return torch.maximum(torch.minimum(wb, m), -m).view(rows, cols)


@torch.no_grad()
def clip_search(w: torch.Tensor, qtype: GGMLQuantizationType, moments: torch.Tensor | None,
                importance: torch.Tensor | None, max_shrink: float = 0.5, n_grid: int = 20) -> torch.Tensor | None:
    """w [rows, cols] float32, moments E[x_b x_b^T] [nb, bs, bs] of its input (bs the type's block size) -> the
    best clamp bound [rows, nb] of each block, or None where there is nothing to clip (a float type)."""
    if qtype in FLOAT_TYPES or moments is None or w.shape[1] % block_size(qtype):
        return None
    rows, cols = w.shape
    bs = block_size(qtype)
    org_max = w.view(rows, -1, bs).abs().amax(-1)  # [rows, nb]
    best_err = torch.full_like(org_max, float("inf"))
    best_max = org_max.clone()
    for i in range(int(max_shrink * n_grid)):
        max_val = org_max * (1 - i / n_grid)
        err = block_output_error(w, fake_quantize(apply_clip(w, max_val), qtype, importance), moments)  # [rows, nb]
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        best_max = torch.where(better, max_val, best_max)
    return best_max
