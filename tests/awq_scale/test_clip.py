"""The clipping search never raises any block's output error and does clamp where it pays."""

from __future__ import annotations

import pytest
import torch
from gguf import GGMLQuantizationType as QT

from awq_gguf.awq_scale.clip import apply_clip, block_output_error, clip_search
from awq_gguf.convert.quants import fake_quantize


@pytest.mark.parametrize("qtype", [QT.Q4_0, QT.Q4_K])
def test_clip_lowers_block_errors(qtype):
    g = torch.Generator().manual_seed(0)
    w = torch.distributions.StudentT(2.5).sample((64, 512)) * 0.02  # heavy tails: clamping should help somewhere
    x = torch.randn(128, 512, generator=g)
    bs = 32 if qtype == QT.Q4_0 else 256
    before = block_output_error(w, fake_quantize(w, qtype), x, bs)  # [64, nb]
    bound = clip_search(w, qtype, x, None, max_shrink=0.5, n_grid=20)  # [64, nb]
    assert bound.shape == (64, 512 // bs)
    wc = apply_clip(w, bound)
    after = block_output_error(w, fake_quantize(wc, qtype), x, bs)
    assert (after <= before * (1 + 1e-5)).all()
    assert after.sum() < before.sum()
    assert (wc.abs() <= w.abs()).all() and (wc != w).any()


def test_block_output_error_matches_direct_sum():
    g = torch.Generator().manual_seed(1)
    w, wq, x = torch.randn(8, 64, generator=g), torch.randn(8, 64, generator=g), torch.randn(16, 64, generator=g)
    err = block_output_error(w, wq, x, 32)
    direct = torch.stack([((x[:, b * 32:(b + 1) * 32] @ (wq - w)[:, b * 32:(b + 1) * 32].T) ** 2).mean(0)
                          for b in range(2)], dim=1)
    assert torch.allclose(err, direct, rtol=1e-4)


def test_float_type_untouched():
    assert clip_search(torch.randn(4, 64), QT.F16, torch.randn(8, 64), None) is None
