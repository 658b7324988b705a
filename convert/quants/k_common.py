"""Shared machinery of the K-quant super-block formats Q2_K, Q3_K, Q4_K, Q5_K and Q6_K.

Every K format splits a row into super-blocks of 256 weights and each super-block into sub-blocks (16 or 32
weights). A sub-block decodes to either
  affine     (Q2_K, Q4_K, Q5_K):  d*sc_j * q - dmin*m_j,  q in [0, nmax], sc_j, m_j unsigned small integers
  symmetric  (Q3_K, Q6_K):        d*sc_j * q,             q in [-nlo, nlo-1], sc_j signed small integers
with d (and dmin) fp16 per super-block. The search minimizes sum_i wt_i (x_i - value_i)^2 per super-block
(wt_i = 1 without importance, llama.cpp's imatrix weighting with it) in four stages:
  1. per sub-block float fit, as make_qkx2/make_qx_quants: a grid of inverse scales, levels by rounding, a
     weighted least-squares fit of scale (and min) to those levels, the best candidate kept, then a couple of
     Lloyd steps (re-round against the fit, refit);
  2. the sub-block scales (and mins) quantized to their integer fields: a grid over the super-block scale,
     scored by the squared scale error weighted by each sub-block's sensitivity (sum wt*q^2, sum wt), and a
     least-squares refit (make_qp_quants' role);
  3. alternating refinement on the stored values: re-round the levels against the fp16/integer scales (as
     llama.cpp does after quantizing the scales), refit the integer sub-block scales given the levels, refit
     d (and dmin) over the super-block; the best state seen, scored exactly, is kept;
  4. polish: each sub-block's integer scale (and min) is moved by +-1 where the exact error after re-rounding
     its levels goes down.
The error of a candidate comes from per-sub-block sums (sum wt*q, sum wt*q^2, sum wt*q*x), float64 where a
difference against sum wt*x^2 is taken. Everything is vectorized over all super-blocks of a chunk; the only
Python loops run over the few candidates of each stage.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from .compiled import enabled as compiled_enabled, maybe_compile

QK_K = 256  # weights per super-block

# Super-blocks per chunk: bounds the temporaries (a few float32 tensors of chunk*256 elements); on CPU a chunk
# whose temporaries stay near cache size is fastest, on a GPU larger chunks amortize the kernel launches.
CHUNK_BLOCKS = {"cpu": 4096, "cuda": 65536}
# the compiled whole search (graph_search) keeps its temporaries in fused kernels: larger chunks, fewer launches
CHUNK_BLOCKS_GRAPH = int(os.environ.get("AWQ_GGUF_GRAPH_CHUNK", str(1 << 18)))

F16_MAX = 65504.0


# ---------------------------------------------------------------------------------------------------------
# fp16 fields and byte plumbing


def to_f16(t: torch.Tensor) -> torch.Tensor:
    """float -> nearest fp16 value (saturating), back as float32: what a stored fp16 field decodes to."""
    return t.float().clamp(-F16_MAX, F16_MAX).to(torch.float16).to(torch.float32)


def f16_bytes(t: torch.Tensor) -> torch.Tensor:
    """float [n] (already fp16-representable) -> uint8 [n, 2], little-endian fp16."""
    return t.to(torch.float16).contiguous().view(torch.uint8).reshape(-1, 2)


def read_f16(b: torch.Tensor) -> torch.Tensor:
    """uint8 [n, 2] -> float32 [n]."""
    return b.contiguous().view(torch.float16).reshape(-1).float()


class Scratch:
    """Reusable float32 buffers for the large temporaries (fresh multi-MB allocations are slow on CPU)."""

    def __init__(self, device: torch.device):
        self.device = device
        self._bufs: dict[str, torch.Tensor] = {}

    def get(self, key: str, shape: Sequence[int]) -> torch.Tensor:
        numel = 1
        for s in shape:
            numel *= int(s)
        buf = self._bufs.get(key)
        if buf is None or buf.numel() < numel:
            buf = torch.empty(numel, dtype=torch.float32, device=self.device)
            self._bufs[key] = buf
        return buf[:numel].view(*shape)

    def ones(self, k: int) -> torch.Tensor:
        key = f"ones{k}"
        if key not in self._bufs:
            self._bufs[key] = torch.ones(k, dtype=torch.float32, device=self.device)
        return self._bufs[key]


BlockFn = Callable[[torch.Tensor, "torch.Tensor | None", Scratch], torch.Tensor]


def quantize_rows(
    w: torch.Tensor,
    importance: torch.Tensor | None,
    type_size: int,
    block_fn: BlockFn,
    chunk_blocks: int | None = None,
    out_dtype: torch.dtype = torch.uint8,
) -> torch.Tensor:
    """Run block_fn over all super-blocks of w, a chunk of super-blocks at a time.

    w [rows, cols] float32, importance [cols] or None; block_fn(x [n, 256], imp [n, 256] | None, scratch) ->
    uint8 [n, type_size] (or another out_dtype, see fake_rows). Returns [rows, cols // 256 * type_size].
    """
    ws = Scratch(w.device)
    if chunk_blocks is None:
        chunk_blocks = CHUNK_BLOCKS_GRAPH if graph_enabled(w.device) else CHUNK_BLOCKS.get(w.device.type,
                                                                                          CHUNK_BLOCKS["cuda"])
    rows, cols = w.shape
    nb = cols // QK_K
    x = w.float().reshape(rows * nb, QK_K)
    if not bool(torch.isfinite(x).all()):
        raise ValueError("cannot quantize a tensor with inf or NaN values")
    imp = None
    if importance is not None:
        imp = importance.to(device=w.device, dtype=torch.float32).reshape(nb, QK_K)
    out = torch.empty(rows * nb, type_size, dtype=out_dtype, device=w.device)
    for i0 in range(0, rows * nb, chunk_blocks):
        i1 = min(rows * nb, i0 + chunk_blocks)
        # block i of the flattened tensor covers columns (i % nb)*256 ... of its row
        ib = None if imp is None else imp[torch.arange(i0, i1, device=w.device) % nb]
        out[i0:i1] = block_fn(x[i0:i1], ib, ws)
    return out.reshape(rows, nb * type_size)


def decode(r: "AffineResult | SymResult") -> torch.Tensor:
    """A search result -> its float32 values [n, 256], computed as every K dequantizer here does (d*sc in
    float32, times the level, minus dmin*m for the affine types): bit-equal to dequantize of the packed bytes."""
    dl = (r.d[:, None] * r.sc.float())[..., None]  # [n, S, 1]
    v = dl * r.L.float()
    if isinstance(r, AffineResult):
        v = v - (r.dmin[:, None] * r.m.float())[..., None]
    return v.reshape(v.shape[0], -1)


SearchFn = Callable[[torch.Tensor, "torch.Tensor | None", "Scratch | None"], "AffineResult | SymResult"]


def graph_enabled(device: torch.device) -> bool:
    """Whether a K format's whole super-block search runs as one compiled graph on this device: on CUDA with
    torch.compile on, unless AWQ_GGUF_GRAPH_SEARCH=0 (then the per-stage path below, as on CPU)."""
    return device.type == "cuda" and compiled_enabled() and os.environ.get("AWQ_GGUF_GRAPH_SEARCH", "1") != "0"


def graph_search(search: SearchFn) -> SearchFn:
    """A K format's search(x [n, 256], imp [n, 256] | None, scratch) -> result, dispatched by device.

    On CUDA (graph_enabled) the whole search is traced once by torch.compile in its graph form (ws None: no
    scratch buffers, plain sums, the fused candidate sums inlined) and runs as a few dozen fused kernels per
    chunk instead of hundreds of launches; elsewhere it runs as before (eager stages with scratch buffers, the
    candidate sums compiled apart). quantize and fake_quantize both go through this, so the file and the AWQ
    search get the same blocks on each device. The two forms sum in other orders, so their results can differ
    where two candidates tie to the last bit (tests/convert/quants/test_graph_search.py bounds how often).
    """

    def fields(x: torch.Tensor, imp: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
        r = search(x, imp, None)
        return (r.d, r.dmin, r.sc, r.m, r.L) if isinstance(r, AffineResult) else (r.d, r.sc, r.L)

    compiled = maybe_compile(fields)

    def run(x: torch.Tensor, imp: torch.Tensor | None, ws: Scratch | None) -> AffineResult | SymResult:
        if not graph_enabled(x.device):
            return search(x, imp, ws)
        t = compiled(x, imp)
        return AffineResult(*t) if len(t) == 5 else SymResult(*t)

    run.graph = fields  # type: ignore[attr-defined]  # the graph form, uncompiled (tests)
    run.__doc__ = search.__doc__
    return run


def with_fake(quantize: Callable, search: Callable) -> Callable:
    """Attach to a K format's quantize (w, importance) -> bytes its fake counterpart (w, importance) -> the float32
    values of those bytes, from search(x [n, 256], imp [n, 256] | None, scratch) -> result, without packing."""

    def fake(w: torch.Tensor, importance: torch.Tensor | None) -> torch.Tensor:
        return quantize_rows(w, importance, QK_K, lambda x, imp, ws: decode(search(x, imp, ws)),
                             out_dtype=torch.float32)

    quantize.fake = fake  # type: ignore[attr-defined]
    return quantize


def pack_2bit(L: torch.Tensor) -> torch.Tensor:
    """Levels uint8/int [n, 256] in 0..3 -> uint8 [n, 64]: byte 32h+l holds elements 128h+l+32k at bits 2k."""
    L = L.to(torch.uint8).reshape(-1, 2, 4, 32)
    out = L[:, :, 0] | (L[:, :, 1] << 2) | (L[:, :, 2] << 4) | (L[:, :, 3] << 6)
    return out.reshape(-1, 64)


def unpack_2bit(b: torch.Tensor) -> torch.Tensor:
    """uint8 [n, 64] -> uint8 [n, 256] in 0..3 (inverse of pack_2bit)."""
    shifts = torch.tensor([0, 2, 4, 6], dtype=torch.uint8, device=b.device).reshape(1, 1, 4, 1)
    return ((b.reshape(-1, 2, 1, 32) >> shifts) & 3).reshape(-1, QK_K)


def pack_scales_k4(sc: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """6-bit scales and mins [n, 8] (0..63) -> uint8 [n, 12], ggml's get_scale_min_k4 layout.

    bytes 0-3: sc[0..3] | (sc[4..7] >> 4) << 6;  bytes 4-7: m[0..3] | (m[4..7] >> 4) << 6;
    bytes 8-11: (sc[4..7] & 15) | (m[4..7] & 15) << 4.
    """
    sc = sc.to(torch.uint8)
    m = m.to(torch.uint8)
    lo_s, hi_s = sc[:, :4], sc[:, 4:]
    lo_m, hi_m = m[:, :4], m[:, 4:]
    b0 = lo_s | ((hi_s >> 4) << 6)
    b1 = lo_m | ((hi_m >> 4) << 6)
    b2 = (hi_s & 15) | ((hi_m & 15) << 4)
    return torch.cat([b0, b1, b2], dim=1)


def unpack_scales_k4(b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 [n, 12] -> (scales uint8 [n, 8], mins uint8 [n, 8])."""
    b0, b1, b2 = b[:, 0:4], b[:, 4:8], b[:, 8:12]
    sc = torch.cat([b0 & 63, (b2 & 15) | ((b0 >> 6) << 4)], dim=1)
    m = torch.cat([b1 & 63, (b2 >> 4) | ((b1 >> 6) << 4)], dim=1)
    return sc, m


# ---------------------------------------------------------------------------------------------------------
# element weights


def element_weights(x: torch.Tensor, imp: torch.Tensor | None, sigma_mult: float) -> torch.Tensor | None:
    """llama.cpp's imatrix weighting: imp_i * sqrt(sigma2 + x_i^2), sigma2 = sigma_mult * mean(x^2) per block.

    x, imp [n, 256] -> [n, 256], or None without importance (plain squared error).
    """
    if imp is None:
        return None
    sigma2 = sigma_mult * (x * x).mean(dim=1, keepdim=True)
    return imp * torch.sqrt(sigma2 + x * x)


def _fix_weights(w: torch.Tensor | None) -> torch.Tensor | None:
    """w [n, S, k]: negative / non-finite weights -> 0; sub-blocks whose weights are all zero -> unit weights."""
    if w is None:
        return None
    w = torch.nan_to_num(w, nan=0.0, posinf=0.0).clamp_(min=0)
    dead = (w.sum(dim=-1, keepdim=True) <= 0).to(w.dtype)
    return w + dead  # dead sub-blocks are all zeros, so this makes them all ones


# ---------------------------------------------------------------------------------------------------------
# small helpers (torch.where is slow on CPU for large tensors: masks are applied arithmetically)


def _recip(a: torch.Tensor) -> torch.Tensor:
    """1/a, and 0 where a == 0."""
    z = (a == 0).to(a.dtype)
    return (1 - z) / (a + z)


def _rsum(t: torch.Tensor, graph: bool = False) -> torch.Tensor:
    """Sum over the last dim (a matrix-vector product: much faster than .sum(-1) on CPU); graph: a plain sum,
    which torch.compile fuses with the ops around it."""
    if graph:
        return t.sum(-1)
    k = t.shape[-1]
    ones = torch.ones(k, dtype=t.dtype, device=t.device)
    return (t.reshape(-1, k) @ ones).reshape(t.shape[:-1])


def _pick(g: torch.Tensor, *vals: torch.Tensor, tol: torch.Tensor | float = 0.0) -> tuple[torch.Tensor, ...]:
    """Best candidate along dim 0 of the scores g [C, ...]: the first one within tol of the maximum.

    Returns (g.max(0), v[best] for each v [C, ...(, extra dims)]).
    """
    C = g.shape[0]
    gmax = g.amax(0)
    rank = torch.arange(C, 0, -1, device=g.device, dtype=torch.int64).reshape(-1, *([1] * (g.ndim - 1)))
    idx = C - ((g >= gmax - tol).to(torch.int64) * rank).amax(0, keepdim=True)  # [1, ...]
    idx = idx.clamp_(0, C - 1)  # (all-NaN scores)
    out = []
    for v in vals:  # v may have trailing dims beyond g's
        i = idx.reshape(*idx.shape, *([1] * (v.ndim - g.ndim))).expand(1, *v.shape[1:])
        out.append(v.gather(0, i).squeeze(0))
    return (gmax, *out)


def _blend(mask: torch.Tensor, new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    """where(mask, new, old) for finite values."""
    m = mask.to(new.dtype)
    return old + m * (new - old)


@dataclass
class _Const:
    """Sums that do not depend on the levels, float64 [n, S]."""

    Sw: torch.Tensor
    Sx: torch.Tensor
    Sxx: torch.Tensor

    def f32(self) -> "_Const":
        return _Const(self.Sw.float(), self.Sx.float(), self.Sxx.float())


def _const_sums(x: torch.Tensor, w: torch.Tensor | None, graph: bool = False) -> _Const:
    if w is None:
        Sw = torch.full(x.shape[:-1], float(x.shape[-1]), dtype=torch.float64, device=x.device)
        wx = x
    else:
        Sw = _rsum(w, graph).double()
        wx = w * x
    return _Const(Sw, _rsum(wx, graph).double(), _rsum(wx * x, graph).double())


def _grid_sums_fused(x: torch.Tensor, w: torch.Tensor | None, inv: torch.Tensor, off: torch.Tensor | None,
                     lo: int, hi: int) -> torch.Tensor:
    # compiled, the [C, n, S, k] levels are never materialized: one loop per candidate block, reductions fused
    xo = x[None] if off is None else x[None] + off[..., None]
    L = (xo * inv[..., None]).round().clamp(lo, hi)  # [C, n, S, k]
    wL = L if w is None else L * w[None]
    return torch.stack([wL.sum(-1), (wL * L).sum(-1), (wL * x[None]).sum(-1)])


_grid_sums_compiled = maybe_compile(_grid_sums_fused)


def _grid_sums_graph(x: torch.Tensor, w: torch.Tensor | None, inv: torch.Tensor, off: torch.Tensor | None,
                     lo: int, hi: int) -> torch.Tensor:
    # _grid_sums_fused with the candidates next to each other ([n, S, C, k]; the same arithmetic per element and
    # per sum, bit-equal run eager), meant to let the compiled kernel read each sub-block once for all C. On the
    # H200 it was about as fast (Q4_K 11008x4096 fake_quantize 5.67 -> 5.5 ms) and, compiled, moved last bits
    # of the search's losses (inductor fuses it otherwise); the benchmarked graph form uses it. -> [3, C, n, S]
    xo = x[..., None, :] if off is None else x[..., None, :] + off.permute(1, 2, 0)[..., None]
    L = (xo * inv.permute(1, 2, 0)[..., None]).round().clamp(lo, hi)  # [n, S, C, k]
    wL = L if w is None else L * w[..., None, :]
    sums = torch.stack([wL.sum(-1), (wL * L).sum(-1), (wL * x[..., None, :]).sum(-1)])  # [3, n, S, C]
    return sums.permute(0, 3, 1, 2)


def _grid_sums(x: torch.Tensor, w: torch.Tensor | None, inv: torch.Tensor, off: torch.Tensor | None, lo: int,
               hi: int, ws: Scratch | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Levels L = clamp(round((x + off) * inv), lo, hi) of C candidates and their sums over each sub-block.

    x, w [n, S, k]; inv, off [C, n, S] (off None: 0) -> (sum wL, sum wL^2, sum wLx), each float32 [C, n, S].
    Compiled where torch.compile works (one fused pass per candidate); else eager, one candidate at a time
    through the scratch buffers (matrix-vector sums: much faster than .sum(-1) on CPU). ws None (the graph
    form, see graph_search): the fused function itself, inside the caller's compiled graph.
    """
    if ws is None:
        Sl, Sll, Slx = _grid_sums_graph(x, w, inv, off, lo, hi)
        return Sl, Sll, Slx
    if compiled_enabled():
        Sl, Sll, Slx = _grid_sums_compiled(x, w, inv, off, lo, hi)
        return Sl, Sll, Slx
    out = torch.empty(3, *inv.shape, dtype=torch.float32, device=x.device)
    for c in range(inv.shape[0]):
        L = ws.get("L", x.shape)
        if off is None:
            torch.mul(x, inv[c][..., None], out=L)
        else:
            torch.add(x, off[c][..., None], out=L).mul_(inv[c][..., None])
        L.round_().clamp_(lo, hi)
        _level_sums_into(L, x, w, ws, out[:, c])
    return out[0], out[1], out[2]


def _sums_at(x: torch.Tensor, w: torch.Tensor | None, a32: torch.Tensor, b32: torch.Tensor | None, lo: int, hi: int,
             ws: Scratch | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sums (float32 [n, S]) of the levels nearest to x for the values a*L - b (b None: 0); L = 0 where a == 0."""
    Sl, Sll, Slx = _grid_sums(x, w, _recip(a32)[None], None if b32 is None else b32[None], lo, hi, ws)
    return Sl[0], Sll[0], Slx[0]


def _level_sums_into(L: torch.Tensor, x: torch.Tensor, w: torch.Tensor | None, ws: Scratch, out: torch.Tensor) -> None:
    """Write (sum wL, sum wL^2, sum wLx) of levels L [n, S, k] into out [3, n, S]."""
    k = L.shape[-1]
    ones = ws.ones(k)
    wL = L if w is None else torch.mul(L, w, out=ws.get("wL", L.shape))
    torch.mv(wL.reshape(-1, k), ones, out=out[0].reshape(-1))
    tmp = torch.mul(wL, L, out=ws.get("tmp", L.shape))
    torch.mv(tmp.reshape(-1, k), ones, out=out[-2].reshape(-1))
    torch.mul(wL, x, out=tmp)
    torch.mv(tmp.reshape(-1, k), ones, out=out[-1].reshape(-1))


def _f64(*ts: torch.Tensor | None) -> tuple:
    return tuple(None if t is None else t.double() for t in ts)


def _affine_gain(a, b, c: _Const, Sl, Sll, Slx):
    """Sxx - error of x ~ a*L + b for the sub-block sums (any a, b; float64 [..., n, S])."""
    return 2 * a * Slx + 2 * b * c.Sx - a * a * Sll - 2 * a * b * Sl - b * b * c.Sw


def _affine_lsq(c: _Const, Sl, Sll, Slx, constrained: bool = True):
    """Weighted least squares x ~ a*L + b ([..., n, S] sums) -> (a, b).

    constrained: a >= 0 and b <= 0 (b is stored as a non-negative min); else the plain stationary point (with
    all levels equal: a = 0, b = the weighted mean).
    """
    D = c.Sw * Sll - Sl * Sl
    eps = 1e-6 if D.dtype == torch.float32 else 1e-12  # below: all levels equal, up to rounding noise
    ok = (D > eps * c.Sw * Sll).to(D.dtype)
    iD = ok / (D + (1 - ok))
    a = (c.Sw * Slx - c.Sx * Sl) * iD
    b = (Sll * c.Sx - Sl * Slx) * iD + (1 - ok) * c.Sx / c.Sw
    if not constrained:
        return a, b
    # where b > 0: refit the scale alone through the origin
    pos = (b > 0).to(D.dtype)
    a0 = Slx * _recip(Sll)
    a = (a + pos * (a0 - a)).clamp_(min=0)
    b = b * (1 - pos)
    return a, b


# ---------------------------------------------------------------------------------------------------------
# stage 2: quantizing the sub-block scales


def _quantize_levels(
    v: torch.Tensor, sens: torch.Tensor, lo: int, hi: int, deltas: Sequence[float]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Quantize v [n, S] (float64) to d * q, q integer in [lo, hi], d fp16 per row.

    Minimizes sum sens * (v - d*q)^2 over a grid of d (the extreme value mapped to hi + delta, and, when
    lo < 0, to lo - delta), then a least-squares refit of d. Returns (d float64 [n] fp16-representable,
    q float64 [n, S]).
    """
    idx = v.abs().argmax(dim=1, keepdim=True)
    vext = v.gather(1, idx).squeeze(1)  # signed extreme [n]
    targets = [hi + dl for dl in deltas] + ([lo - dl for dl in deltas] if lo < 0 else [])
    t = torch.tensor(targets, dtype=v.dtype, device=v.device)[:, None]  # [T, 1]
    d = to_f16(vext[None] / t).double()  # [T, n]
    q = (v[None] * _recip(d)[..., None]).round_().clamp_(lo, hi)  # [T, n, S]
    err = (sens[None] * (v[None] - d[..., None] * q) ** 2).sum(-1)  # [T, n]
    _, d, q = _pick(-err, d, q)
    best_err = (sens * (v - d[:, None] * q) ** 2).sum(-1)
    # least-squares refit of d for those levels
    num = (sens * v * q).sum(1)
    den = (sens * q * q).sum(1)
    d2 = to_f16(num * _recip(den) + (den == 0) * d).double()
    q2 = (v * _recip(d2)[:, None]).round_().clamp_(lo, hi)
    err2 = (sens * (v - d2[:, None] * q2) ** 2).sum(1)
    better = err2 < best_err
    return _blend(better, d2, d), _blend(better[:, None], q2, q)


# ---------------------------------------------------------------------------------------------------------
# affine formats (Q2_K, Q4_K, Q5_K)


@dataclass
class AffineResult:
    d: torch.Tensor  # float32 [n], fp16-representable
    dmin: torch.Tensor  # float32 [n], fp16-representable
    sc: torch.Tensor  # uint8 [n, S]
    m: torch.Tensor  # uint8 [n, S]
    L: torch.Tensor  # uint8 [n, S, k] in [0, nmax]


_MOVES_2D = [(ds, dm) for ds in (-1, 0, 1) for dm in (-1, 0, 1) if ds or dm]


def _affine_requant(x: torch.Tensor, a32: torch.Tensor, b32: torch.Tensor, nmax: int, ws: Scratch | None
                    ) -> torch.Tensor:
    """Levels nearest to x for the values a*L - b (a >= 0, b float32 [n, S]); L = 0 where a == 0.

    -> float32 [n, S, k] (scratch buffer "L", or a new tensor when ws is None)."""
    L = x + b32[..., None] if ws is None else torch.add(x, b32[..., None], out=ws.get("L", x.shape))
    return L.mul_(_recip(a32)[..., None]).round_().clamp_(0, nmax)


def quantize_affine(
    x: torch.Tensor,
    w: torch.Tensor | None,
    nmax: int,
    smax: int,
    mmax: int,
    grid: Sequence[float],
    ws: Scratch | None,
    n_lloyd: int = 2,
    n_refine: int = 2,
    n_polish: int = 1,
    scale_deltas: Sequence[float] = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0),
) -> AffineResult:
    """Two-level affine quantization of x [n, S, k] (weights w [n, S, k] or None).

    Values are d*sc_j * L - dmin*m_j with L in [0, nmax], sc_j in [0, smax], m_j in [0, mmax].
    grid: offsets r of the trial inverse scales (nmax + r) / (max - min) of stage 1.
    """
    w = _fix_weights(w)
    c = _const_sums(x, w, graph=ws is None)
    c32 = c.f32()

    # ---- stage 1: float scale and min per sub-block (float32 bookkeeping). Candidates are ranked by the
    # unconstrained least-squares gain; the min <= 0 constraint is applied to the winner only.
    mn = x.amin(-1).clamp(max=0)  # [n, S]
    inv_rng = _recip(x.amax(-1) - mn)
    inv = torch.stack([(nmax + r) * inv_rng for r in grid])  # [C, n, S]
    Sl, Sll, Slx = _grid_sums(x, w, inv, (-mn)[None].expand_as(inv), 0, nmax, ws)  # each [C, n, S]
    # gain over the best constant: cov(L, x)^2 / var(L); (near-)constant levels gain nothing
    var = Sll - Sl * Sl / c32.Sw
    cov = Slx - Sl * (c32.Sx / c32.Sw)
    flat = (var <= 1e-6 * Sll).float()
    g = cov * cov * (1 - flat) / (var + flat)
    # float32 noise: a later candidate must win by more than tol to replace an earlier one
    _, Sl, Sll, Slx = _pick(g, Sl, Sll, Slx, tol=1e-6 * c32.Sxx)
    a, b = _affine_lsq(c32, Sl, Sll, Slx)
    g = _affine_gain(a, b, c32, Sl, Sll, Slx)
    for _ in range(n_lloyd):
        Sl, Sll, Slx = _sums_at(x, w, a, -b, 0, nmax, ws)
        a2, b2 = _affine_lsq(c32, Sl, Sll, Slx)
        g2 = _affine_gain(a2, b2, c32, Sl, Sll, Slx)
        better = g2 > g
        g = torch.maximum(g, g2)
        a, b = _blend(better, a2, a), _blend(better, b2, b)
    # sensitivities at the chosen levels
    Sl, Sll, Slx = _sums_at(x, w, a, -b, 0, nmax, ws)

    # ---- stage 2: 2nd-level quantization of scales and mins (float64 for the scales and exact errors)
    d, sc = _quantize_levels(a.double(), Sll.double(), 0, smax, scale_deltas)
    dmin, mq = _quantize_levels(-b.double(), c.Sw, 0, mmax, scale_deltas)

    # ---- stage 3: alternate re-rounding and refits on the stored values; keep the best state per super-block
    best_err = None
    for it in range(n_refine + 1):
        a32 = d.float()[:, None] * sc.float()  # exactly the decoder's d*sc in float32
        b32 = dmin.float()[:, None] * mq.float()
        Sl, Sll, Slx = _f64(*_sums_at(x, w, a32, b32, 0, nmax, ws))
        esub = c.Sxx - _affine_gain(a32.double(), -b32.double(), c, Sl, Sll, Slx)  # [n, S]
        err = esub.sum(1)
        if best_err is None:
            best_err, res = err, (d, dmin, sc, mq, esub)
        else:
            better = err < best_err
            best_err = torch.minimum(err, best_err)
            res = (
                _blend(better, d, res[0]),
                _blend(better, dmin, res[1]),
                _blend(better[:, None], sc, res[2]),
                _blend(better[:, None], mq, res[3]),
                _blend(better[:, None], esub, res[4]),
            )
        if it == n_refine:
            break
        # (c) integer sub-block scale/min given the levels and d, dmin: best of floor/ceil of the continuous fit
        Sl32, Sll32, Slx32 = Sl.float(), Sll.float(), Slx.float()
        au, bu = _affine_lsq(c32, Sl32, Sll32, Slx32, constrained=False)
        sc, mq = _best_int_pair(au, bu, d, dmin, smax, mmax, c32, Sl32, Sll32)
        # (b) refit d, dmin over the super-block given levels and integers: x ~ d*(sc*L) - dmin*m
        A11 = (sc * sc * Sll).sum(1)
        A12 = -(sc * mq * Sl).sum(1)
        A22 = (mq * mq * c.Sw).sum(1)
        r1 = (sc * Slx).sum(1)
        r2 = -(mq * c.Sx).sum(1)
        det = A11 * A22 - A12 * A12
        ok = (det > 1e-12 * A11 * A22).to(det.dtype)
        idet = ok / (det + (1 - ok))
        nd = (r1 * A22 - r2 * A12) * idet + (1 - ok) * d
        ndm = (A11 * r2 - A12 * r1) * idet + (1 - ok) * dmin
        d = to_f16(nd.clamp(min=0)).double()
        dmin = to_f16(ndm.clamp(min=0)).double()
    d, dmin, sc, mq, esub = res

    # ---- stage 4: polish (sc, m) of each sub-block over its 3x3 integer neighbourhood, d and dmin fixed,
    # scoring every move with the exact error after re-rounding the levels
    d32, dmin32 = d.float()[:, None], dmin.float()[:, None]
    mv = torch.tensor(_MOVES_2D, dtype=sc.dtype, device=x.device)  # [M, 2]
    for _ in range(n_polish):
        sc2 = (sc[None] + mv[:, 0, None, None]).clamp_(0, smax)  # [M, n, S]
        mq2 = (mq[None] + mv[:, 1, None, None]).clamp_(0, mmax)
        a32 = d32[None] * sc2.float()
        b32 = dmin32[None] * mq2.float()
        Sl, Sll, Slx = _f64(*_grid_sums(x, w, _recip(a32), b32, 0, nmax, ws))  # each [M, n, S]
        e2 = c.Sxx - _affine_gain(a32.double(), -b32.double(), c, Sl, Sll, Slx)
        # the current state first: it stays on ties
        esub, sc, mq = _pick(-torch.cat([esub[None], e2]), torch.cat([sc[None], sc2]), torch.cat([mq[None], mq2]))
        esub = -esub
    # a sub-block that decodes worse than all zeros (coarse subnormal fp16 d) is stored as zeros
    keep = (esub <= c.Sxx).to(sc.dtype)
    sc, mq = sc * keep, mq * keep
    L = _affine_requant(x, d32 * sc.float(), dmin32 * mq.float(), nmax, ws)
    return AffineResult(d.float(), dmin.float(), sc.to(torch.uint8), mq.to(torch.uint8), L.to(torch.uint8))


def _best_int_pair(au, bu, d, dmin, smax, mmax, c: _Const, Sl, Sll):
    """Integers (sc, m) minimizing the error of x ~ d*sc*L - dmin*m for fixed levels ([n, S] sums).

    (au, bu) is the unconstrained least-squares fit, so the error is err(au, bu) + the quadratic form
    Sll*da^2 + 2*Sl*da*db + Sw*db^2 of the deviations: no cancellation, float32 is enough. Tries the floor and
    ceil of both continuous values.
    """
    d2 = d.float()[:, None]
    m2 = dmin.float()[:, None]
    fs = (au * _recip(d2)).floor_()
    fm = (-bu * _recip(m2)).floor_()
    off = torch.tensor([0.0, 1.0], dtype=fs.dtype, device=fs.device)
    s = (fs[None, None] + off.reshape(2, 1, 1, 1)).clamp_(0, smax).expand(2, 2, *fs.shape).reshape(4, *fs.shape)
    m = (fm[None, None] + off.reshape(1, 2, 1, 1)).clamp_(0, mmax).expand(2, 2, *fs.shape).reshape(4, *fs.shape)
    da = d2 * s - au
    db = -(m2 * m) - bu
    q = Sll * da * da + 2 * Sl * da * db + c.Sw * db * db
    _, s, m = _pick(-q, s, m)
    return s.double(), m.double()


# ---------------------------------------------------------------------------------------------------------
# symmetric formats (Q3_K, Q6_K)


@dataclass
class SymResult:
    d: torch.Tensor  # float32 [n], fp16-representable
    sc: torch.Tensor  # int64 [n, S], signed
    L: torch.Tensor  # int8 [n, S, k] in [-nlo, nlo-1]


def _sym_requant(x: torch.Tensor, a32: torch.Tensor, nlo: int, ws: Scratch | None) -> torch.Tensor:
    """Levels nearest to x for the values a*L (a float32 [n, S]); L = 0 where a == 0.

    -> float32 [n, S, k] (scratch buffer "L", or a new tensor when ws is None)."""
    L = x * _recip(a32)[..., None] if ws is None else torch.mul(x, _recip(a32)[..., None], out=ws.get("L", x.shape))
    return L.round_().clamp_(-nlo, nlo - 1)


def _sym_fit(Sll: torch.Tensor, Slx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Least-squares scale a = Slx/Sll and its gain a*Slx = Sxx - error."""
    a = Slx * _recip(Sll)
    return a, a * Slx


def quantize_symmetric(
    x: torch.Tensor,
    w: torch.Tensor | None,
    nlo: int,
    slo: int,
    shi: int,
    grid: Sequence[float],
    ws: Scratch | None,
    n_lloyd: int = 2,
    n_refine: int = 1,
    n_polish: int = 1,
    scale_deltas: Sequence[float] = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0),
) -> SymResult:
    """Two-level symmetric quantization of x [n, S, k]: values d*sc_j*L, L in [-nlo, nlo-1], sc_j in [slo, shi].

    grid: offsets r; the sub-block's extreme element is tried at level -(nlo + r) and at +(nlo - 1 + r).
    """
    w = _fix_weights(w)
    c = _const_sums(x, w, graph=ws is None)

    # ---- stage 1: float scale per sub-block (float32 bookkeeping)
    idx = x.abs().argmax(dim=-1, keepdim=True)
    inv_ext = _recip(x.gather(-1, idx).squeeze(-1))  # 1 / signed extreme [n, S]
    targets = [-(nlo + r) for r in grid] + [nlo - 1 + r for r in grid]
    _, Sll, Slx = _grid_sums(x, w, torch.stack([t * inv_ext for t in targets]), None, -nlo, nlo - 1, ws)  # [C, n, S]
    # float32 noise: a later candidate must win by more than tol to replace an earlier one
    _, Sll, Slx = _pick(Slx * Slx * _recip(Sll), Sll, Slx, tol=1e-6 * c.Sxx.float())
    a, g = _sym_fit(Sll, Slx)
    for _ in range(n_lloyd):
        _, Sll, Slx = _sums_at(x, w, a, None, -nlo, nlo - 1, ws)
        a2, g2 = _sym_fit(Sll, Slx)
        better = g2 > g
        g = torch.maximum(g, g2)
        a = _blend(better, a2, a)
    _, Sll, Slx = _sums_at(x, w, a, None, -nlo, nlo - 1, ws)

    # ---- stage 2: 2nd-level quantization of the scales (float64 for the scales and exact errors)
    d, sc = _quantize_levels(a.double(), Sll.double(), slo, shi, scale_deltas)

    # ---- stage 3: refinement on the stored values
    best_err = None
    for it in range(n_refine + 1):
        a32 = d.float()[:, None] * sc.float()
        _, Sll, Slx = _f64(*_sums_at(x, w, a32, None, -nlo, nlo - 1, ws))
        a64 = a32.double()
        esub = c.Sxx - 2 * a64 * Slx + a64 * a64 * Sll  # [n, S]
        err = esub.sum(1)
        if best_err is None:
            best_err, res = err, (d, sc, esub)
        else:
            better = err < best_err
            best_err = torch.minimum(err, best_err)
            res = (
                _blend(better, d, res[0]),
                _blend(better[:, None], sc, res[1]),
                _blend(better[:, None], esub, res[2]),
            )
        if it == n_refine:
            break
        # (c) integer scales given levels and d: nearest integer to the continuous optimum (1-D convex)
        sc = (Slx * _recip(Sll * d[:, None])).round_().clamp_(slo, shi)
        # (b) d given levels and integer scales
        num = (sc * Slx).sum(1)
        den = (sc * sc * Sll).sum(1)
        d = to_f16(num * _recip(den) + (den == 0) * d).double()
    d, sc, esub = res

    # ---- stage 4: polish each sub-block's integer scale by +-1, d fixed, scored with the exact error
    d32 = d.float()[:, None]
    mv = torch.tensor([-1.0, 1.0], dtype=sc.dtype, device=x.device)[:, None, None]
    for _ in range(n_polish):
        sc2 = (sc[None] + mv).clamp_(slo, shi)  # [2, n, S]
        a32 = d32[None] * sc2.float()
        _, Sll, Slx = _f64(*_grid_sums(x, w, _recip(a32), None, -nlo, nlo - 1, ws))  # each [2, n, S]
        a64 = a32.double()
        e2 = c.Sxx - 2 * a64 * Slx + a64 * a64 * Sll
        esub, sc = _pick(-torch.cat([esub[None], e2]), torch.cat([sc[None], sc2]))
        esub = -esub
    # a sub-block that decodes worse than all zeros (coarse subnormal fp16 d) is stored as zeros
    sc = sc * (esub <= c.Sxx).to(sc.dtype)
    L = _sym_requant(x, d32 * sc.float(), nlo, ws)
    return SymResult(d.float(), sc.long(), L.to(torch.int8))
