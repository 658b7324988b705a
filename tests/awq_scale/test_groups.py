"""The scaling-group table covers every supported architecture and every linear of its block."""

from __future__ import annotations

import pytest

from awq_gguf.awq_scale.block import LINEARS
from awq_gguf.awq_scale.groups import GROUPS, groups_for, scaled_linears
from awq_gguf.convert.arch import ARCHITECTURES
from awq_gguf.convert.source import open_source
from awq_gguf.errors import UnsupportedArchitectureError


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_every_linear_scaled_once(arch):
    names = scaled_linears(ARCHITECTURES[arch].gguf_name)
    assert sorted(names) == sorted(LINEARS)


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_group_tensors_exist_in_the_block(tiny_model, arch):
    source = open_source(tiny_model(arch))
    block0 = {t.name.removeprefix("blk.0.") for t in source.tensors if t.name.startswith("blk.0.")}
    for g in groups_for(source.arch.gguf_name):
        assert f"{g.prev}.weight" in block0
        assert all(f"{name}.weight" in block0 for name in g.linears)
        assert g.prev_is_norm == g.prev.endswith("_norm")


def test_gqa_group_is_v_to_o():
    for arch, groups in GROUPS.items():
        (vo,) = [g for g in groups if g.kv_repeat]
        assert (vo.prev, vo.linears) == ("attn_v", ("attn_output",)), arch


def test_unknown_architecture():
    with pytest.raises(UnsupportedArchitectureError, match="supported: llama"):
        groups_for("gpt2")
