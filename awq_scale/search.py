"""The AWQ scale search for one group, scored with the GGUF quantizer each linear will really get.

Candidates (AutoAWQ's auto_scale): for r = 0, 1/n_grid, .., (n_grid-1)/n_grid
  activation-only  s = x_mean^r
  duo              s = x_mean^r / (w_mean^(1-r) + 1e-4)
each clamped to >= 1e-4 and normalized by sqrt(max(s) * min(s)). x_mean is the mean |x| of each input channel
over all calibration tokens; w_mean the mean over output rows of |w| / (max |w| of its quantization block).
Loss: mean squared error of the group's module output (attention, MLP or one linear) against float, with the
group's linears replaced by fake_quantize(W * s, type, importance / s^2) / s. Unit scales win ties.

Screening (when the stats carry a smaller screening sample): every candidate's loss is first measured on the
screening sample; the `keep` best of them and unit scales are then measured on the whole loss sample, which
decides. Every grid point is still quantized and scored; only the expensive forward on many tokens is saved
for the candidates that cannot win.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

from awq_gguf.convert.quants import fake_quantize

from .block import BlockConfig, Params, module_forward
from .fold import column_scales, columns_to_scale_space, scale_columns
from .groups import ScaleGroup

FLOAT_TYPES = (GGMLQuantizationType.F32, GGMLQuantizationType.F16, GGMLQuantizationType.BF16)


@dataclass(frozen=True)
class GroupStats:
    """What the search needs about a group's input (the linears' and the loss module's input are one)."""

    x_mean: torch.Tensor  # [n_cols] mean |x| per input column over all calibration tokens
    x_sq: torch.Tensor  # [n_cols] mean x^2 per input column (the quantizer's importance before scaling)
    x_loss: torch.Tensor  # module input sample: [n_seq, L, C] for the attention, [T, cols] otherwise
    x_screen: torch.Tensor | None = None  # a smaller sample of the same kind, to screen candidates on


@dataclass(frozen=True)
class SearchResult:
    scales: torch.Tensor  # [n_scale] float32; all ones when scaling did not lower the loss
    loss_unit: float  # loss with unit scales (plain quantization)
    loss: float  # loss with `scales`
    ratio: float | None  # the winning exponent r, None when unit scales were kept
    duo: bool | None  # whether the winner is of the duo form


def block_size(qtype: GGMLQuantizationType) -> int:
    return GGML_QUANT_SIZES[qtype][0]


def weight_mean(p: Params, group: ScaleGroup, types: dict[str, GGMLQuantizationType], cfg: BlockConfig) -> torch.Tensor:
    """[n_scale]: mean over all the group's output rows of |w| / max |w| of its quantization block."""
    parts = []
    for name in group.linears:
        w = p[f"{name}.weight"].float()  # [rows, cols]
        bs = block_size(types[name]) if w.shape[1] % block_size(types[name]) == 0 else w.shape[1]
        blocks = w.abs().view(w.shape[0], -1, bs)  # [rows, nb, bs]
        parts.append((blocks / (blocks.amax(-1, keepdim=True) + 1e-6)).view_as(w))
    w_mean = torch.cat(parts).mean(0)  # [cols]
    return columns_to_scale_space(group, w_mean, cfg)


def candidates(x_mean: torch.Tensor, w_mean: torch.Tensor, n_grid: int, act_only: bool = True,
               duo: bool = True) -> list[tuple[float, bool, torch.Tensor]]:
    """(r, is_duo, s [n_scale]) for every grid point; the act-only r = 0 point (unit scales) is left out."""
    out = []
    for i in range(n_grid):
        r = i / n_grid
        forms = ([False] if act_only and i > 0 else []) + ([True] if duo else [])
        for is_duo in forms:
            s = x_mean.pow(r) / (w_mean.pow(1 - r) + 1e-4) if is_duo else x_mean.pow(r)
            s = s.clamp(min=1e-4)
            s = s / (s.max() * s.min()).sqrt()
            s = torch.where(torch.isfinite(s), s, torch.ones_like(s))
            out.append((r, is_duo, s.float()))
    return out


