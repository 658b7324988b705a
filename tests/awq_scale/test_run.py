"""The AWQ step of a conversion: results saved per block, reused, resumed after an interruption, re-applied to
another type, and refused when they belong to another model or settings."""

from __future__ import annotations

import pytest
import torch

from awq_gguf.awq_scale import awq as awq_mod
from awq_gguf.awq_scale.awq import AwqSettings
from awq_gguf.awq_scale.results import ResultsError, SearchResults
from awq_gguf.awq_scale.run import AwqRequest, prepare_awq
from awq_gguf.convert.quants import refinable
from awq_gguf.convert.source import open_source

from awq_helpers import model_types

FAST = AwqSettings(n_grid=2, clip_grid=4, max_shrink=0.2, loss_tokens=32, block_loss=False, progress=False)


@pytest.fixture()
def calib(tmp_path):
    path = tmp_path / "calib.txt"
    path.write_text(" ".join(f"word{i % 97} and more text number {i}." for i in range(600)))
    return path


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("AWQ_GGUF_CACHE", str(tmp_path / "cache"))


def _request(calib, type_name="Q4_0", **kw) -> AwqRequest:
    return AwqRequest(calib, 3, 24, FAST, type_name=type_name, **kw)


def _count_blocks(monkeypatch) -> list[int]:
    ran: list[int] = []
    real = awq_mod.awq_block

    def counting(*args, **kwargs):
        ran.append(kwargs.get("index", args[6] if len(args) > 6 else 0))
        return real(*args, **kwargs)

    monkeypatch.setattr(awq_mod, "awq_block", counting)
    return ran


def _records_equal(a, b) -> bool:
    return all(
        set(ra.scales) == set(rb.scales) and all(torch.equal(ra.scales[k], rb.scales[k]) for k in ra.scales)
        and all(torch.equal(ra.importance[k], rb.importance[k]) for k in ra.importance)
        and set(ra.moments) == set(rb.moments) and all(torch.equal(ra.moments[k], rb.moments[k]) for k in ra.moments)
        for ra, rb in ((a.records[i], b.records[i]) for i in a.records)
    )


