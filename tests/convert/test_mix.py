"""convert/mix.py: llama.cpp's per-tensor type choice, hand-worked and against llama-quantize's real output.

The fixtures in data/ were recorded from llama-quantize (the llama.cpp vendored in llama-cpp-python 0.3.36)
by data/record_llama_quantize_types.py; rerun it after a llama.cpp update.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import gguf
import pytest

from awq_gguf.convert.mix import (
    ACCEPTED_NAMES,
    ModelShape,
    base_type_of,
    file_type_of,
    llama_cpp_order,
    plan_types,
    use_more_bits,
)
from awq_gguf.errors import UnknownTypeError

QT = gguf.GGMLQuantizationType
DATA = Path(__file__).resolve().parent / "data"
BLK_KINDS = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")


def llama_tensors(n_layer: int, hidden: int, ffn: int, n_head: int, n_head_kv: int, vocab: int,
                  untied: bool) -> list[tuple[str, tuple[int, ...]]]:
    """A llama model's GGUF tensors in convert_hf_to_gguf order, torch shapes [rows, cols]."""
    kv = hidden // n_head * n_head_kv
    t: list[tuple[str, tuple[int, ...]]] = [("token_embd.weight", (vocab, hidden))]
    for i in range(n_layer):
        t += [(f"blk.{i}.attn_norm.weight", (hidden,)), (f"blk.{i}.attn_q.weight", (hidden, hidden)),
              (f"blk.{i}.attn_k.weight", (kv, hidden)), (f"blk.{i}.attn_v.weight", (kv, hidden)),
              (f"blk.{i}.attn_output.weight", (hidden, hidden)), (f"blk.{i}.ffn_norm.weight", (hidden,)),
              (f"blk.{i}.ffn_gate.weight", (ffn, hidden)), (f"blk.{i}.ffn_up.weight", (ffn, hidden)),
              (f"blk.{i}.ffn_down.weight", (hidden, ffn))]
    t.append(("output_norm.weight", (hidden,)))
    if untied:
        t.append(("output.weight", (vocab, hidden)))
    return t


def counts(plan: dict[str, QT]) -> dict[str, int]:
    return dict(Counter(q.name for q in plan.values()))


def per_layer(plan: dict[str, QT], kind: str, n_layer: int) -> list[str]:
    return [plan[f"blk.{i}.{kind}.weight"].name for i in range(n_layer)]


# ---------------------------------------------------------------------------------------------- names

def test_file_type_names_and_aliases() -> None:
    assert file_type_of("Q4_K_M") == gguf.LlamaFileType.MOSTLY_Q4_K_M
    assert file_type_of("q4_k_m") == gguf.LlamaFileType.MOSTLY_Q4_K_M  # llama-quantize compares case-blind
    assert file_type_of("Q3_K") == gguf.LlamaFileType.MOSTLY_Q3_K_M
    assert file_type_of("Q4_K") == gguf.LlamaFileType.MOSTLY_Q4_K_M
    assert file_type_of("Q5_K") == gguf.LlamaFileType.MOSTLY_Q5_K_M
    assert file_type_of("F32") == gguf.LlamaFileType.ALL_F32
    assert file_type_of("BF16") == gguf.LlamaFileType.MOSTLY_BF16
    assert base_type_of("Q3_K_L") == QT.Q3_K and base_type_of("Q6_K") == QT.Q6_K
    assert set(ACCEPTED_NAMES) == {"Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L",
                                   "Q4_K_S", "Q4_K_M", "Q5_K_S", "Q5_K_M", "Q6_K", "F16", "BF16", "F32",
                                   "Q3_K", "Q4_K", "Q5_K"}


@pytest.mark.parametrize("bad", ["Q7_K", "IQ2_XXS", "q4", ""])
def test_unknown_name_one_line_lists_accepted(bad: str) -> None:
    with pytest.raises(UnknownTypeError) as e:
        file_type_of(bad)
    msg = str(e.value)
    assert "\n" not in msg and repr(bad) in msg
    assert "Q4_K_M" in msg and "Q8_0" in msg and "BF16" in msg


