"""Independent tasks on the calling thread plus helper threads, for the prompt's attention.

torch runs on one thread in the runner (cpu_kernels does the matrix products on its own pool). Its OpenMP pool
is no way to spread the attention either: on a loaded 2-core machine one parallel region waits for a thread
the OS has not scheduled (measured: SDPA for 512 queries 35 ms on one thread, 577 ms on two under another
job's load). Here, as in cpu_kernels' pool, tasks are claimed one at a time from a shared iterator and the
caller works too: it waits only for tasks some thread has claimed, never for a helper that has not started.
torch releases the GIL inside its kernels, so the helpers run in parallel."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence


class TaskPool:
    _shared: dict[int, "TaskPool"] = {}
    _shared_lock = threading.Lock()

    def __init__(self, threads: int) -> None:
        self.threads = max(1, int(threads))
        self._pool = ThreadPoolExecutor(self.threads - 1, thread_name_prefix="awq-runner") if self.threads > 1 else None

    @classmethod
    def shared(cls, threads: int) -> "TaskPool":
        """One pool per thread count for the whole process (models come and go; their helpers need not)."""
        threads = max(1, int(threads))
        with cls._shared_lock:
            pool = cls._shared.get(threads)
            if pool is None or pool._pool is None and threads > 1:
                pool = cls._shared[threads] = cls(threads)
            return pool

    def run(self, fn: Callable[[object], None], tasks: Sequence[object]) -> None:
        """fn(task) for every task, spread over the threads (order not kept; fn writes its own results)."""
        if self._pool is None or len(tasks) < 2:
            for t in tasks:
                fn(t)
            return
        it = iter(tasks)
        lock = threading.Lock()
        state = {"left": len(tasks), "error": None}
        finished = threading.Event()

        def work() -> None:
            while True:
                with lock:
                    task = next(it, None) if state["error"] is None else None
                    if task is None:
                        return
                try:
                    fn(task)
                except BaseException as e:  # re-raised in the caller
                    with lock:
                        state["error"] = state["error"] or e
                with lock:
                    state["left"] -= 1
                    if state["left"] == 0 or state["error"] is not None:
                        finished.set()

        for _ in range(min(self.threads - 1, len(tasks) - 1)):
            self._pool.submit(work)
        work()
        finished.wait()
        if state["error"] is not None:
            raise state["error"]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None