def test_results_are_saved_and_reused(tiny_model, calib, monkeypatch):
    source = open_source(tiny_model("LlamaForCausalLM"))
    types = model_types(source, "Q4_0")
    first, results = prepare_awq(source, types, _request(calib))
    assert results.complete and results.finished() == source.n_layer + 1
    ran = _count_blocks(monkeypatch)
    again, results2 = prepare_awq(source, types, _request(calib))
    assert ran == [] and results2.folder == results.folder  # nothing searched twice
    assert _records_equal(first, again)
    shapes = {t.name: t.shape for t in source.tensors}
    w, imp, mom = again.tensor("blk.1.ffn_up.weight")
    assert tuple(w.shape) == tuple(shapes["blk.1.ffn_up.weight"]) and imp.shape == (w.shape[1],)
    assert mom.shape == (w.shape[1] // 32, 32, 32)  # Q4_0 refines: the input's block second moments are kept
    # their diagonals are the importance (mean x^2 of the scaled input), block by block
    torch.testing.assert_close(mom.diagonal(dim1=1, dim2=2).reshape(-1), imp, rtol=1e-4, atol=0)
    w, imp, mom = again.tensor("token_embd.weight")  # tied: the output head, statistics of the final norm's output
    assert w is None and imp.shape == (shapes["token_embd.weight"][1],)
    if refinable(types["token_embd.weight"]):
        assert mom.shape == (imp.shape[0] // 32, 32, 32)
    else:  # the head's type (Q6_K here) does not refine: nothing kept
        assert mom is None


def test_resume_continues_after_the_last_finished_block(tiny_model, calib, monkeypatch):
    source = open_source(tiny_model("LlamaForCausalLM"))
    types = model_types(source, "Q4_0")
    # interrupt a search after its first block
    req = AwqRequest(calib, 3, 24, AwqSettings(**{**FAST.__dict__, "seed": 1}), type_name="Q4_0")
    real = awq_mod.awq_block

    def interrupted(*args, **kwargs):
        if kwargs.get("index", args[6] if len(args) > 6 else 0) == 1:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(awq_mod, "awq_block", interrupted)
    with pytest.raises(KeyboardInterrupt):
        prepare_awq(source, types, req)
    monkeypatch.setattr(awq_mod, "awq_block", real)
    ran = _count_blocks(monkeypatch)
    resumed, results = prepare_awq(source, types, AwqRequest(**{**req.__dict__, "resume": True}))
    assert ran == [1]  # block 0 came from the saved results
    assert results.complete
    # the resumed search equals an uninterrupted one with the same settings
    monkeypatch.setattr(awq_mod, "awq_block", real)
    import shutil

    shutil.rmtree(results.folder)
    whole, _ = prepare_awq(source, types, req)
    assert _records_equal(resumed, whole)


def test_unfinished_search_without_resume_starts_over(tiny_model, calib, monkeypatch, caplog):
    source = open_source(tiny_model("LlamaForCausalLM"))
    types = model_types(source, "Q4_0")
    _, results = prepare_awq(source, types, _request(calib))
    (results.folder / f"block-{source.n_layer:03d}.safetensors").unlink()  # as if interrupted at the end
    ran = _count_blocks(monkeypatch)
    prepare_awq(source, types, _request(calib))
    assert ran == [0, 1]
    assert "--resume" in caplog.text


def test_results_of_another_model_are_refused(tiny_model, calib):
    a = open_source(tiny_model("LlamaForCausalLM"))
    b = open_source(tiny_model("MistralForCausalLM"))
    _, results = prepare_awq(a, model_types(a, "Q4_0"), _request(calib))
    with pytest.raises(ResultsError, match="another model"):
        prepare_awq(b, model_types(b, "Q4_0"), _request(calib, scales=results.folder, resume=True))


def test_results_with_other_settings_are_refused(tiny_model, calib):
    source = open_source(tiny_model("LlamaForCausalLM"))
    types = model_types(source, "Q4_0")
    _, results = prepare_awq(source, types, _request(calib))
    other = AwqRequest(calib, 3, 24, AwqSettings(**{**FAST.__dict__, "n_grid": 3}), scales=results.folder,
                       type_name="Q4_0")
    with pytest.raises(ResultsError, match="other AWQ settings.*n_grid"):
        prepare_awq(source, types, other)


@pytest.mark.parametrize("change", [{"screen_tokens": 16}, {"screen_keep": 2}, "search_version"])
def test_results_of_another_search_are_not_reused(tiny_model, calib, monkeypatch, change):
    from awq_gguf.awq_scale import results as results_mod

    source = open_source(tiny_model("LlamaForCausalLM"))
    types = model_types(source, "Q4_0")
    _, first = prepare_awq(source, types, _request(calib))
    settings = FAST
    if change == "search_version":  # what an older awq-gguf saved
        monkeypatch.setattr(results_mod, "SEARCH_VERSION", results_mod.SEARCH_VERSION + 1)
    else:
        settings = AwqSettings(**{**FAST.__dict__, **change})
    ran = _count_blocks(monkeypatch)
    _, second = prepare_awq(source, types, AwqRequest(calib, 3, 24, settings, type_name="Q4_0"))
    assert second.folder != first.folder and ran == list(range(source.n_layer))  # searched again, elsewhere


def test_results_reapplied_to_another_type(tiny_model, calib, monkeypatch, caplog):
    source = open_source(tiny_model("LlamaForCausalLM"))
    _, results = prepare_awq(source, model_types(source, "Q4_0"), _request(calib))
    ran = _count_blocks(monkeypatch)
    applier, used = prepare_awq(source, model_types(source, "Q5_0"),
                                _request(calib, type_name="Q5_0", scales=results.folder))
    assert ran == [] and used.folder == results.folder
    assert not applier.use_clip  # clip bounds belong to Q4_0
    assert "re-applying" in caplog.text


def test_not_a_results_folder(tmp_path, tiny_model, calib):
    source = open_source(tiny_model("LlamaForCausalLM"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ResultsError, match="no meta.json"):
        prepare_awq(source, model_types(source, "Q4_0"), _request(calib, scales=tmp_path / "empty"))


def test_saved_block_roundtrip(tmp_path, tiny_model):
    source = open_source(tiny_model("LlamaForCausalLM"))
    from awq_gguf.awq_scale.awq import BlockReport, BlockResult
    from awq_gguf.awq_scale.results import SearchKey

    key = SearchKey.of(source, "x", model_types(source, "Q4_0"), FAST)
    res = SearchResults.create(tmp_path / "r", key, source.n_layer, "m", "Q4_0")
    block = BlockResult({}, {"attn_q.weight": torch.rand(8)}, {"attn_norm": torch.rand(8)},
                        {"attn_v": torch.rand(4, 2)}, BlockReport(0, 0.0))
    res.save(0, block)
    rec = SearchResults.open(tmp_path / "r").load(0)
    assert torch.equal(rec.scales["attn_norm"], block.scales["attn_norm"])
    assert torch.equal(rec.clip_max["attn_v"], block.clip_max["attn_v"])
    assert torch.equal(rec.importance["attn_q.weight"], block.importance["attn_q.weight"])
    assert res.finished() == 1 and not res.complete


def test_cli_refine_changes_only_the_refinable_tensors(tiny_model, tmp_path, cli):
    import json

    import gguf

    calib = tmp_path / "c.txt"
    calib.write_text(" ".join(f"word{i} text" for i in range(500)))
    args = ("-t", "Q4_0", "--calib", calib, "--calib-samples", "3", "--calib-seqlen", "24", "-q")
    model = tiny_model("LlamaForCausalLM")
    on, off = tmp_path / "on.gguf", tmp_path / "off.gguf"
    assert cli("convert", model, "-o", on, *args).exit_code == 0
    assert cli("convert", model, "-o", off, *args, "--no-refine").exit_code == 0  # the same search, reused
    r_on, r_off = gguf.GGUFReader(on), gguf.GGUFReader(off)
    settings = [json.loads(bytes(r.fields["awq_gguf.settings"].parts[-1]).decode()) for r in (r_on, r_off)]
    assert settings[0]["refine"] is True and settings[1]["refine"] is False
    changed = set()
    for a, b in zip(r_on.tensors, r_off.tensors):
        assert a.name == b.name and a.tensor_type == b.tensor_type
        if not (a.data == b.data).all():
            changed.add(a.name)
            assert a.tensor_type in (gguf.GGMLQuantizationType.Q4_0, gguf.GGMLQuantizationType.Q5_0,
                                     gguf.GGMLQuantizationType.Q8_0)
    assert any(name.startswith("blk.") for name in changed)
