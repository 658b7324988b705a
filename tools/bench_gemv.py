"""GEMV benchmark of awq_gguf.cpu_kernels against this machine's memory bandwidth and llama.cpp.

One run measures:
- memory read bandwidth, once per thread count used (a multi-threaded sum over 1 GiB, cpu_kernels.stream_read),
  and a numpy copy for reference;
- for each weight type and each of W [11008, 4096] and W [4096, 11008] (rows x cols): our y = W x (n = 1,
  including the activation quantization) in weight bytes/s, cycling through enough copies of W that they
  never sit in the last-level cache, as a fraction of the read bandwidth;
- the same product through llama.cpp's `test-backend-ops perf` (its CPU backend, its thread count:
  hardware threads / 2) from a --test-file with these exact shapes; test-backend-ops repeats one W, so ours is
  timed that way too (same threads, one W) for the ratio.

Writes the table to BENCHMARKS.md (section `cpu-gemv`, or --key) and prints it.
- GEMM: W [4096, 4096] times 128 activation rows, ours and llama.cpp's, at llama.cpp's thread count.

Usage: python tools/bench_gemv.py [--types Q4_0,Q4_K] [--threads N] [--key KEY] [--no-write] [--markdown FILE]
       [--no-gemm]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from typing import Callable

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType as T

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "cpu_kernels"))

from bench_markdown import ROOT, git_rev, machine, today, write_section  # noqa: E402
from kernel_blocks import random_rows  # noqa: E402

from awq_gguf import cpu_kernels as ck  # noqa: E402

TYPES = [T.Q4_0, T.Q4_1, T.Q5_0, T.Q8_0, T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K]
SHAPES = [(11008, 4096), (4096, 11008)]  # (rows, cols): ffn up/gate, ffn down of a 7B Llama
GEMM_SHAPE = (4096, 4096, 128)  # rows, cols, activation rows
GGML_OP_MUL_MAT = 29  # enum ggml_op in the vendored ggml.h
TBO = ROOT / ".llama.cpp" / "build" / "bin" / "test-backend-ops"


def llc_bytes() -> int:
    best = 0
    for idx in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        try:
            size = (idx / "size").read_text().strip()
            best = max(best, int(size[:-1]) * {"K": 2**10, "M": 2**20}[size[-1]])
        except (OSError, ValueError, KeyError):
            pass
    return best or 32 * 2**20


def read_bandwidth(threads: int) -> float:
    buf = np.ones(2**30 // 8, np.uint64)
    ck.stream_read(buf, threads)
    best = 0.0
    for _ in range(5):
        t = time.perf_counter()
        ck.stream_read(buf, threads)
        best = max(best, buf.nbytes / (time.perf_counter() - t))
    return best


def copy_bandwidth() -> float:
    a = np.ones(2**29 // 8, np.uint64)
    b = np.empty_like(a)
    np.copyto(b, a)
    best = 0.0
    for _ in range(3):
        t = time.perf_counter()
        np.copyto(b, a)
        best = max(best, 2 * a.nbytes / (time.perf_counter() - t))
    return best


Product = Callable[[], object]


def products(mats: list, t: T, x: np.ndarray, threads: int) -> list[Product]:
    """One y = W x call per copy of W: file rows (uint8 arrays, matmul), or pack_weights' copies (PackedMatrix,
    matmul_packed: the rows interleaved by 8 that the runner multiplies Q4_0 / Q4_1 / Q5_0 / Q5_1 / Q2_K / Q3_K
    matrices with)."""
    return [lambda m=m: ck.matmul_packed(m, x, threads=threads) if isinstance(m, ck.PackedMatrix)
            else ck.matmul(m, t, x, threads=threads) for m in mats]


def time_gemv(fs: list[Product], min_s: float = 0.4, mean: bool = False) -> float:
    """Seconds per product, cycling through the copies' products fs: best of 3 batches, or (mean=True, as
    test-backend-ops reports) the mean over all of them."""
    for f in fs:
        f()
    best, total, count = float("inf"), 0.0, 0
    for _ in range(3):
        reps, t0 = 0, time.perf_counter()
        while True:
            fs[reps % len(fs)]()
            reps += 1
            el = time.perf_counter() - t0
            if el >= min_s / 3 and reps >= len(fs):
                break
        best, total, count = min(best, el / reps), total + el, count + reps
    return total / count if mean else best


def adjacent_fraction(fs: list[Product], nbytes: int, rounds: int = 5) -> float:
    """Weight bytes/s of one thread's products (wall clock) over the larger of two one-thread stream reads of
    512 MiB taken right before and right after them; median over rounds. The host's memory bandwidth drifts
    by 10-30% within minutes on the dev machine, so each ratio uses readings from the same second."""
    buf = np.ones(2**29 // 8, np.uint64)
    ck.stream_read(buf, 1)
    fracs = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        ck.stream_read(buf, 1)
        before = buf.nbytes / (time.perf_counter() - t0)
        reps, t0 = 0, time.perf_counter()
        while reps < len(fs) or time.perf_counter() - t0 < 0.1:
            fs[reps % len(fs)]()
            reps += 1
        rate = nbytes * reps / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        ck.stream_read(buf, 1)
        after = buf.nbytes / (time.perf_counter() - t0)
        fracs.append(rate / max(before, after))
    return float(np.median(fracs))


def llama_cpp_times(types: list[T], tbo: Path, shapes: list[tuple[int, int]] = SHAPES,
                    n: int = 1) -> tuple[dict[tuple[str, int, int], float], str]:
    """us per product (W [rows, cols] times n activation rows) from test-backend-ops perf, keyed by
    (type name, rows, cols); and a note."""
    if not tbo.exists():
        return {}, f"llama.cpp not measured: {tbo} missing (bash tools/build_llama_cpp.sh)"
    lines = []
    for t in types:
        block, size = GGML_QUANT_SIZES[t]
        for rows, cols in shapes:
            rb = cols // block * size
            name = f"{t.name}_{rows}x{cols}"
            lines.append(f"{GGML_OP_MUL_MAT} 0 {rows} {n} 1 1 0 2 "
                         f"{int(t)} {cols} {rows} 1 1 {size} {rb} {rb * rows} {rb * rows} "
                         f"0 {cols} {n} 1 1 4 {4 * cols} {4 * cols * n} {4 * cols * n} {name}")
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write("\n".join(lines) + "\n")
    try:
        res = subprocess.run([str(tbo), "perf", "-b", "CPU", "--test-file", f.name], capture_output=True,
                             text=True, timeout=1200)
    except (OSError, subprocess.SubprocessError) as exc:
        return {}, f"llama.cpp not measured: {exc}"
    finally:
        os.unlink(f.name)
    out = {}
    for m in re.finditer(r"name=(\w+?)_(\d+)x(\d+),.*?([\d.]+) us/run", res.stdout):
        out[(m.group(1), int(m.group(2)), int(m.group(3)))] = float(m.group(4))
    note = "" if out else f"llama.cpp gave no timings (rc {res.returncode}): {res.stderr.strip()[-300:]}"
    return out, note


GGML_DRIVER = Path(__file__).resolve().parent / "ggml_mulmat_cpu.c"


def build_ggml_driver(tmp: Path) -> tuple[Path | None, str]:
    """Compiles tools/ggml_mulmat_cpu.c against the built llama.cpp (ggml) libraries."""
    lib = ROOT / ".llama.cpp" / "build" / "bin"
    inc = ROOT / ".llama.cpp" / "src" / "ggml" / "include"
    exe = tmp / "ggml_mulmat_cpu"
    cmd = ["cc", "-O2", f"-I{inc}", str(GGML_DRIVER), f"-L{lib}", "-lggml", "-lggml-base", "-lggml-cpu",
           f"-Wl,-rpath,{lib}", "-o", str(exe)]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"ggml driver not built: {exc}"
    if res.returncode != 0:
        return None, f"ggml driver not built: {res.stderr.strip()[-300:]}"
    return exe, ""


def ggml_cpu_time(exe: Path | None, t: T, rows: int, cols: int, n: int, reps: int) -> float | None:
    """llama.cpp's ggml_mul_mat on one thread: minimum process CPU seconds per product."""
    if exe is None:
        return None
    try:
        res = subprocess.run([str(exe), str(int(t)), str(rows), str(cols), str(n), str(reps), "1"],
                             capture_output=True, text=True, timeout=600)
        return float(res.stdout.split()[0])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def our_cpu_time(fs: list[Product], reps: int) -> float:
    """Ours on one thread (fs bound to 1 thread): minimum process CPU seconds per product (time the OS gives
    others not counted)."""
    fs[0]()
    best = float("inf")
    for i in range(reps):
        c0 = time.process_time()
        fs[i % len(fs)]()
        best = min(best, time.process_time() - c0)
    return best


