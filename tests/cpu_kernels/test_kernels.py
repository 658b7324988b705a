"""Kernels against float64 numpy references, for every type and every ISA variant this machine runs
(AVX-512 runs on the device machine, NEON under qemu: test_neon_qemu.py). Outputs are NaN-poisoned first."""

from __future__ import annotations

import numpy as np
import pytest
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType as T
from gguf.quants import dequantize as gguf_dequantize

from awq_gguf import cpu_kernels as ck

from kernel_blocks import ALL_TYPES, QUANT_TYPES, random_rows, ref_matmul, ref_quantize_act

ISAS = ck.available_isas()
K_TYPES = {T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K}


def act_block(t: T) -> int | None:
    if t in (T.F32, T.F16):
        return None
    return 256 if t in K_TYPES else 32


def ref_weights(w: np.ndarray, t: T) -> np.ndarray:
    if t == T.F32:
        return w.view(np.float32)
    if t == T.F16:
        return w.view(np.float16).astype(np.float32)
    return gguf_dequantize(w, t)


def test_isa_reported() -> None:
    assert ck.isa() in ck.ISAS
    assert "scalar" in ISAS
    import platform

    if platform.machine() in ("x86_64", "AMD64"):
        flags = open("/proc/cpuinfo").read()
        if " avx2 " in flags and " fma " in flags and " f16c " in flags:
            assert "avx2" in ISAS, "CPU has AVX2 but the avx2 variant was not built"
        if " avx512bw " in flags and " avx512vl " in flags:
            assert "avx512" in ISAS, "CPU has AVX-512 but the avx512 variant was not built"


@pytest.mark.parametrize("t", ALL_TYPES, ids=lambda t: t.name)
@pytest.mark.parametrize("rows,n,threads", [(1, 1, 1), (7, 3, 2), (37, 17, 3), (64, 1, 3)])
def test_matmul(isa: str, t: T, rows: int, n: int, threads: int) -> None:
    rng = np.random.default_rng([int(t), rows, n, threads])
    block = GGML_QUANT_SIZES[t][0]
    cols = 768 if t in K_TYPES else (544 if block == 32 else 200)
    w = random_rows(rng, t, rows, cols)
    x = (rng.standard_normal((n, cols)) * rng.uniform(0.1, 3.0, (n, 1))).astype(np.float32)
    x[0, :7] = 0.0  # a partly zero block
    if n > 1:
        x[1, :] = 0.0  # an all-zero row (d = 0 path)
    out = np.full((n, rows), np.nan, np.float32)
    y = ck.matmul(w, t, x, threads=threads, out=out)
    assert y is out and np.isfinite(y).all()
    ref, scale = ref_matmul(ref_weights(w, t), x, act_block(t))
    tol = 2e-5 * scale + 1e-30
    bad = np.abs(y - ref) > tol
    assert not bad.any(), f"{isa} {t.name}: {bad.sum()} of {bad.size} off; max err {np.abs(y - ref).max():.3g}"


