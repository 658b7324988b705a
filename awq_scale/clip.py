"""AWQ's clipping search, in the target GGUF format.

For each output row and each block of the target type (32 weights, or 256 for the K types), try clamping the
block to +-max|w| * (1 - i/n_grid) for i = 0 .. max_shrink*n_grid - 1, quantize the whole tensor with the real
quantizer, and keep per block the clamp whose partial dot products with sample inputs move least:
  err(row, block) = mean over tokens of (sum_{j in block} x_j * (q_j - w_j))^2, w the unclamped weight.
i = 0 is no clamping, and wins ties. Skipped for attn_q / attn_k, whose error is squeezed through q.k^T.
"""

from __future__ import annotations

import torch
from gguf import GGMLQuantizationType

from awq_gguf.convert.quants import fake_quantize

from .search import FLOAT_TYPES, block_size

NO_CLIP = ("attn_q", "attn_k")
_CHUNK = 1 << 24  # elements of the [nb, rows, tokens] error temporaries per step


def block_output_error(w: torch.Tensor, wq: torch.Tensor, x: torch.Tensor, bs: int) -> torch.Tensor:
    """w, wq [rows, cols], x [T, cols] -> [rows, nb]: mean over tokens of the squared per-block output change."""
    rows, cols = w.shape
    nb = cols // bs
    xb = x.float().T.reshape(nb, bs, -1)  # [nb, bs, T]
    step = max(1, _CHUNK // (nb * x.shape[0]))
    out = torch.empty(rows, nb, device=w.device)
    for r0 in range(0, rows, step):
        d = (wq[r0 : r0 + step] - w[r0 : r0 + step]).reshape(-1, nb, bs).transpose(0, 1)  # [nb, r, bs]
        out[r0 : r0 + step] = torch.bmm(d, xb).pow(2).mean(-1).T  # [r, nb]
    return out


def apply_clip(w: torch.Tensor, max_val: torch.Tensor) -> torch.Tensor:
    """w [rows, cols] with each (row, block) clamped to +-max_val [rows, nb]."""
    rows, cols = w.shape
    m = max_val.to(w.device, w.dtype)[..., None]  # [rows, nb, 1]
    wb = w.view(rows, max_val.shape[1], -1)  # [rows, nb, bs]
    return torch.maximum(torch.minimum(wb, m), -m).view(rows, cols)


@torch.no_grad()
def clip_search(w: torch.Tensor, qtype: GGMLQuantizationType, x: torch.Tensor, importance: torch.Tensor | None,
                max_shrink: float = 0.5, n_grid: int = 20) -> torch.Tensor | None:
    """w [rows, cols] float32, x [T, cols] sample inputs -> the best clamp bound [rows, nb] of each block, or
    None for a float type (nothing to clip)."""
    if qtype in FLOAT_TYPES or w.shape[1] % block_size(qtype):
        return None
    rows, cols = w.shape
    bs = block_size(qtype)
    org_max = w.view(rows, -1, bs).abs().amax(-1)  # [rows, nb]
    best_err = torch.full_like(org_max, float("inf"))
    best_max = org_max.clone()
    for i in range(int(max_shrink * n_grid)):
        max_val = org_max * (1 - i / n_grid)
        err = block_output_error(w, fake_quantize(apply_clip(w, max_val), qtype, importance), x, bs)  # [rows, nb]
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        best_max = torch.where(better, max_val, best_max)
    return best_max
