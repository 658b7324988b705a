"""The functional block forward equals transformers' hidden states, block by block, for every architecture."""

from __future__ import annotations

import pytest
import torch

from awq_gguf.awq_scale.block import block_config, block_forward, block_params, embed, rms_norm
from awq_gguf.convert.arch import ARCHITECTURES
from awq_gguf.convert.source import open_source


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_block_forward_matches_transformers(tiny_model, arch):
    from transformers import AutoModelForCausalLM

    folder = tiny_model(arch)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float64, attn_implementation="eager").eval()
    tokens = torch.randint(0, model.config.vocab_size, (2, 40), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = model(tokens, output_hidden_states=True).hidden_states  # n_layer + 1 tensors [2, 40, C]

    source = open_source(folder)
    cfg = block_config(source)
    by_name = {t.name: t for t in source.tensors}
    h = embed(by_name["token_embd.weight"].load_checked().double(), tokens)
    assert _rel(h, ref[0]) < 1e-12
    for i in range(source.n_layer):
        p = {k: v.double() for k, v in block_params(source, i).items()}
        h_in = ref[i]  # each block on transformers' own input, so errors do not accumulate across blocks
        out = block_forward(p, h_in, cfg)
        if i == source.n_layer - 1:  # transformers' last hidden state has the final norm applied
            out = rms_norm(out, by_name["output_norm.weight"].load_checked().double(), cfg.eps)
        assert _rel(out, ref[i + 1]) < 1e-5, (arch, i)
        h = out
