"""K-quant block formats Q2_K..Q6_K: byte layout, hand-built blocks, search quality, importance, shapes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gguf import GGML_QUANT_SIZES
from gguf import GGMLQuantizationType as QT
from gguf import quants as gguf_quants

from awq_gguf.convert import quants as Q
from awq_gguf.convert.quants import k_common

K_TYPES = [QT.Q2_K, QT.Q3_K, QT.Q4_K, QT.Q5_K, QT.Q6_K]


@pytest.fixture(autouse=True)
def _one_thread():
    """Small tensors: one thread is faster, and much faster on a busy machine (no OpenMP spin-waits)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _ours(qtype: QT, w: np.ndarray, imp: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """-> (bytes uint8 [rows, row_bytes], our dequantized float32 [rows, cols])."""
    fmt = Q.get_format(qtype)
    q = fmt.quantize(torch.from_numpy(w), None if imp is None else torch.from_numpy(imp))
    return q.numpy(), fmt.dequantize(q).numpy()


def _special_tensor(seed: int, rows: int = 12, cols: int = 512) -> np.ndarray:
    """Gaussian rows plus the awkward ones: zeros, constants, outliers, one-signed, tiny, half-zero."""
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((rows, cols)) * 0.02).astype(np.float32)
    w[0] = 0.0
    w[1] = 0.37
    w[2] = -1.25
    w[3, 5] = 40.0  # huge outlier
    w[3, 300] = -25.0
    w[4] = -np.abs(w[4])  # negative-only
    w[5] = np.abs(w[5])  # positive-only
    w[6] *= 1e-6  # tiny
    w[7, :256] = 0.0  # one all-zero block, one normal
    w[8, 16:32] = 0.0  # one zero sub-block
    w[9] = rng.standard_t(2, cols).astype(np.float32)  # heavy tails
    return w


# ---------------------------------------------------------------------------------------------------------
# 1. our bytes decode (through gguf's numpy dequantizer) to exactly what our dequantize returns