def quantized_params(p: Params, group: ScaleGroup, s: torch.Tensor, types: dict[str, GGMLQuantizationType],
                     cfg: BlockConfig, x_sq: torch.Tensor | None) -> Params:
    """p with each linear of the group replaced by fake_quantize(W * s, type, x_sq / s^2) / s (float32)."""
    s_cols = column_scales(group, s, cfg).float()  # [n_cols]
    imp = None if x_sq is None else (x_sq.float() / s_cols**2)  # [n_cols]
    q = dict(p)
    # linears of one type are quantized as one stacked matrix (rows are independent: the same values, fewer calls)
    for qtype in dict.fromkeys(types[name] for name in group.linears):
        names = [name for name in group.linears if types[name] == qtype]
        w = torch.cat([scale_columns(p[f"{name}.weight"].float(), s_cols) for name in names])  # [sum rows, n_cols]
        wq = fake_quantize(w, qtype, imp) / s_cols[None, :]
        for name, part in zip(names, wq.split([p[f"{name}.weight"].shape[0] for name in names])):
            q[f"{name}.weight"] = part
    return q


def module_loss(p: Params, group: ScaleGroup, x: torch.Tensor, ref: torch.Tensor, cfg: BlockConfig) -> float:
    out = module_forward(p, group.inspect, x, cfg)
    return float(torch.nn.functional.mse_loss(out, ref))  # float32 (pairwise sums): ample to rank candidates


@torch.no_grad()
def search_group(p: Params, group: ScaleGroup, types: dict[str, GGMLQuantizationType], stats: GroupStats,
                 cfg: BlockConfig, n_grid: int = 20, act_only: bool = True, duo: bool = True,
                 importance: bool = True, keep: int = 4) -> SearchResult:
    """The best scales for `group` of block parameters p (float32), keyed by stem in `types`.

    keep: candidates measured on the whole loss sample after screening (when stats.x_screen is given)."""
    n_scale = columns_to_scale_space(group, stats.x_mean, cfg).shape[0]
    unit = torch.ones(n_scale, device=stats.x_mean.device)
    if all(types[name] in FLOAT_TYPES for name in group.linears):  # nothing is quantized: nothing to protect
        return SearchResult(unit, 0.0, 0.0, None, None)
    x_sq = stats.x_sq if importance else None
    x_mean = columns_to_scale_space(group, stats.x_mean.float(), cfg)
    w_mean = weight_mean(p, group, types, cfg)
    cands = candidates(x_mean, w_mean, n_grid, act_only, duo)
    screen = stats.x_screen is not None and keep < len(cands)
    x1 = stats.x_screen if screen else stats.x_loss
    ref1 = module_forward(p, group.inspect, x1, cfg)

    scored: list[tuple[float, int, Params]] = []  # (screening loss, candidate index, quantized params), best first
    for i, (_, _, s) in enumerate(cands):
        q = quantized_params(p, group, s, types, cfg, x_sq)
        scored.append((module_loss(q, group, x1, ref1, cfg), i, q))
        scored.sort(key=lambda t: (t[0], t[1]))
        if screen and len(scored) > keep:
            scored.pop()  # only the kept candidates' quantized weights stay in memory
    q_unit = quantized_params(p, group, unit, types, cfg, x_sq)
    if screen:
        ref = module_forward(p, group.inspect, stats.x_loss, cfg)
        scored = [(module_loss(q, group, stats.x_loss, ref, cfg), i, q) for _, i, q in scored]
        loss_unit = module_loss(q_unit, group, stats.x_loss, ref, cfg)
    else:
        loss_unit = module_loss(q_unit, group, x1, ref1, cfg)
    loss, i, _ = min(scored, key=lambda t: (t[0], t[1]), default=(loss_unit, -1, None))  # first wins ties
    if not loss < loss_unit:  # unit scales win ties (and stay where there is no candidate)
        return SearchResult(unit, loss_unit, loss_unit, None, None)
    r, is_duo, s = cands[i]
    return SearchResult(s, loss_unit, loss, r, is_duo)
