"""The runner on interleaved Q4_0 / Q4_1 / Q5_1 rows (KernelBackend.packed: cpu_kernels.matmul_packed for prompts, the fused
decode step on the same copies) and its prompt attention spread over threads (runner.parallel.TaskPool):
against the file-row kernels and one thread."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from awq_gguf.runner.backend import kernels_available
from awq_gguf.runner.model import Model
from awq_gguf.runner.parallel import TaskPool

PROMPT = [1, 17, 42, 99, 5, 7, 8, 250, 31, 64, 3, 12, 77, 140, 9, 200, 33, 2, 6, 11]

kernels = pytest.mark.skipif(not kernels_available(), reason="awq_gguf.cpu_kernels is not built here")


def _prompt_logits(path, threads: int, packed: bool) -> tuple[Model, np.ndarray]:
    m = Model.load(path, n_ctx=64, backend="kernels", threads=threads)
    m.backend._pack = packed
    return m, m.forward(PROMPT, m.new_cache(), all_logits=True).numpy()


def _decode_logits(path, packed: bool) -> tuple[Model, np.ndarray]:
    """A prompt, then tokens one at a time through the fused decode step."""
    m = Model.load(path, n_ctx=64, backend="kernels", threads=2)
    m.backend._pack = packed
    cache = m.new_cache()
    out = [m.forward(PROMPT[:5], cache)[-1]] + [m.forward([t], cache)[-1] for t in PROMPT[5:]]
    return m, torch.stack(out).numpy()


@kernels
@pytest.mark.parametrize("type_", ["Q4_0", "Q4_1", "Q5_1"])
def test_packed_prompt_close_to_file_rows(tiny_gguf, type_):
    """Same integer block sums, another float summation order: close, not bit-equal (as the fused decode)."""
    from awq_gguf import cpu_kernels as ck
    from gguf import GGMLQuantizationType as QT

    if not ck.packed_gemm_native(QT[type_]):
        pytest.skip(f"ISA {ck.isa()} has no interleaved {type_} kernel: the runner keeps the file's rows")
    path = tiny_gguf("LlamaForCausalLM", type_)
    m, packed = _prompt_logits(path, 2, True)
    used = [p for p in m.backend._packed.values() if p is not None]
    assert used, "no matrix went through the interleaved kernel"
    _, ref = _prompt_logits(path, 2, False)
    assert np.isfinite(packed).all()
    assert (packed.argmax(-1) == ref.argmax(-1)).mean() >= 0.9
    assert np.median(np.abs(packed - ref).max(-1)) < 2e-2 * np.abs(ref).max()


@kernels
@pytest.mark.parametrize("type_", ["Q4_0", "Q4_1", "Q5_1"])
def test_packed_decode_close_to_file_rows(tiny_gguf, type_):
    """The fused decode step on the same interleaved copies as the prompt (one copy per matrix)."""
    from awq_gguf import cpu_kernels as ck
    from gguf import GGMLQuantizationType as QT

    if not ck.packed_gemm_native(QT[type_]):
        pytest.skip(f"ISA {ck.isa()} has no interleaved {type_} kernel: the runner keeps the file's rows")
    path = tiny_gguf("LlamaForCausalLM", type_)
    m, packed = _decode_logits(path, True)
    assert m._stack is not None and any(mat[3] for mat in m._stack.layers[0].mats.values()), "decode not packed"
    lw = m.w.layers[0]
    assert m._stack.layers[0].mats["wq"][0] is m.backend.packed(lw.wq).data  # shared with the prompt path
    _, ref = _decode_logits(path, False)
    assert np.isfinite(packed).all()
    assert (packed.argmax(-1) == ref.argmax(-1)).mean() >= 0.9
    assert np.median(np.abs(packed - ref).max(-1)) < 2e-2 * np.abs(ref).max()


@kernels
@pytest.mark.parametrize("type_", ["Q4_0", "Q8_0"])
def test_prompt_threads_bit_equal(tiny_gguf, type_):
    """Rows split over threads and attention head groups over TaskPool threads compute each output alone:
    1 and 3 threads give the same bits."""
    path = tiny_gguf("Qwen2ForCausalLM", type_)
    m3, three = _prompt_logits(path, 3, True)
    assert m3._tasks is not None, "the attention did not go through the task pool"
    _, one = _prompt_logits(path, 1, True)
    np.testing.assert_array_equal(three, one)


def test_task_pool_runs_each_task_once():
    pool = TaskPool(3)
    seen: list[int] = []
    lock = threading.Lock()

    def fn(t):
        with lock:
            seen.append(t)

    for n in (0, 1, 2, 50):
        seen.clear()
        pool.run(fn, list(range(n)))
        assert sorted(seen) == list(range(n))
    pool.close()


def test_task_pool_shared_per_thread_count():
    assert TaskPool.shared(2) is TaskPool.shared(2)
    assert TaskPool.shared(3) is not TaskPool.shared(2) and TaskPool.shared(3).threads == 3


def test_task_pool_reraises():
    pool = TaskPool(2)

    def fn(t):
        if t == 3:
            raise ValueError("task 3")
        torch.zeros(1)

    with pytest.raises(ValueError, match="task 3"):
        pool.run(fn, list(range(8)))
    pool.run(lambda t: None, [1, 2, 3])  # still usable
    pool.close()
