"""config.json -> GGUF hyperparameters, including RoPE settings in both transformers 4.x and 5.x spellings."""

from __future__ import annotations

import pytest
import torch

from awq_gguf.convert.hparams import model_dims, rope_freqs_tensor, rope_params
from awq_gguf.errors import BadWeightError

LLAMA31 = {
    "architectures": ["LlamaForCausalLM"],
    "hidden_size": 512,
    "intermediate_size": 1024,
    "num_hidden_layers": 2,
    "num_attention_heads": 8,
    "num_key_value_heads": 2,
    "vocab_size": 1000,
    "max_position_embeddings": 131072,
    "rope_theta": 500000.0,
    "rope_scaling": {
        "rope_type": "llama3",
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192,
    },
}


def test_rope_params_both_spellings():
    assert rope_params({"rope_theta": 5.0, "rope_scaling": {"type": "linear", "factor": 2.0}}) == {
        "rope_theta": 5.0,
        "rope_type": "linear",
        "factor": 2.0,
    }
    assert rope_params({"rope_parameters": {"rope_theta": 7.0, "rope_type": "default"}})["rope_theta"] == 7.0


def test_llama3_rope_freqs_match_transformers():
    """rope_freqs.weight divides llama.cpp's base frequencies into transformers' scaled inverse frequencies."""
    from transformers import LlamaConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    divisor = rope_freqs_tensor(LLAMA31)
    assert divisor is not None and divisor.shape == (32,)
    cfg = LlamaConfig(**{k: v for k, v in LLAMA31.items() if k != "architectures"})
    scaled, _ = ROPE_INIT_FUNCTIONS["llama3"](cfg, torch.device("cpu"))
    base = 500000.0 ** -(torch.arange(0, 64, 2, dtype=torch.float64) / 64)
    torch.testing.assert_close((base / divisor.double()).float(), scaled.float(), rtol=1e-5, atol=0)
    assert divisor[0] == 1.0 and divisor[-1] == pytest.approx(8.0)


def test_no_rope_freqs_without_llama3_scaling():
    assert rope_freqs_tensor({**LLAMA31, "rope_scaling": None}) is None


def test_missing_key_is_clear():
    with pytest.raises(BadWeightError, match="hidden_size"):
        model_dims({"num_attention_heads": 4})


def test_head_dim_default_and_explicit():
    assert model_dims(LLAMA31).head_dim == 64
    assert model_dims({**LLAMA31, "head_dim": 128}).head_dim == 128
