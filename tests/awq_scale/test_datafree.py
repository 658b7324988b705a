"""Data-free calibration: the model's own seeded samples, full length, no end-of-text tokens."""

from __future__ import annotations

import torch

from awq_gguf.awq_scale.datafree import _special_ids, generate_calibration
from awq_gguf.convert.source import open_source


def test_seeded_full_length_samples(tiny_model):
    source = open_source(tiny_model("LlamaForCausalLM"))
    a = generate_calibration(source, 3, 12, seed=0, progress=False)
    b = generate_calibration(source, 3, 12, seed=0, progress=False)
    c = generate_calibration(source, 3, 12, seed=1, progress=False)
    assert a.shape == (3, 12) and a.dtype == torch.int64
    assert torch.equal(a, b)  # deterministic
    assert not torch.equal(a, c)  # the seed matters
    special = _special_ids(source)
    assert special and not any(int(t) in special for t in a[:, 1:].flatten())
    n_vocab = next(t for t in source.tensors if t.name == "token_embd.weight").shape[0]
    assert int(a.max()) < n_vocab and int(a.min()) >= 0


def test_samples_follow_the_model(tiny_model):
    """Each sampled token is among the model's TOP_K most likely next tokens (checked with the block forward)."""
    from awq_gguf.awq_scale.block import block_config, block_forward, block_params, embed, rms_norm
    from awq_gguf.awq_scale.datafree import TOP_K

    source = open_source(tiny_model("Qwen3ForCausalLM"))
    toks = generate_calibration(source, 2, 10, seed=3, progress=False)
    cfg = block_config(source)
    by = {t.name: t for t in source.tensors}
    h = embed(by["token_embd.weight"].load_checked(), toks)
    for i in range(source.n_layer):
        h = block_forward(block_params(source, i), h, cfg)
    out_w = by["output.weight"].load_checked() if "output.weight" in by else by["token_embd.weight"].load_checked()
    logits = rms_norm(h, by["output_norm.weight"].load_checked(), cfg.eps) @ out_w.T  # [2, 10, vocab]
    top = logits[:, :-1].topk(TOP_K + 4, dim=-1).indices  # a little slack for ties / masked ids
    nxt = toks[:, 1:]
    from awq_gguf.awq_scale.calib import source_tokenizer

    prompt = 2 if source_tokenizer(source)[1] is not None else 1  # BOS (if any) + an opener's first token
    hits = (top == nxt[..., None]).any(-1)[:, prompt - 1:]  # next-token predictions of the sampled positions
    assert bool(hits.all())
