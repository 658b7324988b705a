"""The fused decode-step kernels (cuda_kernels/fused.cu) against float64 references on fresh random inputs.

Every output is poisoned first (workspace bytes 0xFF: int8 -1 and NaN scales; float outputs and KV-cache rows
NaN) so an unwritten value fails. The int8 rounding is checked against the float64 value it rounds: per 32-block
d = max|y| / 127 and |q d - y| <= d / 2 (plus float32 slack); gemv_q8 on those int8 values equals the GEMV's own
rounding of the same float32 input bit for bit, and the float64 product of the rounded values.
"""

from __future__ import annotations

import math

import pytest
import torch
from awq_gguf.convert.quants import dequantize as ref_dequantize
from awq_gguf.convert.quants import quantize
from gguf import GGMLQuantizationType as T

pytestmark = pytest.mark.gpu

COLS = [32, 32 * 37, 4096 + 32]  # one block; 37 blocks (a partly idle last block of 256 threads); > 2048 values


@pytest.fixture(scope="module")
def fz(ck):
    from awq_gguf.cuda_kernels import fused

    return fused


def gen(seed: int) -> torch.Generator:
    return torch.Generator(device="cuda").manual_seed(seed)


def poisoned_act(fz, batch: int, cols: int):
    act = fz.Q8Act.empty(batch, cols, torch.device("cuda"))
    act.ws.fill_(0xFF)  # xq -1, xd NaN
    return act


def check_rounding(act, ref: torch.Tensor, what: str, slack: float = 0.0) -> None:
    """act's int8 values against the float64 values ref [batch, cols] they round; slack: absolute error the
    float32 computation of the rounded values may add."""
    torch.cuda.synchronize()
    xd = act.xd.double()  # [batch, cols / 32]
    assert torch.isfinite(xd).all(), f"{what}: unwritten scales"
    blocks = ref.view(ref.shape[0], -1, 32)
    amax = blocks.abs().amax(-1)
    assert torch.allclose(xd, amax / 127, rtol=1e-5, atol=slack / 127 + 1e-30), f"{what}: scales"
    q = act.xq.double().view_as(blocks)
    assert (q.abs().amax(-1) == torch.where(xd > 0, 127.0, 0.0)).all(), f"{what}: block maximum not +-127"
    err = (q * xd[:, :, None] - blocks).abs()
    bound = 0.5 * xd[:, :, None] * (1 + 1e-5) + 2e-6 * amax[:, :, None] + 2 * slack
    assert (err <= bound).all(), f"{what}: rounding off by {float((err - bound).max()):.3e}"


