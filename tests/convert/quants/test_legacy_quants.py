"""The 32-element block formats Q8_0, Q4_0, Q4_1, Q5_0, Q5_1: bytes, decoding, quality, importance."""

from __future__ import annotations

import importlib
import struct

import numpy as np
import pytest
import torch
from gguf import GGML_QUANT_SIZES
from gguf import GGMLQuantizationType as QT
from gguf import quants as gq

from awq_gguf.convert import quants
from awq_gguf.convert.quants import block_search

TYPES = [QT.Q8_0, QT.Q4_0, QT.Q4_1, QT.Q5_0, QT.Q5_1]
SEARCHED = [QT.Q4_0, QT.Q4_1, QT.Q5_0, QT.Q5_1]


def module(qt: QT):
    return importlib.import_module(f"awq_gguf.convert.quants.{qt.name.lower()}")


def awkward_tensor(rows: int = 24, cols: int = 256, seed: int = 0) -> torch.Tensor:
    """Gaussian rows plus the corner cases: zero, constant, negative-only, positive-only, outliers, tiny, huge."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(rows, cols, generator=g) * 0.05
    w[0] = 0.0
    w[1] = 0.75
    w[2] = -w[2].abs()
    w[3] = w[3].abs()
    w[4, 5] = 3.0  # one outlier in a block
    w[4, 100] = -7.0
    w[5] *= 1e-6  # tiny scales (fp16 subnormal d)
    w[6] *= 1e3
    w[7, :32] = 0.0  # one zero block in a normal row
    w[8, :32] = -0.5  # one constant block
    w[9, 32:64] = torch.linspace(-1, 1, 32)
    return w


def weighted_err(w: torch.Tensor, y: torch.Tensor, wt: torch.Tensor) -> float:
    return float((wt * (w - y) ** 2).sum())


def rmse(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a - b) ** 2).mean().sqrt())


# --------------------------------------------------------------------------------------------------------------
# bytes and decoding


@pytest.mark.parametrize("qt", TYPES, ids=lambda t: t.name)
@pytest.mark.parametrize("with_importance", [False, True])
def test_bytes_decode_exactly_as_gguf(qt: QT, with_importance: bool) -> None:
    w = awkward_tensor()
    imp = torch.rand(w.shape[1], generator=torch.Generator().manual_seed(1)) if with_importance else None
    q = quants.quantize(w, qt, imp)
    block, type_size = GGML_QUANT_SIZES[qt]
    assert q.dtype == torch.uint8
    assert tuple(q.shape) == (w.shape[0], w.shape[1] // block * type_size)
    ours = quants.dequantize(q, qt)
    assert ours.dtype == torch.float32 and ours.shape == w.shape
    theirs = gq.dequantize(q.numpy(), qt)
    np.testing.assert_array_equal(ours.numpy().view(np.uint32), theirs.view(np.uint32))
    # zero blocks come back exactly, and constant ones where a level can hold them (not Q8_0: d = amax/127 in fp16)
    assert torch.equal(ours[0], w[0])
    assert torch.equal(ours[7, :32], w[7, :32])
    if qt != QT.Q8_0:
        assert torch.equal(ours[1], w[1])
        assert torch.equal(ours[8, :32], w[8, :32])
    assert torch.isfinite(ours).all()
    assert quants.fake_quantize(w, qt, imp).equal(ours)


@pytest.mark.parametrize("qt", TYPES, ids=lambda t: t.name)
def test_reference_rounding_matches_gguf_quantize(qt: QT) -> None:
    """quantize_ref is llama.cpp's *_ref rounding; gguf.quants reproduces it byte for byte."""
    w = awkward_tensor(seed=3)
    ours = module(qt).quantize_ref(w, None)
    np.testing.assert_array_equal(ours.numpy(), gq.quantize(w.numpy(), qt))


def test_q8_0_is_the_reference_rounding() -> None:
    w = awkward_tensor(seed=4)
    np.testing.assert_array_equal(quants.quantize(w, QT.Q8_0).numpy(), gq.quantize(w.numpy(), QT.Q8_0))
    # halves round away from zero (C roundf), not to even: 0.5*d -> 1, 2.5*d -> 3
    x = torch.zeros(1, 32)
    x[0, 0], x[0, 1], x[0, 2], x[0, 3] = 127.0, 0.5, 2.5, -1.5
    q = quants.quantize(x, QT.Q8_0)
    assert q[0, 2:6].view(torch.int8).tolist() == [127, 1, 3, -2]