def test_use_more_bits_layers() -> None:
    assert [i for i in range(32) if use_more_bits(i, 32)] == [0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31]
    assert [i for i in range(30) if use_more_bits(i, 30)] == [0, 1, 2, 5, 8, 11, 14, 17, 20, 23, 26, 27, 28, 29]


def test_llama_cpp_order() -> None:
    names = ["output.weight", "blk.10.attn_v.weight", "blk.2.ffn_up.weight", "blk.2.attn_q.weight",
             "token_embd.weight", "output_norm.weight"]
    assert llama_cpp_order(names) == ["output.weight", "output_norm.weight", "token_embd.weight",
                                      "blk.2.attn_q.weight", "blk.2.ffn_up.weight", "blk.10.attn_v.weight"]


# ---------------------------------------------------------------------------------------------- Llama-2-7B

LLAMA2_7B = ModelShape(n_layer=32, n_head=32, n_head_kv=32, has_output=True)
LLAMA2_T = llama_tensors(32, 4096, 11008, 32, 32, 32000, untied=True)
MORE_BITS_32 = {0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31}


def test_llama2_7b_q4_k_m() -> None:
    p = plan_types(LLAMA2_T, "Q4_K_M", LLAMA2_7B)
    assert list(p) == [n for n, _ in LLAMA2_T]  # file order kept
    # the well-known llama.cpp load log of Llama-2-7B Q4_K_M: 65 f32, 193 q4_K, 33 q6_K
    assert counts(p) == {"F32": 65, "Q4_K": 193, "Q6_K": 33}
    assert p["token_embd.weight"] == QT.Q4_K and p["output.weight"] == QT.Q6_K
    for kind in ("attn_v", "ffn_down"):
        assert per_layer(p, kind, 32) == ["Q6_K" if i in MORE_BITS_32 else "Q4_K" for i in range(32)]
    for kind in ("attn_q", "attn_k", "attn_output", "ffn_gate", "ffn_up"):
        assert set(per_layer(p, kind, 32)) == {"Q4_K"}
    assert p["blk.7.attn_norm.weight"] == QT.F32 and p["output_norm.weight"] == QT.F32


def test_llama2_7b_q3_k_variants() -> None:
    m = plan_types(LLAMA2_T, "Q3_K_M", LLAMA2_7B)
    assert counts(m) == {"F32": 65, "Q3_K": 129, "Q4_K": 92, "Q5_K": 4, "Q6_K": 1}
    assert per_layer(m, "attn_v", 32) == ["Q5_K"] * 2 + ["Q4_K"] * 30  # first two attn_v by counter
    assert per_layer(m, "ffn_down", 32) == ["Q5_K"] * 2 + ["Q4_K"] * 30  # i < n_layer/16
    assert set(per_layer(m, "attn_output", 32)) == {"Q4_K"}
    assert m["token_embd.weight"] == QT.Q3_K and m["output.weight"] == QT.Q6_K

    s = plan_types(LLAMA2_T, "Q3_K_S", LLAMA2_7B)
    assert counts(s) == {"F32": 65, "Q3_K": 225, "Q6_K": 1}

    big = plan_types(LLAMA2_T, "Q3_K_L", LLAMA2_7B)
    assert counts(big) == {"F32": 65, "Q3_K": 129, "Q5_K": 96, "Q6_K": 1}
    assert {big[f"blk.3.{k}.weight"] for k in ("attn_v", "ffn_down", "attn_output")} == {QT.Q5_K}


