"""Bad input: each case exits with code 2, prints one line naming the problem, and leaves no output file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file


def _assert_clean_error(result, out: Path | None, *needles: str) -> None:
    assert result.exit_code == 2, (result.exit_code, result.output)
    # Progress bars (carriage-return updates of "quantize: ...") may precede the error; nothing else may.
    lines = [ln for ln in result.stderr.replace("\r", "\n").splitlines() if ln.strip() and not ln.startswith("quantize:")]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[0], lines[0]
    if out is not None:
        assert not out.exists()
        assert not list(out.parent.glob(f".{out.name}*")), "a temp file was left behind"


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_missing_model_folder(cli, tmp_path):
    out = tmp_path / "o.gguf"
    _assert_clean_error(cli("convert", tmp_path / "nope", "-o", out), out, "does not exist")


def test_folder_without_config(cli, tmp_path):
    (tmp_path / "m").mkdir()
    out = tmp_path / "o.gguf"
    _assert_clean_error(cli("convert", tmp_path / "m", "-o", out), out, "config.json")


def test_unsupported_architecture(cli, tiny_model, tmp_path):
    m = _copy(tiny_model("LlamaForCausalLM"), tmp_path / "m")
    cfg = json.loads((m / "config.json").read_text())
    cfg["architectures"] = ["GPT2LMHeadModel"]
    (m / "config.json").write_text(json.dumps(cfg))
    out = tmp_path / "o.gguf"
    _assert_clean_error(cli("convert", m, "-o", out), out, "GPT2LMHeadModel", "LlamaForCausalLM", "Qwen3ForCausalLM")


def test_corrupt_safetensors(cli, tiny_model, tmp_path):
    m = _copy(tiny_model("LlamaForCausalLM"), tmp_path / "m")
    (m / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    out = tmp_path / "o.gguf"
    _assert_clean_error(cli("convert", m, "-o", out), out, "model.safetensors", "not a valid safetensors")


def test_truncated_safetensors(cli, tiny_model, tmp_path):
    m = _copy(tiny_model("LlamaForCausalLM"), tmp_path / "m")
    data = (m / "model.safetensors").read_bytes()
    (m / "model.safetensors").write_bytes(data[: len(data) // 2])
    out = tmp_path / "o.gguf"
    _assert_clean_error(cli("convert", m, "-o", out), out, "truncated")


def test_truncated_gguf(cli, tiny_model, tmp_path):
    good = tmp_path / "good.gguf"
    assert cli("convert", tiny_model("LlamaForCausalLM"), "-o", good, "-t", "F16", "-q", "--method", "rtn").exit_code == 0
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    out = tmp_path / "o.gguf"
    _assert_clean_error(cli("convert", bad, "-o", out), out, "bad.gguf")


def test_not_a_gguf(cli, tmp_path):
    bad = tmp_path / "x.gguf"
    bad.write_bytes(b"PK\x03\x04 this is a zip, not gguf" * 10)
    out = tmp_path / "o.gguf"
    _assert_clean_error(cli("convert", bad, "-o", out), out, "not a GGUF file")


def test_unknown_type(cli, tiny_model, tmp_path):
    out = tmp_path / "o.gguf"
    _assert_clean_error(cli("convert", tiny_model("LlamaForCausalLM"), "-o", out, "-t", "Q4_Z"), out, "Q4_Z", "Q4_K_M")


def test_output_exists_without_force(cli, tiny_model, tmp_path):
    out = tmp_path / "o.gguf"
    out.write_bytes(b"keep me")
    result = cli("convert", tiny_model("LlamaForCausalLM"), "-o", out, "--method", "rtn")
    assert result.exit_code == 2 and "--force" in result.stderr
    assert out.read_bytes() == b"keep me"
    assert cli("convert", tiny_model("LlamaForCausalLM"), "-o", out, "--force", "-q", "-t", "Q8_0", "--method", "rtn").exit_code == 0
    assert out.read_bytes()[:4] == b"GGUF"


def test_output_folder_not_writable(cli, tiny_model, tmp_path):
    # /proc refuses new files even to root, for whom chmod-based read-only folders are writable anyway.
    out = Path("/proc/awq-gguf-test.gguf")
    _assert_clean_error(cli("convert", tiny_model("LlamaForCausalLM"), "-o", out), None, "not writable")
    missing = tmp_path / "no" / "such" / "dir" / "o.gguf"
    _assert_clean_error(cli("convert", tiny_model("LlamaForCausalLM"), "-o", missing), None, "does not exist")


@pytest.mark.parametrize("bad_value", [float("nan"), float("inf")])
def test_nan_or_inf_weight_names_the_tensor(cli, tiny_model, tmp_path, bad_value):
    m = _copy(tiny_model("LlamaForCausalLM"), tmp_path / "m")
    tensors = load_file(m / "model.safetensors")
    tensors["model.layers.1.mlp.up_proj.weight"][3, 7] = bad_value
    save_file(tensors, m / "model.safetensors", metadata={"format": "pt"})
    out = tmp_path / "o.gguf"
    _assert_clean_error(cli("convert", m, "-o", out, "-t", "Q4_0", "--method", "rtn"), out, "model.layers.1.mlp.up_proj.weight", "NaN/Inf")


def test_bad_method(cli, tiny_model, tmp_path):
    out = tmp_path / "o.gguf"
    _assert_clean_error(cli("convert", tiny_model("LlamaForCausalLM"), "-o", out, "--method", "gptq"), out, "gptq")


def test_eval_missing_text(cli, tmp_path):
    _assert_clean_error(cli("eval", tmp_path / "x.gguf", "--text", tmp_path / "none.txt"), None, "none.txt")


def test_inspect_not_gguf(cli, tmp_path):
    p = tmp_path / "x.gguf"
    p.write_bytes(b"hello")
    _assert_clean_error(cli("inspect", p), None, "not a GGUF file")


def test_bf16_weights_accepted(cli, tmp_path):
    from tiny_models import make_tiny_model

    m = make_tiny_model(tmp_path / "bf16", "Qwen2ForCausalLM", dtype=torch.bfloat16)
    out = tmp_path / "o.gguf"
    result = cli("convert", m, "-o", out, "-t", "F32", "-q", "--method", "rtn")
    assert result.exit_code == 0, result.output
    assert out.stat().st_size > 0


# --- AWQ bad input -------------------------------------------------------------------------------------------


@pytest.fixture()
def awq_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("AWQ_GGUF_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_awq_empty_calibration_text(cli, tiny_model, tmp_path, awq_cache):
    calib = tmp_path / "empty.txt"
    calib.write_text("   \n\n")
    out = tmp_path / "o.gguf"
    _assert_clean_error(cli("convert", tiny_model("LlamaForCausalLM"), "-o", out, "-t", "Q4_0", "--method", "awq",
                            "--calib", calib, "-q"), out, "empty.txt")


def test_awq_too_short_calibration_says_how_many_tokens(cli, tiny_model, tmp_path, awq_cache):
    calib = tmp_path / "short.txt"
    calib.write_text("just a few words of text")
    out = tmp_path / "o.gguf"
    _assert_clean_error(cli("convert", tiny_model("LlamaForCausalLM"), "-o", out, "-t", "Q4_0", "--method", "awq",
                            "--calib", calib, "--calib-samples", "4", "--calib-seqlen", "64", "-q"),
                        out, "tokens", "need 256", "--calib-samples")


def test_awq_overflowing_activations_name_the_block(cli, tiny_model, tmp_path, awq_cache):
    m = _copy(tiny_model("LlamaForCausalLM"), tmp_path / "m")
    tensors = load_file(m / "model.safetensors")
    w = tensors["model.layers.0.mlp.down_proj.weight"]
    tensors["model.layers.0.mlp.down_proj.weight"] = w / w.abs().max() * 3e38  # finite, but the sum overflows
    save_file(tensors, m / "model.safetensors", metadata={"format": "pt"})
    calib = tmp_path / "c.txt"
    calib.write_text(" ".join(f"word{i} text" for i in range(500)))
    out = tmp_path / "o.gguf"
    _assert_clean_error(cli("convert", m, "-o", out, "-t", "Q4_0", "--method", "awq", "--calib", calib,
                            "--calib-samples", "2", "--calib-seqlen", "16", "-q"), out, "block 0", "NaN or Inf")


def test_awq_results_of_another_model_refused(cli, tiny_model, tmp_path, awq_cache):
    calib = tmp_path / "c.txt"
    calib.write_text(" ".join(f"word{i} text" for i in range(500)))
    args = ("-t", "Q4_0", "--method", "awq", "--calib", calib, "--calib-samples", "2", "--calib-seqlen", "16", "-q")
    assert cli("convert", tiny_model("LlamaForCausalLM"), "-o", tmp_path / "a.gguf", *args).exit_code == 0
    (folder,) = (awq_cache / "awq").iterdir()
    out = tmp_path / "b.gguf"
    _assert_clean_error(cli("convert", tiny_model("Qwen2ForCausalLM"), "-o", out, *args, "--resume", "--scales", folder),
                        out, "another model")


def test_awq_options_need_awq(cli, tiny_model, tmp_path):
    out = tmp_path / "o.gguf"
    _assert_clean_error(cli("convert", tiny_model("LlamaForCausalLM"), "-o", out, "--method", "rtn", "--resume"),
                        out, "--method awq")
