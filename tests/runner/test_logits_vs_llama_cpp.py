"""The runner's logits against llama.cpp's (llama-cpp-python, logits_all) on the same file and tokens.

Two modes of the runner are checked:
- emulate_llama_cpp: ggml's activation rounding (8-bit blocks / F16) and F16 KV cache, so the arithmetic is
  llama.cpp's up to float summation order. Logits then match to ~1e-6; but on the random tiny models a
  near-tie in one activation's 8-bit rounding (decided by a last-bit difference in summation order) now and
  then flips one quantum, which these very sensitive models turn into a ~0.05 logit change at that position
  and every later one. So quantized files are compared on many short windows (2 tokens: positions 0 and 1,
  through the KV cache), most of which must match exactly; a wrong decoder or RoPE would match none.
- the default (float32 activations; the C kernels where built): close to llama.cpp within what its 8-bit
  activation rounding costs on these models.
"""

from __future__ import annotations

import numpy as np
import pytest

from awq_gguf.perplexity import llama_logits, log_softmax, tokenize
from awq_gguf.runner.model import Model

pytest.importorskip("llama_cpp")
from tiny_models import ARCH_CONFIGS, CORPUS  # noqa: E402

ARCHS = list(ARCH_CONFIGS)
N_TOK = 64


def load_llama(path, n_ctx: int):
    """llama.cpp with all logits and ONE thread: on a loaded 2-core machine its OpenMP barriers spin-wait
    (torch initialised libgomp without a passive wait policy), costing ~0.5 s per tiny batch; the runner
    gets one thread too."""
    import llama_cpp

    return llama_cpp.Llama(model_path=str(path), n_ctx=n_ctx, n_batch=n_ctx, n_ubatch=n_ctx, logits_all=True,
                           n_threads=1, n_threads_batch=1, verbose=False)


def _compare(path, emulate: bool, backend: str | None = None) -> dict:
    llm = load_llama(path, N_TOK)
    toks = tokenize(llm, CORPUS)[:N_TOK]
    ref = llama_logits(llm, toks)
    m = Model.load(path, n_ctx=N_TOK, backend=backend, emulate_llama_cpp=emulate, threads=1)
    ours = m.forward(toks, m.new_cache(), all_logits=True).numpy()
    assert ours.shape == ref.shape
    lp, lq = log_softmax(ref), log_softmax(ours)
    return {
        "kl": float((np.exp(lp) * (lp - lq)).sum(-1).mean()),
        "top1": float((ref.argmax(-1) == ours.argmax(-1)).mean()),
        "median_maxdiff": float(np.median(np.abs(ref - ours).max(-1))),
        "backend": m.backend.name,
    }


@pytest.mark.parametrize("arch", ARCHS)
def test_f32_matches_llama_cpp(tiny_gguf, arch):
    path = tiny_gguf(arch, "F32")
    exact = _compare(path, emulate=True)
    assert exact["kl"] < 1e-6 and exact["top1"] == 1.0, exact
    assert exact["median_maxdiff"] < 5e-3, exact
    default = _compare(path, emulate=False)
    assert default["kl"] < 1e-5 and default["top1"] == 1.0, default


def _exact_windows(path, n_windows: int = 16, win: int = 2) -> float:
    """Fraction of short windows whose logits all match llama.cpp's to 1e-4 (emulated rounding)."""
    llm = load_llama(path, N_TOK)
    toks = tokenize(llm, CORPUS)
    m = Model.load(path, n_ctx=N_TOK, backend="torch", emulate_llama_cpp=True, threads=1)
    exact = 0
    for i in range(n_windows):
        w = toks[i * 3 : i * 3 + win]
        ours = m.forward(w, m.new_cache(), all_logits=True).numpy()
        exact += bool(np.abs(llama_logits(llm, w) - ours).max() < 1e-4)
    return exact / n_windows


@pytest.mark.parametrize("arch", ARCHS)
def test_quantized_matches_llama_cpp(tiny_gguf, arch):
    path = tiny_gguf(arch, "Q8_0")
    assert _exact_windows(path) >= 0.5
    exact = _compare(path, emulate=True)
    assert exact["kl"] < 1e-3, exact
    default = _compare(path, emulate=False)
    assert default["kl"] < 3e-3 and default["top1"] >= 0.9, default


@pytest.mark.parametrize("type_", ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K_M", "Q4_K_M", "Q5_K_M", "Q6_K"])
def test_every_written_type_matches_llama_cpp(tiny_gguf, type_):
    assert _exact_windows(tiny_gguf("LlamaForCausalLM", type_)) >= 0.5


def test_kernels_backend_matches_torch_backend(tiny_gguf):
    from awq_gguf.runner.backend import kernels_available

    if not kernels_available():
        pytest.skip("awq_gguf.cpu_kernels is not built here")
    path = tiny_gguf("Qwen2ForCausalLM", "Q4_K_M")
    k, t = _compare(path, emulate=False, backend="kernels"), _compare(path, emulate=False, backend="torch")
    assert k["backend"].startswith("kernels") and t["backend"] == "torch"
    assert k["kl"] < 3e-3 and k["top1"] >= 0.9, k


def test_incremental_decoding_equals_batch(tiny_gguf):
    """Feeding tokens one at a time through the KV cache gives the batch forward's logits."""
    path = tiny_gguf("Qwen3ForCausalLM", "F32")
    m = Model.load(path, n_ctx=32, backend="torch")
    toks = list(range(3, 23))
    batch = m.forward(toks, m.new_cache(), all_logits=True)
    cache = m.new_cache()
    m.forward(toks[:7], cache)
    steps = [m.forward([t], cache)[0] for t in toks[7:]]
    np.testing.assert_allclose(np.stack([s.numpy() for s in steps]), batch[7:].numpy(), atol=2e-4, rtol=0)
