"""Python facade of the one-token decode step (layer.c): whole transformer layers in one C call.

    cfg = ck.DecodeConfig(n_embd, n_head, n_head_kv, head_dim, n_ff, n_ctx, eps, rope_neox, rope_cos, rope_sin)
    layer = ck.DecodeLayer(cfg, attn_norm=..., ffn_norm=..., wq=(raw, qtype), ..., w_down=(raw, qtype))
    stack = ck.DecodeStack(cfg, [layer, ...])
    stack.bind_cache([(k0, v0), (k1, v1), ...])   # float32 [n_head_kv, n_ctx, head_dim] per layer, written in place
    stack.step(x, pos)                             # x float32 [n_embd], updated in place
    stack.set_embedding((raw, qtype)); stack.set_head(output_norm, (raw, qtype))
    logits = stack.token(token_id, pos)            # embedding row, every layer, final norm and output matrix

Everything is checked here, once: matrices against the shapes the config implies (rows, cols, row bytes of
their type), vectors' lengths, dtypes, contiguity and alignment, the caches' shapes and writability, the RoPE
tables against n_ctx; step() checks x and pos on every call. A wrong size raises KernelShapeError (a ValueError)
or KernelTypeError (a TypeError) naming the argument; the C side checks the sizes again and refuses (-2)
instead of reading out of bounds. The arrays stay referenced by these objects as long as C may read them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from gguf import GGML_QUANT_SIZES

from . import ops
from .ops import KernelShapeError, KernelTypeError

_F32 = np.dtype(np.float32)


def _vec(a: Any, n: int, name: str, writable: bool = False) -> np.ndarray:
    if not isinstance(a, np.ndarray):
        raise KernelTypeError(f"{name} must be a numpy float32 array, got {type(a).__name__}")
    if a.dtype != _F32:
        raise KernelTypeError(f"{name} must be float32, got dtype {a.dtype}")
    if a.shape != (n,):
        raise KernelShapeError(f"{name} must have shape ({n},), got {a.shape}")
    if not a.flags.c_contiguous or not a.flags.aligned or (writable and not a.flags.writeable):
        raise KernelShapeError(f"{name} must be a{' writable' if writable else ''} C-contiguous aligned array")
    return a


def _array(a: Any, shape: tuple[int, ...], name: str, writable: bool = False) -> np.ndarray:
    if not isinstance(a, np.ndarray) or a.dtype != _F32:
        raise KernelTypeError(f"{name} must be a float32 numpy array, got {getattr(a, 'dtype', type(a).__name__)}")
    if a.shape != shape:
        raise KernelShapeError(f"{name} must have shape {shape}, got {a.shape}")
    if not a.flags.c_contiguous or not a.flags.aligned or (writable and not a.flags.writeable):
        raise KernelShapeError(f"{name} must be a{' writable' if writable else ''} C-contiguous aligned array")
    return a


@dataclass
class DecodeConfig:
    n_embd: int
    n_head: int
    n_head_kv: int
    head_dim: int
    n_ff: int
    n_ctx: int
    eps: float
    rope_neox: bool
    rope_cos: np.ndarray  # float32 [rope_rows >= n_ctx, head_dim / 2]
    rope_sin: np.ndarray

    def __post_init__(self) -> None:
        for name in ("n_embd", "n_head", "n_head_kv", "head_dim", "n_ff", "n_ctx"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise KernelShapeError(f"{name} must be a positive int, got {v!r}")
        if self.n_head % self.n_head_kv:
            raise KernelShapeError(f"n_head {self.n_head} is not a multiple of n_head_kv {self.n_head_kv}")
        if self.head_dim % 2:
            raise KernelShapeError(f"head_dim {self.head_dim} is odd")
        if not (0 <= float(self.eps) < 1):
            raise KernelShapeError(f"eps must lie in [0, 1), got {self.eps}")
        half = self.head_dim // 2
        for name in ("rope_cos", "rope_sin"):
            a = getattr(self, name)
            if not isinstance(a, np.ndarray) or a.ndim != 2:
                raise KernelShapeError(f"{name} must be a 2-D float32 array [positions, {half}]")
            _array(a, (a.shape[0], half), name)
            if a.shape[0] < self.n_ctx:
                raise KernelShapeError(f"{name} has {a.shape[0]} positions, fewer than n_ctx {self.n_ctx}")
        if self.rope_cos.shape != self.rope_sin.shape:
            raise KernelShapeError(f"rope_cos {self.rope_cos.shape} and rope_sin {self.rope_sin.shape} differ")
        ffi = ops._mod.ffi if ops._mod is not None else None  # noqa: SLF001
        if ffi is None:
            ops._lib()  # noqa: SLF001
            ffi = ops._mod.ffi  # noqa: SLF001
        self._ffi = ffi
        c = ffi.new("awq_decode_cfg_t *")
        c.n_embd, c.n_head, c.n_head_kv, c.head_dim = self.n_embd, self.n_head, self.n_head_kv, self.head_dim
        c.n_ff, c.n_ctx, c.rope_rows = self.n_ff, self.n_ctx, self.rope_cos.shape[0]
        c.eps, c.rope_neox = float(self.eps), int(bool(self.rope_neox))
        self._ptrs = (ffi.from_buffer("float[]", self.rope_cos), ffi.from_buffer("float[]", self.rope_sin))
        c.rope_cos, c.rope_sin = self._ptrs
        self._c = c


def _layer_matrix(m: Any, rows: int, cols: int, name: str) -> tuple[np.ndarray, Any, int, bool]:
    """(uint8 GGUF bytes [rows, row_bytes], qtype), or a PackedMatrix (pack_weights) of rows x cols:
    (buffer, type, cols, packed)."""
    if isinstance(m, ops.PackedMatrix):
        data, t = ops._packed(m, name)  # noqa: SLF001
        if (m.rows, m.cols) != (rows, cols):
            raise KernelShapeError(f"{name} must be {rows} x {cols} ({t.name}), got a packed {m.rows} x {m.cols}")
        return data, t, cols, True
    if not isinstance(m, tuple) or len(m) != 2:
        raise KernelTypeError(f"{name} must be a (uint8 array, qtype) pair or a PackedMatrix")
    t = ops._qtype(m[1])  # noqa: SLF001
    raw, cols_w = ops._weights(m[0], t, name)  # noqa: SLF001
    if raw.shape[0] != rows or cols_w != cols:
        raise KernelShapeError(f"{name} must be {rows} x {cols} ({t.name}), got {raw.shape[0]} rows of "
                               f"{cols_w} elements ({raw.shape[1]} B)")
    return raw, t, cols, False


class DecodeLayer:
    """One layer's weights, checked against cfg. Matrices are (uint8 GGUF bytes [rows, row_bytes], qtype), or
    PackedMatrix copies (pack_weights: Q4_0 rows interleaved by 8, multiplied by the interleaved kernel)."""

    def __init__(self, cfg: DecodeConfig, *, attn_norm: np.ndarray, ffn_norm: np.ndarray,
                 wq: tuple, wk: tuple, wv: tuple, wo: tuple, w_gate: tuple, w_up: tuple, w_down: tuple,
                 bq: np.ndarray | None = None, bk: np.ndarray | None = None, bv: np.ndarray | None = None,
                 q_norm: np.ndarray | None = None, k_norm: np.ndarray | None = None) -> None:
        self.cfg = cfg
        nq, nkv, e, f = cfg.n_head * cfg.head_dim, cfg.n_head_kv * cfg.head_dim, cfg.n_embd, cfg.n_ff
        self._keep: list[Any] = []
        self.vec = {"attn_norm": _vec(attn_norm, e, "attn_norm"), "ffn_norm": _vec(ffn_norm, e, "ffn_norm")}
        if (bq is None) != (bk is None) or (bq is None) != (bv is None):
            raise KernelShapeError("bq, bk, bv must be given together or not at all")
        if (q_norm is None) != (k_norm is None):
            raise KernelShapeError("q_norm and k_norm must be given together or not at all")
        if bq is not None:
            self.vec |= {"bq": _vec(bq, nq, "bq"), "bk": _vec(bk, nkv, "bk"), "bv": _vec(bv, nkv, "bv")}
        if q_norm is not None:
            self.vec |= {"q_norm": _vec(q_norm, cfg.head_dim, "q_norm"), "k_norm": _vec(k_norm, cfg.head_dim, "k_norm")}
        shapes = {"wq": (nq, e), "wk": (nkv, e), "wv": (nkv, e), "wo": (e, nq), "w_gate": (f, e), "w_up": (f, e),
                  "w_down": (e, f)}
        given = {"wq": wq, "wk": wk, "wv": wv, "wo": wo, "w_gate": w_gate, "w_up": w_up, "w_down": w_down}
        self.mats: dict[str, tuple[np.ndarray, Any, int, bool]] = {}
        for name, (rows, cols) in shapes.items():
            self.mats[name] = _layer_matrix(given[name], rows, cols, name)
        self.caches: tuple[np.ndarray, np.ndarray] | None = None

    def _fill(self, ffi, c) -> None:  # c: awq_layer_t
        def fp(a):
            self._keep.append(a)
            return ffi.from_buffer("float[]", a)

        c.attn_norm, c.ffn_norm = fp(self.vec["attn_norm"]), fp(self.vec["ffn_norm"])
        if "bq" in self.vec:
            c.bq, c.bk, c.bv = fp(self.vec["bq"]), fp(self.vec["bk"]), fp(self.vec["bv"])
        if "q_norm" in self.vec:
            c.q_norm, c.k_norm = fp(self.vec["q_norm"]), fp(self.vec["k_norm"])
        for name, field in (("wq", "wq"), ("wk", "wk"), ("wv", "wv"), ("wo", "wo"), ("w_gate", "gate"),
                            ("w_up", "up"), ("w_down", "down")):
            raw, t, cols, packed = self.mats[name]
            m = getattr(c, field)
            buf = ffi.from_buffer("char[]", raw)
            self._keep.append(buf)
            block, size = GGML_QUANT_SIZES[t]
            rows = raw.shape[0] * 8 if packed else raw.shape[0]
            m.w, m.rows, m.row_bytes, m.cols, m.qtype = buf, rows, cols // block * size, cols, int(t)
            m.packed = int(packed)


class DecodeStack:
    """Layers run in order by one C call per token (awq_decode_layers)."""

    def __init__(self, cfg: DecodeConfig, layers: Sequence[DecodeLayer]) -> None:
        self.lib = ops._lib()  # noqa: SLF001
        self.cfg = cfg
        self.layers = list(layers)
        for i, lay in enumerate(self.layers):
            if not isinstance(lay, DecodeLayer) or lay.cfg is not cfg:
                raise KernelTypeError(f"layer {i} must be a DecodeLayer built with this stack's config")
        ffi = cfg._ffi
        self._ffi = ffi
        self._c = ffi.new("awq_layer_t[]", max(len(self.layers), 1))
        for i, lay in enumerate(self.layers):
            lay._fill(ffi, self._c[i])
        self._bound: list | None = None
        self.x = np.zeros(cfg.n_embd, np.float32)  # token()'s hidden state
        self._x_ptr = ffi.from_buffer("float[]", self.x)
        self._ids = np.zeros(1, np.int64)
        self._ids_ptr = ffi.from_buffer("int64_t[]", self._ids)
        self._embd = None
        self._head = None

    def _matrix(self, m: Any, cols: int, name: str) -> tuple:
        if not isinstance(m, tuple) or len(m) != 2:
            raise KernelTypeError(f"{name} must be a (uint8 array, qtype) pair")
        t = ops._qtype(m[1])  # noqa: SLF001
        raw, cols_w = ops._weights(m[0], t, name)  # noqa: SLF001
        if cols_w != cols:
            raise KernelShapeError(f"{name} must have rows of {cols} elements, got {cols_w} ({t.name}, {raw.shape[1]} B)")
        if raw.shape[0] < 1:
            raise KernelShapeError(f"{name} has no rows")
        return raw, t, self._ffi.from_buffer("char[]", raw)

    def set_embedding(self, token_embd: tuple) -> None:
        """(uint8 [n_vocab, row_bytes], qtype), rows of n_embd elements: token() reads its row `token`."""
        self._embd = self._matrix(token_embd, self.cfg.n_embd, "token_embd")

    def set_head(self, norm: np.ndarray, output: tuple) -> None:
        """The final norm [n_embd] and output matrix (uint8 [n_vocab, row_bytes], qtype): token()'s logits."""
        norm = _vec(norm, self.cfg.n_embd, "output_norm")
        raw, t, ptr = self._matrix(output, self.cfg.n_embd, "output")
        m = self._ffi.new("awq_mat_t *")
        m.w, m.rows, m.row_bytes, m.cols, m.qtype = ptr, raw.shape[0], raw.shape[1], self.cfg.n_embd, int(t)
        self._head = (norm, self._ffi.from_buffer("float[]", norm), raw, ptr, m)

    def token(self, token: int, pos: int, threads: int | None = None) -> np.ndarray:
        """Logits float32 [n_vocab] of `token` at position pos: its embedding row, every layer (the caches get
        pos's keys/values), the final norm and the output matrix; three C calls, checked once here."""
        if self._bound is None or self._embd is None or self._head is None:
            raise KernelShapeError("bind_cache(), set_embedding() and set_head() first")
        raw, t, ptr = self._embd
        if isinstance(token, bool) or not isinstance(token, (int, np.integer)) or not 0 <= token < raw.shape[0]:
            raise KernelShapeError(f"token must be an int in [0, {raw.shape[0]}), got {token!r}")
        if isinstance(pos, bool) or not isinstance(pos, (int, np.integer)) or not 0 <= pos < self.cfg.n_ctx:
            raise KernelShapeError(f"pos must be an int in [0, {self.cfg.n_ctx}), got {pos!r}")
        nt = ops._threads(threads)  # noqa: SLF001
        lib = self.lib
        self._ids[0] = token
        rc = lib.awq_get_rows(int(t), ptr, raw.shape[0], raw.shape[1], self.cfg.n_embd, self._ids_ptr, 1,
                              self._x_ptr, 1)
        ops._check_rc(rc, "token embedding")  # noqa: SLF001
        if self.layers:
            rc = lib.awq_decode_layers(self.cfg._c, self._c, len(self.layers), int(pos), self._x_ptr, nt)
            ops._check_rc(rc, f"decode_layers pos {pos}")  # noqa: SLF001
        _, norm_ptr, out_raw, _, m = self._head
        logits = np.empty(out_raw.shape[0], np.float32)
        rc = lib.awq_decode_head(self.cfg._c, norm_ptr, m, self._x_ptr, self._ffi.from_buffer("float[]", logits), nt)
        ops._check_rc(rc, "decode_head")  # noqa: SLF001
        return logits

    def bind_cache(self, caches: Sequence[tuple[np.ndarray, np.ndarray]]) -> None:
        """Per layer (k, v): float32 [n_head_kv, n_ctx, head_dim], C-contiguous, writable (written in place)."""
        cfg = self.cfg
        shape = (cfg.n_head_kv, cfg.n_ctx, cfg.head_dim)
        caches = list(caches)
        if len(caches) != len(self.layers):
            raise KernelShapeError(f"{len(caches)} caches for {len(self.layers)} layers")
        checked = []
        for i, (k, v) in enumerate(caches):
            checked.append((_array(k, shape, f"k_cache[{i}]", True), _array(v, shape, f"v_cache[{i}]", True)))
        ffi = self._ffi
        ptrs = []
        for i, (k, v) in enumerate(checked):
            pk = ffi.from_buffer("float[]", k, require_writable=True)
            pv = ffi.from_buffer("float[]", v, require_writable=True)
            self._c[i].k_cache, self._c[i].v_cache = pk, pv
            ptrs.append((pk, pv))
        self._bound = checked
        self._bound_ptrs = ptrs

    def step(self, x: np.ndarray, pos: int, threads: int | None = None) -> np.ndarray:
        """x float32 [n_embd] through every layer at position pos (the caches get pos's keys/values)."""
        if self._bound is None:
            raise KernelShapeError("bind_cache() first")
        _vec(x, self.cfg.n_embd, "x", writable=True)
        if isinstance(pos, bool) or not isinstance(pos, (int, np.integer)) or not 0 <= pos < self.cfg.n_ctx:
            raise KernelShapeError(f"pos must be an int in [0, {self.cfg.n_ctx}), got {pos!r}")
        if not self.layers:
            return x
        rc = self.lib.awq_decode_layers(self.cfg._c, self._c, len(self.layers), int(pos),
                                        self._ffi.from_buffer("float[]", x), ops._threads(threads))  # noqa: SLF001
        ops._check_rc(rc, f"decode_layers pos {pos}")  # noqa: SLF001
        return x
