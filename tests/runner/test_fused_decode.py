"""The runner's fused one-token decode (every layer in one C call, cpu_kernels.DecodeStack) against its
torch path (the same C matrix kernels, one call per product, torch for the rest) on the tiny converted models:
every architecture (llama NORMAL RoPE, qwen2 biases + NEOX, qwen3 q/k norms + head_dim 96), float and
quantized files, a prompt batch first and then tokens one at a time through the shared KV cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from awq_gguf.perplexity import log_softmax
from awq_gguf.runner.backend import kernels_available
from awq_gguf.runner.model import Model

from tiny_models import ARCH_CONFIGS  # noqa: E402

pytestmark = pytest.mark.skipif(not kernels_available(), reason="awq_gguf.cpu_kernels is not built here")

ARCHS = list(ARCH_CONFIGS)
PROMPT = [1, 17, 42, 99, 5]
STEPS = [7, 8, 250, 31, 64, 3, 12, 77, 140, 9, 200, 33]


def _logits(path, fused: bool, threads: int = 1) -> tuple[Model, np.ndarray]:
    m = Model.load(path, n_ctx=32, backend="kernels", threads=threads)
    m.fused_decode = fused
    cache = m.new_cache()
    out = [m.forward(PROMPT, cache)[-1]]
    out += [m.forward([t], cache)[-1] for t in STEPS]
    assert cache.n_past == len(PROMPT) + len(STEPS)
    return m, torch.stack(out).numpy()


def _kl(p_logits: np.ndarray, q_logits: np.ndarray) -> float:
    lp, lq = log_softmax(p_logits.astype(np.float64)), log_softmax(q_logits.astype(np.float64))
    return float((np.exp(lp) * (lp - lq)).sum(-1).mean())


@pytest.mark.parametrize("arch", ARCHS)
def test_fused_equals_torch_path_f32(tiny_gguf, arch):
    path = tiny_gguf(arch, "F32")
    fused_m, fused = _logits(path, True)
    assert fused_m._stack is not None, "the fused path did not run"
    _, ref = _logits(path, False)
    assert np.isfinite(fused).all()
    np.testing.assert_allclose(fused, ref, rtol=0, atol=1e-4 * np.abs(ref).max())


@pytest.mark.parametrize("arch,type_", [("LlamaForCausalLM", "Q4_0"), ("Qwen2ForCausalLM", "Q4_K_M"),
                                        ("Qwen3ForCausalLM", "Q8_0"), ("MistralForCausalLM", "Q5_K_M")])
def test_fused_close_to_torch_path_quantized(tiny_gguf, arch, type_):
    """Both paths round activations to 8 bits; a last-bit difference upstream may move a rounding near-tie
    by one quantum, so agreement is close rather than exact (as the kernels-vs-torch backend test)."""
    path = tiny_gguf(arch, type_)
    _, fused = _logits(path, True, threads=2)
    _, ref = _logits(path, False)
    assert (fused.argmax(-1) == ref.argmax(-1)).mean() >= 0.9
    assert _kl(ref, fused) < 1e-3
    assert np.median(np.abs(fused - ref).max(-1)) < 2e-2 * np.abs(ref).max()


def test_fused_off_for_emulation_and_torch_backend(tiny_gguf, monkeypatch):
    path = tiny_gguf("LlamaForCausalLM", "Q8_0")
    assert not Model.load(path, n_ctx=16, backend="torch").fused_decode_ready()
    assert not Model.load(path, n_ctx=16, emulate_llama_cpp=True).fused_decode_ready()
    assert Model.load(path, n_ctx=16, backend="kernels").fused_decode_ready()
    monkeypatch.setenv("AWQ_GGUF_FUSED_DECODE", "0")
    assert not Model.load(path, n_ctx=16, backend="kernels").fused_decode_ready()


def test_fused_rebinds_a_new_cache_and_overflow_raises(tiny_gguf):
    from awq_gguf.runner.errors import ContextOverflowError

    path = tiny_gguf("Qwen2ForCausalLM", "Q8_0")
    m = Model.load(path, n_ctx=8, backend="kernels", threads=1)
    first = []
    for _ in range(2):  # a fresh cache each time gives the same logits (the stack follows the new cache)
        cache = m.new_cache()
        first.append(torch.stack([m.forward([t], cache)[-1] for t in STEPS[:8]]).numpy())
    np.testing.assert_array_equal(first[0], first[1])
    with pytest.raises(ContextOverflowError):
        m.forward([1], cache)


def test_chunked_prompt_attention_equals_one_chunk(tiny_gguf, monkeypatch):
    """Prompt batches attend in query chunks over only the keys each chunk can see; the result equals one
    masked call over everything, also when the batch starts after cached positions."""
    import awq_gguf.runner.model as model_mod

    path = tiny_gguf("Qwen3ForCausalLM", "F32")
    toks = [(7 * i) % 300 + 3 for i in range(290)]
    runs = []
    for chunk in (model_mod.ATTN_CHUNK, 10_000):
        monkeypatch.setattr(model_mod, "ATTN_CHUNK", chunk)
        m = Model.load(path, n_ctx=300, backend="torch", threads=1)
        cache = m.new_cache()
        first = m.forward(toks[:37], cache, all_logits=True)
        rest = m.forward(toks[37:], cache, all_logits=True)
        runs.append(torch.cat([first, rest]).numpy())
    assert model_mod.ATTN_CHUNK == 10_000 and runs[0].shape == (290, runs[0].shape[1])
    np.testing.assert_allclose(runs[0], runs[1], rtol=0, atol=1e-4)


def test_refused_stack_falls_back_with_a_warning(tiny_gguf, monkeypatch):
    from awq_gguf import cpu_kernels as ck

    path = tiny_gguf("LlamaForCausalLM", "Q8_0")
    m = Model.load(path, n_ctx=16, backend="kernels", threads=1)

    def refuse():
        raise ck.KernelShapeError("refused for the test")

    monkeypatch.setattr(m, "_build_stack", refuse)
    cache = m.new_cache()
    with pytest.warns(RuntimeWarning, match="refused for the test"):
        logits = m.forward([3], cache)
    assert m.fused_decode is False and m._stack is None and cache.n_past == 1
    ref = Model.load(path, n_ctx=16, backend="kernels", threads=1)
    ref.fused_decode = False
    np.testing.assert_array_equal(logits.numpy(), ref.forward([3], ref.new_cache()).numpy())
