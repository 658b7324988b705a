"""CUDA kernels against a float64 reference on fresh random inputs: GEMV (batch 1..16), dequantization, matmul.

Weights are random float matrices quantized by convert.quants (bit-exact with gguf.quants); the reference is
float64 dequantize(bytes) @ x. Every output buffer is poisoned with NaN before the call; sizes are odd (row
counts that fill no warp or block, column counts that leave lanes idle in the last chunk round).
"""

from __future__ import annotations


import pytest
import torch
from awq_gguf.convert.quants import dequantize as ref_dequantize
from awq_gguf.convert.quants import quantize
from gguf import GGMLQuantizationType as T

pytestmark = pytest.mark.gpu

TYPES = [T.Q4_0, T.Q8_0, T.Q4_K, T.Q6_K]
# (rows, cols in blocks of the type): 37 rows fill no block of 4 warps; 9 and 11 super-blocks leave lanes idle
SHAPES = {32: [(37, 32 * 33), (1, 32), (130, 32 * 130)], 256: [(37, 256 * 9), (1, 256), (129, 256 * 11)]}
BATCHES = [1, 2, 3, 5, 8, 16]


_weights: dict = {}


def weight(ck, qt, rows, cols, seed):
    """(QuantMatrix on the GPU, float64 reference weights on the GPU), made once per session and shape."""
    key = (qt, rows, cols)
    if key not in _weights:
        g = torch.Generator().manual_seed(seed + hash(key) % 10_000)
        w = torch.randn(rows, cols, generator=g) * torch.rand(rows, 1, generator=g).add(0.05)
        w[:, torch.randint(0, cols, (max(1, cols // 64),), generator=g)] *= 8  # outlier columns
        raw = quantize(w, qt)
        ref = ref_dequantize(raw, qt).double().cuda()
        _weights[key] = (ck.QuantMatrix.from_gguf(raw, qt, rows, cols, device="cuda"), ref)
    return _weights[key]


def fresh_x(batch, cols, dtype, seed):
    g = torch.Generator(device="cuda").manual_seed(seed + batch * 7919 + cols)
    return (torch.randn(batch, cols, device="cuda", generator=g) * 2).to(dtype)


def x_seen(ck, x, mode=0):
    """The activations the kernel multiplies with: int8-rounded per 32 in the q8 modes, else x itself."""
    from awq_gguf.cuda_kernels import ops

    mode = mode or ops.DEFAULT_MODE
    return ops.round_activations_q8(x) if mode in ops.Q8_MODES else x


def rel_err(out, ref):
    return float((out.double() - ref).norm() / ref.norm())


def exact_err(out, xs, ref_w):
    """||out - xs W^T|| / || |xs| |W|^T ||: the error on the scale of float32 accumulation, the measure for the
    exact paths. Against ||xs W^T|| alone an output whose dot product cancels to near zero (a 1-row matrix, one
    batch row) shows float32 rounding as a large relative error (mode 1 on a 1 x 32 Q8_0 row: over 2e-5 with some
    seeds, H100 2026-11-27)."""
    xs = xs.double()
    return float((out.double() - xs @ ref_w.T).norm() / (xs.abs() @ ref_w.abs().T).norm())


def shapes(qt):
    return SHAPES[256 if qt in (T.Q4_K, T.Q6_K) else 32]


@pytest.mark.parametrize("qt", TYPES, ids=lambda t: t.name)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["f16", "bf16"])
def test_gemv_matches_float64(ck, seed, qt, dtype):
    for rows, cols in shapes(qt):
        w, ref_w = weight(ck, qt, rows, cols, seed)
        for batch in BATCHES:
            x = fresh_x(batch, cols, dtype, seed)
            out = torch.full((batch, rows), float("nan"), device="cuda")
            ck.gemv(x, w, out=out)
            torch.cuda.synchronize()
            assert torch.isfinite(out).all(), f"unwritten outputs: {qt.name} {rows}x{cols} batch {batch}"
            err = exact_err(out, x_seen(ck, x), ref_w)
            assert err < 2e-5, f"{qt.name} {rows}x{cols} batch {batch} {dtype}: rel err {err:.2e} (seed {seed})"


@pytest.mark.parametrize("qt", TYPES, ids=lambda t: t.name)
@pytest.mark.parametrize("nr", [1, 2, 4])
@pytest.mark.parametrize("mode", [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19],
                         ids=["regs", "async", "fact", "q8", "q8pdl", "q8deep", "q8split", "q8cap", "q8splitcap",
                              "stream", "streamwide", "chain", "chaindeep", "chainsplit", "chainsplitdeep",
                              "chainb1", "chaindeepb1", "chaincap128", "chainsplitcap128"])
def test_gemv_variants_agree(ck, seed, qt, nr, mode):
    for rows, cols in shapes(qt):
        w, ref_w = weight(ck, qt, rows, cols, seed)
        for batch in (1, 4, 7, 16):
            x = fresh_x(batch, cols, torch.float16, seed + nr)
            if cols >= 64 and mode >= 4:
                x[0, 32:64] = 0  # an all-zero activation block (q8: d = 0)
            out = torch.full((batch, rows), float("nan"), device="cuda")
            ck.gemv(x, w, out=out, nr=nr, mode=mode)
            again = ck.gemv(x, w, nr=nr, mode=mode)
            torch.cuda.synchronize()
            assert torch.isfinite(out).all(), f"unwritten outputs: {qt.name} {rows}x{cols} batch {batch}"
            assert torch.equal(out, again), "two runs on the same inputs differ: a race"
            err = exact_err(out, x_seen(ck, x, mode), ref_w)
            # the factored float path (3) loses ~7 bits to cancellation: 2.2e-5 and 3.5e-5 seen on 1x256 Q6_K rows
            tol = 5e-5 if mode == 3 else 2e-5
            assert err < tol, f"{qt.name} {rows}x{cols} nr {nr} mode {mode} batch {batch}: rel err {err:.2e} (seed {seed})"


@pytest.mark.parametrize("qt", TYPES, ids=lambda t: t.name)
def test_q8_activation_rounding_cost_and_nan(ck, seed, qt):
    """Modes 4/5 against the float x: the cost of rounding x to int8 per 32 (Gaussian x: ~5e-3) stays at
    llama.cpp's level; a NaN in x makes that batch row's outputs NaN, as in the float modes."""
    rows, cols = shapes(qt)[2]
    w, ref_w = weight(ck, qt, rows, cols, seed)
    for dtype in (torch.float16, torch.bfloat16):
        x = fresh_x(3, cols, dtype, seed + 11)
        ref = x.double() @ ref_w.T
        for mode in (4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19):
            err = rel_err(ck.gemv(x, w, mode=mode), ref)
            exact = rel_err(ck.gemv(x, w, mode=3), ref)
            assert exact < 2e-5 and err < 1.5e-2, f"{qt.name} mode {mode}: rel err {err:.2e} vs float x (seed {seed})"
        x[1, 7] = float("nan")
        out = ck.gemv(x, w, mode=4)
        assert torch.isnan(out[1]).all() and torch.isfinite(out[[0, 2]]).all()


@pytest.mark.parametrize("qt", TYPES, ids=lambda t: t.name)
def test_float32_activations_in_q8_modes(ck, seed, qt):
    """float32 x is rounded to int8 from float32 (no float16 copy first): every int8 mode gives
    round_activations_q8(x) times the weights; the float modes refuse float32 x."""
    for rows, cols in shapes(qt):
        w, ref_w = weight(ck, qt, rows, cols, seed)
        for batch in (1, 5, 16):
            x = fresh_x(batch, cols, torch.float32, seed + 3) * 1.001  # values no float16 holds
            for mode in (0, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19):
                out = torch.full((batch, rows), float("nan"), device="cuda")
                ck.gemv(x, w, out=out, mode=mode)
                torch.cuda.synchronize()
                assert torch.isfinite(out).all(), f"unwritten outputs: {qt.name} {rows}x{cols} batch {batch}"
                err = exact_err(out, x_seen(ck, x, 4), ref_w)
                assert err < 2e-5, f"{qt.name} {rows}x{cols} mode {mode} batch {batch}: rel err {err:.2e} (seed {seed})"
    with pytest.raises(TypeError, match="int8 mode"):
        ck.gemv(x, w, mode=3)


# the stream kernel (modes 10, 11) on shapes where every block of the grid has several row groups or column tiles,
# the ring wraps around (more stages than slots), the last tile is partial, and the 2-byte scale planes' rows
# start unaligned (33 x 32 and 37 x 256 columns)
STREAM_SHAPES = {32: [(1500, 32 * 297), (263, 32 * 33)], 256: [(1499, 256 * 37), (263, 256 * 9)]}


@pytest.mark.parametrize("qt", TYPES, ids=lambda t: t.name)
def test_stream_gemv_matches_float64(ck, seed, qt):
    from awq_gguf.cuda_kernels import ops

    for rows, cols in STREAM_SHAPES[256 if qt in (T.Q4_K, T.Q6_K) else 32]:
        w, ref_w = weight(ck, qt, rows, cols, seed)
        for dtype in (torch.float16, torch.bfloat16, torch.float32):
            x = fresh_x(1, cols, dtype, seed + rows)
            x[0, 64:96] = 0  # an all-zero activation block (d = 0)
            for mode in (0, *ops.STREAM_MODES):
                for nr in (0, 1, 2, 4):
                    out = torch.full((1, rows), float("nan"), device="cuda")
                    ck.gemv(x, w, out=out, nr=nr, mode=mode)
                    again = ck.gemv(x, w, nr=nr, mode=mode)
                    torch.cuda.synchronize()
                    what = f"{qt.name} {rows}x{cols} {dtype} mode {mode} nr {nr}"
                    assert torch.isfinite(out).all(), f"unwritten outputs: {what}"
                    assert torch.equal(out, again), f"two runs on the same inputs differ: a race ({what})"
                    err = exact_err(out, x_seen(ck, x, 10), ref_w)
                    assert err < 2e-5, f"{what}: rel err {err:.2e} (seed {seed})"
        x = fresh_x(1, cols, torch.float16, seed + 5)
        x[0, 40] = float("nan")  # a NaN block makes every output NaN, as in the other modes
        assert torch.isnan(ck.gemv(x, w, mode=11)).all()


def test_stream_gemv_back_to_back_in_a_graph(ck, seed):
    """Stream GEMVs launched back to back (programmatic dependent launch: each starts its weight copies while the
    previous one runs, and waits for it before reading x) inside a CUDA graph, each on the previous one's output:
    the chain equals the same calls made one by one."""
    w, ref_w = weight(ck, T.Q4_0, 1024, 1024, seed)
    x0 = fresh_x(1, 1024, torch.float32, seed + 9)
    outs = [torch.full((1, 1024), float("nan"), device="cuda") for _ in range(6)]

    def chain():
        x = x0
        for o in outs:
            ck.gemv(x, w, out=o, mode=10)
            x = o

    chain()
    torch.cuda.synchronize()
    eager = [o.clone() for o in outs]
    for o in outs:
        o.fill_(float("nan"))
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        chain()
    g.replay()
    torch.cuda.synchronize()
    for a, b in zip(outs, eager):
        assert torch.equal(a, b)
    ref = x_seen(ck, x0, 10).double() @ ref_w.T
    assert rel_err(eager[0], ref) < 2e-5


@pytest.mark.parametrize("qt", TYPES, ids=lambda t: t.name)
def test_planes_are_aligned(ck, seed, qt):
    for rows, cols in shapes(qt):  # (1, one block) once made a view at byte offset 2
        w, _ = weight(ck, qt, rows, cols, seed)
        assert all(p.data_ptr() % 16 == 0 and p.is_contiguous() for p in w.planes)


def test_gemv_vector_input(ck, seed):
    w, ref_w = weight(ck, T.Q4_K, *SHAPES[256][0], seed)
    x = fresh_x(1, w.cols, torch.bfloat16, seed)[0]
    y = ck.gemv(x, w)
    assert y.shape == (w.rows,) and y.dtype == torch.float32
    assert rel_err(y, ref_w @ x_seen(ck, x).double()) < 2e-5


@pytest.mark.parametrize("qt", TYPES, ids=lambda t: t.name)
def test_dequantize_matches_convert_quants(ck, seed, qt):
    for rows, cols in shapes(qt):
        w, ref_w = weight(ck, qt, rows, cols, seed)
        out = torch.full((rows, cols), float("nan"), device="cuda")
        ck.dequantize(w, torch.float32, out=out)
        torch.cuda.synchronize()
        assert torch.isfinite(out).all()
        if qt == T.Q4_K:  # C = A + dmin m is rounded once in float32
            assert (out.double() - ref_w).abs().max() <= 1e-6 * ref_w.abs().max()
        else:  # exact: A and C are exact, one FMA rounding
            assert torch.equal(out.double(), ref_w)
        for dtype in (torch.float16, torch.bfloat16):
            half = torch.full((rows, cols), float("nan"), dtype=dtype, device="cuda")
            ck.dequantize(w, dtype, out=half)
            torch.cuda.synchronize()
            assert torch.isfinite(half).all()
            tol = 1e-3 if dtype == torch.float16 else 8e-3
            assert (half.double() - ref_w).abs().max() <= tol * ref_w.abs().max()


@pytest.mark.parametrize("qt", TYPES, ids=lambda t: t.name)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["f16", "bf16"])
def test_matmul_both_paths(ck, seed, qt, dtype):
    rows, cols = shapes(qt)[0]
    w, ref_w = weight(ck, qt, rows, cols, seed)
    tol = 2e-3 if dtype == torch.float16 else 1e-2
    for lead in ((2, 5), (3, 7), (67,)):  # 10 rows: GEMV; 21 and 67 rows: dequantize + torch.matmul
        x = fresh_x(int(torch.tensor(lead).prod()), cols, dtype, seed + len(lead)).reshape(*lead, cols)
        y = ck.matmul(x, w)
        assert y.shape == (*lead, rows) and y.dtype == dtype
        gemv_path = x.numel() // cols <= ck.MAX_GEMV_BATCH
        err = rel_err(y, (x_seen(ck, x) if gemv_path else x).double() @ ref_w.T)
        assert err < tol, f"{qt.name} {lead}: rel err {err:.2e} (seed {seed})"


def test_bad_arguments_raise_clearly(ck, seed):
    w, _ = weight(ck, T.Q4_0, *SHAPES[32][0], seed)
    x = fresh_x(2, w.cols, torch.float16, seed)
    with pytest.raises(TypeError, match="float16, bfloat16 or float32"):
        ck.gemv(x.double(), w)
    with pytest.raises(TypeError, match="float32 needs an int8 mode"):
        ck.gemv(x.float(), w, mode=1)
    with pytest.raises(ValueError, match="expected"):
        ck.gemv(x[:, :32].contiguous(), w)
    with pytest.raises(ValueError, match="contiguous"):
        ck.gemv(torch.cat([x, x], 1)[:, : w.cols], w)
    with pytest.raises(ValueError, match="1..16"):
        ck.gemv(fresh_x(17, w.cols, torch.float16, seed), w)
    for bad in (-1, 20):
        with pytest.raises(ValueError, match=r"mode must be 0\.\.19"):
            ck.gemv(x, w, mode=bad)
    with pytest.raises(ValueError, match="is on cpu"):
        ck.gemv(x.cpu(), w)
    with pytest.raises(ValueError, match="out must be float32"):
        ck.gemv(x, w, out=torch.empty(2, w.rows, dtype=torch.float16, device="cuda"))
    with pytest.raises(ValueError, match="aligned"):
        ck.gemv(torch.empty(2 * w.cols + 1, dtype=torch.float16, device="cuda")[1:].view(2, w.cols), w)
    with pytest.raises(ValueError, match="out must be 16-byte aligned"):
        odd = torch.empty(w.rows * w.cols + 1, dtype=torch.float16, device="cuda")[1:].view(w.rows, w.cols)
        ck.dequantize(w, torch.float16, out=odd)