@pytest.mark.parametrize("qtype", K_TYPES, ids=lambda t: t.name)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bytes_roundtrip_through_gguf(qtype: QT, seed: int) -> None:
    w = _special_tensor(seed)
    block, type_size = GGML_QUANT_SIZES[qtype]
    for imp in (None, np.random.default_rng(seed + 10).uniform(0.0, 3.0, w.shape[1]).astype(np.float32)):
        q, ours = _ours(qtype, w, imp)
        assert q.dtype == np.uint8
        assert q.shape == (w.shape[0], w.shape[1] // block * type_size)
        assert q.size == w.size // 256 * type_size
        theirs = gguf_quants.dequantize(q, qtype)
        assert theirs.shape == w.shape
        assert np.array_equal(ours, theirs)
        assert np.isfinite(ours).all()
        assert np.all(ours[0] == 0)  # zero row stays zero
        # rows a K block can represent exactly, or close to it
        assert np.abs(ours[7, :256]).max() == 0
        rel = np.abs(ours - w).max(axis=1) / np.maximum(np.abs(w).max(axis=1), 1e-30)
        assert rel[1] < 1e-3 and rel[2] < 1e-3  # constant rows
        assert rel[3] < 0.5  # the outlier row still tracks its outliers
        # the AWQ search's fake quantization: the same float values, bit for bit, without the bytes
        fake = Q.fake_quantize(torch.from_numpy(w), qtype, None if imp is None else torch.from_numpy(imp))
        assert Q.get_format(qtype).fake is not None
        np.testing.assert_array_equal(fake.numpy().view(np.uint32), ours.view(np.uint32))


@pytest.mark.parametrize("qtype", K_TYPES, ids=lambda t: t.name)
def test_chunking_and_importance_alignment(qtype: QT, monkeypatch: pytest.MonkeyPatch) -> None:
    """Small chunks (several per tensor) give the same bytes as one chunk, with and without importance."""
    rng = np.random.default_rng(3)
    w = (rng.standard_normal((10, 768)) * 0.05).astype(np.float32)
    imp = rng.uniform(0.1, 5.0, 768).astype(np.float32)
    full = [_ours(qtype, w, i)[0] for i in (None, imp)]
    monkeypatch.setitem(k_common.CHUNK_BLOCKS, "cpu", 4)  # chunks that split rows
    small = [_ours(qtype, w, i)[0] for i in (None, imp)]
    assert np.array_equal(full[0], small[0])
    assert np.array_equal(full[1], small[1])


@pytest.mark.parametrize("qtype", K_TYPES, ids=lambda t: t.name)
def test_degenerate_importance(qtype: QT) -> None:
    rng = np.random.default_rng(4)
    w = (rng.standard_normal((4, 512)) * 0.05).astype(np.float32)
    imp = rng.uniform(0.0, 1.0, 512).astype(np.float32)
    imp[:300] = 0.0  # whole blocks / sub-blocks without weight
    for i in (imp, np.zeros(512, np.float32)):
        q, ours = _ours(qtype, w, i)
        assert np.isfinite(ours).all()
        assert np.array_equal(ours, gguf_quants.dequantize(q, qtype))


# ---------------------------------------------------------------------------------------------------------
# 2. hand-built blocks, packed here element by element after ggml's C loops


def _f16(v: float) -> bytes:
    return np.array([v], dtype=np.float16).tobytes()


def _pack_2bit(L: list[int]) -> bytearray:
    qs = bytearray(64)
    for j in range(0, 256, 128):
        for l in range(32):
            qs[j // 4 + l] = L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6)
    return qs


def _pack_k4_scales(sc: list[int], m: list[int]) -> bytearray:
    s = bytearray(12)
    for j in range(8):
        if j < 4:
            s[j] = sc[j]
            s[j + 4] = m[j]
        else:
            s[j + 4] = (sc[j] & 0xF) | ((m[j] & 0xF) << 4)
            s[j - 4] |= (sc[j] >> 4) << 6
            s[j] |= (m[j] >> 4) << 6
    return s


def _decode_both(qtype: QT, block: bytes) -> tuple[np.ndarray, np.ndarray]:
    assert len(block) == GGML_QUANT_SIZES[qtype][1]
    q = np.frombuffer(block, dtype=np.uint8).reshape(1, -1).copy()
    ours = Q.get_format(qtype).dequantize(torch.from_numpy(q)).numpy()[0]
    return ours, gguf_quants.dequantize(q, qtype)[0]


F32 = np.float32


def test_hand_block_q2_k() -> None:
    d, dmin = 0.5, 0.125
    sc = [(3 * j + 1) % 16 for j in range(16)]
    m = [(7 * j + 5) % 16 for j in range(16)]
    q = [(e * 5 + e // 16) % 4 for e in range(256)]
    block = bytes([sc[j] | (m[j] << 4) for j in range(16)]) + _pack_2bit(q) + _f16(d) + _f16(dmin)
    want = np.array([F32(d * sc[e // 16]) * F32(q[e]) - F32(dmin * m[e // 16]) for e in range(256)], F32)
    ours, theirs = _decode_both(QT.Q2_K, block)
    assert np.array_equal(ours, want) and np.array_equal(theirs, want)


def test_hand_block_q3_k() -> None:
    d = 0.25
    sc = [(5 * j + 3) % 64 - 32 for j in range(16)]  # -32..31
    q = [(e * 3 + e // 32) % 8 - 4 for e in range(256)]  # -4..3
    L = [v + 4 for v in q]
    hmask = bytearray(32)
    for j in range(256):
        if L[j] > 3:
            hmask[j % 32] |= 1 << (j // 32)
    scales = bytearray(12)
    for j in range(16):
        u = sc[j] + 32
        if j < 8:
            scales[j] = u & 0xF
        else:
            scales[j - 8] |= (u & 0xF) << 4
        scales[j % 4 + 8] |= (u >> 4) << (2 * (j // 4))
    block = bytes(hmask) + _pack_2bit([v & 3 for v in L]) + bytes(scales) + _f16(d)
    want = np.array([F32(d * sc[e // 16]) * F32(q[e]) for e in range(256)], F32)
    ours, theirs = _decode_both(QT.Q3_K, block)
    assert np.array_equal(ours, want) and np.array_equal(theirs, want)


def test_hand_block_q4_k() -> None:
    d, dmin = 0.5, 0.25
    sc = [3, 63, 17, 40, 5, 33, 62, 48]  # high bits set for sub-blocks >= 4 exercise the packing
    m = [0, 63, 1, 20, 45, 16, 7, 32]
    q = [(e * 7 + e // 32) % 16 for e in range(256)]
    qs = bytearray(128)
    for c in range(4):
        for l in range(32):
            qs[32 * c + l] = q[64 * c + l] | (q[64 * c + 32 + l] << 4)
    block = _f16(d) + _f16(dmin) + bytes(_pack_k4_scales(sc, m)) + bytes(qs)
    want = np.array([F32(d * sc[e // 32]) * F32(q[e]) - F32(dmin * m[e // 32]) for e in range(256)], F32)
    ours, theirs = _decode_both(QT.Q4_K, block)
    assert np.array_equal(ours, want) and np.array_equal(theirs, want)


def test_hand_block_q5_k() -> None:
    d, dmin = 0.125, 1.5
    sc = [60, 2, 33, 16, 47, 63, 1, 31]
    m = [9, 50, 0, 63, 18, 36, 44, 3]
    q = [(e * 11 + e // 64) % 32 for e in range(256)]
    qh = bytearray(32)
    qs = bytearray(128)
    m1, m2 = 1, 2
    for c in range(4):
        for l in range(32):
            l1, l2 = q[64 * c + l], q[64 * c + 32 + l]
            if l1 > 15:
                l1 -= 16
                qh[l] |= m1
            if l2 > 15:
                l2 -= 16
                qh[l] |= m2
            qs[32 * c + l] = l1 | (l2 << 4)
        m1 <<= 2
        m2 <<= 2
    block = _f16(d) + _f16(dmin) + bytes(_pack_k4_scales(sc, m)) + bytes(qh) + bytes(qs)
    want = np.array([F32(d * sc[e // 32]) * F32(q[e]) - F32(dmin * m[e // 32]) for e in range(256)], F32)
    ours, theirs = _decode_both(QT.Q5_K, block)
    assert np.array_equal(ours, want) and np.array_equal(theirs, want)


def test_hand_block_q6_k() -> None:
    d = 0.0625
    sc = [-128, 127, -1, 0, 5, -77, 64, 33, -20, 100, 1, -3, 90, -90, 12, 7]
    q = [(e * 13 + e // 16) % 64 - 32 for e in range(256)]  # -32..31
    L = [v + 32 for v in q]
    ql = bytearray(128)
    qh = bytearray(64)
    for h in range(2):
        j = 128 * h
        for l in range(32):
            q1, q2, q3, q4 = L[j + l] & 0xF, L[j + l + 32] & 0xF, L[j + l + 64] & 0xF, L[j + l + 96] & 0xF
            ql[64 * h + l] = q1 | (q3 << 4)
            ql[64 * h + l + 32] = q2 | (q4 << 4)
            qh[32 * h + l] = (
                (L[j + l] >> 4)
                | ((L[j + l + 32] >> 4) << 2)
                | ((L[j + l + 64] >> 4) << 4)
                | ((L[j + l + 96] >> 4) << 6)
            )
    block = bytes(ql) + bytes(qh) + np.array(sc, dtype=np.int8).tobytes() + _f16(d)
    want = np.array([F32(d * sc[e // 16]) * F32(q[e]) for e in range(256)], F32)
    ours, theirs = _decode_both(QT.Q6_K, block)
    assert np.array_equal(ours, want) and np.array_equal(theirs, want)


# ---------------------------------------------------------------------------------------------------------
# 3. quality: clearly better than plain rounding; importance lowers the importance-weighted error


def _minmax(x: np.ndarray, sub: int, nmax: int) -> np.ndarray:
    """Plain affine rounding per sub-block with exact float scale and min (no 2nd-level quantization)."""
    b = x.reshape(-1, sub)
    lo = np.minimum(b.min(1, keepdims=True), 0)
    s = (b.max(1, keepdims=True) - lo) / nmax
    return (np.clip(np.round((b - lo) / s), 0, nmax) * s + lo).reshape(x.shape)


def _absmax(x: np.ndarray, sub: int, nlo: int) -> np.ndarray:
    """Plain symmetric rounding per sub-block, the extreme element at level -nlo, exact float scale."""
    b = x.reshape(-1, sub)
    ext = b[np.arange(len(b)), np.abs(b).argmax(1)][:, None]
    s = -ext / nlo
    return (np.clip(np.round(b / s), -nlo, nlo - 1) * s).reshape(x.shape)


BASELINES = {
    QT.Q2_K: lambda x: _minmax(x, 16, 3),
    QT.Q3_K: lambda x: _absmax(x, 16, 4),
    QT.Q4_K: lambda x: _minmax(x, 32, 15),
    QT.Q5_K: lambda x: _minmax(x, 32, 31),
    QT.Q6_K: lambda x: _absmax(x, 16, 32),
}


@pytest.mark.parametrize("qtype", K_TYPES, ids=lambda t: t.name)
def test_beats_plain_rounding(qtype: QT) -> None:
    x = np.random.default_rng(5).standard_normal((48, 1024)).astype(np.float32)
    _, ours = _ours(qtype, x)
    rmse = lambda y: float(np.sqrt(((y - x) ** 2).mean()))  # noqa: E731
    # measured margins are 7-19%; the baseline even keeps its scales unquantized
    assert rmse(ours) < 0.96 * rmse(BASELINES[qtype](x))


@pytest.mark.parametrize("qtype", K_TYPES, ids=lambda t: t.name)
def test_importance_lowers_weighted_error(qtype: QT) -> None:
    rng = np.random.default_rng(6)
    x = rng.standard_normal((48, 1024)).astype(np.float32)
    imp = np.exp(1.5 * rng.standard_normal(1024)).astype(np.float32)
    _, plain = _ours(qtype, x)
    _, weighted = _ours(qtype, x, imp)
    werr = lambda y: float((imp * (y - x) ** 2).sum())  # noqa: E731
    assert werr(weighted) < 0.97 * werr(plain)


# ---------------------------------------------------------------------------------------------------------
# 4. the facade's shape checks


@pytest.mark.parametrize("qtype", K_TYPES, ids=lambda t: t.name)
def test_shape_errors(qtype: QT) -> None:
    w = torch.zeros(2, 512)
    with pytest.raises(Q.QuantShapeError):
        Q.quantize(w, qtype, torch.ones(256))
    with pytest.raises(Q.QuantShapeError):
        Q.quantize(torch.zeros(2, 384), qtype)
    q = Q.quantize(w, qtype, torch.ones(512))
    assert q.shape == (2, 2 * GGML_QUANT_SIZES[qtype][1])
    assert torch.equal(Q.fake_quantize(w, qtype), torch.zeros(2, 512))


@pytest.mark.parametrize("qtype", K_TYPES, ids=lambda t: t.name)
def test_non_finite_input_raises(qtype: QT) -> None:
    w = torch.zeros(1, 256)
    w[0, 7] = float("nan")
    with pytest.raises(ValueError):
        Q.quantize(w, qtype)


@pytest.mark.parametrize("qtype", K_TYPES, ids=lambda t: t.name)
def test_tiny_weights_never_worse_than_zeros(qtype: QT) -> None:
    """Near the fp16 subnormal range d gets coarse: a block must then decode no worse than all zeros."""
    rng = np.random.default_rng(7)
    x = np.concatenate([rng.standard_normal((4, 512)) * s for s in (3e-8, 3e-7, 3e-6)]).astype(np.float32)
    q, ours = _ours(qtype, x)
    assert np.array_equal(ours, gguf_quants.dequantize(q, qtype))
    err = ((ours - x) ** 2).reshape(-1, 256).sum(1)
    assert np.all(err <= (x.astype(np.float64) ** 2).reshape(-1, 256).sum(1) * (1 + 1e-5))
