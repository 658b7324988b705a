"""The scale search: AWQ's candidate form, and it never makes a group's quantized loss worse than unit scales."""

from __future__ import annotations

import pytest
import torch
from gguf import GGMLQuantizationType as QT

from awq_gguf.awq_scale.block import INPUT_OF, block_forward, module_forward
from awq_gguf.awq_scale.fold import column_scales, fold_scales
from awq_gguf.awq_scale.groups import groups_for
from awq_gguf.awq_scale.search import candidates, search_group
from awq_gguf.convert.quants import fake_quantize

from awq_helpers import block_types, capture, group_stats, tiny_block


def test_candidates_are_normalized():
    x_mean = torch.rand(64) * 3 + 0.01
    w_mean = torch.rand(64) + 0.1
    cands = candidates(x_mean, w_mean, n_grid=20)
    assert len(cands) == 39  # 19 activation-only (r = 0 is the unit baseline) + 20 duo
    assert sorted({r for r, _, _ in cands}) == [i / 20 for i in range(20)]
    for r, duo, s in cands:
        assert torch.allclose(s.max() * s.min(), torch.tensor(1.0), rtol=1e-5)
        expect = x_mean.pow(r) / (w_mean.pow(1 - r) + 1e-4) if duo else x_mean.pow(r)
        expect = expect / (expect.max() * expect.min()).sqrt()
        assert torch.allclose(s, expect, rtol=1e-5)


def _folded_loss(p, h, cfg, group, s, types) -> float:
    """The group's loss measured independently: fold s into the block, quantize the group's linears with
    importance from the folded block's own inputs, run the module on those inputs."""
    folded = fold_scales(p, group, s, cfg)
    store = capture(folded, h, cfg)
    x = store[INPUT_OF[group.inspect]]
    flat = x.reshape(-1, x.shape[-1])
    imp = flat.pow(2).mean(0)
    q = dict(folded)
    for name in group.linears:
        q[f"{name}.weight"] = fake_quantize(folded[f"{name}.weight"], types[name], imp)
    ref = module_forward(p, group.inspect, capture(p, h, cfg)[INPUT_OF[group.inspect]], cfg)
    return float((module_forward(q, group.inspect, x, cfg) - ref).double().pow(2).mean())


@pytest.mark.parametrize("file_type", ["Q4_0", "Q4_K_S"])
def test_search_never_worse_than_unit(tiny_model, file_type):
    source, cfg, p, h = tiny_block(tiny_model("LlamaForCausalLM"), n=4, L=32)
    types = block_types(source, file_type)
    store = capture(p, h, cfg)
    improved = 0
    for group in groups_for(source.arch.gguf_name):
        res = search_group(p, group, types, group_stats(store, group), cfg, n_grid=4)
        assert res.loss <= res.loss_unit
        unit = torch.ones_like(res.scales)
        assert torch.equal(res.scales, unit) == (res.ratio is None)
        before = _folded_loss(p, h, cfg, group, unit, types)
        after = _folded_loss(p, h, cfg, group, res.scales, types)
        assert before == pytest.approx(res.loss_unit, rel=1e-3)
        assert after <= before * (1 + 1e-4), group
        improved += after < before
    assert improved >= 1


def test_float_types_keep_unit_scales(tiny_model):
    source, cfg, p, h = tiny_block(tiny_model("LlamaForCausalLM"), n=2, L=16)
    types = {k: QT.F16 for k in block_types(source, "F16")}
    store = capture(p, h, cfg)
    for group in groups_for("llama"):
        res = search_group(p, group, types, group_stats(store, group), cfg, n_grid=4)
        assert res.ratio is None and torch.equal(res.scales, torch.ones_like(res.scales))


def test_gqa_search_scales_live_on_v_rows(tiny_model):
    source, cfg, p, h = tiny_block(tiny_model("MistralForCausalLM"), n=2, L=16)
    types = block_types(source, "Q4_0")
    vo = [g for g in groups_for("llama") if g.kv_repeat][0]
    res = search_group(p, vo, types, group_stats(capture(p, h, cfg), vo), cfg, n_grid=4)
    assert res.scales.shape == (cfg.n_head_kv * cfg.head_dim,)
    assert column_scales(vo, res.scales, cfg).shape == (cfg.n_head * cfg.head_dim,)


def test_screening_keeps_the_winner_and_scores_it_on_the_whole_sample(tiny_model):
    from dataclasses import replace

    from awq_gguf.awq_scale.search import module_loss, quantized_params

    source, cfg, p, h = tiny_block(tiny_model("LlamaForCausalLM"), n=4, L=32)
    types = block_types(source, "Q4_0")
    store = capture(p, h, cfg)
    for group in groups_for("llama"):
        stats = group_stats(store, group)
        plain = search_group(p, group, types, stats, cfg, n_grid=4)
        # screening on the whole sample itself, keeping only the best: the same winner
        same = search_group(p, group, types, replace(stats, x_screen=stats.x_loss), cfg, n_grid=4, keep=1)
        assert torch.equal(same.scales, plain.scales) and same.loss == plain.loss, group
        # screening on half the sample: the decision and the reported loss come from the whole sample
        half = stats.x_loss[: stats.x_loss.shape[0] // 2]
        res = search_group(p, group, types, replace(stats, x_screen=half), cfg, n_grid=4, keep=2)
        assert res.loss_unit == plain.loss_unit and res.loss <= res.loss_unit
        ref = module_forward(p, group.inspect, stats.x_loss, cfg)
        q = quantized_params(p, group, res.scales, types, cfg, stats.x_sq)
        assert res.loss == module_loss(q, group, stats.x_loss, ref, cfg)
        assert res.loss >= plain.loss  # the unscreened search saw every candidate on the whole sample
