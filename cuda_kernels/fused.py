"""Torch-facing API of the fused elementwise kernels (fused.cu) that the GPU runner's decode step uses.

  act = add_rmsnorm_q8(x, r, w, eps)   # x += r; RMSNorm(x) * w rounded to int8 per 32 values (a Q8Act)
  y = gemv_q8(act, wq)                 # the GEMV on those int8 values: no rounding kernel of its own
  act = silu_mul_q8(gate, up)          # silu(gate) * up, rounded the same way
  q16 = rope_kv(q, k, v, ...)          # bias, per-head RMSNorm, RoPE; k, v written into the KV cache
  act = attn_decode_q8(q16, kc, vc, pos, t, scale)  # one query's attention, rounded for the wo GEMV

The rounding is the GEMV's own (ops.round_activations_q8 gives the values it keeps), so gemv_q8 on a Q8Act
equals ops.gemv on the float32 values it was rounded from. Everything runs on the current CUDA stream.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ._lib import load
from .ops import (
    FLOAT_MODES,
    Q8_MODES,
    QuantMatrix,
    _check,
    _check_tensor,
    _pointers,
    _stream,
    resolve_mode,
    workspace_bytes,
)

ACT_PRE = 3  # common.cuh: x already rounded into the workspace


@dataclass(frozen=True)
class Q8Act:
    """Activations rounded to int8 per 32 values, in the GEMV's workspace layout: ws uint8 [batch * cols] int8
    values, then float32 scales [batch, cols / 32]."""

    ws: torch.Tensor  # uint8 [workspace_bytes(batch, cols)], 16-byte aligned
    batch: int
    cols: int

    @classmethod
    def empty(cls, batch: int, cols: int, device: torch.device) -> Q8Act:
        if batch < 1 or cols < 32 or cols % 32:
            raise ValueError(f"Q8Act needs batch >= 1 and cols a positive multiple of 32, got [{batch}, {cols}]")
        return cls(torch.empty(workspace_bytes(batch, cols), dtype=torch.uint8, device=device), batch, cols)

    @property
    def xq(self) -> torch.Tensor:
        """int8 [batch, cols] (a view)."""
        return self.ws[: self.batch * self.cols].view(torch.int8).view(self.batch, self.cols)

    @property
    def xd(self) -> torch.Tensor:
        """float32 [batch, cols / 32] (a view): each 32-block's scale."""
        n = self.batch * self.cols
        return self.ws[n : n + self.batch * (self.cols // 32) * 4].view(torch.float32).view(self.batch, -1)

    def values(self) -> torch.Tensor:
        """float32 [batch, cols]: the rounded activations, xq * xd."""
        return (self.xq.float().view(self.batch, -1, 32) * self.xd[:, :, None]).view(self.batch, self.cols)


def _f32(t: torch.Tensor, name: str, device: torch.device) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch tensor, got {type(t).__name__}")
    if t.dtype != torch.float32:
        raise TypeError(f"{name} must be float32, got {t.dtype}")
    if t.device != device:
        raise ValueError(f"{name} is on {t.device}, expected {device}")


def _rows(t: torch.Tensor, name: str, batch: int, cols: int) -> int:
    """Checks a [batch, cols] float32 operand whose rows may be strided (a column slice); its row stride."""
    if t.dim() != 2 or tuple(t.shape) != (batch, cols) or t.stride(1) != 1:
        raise ValueError(f"{name} must be [{batch}, {cols}] with contiguous rows, got {tuple(t.shape)} "
                         f"strides {t.stride()}")
    if t.data_ptr() % 16 or (batch > 1 and t.stride(0) % 4):
        raise ValueError(f"{name}'s rows must be 16-byte aligned")
    return t.stride(0)


def _act_out(act: Q8Act | None, batch: int, cols: int, device: torch.device) -> Q8Act:
    if act is None:
        return Q8Act.empty(batch, cols, device)
    if (act.batch, act.cols) != (batch, cols) or act.ws.device != device or act.ws.data_ptr() % 16:
        raise ValueError(f"act is [{act.batch}, {act.cols}] on {act.ws.device}, expected [{batch}, {cols}] on {device}")
    return act


def _float_out(out: torch.Tensor | None, batch: int, cols: int, device: torch.device):
    ffi, _ = load()
    if out is None:
        return ffi.NULL
    _f32(out, "out", device)
    if tuple(out.shape) != (batch, cols) or not out.is_contiguous() or out.data_ptr() % 16:
        raise ValueError(f"out must be contiguous 16-byte aligned float32 [{batch}, {cols}]")
    return ffi.cast("float*", out.data_ptr())


def add_rmsnorm_q8(x: torch.Tensor, residual: torch.Tensor | None, weight: torch.Tensor, eps: float,
                   act: Q8Act | None = None, out: torch.Tensor | None = None) -> Q8Act:
    """x float32 [batch, cols] (contiguous) += residual (same shape, or None: x unchanged); then RMSNorm(x) *
    weight (float32 [cols]) rounded to int8 per 32 values into act (a fresh Q8Act if None), and written as float32
    into out when given. Returns act."""
    ffi, lib = load()
    dev = x.device
    _f32(x, "x", dev)
    if x.dim() != 2 or not x.is_contiguous() or x.data_ptr() % 16:
        raise ValueError(f"x must be a contiguous, 16-byte aligned float32 [batch, cols], got {tuple(x.shape)}")
    batch, cols = x.shape
    r_ptr = ffi.NULL
    if residual is not None:
        _f32(residual, "residual", dev)
        if residual.shape != x.shape or not residual.is_contiguous() or residual.data_ptr() % 16:
            raise ValueError(f"residual must be contiguous float32 {tuple(x.shape)}")
        r_ptr = ffi.cast("const float*", residual.data_ptr())
    _f32(weight, "weight", dev)
    if tuple(weight.shape) != (cols,) or not weight.is_contiguous() or weight.data_ptr() % 16:
        raise ValueError(f"weight must be contiguous float32 [{cols}]")
    act = _act_out(act, batch, cols, dev)
    o = _float_out(out, batch, cols, dev)
    with torch.cuda.device(dev):
        code = lib.awq_cuda_add_rmsnorm_q8(ffi.cast("float*", x.data_ptr()), r_ptr,
                                           ffi.cast("const float*", weight.data_ptr()), float(eps), batch, cols,
                                           ffi.cast("void*", act.ws.data_ptr()), act.ws.numel(), o, _stream(ffi, dev))
    _check(code, f"add_rmsnorm_q8 [{batch}, {cols}]")
    return act


def silu_mul_q8(gate: torch.Tensor, up: torch.Tensor, act: Q8Act | None = None,
                out: torch.Tensor | None = None) -> Q8Act:
    """gate, up float32 [batch, cols] (rows may be strided, e.g. column slices of one product) -> silu(gate) * up
    rounded to int8 per 32 values (and as float32 into out when given)."""
    ffi, lib = load()
    dev = gate.device
    _f32(gate, "gate", dev)
    _f32(up, "up", dev)
    if gate.dim() != 2:
        raise ValueError(f"gate must be [batch, cols], got {tuple(gate.shape)}")
    batch, cols = gate.shape
    gs, us = _rows(gate, "gate", batch, cols), _rows(up, "up", batch, cols)
    act = _act_out(act, batch, cols, dev)
    o = _float_out(out, batch, cols, dev)
    with torch.cuda.device(dev):
        code = lib.awq_cuda_silu_mul_q8(ffi.cast("const float*", gate.data_ptr()), gs,
                                        ffi.cast("const float*", up.data_ptr()), us, batch, cols,
                                        ffi.cast("void*", act.ws.data_ptr()), act.ws.numel(), o, _stream(ffi, dev))
    _check(code, f"silu_mul_q8 [{batch}, {cols}]")
    return act


def rope_kv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
            pos: torch.Tensor, n_rot: int, neox: bool, k_cache: torch.Tensor, v_cache: torch.Tensor,
            bq: torch.Tensor | None = None, bk: torch.Tensor | None = None, bv: torch.Tensor | None = None,
            q_norm: torch.Tensor | None = None, k_norm: torch.Tensor | None = None, eps: float = 0.0,
            q_out: torch.Tensor | None = None) -> torch.Tensor:
    """q float32 [n, n_head * d], k, v [n, n_head_kv * d] (rows may be strided) -> q_out float16 [n, n_head, d];
    k and v written as float16 into k_cache, v_cache [n_head_kv, n_ctx, d] at positions pos (int64 [n] on the
    device, each < n_ctx and < cos.shape[0]; not read on the host).

    Per head: + bias (bq/bk/bv [heads * d]), RMSNorm over d with q_norm / k_norm ([d]) and eps, then RoPE on the
    first n_rot values of q and k heads with the tables cos, sin (float32 [max_pos, n_rot / 2]): neox False pairs
    (2i, 2i+1) (ggml's NORMAL), True pairs (i, i + n_rot / 2)."""
    ffi, lib = load()
    dev = q.device
    n_kv, n_ctx, d = k_cache.shape
    if q.dim() != 2 or q.shape[1] % d:
        raise ValueError(f"q must be [n, n_head * {d}], got {tuple(q.shape)}")
    n, n_head = q.shape[0], q.shape[1] // d
    for t, name, cols in ((q, "q", n_head * d), (k, "k", n_kv * d), (v, "v", n_kv * d)):
        _f32(t, name, dev)
        if t.dim() != 2 or tuple(t.shape) != (n, cols) or t.stride(1) != 1:
            raise ValueError(f"{name} must be [{n}, {cols}] with contiguous rows, got {tuple(t.shape)}")
    for t, name in ((k_cache, "k_cache"), (v_cache, "v_cache")):
        if t.dtype != torch.float16 or t.device != dev or not t.is_contiguous() or tuple(t.shape) != (n_kv, n_ctx, d):
            raise ValueError(f"{name} must be contiguous float16 [{n_kv}, {n_ctx}, {d}] on {dev}")
    half = n_rot // 2
    if n_rot % 2 or not 0 <= n_rot <= d:
        raise ValueError(f"n_rot must be even and in 0..{d}, got {n_rot}")
    for t, name in ((cos, "cos"), (sin, "sin")):
        _f32(t, name, dev)
        if t.dim() != 2 or t.shape[1] != half or not t.is_contiguous():
            raise ValueError(f"{name} must be contiguous float32 [max_pos, {half}]")
    if pos.dtype != torch.int64 or pos.device != dev or tuple(pos.shape) != (n,) or not pos.is_contiguous():
        raise ValueError(f"pos must be contiguous int64 [{n}] on {dev}")

    def opt(t: torch.Tensor | None, name: str, size: int):
        if t is None:
            return ffi.NULL
        _f32(t, name, dev)
        if tuple(t.shape) != (size,) or not t.is_contiguous():
            raise ValueError(f"{name} must be contiguous float32 [{size}]")
        return ffi.cast("const float*", t.data_ptr())

    if q_out is None:
        q_out = torch.empty(n, n_head, d, dtype=torch.float16, device=dev)
    elif q_out.dtype != torch.float16 or tuple(q_out.shape) != (n, n_head, d) or not q_out.is_contiguous():
        raise ValueError(f"q_out must be contiguous float16 [{n}, {n_head}, {d}]")
    f = lambda t: ffi.cast("const float*", t.data_ptr())
    with torch.cuda.device(dev):
        code = lib.awq_cuda_rope_kv(
            f(q), q.stride(0), f(k), k.stride(0), f(v), v.stride(0), opt(bq, "bq", n_head * d),
            opt(bk, "bk", n_kv * d), opt(bv, "bv", n_kv * d), opt(q_norm, "q_norm", d), opt(k_norm, "k_norm", d),
            float(eps), f(cos), f(sin), cos.shape[0], ffi.cast("const long long*", pos.data_ptr()), n, n_head, n_kv, d,
            n_rot, int(neox), ffi.cast("void*", q_out.data_ptr()), ffi.cast("void*", k_cache.data_ptr()),
            ffi.cast("void*", v_cache.data_ptr()), n_ctx, _stream(ffi, dev))
    _check(code, f"rope_kv n {n} heads {n_head}/{n_kv} d {d}")
    return q_out


def gemv_q8(act: Q8Act, w: QuantMatrix, out: torch.Tensor | None = None, nr: int = 0, mode: int = 0
            ) -> torch.Tensor:
    """The int8-activation GEMV on already rounded activations: float32 [act.batch, w.rows] = x_hat @ W^T, equal
    to ops.gemv(x, w) for the float32 x that act was rounded from. mode: 0 (default) or an int8 mode (4-19)."""
    ffi, lib = load()
    if act.cols != w.cols:
        raise ValueError(f"activations have {act.cols} columns, the weights {w.cols}")
    if not 1 <= act.batch <= 16:
        raise ValueError(f"gemv_q8 takes 1..16 activation rows, got {act.batch}")
    if mode in FLOAT_MODES or mode not in (0, *Q8_MODES):
        raise ValueError(f"gemv_q8 needs mode 0 or an int8 mode {Q8_MODES}, got {mode}")
    if nr not in (0, 1, 2, 4):
        raise ValueError(f"nr must be 0, 1, 2 or 4, got {nr}")
    _check_tensor(act.ws, "act.ws", w)
    if out is None:
        out = torch.empty(act.batch, w.rows, dtype=torch.float32, device=w.device)
    else:
        _check_tensor(out, "out", w)
        if out.dtype != torch.float32 or tuple(out.shape) != (act.batch, w.rows):
            raise ValueError(f"out must be float32 [{act.batch}, {w.rows}], got {out.dtype} {tuple(out.shape)}")
    p0, p1, p2 = _pointers(ffi, w)
    nr, mode = resolve_mode(w, act.batch, nr, mode)
    ws = ffi.cast("void*", act.ws.data_ptr())
    with torch.cuda.device(w.device):
        code = lib.awq_cuda_gemv(int(w.qtype), p0, p1, p2, ws, ACT_PRE, ffi.cast("float*", out.data_ptr()), w.rows,
                                 w.cols, act.batch, nr, mode, ws, act.ws.numel(), _stream(ffi, w.device))
    _check(code, f"gemv_q8 {w.qtype.name} [{w.rows}, {w.cols}] batch {act.batch}")
    return out


def attention_smem_bytes(head_dim: int, t: int) -> int:
    """Shared memory attn_decode_q8 takes for t keys (the kernel refuses more than 48 KiB)."""
    return (head_dim * 9 + t) * 4


def attn_decode_q8(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, pos: torch.Tensor, t: int,
                   scale: float, act: Q8Act | None = None) -> Q8Act:
    """One query's attention: q float16 [n_head, d] (or [1, n_head, d]) over keys 0..min(pos, t - 1) of the float16
    caches [n_head_kv, n_ctx, d] (head h reads kv head h // (n_head / n_head_kv); pos: int64 [1] on the device,
    not read on the host), softmax(scale q.k) in float32 -> the output [1, n_head * d] rounded to int8 per 32 values
    (a Q8Act for the output projection's GEMV). d must be a multiple of 32, at most 256."""
    ffi, lib = load()
    dev = q.device
    n_kv, n_ctx, d = k_cache.shape
    if q.dtype != torch.float16 or not q.is_contiguous() or q.shape[-1] != d or q.numel() % d:
        raise ValueError(f"q must be contiguous float16 [n_head, {d}], got {q.dtype} {tuple(q.shape)}")
    n_head = q.numel() // d
    for c, name in ((k_cache, "k_cache"), (v_cache, "v_cache")):
        if c.dtype != torch.float16 or c.device != dev or not c.is_contiguous() or tuple(c.shape) != (n_kv, n_ctx, d):
            raise ValueError(f"{name} must be contiguous float16 [{n_kv}, {n_ctx}, {d}] on {dev}")
    if d % 32 or d > 256 or n_head % n_kv:
        raise ValueError(f"head_dim {d} must be a multiple of 32 up to 256, n_head {n_head} a multiple of {n_kv}")
    if not 1 <= t <= n_ctx or attention_smem_bytes(d, t) > 48 * 1024:
        raise ValueError(f"t = {t} keys: must be in 1..{n_ctx} and fit 48 KiB of shared memory")
    if pos.dtype != torch.int64 or pos.device != dev or pos.numel() != 1:
        raise ValueError(f"pos must be one int64 on {dev}")
    act = _act_out(act, 1, n_head * d, dev)
    with torch.cuda.device(dev):
        code = lib.awq_cuda_attn_decode_q8(
            ffi.cast("const void*", q.data_ptr()), ffi.cast("const void*", k_cache.data_ptr()),
            ffi.cast("const void*", v_cache.data_ptr()), ffi.cast("const long long*", pos.data_ptr()), n_head, n_kv,
            n_ctx, d, t, float(scale), ffi.cast("void*", act.ws.data_ptr()), act.ws.numel(), _stream(ffi, dev))
    _check(code, f"attn_decode_q8 heads {n_head}/{n_kv} d {d} t {t}")
    return act
