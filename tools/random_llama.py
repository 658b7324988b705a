"""A random-weight Llama of a real shape as a Hugging Face folder, for speed measurements where a real model cannot
be carried (the GPU machine has no network): config.json, model.safetensors (float16, N(0, 0.02) matrices, unit
norms) and a byte-level BPE tokenizer with a synthetic vocabulary of exactly the wanted size (the 256 byte
symbols, three specials, then two-symbol merges), so that `awq-gguf convert` takes it like any model.

  python tools/random_llama.py OUT_DIR [--shape tinyllama-1.1b]
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch


@dataclass(frozen=True)
class LlamaShape:
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    vocab_size: int
    max_position_embeddings: int = 2048
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0


SHAPES = {
    # TinyLlama-1.1B (Llama 2 architecture, grouped-query attention 32:4)
    "tinyllama-1.1b": LlamaShape(2048, 5632, 22, 32, 4, 32000),
    # Llama-2-7B's matrices (hidden 4096, FFN 11008, 32 heads without grouping) in 4 layers: a decode step over
    # 7B-shaped GEMVs at a seventh of the conversion time
    "llama2-7b-4l": LlamaShape(4096, 11008, 4, 32, 32, 32000),
    # a small one for tests of this script
    "toy": LlamaShape(256, 512, 2, 4, 2, 1024, max_position_embeddings=256),
}

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]  # ids 0 (unk), 1 (bos), 2 (eos)


def write_tokenizer(folder: Path, n_vocab: int) -> None:
    """tokenizer.json + tokenizer_config.json: byte-level BPE (the tests' tiny models' pre-tokenizer) of n_vocab
    tokens: specials, the 256 byte symbols, then merges of symbol pairs in a fixed order."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    n_merges = n_vocab - len(SPECIALS) - len(alphabet)
    if not 0 <= n_merges <= len(alphabet) ** 2:
        raise ValueError(f"vocab size {n_vocab} out of range {len(SPECIALS) + len(alphabet)}..")
    vocab = {t: i for i, t in enumerate(SPECIALS + alphabet)}
    merges = []
    for k in range(n_merges):
        a, b = alphabet[k // len(alphabet)], alphabet[k % len(alphabet)]
        merges.append((a, b))
        vocab[a + b] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]
    )
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(SPECIALS)
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "GPT2Tokenizer", "bos_token": SPECIALS[1], "eos_token": SPECIALS[2],
        "unk_token": SPECIALS[0], "add_bos_token": True, "model_max_length": 2048,
    }))


def write_random_llama(folder: Path, shape: LlamaShape, seed: int = 0) -> Path:
    """The model folder (created); weights float16, drawn on the GPU when there is one (faster), else the CPU."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    write_tokenizer(folder, shape.vocab_size)
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", **asdict(shape),
              "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "float16",
              "hidden_act": "silu"}
    (folder / "config.json").write_text(json.dumps(config, indent=1))
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    g = torch.Generator(device=dev).manual_seed(seed)
    d, f = shape.hidden_size, shape.intermediate_size
    hd = d // shape.num_attention_heads
    kv = shape.num_key_value_heads * hd

    def mat(rows: int, cols: int) -> torch.Tensor:
        return (torch.randn(rows, cols, generator=g, device=dev) * 0.02).half().cpu()

    tensors = {"model.embed_tokens.weight": mat(shape.vocab_size, d), "lm_head.weight": mat(shape.vocab_size, d),
               "model.norm.weight": torch.ones(d, dtype=torch.float16)}
    for i in range(shape.num_hidden_layers):
        p = f"model.layers.{i}."
        tensors |= {
            p + "input_layernorm.weight": torch.ones(d, dtype=torch.float16),
            p + "post_attention_layernorm.weight": torch.ones(d, dtype=torch.float16),
            p + "self_attn.q_proj.weight": mat(d, d), p + "self_attn.k_proj.weight": mat(kv, d),
            p + "self_attn.v_proj.weight": mat(kv, d), p + "self_attn.o_proj.weight": mat(d, d),
            p + "mlp.gate_proj.weight": mat(f, d), p + "mlp.up_proj.weight": mat(f, d),
            p + "mlp.down_proj.weight": mat(d, f),
        }
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    return folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--shape", choices=sorted(SHAPES), default="tinyllama-1.1b")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print(write_random_llama(args.out, SHAPES[args.shape], args.seed))


if __name__ == "__main__":
    main()
