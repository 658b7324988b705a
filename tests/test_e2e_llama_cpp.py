"""llama.cpp (llama-cpp-python) loads what the converter writes and agrees with transformers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from awq_gguf.config import ConvertConfig
from awq_gguf.convert.arch import ARCHITECTURES
from awq_gguf.convert.pipeline import convert_model
from awq_gguf.perplexity import load_llama, perplexity, tokenize
from awq_gguf.verify import hf_token_ids, verify

llama_cpp = pytest.importorskip("llama_cpp")

from tiny_models import CORPUS  # noqa: E402

ARCHS = list(ARCHITECTURES)


def _convert(model: Path, out: Path, type_: str) -> Path:
    convert_model(ConvertConfig(method="rtn", model=model, out=out, type=type_, progress=False))
    return out


@pytest.mark.parametrize("arch", ARCHS)
def test_f32_logits_match_transformers(tiny_model, tmp_path, arch):
    """F32 file: same tokens, top-1 identical everywhere, KL ~ 0, perplexity equal to 1e-3 relative.

    Not closer: llama.cpp keeps its KV cache in F16 by default (as llama-perplexity runs it)."""
    out = _convert(tiny_model(arch), tmp_path / "m.gguf", "F32")
    r = verify(out, None, CORPUS, ctx=64, chunks=4)
    assert r.tokens_equal, r.first_mismatch
    assert r.top1_agreement == 1.0
    assert r.mean_kl < 1e-6
    assert r.ppl_gguf == pytest.approx(r.ppl_reference, rel=1e-3)


@pytest.mark.parametrize("type_", ["Q8_0", "Q4_0", "Q4_K_M", "Q2_K"])
def test_quantized_files_load_and_degrade_gracefully(tiny_model, tmp_path, type_):
    model = tiny_model("Qwen3ForCausalLM")
    out = _convert(model, tmp_path / "m.gguf", type_)
    r = verify(out, None, CORPUS, ctx=64, chunks=4)
    assert r.tokens_equal
    # Quantization changes logits, but a file that decodes its blocks wrongly gives near-random agreement.
    # (Random tiny models have flat, sensitive logits; llama.cpp also rounds activations to 8 bits.)
    bound = {"Q8_0": 5e-3, "Q4_0": 0.1, "Q4_K_M": 0.1, "Q2_K": 1.0}[type_]
    assert r.mean_kl < bound, r
    assert r.ppl_gguf > 1.0


def test_tokenizer_matches_transformers_on_varied_text(tiny_model, tmp_path):
    model = tiny_model("LlamaForCausalLM")
    out = _convert(model, tmp_path / "m.gguf", "Q8_0")
    text = CORPUS + " 12345 67.89\n\n\tTabs   and  spaces, ünïcödé — dashes… “quotes” 日本語 🙂 end"
    llm = load_llama(out, 64, vocab_only=True)
    assert tokenize(llm, text) == hf_token_ids(model, text)
    # Special tokens written in the text: HF tokenizers always parse them; llama.cpp does when asked to.
    chat = "<|im_start|>user\nHi 42<|im_end|>\n"
    ids = llm.tokenize(chat.encode(), add_bos=True, special=True)
    assert ids == hf_token_ids(model, chat)
    assert ids[0] == 1 and 2 in ids


def test_eval_cli_json(cli, tiny_model, tmp_path):
    out = _convert(tiny_model("MistralForCausalLM"), tmp_path / "m.gguf", "Q8_0")
    text = tmp_path / "t.txt"
    text.write_text(CORPUS)
    result = cli("eval", out, "--text", text, "--ctx", 64, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout.strip().splitlines()[-1])
    assert data["ppl"] == pytest.approx(perplexity(out, CORPUS, ctx=64, progress=False).ppl, rel=1e-6)
    assert data["ppl"] > 1.0 and data["chunks"] >= 2


def test_eval_text_too_short(cli, tiny_model, tmp_path):
    out = _convert(tiny_model("MistralForCausalLM"), tmp_path / "m.gguf", "Q8_0")
    text = tmp_path / "t.txt"
    text.write_text("just a few words")
    result = cli("eval", out, "--text", text, "--ctx", 64)
    assert result.exit_code == 2 and "needs at least 128" in result.stderr


def test_perplexity_matches_manual_computation(tiny_model, tmp_path):
    """Our windowing equals a direct computation: windows of ctx, second half scored, no BOS (add_bos false)."""
    out = _convert(tiny_model("LlamaForCausalLM"), tmp_path / "m.gguf", "F32")
    llm = load_llama(out, 64)
    toks = tokenize(llm, CORPUS)
    nll = []
    for i in range(len(toks) // 64):
        w = toks[i * 64 : (i + 1) * 64]
        llm.reset()
        llm.eval(w)
        logits = np.array(llm.scores[:64], dtype=np.float64)
        for j in range(32, 63):
            row = logits[j] - logits[j].max()
            nll.append(np.log(np.exp(row).sum()) - row[w[j + 1]])
    expected = float(np.exp(np.mean(nll)))
    assert perplexity(out, CORPUS, ctx=64, progress=False).ppl == pytest.approx(expected, rel=1e-9)


def test_inspect_cli(cli, tiny_model, tmp_path):
    out = _convert(tiny_model("Qwen2ForCausalLM"), tmp_path / "m.gguf", "Q4_0")
    result = cli("inspect", out)
    assert result.exit_code == 0, result.output
    assert "general.architecture = qwen2" in result.stdout
    assert "Q4_0" in result.stdout and "total" in result.stdout
