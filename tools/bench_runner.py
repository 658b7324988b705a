"""The local runner against llama.cpp (llama-cpp-python) on the demo model: logits agreement and speed.

Usage: python tools/bench_runner.py [--types Q4_0,Q4_K_M,Q8_0] [--windows 8] [--threads N[,M...]] [--reps 2]
                                    [--keep DIR] [--speed-only] [--write]
Needs: python tools/fetch_text.py (data/wiki.eval.txt).
Steps, all in one run: the demo GGUF (SmolLM2-135M-Instruct, Q4_1) converted by `awq-gguf convert -t TYPE --method rtn`
(plain rounding; --keep DIR reuses conversions from an earlier run); per file:
  accuracy  the first WINDOWS windows of 512 tokens of the text (awq-gguf eval's windows), all logits from
            both engines on the same tokens: top-1 agreement and mean KL(llama.cpp || runner) over every
            position, and both perplexities over the scored second halves (llama-perplexity's method);
  speed     pp512 and tg128 tokens/s of both engines, same process, same threads, alternating repetitions
            (awq_gguf.runner.bench, as `awq-gguf bench`), once per thread count in --threads.
--speed-only skips the logits (and the F32 conversion); with --write it replaces only the speed table (the
runner-speed block inside the runner section), keeping the accuracy table of the last full run. A run with logits
and --write replaces the runner-accuracy block (and the speed block unless --skip-speed), keeping the text around
them; only where those blocks are missing does it write the whole runner section.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_markdown import ROOT, git_rev, machine, today, write_section  # noqa: E402

TARGETS = "targets (issue 4): top-1 agreement >= 99%, mean KL <= 1e-3, perplexity within 0.5%"


def load_average() -> str:
    try:
        return " / ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def accuracy(path: Path, text: str, windows: int, threads: int, backend: str | None,
             f32: Path | None = None) -> dict:
    import llama_cpp

    from awq_gguf.perplexity import llama_logits, log_softmax, scored_nll
    from awq_gguf.runner.evaluate import eval_windows, runner_logits
    from awq_gguf.runner.model import Model

    wins = eval_windows(path, text, 512, windows)
    model = Model.load(path, n_ctx=512, backend=backend, threads=threads)
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=512, n_batch=512, n_ubatch=512, logits_all=True,
                          n_threads=threads, n_threads_batch=threads, verbose=False)
    ref_llm = None
    if f32 is not None:  # the unquantized model in llama.cpp (the runner agrees with it to ~5e-7 KL on F32)
        ref_llm = llama_cpp.Llama(model_path=str(f32), n_ctx=512, n_batch=512, n_ubatch=512, logits_all=True,
                                  n_threads=threads, n_threads_batch=threads, verbose=False)
    agree, kls, nll_r, nll_l, n_pos = 0, [], [], [], 0
    kl_f32_r, kl_f32_l = [], []
    for i, w in enumerate(wins):
        ref = llama_logits(llm, w)
        ours = runner_logits(model, w)
        lp, lq = log_softmax(ref), log_softmax(ours)
        kls.append((np.exp(lp) * (lp - lq)).sum(-1))
        if ref_llm is not None:
            lf = log_softmax(llama_logits(ref_llm, w))
            kl_f32_r.append((np.exp(lf) * (lf - lq)).sum(-1))
            kl_f32_l.append((np.exp(lf) * (lf - lp)).sum(-1))
        agree += int((ref.argmax(-1) == ours.argmax(-1)).sum())
        n_pos += len(w)
        nll_l.append(scored_nll(ref, w))
        nll_r.append(scored_nll(ours, w))
        print(f"  window {i + 1}/{len(wins)}: KL {kls[-1].mean():.2e}", flush=True)
    kl = np.concatenate(kls)
    return {
        "backend": model.backend.name,
        "positions": n_pos,
        "scored": int(sum(len(x) for x in nll_r)),
        "top1": agree / n_pos,
        "kl": float(kl.mean()),
        "kl_p99": float(np.quantile(kl, 0.99)),
        "ppl_runner": float(np.exp(np.concatenate(nll_r).mean())),
        "ppl_llama": float(np.exp(np.concatenate(nll_l).mean())),
        "kl_f32_runner": float(np.concatenate(kl_f32_r).mean()) if kl_f32_r else float("nan"),
        "kl_f32_llama": float(np.concatenate(kl_f32_l).mean()) if kl_f32_l else float("nan"),
    }


def speed(path: Path, type_: str, thread_list: list[int], reps: int, backend: str | None, backends: set) -> list[str]:
    """One table row per thread count: both engines, same process, same threads (awq_gguf.runner.bench)."""
    from awq_gguf.runner.bench import bench

    rows = []
    for threads in thread_list:
        load_before = load_average()
        r = bench(path, reps=reps, threads=threads, backend=backend,
                  progress=lambda m: print("  " + m, flush=True)).as_dict()
        ours, theirs = r["runner"], r["llama.cpp"]
        backends.add(ours["backend"])
        rows.append(
            f"| {type_} | {threads} | {r['weight_bytes'] / 2**20:.1f} | {ours['pp']:.1f} | {theirs['pp']:.1f} | "
            f"{r['ratio']['pp']:.2f}x | {ours['tg']:.1f} | {theirs['tg']:.1f} | {r['ratio']['tg']:.2f}x | "
            f"{ours['tg_bytes_per_s'] / 1e9:.2f} | {theirs['tg_bytes_per_s'] / 1e9:.2f} | "
            f"{load_before.split(' / ')[0]} -> {load_average().split(' / ')[0]} |"
        )
        print(rows[-1], flush=True)
    return rows


def llama_self_kl(path: Path, text: str, windows: int, threads: int) -> dict:
    """llama.cpp against itself: each window as one 512-token batch vs fed one token at a time (its GEMV path).
    Same file, same engine, only the order of float operations differs: the noise floor for any other engine."""
    import llama_cpp

    from awq_gguf.perplexity import llama_logits, log_softmax
    from awq_gguf.runner.evaluate import eval_windows

    llm = llama_cpp.Llama(model_path=str(path), n_ctx=512, n_batch=512, n_ubatch=512, logits_all=True,
                          n_threads=threads, n_threads_batch=threads, verbose=False)
    kls, agree, n = [], 0, 0
    for w in eval_windows(path, text, 512, windows):
        batch = llama_logits(llm, w)
        llm.reset()
        for t in w:
            llm.eval([t])
        seq = np.array(llm.scores[: len(w)], dtype=np.float32)
        lp, lq = log_softmax(batch), log_softmax(seq)
        kls.append((np.exp(lp) * (lp - lq)).sum(-1))
        agree += int((batch.argmax(-1) == seq.argmax(-1)).sum())
        n += len(w)
    return {"kl": float(np.concatenate(kls).mean()), "top1": agree / n, "positions": n}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--types", default="Q4_0,Q4_K_M,Q8_0")
    ap.add_argument("--windows", type=int, default=8, help="windows of 512 tokens compared per file")
    ap.add_argument("--threads", default=str(os.cpu_count() or 1),
                    help="thread count, or a comma-separated list (speed is measured for each; logits use the first)")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--backend", default=None, help="runner backend: auto (default), torch, kernels")
    ap.add_argument("--text", type=Path, default=ROOT / "data/wiki.eval.txt")
    ap.add_argument("--keep", type=Path, default=None, help="folder to keep (and reuse) the converted files")
    ap.add_argument("--self-windows", type=int, default=2, help="windows for llama.cpp's batch-vs-sequential check")
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--speed-only", action="store_true", help="speed only (no logits): writes only the speed table")
    ap.add_argument("--write", action="store_true", help="write the BENCHMARKS.md section")
    args = ap.parse_args()
    thread_list = [int(t) for t in str(args.threads).split(",")]
    if args.speed_only and args.skip_speed:
        ap.error("--speed-only and --skip-speed exclude each other")

    from awq_gguf.perplexity import read_text
    from awq_gguf.runner.bench import bench

    text = "" if args.speed_only else read_text(args.text)
    acc_rows, speed_rows, backends = [], [], set()
    with tempfile.TemporaryDirectory(prefix="awq-gguf-bench-") as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)

        def converted(type_: str) -> Path:
            path = folder / f"SmolLM2-135M-Instruct-{type_}.gguf"
            if not path.is_file():
                print(f"converting the demo model to {type_} ...", flush=True)
                subprocess.run([sys.executable, "-m", "awq_gguf.cli", "convert", "-t", type_, "--method", "rtn",
                                "-o", str(path), "-q"], check=True)
            return path

        f32 = None if args.speed_only else converted("F32")
        for type_ in args.types.split(","):
            path = converted(type_)
            if args.speed_only:
                speed_rows += speed(path, type_, thread_list, args.reps, args.backend, backends)
                continue
            print(f"{type_}: logits vs llama.cpp over {args.windows} x 512 tokens", flush=True)
            start = time.perf_counter()
            a = accuracy(path, text, args.windows, thread_list[0], args.backend, f32)
            backends.add(a["backend"])
            s = llama_self_kl(path, text, args.self_windows, thread_list[0]) if args.self_windows else None
            self_cols = f"{s['top1'] * 100:.2f}% | {s['kl']:.2e}" if s else "- | -"
            acc_rows.append(
                f"| {type_} | {a['positions']} | {a['top1'] * 100:.2f}% | {a['kl']:.2e} | {a['kl_p99']:.2e} | "
                f"{a['ppl_runner']:.4f} | {a['ppl_llama']:.4f} | {(a['ppl_runner'] / a['ppl_llama'] - 1) * 100:+.3f}% | "
                f"{self_cols} | {a['kl_f32_runner']:.2e} | {a['kl_f32_llama']:.2e} |"
            )
            print(acc_rows[-1], f"({time.perf_counter() - start:.0f} s)", flush=True)
            if args.skip_speed:
                continue
            speed_rows += speed(path, type_, thread_list, args.reps, args.backend, backends)

    backend_desc = ", ".join(sorted(backends))
    cmd = (f"python tools/bench_runner.py --types {args.types} --windows {args.windows} --self-windows "
           f"{args.self_windows} --reps {args.reps} --threads {args.threads}"
           + (f" --backend {args.backend}" if args.backend else ""))
    speed_lines = []
    if speed_rows:
        speed_cmd = (f"python tools/bench_runner.py --types {args.types} --reps {args.reps} --threads {args.threads}"
                     + (f" --backend {args.backend}" if args.backend else "") + (" --keep DIR" if args.keep else "")
                     + " --speed-only --write")
        speed_lines = [
            f"Speed ({today()}, commit {git_rev()}, {machine()}; runner {backend_desc}; `{speed_cmd}`): pp512 / "
            f"tg128 tokens/s as llama-bench measures them (random tokens, empty cache), mean of {args.reps} "
            "alternating repetitions, the same thread count for both engines. GB/s: the file's bytes of every "
            "matrix one generation step multiplies by, times tg tokens/s. Last column: the 1-minute load average "
            "before and after the row (other work on the machine moves these numbers).",
            "",
            "| type | threads | weight MiB | pp512 runner | pp512 llama.cpp | pp ratio | tg128 runner | "
            "tg128 llama.cpp | tg ratio | runner GB/s | llama.cpp GB/s | load (1 min) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
            *speed_rows,
        ]
    if args.speed_only:
        body = "\n".join(speed_lines)
        print(body)
        if args.write:
            write_section("runner-speed", body)
        return
    acc_lines = [
        f"Machine: {machine()}. Date: {today()}. Commit: {git_rev()}. Command: `{cmd} --write`.",
        f"Runner backend: {backend_desc} (awq_gguf.runner.backend). Peer: llama.cpp through llama-cpp-python "
        "0.3.36 (its CPU build), same process, same threads. Files: the demo model (SmolLM2-135M-Instruct, "
        "its Q4_1 GGUF) converted by `awq-gguf convert -t TYPE --method rtn` (plain rounding).",
        "",
        f"Logits: the first {args.windows} windows of 512 tokens of {args.text.relative_to(ROOT)} (`awq-gguf eval`'s "
        "windows and tokens), every position compared; perplexity over each window's scored second half. "
        f"KL is KL(llama.cpp || runner) in nats; {TARGETS}. The last two columns are llama.cpp against "
        f"itself on the first {args.self_windows} windows: each window as one batch vs fed one token at a time "
        "(same file and engine, only the order of float operations differs). KL vs F32: each engine's KL from "
        "the unquantized model (the F32 conversion run by llama.cpp, which the runner matches to ~5e-7 on F32 "
        "files) on the same windows: which engine's quantized arithmetic is closer to the float model.",
        "",
        "| type | positions | top-1 agreement | mean KL | p99 KL | PPL runner | PPL llama.cpp | PPL diff | "
        "llama.cpp self top-1 | llama.cpp self KL | KL vs F32: runner | KL vs F32: llama.cpp |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *acc_rows,
    ]
    lines = ["### Local runner vs llama.cpp, demo model", "", "<!-- runner-accuracy:begin -->", *acc_lines,
             "<!-- runner-accuracy:end -->"]
    if speed_lines:
        lines += ["", "<!-- runner-speed:begin -->", *speed_lines, "<!-- runner-speed:end -->"]
    body = "\n".join(lines)
    print(body)
    if args.write:
        text = (ROOT / "BENCHMARKS.md").read_text()
        if "<!-- runner-accuracy:begin -->" in text and "<!-- runner-speed:begin -->" in text:
            # the section exists: replace its two tables, keep the text written around them
            write_section("runner-accuracy", "\n".join(acc_lines))
            if speed_lines:
                write_section("runner-speed", "\n".join(speed_lines))
        else:
            write_section("runner", body)


if __name__ == "__main__":
    main()
