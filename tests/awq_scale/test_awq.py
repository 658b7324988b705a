"""The block-by-block driver: AWQ beats plain rounding where activations have outlier channels, keeps the
float model when clipping is off, and returns tensors the pipeline can quantize."""

from __future__ import annotations

import pytest
import torch

from awq_gguf.awq_scale.awq import AwqSettings, apply_awq, awq_block, run_awq
from awq_gguf.awq_scale.block import block_config, block_forward, block_params, embed
from awq_gguf.convert.source import open_source

from awq_helpers import block_types, model_types, tiny_block

FAST = dict(n_grid=3, clip_grid=10, max_shrink=0.2, loss_tokens=64, block_loss=True, progress=False)


def _inject_outliers(p: dict[str, torch.Tensor], channels: list[int], factor: float) -> dict[str, torch.Tensor]:
    """A few input channels of q/k/v and gate/up become much larger than the rest (as in real LLMs)."""
    p = dict(p)
    for norm in ("attn_norm.weight", "ffn_norm.weight"):
        w = p[norm].clone()
        w[channels] *= factor
        p[norm] = w
    return p


@pytest.mark.parametrize("clip_and_importance", [False, True])
def test_awq_beats_rtn_with_outlier_channels(tiny_model, clip_and_importance):
    source, cfg, p, h = tiny_block(tiny_model("LlamaForCausalLM"), n=4, L=32)
    p = _inject_outliers(p, [5, 77, 130, 201], 20.0)
    types = block_types(source, "Q4_0")
    settings = AwqSettings(**{**FAST, "clip": clip_and_importance, "importance": clip_and_importance})
    result = awq_block(p, h.clone(), types, cfg, "llama", settings)
    rep = result.report
    assert rep.block_loss_awq < 0.9 * rep.block_loss_rtn, rep.line()
    assert rep.group_loss_after < rep.group_loss_before
    attn = rep.groups[0][1]
    assert attn.ratio is not None and attn.ratio > 0  # the q/k/v group protects the outliers
    assert "block 0" in rep.line() and "->" in rep.line()


def test_block_output_is_the_float_one(tiny_model):
    source, cfg, p, h = tiny_block(tiny_model("Qwen2ForCausalLM"), n=3, L=16)
    expect = block_forward(p, h, cfg)
    h_run = h.clone()
    awq_block(p, h_run, block_types(source, "Q4_0"), cfg, "qwen2", AwqSettings(**FAST, chunk_seqs=2))
    assert torch.equal(h_run, expect) or torch.allclose(h_run, expect, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("arch", ["Qwen2ForCausalLM", "Qwen3ForCausalLM"])
def test_run_awq_without_clip_keeps_the_float_model(tiny_model, arch):
    source = open_source(tiny_model(arch))
    types = model_types(source, "Q4_0")
    tokens = torch.randint(0, 300, (3, 24), generator=torch.Generator().manual_seed(0))
    weights, importance = run_awq(source, types, tokens, AwqSettings(**{**FAST, "clip": False, "block_loss": False}))

    shapes = {t.name: t.shape for t in source.tensors}
    assert set(weights) <= set(shapes)
    assert "blk.0.attn_norm.weight" in weights and "blk.1.ffn_up.weight" in weights  # scales were applied
    assert all(tuple(w.shape) == shapes[n] and w.dtype == torch.float32 for n, w in weights.items())
    linears = [n for n in shapes if n.startswith("blk.") and n.endswith(".weight") and "norm" not in n]
    assert set(linears) <= set(importance)
    for name in linears:
        imp = importance[name]
        assert imp.shape == (shapes[name][1],) and imp.dtype == torch.float32 and (imp >= 0).all()
    # the output head's importance: output.weight, or the tied token embedding (Qwen3 here), from the final norm
    head = "output.weight" if "output.weight" in shapes else "token_embd.weight"
    assert importance[head].shape == (shapes[head][1],) and (importance[head] > 0).all()
    assert "token_embd.weight" not in weights  # its values are never changed

    cfg = block_config(source)
    embd = next(t for t in source.tensors if t.name == "token_embd.weight").load_checked().double()
    h_ref = h_awq = embed(embd, tokens)
    for i in range(source.n_layer):
        p = {k: v.double() for k, v in block_params(source, i).items()}
        q = {k: weights.get(f"blk.{i}.{k}", v).double() for k, v in p.items()}
        h_ref, h_awq = block_forward(p, h_ref, cfg), block_forward(q, h_awq, cfg)
    assert float((h_awq - h_ref).norm() / h_ref.norm()) < 1e-5


def test_importance_is_post_scaling_mean_square(tiny_model):
    """importance of a linear = mean x^2 of its input in the folded block (x / s)."""
    source, cfg, p, h = tiny_block(tiny_model("LlamaForCausalLM"), n=2, L=16)
    p = _inject_outliers(p, [5, 77], 20.0)
    result = awq_block(p, h.clone(), block_types(source, "Q4_0"), cfg, "llama",
                       AwqSettings(**{**FAST, "clip": False}))
    folded = {**p, **result.params}
    store: dict[str, torch.Tensor] = {}
    block_forward(folded, h, cfg, lambda name, x: store.__setitem__(name, x))
    from awq_gguf.awq_scale.block import INPUT_OF

    for name in ("attn_q", "attn_output", "ffn_up", "ffn_down"):
        x = store[INPUT_OF[name]]
        expect = x.reshape(-1, x.shape[-1]).pow(2).mean(0)
        assert torch.allclose(result.importance[f"{name}.weight"], expect, rtol=1e-4, atol=1e-9), name


def test_result_replays_from_scales_and_clips(tiny_model):
    """scales + clip bounds are the whole result: apply_awq on the source block rebuilds the tensors bit for bit."""
    source, cfg, p, h = tiny_block(tiny_model("Qwen2ForCausalLM"), n=2, L=16)
    p = _inject_outliers(p, [5, 77], 20.0)
    result = awq_block(p, h.clone(), block_types(source, "Q4_0"), cfg, "qwen2", AwqSettings(**FAST))
    assert set(result.scales) == {"attn_norm", "attn_v", "ffn_norm", "ffn_up"}
    assert set(result.clip_max) == {"attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"}
    replay = apply_awq(p, result.scales, result.clip_max, cfg, "qwen2")
    for name, w in result.params.items():
        assert torch.equal(replay[name], w), name


def test_token_sample_is_stratified_by_position():
    from awq_gguf.awq_scale.awq import _sample

    seq_idx, tok_idx, n_screen, screen = _sample(n=16, L=32, loss_tokens=128, gen=torch.Generator().manual_seed(0),
                                                 screen_tokens=64)
    assert seq_idx.tolist() == sorted(set(seq_idx.tolist())) and len(seq_idx) == 4
    assert tok_idx.tolist() == sorted(set(tok_idx.tolist())) and len(tok_idx) == 128
    per_position = torch.bincount(tok_idx % 32, minlength=32)
    assert (per_position == 4).all()  # every position, the first included, as often as the others
    # the screening subsample: half the tokens, still every position equally often; 2 of the 4 sequences
    assert n_screen == 2 and screen is not None and int(screen.sum()) == 64
    assert (torch.bincount(tok_idx[screen] % 32, minlength=32) == 2).all()
    # no screening: nothing to mark
    _, tok2, n2, screen2 = _sample(n=16, L=32, loss_tokens=128, gen=torch.Generator().manual_seed(0))
    assert torch.equal(tok2, tok_idx) and n2 == 0 and screen2 is None