def _f16(v: float) -> bytes:
    return struct.pack("<e", v)


def test_decode_hand_built_blocks() -> None:
    lv = list(range(16)) + list(range(15, -1, -1))  # 4-bit levels of the 32 weights
    nib = bytes(lv[j] | (lv[j + 16] << 4) for j in range(16))
    lv5 = [(7 * j + 3) % 32 for j in range(32)]  # 5-bit levels
    nib5 = bytes((lv5[j] & 15) | ((lv5[j + 16] & 15) << 4) for j in range(16))
    qh = struct.pack("<I", sum(((v >> 4) & 1) << j for j, v in enumerate(lv5)))
    i8 = [-128 + 8 * j for j in range(32)]  # -128 .. 120

    cases = {
        QT.Q4_0: (_f16(0.5) + nib, [0.5 * (v - 8) for v in lv]),
        QT.Q4_1: (_f16(0.25) + _f16(-1.0) + nib, [0.25 * v - 1.0 for v in lv]),
        QT.Q5_0: (_f16(-0.125) + qh + nib5, [-0.125 * (v - 16) for v in lv5]),
        QT.Q5_1: (_f16(2.0) + _f16(0.5) + qh + nib5, [2.0 * v + 0.5 for v in lv5]),
        QT.Q8_0: (_f16(0.0625) + struct.pack("<32b", *i8), [0.0625 * v for v in i8]),
    }
    for qt, (raw, expect) in cases.items():
        assert len(raw) == GGML_QUANT_SIZES[qt][1]
        q = torch.tensor(list(raw * 2), dtype=torch.uint8).view(1, -1)  # two identical blocks in one row
        out = quants.dequantize(q, qt)
        assert out.shape == (1, 64)
        assert out[0].tolist() == expect * 2, qt.name


@pytest.mark.parametrize("qt", TYPES, ids=lambda t: t.name)
def test_encode_hand_built_grid_is_lossless(qt: QT) -> None:
    """Weights already on a block grid of the format come back unchanged."""
    g = torch.Generator().manual_seed(5)
    rows = 6
    if qt in (QT.Q4_0, QT.Q5_0):
        half = 8 if qt == QT.Q4_0 else 16
        lv = torch.randint(-half, half, (rows, 64), generator=g).float()
        lv[:, ::32] = -half  # the largest magnitude sits on the extra negative level, as the reference puts it
        w = lv * 0.03125
    elif qt in (QT.Q4_1, QT.Q5_1):
        top = 15 if qt == QT.Q4_1 else 31
        lv = torch.randint(0, top + 1, (rows, 64), generator=g).float()
        lv[:, ::32], lv[:, 1::32] = 0, top
        w = lv * 0.015625 - 0.75
    else:
        lv = torch.randint(-127, 128, (rows, 64), generator=g).float()
        lv[:, ::32] = 127
        w = lv * 0.001953125
    assert torch.equal(quants.fake_quantize(w, qt), w)


def test_shape_errors() -> None:
    with pytest.raises(quants.QuantShapeError):
        quants.quantize(torch.zeros(4, 48), QT.Q4_0)
    with pytest.raises(quants.QuantShapeError):
        quants.quantize(torch.zeros(4, 64), QT.Q4_0, torch.ones(32))


@pytest.mark.parametrize("qt", TYPES, ids=lambda t: t.name)
def test_row_chunking_does_not_change_bytes(qt: QT, monkeypatch: pytest.MonkeyPatch) -> None:
    w = awkward_tensor(rows=40, cols=128, seed=6)
    imp = torch.rand(128, generator=torch.Generator().manual_seed(7))
    whole = [quants.quantize(w, qt), quants.quantize(w, qt, imp)]
    monkeypatch.setattr(block_search, "CHUNK_ELEMS", 300)  # 2 rows per chunk
    assert torch.equal(quants.quantize(w, qt), whole[0])
    assert torch.equal(quants.quantize(w, qt, imp), whole[1])