@pytest.mark.parametrize(
    ("t", "cols"),
    [(t, c) for t in (T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1) for c in (1024, 1056)] + [(t, c) for t in (T.Q2_K, T.Q3_K, T.Q5_K) for c in (768, 1024)],
    ids=lambda v: v.name if isinstance(v, T) else str(v),
)
def test_gemv_rows_at_once_and_one_at_a_time(isa: str, t: T, cols: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The GEMV's several-rows entry (dotr, where the table has one: AVX2) and one row at a time through dot
    (AWQ_GGUF_NO_DOTR=1), both against the reference: 13 and 71 rows over 1 and 2 threads (a thread's rows in
    AWQ_DOTR strided streams, and tails); an even and an odd number of blocks per row (AVX2's dotr takes
    32-element blocks two at a time, the odd last one apart), and odd and even super-block counts for Q2_K / Q3_K / Q5_K."""
    for rows in (13, 71):
        rng = np.random.default_rng([int(t), rows, cols])
        w = random_rows(rng, t, rows, cols)
        x = rng.standard_normal((1, cols)).astype(np.float32)
        ref, scale = ref_matmul(ref_weights(w, t), x, act_block(t))
        for no_dotr in ("0", "1"):
            monkeypatch.setenv("AWQ_GGUF_NO_DOTR", no_dotr)
            ck.set_isa(isa)
            for threads in (1, 2):
                y = ck.matmul(w, t, x, threads=threads, out=np.full((1, rows), np.nan, np.float32))
                assert np.all(np.abs(y - ref) <= 2e-5 * scale), f"{isa} {t.name} {rows} rows AWQ_GGUF_NO_DOTR={no_dotr}"
    monkeypatch.delenv("AWQ_GGUF_NO_DOTR")
    ck.set_isa(isa)


@pytest.mark.parametrize("t", [T.Q4_0, T.Q8_0, T.Q4_K, T.Q6_K], ids=lambda t: t.name)
def test_matmul_vs_float_activations(isa: str, t: T) -> None:
    """End to end against the unquantized activations: 8-bit activations lose < 1% of the scale."""
    rng = np.random.default_rng(5)
    w = random_rows(rng, t, 16, 512)
    x = rng.standard_normal((2, 512)).astype(np.float32)
    ref, scale = ref_matmul(ref_weights(w, t), x, None)
    assert np.all(np.abs(ck.matmul(w, t, x, threads=2) - ref) <= 1e-2 * scale)


@pytest.mark.parametrize("t", QUANT_TYPES, ids=lambda t: t.name)
def test_quantize_activations(isa: str, t: T) -> None:
    rng = np.random.default_rng(int(t))
    block = act_block(t)
    x = (rng.standard_normal((3, 512)) * 4).astype(np.float32)
    x[2] = 0.0
    xq = ck.quantize_activations(x, t)
    q_ref, d_ref = ref_quantize_act(x, block)
    nb = 512 // block
    if block == 32:
        rec = xq.view(np.dtype([("d", "<f4"), ("s", "<i4"), ("qs", "i1", 32)])).reshape(3, nb)
        np.testing.assert_array_equal(rec["qs"].reshape(3, -1), q_ref)
        np.testing.assert_array_equal(rec["s"], q_ref.reshape(3, nb, 32).astype(np.int32).sum(2))
    else:
        rec = xq.view(np.dtype([("d", "<f4"), ("bsums", "<i2", 16), ("qs", "i1", 256)])).reshape(3, nb)
        np.testing.assert_array_equal(rec["qs"].reshape(3, -1), q_ref)
        np.testing.assert_array_equal(rec["bsums"], q_ref.reshape(3, nb, 16, 16).astype(np.int32).sum(3))
    np.testing.assert_array_equal(rec["d"], d_ref)


@pytest.mark.parametrize("t", QUANT_TYPES, ids=lambda t: t.name)
def test_vec_dot(isa: str, t: T) -> None:
    rng = np.random.default_rng(100 + int(t))
    cols = 512
    w = random_rows(rng, t, 1, cols)
    x = rng.standard_normal((1, cols)).astype(np.float32)
    got = ck.vec_dot(w[0], t, ck.quantize_activations(x, t)[0])
    ref, scale = ref_matmul(ref_weights(w, t), x, act_block(t))
    assert abs(got - ref[0, 0]) <= 2e-5 * scale[0, 0]


@pytest.mark.parametrize("t", ALL_TYPES, ids=lambda t: t.name)
def test_get_rows_and_dequantize(isa: str, t: T) -> None:
    rng = np.random.default_rng(200 + int(t))
    cols = 512 if t in K_TYPES else 96
    w = random_rows(rng, t, 9, cols)
    ref = ref_weights(w, t)
    ids = np.array([8, 0, 3, 3, 5])
    out = np.full((5, cols), np.nan, np.float32)
    got = ck.get_rows(w, t, ids, threads=2, out=out)
    np.testing.assert_allclose(got, ref[ids], rtol=1e-6, atol=1e-6 * np.abs(ref).max())
    full = ck.dequantize(w, t)
    assert full.shape == (9, cols)
    np.testing.assert_allclose(full, ref, rtol=1e-6, atol=1e-6 * np.abs(ref).max())


def test_read_only_memmap(tmp_path) -> None:
    rng = np.random.default_rng(9)
    w = random_rows(rng, T.Q4_0, 20, 64)
    path = tmp_path / "w.bin"
    w.tofile(path)
    mm = np.memmap(path, np.uint8, "r", shape=w.shape)[5:15]
    x = rng.standard_normal((1, 64)).astype(np.float32)
    np.testing.assert_array_equal(ck.matmul(mm, T.Q4_0, x), ck.matmul(np.array(w[5:15]), T.Q4_0, x))


@pytest.mark.parametrize("t", [T.Q4_0, T.Q4_K], ids=lambda t: t.name)
def test_tiny_and_nan_activations(isa: str, t: T) -> None:
    """Blocks too small for 1/d quantize to zeros (no inf*0 NaNs, no undefined float-to-int casts); a NaN input
    gives NaN outputs rather than a crash."""
    rng = np.random.default_rng(11)
    w = random_rows(rng, t, 8, 512)
    x = (rng.standard_normal((3, 512)) * np.array([[1e-37], [1e-20], [1.0]])).astype(np.float32)
    y = ck.matmul(w, t, x, out=np.full((3, 8), np.nan, np.float32))
    assert np.all(y[0] == 0.0)
    ref, scale = ref_matmul(ref_weights(w, t), x, act_block(t))
    assert np.all(np.abs(y[1:] - ref[1:]) <= 2e-5 * scale[1:])
    x[2, 5] = np.nan
    assert np.isnan(ck.matmul(w, t, x)[2]).all()
