"""Calibration text -> token windows, and the errors for text that cannot make them."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from awq_gguf.awq_scale.calib import (
    CalibrationError, calibration_tokens, make_windows, read_calibration, source_tokenizer,
)
from awq_gguf.convert.source import open_source
from awq_gguf.errors import AwqGgufError

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))
from tiny_models import CORPUS  # noqa: E402


def test_plain_text_windows(tiny_model, tmp_path):
    source = open_source(tiny_model("LlamaForCausalLM"))
    path = tmp_path / "calib.txt"
    path.write_text(CORPUS * 3)
    encode, bos = source_tokenizer(source)
    ids = encode(CORPUS * 3)
    w = calibration_tokens(path, source, n_samples=4, seqlen=32)
    assert w.shape == (4, 32) and w.dtype == torch.long
    assert w[0].tolist() == ids[:32]  # the first window opens the text (this tokenizer adds no BOS)
    assert bos is None
    last = (len(ids) // 32 - 1) * 32
    assert w[-1].tolist() == ids[last : last + 32]  # windows spread to the end


def test_jsonl_documents(tiny_model, tmp_path):
    source = open_source(tiny_model("Qwen2ForCausalLM"))
    path = tmp_path / "calib.jsonl"
    docs = [CORPUS[:300], CORPUS[300:700], CORPUS]
    path.write_text("\n".join(json.dumps({"text": d, "meta": 1}) for d in docs) + "\n\n")
    assert read_calibration(path) == docs
    encode, _ = source_tokenizer(source)
    ids = [i for d in docs for i in encode(d)]
    w = calibration_tokens(path, source, n_samples=2, seqlen=16)
    assert w[0].tolist() == ids[:16]


def test_bos_replaces_the_first_token():
    w = make_windows(list(range(100)), n_samples=3, seqlen=10, bos=7)
    assert w[:, 0].tolist() == [7, 7, 7]
    assert w[0, 1:].tolist() == list(range(1, 10))
    assert w[-1, 1:].tolist() == list(range(91, 100))


@pytest.mark.parametrize("content, match", [
    ("", "holds no text"),
    ("  \n\t\n", "holds no text"),
])
def test_empty_text(tiny_model, tmp_path, content, match):
    path = tmp_path / "c.txt"
    path.write_text(content)
    with pytest.raises(CalibrationError, match=match):
        calibration_tokens(path, open_source(tiny_model("LlamaForCausalLM")), 2, 16)


def test_too_short_text_says_how_many_tokens(tiny_model, tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("Hello world. " * 5)
    with pytest.raises(CalibrationError, match=r"has \d+ tokens; 8 samples of 64 tokens need 512"):
        calibration_tokens(path, open_source(tiny_model("LlamaForCausalLM")), 8, 64)


@pytest.mark.parametrize("line, match", [("not json", "line 2: not JSON"), ('{"txt": "a"}', 'line 2: expected')])
def test_bad_jsonl(tmp_path, line, match):
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps({"text": "fine"}) + "\n" + line + "\n")
    with pytest.raises(CalibrationError, match=match):
        read_calibration(path)


def test_missing_and_non_utf8(tmp_path):
    with pytest.raises(CalibrationError, match="does not exist"):
        read_calibration(tmp_path / "nope.txt")
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"abc \xff\xfe def")
    with pytest.raises(CalibrationError, match="not UTF-8"):
        read_calibration(bad)


def test_errors_are_one_line_project_errors(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("")
    with pytest.raises(AwqGgufError) as e:
        read_calibration(path)
    assert "\n" not in str(e.value)


def test_seqlen_beyond_context_is_truncated(tiny_model, tmp_path, caplog):
    source = open_source(tiny_model("LlamaForCausalLM"))  # max_position_embeddings 256
    path = tmp_path / "c.txt"
    path.write_text(CORPUS * 6)
    with caplog.at_level(logging.WARNING):
        w = calibration_tokens(path, source, n_samples=2, seqlen=300)
    assert w.shape == (2, 256)
    assert "longer than the model's context 256" in caplog.text


def test_bad_counts(tiny_model, tmp_path):
    path = tmp_path / "c.txt"
    path.write_text(CORPUS)
    source = open_source(tiny_model("LlamaForCausalLM"))
    with pytest.raises(CalibrationError, match="--calib-samples"):
        calibration_tokens(path, source, 0, 16)
    with pytest.raises(CalibrationError, match="--calib-seqlen"):
        calibration_tokens(path, source, 2, 1)


def test_gguf_source_tokenizes_as_the_hf_folder(tiny_model, tmp_path):
    from awq_gguf.config import ConvertConfig
    from awq_gguf.convert.pipeline import convert_model

    folder = tiny_model("LlamaForCausalLM")
    out = tmp_path / "m.gguf"
    convert_model(ConvertConfig(method="rtn", model=folder, out=out, type="F32", progress=False))
    path = tmp_path / "c.txt"
    path.write_text(CORPUS * 2)
    hf = calibration_tokens(path, open_source(folder), 3, 24)
    gg = calibration_tokens(path, open_source(out), 3, 24)
    assert torch.equal(hf, gg)
