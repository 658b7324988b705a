"""Level refinement under block second moments (convert/quants/refine.py)."""

from __future__ import annotations

import pytest
import torch
from gguf import GGMLQuantizationType as QT

from awq_gguf.convert import quants as Q
from awq_gguf.convert.quants.refine import damped

REFINED = (QT.Q4_0, QT.Q5_0, QT.Q8_0)
LEVELS = {QT.Q4_0: (-8, 7), QT.Q5_0: (-16, 15), QT.Q8_0: (-128, 127)}


def _case(rows: int, cols: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(w [rows, cols], importance [cols], moments [cols/32, 32, 32]) from inputs with correlated, uneven channels."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(rows, cols, generator=g)
    x = torch.randn(2048, cols, generator=g) * torch.rand(cols, generator=g) * 3 \
        + torch.randn(2048, 1, generator=g) * torch.randn(cols, generator=g)  # a shared direction: correlation
    xb = x.view(2048, cols // 32, 32).transpose(0, 1)  # [nb, T, 32]
    m = torch.bmm(xb.transpose(1, 2), xb) / 2048
    return w, x.pow(2).mean(0), m


def _block_err(w: torch.Tensor, v: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """[rows, nb]: e^T m e per block."""
    e = (w - v).view(w.shape[0], -1, 32).transpose(0, 1)  # [nb, rows, 32]
    return (torch.bmm(e, m) * e).sum(-1).T


@pytest.mark.parametrize("qtype", REFINED)
@pytest.mark.parametrize("rows,cols,seed", [(64, 96, 0), (7, 32, 1), (33, 160, 2)])
def test_refinement_lowers_every_blocks_output_error(qtype, rows, cols, seed):
    w, imp, m = _case(rows, cols, seed)
    base = Q.quantize(w, qtype, imp)
    ref = Q.quantize(w, qtype, imp, m)
    assert ref.shape == base.shape and ref.dtype == torch.uint8
    md = damped(m)
    e_base = _block_err(w, Q.dequantize(base, qtype), md)
    e_ref = _block_err(w, Q.dequantize(ref, qtype), md)
    assert bool((e_ref <= e_base).all())  # no block worse under the measure it optimizes
    assert float(e_ref.sum()) < 0.95 * float(e_base.sum())  # and clearly better overall on correlated inputs
    # the true (undamped) output error goes down too
    assert float(_block_err(w, Q.dequantize(ref, qtype), m).sum()) < float(_block_err(w, Q.dequantize(base, qtype), m).sum())


@pytest.mark.parametrize("qtype", REFINED)
def test_refined_bytes_are_valid_blocks(qtype):
    w, imp, m = _case(16, 64, 3)
    ref = Q.quantize(w, qtype, imp, m)
    fmt = Q.get_format(qtype)
    blocks = ref.view(-1, fmt.type_size)
    d = blocks[:, 0:2].contiguous().view(torch.float16).float()  # [n, 1]
    assert bool(torch.isfinite(d).all())
    v = Q.dequantize(ref, qtype).view(-1, 32)
    lv = v / torch.where(d == 0, torch.ones_like(d), d)
    qmin, qmax = LEVELS[qtype]
    assert bool((lv == lv.round()).all()) and int(lv.min()) >= qmin and int(lv.max()) <= qmax
    # fake_quantize with moments is exactly what the file holds
    assert torch.equal(Q.fake_quantize(w, qtype, imp, m), Q.dequantize(ref, qtype))


def test_zero_blocks_and_zero_moments_stay_put():
    w, imp, m = _case(8, 64, 4)
    w[2] = 0.0
    m[1] = 0.0  # a block of columns that never fired
    ref = Q.quantize(w, QT.Q4_0, imp, m)
    v = Q.dequantize(ref, QT.Q4_0)
    assert bool(torch.isfinite(v).all()) and bool((v[2] == 0).all())
    base = Q.quantize(w, QT.Q4_0, imp)
    # where M is zero (no signal) the damping is zero too: the quantizer's choice stays, byte for byte
    assert torch.equal(ref.view(8, 2, 18)[:, 1], base.view(8, 2, 18)[:, 1])


@pytest.mark.parametrize("qtype", [QT.Q4_K, QT.Q6_K, QT.Q4_1, QT.F16])
def test_other_types_ignore_moments(qtype):
    w, imp, m = _case(4, 256, 5)
    assert not Q.refinable(qtype)
    assert torch.equal(Q.quantize(w, qtype, imp, m), Q.quantize(w, qtype, imp))


def test_bad_moments_shape_raises():
    w, imp, m = _case(4, 64, 6)
    with pytest.raises(Q.QuantShapeError, match=r"moments have shape \(2, 32, 16\), expected \(2, 32, 32\)"):
        Q.quantize(w, QT.Q4_0, imp, m[:, :, :16])
    with pytest.raises(Q.QuantShapeError, match="moments"):
        Q.fake_quantize(w, QT.Q4_0, imp, m[:1])
