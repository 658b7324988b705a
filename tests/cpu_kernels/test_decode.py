"""The fused one-token decode step (layer.c through decode.py) against a float64 numpy transformer layer, on
every ISA this machine runs: odd sizes, grouped-query heads, both RoPE modes, qwen2 biases and qwen3 q/k norms,
mixed weight types, several positions through the KV cache (whose unwritten rows are NaN-poisoned, so reading
past pos shows), and every bad size raising in Python (and refused by C) instead of crashing."""

from __future__ import annotations

import numpy as np
import pytest
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType as T

from awq_gguf import cpu_kernels as ck

from kernel_blocks import FP16_FIELDS, random_rows, ref_quantize_act
from test_kernels import K_TYPES, act_block, ref_weights

PACKABLE = (T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q2_K, T.Q3_K)  # the types pack_weights interleaves

ISAS = ck.available_isas()


def rope_tables(n_pos: int, d: int, base: float = 10000.0) -> tuple[np.ndarray, np.ndarray]:
    inv = base ** (-np.arange(0, d, 2, dtype=np.float64) / d)
    theta = np.arange(n_pos, dtype=np.float64)[:, None] * inv[None, :]
    return np.cos(theta).astype(np.float32), np.sin(theta).astype(np.float32)


def weight(rng, t: T, rows: int, cols: int) -> np.ndarray:
    if t in (T.F32, T.F16):
        w = (rng.standard_normal((rows, cols)) * 0.1).astype(np.float32)
        return (w if t == T.F32 else w.astype(np.float16)).view(np.uint8)
    raw = random_rows(rng, t, rows, cols)
    if t in K_TYPES:  # their 6/8-bit sub-block scales make random blocks ~50x larger than the 32-blocks: shrink d
        blocks = raw.reshape(-1, GGML_QUANT_SIZES[t][1])
        for off in FP16_FIELDS[t]:
            f16 = np.ascontiguousarray(blocks[:, off : off + 2]).view(np.float16)
            blocks[:, off : off + 2] = (f16 / np.float16(64)).view(np.uint8)
    return raw


