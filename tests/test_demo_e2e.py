"""End to end on the demo model (SmolLM2-135M-Instruct): convert, load in llama.cpp, compare with transformers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import gguf
import pytest

from awq_gguf.config import ConvertConfig
from awq_gguf.convert.pipeline import convert_model
from awq_gguf.demo import demo_hf_folder
from awq_gguf.perplexity import perplexity
from awq_gguf.verify import verify

pytest.importorskip("llama_cpp")
ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wiki_text() -> str:
    """About 60k characters of the held-out Wikipedia text (fetched with tools/fetch_text.py if missing)."""
    path = ROOT / "data/wiki.eval.txt"
    if not path.is_file():
        subprocess.run([sys.executable, str(ROOT / "tools/fetch_text.py")], check=True)
    return path.read_text(encoding="utf-8")[:60_000]


@pytest.fixture(scope="module")
def f16(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "demo-F16.gguf"
    convert_model(ConvertConfig(method="rtn", model=None, out=out, type="F16", progress=False))
    return out


def test_f16_agrees_with_transformers(f16, wiki_text):
    r = verify(f16, None, wiki_text, ctx=512, chunks=8)
    assert r.tokens_equal, f"first differing token at {r.first_mismatch}"
    assert r.top1_agreement > 0.99
    assert r.mean_kl < 1e-4
    assert r.ppl_gguf == pytest.approx(r.ppl_reference, rel=0.002)


def test_default_type_and_name(tmp_path, monkeypatch, cli):
    monkeypatch.chdir(tmp_path)
    result = cli("convert", "-q", "--method", "rtn")
    assert result.exit_code == 0, result.output
    out = tmp_path / "SmolLM2-135M-Instruct-Q4_K_M.gguf"
    assert out.is_file() and "Q4_K_M" in result.stdout and "bits per weight" in result.stdout
    reader = gguf.GGUFReader(out)
    assert reader.get_field("general.file_type").contents() == int(gguf.LlamaFileType.MOSTLY_Q4_K_M)
    kinds = {t.name: t.tensor_type.name for t in reader.tensors}
    # Hidden size 576 is not a multiple of 256: only the 1536-wide ffn_down rows can take K blocks.
    assert kinds["blk.0.ffn_down.weight"] in ("Q4_K", "Q6_K")
    assert kinds["blk.0.attn_q.weight"] == "Q5_0"


@pytest.mark.parametrize("type_", ["Q8_0", "Q4_0"])
def test_quantized_perplexity_is_sane(f16, wiki_text, tmp_path, type_):
    out = convert_model(ConvertConfig(method="rtn", model=f16, out=tmp_path / f"{type_}.gguf", type=type_, progress=False)).out
    base = perplexity(f16, wiki_text, ctx=512, chunks=4, progress=False).ppl
    ppl = perplexity(out, wiki_text, ctx=512, chunks=4, progress=False).ppl
    assert base < ppl < base * {"Q8_0": 1.01, "Q4_0": 1.5}[type_]
