"""Folding scales leaves the float block unchanged (float64), the GQA v -> o fold included."""

from __future__ import annotations

import pytest
import torch

from awq_gguf.awq_scale.block import block_forward
from awq_gguf.awq_scale.fold import columns_to_scale_space, fold_scales, kv_row_of_column
from awq_gguf.awq_scale.groups import groups_for
from awq_gguf.convert.arch import ARCHITECTURES

from awq_helpers import tiny_block


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def _random_scales(p, groups, cfg, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for group in groups:
        n = p[f"{group.prev}.weight"].shape[0]
        out.append(torch.exp(torch.randn(n, generator=g, dtype=torch.float64)))  # 0.1 .. 10 typically
    return out


def test_kv_row_of_column_small_case():
    from awq_gguf.awq_scale.block import BlockConfig

    cfg = BlockConfig(n_head=4, n_head_kv=2, head_dim=2, eps=1e-6, rope_base=1e4, rope_neox=False, n_rot=2)
    # query heads 0,1 read kv head 0 (v rows 0,1); heads 2,3 read kv head 1 (v rows 2,3)
    assert kv_row_of_column(cfg).tolist() == [0, 1, 0, 1, 2, 3, 2, 3]
    stat = torch.tensor([1.0, 2, 3, 4, 5, 6, 7, 8])
    from awq_gguf.awq_scale.groups import GROUPS

    vo = [g for g in GROUPS["llama"] if g.kv_repeat][0]
    assert columns_to_scale_space(vo, stat, cfg).tolist() == [2.0, 3.0, 6.0, 7.0]


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_folding_keeps_the_float_block(tiny_model, arch):
    source, cfg, p, h = tiny_block(tiny_model(arch))
    assert cfg.n_head != cfg.n_head_kv  # the tiny models use GQA, so v -> o really repeats
    p = {k: v.double() for k, v in p.items()}
    if arch == "Qwen2ForCausalLM":
        assert "attn_v.bias" in p
    h = h.double()
    ref = block_forward(p, h, cfg)
    groups = groups_for(source.arch.gguf_name)
    folded = p
    for group, s in zip(groups, _random_scales(p, groups, cfg)):
        folded = fold_scales(folded, group, s, cfg)
    for group in groups:
        assert not torch.equal(folded[f"{group.prev}.weight"], p[f"{group.prev}.weight"])
    assert _rel(block_forward(folded, h, cfg), ref) < 1e-5


@pytest.mark.parametrize("arch", ["LlamaForCausalLM", "Qwen2ForCausalLM"])
def test_wrong_gqa_mapping_breaks_the_block(tiny_model, arch):
    """The invariance test has teeth: o's columns scaled by v rows tiled (not per query head) change the output."""
    source, cfg, p, h = tiny_block(tiny_model(arch))
    p = {k: v.double() for k, v in p.items()}
    h = h.double()
    s = torch.exp(torch.randn(cfg.n_head_kv * cfg.head_dim, generator=torch.Generator().manual_seed(3),
                              dtype=torch.float64))
    wrong = dict(p)
    wrong["attn_v.weight"] = p["attn_v.weight"] / s[:, None]
    if "attn_v.bias" in p:
        wrong["attn_v.bias"] = p["attn_v.bias"] / s
    wrong["attn_output.weight"] = p["attn_output.weight"] * s.repeat(cfg.n_rep)[None, :]
    assert _rel(block_forward(wrong, h, cfg), block_forward(p, h, cfg)) > 1e-3
