"""The GEMM over Q4_0 / Q4_1 / Q5_0 / Q5_1 / Q2_K / Q3_K rows interleaved by 8 (pack_weights / matmul_packed)
against the float64 reference, on every ISA this machine runs, outputs NaN-poisoned; its layout byte for byte; the
int16 bound at the extremes; and the facade's refusals."""

from __future__ import annotations

import numpy as np
import pytest
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType as T
from gguf.quants import dequantize as gguf_dequantize

from awq_gguf import cpu_kernels as ck

from kernel_blocks import random_rows, ref_matmul


def ref_layout(w: np.ndarray, t: T) -> np.ndarray:
    """kernels.h's blk_q4_0x8 ... blk_q5_1x8 built in numpy: per group of 8 rows and block, the 8 fp16 scales,
    (Q4_1, Q5_1) the 8 fp16 mins, (Q5_0, Q5_1) the regrouped fifth bits, bit 4r + k of qh[v] = bit 4v + k of row
    r's qh, then qs[32 j + 4 r + k] = row r's qs[4 j + k]."""
    size = GGML_QUANT_SIZES[t][1]
    rows, nb = w.shape[0], w.shape[1] // size
    has_m, has_h = t in (T.Q4_1, T.Q5_1), t in (T.Q5_0, T.Q5_1)
    blk = w.reshape(rows // 8, 8, nb, size)  # [group, r, b, bytes]

    def fp16_field(at: int) -> np.ndarray:  # [group, b, 16]: the 8 rows' 2 bytes at offset `at`
        return blk[:, :, :, at:at + 2].transpose(0, 2, 1, 3).reshape(rows // 8, nb, 16)

    parts = [fp16_field(0)] + ([fp16_field(2)] if has_m else [])
    if has_h:
        at = 4 if has_m else 2
        qh = np.ascontiguousarray(blk[:, :, :, at:at + 4]).view("<u4")[..., 0].astype(np.uint64)  # [group, r, b]
        words = np.zeros((rows // 8, nb, 8), np.uint64)
        for v in range(8):
            for r in range(8):
                words[:, :, v] |= ((qh[:, r, :] >> np.uint64(4 * v)) & np.uint64(0xF)) << np.uint64(4 * r)
        parts.append(words.astype("<u4").view(np.uint8).reshape(rows // 8, nb, 32))
    qs = blk[:, :, :, -16:].reshape(rows // 8, 8, nb, 4, 4).transpose(0, 2, 3, 1, 4).reshape(rows // 8, nb, 128)
    parts.append(qs)
    return np.concatenate(parts, axis=2).reshape(rows // 8, nb * 8 * size)


def k_values(w: np.ndarray, t: T) -> tuple[np.ndarray, np.ndarray]:
    """Q2_K / Q3_K file rows -> per [row, super-block] the 256 stored values q (Q2_K 0..3; Q3_K the 3-bit
    value 0..7, low 2 bits | hmask bit << 2) and 16 scale bytes (Q2_K the file byte scale | min << 4; Q3_K
    the 6-bit scale 0..63)."""
    size = GGML_QUANT_SIZES[t][1]
    blk = w.reshape(w.shape[0], -1, size).astype(np.int64)
    e = np.arange(256)
    h, j, l = e // 128, (e % 128) // 32, e % 32
    if t == T.Q2_K:
        q = (blk[:, :, 16 + 32 * h + l] >> (2 * j)) & 3
        return q, blk[:, :, :16]
    q = ((blk[:, :, 32 + 32 * h + l] >> (2 * j)) & 3) | (((blk[:, :, l] >> (4 * h + j)) & 1) << 2)
    s12 = blk[:, :, 96:108]
    sj = np.arange(16)
    lo = np.where(sj < 8, s12[:, :, sj % 8] & 0xF, s12[:, :, sj % 8] >> 4)
    hi = (s12[:, :, 8 + (sj & 3)] >> (2 * (sj >> 2))) & 3
    return q, lo | (hi << 4)


def ref_layout_k(w: np.ndarray, t: T) -> np.ndarray:
    """kernels.h's blk_q2_Kx8 / blk_q3_Kx8 built in numpy, per group of 8 rows and super-block: the 8 d (Q2_K:
    and the 8 dmin); the scale bytes, row r's sub-block s at 32 (s // 4) + 16 (r // 4) + 8 ((s // 2) % 2) +
    2 (r % 4) + s % 2 (Q2_K: the file's byte; Q3_K: ((s6 ^ 32) << 2), 128 bytes folded into 96); the values
    (Q2_K: bits 2 (s % 4) of qs[128 (s // 4) + 32 j + 4 r + k] = element 16 s + 4 j + k; Q3_K: triples of
    32-byte vectors, slots 0..5 in the nibbles' low 3 bits, slots 6 and 7 in bits 3 and 7 of the three)."""
    size = GGML_QUANT_SIZES[t][1]
    rows, nb = w.shape[0], w.shape[1] // size
    g = rows // 8
    blk = w.reshape(g, 8, nb, size)
    q, scb = k_values(w, t)
    q = q.reshape(g, 8, nb, 256).transpose(0, 2, 1, 3)  # [group, b, r, e]
    scb = scb.reshape(g, 8, nb, 16).transpose(0, 2, 1, 3)  # [group, b, r, s]
    r, s = np.arange(8)[:, None], np.arange(16)[None, :]
    sc_at = 32 * (s // 4) + 16 * (r // 4) + 8 * ((s // 2) % 2) + 2 * (r % 4) + s % 2  # [r, s]
    sc = np.zeros((g, nb, 128), np.int64)
    if t == T.Q2_K:
        sc[:, :, sc_at] = scb
        fp16 = [blk[:, :, :, at:at + 2].transpose(0, 2, 1, 3).reshape(g, nb, 16) for at in (80, 82)]
    else:
        sc[:, :, sc_at] = ((scb ^ 32) << 2) & 0xFF
        jj = np.arange(96)
        sc = (sc[:, :, :96] & 0xFC) | ((sc[:, :, 96 + jj % 32] >> (6 - 2 * (jj // 32))) & 3)
        fp16 = [blk[:, :, :, 108:110].transpose(0, 2, 1, 3).reshape(g, nb, 16)]
    e = np.arange(256)
    sb, j, k = e // 16, (e % 16) // 4, e % 4
    if t == T.Q2_K:
        qs = np.zeros((g, nb, 512), np.int64)
        for rr in range(8):
            at = 128 * (sb // 4) + 32 * j + 4 * rr + k
            np.add.at(qs, (slice(None), slice(None), at), q[:, :, rr, :] << (2 * (sb % 4)))
    else:
        qs = np.zeros((g, nb, 768), np.int64)
        u = 4 * (sb % 2) + j
        for rr in range(8):
            at = 96 * (sb // 2) + 4 * rr + k
            low = u < 6
            np.add.at(qs, (slice(None), slice(None), (at + 32 * (u // 2))[low]),
                      q[:, :, rr, low] << (4 * (u[low] % 2)))
            bit = np.where(u == 6, 3, 7)[~low]
            for v in range(3):
                np.add.at(qs, (slice(None), slice(None), (at + 32 * v)[~low]), ((q[:, :, rr, ~low] >> v) & 1) << bit)
    parts = [*fp16, sc.astype(np.uint8), qs.astype(np.uint8)]
    return np.concatenate(parts, axis=2).reshape(g, nb * 8 * size)


TYPES = [T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q2_K, T.Q3_K]
KTYPES = [T.Q2_K, T.Q3_K]


def block_of(t: T) -> int:
    return GGML_QUANT_SIZES[t][0]


@pytest.mark.parametrize("t", TYPES, ids=lambda t: t.name)
def test_layout(t: T) -> None:
    cols = 768 if t in KTYPES else 96
    w = random_rows(np.random.default_rng(1), t, 24, cols)
    p = ck.pack_weights(w, t)
    assert (p.rows, p.cols, p.qtype) == (24, cols, t)
    assert p.data.nbytes == w.nbytes
    np.testing.assert_array_equal(p.data, ref_layout_k(w, t) if t in KTYPES else ref_layout(w, t))


@pytest.mark.parametrize("t", TYPES, ids=lambda t: t.name)
@pytest.mark.parametrize("rows,cols,n,threads", [(8, 32, 1, 1), (8, 544, 3, 2), (16, 544, 4, 1), (40, 96, 5, 3),
                                                  (64, 544, 17, 2), (24, 1056, 9, 3)])
def test_matmul_packed(isa: str, t: T, rows: int, cols: int, n: int, threads: int) -> None:
    if t in KTYPES:  # the same sizes in super-blocks of 256 (1 .. 4 of them)
        cols = 256 * (1 + cols // 300)
    rng = np.random.default_rng([int(t), rows, cols, n, threads])
    w = random_rows(rng, t, rows, cols)
    x = (rng.standard_normal((n, cols)) * rng.uniform(0.1, 3.0, (n, 1))).astype(np.float32)
    x[0, :7] = 0.0  # a partly zero block
    if n > 1:
        x[1, :] = 0.0  # an all-zero row (d = 0 path)
    p = ck.pack_weights(w, t)
    out = np.full((n, rows), np.nan, np.float32)
    y = ck.matmul_packed(p, x, threads=threads, out=out)
    assert y is out and np.isfinite(y).all()
    ref, scale = ref_matmul(gguf_dequantize(w, t), x, block_of(t))
    bad = np.abs(y - ref) > 2e-5 * scale + 1e-30
    assert not bad.any(), f"{isa} {t.name}: {bad.sum()} of {bad.size} off; max err {np.abs(y - ref).max():.3g}"
    # the file-row kernels compute the same integer block sums: equal up to float summation order
    assert np.all(np.abs(y - ck.matmul(w, t, x, threads=threads)) <= 2e-5 * scale + 1e-30)
    if n == 1:
        np.testing.assert_array_equal(ck.matmul_packed(p, x[0]), y[0])  # [cols] -> [rows]


@pytest.mark.parametrize("t,nibble,high", [(T.Q4_0, 15, 0), (T.Q4_0, 0, 0), (T.Q5_0, 15, 1), (T.Q5_0, 0, 0),
                                           (T.Q5_0, 15, 0), (T.Q4_1, 15, 0), (T.Q5_1, 15, 1), (T.Q5_1, 0, 0)])
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_int16_extremes(isa: str, t: T, nibble: int, high: int, sign: float) -> None:
    """Every weight at its largest (or smallest) stored value and every activation at +-127: the kernel's int16
    sums at their bound (Q4_0 / Q4_1 8 * 2 * 15 * 127, Q5_0 / Q5_1 4 * 2 * 31 * 127 per half)."""
    rows, cols = 16, 256
    size = GGML_QUANT_SIZES[t][1]
    has_m = t in (T.Q4_1, T.Q5_1)
    w = np.zeros((rows, cols // 32, size), np.uint8)
    w[:, :, :2] = np.float16(0.5).reshape(1).view(np.uint8)
    if has_m:
        w[:, :, 2:4] = np.float16(-3.0).reshape(1).view(np.uint8)
    w[:, :, -16:] = nibble * 0x11
    if t in (T.Q5_0, T.Q5_1):
        at = 4 if has_m else 2
        w[:, :, at:at + 4] = 0xFF * high
    w = w.reshape(rows, -1)
    x = np.full((5, cols), sign * 2.0, np.float32)
    y = ck.matmul_packed(ck.pack_weights(w, t), x, out=np.full((5, rows), np.nan, np.float32))
    q = {T.Q4_0: nibble - 8, T.Q5_0: nibble + 16 * high - 16, T.Q4_1: nibble, T.Q5_1: nibble + 16 * high}[t]
    expect = (0.5 * q + (-3.0 if has_m else 0.0)) * sign * 2.0 * cols  # x quantizes exactly: +-127, d = 2 / 127
    np.testing.assert_allclose(y, expect, rtol=1e-5)


@pytest.mark.parametrize("t,value,scale", [(T.Q2_K, 3, 15), (T.Q2_K, 0, 15), (T.Q2_K, 3, 0), (T.Q3_K, 7, 63),
                                           (T.Q3_K, 0, 63), (T.Q3_K, 7, 0), (T.Q3_K, 0, 0), (T.Q3_K, 5, 33)])
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_int16_extremes_k(isa: str, t: T, value: int, scale: int, sign: float) -> None:
    """Interleaved Q2_K / Q3_K: every value at its largest (or smallest) stored value, scales (and Q2_K's mins,
    15) at the ends of their range, activations at +-127: the int16 sub-block sums at their bound (Q2_K 4 x 2
    x 12 x 127 for the fields taken x 4, Q3_K 4 x 2 x 7 x 127)."""
    rows, cols = 16, 512
    size = GGML_QUANT_SIZES[t][1]
    w = np.zeros((rows, cols // 256, size), np.uint8)
    if t == T.Q2_K:
        w[:, :, :16] = scale | (15 << 4)
        w[:, :, 16:80] = value * 0x55
        w[:, :, 80:82] = np.float16(0.5).reshape(1).view(np.uint8)
        w[:, :, 82:84] = np.float16(-0.25).reshape(1).view(np.uint8)
        expect = 0.5 * scale * value - (-0.25) * 15
    else:
        w[:, :, :32] = 0xFF * (value >> 2)
        w[:, :, 32:96] = (value & 3) * 0x55
        w[:, :, 96:104] = (scale & 0xF) * 0x11
        w[:, :, 104:108] = (scale >> 4) * 0x55
        w[:, :, 108:110] = np.float16(0.5).reshape(1).view(np.uint8)
        expect = 0.5 * (scale - 32) * (value - 4)
    w = w.reshape(rows, -1)
    np.testing.assert_allclose(gguf_dequantize(w, t), expect)  # the bytes mean what the test says
    x = np.full((5, cols), sign * 2.0, np.float32)
    y = ck.matmul_packed(ck.pack_weights(w, t), x, out=np.full((5, rows), np.nan, np.float32))
    np.testing.assert_allclose(y, expect * sign * 2.0 * cols, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("t", TYPES, ids=lambda t: t.name)
def test_tiny_and_nan_activations(isa: str, t: T) -> None:
    rng = np.random.default_rng(11)
    w = random_rows(rng, t, 8, 512)
    x = (rng.standard_normal((3, 512)) * np.array([[1e-37], [1e-20], [1.0]])).astype(np.float32)
    p = ck.pack_weights(w, t)
    y = ck.matmul_packed(p, x, out=np.full((3, 8), np.nan, np.float32))
    assert np.all(y[0] == 0.0)
    ref, scale = ref_matmul(gguf_dequantize(w, t), x, block_of(t))
    assert np.all(np.abs(y[1:] - ref[1:]) <= 2e-5 * scale[1:])
    x[2, 5] = np.nan
    y = ck.matmul_packed(p, x)
    assert np.isnan(y[2]).all() and np.isfinite(y[:2]).all()


@pytest.mark.parametrize("t", TYPES, ids=lambda t: t.name)
def test_packed_after_isa_switch(t: T) -> None:
    """The layout does not depend on the ISA: packed under one, multiplied under every other."""
    rng = np.random.default_rng(3)
    cols = 512 if t in KTYPES else 160
    w = random_rows(rng, t, 16, cols)
    x = rng.standard_normal((6, cols)).astype(np.float32)
    p = ck.pack_weights(w, t)
    prev = ck.isa()
    try:
        ys = {}
        for name in ck.available_isas():
            ck.set_isa(name)
            ys[name] = ck.matmul_packed(p, x, threads=2)
    finally:
        ck.set_isa(prev)
    ref, scale = ref_matmul(gguf_dequantize(w, t), x, block_of(t))
    for name, y in ys.items():
        assert np.all(np.abs(y - ref) <= 2e-5 * scale), name


def test_native_kernels() -> None:
    prev = ck.isa()
    try:
        for name in ck.available_isas():
            ck.set_isa(name)
            # scalar (the reference), AVX2, AVX-512 (AVX2's) and NEON have the interleaved kernels (Q2_K and Q3_K
            # included)
            for t in TYPES:
                assert ck.packed_gemm_native(t), (name, t.name)
            for t in (T.Q8_0, T.Q4_K, T.Q5_K, T.Q6_K):
                assert not ck.packed_gemm_native(t)
    finally:
        ck.set_isa(prev)


def test_refusals() -> None:
    rng = np.random.default_rng(4)
    w = random_rows(rng, T.Q4_0, 16, 64)
    p = ck.pack_weights(w, T.Q4_0)
    with pytest.raises(ck.KernelShapeError, match="multiple of 8"):
        ck.pack_weights(w[:12], T.Q4_0)
    with pytest.raises(ck.KernelTypeError, match="only Q4_0, Q4_1, Q5_0, Q5_1, Q2_K and Q3_K"):
        ck.pack_weights(random_rows(rng, T.Q8_0, 16, 64), T.Q8_0)
    with pytest.raises(ck.KernelShapeError, match="columns"):
        ck.matmul_packed(p, np.zeros((2, 96), np.float32))
    with pytest.raises(ck.KernelTypeError, match="float32"):
        ck.matmul_packed(p, np.zeros((2, 64), np.float64))
    with pytest.raises(ck.KernelTypeError, match="PackedMatrix"):
        ck.matmul_packed(w, np.zeros((2, 64), np.float32))  # type: ignore[arg-type]
    with pytest.raises(ck.KernelShapeError, match="interleaved"):
        ck.matmul_packed(ck.PackedMatrix(p.data[:1], T.Q4_0, 16, 64), np.zeros((2, 64), np.float32))
    with pytest.raises(ck.KernelShapeError, match="interleaved"):
        ck.matmul_packed(ck.PackedMatrix(p.data, T.Q4_0, 16, 96), np.zeros((2, 96), np.float32))
    with pytest.raises(ck.KernelShapeError, match="out must be"):
        ck.matmul_packed(p, np.zeros((2, 64), np.float32), out=np.zeros((2, 8), np.float32))
    assert ck.matmul_packed(p, np.zeros((0, 64), np.float32)).shape == (0, 16)
