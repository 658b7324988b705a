"""The GPU runner (runner.gpu_model) against the CPU runner on the same converted tiny files.

Everywhere: the GPU forward pass's graph run on the CPU with float16 weights (upload_weights(kernels=False)):
prompt, a multi-token step and one-token steps against runner.model.Model's torch backend, per architecture;
the decode step over a masked context bucket equals the step over exactly the cached positions; a retired cache
raises; `--device cuda` without a usable GPU is one line and exit code 2.
With a GPU (marked gpu): the real thing, CUDA kernels and CUDA graphs, against the CPU runner, with float
activations (tight) and with the kernels' default int8 activations (as loose as that rounding).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from awq_gguf.runner.gguf_file import open_checked
from awq_gguf.runner.gpu_model import GpuModel
from awq_gguf.runner.gpu_weights import upload_weights
from awq_gguf.runner.hparams import read_hparams
from awq_gguf.runner.model import Model
from awq_gguf.runner.weights import load_weights, vocab_size

ARCHS = ["LlamaForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM"]
N_CTX = 96


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """||a - b|| / ||b|| in float64."""
    a, b = a.double(), b.double()
    return float((a - b).norm() / b.norm())


def cpu_graph_model(path, act_q8: bool = True) -> GpuModel:
    """The GPU model's forward on the CPU, every matrix float16, no graphs."""
    f = open_checked(path)
    hp = read_hparams(f, vocab_size(f))
    w = load_weights(f, hp)
    dev = torch.device("cpu")
    return GpuModel(f, hp, w, upload_weights(w, dev, kernels=False), N_CTX, dev, act_q8=act_q8, graphs=False)


def tokens(model, n: int, seed: int) -> list[int]:
    return np.random.default_rng(seed).integers(0, model.hp.n_vocab, n).tolist()


def run_sequence(model, ids: list[int]) -> list[torch.Tensor]:
    """Logits of: a 20-token prompt (all positions), a 5-token step, then single tokens one at a time."""
    cache = model.new_cache()
    out = [model.forward(ids[:20], cache, all_logits=True), model.forward(ids[20:25], cache, all_logits=True)]
    out += [model.forward([t], cache) for t in ids[25:]]
    assert cache.n_past == len(ids)
    return out


@pytest.mark.parametrize("arch", ARCHS)
def test_graph_on_cpu_matches_cpu_runner(tiny_gguf, arch):
    path = tiny_gguf(arch, "Q8_0")
    ref = Model.load(path, n_ctx=N_CTX, backend="torch")
    ids = tokens(ref, 34, seed=1)
    want = run_sequence(ref, ids)
    got = run_sequence(cpu_graph_model(path, act_q8=False), ids)
    for i, (g, w) in enumerate(zip(got, want)):
        assert g.shape == w.shape and g.dtype == torch.float32 and g.device.type == "cpu"
        assert rel(g, w) < 1e-2, f"call {i}: {rel(g, w):.2e}"  # float16 weights and activations


def test_bucket_mask_equals_exact_context(tiny_gguf):
    """A decode step over a whole bucket (later positions masked, holding an old sequence's keys) gives what the
    step over exactly the cached positions gives. The float16 weights round each product's input to float16, so a
    sum taken in another order can move a logit by a float16 ulp (~1e-3); a stale key attended would move them
    by far more."""
    m = cpu_graph_model(tiny_gguf("LlamaForCausalLM", "Q8_0"), act_q8=False)
    old = m.new_cache()
    m.forward(tokens(m, 60, seed=2), old)  # fills positions 0..59 with another sequence
    cache = m.new_cache()
    m.forward(tokens(m, 10, seed=3), cache)
    m._tok.fill_(7)
    m._pos.fill_(10)
    with torch.no_grad():
        exact = m._decode_step(cache, 11)
        bucket = m._decode_step(cache, 64)
    assert torch.isfinite(bucket).all()
    assert rel(bucket, exact) < 3e-3


def test_retired_cache_raises(tiny_gguf):
    from awq_gguf.runner.errors import RunnerError

    m = cpu_graph_model(tiny_gguf("LlamaForCausalLM", "Q8_0"))
    first = m.new_cache()
    m.forward([1, 2], first)
    m.new_cache()
    with pytest.raises(RunnerError, match="retired"):
        m.forward([3], first)


def test_bad_tokens_raise(tiny_gguf):
    from awq_gguf.runner.errors import ContextOverflowError, RunnerError

    m = cpu_graph_model(tiny_gguf("LlamaForCausalLM", "Q8_0"))
    cache = m.new_cache()
    with pytest.raises(RunnerError, match="out of range"):
        m.forward([m.hp.n_vocab], cache)
    with pytest.raises(RunnerError, match="at least one token"):
        m.forward([], cache)
    with pytest.raises(ContextOverflowError):
        m.forward([1] * (N_CTX + 1), cache)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error where CUDA is missing")
@pytest.mark.parametrize("command", ["run", "bench", "eval"])
def test_device_cuda_without_gpu_is_one_line_exit_2(cli, tiny_gguf, tmp_path, command):
    path = str(tiny_gguf("LlamaForCausalLM", "Q8_0"))
    text = tmp_path / "t.txt"
    text.write_text("hello world " * 50)
    args = {"run": ["run", path, "-p", "hi", "--device", "cuda"],
            "bench": ["bench", path, "--device", "cuda"],
            "eval": ["eval", path, "--text", str(text), "--backend", "runner", "--device", "cuda"]}[command]
    r = cli(*args)
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "--device cuda is not available here" in lines[0] and "CUDA" in lines[0]