class Spec:
    """A random layer: sizes, types, optional biases / q-k norms, and its float64 reference step."""

    def __init__(self, seed: int, n_embd: int, n_head: int, n_kv: int, d: int, n_ff: int, types: dict[str, T],
                 neox: bool = False, bias: bool = False, qk_norm: bool = False, n_ctx: int = 9) -> None:
        rng = np.random.default_rng(seed)
        self.n_embd, self.n_head, self.n_kv, self.d, self.n_ff, self.n_ctx = n_embd, n_head, n_kv, d, n_ff, n_ctx
        self.neox, self.eps = neox, 1e-5
        nq, nkv = n_head * d, n_kv * d
        shapes = {"wq": (nq, n_embd), "wk": (nkv, n_embd), "wv": (nkv, n_embd), "wo": (n_embd, nq),
                  "w_gate": (n_ff, n_embd), "w_up": (n_ff, n_embd), "w_down": (n_embd, n_ff)}
        self.mats = {k: (weight(rng, types[k], *s), types[k]) for k, s in shapes.items()}
        self.vecs = {"attn_norm": rng.uniform(0.8, 1.2, n_embd).astype(np.float32),
                     "ffn_norm": rng.uniform(0.8, 1.2, n_embd).astype(np.float32)}
        if bias:
            self.vecs |= {"bq": rng.normal(0, 0.1, nq).astype(np.float32),
                          "bk": rng.normal(0, 0.1, nkv).astype(np.float32),
                          "bv": rng.normal(0, 0.1, nkv).astype(np.float32)}
        if qk_norm:
            self.vecs |= {"q_norm": rng.uniform(0.8, 1.2, d).astype(np.float32),
                          "k_norm": rng.uniform(0.8, 1.2, d).astype(np.float32)}
        self.cos, self.sin = rope_tables(n_ctx + 3, d)
        self.rng = rng
        self.ref_k = np.zeros((n_kv, n_ctx, d))
        self.ref_v = np.zeros((n_kv, n_ctx, d))

    def build(self, packed: bool = False) -> ck.DecodeStack:
        """packed: matrices of the PACKABLE types with a multiple of 8 rows go in as pack_weights' interleaved
        copies."""
        cfg = ck.DecodeConfig(self.n_embd, self.n_head, self.n_kv, self.d, self.n_ff, self.n_ctx, self.eps,
                              self.neox, self.cos, self.sin)
        mats = {k: ck.pack_weights(raw, t) if packed and t in PACKABLE and raw.shape[0] % 8 == 0 else (raw, t)
                for k, (raw, t) in self.mats.items()}
        layer = ck.DecodeLayer(cfg, **self.vecs, **mats)
        assert not packed or any(m[3] for m in layer.mats.values()), "no matrix went in packed"
        stack = ck.DecodeStack(cfg, [layer])
        shape = (self.n_kv, self.n_ctx, self.d)
        self.k_cache = np.full(shape, np.nan, np.float32)  # poisoned: positions > pos must never be read
        self.v_cache = np.full(shape, np.nan, np.float32)
        stack.bind_cache([(self.k_cache, self.v_cache)])
        return stack

    # ---- float64 reference (activations rounded as the kernels round them, in float32) ----

    def _mm(self, name: str, x: np.ndarray) -> np.ndarray:
        raw, t = self.mats[name]
        w = ref_weights(raw, t).astype(np.float64)
        blk = act_block(t)
        x32 = x.astype(np.float32)[None, :]
        if blk is None:
            xd = x32.astype(np.float64)
        else:
            q, dq = ref_quantize_act(x32, blk)
            xd = (q.reshape(1, -1, blk).astype(np.float64) * dq[:, :, None]).reshape(1, -1)
        return (xd @ w.T)[0]

    def _rms(self, x: np.ndarray, w: np.ndarray) -> np.ndarray:
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.eps) * w

    def _rope(self, v: np.ndarray, pos: int) -> np.ndarray:  # v [heads, d]
        c, s = self.cos[pos].astype(np.float64), self.sin[pos].astype(np.float64)
        out = v.copy()
        if self.neox:
            h = self.d // 2
            x0, x1 = v[:, :h], v[:, h:]
            out[:, :h], out[:, h:] = x0 * c - x1 * s, x0 * s + x1 * c
        else:
            x0, x1 = v[:, 0::2], v[:, 1::2]
            out[:, 0::2], out[:, 1::2] = x0 * c - x1 * s, x0 * s + x1 * c
        return out

    def ref_step(self, x: np.ndarray, pos: int) -> np.ndarray:
        vec = self.vecs
        h = self._rms(x, vec["attn_norm"])
        q, k, v = self._mm("wq", h), self._mm("wk", h), self._mm("wv", h)
        if "bq" in vec:
            q, k, v = q + vec["bq"], k + vec["bk"], v + vec["bv"]
        q, k, v = q.reshape(self.n_head, self.d), k.reshape(self.n_kv, self.d), v.reshape(self.n_kv, self.d)
        if "q_norm" in vec:
            q, k = self._rms(q, vec["q_norm"]), self._rms(k, vec["k_norm"])
        q, k = self._rope(q, pos), self._rope(k, pos)
        self.ref_k[:, pos], self.ref_v[:, pos] = k, v
        g = self.n_head // self.n_kv
        att = np.empty((self.n_head, self.d))
        for hd in range(self.n_head):
            keys, vals = self.ref_k[hd // g, : pos + 1], self.ref_v[hd // g, : pos + 1]
            s = keys @ q[hd] / np.sqrt(self.d)
            p = np.exp(s - s.max())
            att[hd] = (p / p.sum()) @ vals
        x = x + self._mm("wo", att.reshape(-1))
        h = self._rms(x, vec["ffn_norm"])
        gate, up = self._mm("w_gate", h), self._mm("w_up", h)
        return x + self._mm("w_down", gate / (1 + np.exp(-gate)) * up)


def run_positions(spec: Spec, n_pos: int = 5, threads: int = 1, packed: bool = False) -> None:
    stack = spec.build(packed)
    x = spec.rng.standard_normal(spec.n_embd).astype(np.float32)
    ref = x.astype(np.float64)
    quant = any(t not in (T.F32, T.F16) for _, t in spec.mats.values())
    for pos in range(n_pos):
        inp = ref.astype(np.float32)  # both sides start each step from the same input
        x[:] = inp
        stack.step(x, pos, threads=threads)
        ref = spec.ref_step(inp.astype(np.float64), pos)
        assert np.isfinite(x).all(), f"pos {pos}: non-finite output (read a poisoned cache row?)"
        delta_ref = ref - inp  # what the layer adds; compare that, not the (large) residual
        err = np.linalg.norm((x - inp) - delta_ref) / np.linalg.norm(delta_ref)
        # float32 vs float64 summation; with 8-bit activations a rounding near-tie may land on the other side
        # by a last-bit difference upstream (one quantum of one element)
        assert err < (2e-3 if quant else 2e-5), f"pos {pos}: relative error {err:.2e}"
        np.testing.assert_allclose(spec.k_cache[:, pos], spec.ref_k[:, pos], rtol=0,
                                   atol=(2e-3 if quant else 2e-5) * np.abs(spec.ref_k[:, pos]).max())
        assert np.isnan(spec.k_cache[:, pos + 1 :]).all(), "rows past pos were written"


ALL32 = {k: T.Q8_0 for k in ("wq", "wk", "wv", "wo", "w_gate", "w_up", "w_down")}


@pytest.mark.parametrize("t", [T.F32, T.F16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0])
def test_odd_sizes_32(isa, t) -> None:
    # n_embd 96, 3 query heads of 32 over 1 kv head, n_ff 160 (F types: 36 / 12 / 52, no block constraint)
    if t in (T.F32, T.F16):
        spec = Spec(1, 36, 3, 1, 12, 52, dict.fromkeys(ALL32, t))
    else:
        spec = Spec(1, 96, 3, 1, 32, 160, dict.fromkeys(ALL32, t))
    run_positions(spec)


@pytest.mark.parametrize("t", sorted(K_TYPES))
def test_k_types(isa, t) -> None:
    run_positions(Spec(2, 256, 4, 2, 64, 512, dict.fromkeys(ALL32, t)), n_pos=3)


def test_mixed_types_neox_bias_qknorm_threads(isa) -> None:
    types = {"wq": T.Q4_K, "wk": T.Q5_0, "wv": T.Q6_K, "wo": T.Q8_0, "w_gate": T.Q4_1, "w_up": T.Q3_K,
             "w_down": T.Q2_K}
    for threads in (1, 2, 3):
        run_positions(Spec(3, 256, 6, 2, 32, 256, types, neox=True, bias=True, qk_norm=True), n_pos=4,
                      threads=threads)


@pytest.mark.parametrize("t4,t5", [(T.Q4_0, T.Q5_0), (T.Q4_1, T.Q5_1)], ids=["Q4_0-Q5_0", "Q4_1-Q5_1"])
def test_packed_32_types(isa, t4: T, t5: T) -> None:
    """Q4_0 / Q5_0 (and Q4_1 / Q5_1) matrices as interleaved copies (pack_weights; the runner's decode) beside
    file rows: whole groups of 8 rows per thread, and (second spec: wk has 6 rows, so the q/k/v job splits by
    single rows) groups cut by a thread boundary, computed whole and written only in range."""
    types = dict.fromkeys(ALL32, t4) | {"wv": T.Q8_0, "wk": t5, "w_up": t5}
    cut = {"wq": t5, "wk": T.Q8_0, "wv": T.Q8_0, "wo": T.F32, "w_gate": t4, "w_up": t5, "w_down": t4}
    for threads in (1, 2, 3):
        run_positions(Spec(7, 96, 3, 1, 32, 160, types), n_pos=4, threads=threads, packed=True)
        run_positions(Spec(8, 64, 4, 1, 6, 64, cut), n_pos=4, threads=threads, packed=True)


def test_packed_k_types(isa) -> None:
    """Interleaved Q2_K / Q3_K copies in the decode step (the runner's), whole groups per thread; and (second
    spec: wk has 6 rows) beside file rows, groups cut by a thread boundary."""
    types = {"wq": T.Q2_K, "wk": T.Q3_K, "wv": T.Q2_K, "wo": T.Q3_K, "w_gate": T.Q3_K, "w_up": T.Q2_K,
             "w_down": T.Q3_K}
    cut = {"wq": T.Q2_K, "wk": T.Q3_K, "wv": T.Q8_0, "wo": T.F32, "w_gate": T.Q3_K, "w_up": T.Q2_K, "w_down": T.Q2_K}
    for threads in (1, 2, 3):
        run_positions(Spec(9, 256, 8, 2, 32, 256, types), n_pos=4, threads=threads, packed=True)
        run_positions(Spec(10, 256, 4, 1, 6, 256, cut), n_pos=4, threads=threads, packed=True)


def test_normal_rope_gqa_f32_tight(isa) -> None:
    run_positions(Spec(4, 40, 4, 2, 10, 24, dict.fromkeys(ALL32, T.F32)), n_pos=9)


def test_stack_of_layers_matches_one_by_one(isa) -> None:
    """Two layers in one call equal two one-layer calls (the caches of both are filled)."""
    a, b = Spec(5, 64, 2, 1, 32, 96, ALL32), Spec(6, 64, 2, 1, 32, 96, ALL32)
    sa, sb = a.build(), b.build()
    cfg = sa.cfg
    both = ck.DecodeStack(cfg, [sa.layers[0], ck.DecodeLayer(cfg, **b.vecs, **b.mats)])
    caches = [(np.full_like(a.k_cache, np.nan), np.full_like(a.k_cache, np.nan)) for _ in range(2)]
    both.bind_cache(caches)
    x1 = np.random.default_rng(0).standard_normal(64).astype(np.float32)
    x2 = x1.copy()
    for pos in range(3):
        sa.step(x1, pos)
        sb.step(x1, pos)
        both.step(x2, pos)
        np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(caches[1][0][:, :3], b.k_cache[:, :3])


# ---- bad input: Python raises, C refuses -------------------------------------------------------------


@pytest.fixture
def spec() -> Spec:
    return Spec(7, 64, 2, 1, 32, 96, ALL32, n_ctx=4)


def test_bad_sizes_raise(spec: Spec) -> None:
    cfg = ck.DecodeConfig(64, 2, 1, 32, 96, 4, 1e-5, False, spec.cos, spec.sin)
    bad = dict(spec.mats)
    bad["wk"] = (random_rows(spec.rng, T.Q8_0, 64, 64), T.Q8_0)  # 64 rows, kv needs 32
    with pytest.raises(ck.KernelShapeError, match="wk"):
        ck.DecodeLayer(cfg, **spec.vecs, **bad)
    bad = dict(spec.mats)
    bad["w_down"] = (random_rows(spec.rng, T.Q8_0, 64, 64), T.Q8_0)  # cols 64, needs n_ff 96
    with pytest.raises(ck.KernelShapeError, match="w_down"):
        ck.DecodeLayer(cfg, **spec.vecs, **bad)
    with pytest.raises(ck.KernelShapeError, match="attn_norm"):
        ck.DecodeLayer(cfg, **{**spec.vecs, "attn_norm": np.ones(63, np.float32)}, **spec.mats)
    with pytest.raises(ck.KernelTypeError, match="ffn_norm"):
        ck.DecodeLayer(cfg, **{**spec.vecs, "ffn_norm": np.ones(64, np.float64)}, **spec.mats)
    with pytest.raises(ck.KernelShapeError, match="together"):
        ck.DecodeLayer(cfg, **spec.vecs, **spec.mats, bq=np.zeros(64, np.float32))
    with pytest.raises(ck.KernelShapeError, match="n_head"):
        ck.DecodeConfig(64, 3, 2, 32, 96, 4, 1e-5, False, spec.cos, spec.sin)
    with pytest.raises(ck.KernelShapeError, match="odd"):
        ck.DecodeConfig(64, 2, 1, 31, 96, 4, 1e-5, False, spec.cos, spec.sin)
    with pytest.raises(ck.KernelShapeError, match="rope_cos"):
        ck.DecodeConfig(64, 2, 1, 32, 96, 100, 1e-5, False, spec.cos, spec.sin)  # tables shorter than n_ctx
    with pytest.raises(ck.KernelShapeError, match="n_ff"):
        ck.DecodeConfig(64, 2, 1, 32, 0, 4, 1e-5, False, spec.cos, spec.sin)


def test_bad_step_raises(spec: Spec) -> None:
    stack = spec.build()
    x = np.zeros(64, np.float32)
    with pytest.raises(ck.KernelShapeError, match="pos"):
        stack.step(x, 4)  # n_ctx 4
    with pytest.raises(ck.KernelShapeError, match="pos"):
        stack.step(x, -1)
    with pytest.raises(ck.KernelShapeError, match="x"):
        stack.step(np.zeros(65, np.float32), 0)
    with pytest.raises(ck.KernelTypeError, match="x"):
        stack.step(np.zeros(64, np.float64), 0)
    ro = np.zeros(64, np.float32)
    ro.flags.writeable = False
    with pytest.raises(ck.KernelShapeError, match="writable"):
        stack.step(ro, 0)
    with pytest.raises(ck.KernelShapeError, match="k_cache"):
        stack.bind_cache([(np.zeros((1, 5, 32), np.float32), spec.v_cache)])  # 5 positions, n_ctx 4
    with pytest.raises(ck.KernelShapeError, match="caches"):
        stack.bind_cache([])
    unbound = ck.DecodeStack(stack.cfg, stack.layers)
    with pytest.raises(ck.KernelShapeError, match="bind_cache"):
        unbound.step(x, 0)
    assert np.all(x == 0)


def test_c_refuses_bad_sizes(spec: Spec) -> None:
    """The C entry point checks again: sizes the facade would have refused come back as -2, not a crash."""
    stack = spec.build()
    ffi, lib = stack._ffi, stack.lib
    x = np.zeros(64, np.float32)
    px = ffi.from_buffer("float[]", x)
    cfg = stack.cfg._c
    assert lib.awq_decode_layers(cfg, stack._c, 1, 4, px, 1) == -2  # pos == n_ctx
    assert lib.awq_decode_layers(cfg, stack._c, 1, -1, px, 1) == -2
    lay = stack._c[0]
    rows = lay.wk.rows
    lay.wk.rows = rows + 1
    assert lib.awq_decode_layers(cfg, stack._c, 1, 0, px, 1) == -2
    lay.wk.rows = rows
    rb = lay.down.row_bytes
    lay.down.row_bytes = rb - 1
    assert lib.awq_decode_layers(cfg, stack._c, 1, 0, px, 1) == -2
    lay.down.row_bytes = rb
    cache = lay.k_cache
    lay.k_cache = ffi.NULL
    assert lib.awq_decode_layers(cfg, stack._c, 1, 0, px, 1) == -2
    lay.k_cache = cache
    lay.wk.packed = 2  # a flag other than 0 / 1
    assert lib.awq_decode_layers(cfg, stack._c, 1, 0, px, 1) == -2
    lay.wk.packed = 1  # Q8_0 (the fixture's type) has no interleaved layout
    assert lib.awq_decode_layers(cfg, stack._c, 1, 0, px, 1) == -1
    lay.wk.packed = 0
    assert np.all(x == 0) and np.isnan(spec.k_cache).all()  # nothing ran
    assert lib.awq_decode_layers(cfg, stack._c, 1, 0, px, 1) == 0


def test_token_embedding_layers_head(isa) -> None:
    """token(): embedding row + layers + head in C equals get_rows + step + a float64 norm and matmul."""
    spec = Spec(8, 96, 3, 1, 32, 160, ALL32)
    stack = spec.build()
    rng = np.random.default_rng(1)
    embd = random_rows(rng, T.Q8_0, 11, 96)
    out_w = random_rows(rng, T.Q4_0, 37, 96)
    norm = rng.uniform(0.8, 1.2, 96).astype(np.float32)
    stack.set_embedding((embd, T.Q8_0))
    stack.set_head(norm, (out_w, T.Q4_0))
    ref_stack = spec.build()  # a second stack on fresh caches for the step-by-step reference
    for pos, tok in enumerate([3, 10, 0]):
        logits = stack.token(tok, pos)
        x = ck.get_rows(embd, T.Q8_0, [tok])[0].copy()
        ref_stack.step(x, pos)
        np.testing.assert_array_equal(stack.x, x)
        h = spec._rms(x.astype(np.float64), norm).astype(np.float32)
        q, d = ref_quantize_act(h[None], 32)
        hq = (q.reshape(1, -1, 32).astype(np.float64) * d[:, :, None]).reshape(-1)
        ref = ref_weights(out_w, T.Q4_0).astype(np.float64) @ hq
        assert logits.shape == (37,) and np.isfinite(logits).all()
        np.testing.assert_allclose(logits, ref, rtol=0, atol=1e-4 * np.abs(ref).max())


def test_token_bad_input(spec: Spec) -> None:
    stack = spec.build()
    with pytest.raises(ck.KernelShapeError, match="set_embedding"):
        stack.token(0, 0)
    rng = np.random.default_rng(2)
    with pytest.raises(ck.KernelShapeError, match="token_embd"):
        stack.set_embedding((random_rows(rng, T.Q8_0, 5, 32), T.Q8_0))  # rows of 32, n_embd 64
    with pytest.raises(ck.KernelShapeError, match="output_norm"):
        stack.set_head(np.ones(32, np.float32), (random_rows(rng, T.Q8_0, 5, 64), T.Q8_0))
    stack.set_embedding((random_rows(rng, T.Q8_0, 5, 64), T.Q8_0))
    stack.set_head(np.ones(64, np.float32), (random_rows(rng, T.Q8_0, 7, 64), T.Q8_0))
    for bad in (5, -1, True, 1.0):
        with pytest.raises(ck.KernelShapeError, match="token"):
            stack.token(bad, 0)
    with pytest.raises(ck.KernelShapeError, match="pos"):
        stack.token(1, 4)
    assert stack.token(4, 0).shape == (7,)  # (pos 0: the only cache row written so far)
    # C checks the head again: a matrix whose rows do not hold n_embd elements is refused
    m = stack._head[4]
    logits = np.zeros(7, np.float32)
    args = (stack.cfg._c, stack._head[1], m, stack._x_ptr, stack._ffi.from_buffer("float[]", logits), 1)
    m.cols = 32
    assert stack.lib.awq_decode_head(*args) == -2
    m.cols, m.row_bytes = 64, 10
    assert stack.lib.awq_decode_head(*args) == -2
    m.row_bytes = 68
    assert np.all(logits == 0)
    assert stack.lib.awq_decode_head(*args) == 0 and np.isfinite(logits).all() and np.any(logits != 0)
