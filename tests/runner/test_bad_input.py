"""Bad input to the runner: one-line errors (AwqGgufError subclasses; exit code 2 through the CLI)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from awq_gguf.errors import AwqGgufError, CorruptModelError
from awq_gguf.runner.errors import ContextOverflowError, UnsupportedModelError
from awq_gguf.runner.generate import Sampling, generate
from awq_gguf.runner.model import Model
from synthetic_gguf import write_model_gguf


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    return write_model_gguf(tmp_path_factory.mktemp("syn") / "good.gguf", tensor_type="Q8_0")


def _one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg and msg, msg
    return msg


def test_synthetic_model_runs(good):
    m = Model.load(good, n_ctx=16)
    assert m.forward([1, 2, 3], m.new_cache()).shape == (1, 16)


def test_missing_file(tmp_path):
    with pytest.raises(CorruptModelError, match="no such file"):
        Model.load(tmp_path / "nope.gguf")


def test_not_gguf(tmp_path):
    p = tmp_path / "x.gguf"
    p.write_bytes(b"PK\x03\x04" + bytes(100))
    with pytest.raises(CorruptModelError, match="not a GGUF file") as e:
        Model.load(p)
    _one_line(e)


@pytest.mark.parametrize("frac", [0.0, 0.01, 0.1, 0.5, 0.999])
def test_truncated(good, tmp_path, frac):
    data = good.read_bytes()
    p = tmp_path / "t.gguf"
    p.write_bytes(data[: int(len(data) * frac)])
    with pytest.raises(CorruptModelError, match="truncated") as e:
        Model.load(p)
    _one_line(e)


def test_huge_counts_rejected_before_parsing(good, tmp_path):
    data = bytearray(good.read_bytes())
    for offset, what in ((8, "tensor count"), (16, "metadata count")):
        bad = bytearray(data)
        bad[offset : offset + 8] = struct.pack("<Q", 2**62)
        p = tmp_path / "h.gguf"
        p.write_bytes(bytes(bad))
        with pytest.raises(CorruptModelError, match=what):
            Model.load(p)


def test_bad_version_and_big_endian(good, tmp_path):
    data = bytearray(good.read_bytes())
    p = tmp_path / "v.gguf"
    data[4:8] = struct.pack("<I", 99)
    p.write_bytes(bytes(data))
    with pytest.raises(CorruptModelError, match="version 99"):
        Model.load(p)
    data[4:8] = struct.pack(">I", 3)
    p.write_bytes(bytes(data))
    with pytest.raises(CorruptModelError, match="big-endian"):
        Model.load(p)


def test_unsupported_architecture(tmp_path):
    p = write_model_gguf(tmp_path / "g.gguf", arch="gpt2")
    with pytest.raises(UnsupportedModelError, match="architecture 'gpt2'") as e:
        Model.load(p)
    _one_line(e)


def test_unsupported_tensor_type(tmp_path):
    p = write_model_gguf(tmp_path / "i.gguf", tensor_type="I32")
    with pytest.raises(UnsupportedModelError, match="type I32") as e:
        Model.load(p)
    _one_line(e)


def test_missing_tensor(tmp_path):
    p = write_model_gguf(tmp_path / "m.gguf", drop=("blk.0.ffn_up.weight",))
    with pytest.raises(CorruptModelError, match="blk.0.ffn_up.weight' is missing"):
        Model.load(p)


def test_qwen2_needs_biases_qwen3_needs_qk_norms(tmp_path):
    p = write_model_gguf(tmp_path / "q2.gguf", arch="qwen2", drop=("blk.0.attn_k.bias",))
    with pytest.raises(CorruptModelError, match="attn_k.bias"):
        Model.load(p)
    p = write_model_gguf(tmp_path / "q3.gguf", arch="qwen3", drop=("blk.0.attn_q_norm.weight",))
    with pytest.raises(CorruptModelError, match="attn_q_norm"):
        Model.load(p)


def test_wrong_hparams(tmp_path):
    import gguf

    p = write_model_gguf(tmp_path / "s.gguf", extra_kv={"llama.rope.scaling.type": ("yarn", gguf.GGUFValueType.STRING)})
    with pytest.raises(UnsupportedModelError, match="yarn"):
        Model.load(p)
    p = write_model_gguf(tmp_path / "h.gguf", n_head=3, n_head_kv=2, n_embd=48)
    with pytest.raises(CorruptModelError, match="not a multiple of head_count_kv"):
        Model.load(p)


def test_prompt_longer_than_context(good):
    m = Model.load(good, n_ctx=8)
    with pytest.raises(ContextOverflowError, match="the prompt has 9 tokens; the context holds 8"):
        generate(m, list(range(9)), 4, Sampling(temp=0))
    with pytest.raises(ContextOverflowError):
        m.forward(list(range(9)), m.new_cache())


def test_token_out_of_range(good):
    m = Model.load(good, n_ctx=8)
    with pytest.raises(AwqGgufError, match="token id out of range"):
        m.forward([3, 16], m.new_cache())
