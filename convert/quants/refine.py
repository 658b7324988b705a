"""Refining the levels of the 32-weight symmetric formats (Q4_0, Q5_0, Q8_0) under the input's second moments.

The importance-weighted search (block_search) minimizes sum_j wt_j (w_j - d q_j)^2 per block: a diagonal
weighting. What a linear's output really loses on a block of 32 input columns is, over the calibration tokens,

    E[(x_b . e)^2] = e^T M e,    e = w_b - d q_b,    M = E[x_b x_b^T]  [32, 32]

whose off-diagonal terms (correlated input channels, which LLM activations have plenty of) the diagonal weighting
cannot see. Given M (the AWQ capture pass measures it anyway, for the clipping search), refine() starts from
the quantizer's result and lowers e^T M' e, M' = M + damp * mean(diag M) * I (the damping keeps a block whose
inputs are nearly collinear from trading large weight errors for tiny output gains):

  - coordinate descent over the levels: for j = 0..31 in turn, move q_j one step toward lower error where that
    lowers it (the gradient M'e is kept up to date), `sweeps` times;
  - then d is refit by least squares under M' for those levels and rounded to fp16, kept where that helps;
  - both `rounds` times. Each block keeps its result only where the error under M' went down, so no block
    ends up worse than the quantizer's own choice under that measure.

The bytes stay the format's: only d and the levels change. The K formats are not refined here.
"""

from __future__ import annotations

from typing import Callable

import torch

from .block_search import QK

DAMP = 0.01  # diagonal damping, relative to the mean diagonal of M (GPTQ's percdamp)
SWEEPS = 2
ROUNDS = 2
CHUNK_ELEMS = 1 << 20  # weights per step

# blocks [n, type_size] -> (fp16-valued d [n, 1], signed levels [n, 32] as float32)
LevelsFn = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
# (fp16-valued d [n, 1], signed levels [n, 32]) -> blocks [n, type_size]
PackFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
RefineFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def damped(m: torch.Tensor, damp: float = DAMP) -> torch.Tensor:
    """m [nb, 32, 32] -> m + damp * mean(diag) * I per block."""
    eye = torch.eye(m.shape[-1], dtype=m.dtype, device=m.device)
    return m + damp * m.diagonal(dim1=1, dim2=2).mean(-1)[:, None, None] * eye


def _quad(e: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """e [32, r, nb], m [nb, 32, 32] -> e^T m e per block [r, nb]."""
    return (torch.einsum("irb,bij->jrb", e, m) * e).sum(0)


@torch.no_grad()
def refine_blocks(w: torch.Tensor, m: torch.Tensor, d: torch.Tensor, q: torch.Tensor, qmin: int, qmax: int,
                  sweeps: int = SWEEPS, rounds: int = ROUNDS) -> tuple[torch.Tensor, torch.Tensor]:
    """Refined (d [r, nb], q [32, r, nb]) for the blocks w [32, r, nb] (column j of every block in w[j]).

    m: damped second moments [nb, 32, 32]; d: fp16-valued scales [r, nb]; q: signed levels [32, r, nb], all float32.
    """
    m_rows = m.permute(1, 2, 0).contiguous()  # [32, 32, nb]: m_rows[j, i, b] = m[b, j, i]
    m_diag = m.diagonal(dim1=1, dim2=2).T.contiguous()  # [32, nb]
    err0 = _quad(w - d * q, m)  # [r, nb]
    d0, q0 = d, q
    q = q.clone()
    for _ in range(rounds):
        ad = d.abs()
        for _ in range(sweeps):
            g = torch.einsum("irb,bij->jrb", w - d * q, m).contiguous()  # m e [32, r, nb]
            for j in range(QK):
                # moving q_j by step changes the error by -2 d step g_j + d^2 m_jj: descend where |2 g_j| > |d| m_jj
                step = torch.sign(d * g[j])
                qn = q[j] + step
                step *= (2 * g[j].abs() > ad * m_diag[j]) & (qn >= qmin) & (qn <= qmax)
                q[j] += step
                g.addcmul_((d * step)[None], m_rows[j][:, None, :], value=-1.0)
        mq = torch.einsum("irb,bij->jrb", q, m)  # [32, r, nb]
        den = (mq * q).sum(0)
        fit = ((mq * w).sum(0) / torch.where(den > 0, den, torch.ones_like(den))).to(torch.float16).float()
        fit_ok = (den > 0) & torch.isfinite(fit) & (_quad(w - fit * q, m) < _quad(w - d * q, m))
        d = torch.where(fit_ok, fit, d)
    better = _quad(w - d * q, m) < err0  # [r, nb]
    return torch.where(better, d, d0), torch.where(better[None], q, q0)


def symmetric_refiner(qmin: int, qmax: int, type_size: int, levels: LevelsFn, pack: PackFn) -> RefineFn:
    """refine(w [rows, cols], bytes [rows, cols/32*type_size], moments [cols/32, 32, 32]) -> refined bytes."""

    @torch.no_grad()
    def refine(w: torch.Tensor, qbytes: torch.Tensor, moments: torch.Tensor) -> torch.Tensor:
        rows, cols = w.shape
        nb = cols // QK
        m = damped(moments.to(w.device, torch.float32))  # [nb, 32, 32]
        out = torch.empty_like(qbytes)
        step = max(1, CHUNK_ELEMS // cols)  # refine_blocks holds ~8 temporaries of a chunk's size
        for r0 in range(0, rows, step):
            r1 = min(rows, r0 + step)
            r = r1 - r0
            d, q = levels(qbytes[r0:r1].reshape(r * nb, type_size))  # [r*nb, 1], [r*nb, 32]
            wt = w[r0:r1].reshape(r, nb, QK).permute(2, 0, 1).contiguous()  # [32, r, nb]
            qt = q.reshape(r, nb, QK).permute(2, 0, 1).contiguous()
            d, qt = refine_blocks(wt, m, d.reshape(r, nb), qt, qmin, qmax)
            out[r0:r1] = pack(d.reshape(r * nb, 1), qt.permute(1, 2, 0).reshape(r * nb, QK)).view(r, -1)
        return out

    return refine