def rms_ref(x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
    x = x.double()
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w.double()


@pytest.mark.parametrize("cols", COLS)
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("with_residual", [True, False], ids=["residual", "plain"])
def test_add_rmsnorm_q8_matches_float64(fz, seed, cols, batch, with_residual):
    g = gen(seed + cols + batch)
    x = torch.randn(batch, cols, device="cuda", generator=g) * 3
    x[:, :: max(1, cols // 7)] *= 20  # outlier channels
    r = torch.randn(batch, cols, device="cuda", generator=g) if with_residual else None
    w = torch.randn(cols, device="cuda", generator=g).abs() + 0.1
    eps = 1e-5
    x_new = x + r if with_residual else x.clone()  # float32, as torch adds
    ref = rms_ref(x_new, w, eps)
    act = poisoned_act(fz, batch, cols)
    out = torch.full((batch, cols), float("nan"), device="cuda")
    x_run = x.clone()
    got = fz.add_rmsnorm_q8(x_run, r, w, eps, act=act, out=out)
    assert got is act
    torch.cuda.synchronize()
    assert torch.equal(x_run, x_new), "the residual add (x += r) is not float32 exact"
    assert torch.isfinite(out).all(), "unwritten float outputs"
    assert torch.allclose(out.double(), ref, rtol=2e-6, atol=2e-6 * float(ref.abs().max()))
    check_rounding(act, ref, f"add_rmsnorm_q8 [{batch}, {cols}]")
    # without the float output: the same int8 values
    again = fz.add_rmsnorm_q8(x_new.clone(), None, w, eps)
    torch.cuda.synchronize()
    assert torch.equal(again.ws, act.ws)


def test_add_rmsnorm_q8_nan_row(fz, seed):
    cols = 32 * 9
    x = torch.randn(3, cols, device="cuda", generator=gen(seed))
    x[1, 40] = float("nan")
    act = fz.add_rmsnorm_q8(x, None, torch.ones(cols, device="cuda"), 1e-6)
    torch.cuda.synchronize()
    assert torch.isnan(act.xd[1]).all() and torch.isfinite(act.xd[[0, 2]]).all()


@pytest.mark.parametrize("cols", COLS)
@pytest.mark.parametrize("batch", [1, 2, 5])
def test_silu_mul_q8_matches_float64(fz, seed, cols, batch):
    g = gen(seed + 7 * cols + batch)
    both = torch.randn(batch, 2 * cols, device="cuda", generator=g) * 4  # gate | up, as one product's output
    gate, up = both[:, :cols], both[:, cols:]
    ref = torch.nn.functional.silu(gate.double()) * up.double()
    act = poisoned_act(fz, batch, cols)
    out = torch.full((batch, cols), float("nan"), device="cuda")
    fz.silu_mul_q8(gate, up, act=act, out=out)
    torch.cuda.synchronize()
    assert torch.isfinite(out).all(), "unwritten float outputs"
    assert torch.allclose(out.double(), ref, rtol=1e-6, atol=1e-6 * float(ref.abs().max()))
    check_rounding(act, ref, f"silu_mul_q8 [{batch}, {cols}]")


def rope_ref(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, n_rot: int, neox: bool) -> torch.Tensor:
    """x float64 [heads, d]; cos, sin float64 [n_rot / 2] of one position."""
    out = x.clone()
    half = n_rot // 2
    if neox:
        x0, x1 = x[:, :half], x[:, half:n_rot]
        out[:, :half], out[:, half:n_rot] = x0 * cos - x1 * sin, x0 * sin + x1 * cos
    else:
        x0, x1 = x[:, 0:n_rot:2], x[:, 1:n_rot:2]
        out[:, 0:n_rot:2], out[:, 1:n_rot:2] = x0 * cos - x1 * sin, x0 * sin + x1 * cos
    return out


def head_norm(x: torch.Tensor, w: torch.Tensor | None, eps: float) -> torch.Tensor:
    return x if w is None else x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w.double()


@pytest.mark.parametrize("neox", [False, True], ids=["normal", "neox"])
@pytest.mark.parametrize("extras", ["none", "bias", "norm"])
@pytest.mark.parametrize("d,n_rot", [(64, 64), (96, 96), (128, 64)])
def test_rope_kv_matches_float64(fz, seed, neox, extras, d, n_rot):
    from awq_gguf.runner.hparams import RopeMode
    from awq_gguf.runner.rope import Rope

    n_head, n_kv, n_ctx, eps = 6, 2, 40, 1e-6
    positions = [5, 0, 39]
    g = gen(seed + d + n_rot + 3 * int(neox))
    n = len(positions)
    qkv = torch.randn(n, (n_head + 2 * n_kv) * d, device="cuda", generator=g) * 2  # one product's output
    q, k, v = qkv[:, : n_head * d], qkv[:, n_head * d : (n_head + n_kv) * d], qkv[:, (n_head + n_kv) * d :]
    bq = bk = bv = qn = kn = None
    if extras == "bias":
        bq, bk, bv = (torch.randn(h * d, device="cuda", generator=g) for h in (n_head, n_kv, n_kv))
    if extras == "norm":
        qn, kn = (torch.rand(d, device="cuda", generator=g) + 0.5 for _ in range(2))
    rope = Rope(n_rot, 10000.0, 1.0, RopeMode.NEOX if neox else RopeMode.NORMAL, n_ctx).to("cuda")
    pos = torch.tensor(positions, device="cuda")
    kc = torch.full((n_kv, n_ctx, d), float("nan"), dtype=torch.float16, device="cuda")
    vc = torch.full_like(kc, float("nan"))
    q_out = torch.full((n, n_head, d), float("nan"), dtype=torch.float16, device="cuda")
    got = fz.rope_kv(q, k, v, rope.cos, rope.sin, pos, n_rot, neox, kc, vc, bq, bk, bv, qn, kn, eps, q_out=q_out)
    torch.cuda.synchronize()
    assert got is q_out

    def close(a: torch.Tensor, b: torch.Tensor, what: str) -> None:
        assert torch.isfinite(a).all(), f"{what}: unwritten"
        err = (a.double() - b).abs()
        assert (err <= 1e-3 * b.abs() + 1e-6).all(), f"{what}: off by {float(err.max()):.3e} (seed {seed})"

    for t, p in enumerate(positions):
        cos, sin = rope.cos[p].double(), rope.sin[p].double()
        add = lambda x, b: x.double() if b is None else x.double() + b.double()
        qh = head_norm(add(q[t], bq).view(n_head, d), qn, eps)
        kh = head_norm(add(k[t], bk).view(n_kv, d), kn, eps)
        vh = add(v[t], bv).view(n_kv, d)
        close(q_out[t], rope_ref(qh, cos, sin, n_rot, neox), f"q, token {t}")
        close(kc[:, p], rope_ref(kh, cos, sin, n_rot, neox), f"k cache, position {p}")
        close(vc[:, p], vh, f"v cache, position {p}")
    others = [p for p in range(n_ctx) if p not in positions]
    assert torch.isnan(kc[:, others]).all() and torch.isnan(vc[:, others]).all(), "wrote outside the positions"


@pytest.mark.parametrize("d", [64, 96, 128])
@pytest.mark.parametrize("pos,t", [(0, 64), (37, 64), (63, 64), (70, 64), (300, 512)])
def test_attn_decode_q8_matches_float64(fz, seed, d, pos, t):
    """Keys 0..min(pos, t - 1) attended, grouped-query head mapping, softmax and the weighted values against
    float64; the cache rows after them hold NaN (read one and the output is NaN)."""
    n_head, n_kv, n_ctx = 8, 2, 520
    g = gen(seed + 31 * d + pos)
    q = (torch.randn(n_head, d, device="cuda", generator=g) * 0.5).half()
    kc = (torch.randn(n_kv, n_ctx, d, device="cuda", generator=g)).half()
    vc = (torch.randn(n_kv, n_ctx, d, device="cuda", generator=g) * 3).half()
    n = min(pos + 1, t)
    kc[:, n:], vc[:, n:] = float("nan"), float("nan")
    scale = 1.0 / math.sqrt(d)
    act = poisoned_act(fz, 1, n_head * d)
    got = fz.attn_decode_q8(q, kc, vc, torch.tensor([pos], device="cuda"), t, scale, act=act)
    assert got is act
    kv = torch.arange(n_head, device="cuda") // (n_head // n_kv)
    keys, values = kc[kv, :n].double(), vc[kv, :n].double()  # [n_head, n, d]
    p = torch.softmax(torch.einsum("hd,hnd->hn", q.double() * scale, keys), -1)
    ref = torch.einsum("hn,hnd->hd", p, values).reshape(1, n_head * d)
    check_rounding(act, ref, f"attention d {d} pos {pos} t {t}", slack=2e-6 * float(values.abs().max()))


@pytest.mark.parametrize("qt", [T.Q4_0, T.Q8_0, T.Q4_K, T.Q6_K], ids=lambda t: t.name)
def test_gemv_q8_on_prerounded_activations(fz, seed, qt):
    """gemv_q8 on add_rmsnorm_q8's int8 values == ops.gemv on its float32 output (which rounds it the same way),
    and == the float64 product of the rounded values."""
    from awq_gguf import cuda_kernels as ck

    cols = 256 * 9 if qt in (T.Q4_K, T.Q6_K) else 32 * 37
    rows = 37
    gw = torch.Generator().manual_seed(seed % 100_000 + int(qt))
    wf = torch.randn(rows, cols, generator=gw)
    raw = quantize(wf, qt)
    w = ck.QuantMatrix.from_gguf(raw, qt, rows, cols, device="cuda")
    ref_w = ref_dequantize(raw, qt).double().cuda()
    for batch in (1, 3):
        x = torch.randn(batch, cols, device="cuda", generator=gen(seed + batch)) * 2
        y = torch.empty_like(x)
        act = fz.add_rmsnorm_q8(x, None, torch.rand(cols, device="cuda", generator=gen(seed)) + 0.5, 1e-5, out=y)
        for mode in (0, 5, 6, 7, 10, 11, 12, 13, 14, 15, 16, 18):
            out = torch.full((batch, rows), float("nan"), device="cuda")
            fz.gemv_q8(act, w, out=out, mode=mode)
            plain = ck.gemv(y, w, mode=mode)
            torch.cuda.synchronize()
            assert torch.isfinite(out).all(), f"{qt.name} mode {mode}: unwritten outputs"
            assert torch.equal(out, plain), f"{qt.name} mode {mode} batch {batch}: differs from the GEMV's own rounding"
            x_hat = (act.xq.double().view(batch, -1, 32) * act.xd.double()[:, :, None]).view(batch, cols)
            assert torch.equal(x_hat.float(), act.values())
            ref = x_hat @ ref_w.T
            err = float((out.double() - ref).norm() / ref.norm())
            assert err < 2e-5, f"{qt.name} mode {mode} batch {batch}: rel err {err:.2e} (seed {seed})"
    with pytest.raises(ValueError, match="int8 mode"):
        fz.gemv_q8(act, w, mode=3)


def test_bad_arguments_raise(fz):
    dev = torch.device("cuda")
    x = torch.zeros(2, 64, device=dev)
    with pytest.raises(TypeError, match="float32"):
        fz.add_rmsnorm_q8(x.half(), None, torch.ones(64, device=dev), 1e-5)
    with pytest.raises(ValueError, match="weight"):
        fz.add_rmsnorm_q8(x, None, torch.ones(32, device=dev), 1e-5)
    with pytest.raises(ValueError, match="multiple of 32"):
        fz.Q8Act.empty(1, 48, dev)
    with pytest.raises(ValueError, match="act is"):
        fz.silu_mul_q8(x, x, act=fz.Q8Act.empty(1, 64, dev))
    assert math.isfinite(float(fz.add_rmsnorm_q8(x + 1, None, torch.ones(64, device=dev), 1e-5).xd.max()))