def test_llama2_7b_other_mixes() -> None:
    q2 = plan_types(LLAMA2_T, "Q2_K", LLAMA2_7B)  # GQA 1: attn_v Q3_K (Q4_K only from GQA 4)
    assert counts(q2) == {"F32": 65, "Q2_K": 129, "Q3_K": 96, "Q6_K": 1}
    assert q2["blk.0.attn_v.weight"] == q2["blk.0.ffn_down.weight"] == q2["blk.0.attn_output.weight"] == QT.Q3_K

    q4s = plan_types(LLAMA2_T, "Q4_K_S", LLAMA2_7B)
    assert counts(q4s) == {"F32": 65, "Q4_K": 217, "Q5_K": 8, "Q6_K": 1}
    assert per_layer(q4s, "attn_v", 32)[:5] == ["Q5_K"] * 4 + ["Q4_K"]
    assert per_layer(q4s, "ffn_down", 32)[:5] == ["Q5_K"] * 4 + ["Q4_K"]

    q5m = plan_types(LLAMA2_T, "Q5_K_M", LLAMA2_7B)
    assert counts(q5m) == {"F32": 65, "Q5_K": 193, "Q6_K": 33}
    assert counts(plan_types(LLAMA2_T, "Q5_K_S", LLAMA2_7B)) == {"F32": 65, "Q5_K": 225, "Q6_K": 1}
    assert counts(plan_types(LLAMA2_T, "Q6_K", LLAMA2_7B)) == {"F32": 65, "Q6_K": 226}
    assert counts(plan_types(LLAMA2_T, "Q4_0", LLAMA2_7B)) == {"F32": 65, "Q4_0": 225, "Q6_K": 1}
    assert counts(plan_types(LLAMA2_T, "Q5_1", LLAMA2_7B)) == {"F32": 65, "Q5_1": 225, "Q6_K": 1}
    assert counts(plan_types(LLAMA2_T, "Q8_0", LLAMA2_7B)) == {"F32": 65, "Q8_0": 226}
    assert counts(plan_types(LLAMA2_T, "F16", LLAMA2_7B)) == {"F32": 65, "F16": 226}
    assert counts(plan_types(LLAMA2_T, "BF16", LLAMA2_7B)) == {"F32": 65, "BF16": 226}
    assert counts(plan_types(LLAMA2_T, "F32", LLAMA2_7B)) == {"F32": 291}
    assert counts(plan_types(LLAMA2_T, "Q4_K_M", LLAMA2_7B, pure=True)) == {"F32": 65, "Q4_K": 226}


def test_tied_embeddings_take_the_output_rule() -> None:
    tied = [t for t in LLAMA2_T if t[0] != "output.weight"]
    shape = ModelShape(n_layer=32, n_head=32, n_head_kv=32, has_output=False)
    assert plan_types(tied, "Q4_K_M", shape)["token_embd.weight"] == QT.Q6_K
    assert plan_types(tied, "Q4_0", shape)["token_embd.weight"] == QT.Q6_K
    assert plan_types(tied, "Q8_0", shape)["token_embd.weight"] == QT.Q8_0
    assert plan_types(tied, "Q4_K_M", shape, pure=True)["token_embd.weight"] == QT.Q4_K
    with pytest.raises(ValueError):
        plan_types(LLAMA2_T, "Q4_K_M", shape)  # has_output=False with an output.weight in the list


def test_70b_attn_v_bump_and_falcon_output() -> None:
    t = llama_tensors(80, 8192, 28672, 64, 8, 32000, untied=True)
    m70 = ModelShape(n_layer=80, n_head=64, n_head_kv=8)
    assert m70.llm_type_70b
    q4 = plan_types(t, "Q4_K_M", m70)
    assert per_layer(q4, "attn_v", 80)[:5] == ["Q6_K", "Q6_K", "Q6_K", "Q6_K", "Q6_K"]
    assert set(per_layer(q4, "attn_v", 80)) == {"Q6_K", "Q5_K"}  # Q4_K layers bumped to Q5_K
    assert set(per_layer(plan_types(t, "Q3_K_S", m70), "attn_v", 80)) == {"Q5_K"}
    assert set(per_layer(plan_types(t, "Q2_K", m70), "attn_v", 80)) == {"Q5_K"}  # GQA 8 -> Q4_K -> Q5_K
    assert not ModelShape(n_layer=80, n_head=64, n_head_kv=64).llm_type_70b  # llama 65B

    falcon = ModelShape(n_layer=32, n_head=32, n_head_kv=32, arch="falcon")
    assert plan_types(LLAMA2_T, "Q4_K_M", falcon)["output.weight"] == QT.Q8_0


