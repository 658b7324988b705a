"""AWQ over a whole model, block by block: capture, scale search, fold, clip search, importance.

Only one block's float weights and activations are in memory at a time (plus the embeddings while the
first hidden states are built). Block i+1 sees block i's float outputs (no quantized propagation). Each
block: one pass over the calibration tokens collects per-column statistics of every linear's input (mean |x|,
mean x^2, per-block second moments for the clipping search) and a sample of them for the search's loss; the
groups' scales are searched on the block's original weights, folded in together, then each linear (but q/k)
gets its clipping search; the final importance of each linear is the mean x^2 of its input after scaling, and
for the linears whose type refines its levels (Q4_0, Q5_0, Q8_0: convert.quants.refine) the full second moments
E[x_b x_b^T] of that scaled input per block of 32 columns, which the final quantization uses.

The result is small: the scales of each group and the clamp bound of each clipped block (BlockResult.scales,
.clip_max), the importance and moments; apply_awq replays the first two on the source tensors.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Iterator

import torch
from gguf import GGMLQuantizationType
from tqdm import tqdm

from awq_gguf.convert.quants import fake_quantize, refinable
from awq_gguf.errors import AwqGgufError

from .block import (
    INPUT_OF, LINEARS, BlockConfig, Params, block_config, block_forward, block_params, embed, forward_in_chunks, rms_norm,
)
from .clip import NO_CLIP, apply_clip, block_moments, clip_search, scale_moments
from .fold import column_scales, fold_scales
from .groups import ScaleGroup, groups_for
from .host_copy import to_host
from .search import FLOAT_TYPES, GroupStats, SearchResult, block_size, search_group

logger = logging.getLogger(__name__)


class ActivationError(AwqGgufError):
    """The calibration forward produced NaN or Inf."""


@dataclass(frozen=True)
class AwqSettings:
    n_grid: int = 20  # exponent grid of the scale search
    act_only: bool = True  # try s = x_mean^r
    duo: bool = True  # try s = x_mean^r / w_mean^(1-r)
    clip: bool = True  # clipping search (never for attn_q / attn_k)
    max_shrink: float = 0.5
    clip_grid: int = 20
    loss_tokens: int = 4096  # tokens the search's loss is measured on (whole sequences for the attention;
    # for the other modules the same number of tokens from every position, so each window's first token, whose
    # activations dwarf the rest, is represented as often as in the whole calibration set)
    screen_tokens: int = 512  # every scale candidate is first scored on this many of the loss tokens; the
    # screen_keep best (and unit scales) are then scored on all loss_tokens. 0: no screening
    screen_keep: int = 4
    importance: bool = True  # quantize with post-scaling mean x^2 per column (search, clip and final)
    block_loss: bool = False  # also measure each block's output error, plain rounding vs AWQ (for the log)
    chunk_seqs: int = 8  # sequences per forward step of the capture pass
    seed: int = 0
    threads: int | None = None  # torch threads; None: leave torch's setting
    device: str = "cpu"  # where the block's work runs ("cuda" works: the quantizers are plain torch)
    progress: bool = True


@dataclass
class BlockReport:
    index: int
    seconds: float
    groups: list[tuple[ScaleGroup, SearchResult]] = field(default_factory=list)
    block_loss_rtn: float | None = None  # block output MSE, every linear plainly rounded to its type
    block_loss_awq: float | None = None  # same, with the AWQ scales, clips and importance

    @property
    def group_loss_before(self) -> float:
        return sum(r.loss_unit for _, r in self.groups)

    @property
    def group_loss_after(self) -> float:
        return sum(r.loss for _, r in self.groups)

    def line(self) -> str:
        text = (f"AWQ block {self.index}: group loss {self.group_loss_before:.4g} -> {self.group_loss_after:.4g}")
        if self.block_loss_rtn is not None:
            text += f", block output MSE {self.block_loss_rtn:.4g} -> {self.block_loss_awq:.4g}"
        kept = [g.prev + "->" + "/".join(g.linears) for g, r in self.groups if r.ratio is None]
        if kept:
            text += f", unit scales kept for {', '.join(kept)}"
        return text + f" ({self.seconds:.1f} s)"


@dataclass
class BlockResult:
    params: Params  # the block's tensors AWQ changed (scaled, clipped), keyed by stem ("attn_q.weight"), CPU
    importance: dict[str, torch.Tensor]  # "attn_q.weight" -> [cols] mean x^2 of the scaled input, CPU
    scales: dict[str, torch.Tensor]  # group prev stem ("attn_norm") -> its scales [n_scale]
    clip_max: dict[str, torch.Tensor]  # clipped linear stem -> clamp bound [rows, nb] of each block
    report: BlockReport
    # "attn_q.weight" -> [cols/32, 32, 32] E[x_b x_b^T] of the scaled input per block of 32 columns, for the
    # linears whose type refines its levels under them (convert.quants.refine); CPU
    moments: dict[str, torch.Tensor] = field(default_factory=dict)


def apply_awq(p: Params, scales: dict[str, torch.Tensor], clip_max: dict[str, torch.Tensor], cfg: BlockConfig,
              arch: str) -> Params:
    """Block parameters p with the groups' scales folded in (in group order), then the clamps applied."""
    out = dict(p)
    for group in groups_for(arch):
        if group.prev in scales:
            out = fold_scales(out, group, scales[group.prev].to(p[f"{group.prev}.weight"].device), cfg)
    for name, max_val in clip_max.items():
        out[f"{name}.weight"] = apply_clip(out[f"{name}.weight"], max_val)
    return out


