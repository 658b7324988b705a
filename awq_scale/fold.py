"""Folding a group's scales into the weights: prev op divided by s, the scaled linears' input columns times s.

The float model computes the same function afterwards (up to rounding): a norm's output channel c, or a
linear's output row c, is divided by s_c, and every linear reading that channel multiplies its column by s_c.
With GQA, v's rows are kv-head channels while o's input columns are query-head channels: o's column j reads
v row kv_row_of_column(j), so its scale is that row's.
"""

from __future__ import annotations

import torch

from .block import BlockConfig, Params
from .groups import ScaleGroup


def kv_row_of_column(cfg: BlockConfig, device: torch.device | str = "cpu") -> torch.Tensor:
    """int64 [n_head * head_dim]: the v row that attn_output's input column j reads.

    Column j belongs to query head h = j // head_dim, dimension d = j % head_dim; head h reads kv head
    h // (n_head / n_head_kv), whose v rows start at that kv head times head_dim.
    """
    j = torch.arange(cfg.n_head * cfg.head_dim, device=device)
    return (j // cfg.head_dim // cfg.n_rep) * cfg.head_dim + j % cfg.head_dim


def column_scales(group: ScaleGroup, s: torch.Tensor, cfg: BlockConfig) -> torch.Tensor:
    """A group's scales s [n_scale] -> the scales of its linears' input columns [n_cols]."""
    return s[kv_row_of_column(cfg, s.device)] if group.kv_repeat else s


def columns_to_scale_space(group: ScaleGroup, v: torch.Tensor, cfg: BlockConfig) -> torch.Tensor:
    """A per-input-column statistic v [n_cols] -> [n_scale]: averaged over the columns sharing one scale."""
    if not group.kv_repeat:
        return v
    idx = kv_row_of_column(cfg, v.device)
    out = torch.zeros(cfg.n_head_kv * cfg.head_dim, dtype=v.dtype, device=v.device).index_add_(0, idx, v)
    return out / cfg.n_rep


def scale_columns(w: torch.Tensor, s_cols: torch.Tensor) -> torch.Tensor:
    """w [rows, cols] with column j multiplied by s_cols[j]."""
    return w * s_cols.to(w.dtype)[None, :]


def fold_scales(p: Params, group: ScaleGroup, s: torch.Tensor, cfg: BlockConfig) -> Params:
    """A new parameter dict with s [n_scale] folded in (p itself is left unchanged)."""
    out = dict(p)
    prev_w = p[f"{group.prev}.weight"]
    sd = s.to(prev_w.dtype)
    if group.prev_is_norm:
        out[f"{group.prev}.weight"] = prev_w / sd  # [C]
    else:
        out[f"{group.prev}.weight"] = prev_w / sd[:, None]  # rows [n_scale, cols]
        if f"{group.prev}.bias" in p:
            out[f"{group.prev}.bias"] = p[f"{group.prev}.bias"] / sd
    s_cols = column_scales(group, s, cfg)
    for name in group.linears:
        out[f"{name}.weight"] = scale_columns(p[f"{name}.weight"], s_cols)
    return out
