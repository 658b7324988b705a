"""Tiny random-weight Hugging Face models of each supported architecture, built inside the tests."""

from __future__ import annotations

import json
from pathlib import Path

import torch

# Enough distinct words for a byte-level BPE of a few hundred tokens.
CORPUS = (
    "The quick brown fox jumps over the lazy dog. In 1997, 42 scientists met at the old harbour to discuss "
    "quantization, activation statistics and the weather. Numbers like 3.14159 and 2718 appear often; so do "
    "names such as Alice, Bob and Carol. Hello world! How are you today? I'm fine, thanks. Don't worry. "
    "def f(x): return x * 2  # code too. Über café naïve résumé. Emoji aside, plain ASCII dominates. "
) * 4

ARCH_CONFIGS: dict[str, dict] = {
    "LlamaForCausalLM": {"model_type": "llama", "tie_word_embeddings": True},
    "MistralForCausalLM": {"model_type": "mistral", "tie_word_embeddings": False, "sliding_window": None},
    "Qwen2ForCausalLM": {"model_type": "qwen2", "tie_word_embeddings": False},
    "Qwen3ForCausalLM": {"model_type": "qwen3", "tie_word_embeddings": True, "head_dim": 96},
}


def write_tokenizer(folder: Path) -> int:
    """A byte-level BPE tokenizer (SmolLM-style pre-tokenizer) with BOS/EOS specials; returns its vocab size."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=384,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([CORPUS], trainer=trainer)
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "GPT2Tokenizer",
                "bos_token": "<|im_start|>",
                "eos_token": "<|im_end|>",
                "unk_token": "<|endoftext|>",
                "add_bos_token": False,
                "model_max_length": 256,
            }
        )
    )
    return tok.get_vocab_size()


def make_tiny_model(folder: Path, arch: str, seed: int = 0, dtype: torch.dtype = torch.float32) -> Path:
    """Save a random 2-layer model of `arch` (hidden 256, GQA 4:2 heads) with its tokenizer into `folder`."""
    from transformers import AutoConfig, AutoModelForCausalLM

    folder.mkdir(parents=True, exist_ok=True)
    n_vocab = write_tokenizer(folder)
    extra = dict(ARCH_CONFIGS[arch])
    model_type = extra.pop("model_type")
    config = AutoConfig.for_model(
        model_type,
        architectures=[arch],
        vocab_size=n_vocab,
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        rms_norm_eps=1e-6,
        bos_token_id=1,
        eos_token_id=2,
        **extra,
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, torch_dtype=torch.float32)
    with torch.no_grad():  # random init has tiny weights; widen them so quantization error is visible
        for name, p in model.named_parameters():
            if p.ndim == 2:
                p.normal_(0, 0.08)
            elif "norm" in name:
                p.uniform_(0.8, 1.2)
            else:
                p.normal_(0, 0.02)
    model.to(dtype).save_pretrained(folder, safe_serialization=True)
    return folder
