"""`awq-gguf run`, `bench` and `eval --backend runner` end to end on the tiny models, and their error paths."""

from __future__ import annotations

import json

import pytest

from awq_gguf.runner.generate import Sampling, generate
from awq_gguf.runner.model import Model
from awq_gguf.runner.tokenizer import Tokenizer
from synthetic_gguf import write_model_gguf

pytest.importorskip("llama_cpp")
from tiny_models import CORPUS  # noqa: E402


def test_greedy_generation_matches_llama_cpp(tiny_gguf):
    """F32 file: the runner's greedy continuation is llama.cpp's (same tokens, one thread each)."""
    import llama_cpp

    path = tiny_gguf("LlamaForCausalLM", "F32")
    tok = Tokenizer(path)
    prompt = tok.encode("The quick brown fox")
    m = Model.load(path, n_ctx=64, backend="torch", threads=1)
    ours = list(generate(m, prompt, 12, Sampling(temp=0)))
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=64, n_threads=1, n_threads_batch=1, verbose=False)
    theirs = []
    for t in llm.generate(prompt, temp=0.0, top_k=1):
        if len(theirs) == len(ours) or llm._model.token_eos() == t:  # noqa: SLF001
            break
        theirs.append(t)
    assert ours == theirs


def test_run_cli_streams_and_is_reproducible(cli, tiny_gguf):
    path = tiny_gguf("Qwen2ForCausalLM", "Q8_0")
    a = cli("run", path, "-p", "Hello world", "-n", 10, "--seed", 7, "--threads", 1)
    assert a.exit_code == 0, a.output
    assert a.stdout.startswith("Hello world") and len(a.stdout) > len("Hello world\n")
    b = cli("run", path, "-p", "Hello world", "-n", 10, "--seed", 7, "--threads", 1)
    assert b.stdout == a.stdout
    greedy = cli("run", path, "-p", "Hello world", "-n", 5, "--temp", 0, "--threads", 1)
    assert greedy.exit_code == 0 and greedy.stdout.startswith("Hello world")


def test_run_cli_errors(cli, tiny_gguf, tmp_path):
    path = tiny_gguf("MistralForCausalLM", "Q8_0")
    r = cli("run", path, "-p", CORPUS, "--ctx", 16)
    assert r.exit_code == 2 and "the context holds 16" in r.stderr and r.stderr.count("\n") == 1, r.output
    r = cli("run", path, "-p", "hi", "--chat")  # the tiny tokenizer has no chat template
    assert r.exit_code == 2 and "chat_template" in r.stderr
    r = cli("run", path, "-p", "hi", "--temp", -1)
    assert r.exit_code == 2
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(path.read_bytes()[:1000])
    r = cli("run", bad, "-p", "hi")
    assert r.exit_code == 2 and r.stderr.startswith("error: ") and "truncated" in r.stderr
    r = cli("run", write_model_gguf(tmp_path / "g.gguf", arch="gpt2"), "-p", "hi")
    assert r.exit_code == 2 and "gpt2" in r.stderr
    r = cli("run", path, "-p", "hi", "--backend", "cuda")
    assert r.exit_code == 2 and "unknown runner backend" in r.stderr


def test_chat_prompt_uses_the_files_template(tiny_gguf):
    from awq_gguf.demo import demo_gguf_path

    try:
        demo = demo_gguf_path()
    except Exception:  # noqa: BLE001 -- no demo model offline
        pytest.skip("demo model not available")
    text = Tokenizer(demo).chat_prompt("Hi there")
    assert text.endswith("<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n")


def test_eval_runner_matches_llama_cpp(cli, tiny_gguf, tmp_path):
    path = tiny_gguf("Qwen3ForCausalLM", "F32")
    text = tmp_path / "t.txt"
    text.write_text(CORPUS)
    runs = {}
    for backend in ("runner", "llama.cpp"):
        r = cli("eval", path, "--text", text, "--ctx", 64, "--json", "--backend", backend)
        assert r.exit_code == 0, r.output
        runs[backend] = json.loads(r.stdout.strip().splitlines()[-1])
    assert runs["runner"]["n_tokens"] == runs["llama.cpp"]["n_tokens"]
    assert runs["runner"]["ppl"] == pytest.approx(runs["llama.cpp"]["ppl"], rel=1e-3)
    r = cli("eval", path, "--text", text, "--backend", "onnx")
    assert r.exit_code == 2 and "--backend" in r.stderr


def test_bench_cli_json(cli, tiny_gguf):
    path = tiny_gguf("LlamaForCausalLM", "Q4_0")
    r = cli("bench", path, "--pp", 16, "--tg", 4, "--reps", 1, "--threads", 1, "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout.strip().splitlines()[-1])
    for engine in ("runner", "llama.cpp"):
        assert d[engine]["pp"] > 0 and d[engine]["tg"] > 0 and d[engine]["tg_bytes_per_s"] > 0
    assert d["threads"] == 1 and d["weight_bytes"] > 0 and set(d["ratio"]) == {"pp", "tg"}
    r = cli("bench", path, "--pp", 8, "--tg", 2, "--reps", 1, "--no-peer")
    assert r.exit_code == 0 and "llama.cpp" not in r.stdout.split("\n", 1)[1]
