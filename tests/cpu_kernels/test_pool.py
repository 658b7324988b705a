"""The worker pool under churn: thread counts changing call to call (more workers than a job may use),
concurrent callers from Python threads, results identical to the single-threaded ones every time."""

from __future__ import annotations

import threading

import numpy as np
from gguf import GGMLQuantizationType as T

from awq_gguf import cpu_kernels as ck

from kernel_blocks import random_rows


def test_varying_threads_and_concurrent_callers() -> None:
    rng = np.random.default_rng(3)
    w = random_rows(rng, T.Q4_K, 97, 512)
    x = rng.standard_normal((5, 512)).astype(np.float32)
    ref = ck.matmul(w, T.Q4_K, x, threads=1)
    for i in range(300):
        np.testing.assert_array_equal(ck.matmul(w, T.Q4_K, x[: 1 + i % 5], threads=1 + i % 6), ref[: 1 + i % 5])
    errors: list[str] = []

    def caller(k: int) -> None:
        for i in range(100):
            y = ck.matmul(w, T.Q4_K, x, threads=1 + (i + k) % 4)
            if not np.array_equal(y, ref):
                errors.append(f"caller {k} call {i}")

    threads = [threading.Thread(target=caller, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:5]
