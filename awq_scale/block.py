"""A functional float forward of one decoder block on GGUF-named tensors, as llama.cpp computes it.

Parameters are a dict of the block's tensors under their GGUF names less "blk.N." ("attn_q.weight",
"attn_q.bias", "attn_q_norm.weight", ...), in llama.cpp's layout: for the "llama" architecture the q/k rows
are permuted so RoPE rotates interleaved pairs (2i, 2i+1); Qwen2/Qwen3 rotate NEOX halves (i, i + d/2).
Everything works in the dtype of its inputs (float64 in the equivalence tests, float32 in the search).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Callable

import torch

from awq_gguf.errors import UnsupportedArchitectureError

from .groups import ATTENTION, FFN

logger = logging.getLogger(__name__)

Params = dict[str, torch.Tensor]
Capture = Callable[[str, torch.Tensor], None]  # (input name, tensor) for each linear input, see INPUT_OF

# RoPE pairing per GGUF architecture: True = NEOX halves, False = interleaved pairs (llama.cpp's "norm" mode).
ROPE_NEOX: dict[str, bool] = {"llama": False, "qwen2": True, "qwen3": True}

# Which activation feeds each linear (and each loss module): the names Capture reports.
INPUT_OF: dict[str, str] = {
    "attn_q": "attn_in", "attn_k": "attn_in", "attn_v": "attn_in", ATTENTION: "attn_in",
    "attn_output": "attn_output",
    "ffn_gate": "ffn_in", "ffn_up": "ffn_in", FFN: "ffn_in",
    "ffn_down": "ffn_down",
}
LINEARS: tuple[str, ...] = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")


@dataclass(frozen=True)
class BlockConfig:
    n_head: int
    n_head_kv: int
    head_dim: int
    eps: float  # RMSNorm epsilon
    rope_base: float
    rope_neox: bool
    n_rot: int  # leading dims of each head that RoPE rotates (head_dim for every supported model)
    rope_scale: float = 1.0  # linear RoPE scaling: positions times this (1 / factor)
    rope_freq_factors: torch.Tensor | None = None  # [n_rot / 2] divisors of the frequencies (rope_freqs.weight)
    n_ctx: int = 4096  # the model's training context

    @property
    def n_rep(self) -> int:
        return self.n_head // self.n_head_kv


def rms_norm(x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
    """x [..., d] * w [d] / rms(x)."""
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w.to(x.dtype)


def linear(x: torch.Tensor, p: Params, stem: str) -> torch.Tensor:
    """x [..., cols] -> [..., rows] with p[stem.weight] [rows, cols] and an optional p[stem.bias] [rows]."""
    y = x @ p[f"{stem}.weight"].to(x.dtype).T
    bias = p.get(f"{stem}.bias")
    return y if bias is None else y + bias.to(x.dtype)


_ROPE_CACHE: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}


def rope_table(cfg: BlockConfig, L: int, dtype: torch.dtype, device: torch.device
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """(cos, sin) [1, L, 1, n_rot/2] for positions 0..L-1, computed in float64, cached."""
    ff = cfg.rope_freq_factors
    key = (L, dtype, str(device), cfg.n_rot, cfg.rope_base, cfg.rope_scale, None if ff is None else tuple(ff.tolist()))
    if key not in _ROPE_CACHE:
        inv = cfg.rope_base ** -(torch.arange(0, cfg.n_rot, 2, dtype=torch.float64) / cfg.n_rot)  # [n_rot/2]
        if ff is not None:
            inv = inv / ff.to(torch.float64)
        theta = torch.arange(L, dtype=torch.float64)[:, None] * cfg.rope_scale * inv[None, :]  # [L, n_rot/2]
        if len(_ROPE_CACHE) > 16:
            _ROPE_CACHE.clear()
        cos, sin = (t.to(device, dtype)[None, :, None, :] for t in (theta.cos(), theta.sin()))
        _ROPE_CACHE[key] = (cos, sin)
    return _ROPE_CACHE[key]


def rope(x: torch.Tensor, cfg: BlockConfig, offset: int = 0) -> torch.Tensor:
    """x [n, L, heads, head_dim], positions offset..offset+L-1 -> rotated, same shape."""
    n_rot = cfg.n_rot
    cos, sin = rope_table(cfg, offset + x.shape[1], x.dtype, x.device)
    cos, sin = cos[:, offset:], sin[:, offset:]
    xr, rest = x[..., :n_rot], x[..., n_rot:]
    if cfg.rope_neox:
        a, b = xr[..., : n_rot // 2], xr[..., n_rot // 2 :]
        out = torch.cat([a * cos - b * sin, a * sin + b * cos], dim=-1)
    else:
        a, b = xr[..., 0::2], xr[..., 1::2]
        out = torch.stack([a * cos - b * sin, a * sin + b * cos], dim=-1).flatten(-2)
    return torch.cat([out, rest], dim=-1)


def qkv(p: Params, x: torch.Tensor, cfg: BlockConfig, offset: int = 0
        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Normed input x [n, L, C] at positions offset.. -> q [n, L, n_head, hd], k and v [n, L, n_head_kv, hd],
    q and k normed (Qwen3) and rotated."""
    n, L, _ = x.shape
    hd = cfg.head_dim
    q = linear(x, p, "attn_q").view(n, L, cfg.n_head, hd)
    k = linear(x, p, "attn_k").view(n, L, cfg.n_head_kv, hd)
    v = linear(x, p, "attn_v").view(n, L, cfg.n_head_kv, hd)
    if "attn_q_norm.weight" in p:  # Qwen3: RMSNorm over each head, before RoPE
        q = rms_norm(q, p["attn_q_norm.weight"], cfg.eps)
        k = rms_norm(k, p["attn_k_norm.weight"], cfg.eps)
    return rope(q, cfg, offset), rope(k, cfg, offset), v


