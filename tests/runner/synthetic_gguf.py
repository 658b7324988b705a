"""Small synthetic model GGUFs written with gguf.GGUFWriter: for loader error cases and header fuzzing, where a
converted tiny model (a few hundred vocabulary entries) would make each parse slower than needed."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np


def write_model_gguf(path: Path, arch: str = "llama", n_embd: int = 32, n_ff: int = 64, n_layer: int = 1,
                     n_head: int = 2, n_head_kv: int = 1, n_vocab: int = 16, tensor_type: str = "F32",
                     drop: tuple[str, ...] = (), extra_kv: dict | None = None) -> Path:
    """A random-weight model of `arch` with a minimal vocabulary; `tensor_type` for the matrices (F32 or a
    gguf GGMLQuantizationType name the gguf package can quantize, or a raw I32/I8 type for 'unsupported')."""
    rng = np.random.default_rng(0)
    w = gguf.GGUFWriter(path, arch)
    w.add_block_count(n_layer)
    w.add_context_length(64)
    w.add_embedding_length(n_embd)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head_kv)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_rope_freq_base(10000.0)
    w.add_tokenizer_model("gpt2")
    w.add_token_list([f"t{i}" for i in range(n_vocab)])
    for k, v in (extra_kv or {}).items():
        w.add_key_value(k, v[0], v[1])
    head_dim = n_embd // n_head
    shapes = {"token_embd.weight": (n_vocab, n_embd), "output_norm.weight": (n_embd,)}
    for i in range(n_layer):
        b = f"blk.{i}."
        shapes |= {
            b + "attn_norm.weight": (n_embd,), b + "ffn_norm.weight": (n_embd,),
            b + "attn_q.weight": (n_head * head_dim, n_embd), b + "attn_k.weight": (n_head_kv * head_dim, n_embd),
            b + "attn_v.weight": (n_head_kv * head_dim, n_embd), b + "attn_output.weight": (n_embd, n_head * head_dim),
            b + "ffn_gate.weight": (n_ff, n_embd), b + "ffn_up.weight": (n_ff, n_embd),
            b + "ffn_down.weight": (n_embd, n_ff),
        }
        if arch == "qwen2":
            shapes |= {b + "attn_q.bias": (n_head * head_dim,), b + "attn_k.bias": (n_head_kv * head_dim,),
                       b + "attn_v.bias": (n_head_kv * head_dim,)}
        if arch == "qwen3":
            shapes |= {b + "attn_q_norm.weight": (head_dim,), b + "attn_k_norm.weight": (head_dim,)}
    for name, shape in shapes.items():
        if name in drop:
            continue
        data = rng.normal(0, 0.1, shape).astype(np.float32)
        if len(shape) == 2 and tensor_type in ("I32", "I8"):
            w.add_tensor(name, data.view(np.int32) if tensor_type == "I32" else data.astype(np.int8))
        elif len(shape) == 2 and tensor_type != "F32":
            qt = gguf.GGMLQuantizationType[tensor_type]
            w.add_tensor(name, gguf.quants.quantize(data, qt), raw_dtype=qt)
        else:
            w.add_tensor(name, data)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