def test_moe_8_experts() -> None:
    t = [("token_embd.weight", (32000, 4096)), ("output.weight", (32000, 4096))]
    for i in range(32):
        t += [(f"blk.{i}.attn_k.weight", (1024, 4096)), (f"blk.{i}.attn_v.weight", (1024, 4096)),
              (f"blk.{i}.attn_output.weight", (4096, 4096)), (f"blk.{i}.ffn_gate_inp.weight", (8, 4096)),
              (f"blk.{i}.ffn_down_exps.weight", (8, 4096, 14336))]
    p = plan_types(t, "Q4_K_M", ModelShape(n_layer=32, n_head=32, n_head_kv=8, n_expert=8))
    assert p["blk.5.attn_v.weight"] == p["blk.5.attn_k.weight"] == QT.Q8_0
    assert p["blk.5.attn_output.weight"] == QT.Q5_K
    assert p["blk.5.ffn_gate_inp.weight"] == QT.F32  # the router is never quantized
    assert per_layer(p, "ffn_down_exps", 32) == ["Q6_K" if i in MORE_BITS_32 else "Q4_K" for i in range(32)]


def test_fallback_rows_and_odd_shapes() -> None:
    shape = ModelShape(n_layer=1, n_head=1, n_head_kv=1)
    t = [("blk.0.attn_q.weight", (64, 96)), ("blk.0.attn_k.weight", (64, 100)), ("blk.0.attn_k.bias", (64,)),
         ("blk.0.ffn_up.weight", (1, 512))]  # ggml ne = [512, 1]: one dimension, not quantized
    assert {k: v.name for k, v in plan_types(t, "Q4_K_M", shape).items()} == {
        "blk.0.attn_q.weight": "Q5_0", "blk.0.attn_k.weight": "F16", "blk.0.attn_k.bias": "F32",
        "blk.0.ffn_up.weight": "F32"}
    assert plan_types(t, "Q2_K", shape)["blk.0.attn_q.weight"] == QT.Q4_0
    assert plan_types(t, "Q5_K_S", shape)["blk.0.attn_q.weight"] == QT.Q5_1
    assert plan_types(t, "Q6_K", shape)["blk.0.attn_q.weight"] == QT.Q8_0
    assert plan_types(t, "Q8_0", shape)["blk.0.attn_k.weight"] == QT.F16  # 100 % 32 != 0
    assert plan_types(t, "F16", shape)["blk.0.attn_k.weight"] == QT.F16


# ---------------------------------------------------------------------------------------------- demo shapes

DEMO = ModelShape(n_layer=30, n_head=9, n_head_kv=3, has_output=False)
DEMO_T = llama_tensors(30, 576, 1536, 9, 3, 49152, untied=False)
MORE_BITS_30 = {0, 1, 2, 5, 8, 11, 14, 17, 20, 23, 26, 27, 28, 29}


def test_demo_q4_k_m_fallbacks() -> None:
    p = plan_types(DEMO_T, "Q4_K_M", DEMO)
    assert p["token_embd.weight"] == QT.Q8_0  # tied: output rule; 576 % 256 != 0 -> Q8_0
    assert per_layer(p, "attn_v", 30) == ["Q8_0" if i in MORE_BITS_30 else "Q5_0" for i in range(30)]
    assert per_layer(p, "ffn_down", 30) == ["Q6_K" if i in MORE_BITS_30 else "Q4_K" for i in range(30)]
    for kind in ("attn_q", "attn_k", "attn_output", "ffn_gate", "ffn_up"):
        assert set(per_layer(p, kind, 30)) == {"Q5_0"}
    assert counts(p) == {"F32": 61, "Q8_0": 15, "Q5_0": 166, "Q6_K": 14, "Q4_K": 16}


def test_demo_q3_k_m_q2_k_q5_k_s_q6_k() -> None:
    p = plan_types(DEMO_T, "Q3_K_M", DEMO)
    assert per_layer(p, "attn_v", 30) == ["Q5_1"] * 2 + ["Q5_0"] * 28  # Q5_K / Q4_K fall back
    assert per_layer(p, "ffn_down", 30) == ["Q5_K"] + ["Q4_K"] * 29  # 1536-wide: no fallback
    assert set(per_layer(p, "attn_output", 30)) == {"Q5_0"}
    assert set(per_layer(p, "attn_q", 30)) == {"Q4_0"}

    p = plan_types(DEMO_T, "Q2_K", DEMO)
    assert set(per_layer(p, "attn_v", 30)) == {"Q4_0"}  # GQA 3 -> Q3_K -> Q4_0
    assert set(per_layer(p, "ffn_down", 30)) == {"Q3_K"}
    assert counts(p) == {"F32": 61, "Q8_0": 1, "Q4_0": 180, "Q3_K": 30}

    p = plan_types(DEMO_T, "Q5_K_S", DEMO)
    assert counts(p) == {"F32": 61, "Q8_0": 1, "Q5_1": 180, "Q5_K": 30}

    p = plan_types(DEMO_T, "Q6_K", DEMO)
    assert counts(p) == {"F32": 61, "Q8_0": 181, "Q6_K": 30}

    p = plan_types(DEMO_T, "Q4_0", DEMO)
    assert counts(p) == {"F32": 61, "Q8_0": 1, "Q4_0": 210}


