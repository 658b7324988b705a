"""The prompt GEMM over Q4_0 rows interleaved by 8 (pack_weights / matmul_packed) against the float64 reference,
on every ISA this machine runs, outputs NaN-poisoned; its layout byte for byte; the int16 bound at the extremes;
and the facade's refusals."""

from __future__ import annotations

import numpy as np
import pytest
from gguf import GGMLQuantizationType as T
from gguf.quants import dequantize as gguf_dequantize

from awq_gguf import cpu_kernels as ck

from kernel_blocks import random_rows, ref_matmul


def ref_layout(w: np.ndarray) -> np.ndarray:
    """kernels.h's blk_q4_0x8 built in numpy: per group of 8 rows and block, the 8 fp16 scales, then
    qs[32 j + 4 r + k] = row r's qs[4 j + k]."""
    rows, nb = w.shape[0], w.shape[1] // 18
    blk = w.reshape(rows // 8, 8, nb, 18)  # [group, r, b, bytes]
    d = blk[:, :, :, :2].transpose(0, 2, 1, 3).reshape(rows // 8, nb, 16)
    qs = blk[:, :, :, 2:].reshape(rows // 8, 8, nb, 4, 4).transpose(0, 2, 3, 1, 4).reshape(rows // 8, nb, 128)
    return np.concatenate([d, qs], axis=2).reshape(rows // 8, nb * 144)


def test_layout() -> None:
    w = random_rows(np.random.default_rng(1), T.Q4_0, 24, 96)
    p = ck.pack_weights(w, T.Q4_0)
    assert (p.rows, p.cols, p.qtype) == (24, 96, T.Q4_0)
    np.testing.assert_array_equal(p.data, ref_layout(w))


@pytest.mark.parametrize("rows,cols,n,threads", [(8, 32, 1, 1), (8, 544, 3, 2), (16, 544, 4, 1), (40, 96, 5, 3),
                                                  (64, 544, 17, 2), (24, 1056, 9, 3)])
def test_matmul_packed(isa: str, rows: int, cols: int, n: int, threads: int) -> None:
    rng = np.random.default_rng([rows, cols, n, threads])
    w = random_rows(rng, T.Q4_0, rows, cols)
    x = (rng.standard_normal((n, cols)) * rng.uniform(0.1, 3.0, (n, 1))).astype(np.float32)
    x[0, :7] = 0.0  # a partly zero block
    if n > 1:
        x[1, :] = 0.0  # an all-zero row (d = 0 path)
    p = ck.pack_weights(w, T.Q4_0)
    out = np.full((n, rows), np.nan, np.float32)
    y = ck.matmul_packed(p, x, threads=threads, out=out)
    assert y is out and np.isfinite(y).all()
    ref, scale = ref_matmul(gguf_dequantize(w, T.Q4_0), x, 32)
    bad = np.abs(y - ref) > 2e-5 * scale + 1e-30
    assert not bad.any(), f"{isa}: {bad.sum()} of {bad.size} off; max err {np.abs(y - ref).max():.3g}"
    # the file-row kernels compute the same integer block sums: equal up to float summation order
    assert np.all(np.abs(y - ck.matmul(w, T.Q4_0, x, threads=threads)) <= 2e-5 * scale + 1e-30)
    if n == 1:
        np.testing.assert_array_equal(ck.matmul_packed(p, x[0]), y[0])  # [cols] -> [rows]


@pytest.mark.parametrize("nibble,sign", [(15, 1.0), (15, -1.0), (0, 1.0), (0, -1.0)])
def test_int16_extremes(isa: str, nibble: int, sign: float) -> None:
    """Every weight at 15 (or 0) and every activation at +-127: the kernel's int16 sums at their bound."""
    rows, cols = 16, 256
    w = np.zeros((rows, cols // 32, 18), np.uint8)
    w[:, :, :2] = np.float16(0.5).reshape(1).view(np.uint8)
    w[:, :, 2:] = nibble * 0x11
    w = w.reshape(rows, -1)
    x = np.full((5, cols), sign * 2.0, np.float32)
    y = ck.matmul_packed(ck.pack_weights(w, T.Q4_0), x, out=np.full((5, rows), np.nan, np.float32))
    expect = 0.5 * (nibble - 8) * sign * 2.0 * cols  # x quantizes exactly: q = +-127, d = 2 / 127
    np.testing.assert_allclose(y, expect, rtol=1e-5)


def test_tiny_and_nan_activations(isa: str) -> None:
    rng = np.random.default_rng(11)
    w = random_rows(rng, T.Q4_0, 8, 512)
    x = (rng.standard_normal((3, 512)) * np.array([[1e-37], [1e-20], [1.0]])).astype(np.float32)
    p = ck.pack_weights(w, T.Q4_0)
    y = ck.matmul_packed(p, x, out=np.full((3, 8), np.nan, np.float32))
    assert np.all(y[0] == 0.0)
    ref, scale = ref_matmul(gguf_dequantize(w, T.Q4_0), x, 32)
    assert np.all(np.abs(y[1:] - ref[1:]) <= 2e-5 * scale[1:])
    x[2, 5] = np.nan
    y = ck.matmul_packed(p, x)
    assert np.isnan(y[2]).all() and np.isfinite(y[:2]).all()


def test_packed_after_isa_switch() -> None:
    """The layout does not depend on the ISA: packed under one, multiplied under every other."""
    rng = np.random.default_rng(3)
    w = random_rows(rng, T.Q4_0, 16, 160)
    x = rng.standard_normal((6, 160)).astype(np.float32)
    p = ck.pack_weights(w, T.Q4_0)
    prev = ck.isa()
    try:
        ys = {}
        for name in ck.available_isas():
            ck.set_isa(name)
            ys[name] = ck.matmul_packed(p, x, threads=2)
    finally:
        ck.set_isa(prev)
    ref, scale = ref_matmul(gguf_dequantize(w, T.Q4_0), x, 32)
    for name, y in ys.items():
        assert np.all(np.abs(y - ref) <= 2e-5 * scale), name


def test_native_kernels() -> None:
    prev = ck.isa()
    try:
        for name in ck.available_isas():
            ck.set_isa(name)
            # scalar (the reference), AVX2 and AVX-512 (AVX2's) have the interleaved kernel; NEON has none
            assert ck.packed_gemm_native(T.Q4_0) == (name != "neon"), name
            assert not ck.packed_gemm_native(T.Q8_0)
    finally:
        ck.set_isa(prev)


def test_refusals() -> None:
    rng = np.random.default_rng(4)
    w = random_rows(rng, T.Q4_0, 16, 64)
    p = ck.pack_weights(w, T.Q4_0)
    with pytest.raises(ck.KernelShapeError, match="multiple of 8"):
        ck.pack_weights(w[:12], T.Q4_0)
    with pytest.raises(ck.KernelTypeError, match="only Q4_0"):
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