def read_bandwidth_cpu() -> float:
    """One thread's read bandwidth per CPU second (max over 5 reads of 1 GiB)."""
    buf = np.ones(2**30 // 8, np.uint64)
    ck.stream_read(buf, 1)
    best = 0.0
    for _ in range(5):
        c0 = time.process_time()
        ck.stream_read(buf, 1)
        best = max(best, buf.nbytes / (time.process_time() - c0))
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--types", default=",".join(t.name for t in TYPES))
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="threads for our full run")
    ap.add_argument("--key", default="cpu-gemv")
    ap.add_argument("--no-write", action="store_true", help="do not touch BENCHMARKS.md")
    ap.add_argument("--markdown", type=Path, help="also write the section body to this file")
    ap.add_argument("--tbo", type=Path, default=TBO, help="path of llama.cpp's test-backend-ops")
    ap.add_argument("--no-gemm", action="store_true", help="skip the GEMM (n = 128) comparison")
    args = ap.parse_args()
    types = [T[n.strip()] for n in args.types.split(",") if n.strip()]
    threads = args.threads
    tbo_threads = max(1, (os.cpu_count() or 2) // 2)  # test-backend-ops: hardware threads / 2
    notes: list[str] = []
    tmp = Path(tempfile.mkdtemp(prefix="bench_gemv_"))
    driver, note = build_ggml_driver(tmp)
    if note:
        notes.append(note)

    load0 = os.getloadavg()[0]
    print(f"ISA {ck.isa()} ({ck.isa_detail()}); threads {threads}; llama.cpp threads {tbo_threads}", flush=True)
    bw = {th: read_bandwidth(th) for th in sorted({threads, tbo_threads})}
    bw_cpu = read_bandwidth_cpu()
    cbw = copy_bandwidth()
    print("read GB/s", {k: round(v / 1e9, 2) for k, v in bw.items()}, "per CPU-second", round(bw_cpu / 1e9, 2),
          "copy", round(cbw / 1e9, 2), flush=True)

    rng = np.random.default_rng(0)
    llc = llc_bytes()
    rows_md = []
    for t in types:
        # llama.cpp's test-backend-ops right before and after ours (faster kept), type by type, so that both
        # see about the same load on a shared machine
        llama, note = llama_cpp_times([t], args.tbo)
        if note and note not in notes:
            print(note, flush=True)
            notes.append(note)
        pending = []
        for rows, cols in SHAPES:
            w0 = random_rows(rng, t, rows, cols)
            # distinct memory, same bytes: at least 4x the LLC in all (capped at 2 GiB)
            copies = max(2, -(-min(4 * llc, 2**31) // w0.nbytes))
            ws = [w0] + [w0.copy() for _ in range(copies - 1)]
            x = rng.standard_normal((1, cols)).astype(np.float32)
            c_llama = ggml_cpu_time(driver, t, rows, cols, 1, 20)
            # also through the rows interleaved by 8 where the runner uses them (the ISA has that kernel)
            for packed in ((False, True) if ck.packed_gemm_native(t) else (False,)):
                mats = [ck.pack_weights(w, t) for w in ws] if packed else ws  # packed once for every timing
                s_all = time_gemv(products(mats, t, x, threads))
                one = products(mats, t, x, 1)
                c_rot = our_cpu_time(one, max(20, 2 * copies))
                adj = adjacent_fraction(one, w0.nbytes)
                s_one = time_gemv(products(mats[:1], t, x, tbo_threads), mean=True)
                c_one = our_cpu_time(products(mats[:1], t, x, 1), 20)
                pending.append((packed, rows, cols, w0.nbytes, s_all, c_rot, adj, s_one, c_one, c_llama))
                del one, mats
            del ws
        llama2, _ = llama_cpp_times([t], args.tbo)
        for packed, rows, cols, nbytes, s_all, c_rot, adj, s_one, c_one, c_llama in pending:
            runs = [v for v in (llama.get((t.name, rows, cols)), llama2.get((t.name, rows, cols))) if v]
            lus = min(runs) if runs else None
            tbo_txt = f"{lus:.0f} / {s_one * 1e6:.0f} = **{lus * 1e-6 / s_one:.2f}x**" if lus else "n/a"
            cpu_txt = (f"{c_llama * 1e3:.2f} / {c_one * 1e3:.2f} = **{c_llama / c_one:.2f}x**" if c_llama
                       else "n/a")
            name = f"{t.name} interleaved" if packed else t.name
            row = (f"| {name} | {rows}x{cols} | {nbytes / 2**20:.1f} | **{adj:.2f}** | "
                   f"{nbytes / s_all / 1e9:.2f} | **{{frac}}** | "
                   f"{nbytes / c_rot / 1e9:.2f} | **{nbytes / c_rot / bw_cpu:.2f}** | {cpu_txt} | {tbo_txt} |")
            print(row.replace("{frac}", f"{nbytes / s_all / bw[threads]:.2f}"), flush=True)
            rows_md.append((row, nbytes / s_all))

    gemm_md = []
    if not args.no_gemm:
        rows, cols, n = GEMM_SHAPE
        for t in types:
            llama, note = llama_cpp_times([t], args.tbo, [(rows, cols)], n)
            w = random_rows(rng, t, rows, cols)
            x = rng.standard_normal((n, cols)).astype(np.float32)
            s_ours = time_gemv(products([w], t, x, tbo_threads), min_s=1.0, mean=True)
            c_ours = our_cpu_time(products([w], t, x, 1), 5)
            c_llama = ggml_cpu_time(driver, t, rows, cols, n, 5)
            lus = llama.get((t.name, rows, cols))
            flop = 2 * rows * cols * n
            row = (f"| {t.name} | {rows}x{cols}, n={n} | {flop / c_ours / 1e9:.1f} | "
                   + (f"{c_llama * 1e3:.1f} / {c_ours * 1e3:.1f} = **{c_llama / c_ours:.2f}x** | " if c_llama else "n/a | ")
                   + (f"{lus / 1e3:.1f} / {s_ours * 1e3:.1f} = **{lus * 1e-6 / s_ours:.2f}x** |" if lus else "n/a |"))
            print(row, flush=True)
            gemm_md.append(row)

    load1 = os.getloadavg()[0]
    # bandwidth again at the end; the larger reading is the denominator (a shared machine only lowers it)
    bw_end = {th: read_bandwidth(th) for th in bw}
    bw = {th: max(bw[th], bw_end[th]) for th in bw}
    bw_cpu = max(bw_cpu, read_bandwidth_cpu())
    rows_md = [row.replace("{frac}", f"{rate / bw[threads]:.2f}") for row, rate in rows_md]
    bw_txt = ", ".join(f"{bw[k] / 1e9:.2f} GB/s with {k} thread{'s' if k > 1 else ''}" for k in sorted(bw))
    body = "\n".join([
        "## CPU GEMV kernels vs memory bandwidth and llama.cpp",
        "",
        f"Machine: {machine()}. Date: {today()}, commit {git_rev()}. ISA: `{ck.isa()}` ({ck.isa_detail()}).",
        f"Command: `python tools/bench_gemv.py --threads {threads}`. Load average (1 min) at start / end: "
        f"{load0:.1f} / {load1:.1f} on {os.cpu_count()} CPUs: other work shares this machine, so wall-clock "
        "numbers move with it; the CPU-time columns count only the time the process was running.",
        "",
        f"Memory read bandwidth (a multi-threaded sum over 1 GiB; the larger of a reading at the start and one at "
        f"the end): {bw_txt}; one thread per CPU-second: {bw_cpu / 1e9:.2f} GB/s. numpy copy (read + write "
        f"counted): {cbw / 1e9:.2f} GB/s.",
        "",
        f"y = W x for one activation row (quantizing x included), cycling through copies of W totalling at least 4x "
        f"the last-level cache ({llc // 2**20} MiB; at most 2 GiB). *1 thr: frac of adjacent read*: one thread's "
        "weight bytes per second of wall time over the larger of two one-thread stream reads (512 MiB) taken "
        "right before and after, median of 5 (the host's bandwidth drifts 10-30% within minutes; this ratio "
        "compares readings of the same second). *interleaved*: the same matrix through the rows interleaved by 8 "
        "that the runner uses for Q4_0 / Q4_1 / Q5_0 / Q2_K / Q3_K (pack_weights + matmul_packed); the llama.cpp "
        "columns there "
        "compare with llama.cpp's plain-row product. "
        f"*wall, {threads} thr*: weight bytes per second "
        f"of wall time on {threads} threads, best of 3 batches, and as a fraction of the {threads}-thread read "
        "bandwidth. *CPU, 1 thr*: weight bytes per CPU-second on one thread (minimum over calls), and as a "
        "fraction of one thread's read bandwidth per CPU-second. *llama.cpp CPU*: llama.cpp's own `ggml_mul_mat` "
        "on one thread (tools/ggml_mulmat_cpu.c against the built libraries), minimum process CPU time over 20 "
        "products, one W, against ours the same way: their ms / our ms (above 1: ours faster). "
        f"*test-backend-ops*: `test-backend-ops perf` (its thread count, hardware threads / 2 = {tbo_threads}; "
        "mean wall time per product; run before and after ours, the faster kept) against ours on one W with the "
        "same thread count, mean wall time: their us / our us.",
        "",
        f"| type | W rows x cols | MiB | 1 thr: frac of adjacent read | wall, {threads} thr GB/s | frac of read bw | "
        "CPU, 1 thr GB/s | frac (CPU) | "
        "llama.cpp CPU ms / ours | test-backend-ops us / ours |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *rows_md,
    ] + [f"\nNote: {n}" for n in notes] + ([
        "",
        f"GEMM (prompt processing): y = x W^T for n = {GEMM_SHAPE[2]} activation rows, one thread, one W; CPU "
        "time minimum over 5 (ours and llama.cpp's ggml_mul_mat) and test-backend-ops' mean wall time against "
        f"ours on {tbo_threads} thread{'s' if tbo_threads > 1 else ''}:",
        "",
        "| type | shape | ours GFLOP/s (CPU) | llama.cpp CPU ms / ours | test-backend-ops ms / ours |",
        "|---|---|---|---|---|",
        *gemm_md,
    ] if gemm_md else []))
    print()
    print(body)
    if args.markdown:
        args.markdown.write_text(body + "\n")
    if not args.no_write:
        write_section(args.key, body)


if __name__ == "__main__":
    main()
