"""The clipping search: exact errors over all tokens, never worse than no clamp, and clamps where it pays."""

from __future__ import annotations

import pytest
import torch
from gguf import GGMLQuantizationType as QT

from awq_gguf.awq_scale.clip import apply_clip, block_moments, block_output_error, clip_search, scale_moments
from awq_gguf.convert.quants import fake_quantize


def _direct_error(w: torch.Tensor, wq: torch.Tensor, x: torch.Tensor, bs: int) -> torch.Tensor:
    """[rows, nb] mean over tokens of (x_b . (wq_b - w_b))^2, the slow way."""
    nb = w.shape[1] // bs
    return torch.stack([((x[:, b * bs:(b + 1) * bs].double() @ (wq - w)[:, b * bs:(b + 1) * bs].double().T) ** 2)
                        .mean(0) for b in range(nb)], dim=1).float()


def _data(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    w = torch.distributions.StudentT(2.5).sample((64, 512)) * 0.02  # heavy tails: clamping should help somewhere
    x = torch.randn(300, 512, generator=g)
    x[0, 37] = 400.0  # one rare token with a huge activation (an attention-sink-like first token)
    return w, x


def test_block_output_error_is_exact_over_all_tokens():
    w, x = _data()
    wq = fake_quantize(w, QT.Q4_0)
    m = block_moments(x.double(), 32) / x.shape[0]
    assert torch.allclose(block_output_error(w, wq, m), _direct_error(w, wq, x, 32), rtol=1e-4)


def test_scale_moments_are_those_of_scaled_inputs():
    x = torch.randn(50, 64, dtype=torch.float64)
    s = torch.rand(64, dtype=torch.float64) + 0.5
    assert torch.allclose(scale_moments(block_moments(x, 32), s), block_moments(x / s, 32))


@pytest.mark.parametrize("qtype", [QT.Q4_0, QT.Q4_K])
def test_clip_never_worse_on_any_block(qtype):
    w, x = _data()
    bs = 32 if qtype == QT.Q4_0 else 256
    m = block_moments(x.double(), bs) / x.shape[0]
    before = _direct_error(w, fake_quantize(w, qtype), x, bs)  # [64, nb], every token
    bound = clip_search(w, qtype, m, None, max_shrink=0.5, n_grid=20)
    assert bound.shape == (64, 512 // bs)
    wc = apply_clip(w, bound)
    after = _direct_error(w, fake_quantize(wc, qtype), x, bs)
    assert (after <= before * (1 + 1e-4) + 1e-9).all()
    assert after.sum() < before.sum()
    assert (wc.abs() <= w.abs()).all() and (wc != w).any()


def test_rare_huge_token_is_protected():
    """Column 37 only matters for token 0; a clamp of its weights would wreck that token: the search, which sees
    every token, keeps that token's output error no worse than without clamping."""
    w, x = _data()
    w[:, 37] = 0.3  # the largest weight of its block in every row: the first thing a clamp cuts
    m = block_moments(x.double(), 32) / x.shape[0]
    wc = apply_clip(w, clip_search(w, QT.Q4_0, m, None))
    tok0 = lambda v: float(((x[:1] @ (fake_quantize(v, QT.Q4_0) - w).T) ** 2).sum())  # noqa: E731
    assert tok0(wc) <= tok0(w) * 1.01


def test_float_type_untouched():
    m = block_moments(torch.randn(8, 64), 32)
    assert clip_search(torch.randn(4, 64), QT.F16, m, None) is None