# ---------------------------------------------------------------------------------------------- llama-quantize

def _expand(fixture: dict) -> tuple[list[tuple[str, tuple[int, ...]]], ModelShape, dict[str, dict[str, str]]]:
    m = fixture["model"]
    n_layer = m["n_layer"]
    model = ModelShape(n_layer=n_layer, n_head=m["n_head"], n_head_kv=m["n_head_kv"], n_expert=m["n_expert"],
                       has_output=m["has_output"], arch=m["arch"])

    def names(tpl: str) -> list[str]:
        return [tpl.replace("blk.N.", f"blk.{i}.") for i in range(n_layer)] if tpl.startswith("blk.N.") else [tpl]

    tensors = [(n, tuple(shape)) for tpl, shape in fixture["tensors"].items() for n in names(tpl)]
    types: dict[str, dict[str, str]] = {}
    for mix, by_tpl in fixture["types"].items():
        types[mix] = {}
        for tpl, ty in by_tpl.items():
            for i, n in enumerate(names(tpl)):
                types[mix][n] = ty if isinstance(ty, str) else ty[i]
    return tensors, model, types


def _load(name: str) -> dict:
    return json.loads((DATA / name).read_text())


def _check_fixture(fixture: dict, all_names: bool = True) -> list[str]:
    tensors, model, types = _expand(fixture)
    if all_names:
        assert set(types) >= set(ACCEPTED_NAMES)  # every accepted name was recorded
    checked = []
    for key, observed in types.items():
        mix, _, pure = key.partition("+")
        plan = plan_types(tensors, mix, model, pure=pure == "pure")
        assert set(plan) == set(observed), key
        diff = {n: (plan[n].name, observed[n]) for n in plan if plan[n].name != observed[n]}
        assert not diff, f"{key}: plan_types != llama-quantize for {len(diff)} tensors, e.g. {list(diff.items())[:5]}"
        checked.append(key)
    return checked


def test_matches_llama_quantize_on_demo_model() -> None:
    fixture = _load("llama_quantize_types_smollm2.json")
    checked = _check_fixture(fixture)
    assert {"Q4_K_M", "Q3_K_M", "Q2_K", "Q8_0", "F16", "Q4_K_M+pure"} <= set(checked)


@pytest.mark.parametrize("model", ["synthetic_tied_gqa4", "synthetic_untied_gqa1"])
def test_matches_llama_quantize_on_synthetic_256_wide(model: str) -> None:
    fixture = _load("llama_quantize_types_synthetic.json")[model]
    checked = _check_fixture(fixture)
    assert {"Q4_K_M", "Q3_K_L", "Q4_K_S", "Q2_K", "Q6_K+pure"} <= set(checked)


def test_matches_llama_quantize_on_70b_layout() -> None:
    fixture = _load("llama_quantize_types_synthetic.json")["synthetic_70b_layout"]
    _, model, types = _expand(fixture)
    assert model.llm_type_70b
    # the 70B bump is visible in the recording itself: no attn_v is left at Q3_K/Q4_K in Q3_K_S / Q4_K_M
    assert {types["Q3_K_S"][f"blk.{i}.attn_v.weight"] for i in range(80)} == {"Q5_K"}
    assert {types["Q4_K_M"][f"blk.{i}.attn_v.weight"] for i in range(80)} == {"Q5_K", "Q6_K"}
    assert set(_check_fixture(fixture, all_names=False)) == {"Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_K_S",
                                                              "Q4_K_M", "Q5_K_M"}