# --------------------------------------------------------------------------------------------------------------
# quality


@pytest.mark.parametrize("qt", SEARCHED, ids=lambda t: t.name)
def test_search_beats_reference_rounding(qt: QT) -> None:
    w = torch.randn(256, 512, generator=torch.Generator().manual_seed(8))
    ours = quants.fake_quantize(w, qt)
    ref = quants.dequantize(module(qt).quantize_ref(w, None), qt)
    ratio = rmse(ours, w) / rmse(ref, w)
    assert ratio < 0.96, f"{qt.name}: RMSE ratio ours/ref {ratio:.4f}"
    # and no single block is worse than the reference's
    e_ours = ((ours - w) ** 2).view(-1, 32).sum(1)
    e_ref = ((ref - w) ** 2).view(-1, 32).sum(1)
    assert bool((e_ours <= e_ref * (1 + 1e-6)).all())


@pytest.mark.parametrize("qt", TYPES, ids=lambda t: t.name)
def test_never_worse_than_reference_on_awkward_rows(qt: QT) -> None:
    w = awkward_tensor(seed=9)
    ours = quants.fake_quantize(w, qt)
    ref = quants.dequantize(module(qt).quantize_ref(w, None), qt)
    e_ours = ((ours - w) ** 2).view(-1, 32).sum(1)
    e_ref = ((ref - w) ** 2).view(-1, 32).sum(1)
    assert bool((e_ours <= e_ref * (1 + 1e-6)).all())


@pytest.mark.parametrize("qt", TYPES, ids=lambda t: t.name)
def test_importance_lowers_weighted_error(qt: QT) -> None:
    g = torch.Generator().manual_seed(10)
    w = torch.randn(128, 512, generator=g) * 0.02
    imp = torch.exp(2.0 * torch.randn(512, generator=g))  # heavy-tailed, like activation mean squares
    plain = quants.fake_quantize(w, qt)
    weighted = quants.fake_quantize(w, qt, imp)
    # the objective: llama.cpp's imatrix weights imp_j * sqrt(sigma2 + w_j^2)
    wt = block_search.element_weights(w, imp)
    assert weighted_err(w, weighted, wt) < 0.97 * weighted_err(w, plain, wt)
    # and plain importance weighting too (what AWQ's activation statistics measure)
    assert weighted_err(w, weighted, imp[None, :]) < weighted_err(w, plain, imp[None, :])
    # the weighted search starts from the reference too: per block never worse under its own weights
    ref = quants.dequantize(module(qt).quantize_ref(w, None), qt)
    e_w = (wt * (weighted - w) ** 2).view(-1, 32).sum(1)
    e_r = (wt * (ref - w) ** 2).view(-1, 32).sum(1)
    assert bool((e_w <= e_r * (1 + 1e-6)).all())


def test_importance_zero_columns_are_harmless() -> None:
    w = awkward_tensor(seed=11)
    imp = torch.ones(w.shape[1])
    imp[:64] = 0.0
    for qt in TYPES:
        out = quants.fake_quantize(w, qt, imp)
        assert torch.isfinite(out).all(), qt.name
        np.testing.assert_array_equal(
            out.numpy(), gq.dequantize(quants.quantize(w, qt, imp).numpy(), qt)
        )


@pytest.mark.gpu
@pytest.mark.parametrize("qt", TYPES, ids=lambda t: t.name)
def test_cuda_matches_cpu_quality(qt: QT) -> None:
    w = torch.randn(512, 1024, generator=torch.Generator().manual_seed(12))
    imp = torch.rand(1024, generator=torch.Generator().manual_seed(13))
    for i in (None, imp):
        q_gpu = quants.quantize(w.cuda(), qt, None if i is None else i.cuda())
        out = quants.dequantize(q_gpu, qt).cpu()
        np.testing.assert_array_equal(out.numpy(), gq.dequantize(q_gpu.cpu().numpy(), qt))
        cpu = quants.fake_quantize(w, qt, i)
        assert rmse(out, w) <= rmse(cpu, w) * 1.001
