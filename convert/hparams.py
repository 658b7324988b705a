"""Hugging Face config.json -> GGUF architecture keys (the hyperparameters llama.cpp reads)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import gguf
import torch

from awq_gguf.errors import BadWeightError

from .arch import ArchSpec


@dataclass(frozen=True)
class ModelDims:
    n_layer: int
    n_embd: int
    n_ff: int
    n_head: int
    n_head_kv: int
    head_dim: int
    n_vocab: int
    n_ctx: int


def model_dims(config: dict) -> ModelDims:
    try:
        n_head = int(config["num_attention_heads"])
        n_embd = int(config["hidden_size"])
        return ModelDims(
            n_layer=int(config["num_hidden_layers"]),
            n_embd=n_embd,
            n_ff=int(config["intermediate_size"]),
            n_head=n_head,
            n_head_kv=int(config.get("num_key_value_heads") or n_head),
            head_dim=int(config.get("head_dim") or n_embd // n_head),
            n_vocab=int(config["vocab_size"]),
            n_ctx=int(config.get("max_position_embeddings", 4096)),
        )
    except KeyError as e:
        raise BadWeightError(f"config.json lacks {e.args[0]!r}, which every supported architecture needs") from None


def rope_params(config: dict) -> dict:
    """RoPE settings from either transformers 4.x keys (rope_theta, rope_scaling) or 5.x rope_parameters."""
    params = dict(config.get("rope_parameters") or {})
    if "rope_theta" in config:
        params.setdefault("rope_theta", config["rope_theta"])
    for k, v in (config.get("rope_scaling") or {}).items():
        params.setdefault("rope_type" if k == "type" else k, v)
    return params


def add_hparams(writer: gguf.GGUFWriter, config: dict, arch: ArchSpec) -> None:
    d = model_dims(config)
    writer.add_block_count(d.n_layer)
    writer.add_context_length(d.n_ctx)
    writer.add_embedding_length(d.n_embd)
    writer.add_feed_forward_length(d.n_ff)
    writer.add_head_count(d.n_head)
    writer.add_head_count_kv(d.n_head_kv)
    writer.add_layer_norm_rms_eps(float(config.get("rms_norm_eps", 1e-6)))
    writer.add_vocab_size(d.n_vocab)
    writer.add_rope_dimension_count(d.head_dim)
    if "head_dim" in config and d.head_dim != d.n_embd // d.n_head:
        writer.add_key_length(d.head_dim)
        writer.add_value_length(d.head_dim)
    rope = rope_params(config)
    if (theta := rope.get("rope_theta")) is not None:
        writer.add_rope_freq_base(float(theta))
    rope_type, factor = rope.get("rope_type"), rope.get("factor")
    if rope_type == "linear" and factor is not None:
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(float(factor))
    elif rope_type == "yarn" and factor is not None:
        writer.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        writer.add_rope_scaling_factor(float(factor))
        writer.add_rope_scaling_orig_ctx_len(int(rope["original_max_position_embeddings"]))


def rope_freqs_tensor(config: dict) -> torch.Tensor | None:
    """Llama-3.1-style ("llama3") RoPE scaling: per-frequency divisors, stored as rope_freqs.weight [head_dim/2]."""
    rope = rope_params(config)
    if str(rope.get("rope_type", "")).lower() != "llama3":
        return None
    d = model_dims(config)
    base = float(rope.get("rope_theta", 10000.0))
    factor = float(rope.get("factor", 8.0))
    low, high = float(rope.get("low_freq_factor", 1.0)), float(rope.get("high_freq_factor", 4.0))
    old_ctx = float(rope.get("original_max_position_embeddings", 8192))
    freqs = base ** -(torch.arange(0, d.head_dim, 2, dtype=torch.float64) / d.head_dim)  # [head_dim/2]
    wavelen = 2 * math.pi / freqs
    smooth = ((old_ctx / wavelen - low) / (high - low)).clamp(0, 1)
    # 1 for short wavelengths (smooth = 1), `factor` for long ones (smooth = 0), interpolated between.
    divisor = 1.0 / ((1 - smooth) / factor + smooth)
    return divisor.float()