class _Collector:
    """Capture callback for block_forward over chunks of sequences: statistics and samples of every input.

    For each input: sum |x| and sum x^2 per column, the sampled tokens (and for attn_in the sampled whole
    sequences), and for the block sizes asked in `moments` the per-block second moments sum x_b x_b^T."""

    def __init__(self, seq_idx: torch.Tensor, tok_idx: torch.Tensor, L: int, moments: dict[str, set[int]],
                 n_screen_seqs: int = 0, screen_tok: torch.Tensor | None = None) -> None:
        self.seq_idx, self.tok_idx, self.L = seq_idx, tok_idx, L  # sorted sampled sequences / flat token ids
        self.n_screen_seqs, self.screen_tok = n_screen_seqs, screen_tok  # screening subsample (see _sample)
        self.want_moments = moments
        self.abs_sum: dict[str, torch.Tensor] = {}
        self.sq_sum: dict[str, torch.Tensor] = {}
        self.moments: dict[tuple[str, int], torch.Tensor] = {}
        self.tokens: dict[str, list[torch.Tensor]] = {}
        self.seqs: list[torch.Tensor] = []
        self.count = 0

    def chunk(self, s0: int, s1: int) -> None:
        """The next forward covers sequences s0 .. s1-1."""
        t = self.tok_idx
        self._tok = t[(t >= s0 * self.L) & (t < s1 * self.L)] - s0 * self.L
        s = self.seq_idx
        self._seq = s[(s >= s0) & (s < s1)] - s0
        self.count += (s1 - s0) * self.L

    def __call__(self, name: str, x: torch.Tensor) -> None:
        flat = x.reshape(-1, x.shape[-1])  # [chunk tokens, cols]
        _accumulate(self.abs_sum, name, flat.abs().sum(0).double())  # [cols]
        _accumulate(self.sq_sum, name, flat.pow(2).sum(0).double())
        for bs in self.want_moments.get(name, ()):
            _accumulate(self.moments, (name, bs), block_moments(flat, bs).double())  # [nb, bs, bs]
        self.tokens.setdefault(name, []).append(flat[self._tok].clone())
        if name == "attn_in":
            self.seqs.append(x[self._seq].clone())

    def stats(self, name: str, attention_loss: bool) -> GroupStats:
        x_loss = torch.cat(self.seqs) if attention_loss else torch.cat(self.tokens[name])
        x_screen = None
        if attention_loss and 0 < self.n_screen_seqs < x_loss.shape[0]:
            x_screen = x_loss[: self.n_screen_seqs]
        elif not attention_loss and self.screen_tok is not None:
            x_screen = x_loss[self.screen_tok]
        return GroupStats((self.abs_sum[name] / self.count).float(), (self.sq_sum[name] / self.count).float(),
                          x_loss, x_screen)


def _accumulate(sums: dict, key, value: torch.Tensor) -> None:
    sums[key] = sums[key] + value if key in sums else value