def test_device_option_errors(cli, tiny_gguf):
    path = str(tiny_gguf("LlamaForCausalLM", "Q8_0"))
    r = cli("run", path, "-p", "hi", "--device", "tpu")
    assert r.exit_code == 2 and "--device must be one of cpu, cuda" in r.output
    r = cli("eval", path, "--text", path, "--device", "cuda")
    assert r.exit_code == 2 and "add --backend runner" in r.output


# --- on a GPU ------------------------------------------------------------------------------------------------

GPU_TYPES = ["Q4_0", "Q8_0", "Q4_K_M"]


def gpu_model(path, act_q8: bool, graphs: bool = True) -> GpuModel:
    from awq_gguf import cuda_kernels

    if not cuda_kernels.available():
        pytest.fail(cuda_kernels.unavailable_reason())
    return GpuModel.load(path, n_ctx=N_CTX, act_q8=act_q8, graphs=graphs)


@pytest.mark.gpu
@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("type_", GPU_TYPES)
def test_gpu_runner_matches_cpu_runner(tiny_gguf, arch, type_):
    """Float activations: only float16 rounding of activations and weights-as-read separates the two (~1e-3);
    int8 activations (the default) add the per-32 rounding of every product's input (~5e-3 each)."""
    path = tiny_gguf(arch, type_)
    ref = Model.load(path, n_ctx=N_CTX, backend="torch")
    ids = tokens(ref, 34, seed=4)
    want = run_sequence(ref, ids)
    exact = gpu_model(path, act_q8=False)
    got = run_sequence(exact, ids)
    assert exact.graphs, "graph capture failed"
    for i, (g, w) in enumerate(zip(got, want)):
        assert g.shape == w.shape and torch.isfinite(g).all()
        assert rel(g, w) < 5e-3, f"float activations, call {i}: {rel(g, w):.2e}"
    fast = run_sequence(gpu_model(path, act_q8=True), ids)
    errs = [rel(g, w) for g, w in zip(fast, want)]
    assert max(errs) < 6e-2, f"int8 activations: {max(errs):.2e}"
    top1 = np.mean([bool((g.argmax(-1) == w.argmax(-1)).all()) for g, w in zip(fast, want)])
    assert top1 >= 0.8, f"top-1 agreement {top1:.2f}"


@pytest.mark.gpu
@pytest.mark.parametrize("arch", ARCHS)
def test_fused_decode_step_matches_unfused(tiny_gguf, arch):
    """The decode step on the fused kernels against the torch-op step on the same cache and token. With SDPA for
    attention (fused_attn off) it is the same arithmetic up to float32 summation order, which can move an
    activation's int8 rounding by one step: close. The attention kernel rounds its float32 output to int8 where
    the torch step rounds SDPA's float16 output, so many of wo's inputs move by one step (the two differ by ~2e-2
    on these tiny models): it is held to be no farther than the torch step from the float-activation step."""
    path = tiny_gguf(arch, "Q4_K_M")
    m = gpu_model(path, act_q8=True, graphs=False)
    assert m.fused and m.fused_attn, "the fused step is not on by default"
    exact = gpu_model(path, act_q8=False, graphs=False)  # float activations: the reference both are rounded from
    ids = tokens(m, 12, seed=6)
    logits, caches = {}, {}
    for model, name in ((m, "q8"), (exact, "exact")):
        cache = caches[name] = model.new_cache()
        model.forward(ids[:10], cache)
        model._tok.fill_(ids[10])
        model._pos.fill_(10)
        t = model._bucket(11)
        with torch.no_grad():
            if model is exact:
                logits["exact"] = model._decode_step(cache, t)
                continue
            for fused, attn in ((False, False), (True, False), (True, True)):
                m.fused, m.fused_attn = fused, attn
                logits[(fused, attn)] = model._decode_step(cache, t)
                if not fused:
                    k_ref = cache.storage.k[0][:, 10].clone()
    torch.cuda.synchronize()
    ref, sdpa, kernel, ex = logits[(False, False)], logits[(True, False)], logits[(True, True)], logits["exact"]
    assert all(torch.isfinite(v).all() and v.shape == ex.shape for v in (ref, sdpa, kernel))
    assert rel(sdpa, ref) < 2e-3, f"{arch}, fused with SDPA: {rel(sdpa, ref):.2e}"
    assert rel(caches["q8"].storage.k[0][:, 10], k_ref) < 2e-3  # the RoPE'd key the fused kernel stored
    assert rel(kernel, ex) < 1.5 * rel(ref, ex) + 2e-3, f"{arch}: {rel(kernel, ex):.2e} vs {rel(ref, ex):.2e}"


@pytest.mark.gpu
def test_graphs_replay_equals_eager(tiny_gguf):
    """Replaying the captured decode graphs gives what the same steps give eagerly, step after step."""
    path = tiny_gguf("LlamaForCausalLM", "Q4_K_M")
    ids = tokens(gpu_model(path, act_q8=True, graphs=False), 40, seed=5)
    eager = run_sequence(gpu_model(path, act_q8=True, graphs=False), ids)
    graphed_model = gpu_model(path, act_q8=True, graphs=True)
    graphed = run_sequence(graphed_model, ids)
    assert graphed_model.graphs and graphed_model._graphs, "no graph was captured"
    for g, e in zip(graphed, eager):
        assert rel(g, e) < 1e-6


@pytest.mark.gpu
def test_gpu_bench_reports_bound(tiny_gguf):
    from awq_gguf.runner.bench import bench

    rep = bench(tiny_gguf("LlamaForCausalLM", "Q4_0"), n_pp=32, n_tg=8, reps=1, device="cuda")
    d = rep.as_dict()
    assert d["runner"]["tg"] > 0 and d["runner"]["pp"] > 0
    assert rep.copy_bandwidth > 1e11 and d["tg_bound"] > d["runner"]["tg"]
    assert "llama.cpp" not in d and "cuda:" in d["runner"]["backend"]
