"""GEMV on rows interleaved by 8 (cpu_kernels.pack_weights / matmul_packed, what the runner uses for Q4_0 and
Q5_0) against the file's rows (cpu_kernels.matmul), as a fraction of this machine's memory read bandwidth, on
the issue's shapes W [11008, 4096] and [4096, 11008]: the same method as tools/bench_gemv.py (read bandwidth
from a multi-threaded sum over 1 GiB; enough copies of W to stay out of the last-level cache; weight bytes per
second of wall time, best of 3 batches). Prints a table; writes nothing.

Usage: python tools/bench_gemv_packed.py [--types Q4_0,Q5_0] [--threads 1,2]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType as T

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "cpu_kernels"))

from bench_gemv import SHAPES, llc_bytes, read_bandwidth  # noqa: E402
from bench_markdown import git_rev, machine, today  # noqa: E402
from kernel_blocks import random_rows  # noqa: E402

from awq_gguf import cpu_kernels as ck  # noqa: E402


def bytes_per_s(fn, ws: list, x: np.ndarray, threads: int, nbytes: int, min_s: float = 0.4) -> float:
    """Weight bytes per second of fn(w, x, threads) cycling through ws: best of 3 batches."""
    for w in ws:
        fn(w, x, threads)
    best = float("inf")
    for _ in range(3):
        reps, t0 = 0, time.perf_counter()
        while True:
            fn(ws[reps % len(ws)], x, threads)
            reps += 1
            el = time.perf_counter() - t0
            if el >= min_s / 3 and reps >= len(ws):
                break
        best = min(best, el / reps)
    return nbytes / best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--types", default="Q4_0,Q5_0")
    ap.add_argument("--threads", default="1,2")
    args = ap.parse_args()
    types = [T[name] for name in args.types.split(",")]
    threads = [int(v) for v in args.threads.split(",")]
    bw = {th: read_bandwidth(th) for th in threads}
    rng = np.random.default_rng(0)
    rows_out = []
    for t in types:
        for rows, cols in SHAPES:
            w0 = random_rows(rng, t, rows, cols)
            copies = max(2, -(-4 * llc_bytes() // w0.nbytes))
            ws = [w0] + [random_rows(rng, t, rows, cols) for _ in range(copies - 1)]
            ps = [ck.pack_weights(w, t) for w in ws]
            x = rng.standard_normal(cols).astype(np.float32)
            for th in threads:
                file_rows = bytes_per_s(lambda w, x, n: ck.matmul(w, t, x, threads=n), ws, x, th, w0.nbytes)
                packed = bytes_per_s(lambda p, x, n: ck.matmul_packed(p, x, threads=n), ps, x, th, w0.nbytes)
                rows_out.append(f"| {t.name} | {rows}x{cols} | {th} | {file_rows / 1e9:.2f} | "
                                f"**{file_rows / bw[th]:.2f}** | {packed / 1e9:.2f} | **{packed / bw[th]:.2f}** |")
                print(rows_out[-1], flush=True)
    print(f"\n{machine()}, {today()}, commit {git_rev()}, ISA {ck.isa_detail()}; read bandwidth "
          + ", ".join(f"{th} thr {bw[th] / 1e9:.2f} GB/s" for th in threads) + "\n")
    print("| type | W rows x cols | threads | file rows GB/s | frac of read bw | interleaved GB/s | frac of read bw |")
    print("|---|---|---:|---:|---:|---:|---:|")
    print("\n".join(rows_out))


if __name__ == "__main__":
    main()
