"""torch.compile'd quantizer searches (the default outside the tests) against the eager ones (what the other
tests run): same format, same or slightly better error, nearly every byte equal (fused arithmetic may move a
last bit of a sum and flip a near-tie)."""

from __future__ import annotations

import pytest
import torch
from gguf import GGMLQuantizationType as QT

from awq_gguf.convert.quants import compiled, dequantize, fake_quantize, quantize


def _weighted_error(w: torch.Tensor, q: torch.Tensor, qtype: QT, imp: torch.Tensor | None) -> float:
    d = dequantize(q, qtype) - w
    return float((d * d * (1.0 if imp is None else imp[None, :])).sum())


@pytest.mark.parametrize("qtype", [QT.Q5_0, QT.Q4_K, QT.Q6_K])
@pytest.mark.parametrize("with_importance", [False, True])
def test_compiled_matches_eager(monkeypatch: pytest.MonkeyPatch, qtype: QT, with_importance: bool) -> None:
    g = torch.Generator().manual_seed(1)
    w = torch.randn(24, 512, generator=g) * (torch.rand(1, 512, generator=g) * 2)  # [rows, cols], uneven columns
    imp = torch.rand(512, generator=g) if with_importance else None
    monkeypatch.setenv("AWQ_GGUF_COMPILE", "0")
    eager = quantize(w, qtype, imp)
    monkeypatch.setenv("AWQ_GGUF_COMPILE", "1")
    assert compiled.enabled(), "torch.compile was disabled by an earlier failure"
    fused = quantize(w, qtype, imp)
    assert fused.shape == eager.shape and fused.dtype == torch.uint8
    assert (fused == eager).float().mean() > 0.98
    e_fused, e_eager = _weighted_error(w, fused, qtype, imp), _weighted_error(w, eager, qtype, imp)
    assert e_fused == pytest.approx(e_eager, rel=1e-3)
    # the AWQ search's fake quantization is the same values (packing skipped where the format allows it)
    assert torch.equal(fake_quantize(w, qtype, imp), dequantize(fused, qtype))