def attention_heads(p: Params, x: torch.Tensor, cfg: BlockConfig) -> torch.Tensor:
    """Normed input x [n, L, C] -> the per-head attention output [n, L, n_head * head_dim] (o's input)."""
    n, L, _ = x.shape
    hd = cfg.head_dim
    q, k, v = qkv(p, x, cfg)
    # query head h reads kv head h // n_rep
    k = k.repeat_interleave(cfg.n_rep, dim=2)
    v = v.repeat_interleave(cfg.n_rep, dim=2)
    out = torch.nn.functional.scaled_dot_product_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True, scale=1.0 / math.sqrt(hd)
    )  # [n, n_head, L, hd]
    return out.transpose(1, 2).reshape(n, L, cfg.n_head * hd)


def attention(p: Params, x: torch.Tensor, cfg: BlockConfig, capture: Capture | None = None) -> torch.Tensor:
    """Normed input x [n, L, C] -> attention output after the o projection [n, L, C]."""
    heads = attention_heads(p, x, cfg)
    if capture is not None:
        capture("attn_output", heads)
    return linear(heads, p, "attn_output")


def ffn(p: Params, x: torch.Tensor, capture: Capture | None = None) -> torch.Tensor:
    """SwiGLU: normed input x [..., C] -> [..., C]."""
    hidden = torch.nn.functional.silu(linear(x, p, "ffn_gate")) * linear(x, p, "ffn_up")  # [..., n_ff]
    if capture is not None:
        capture("ffn_down", hidden)
    return linear(hidden, p, "ffn_down")


def block_forward(p: Params, h: torch.Tensor, cfg: BlockConfig, capture: Capture | None = None) -> torch.Tensor:
    """Residual stream h [n, L, C] in -> out [n, L, C]; `capture` sees every linear's input."""
    x = rms_norm(h, p["attn_norm.weight"], cfg.eps)
    if capture is not None:
        capture("attn_in", x)
    h = h + attention(p, x, cfg, capture)
    x = rms_norm(h, p["ffn_norm.weight"], cfg.eps)
    if capture is not None:
        capture("ffn_in", x)
    return h + ffn(p, x, capture)


def forward_in_chunks(p: Params, h: torch.Tensor, cfg: BlockConfig, chunk_seqs: int,
                      capture: Capture | None = None) -> None:
    """h [n, L, C] <- block_forward(h), chunk_seqs sequences at a time (bounds the activations' memory)."""
    for s0 in range(0, h.shape[0], chunk_seqs):
        h[s0:s0 + chunk_seqs] = block_forward(p, h[s0:s0 + chunk_seqs], cfg, capture)


def module_forward(p: Params, inspect: str, x: torch.Tensor, cfg: BlockConfig) -> torch.Tensor:
    """The output of a loss module (ATTENTION, FFN or a linear stem) on its input x."""
    if inspect == ATTENTION:
        return attention(p, x, cfg)
    if inspect == FFN:
        return ffn(p, x)
    return linear(x, p, inspect)


def embed(token_embd: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """token_embd [n_vocab, C], tokens int [n, L] -> [n, L, C]."""
    return token_embd[tokens]


def block_params(source, i: int) -> Params:
    """Block i's float32 tensors from a ModelSource, keyed without the "blk.i." prefix."""
    prefix = f"blk.{i}."
    return {t.name[len(prefix):]: t.load_checked() for t in source.tensors if t.name.startswith(prefix)}


def block_config(source) -> BlockConfig:
    """Hyperparameters for block_forward from an HfSource (config.json) or a GgufSource (GGUF keys)."""
    arch = source.arch.gguf_name
    if arch not in ROPE_NEOX:
        raise UnsupportedArchitectureError(f"no float block forward for architecture {arch!r}")
    shapes = {t.name: t.shape for t in source.tensors}
    head_dim = shapes["blk.0.attn_q.weight"][0] // source.n_head
    by_name = {t.name: t for t in source.tensors}
    freq_factors = by_name["rope_freqs.weight"].load_checked() if "rope_freqs.weight" in by_name else None

    if hasattr(source, "config"):
        from awq_gguf.convert.hparams import model_dims, rope_params

        conf, rp = source.config, rope_params(source.config)
        eps = float(conf.get("rms_norm_eps", 1e-6))
        base = float(rp.get("rope_theta", 10000.0))
        scaling, factor = rp.get("rope_type"), rp.get("factor")
        n_rot, n_ctx = head_dim, model_dims(conf).n_ctx
    else:
        from awq_gguf.convert.gguf_source import field_value

        def key(k: str, default=None):
            return field_value(source.reader, f"{arch}.{k}", default)

        eps = float(key("attention.layer_norm_rms_epsilon", 1e-6))
        base = float(key("rope.freq_base", 10000.0))
        scaling, factor = key("rope.scaling.type"), key("rope.scaling.factor")
        if scaling is None and key("rope.scale_linear") is not None:
            scaling, factor = "linear", key("rope.scale_linear")
        n_rot, n_ctx = int(key("rope.dimension_count", head_dim)), int(key("context_length", 4096))

    scale = 1.0
    if scaling == "linear" and factor:
        scale = 1.0 / float(factor)
    elif scaling not in (None, "none", "default", "linear", "llama3"):
        logger.warning("RoPE scaling %r is not modelled in the AWQ calibration forward; using plain RoPE", scaling)
    return BlockConfig(
        n_head=source.n_head, n_head_kv=source.n_head_kv, head_dim=head_dim, eps=eps, rope_base=base,
        rope_neox=ROPE_NEOX[arch], n_rot=n_rot, rope_scale=scale, rope_freq_factors=freq_factors, n_ctx=n_ctx,
    )
