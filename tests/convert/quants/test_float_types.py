"""F32, F16, BF16: bytes equal numpy's casts / gguf.quants' BF16 rounding, and decode back exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType as QT
from gguf import quants as gq

from awq_gguf.convert import quants


def sample() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    w = torch.randn(8, 64, generator=g)
    w[0] = 0.0
    w[1] = -0.0
    w[2] *= 1e-30  # below fp16 and into bf16 subnormal-free range
    w[3] *= 1e5  # beyond fp16 range -> inf, as numpy
    # bf16 ties: exactly half way between two bf16 values, even and odd mantissa
    w[4, :4] = torch.tensor([0x3F808000, 0x3F818000, 0xBF808000, 0x3F80FFFF], dtype=torch.int64).to(torch.int32).view(
        torch.float32
    )
    w[5, 0], w[5, 1] = float("inf"), -float("inf")
    return w


def test_f32_bytes_and_round_trip() -> None:
    w = sample()
    q = quants.quantize(w, QT.F32)
    assert q.dtype == torch.uint8 and q.shape == (8, 256)
    assert q.numpy().tobytes() == w.numpy().astype("<f4").tobytes()
    assert torch.equal(quants.dequantize(q, QT.F32), w)


def test_f16_bytes_match_numpy_cast() -> None:
    w = sample()
    q = quants.quantize(w, QT.F16)
    assert q.shape == (8, 128)
    with np.errstate(over="ignore"):
        expect = w.numpy().astype(np.float16)
    assert q.numpy().tobytes() == expect.astype("<f2").tobytes()
    out = quants.dequantize(q, QT.F16)
    np.testing.assert_array_equal(out.numpy(), expect.astype(np.float32))
    np.testing.assert_array_equal(out.numpy(), gq.dequantize(q.numpy(), QT.F16).reshape(out.shape))


def test_bf16_bytes_match_gguf_quantize() -> None:
    w = sample()
    q = quants.quantize(w, QT.BF16)
    assert q.shape == (8, 128)
    np.testing.assert_array_equal(q.numpy(), gq.quantize(w.numpy(), QT.BF16))
    out = quants.dequantize(q, QT.BF16)
    np.testing.assert_array_equal(out.numpy().view(np.uint32), gq.dequantize(q.numpy(), QT.BF16).view(np.uint32))
    # ties round to even: 0x3F808000 -> 0x3F80, 0x3F818000 -> 0x3F82
    assert q[4, :8].view(torch.int16).tolist() == [0x3F80, 0x3F82, 0xBF80 - 0x10000, 0x3F81]


@pytest.mark.parametrize("qt", [QT.F32, QT.F16, QT.BF16], ids=lambda t: t.name)
def test_values_on_the_grid_round_trip(qt: QT) -> None:
    dt = {QT.F32: torch.float32, QT.F16: torch.float16, QT.BF16: torch.bfloat16}[qt]
    w = torch.randn(16, 32).to(dt).float()
    assert torch.equal(quants.fake_quantize(w, qt), w)
