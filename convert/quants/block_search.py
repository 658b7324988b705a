"""Shared machinery of the 32-element block formats Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0.

Every format stores, per block of 32 weights, an fp16 scale d (and for the `_1` types an fp16 offset m) and
integer levels q; the block decodes to d*q (symmetric types, q signed) or d*q + m (asymmetric types, q >= 0).

The searches below pick d (and m) and q per block to minimize sum_j wt_j (x_j - value_j)^2, where wt_j is 1
without importance and llama.cpp's imatrix weighting imp_j * sqrt(sigma2 + x_j^2) with it.

Candidates follow make_qx_quants / make_qkx3_quants: a grid of inverse scales, levels by rounding, ranked by
the error of a weighted least-squares fit of d (and m) to those levels. Unlike llama.cpp, the winner's d and m
are then rounded to fp16 as the file will hold them, the levels re-rounded to the stored values and refit a
few times (Lloyd steps), and the result is kept only where its stored error is strictly below that of
llama.cpp's own reference scale (the `*_ref` functions) with nearest levels: so no block ends up worse than
llama.cpp's reference quantizer on the same block.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from .compiled import maybe_compile

QK = 32  # weights per block

# Elements per row chunk: bounds the temporaries of one search step (about 15 float32 tensors of this size:
# 60 MB on CPU, where small chunks stay in cache; 1 GB on a GPU, where big launches pay).
CHUNK_ELEMS = 1 << 20
CHUNK_ELEMS_GPU = 1 << 24


# ---------------------------------------------------------------------------------------------------------
# small numeric helpers


def to_f16(t: torch.Tensor) -> torch.Tensor:
    """float32 -> the nearest fp16 value, back as float32 (what a stored fp16 field decodes to)."""
    return t.to(torch.float16).to(torch.float32)


def round_half_away(t: torch.Tensor) -> torch.Tensor:
    """C roundf (halves away from zero), exact for every float32; torch.round rounds halves to even."""
    a = t.abs()
    f = a.floor()
    return torch.copysign(f + (2 * (a - f)).floor(), t)


def signed_absmax(x: torch.Tensor) -> torch.Tensor:
    """x [n, k] -> [n, 1]: the element of largest magnitude, sign kept (the first one on ties, as ggml)."""
    return x.gather(-1, x.abs().argmax(dim=-1, keepdim=True))


def safe_recip(d: torch.Tensor) -> torch.Tensor:
    """1/d, and 0 where d == 0 (ggml's `id = d ? 1/d : 0`)."""
    return torch.where(d == 0, torch.zeros_like(d), 1.0 / torch.where(d == 0, torch.ones_like(d), d))


def safe_div(a: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """a / d, and 0 where d == 0 (d broadcasts against a)."""
    nz = d != 0
    return torch.where(nz, a / torch.where(nz, d, torch.ones_like(d)), torch.zeros_like(a))


def element_weights(x: torch.Tensor, importance: torch.Tensor | None) -> torch.Tensor | None:
    """x [rows, cols], importance [cols] -> per-element error weights [rows, cols], or None (plain error).

    llama.cpp's imatrix path (quantize_row_q4_0_impl and friends): wt_j = imp_j * sqrt(sigma2 + x_j^2) with
    sigma2 the mean square of the whole row.
    """
    if importance is None:
        return None
    sigma2 = (x * x).mean(dim=1, keepdim=True)  # [rows, 1]
    return importance.to(x.device, torch.float32)[None, :] * torch.sqrt(sigma2 + x * x)


def _wsum(t: torch.Tensor, wt: torch.Tensor | None) -> torch.Tensor:
    """sum over the block dim of wt*t, [n, k] -> [n, 1]."""
    return (t if wt is None else t * wt).sum(dim=-1, keepdim=True)


# ---------------------------------------------------------------------------------------------------------
# byte packing shared by the formats


def f16_bytes(v: torch.Tensor) -> torch.Tensor:
    """float32 [n, 1] -> uint8 [n, 2]: the little-endian fp16 field."""
    return v.to(torch.float16).contiguous().view(torch.uint8)


def f16_from_bytes(b: torch.Tensor) -> torch.Tensor:
    """uint8 [..., 2] -> float32 [..., 1]."""
    return b.contiguous().view(torch.float16).to(torch.float32)


def pack_nibbles(q: torch.Tensor) -> torch.Tensor:
    """levels [n, 32] (any int/float dtype holding 0..31) -> uint8 [n, 16]: byte j = low4(q_j) | low4(q_j+16) << 4."""
    qi = q.to(torch.int32) & 0x0F
    return (qi[:, :16] | (qi[:, 16:] << 4)).to(torch.uint8)


def unpack_nibbles(b: torch.Tensor) -> torch.Tensor:
    """uint8 [..., 16] -> int32 [..., 32] in 0..15 (inverse of pack_nibbles)."""
    bi = b.to(torch.int32)
    return torch.cat([bi & 0x0F, bi >> 4], dim=-1)


def pack_high_bits(q: torch.Tensor) -> torch.Tensor:
    """levels [n, 32] in 0..31 -> uint8 [n, 4]: bit j of the little-endian u32 qh is bit 4 of q_j."""
    bits = (q.to(torch.int32) >> 4) & 1  # [n, 32]
    shifts = torch.arange(8, device=q.device, dtype=torch.int32)
    return (bits.view(-1, 4, 8) << shifts).sum(dim=-1).to(torch.uint8)


def unpack_high_bits(b: torch.Tensor) -> torch.Tensor:
    """uint8 [..., 4] -> int32 [..., 32] in {0, 16}: the fifth bit of each level, already shifted into place."""
    shifts = torch.arange(8, device=b.device, dtype=torch.int32)
    bits = (b.to(torch.int32).unsqueeze(-1) >> shifts) & 1  # [..., 4, 8]
    return bits.flatten(-2) << 4


# ---------------------------------------------------------------------------------------------------------
# row chunking


def map_row_chunks(
    fn: Callable[[torch.Tensor], torch.Tensor],
    w: torch.Tensor,
    out_cols: int,
    out_dtype: torch.dtype,
    chunk_elems: int | None = None,
) -> torch.Tensor:
    """Apply fn(rows [r, cols]) -> [r, out_cols] over chunks of whole rows, ~chunk_elems elements each."""
    rows, cols = w.shape
    if chunk_elems is None:
        chunk_elems = CHUNK_ELEMS if w.device.type == "cpu" else CHUNK_ELEMS_GPU
    step = max(1, chunk_elems // max(cols, 1))
    out = torch.empty(rows, out_cols, dtype=out_dtype, device=w.device)
    for r0 in range(0, rows, step):
        r1 = min(rows, r0 + step)
        out[r0:r1] = fn(w[r0:r1])
    return out


# ---------------------------------------------------------------------------------------------------------
# symmetric formats: value = d * q, q in [qmin, qmax]
#
# For a stored d the best levels are simply the nearest ones, so the searches carry only the per-block
# stored scale(s) and error and derive the levels once at the end.


def nearest_sym(x: torch.Tensor, d16: torch.Tensor, qmin: int, qmax: int) -> torch.Tensor:
    """Nearest levels [n, 32] (as float) of x [n, 32] under the stored scale d16 [n, 1]."""
    return safe_div(x, d16).round_().clamp_(qmin, qmax)


def _sym_err(x: torch.Tensor, wt: torch.Tensor | None, d16: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """sum wt (x - d16 q)^2 per block [n, 1]; inf where d16 is not finite (an fp16 overflow)."""
    e = x - d16 * q
    err = _wsum(e * e, wt)
    return torch.where(torch.isfinite(d16) & torch.isfinite(err), err, torch.full_like(err, float("inf")))


def _sym_fit(x: torch.Tensor, wt: torch.Tensor | None, q: torch.Tensor) -> torch.Tensor:
    """Weighted least-squares scale for fixed levels: d = sum wt x q / sum wt q^2 (0 where undefined)."""
    num = _wsum(x * q, wt)
    den = _wsum(q * q, wt)
    ok = den > 0
    return torch.where(ok, num / torch.where(ok, den, torch.ones_like(den)), torch.zeros_like(den))


def search_symmetric(
    x: torch.Tensor,
    wt: torch.Tensor | None,
    qmin: int,
    qmax: int,
    ref_d: torch.Tensor,
    grid: Sequence[float],
    refine: int = 2,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Best (d16 [n, 1], levels [n, 32] as float) per block for value = d*q, q in [qmin, qmax].

    x [n, 32] blocks, wt [n, 32] or None. grid: targets t; candidate levels are round(x * -t/M), M the block's
    signed absmax (so M lands on level -t, the side with the extra level, as in make_qx_quants). Candidates
    are ranked as make_qx_quants does, by the error of their least-squares d, (sum wt x q)^2 / sum wt q^2; the
    winner's d is then stored as fp16, the levels re-rounded to it and refit `refine` times. ref_d: llama.cpp's
    reference scale (fp32); the result replaces it only where its stored error is strictly lower, and the
    reference scale with nearest levels is never worse than the reference rounding itself.
    """
    inv_m = safe_recip(signed_absmax(x))  # [n, 1]
    best_score = torch.zeros_like(inv_m)  # error reduction sum wt x^2 - err of the LS fit; 0 = nothing found
    best_t = torch.full_like(inv_m, float(grid[0]))
    for t in grid:
        q = (x * (-t * inv_m)).round_().clamp_(qmin, qmax)
        sxq = _wsum(x * q, wt)
        sqq = _wsum(q * q, wt)
        score = sxq * sxq / sqq.clamp_min(1e-30)
        better = score > best_score
        best_score = torch.where(better, score, best_score)
        best_t = torch.where(better, torch.full_like(best_t, float(t)), best_t)

    best_d = to_f16(ref_d)
    best_err = _sym_err(x, wt, best_d, nearest_sym(x, best_d, qmin, qmax))
    q = (x * (-best_t * inv_m)).round_().clamp_(qmin, qmax)
    for _ in range(1 + refine):  # store the LS d as fp16, re-round, keep if better; Lloyd steps after the first
        d16 = to_f16(_sym_fit(x, wt, q))
        err = _sym_err(x, wt, d16, nearest_sym(x, d16, qmin, qmax))
        better = err < best_err  # strict: ties keep the reference scale
        best_d = torch.where(better, d16, best_d)
        best_err = torch.where(better, err, best_err)
        q = nearest_sym(x, best_d, qmin, qmax)
    return best_d, q


# ---------------------------------------------------------------------------------------------------------
# asymmetric formats: value = d * q + m, q in [0, qmax]


def nearest_asym(x: torch.Tensor, d16: torch.Tensor, m16: torch.Tensor, qmax: int) -> torch.Tensor:
    """Nearest levels [n, 32] (as float) of x [n, 32] under the stored d16, m16 [n, 1]."""
    return safe_div(x - m16, d16).round_().clamp_(0, qmax)


def _asym_err(
    x: torch.Tensor, wt: torch.Tensor | None, d16: torch.Tensor, m16: torch.Tensor, q: torch.Tensor
) -> torch.Tensor:
    """sum wt (x - (d16 q + m16))^2 per block [n, 1]; inf where a stored value is not finite."""
    e = x - (d16 * q + m16)
    err = _wsum(e * e, wt)
    ok = torch.isfinite(d16) & torch.isfinite(m16) & torch.isfinite(err)
    return torch.where(ok, err, torch.full_like(err, float("inf")))


def _asym_fit(
    x: torch.Tensor, wt: torch.Tensor | None, sw: torch.Tensor, sx: torch.Tensor, q: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Weighted least squares of x ~ d q + m for fixed levels q [n, 32]: the 2x2 normal equations.

    sw, sx: sum wt and sum wt x [n, 1]. Returns (d, m, score, sl): score = d sum wt x q + m sum wt x is the error
    reduction sum wt x^2 - err of the fit (-inf where the system is singular); sl = sum wt q.
    """
    sl = _wsum(q, wt)
    sll = _wsum(q * q, wt)
    sxl = _wsum(x * q, wt)
    det = sw * sll - sl * sl
    ok = det > 0
    inv_det = torch.where(ok, 1.0 / torch.where(ok, det, torch.ones_like(det)), torch.zeros_like(det))
    d = (sw * sxl - sx * sl) * inv_det
    m = (sll * sx - sl * sxl) * inv_det
    score = torch.where(ok, d * sxl + m * sx, torch.full_like(det, float("-inf")))
    return d, m, score, sl


def search_asymmetric(
    x: torch.Tensor,
    wt: torch.Tensor | None,
    qmax: int,
    ref_d: torch.Tensor,
    ref_m: torch.Tensor,
    grid: Sequence[float],
    refine: int = 2,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Best (d16, m16 [n, 1], levels [n, 32] as float) per block for value = d*q + m, q in [0, qmax].

    grid: targets t; candidate levels round (x - min) * t/(max - min), anchored at the block min as in
    make_qkx3_quants, and qmax - round((max - x) * t/(max - min)), anchored at the max. Candidates are ranked
    by the error of their weighted least-squares (d, m); the winner's d is stored as fp16, m refit to absorb
    that rounding and stored, the levels re-rounded, and refit `refine` times. ref_d/ref_m: llama.cpp's
    reference scale and min (fp32); the result replaces them only where its stored error is strictly lower.
    """
    sw = _wsum(torch.ones_like(x), wt) if wt is not None else torch.full_like(x[:, :1], float(x.shape[1]))
    sx = _wsum(x, wt)
    mn = x.amin(dim=-1, keepdim=True)
    mx = x.amax(dim=-1, keepdim=True)
    inv_rng = safe_recip(mx - mn)
    ok_w = sw > 0
    inv_sw = torch.where(ok_w, 1.0 / torch.where(ok_w, sw, torch.ones_like(sw)), torch.zeros_like(sw))

    def levels(t: torch.Tensor | float, from_max: torch.Tensor | bool) -> torch.Tensor:
        """Candidate levels [n, 32] for target t, anchored at the max (from_max) or at the min."""
        if from_max is True:
            return (qmax - ((mx - x) * (t * inv_rng)).round_()).clamp_(0, qmax)
        lo = ((x - mn) * (t * inv_rng)).round_()
        if from_max is False:
            return lo.clamp_(0, qmax)
        return torch.where(from_max, qmax - ((mx - x) * (t * inv_rng)).round_(), lo).clamp_(0, qmax)

    best_score = torch.full_like(sw, float("-inf"))
    best_t = torch.full_like(sw, float(grid[0]))
    best_hi = torch.zeros_like(sw, dtype=torch.bool)
    for t in grid:
        for from_max in (False, True):
            _, _, score, _ = _asym_fit(x, wt, sw, sx, levels(t, from_max))
            better = score > best_score
            best_score = torch.where(better, score, best_score)
            best_t = torch.where(better, torch.full_like(best_t, float(t)), best_t)
            best_hi = torch.where(better, from_max, best_hi)

    best_d, best_m = to_f16(ref_d), to_f16(ref_m)
    best_err = _asym_err(x, wt, best_d, best_m, nearest_asym(x, best_d, best_m, qmax))
    q = levels(best_t, best_hi)
    for _ in range(1 + refine):
        d, _, _, sl = _asym_fit(x, wt, sw, sx, q)
        d16 = to_f16(d)
        m16 = to_f16(torch.where(ok_w, (sx - d16 * sl) * inv_sw, mn))  # best m for the stored d
        err = _asym_err(x, wt, d16, m16, nearest_asym(x, d16, m16, qmax))
        better = err < best_err
        best_d = torch.where(better, d16, best_d)
        best_m = torch.where(better, m16, best_m)
        best_err = torch.where(better, err, best_err)
        q = nearest_asym(x, best_d, best_m, qmax)
    return best_d, best_m, q


def block_quantizer(
    ref_blocks: Callable[[torch.Tensor], tuple[torch.Tensor, ...]],
    pack: Callable[..., torch.Tensor],
    type_size: int,
    search: Callable[..., tuple[torch.Tensor, ...]] | None,
    search_needs_importance: bool = False,
) -> Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]:
    """The quantize function of a 32-element block type, from its parts.

    ref_blocks: blocks x [n, 32] -> (*fp32 params [n, 1] (d, or d and m), levels [n, 32]), llama.cpp's _ref rounding
    pack:       (*fp16 params, levels) -> uint8 [n, type_size]
    search:     (x, element weights [n, 32] | None, *ref params) -> (*fp16 params, levels); None: the ref rounding
    search_needs_importance: search only when an importance vector is given (Q8_0: the ref is the format's own rule)
    """

    @maybe_compile
    def searched(x: torch.Tensor, wt: torch.Tensor) -> tuple[torch.Tensor, ...]:
        # blocks x [n, 32], element weights wt [n, 32] (ones for plain error: one graph for both cases)
        # -> (*fp16-valued params [n, 1], levels [n, 32])
        *params, _ = ref_blocks(x)
        return search(x, wt, *params)

    def blocks(wc: torch.Tensor, importance: torch.Tensor | None) -> tuple[list[torch.Tensor], torch.Tensor]:
        # rows [r, cols] -> (fp16-valued params, each [r * nb, 1]; levels [r * nb, 32])
        if search is None or (search_needs_importance and importance is None):
            *params, q = ref_blocks(wc.reshape(-1, QK))
            return [to_f16(p) for p in params], q
        wt = element_weights(wc, importance)
        wt = torch.ones_like(wc) if wt is None else wt
        # fresh contiguous tensors: views of a chunked tensor would add guards (and recompiles)
        *params, q = searched(wc.reshape(-1, QK).clone(), wt.reshape(-1, QK).clone())
        return params, q

    @torch.no_grad()
    def quantize(w: torch.Tensor, importance: torch.Tensor | None) -> torch.Tensor:
        # w: float32 [rows, cols] -> uint8 [rows, cols // 32 * type_size]
        def chunk(wc: torch.Tensor) -> torch.Tensor:  # [r, cols] -> [r, row_bytes]
            params, q = blocks(wc, importance)
            return pack(*params, q).view(wc.shape[0], -1)

        return map_row_chunks(chunk, w, w.shape[1] // QK * type_size, torch.uint8)

    @torch.no_grad()
    def fake(w: torch.Tensor, importance: torch.Tensor | None) -> torch.Tensor:
        # w: float32 [rows, cols] -> the float32 values the bytes of quantize(w) decode to, bit for bit (d*q, or
        # d*q + m: a product then a sum, as every dequantizer here), without packing and unpacking them
        def chunk(wc: torch.Tensor) -> torch.Tensor:  # [r, cols] -> [r, cols]
            params, q = blocks(wc, importance)
            v = params[0] * q if len(params) == 1 else params[0] * q + params[1]
            return v.view(wc.shape[0], -1)

        return map_row_chunks(chunk, w, w.shape[1], torch.float32)

    quantize.fake = fake  # type: ignore[attr-defined]
    return quantize