def _sample(n: int, L: int, loss_tokens: int, gen: torch.Generator, screen_tokens: int = 0
            ) -> tuple[torch.Tensor, torch.Tensor, int, torch.Tensor | None]:
    """(sorted sequence ids for the attention loss, sorted flat token ids for the other losses, the number of
    those sequences to screen on, a bool mask over the token ids to screen on or None).

    Tokens are stratified by position: k = loss_tokens // L (at least 1) random sequences at each position,
    in k rounds of one token per position; the screening tokens are the first rounds, so they are stratified
    too. The screening sequences are the first of the (randomly drawn) loss sequences."""
    n_seq = min(n, max(1, loss_tokens // L))
    seq_idx = torch.randperm(n, generator=gen)[:n_seq].sort().values
    k = min(n, max(1, loss_tokens // L))
    seqs = torch.rand(n, L, generator=gen).argsort(dim=0)[:k]  # [k, L] distinct sequences per position
    tok_idx, order = (seqs * L + torch.arange(L)[None, :]).flatten().sort()
    k_screen = min(k, max(1, screen_tokens // L)) if screen_tokens else k
    n_screen = min(n_seq, max(1, screen_tokens // L)) if screen_tokens else n_seq
    screen = order // L < k_screen if k_screen < k else None  # round of each sorted token < k_screen
    return seq_idx, tok_idx, (n_screen if n_screen < n_seq else 0), screen


def _fake_quantize_block(p: Params, types: dict[str, GGMLQuantizationType],
                         importance: dict[str, torch.Tensor] | None) -> Params:
    q = dict(p)
    for name in LINEARS:
        imp = None if importance is None else importance[f"{name}.weight"]
        q[f"{name}.weight"] = fake_quantize(p[f"{name}.weight"].float(), types[name], imp)
    return q


@torch.no_grad()
def awq_block(p: Params, h: torch.Tensor, types: dict[str, GGMLQuantizationType], cfg: BlockConfig, arch: str,
              settings: AwqSettings, index: int = 0) -> BlockResult:
    """AWQ for one block. h [n, L, C] float32 is overwritten in place with the block's float output.

    The work runs on h's device; p is moved there."""
    start = time.perf_counter()
    dev = h.device
    p = {k: v.to(dev) for k, v in p.items()}
    n, L, _ = h.shape
    seq_idx, tok_idx, n_screen, screen_tok = _sample(n, L, settings.loss_tokens,
                                                     torch.Generator().manual_seed(settings.seed), settings.screen_tokens)
    seq_idx, tok_idx = seq_idx.to(dev), tok_idx.to(dev)
    screen_tok = None if screen_tok is None else screen_tok.to(dev)
    h_sample = h[seq_idx].clone() if settings.block_loss else None  # [n_seq, L, C]
    clipped = [name for name in LINEARS if settings.clip and name not in NO_CLIP and types[name] not in FLOAT_TYPES
               and p[f"{name}.weight"].shape[1] % block_size(types[name]) == 0]
    refined = [name for name in LINEARS if refinable(types[name]) and p[f"{name}.weight"].shape[1] % 32 == 0]
    moments: dict[str, set[int]] = {}
    for name in clipped:
        moments.setdefault(INPUT_OF[name], set()).add(block_size(types[name]))
    for name in refined:
        moments.setdefault(INPUT_OF[name], set()).add(32)

    # capture pass: statistics and samples of every linear's input; h becomes the float block output
    col = _Collector(seq_idx, tok_idx, L, moments, n_screen, screen_tok)
    for s0 in range(0, n, settings.chunk_seqs):
        s1 = min(n, s0 + settings.chunk_seqs)
        col.chunk(s0, s1)
        h[s0:s1] = block_forward(p, h[s0:s1], cfg, col)
    _check_finite(h, index)

    # scale search on the original weights, then all scales folded in together (as AutoAWQ)
    report = BlockReport(index, 0.0)
    scales: dict[str, torch.Tensor] = {}
    s_cols: dict[str, torch.Tensor] = {}  # linear stem -> scales of its input columns
    for group in groups_for(arch):
        inp = INPUT_OF[group.linears[0]]
        stats = col.stats(inp, attention_loss=inp == "attn_in")
        res = search_group(p, group, types, stats, cfg, settings.n_grid, settings.act_only, settings.duo,
                           settings.importance, settings.screen_keep)
        report.groups.append((group, res))
        scales[group.prev] = res.scales
        for name in group.linears:
            s_cols[name] = column_scales(group, res.scales, cfg)
    new = apply_awq(p, scales, {}, cfg, arch)

    # importance (post-scaling mean x^2), second moments for the level refinement, and clipping, per linear
    importance: dict[str, torch.Tensor] = {}
    refine_moments: dict[str, torch.Tensor] = {}
    clip_max: dict[str, torch.Tensor] = {}
    for name in LINEARS:
        sc = s_cols.get(name, torch.ones(p[f"{name}.weight"].shape[1], device=dev))
        x_sq = (col.sq_sum[INPUT_OF[name]] / col.count).float() / sc**2  # [cols]
        importance[f"{name}.weight"] = x_sq
        if name in refined:
            m32 = col.moments[(INPUT_OF[name], 32)] / col.count  # [cols/32, 32, 32]
            refine_moments[f"{name}.weight"] = scale_moments(m32, sc).float()
        if name in clipped:
            m = col.moments[(INPUT_OF[name], block_size(types[name]))] / col.count  # E[x_b x_b^T] [nb, bs, bs]
            imp = x_sq if settings.importance else None
            bound = clip_search(new[f"{name}.weight"], types[name], scale_moments(m, sc), imp, settings.max_shrink,
                                settings.clip_grid)
            if bound is not None:
                clip_max[name] = bound
    new = apply_awq(new, {}, clip_max, cfg, arch)

    if h_sample is not None:
        ref = block_forward(p, h_sample, cfg)
        rtn = block_forward(_fake_quantize_block(p, types, None), h_sample, cfg)
        awq = block_forward(_fake_quantize_block(new, types, importance if settings.importance else None),
                            h_sample, cfg)
        report.block_loss_rtn = float((rtn - ref).double().pow(2).mean())
        report.block_loss_awq = float((awq - ref).double().pow(2).mean())
    report.seconds = time.perf_counter() - start
    changed = {k: to_host(v) for k, v in new.items() if v is not p.get(k)}
    return BlockResult(changed, {k: v.cpu() for k, v in importance.items()},
                       {k: v.cpu() for k, v in scales.items()}, {k: v.cpu() for k, v in clip_max.items()}, report,
                       {k: v.cpu() for k, v in refine_moments.items()})


def iter_awq(source, types: dict[str, GGMLQuantizationType], calib_tokens: torch.Tensor,
             settings: AwqSettings | None = None, start: int = 0) -> Iterator[tuple[int, BlockResult]]:
    """(block index, result) for each block in order from `start`, then (n_layer, the final statistics).

    Blocks before `start` (finished in an earlier run) are only run forward, to rebuild their outputs. The
    final result holds the importance of the output head (output.weight, or a tied token_embd.weight; empty
    where the head stays a float). Result keys are stems,
    see BlockResult.
    """
    settings = settings or AwqSettings()
    threads = torch.get_num_threads()
    if settings.threads:
        torch.set_num_threads(settings.threads)
    try:
        arch = source.arch.gguf_name
        groups_for(arch)  # unsupported architectures fail before any work
        cfg = block_config(source)
        by_name = {t.name: t for t in source.tensors}
        embd = by_name["token_embd.weight"].load_checked()
        h = embed(embd, calib_tokens.long()).to(settings.device)  # [n, L, C] float32
        del embd
        bar = tqdm(total=source.n_layer, desc="AWQ", unit="block", disable=not settings.progress)
        for i in range(source.n_layer):
            if i < start:
                p = {k: v.to(h.device) for k, v in block_params(source, i).items()}
                forward_in_chunks(p, h, cfg, settings.chunk_seqs)
                _check_finite(h, i)
                bar.update(1)
                continue
            block_types = {stem: types[f"blk.{i}.{stem}.weight"] for stem in LINEARS}
            result = awq_block(block_params(source, i), h, block_types, cfg, arch, settings, i)
            (bar.write if settings.progress else logger.info)(result.report.line())
            bar.update(1)
            yield i, result
        bar.close()
        final: dict[str, torch.Tensor] = {}
        final_moments: dict[str, torch.Tensor] = {}
        # the output head: output.weight, or with tied embeddings token_embd.weight (its rows are read as
        # embeddings too, where no column weighting applies; as the head, its input is the final normed state)
        head = "output.weight" if "output.weight" in by_name else "token_embd.weight"
        if types.get(head) not in (None, *FLOAT_TYPES):
            norm = by_name["output_norm.weight"].load_checked().to(h.device)
            x = rms_norm(h, norm, cfg.eps).reshape(-1, h.shape[-1])
            final[head] = x.pow(2).mean(0).cpu()
            if refinable(types[head]) and x.shape[1] % 32 == 0:
                final_moments[head] = (block_moments(x, 32).double() / x.shape[0]).float().cpu()
        yield source.n_layer, BlockResult({}, final, {}, {}, BlockReport(-1, 0.0), final_moments)
    finally:
        torch.set_num_threads(threads)


def _check_finite(h: torch.Tensor, i: int) -> None:
    if not bool(torch.isfinite(h).all()):
        raise ActivationError(
            f"block {i} produced NaN or Inf activations on the calibration text; the model's weights or "
            f"hidden states overflow float32 there"
        )


def run_awq(source, types: dict[str, GGMLQuantizationType], calib_tokens: torch.Tensor,
            settings: AwqSettings | None = None) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """AWQ for a whole ModelSource.

    types: every tensor's GGUF type (convert.mix.plan_types); calib_tokens: int [n, L] (calib.calibration_tokens).
    Returns (weights, importance), keyed by GGUF tensor name: weights holds each tensor AWQ changed (norms,
    linears, v biases) as float32 in the source's layout, to be quantized instead of the source's tensor;
    importance holds, for every block linear (and an untied output.weight), the [cols] float32 vector to pass
    as `importance` to convert.quants.quantize.
    """
    weights: dict[str, torch.Tensor] = {}
    importance: dict[str, torch.Tensor] = {}
    for i, result in iter_awq(source, types, calib_tokens, settings):
        prefix = f"blk.{i}." if i < source.n_layer else ""
        weights.update({prefix + k: v for k, v in result.params.items()})
        importance.update({prefix + k: v for k, v in result.importance.items()})
    return weights, importance
