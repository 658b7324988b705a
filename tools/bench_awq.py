"""The AWQ quality table: llama.cpp (plain, + imatrix) vs ours (RTN, AWQ, AWQ data-free) on the demo model.

Usage: python tools/bench_awq.py [--types Q4_0,Q3_K_M,Q2_K,Q4_K_M] [--chunks 40] [--datafree-types Q4_0] [--write]
Needs: bash tools/build_llama_cpp.sh (llama-imatrix, llama-quantize) and python tools/fetch_text.py (data/).

Every method sees the same calibration tokens: the first 128 windows of 512 tokens of lee_background.cor
(data/lee.calib.txt, cut to just over 128 x 512 tokens, so our even spread of 128 windows and llama-imatrix's
first 128 chunks are the same windows). Evaluation: data/wiki.eval.txt (Wikipedia articles calibration never
saw), ctx 512, the first --chunks windows, scored by llama.cpp (llama-cpp-python) as llama-perplexity does.
Each finished step is kept in a state file (--state), so an interrupted run continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_convert import run_measured  # noqa: E402
from bench_markdown import ROOT, git_rev, machine, today, write_section  # noqa: E402

N_SAMPLES, SEQLEN = 128, 512
METHODS = ("llama.cpp", "llama.cpp+imatrix", "ours RTN", "ours AWQ", "ours AWQ data-free")


def cut_calibration(src: Path, dst: Path, n_tokens: int) -> int:
    """Write the prefix of src holding just over n_tokens tokens (demo tokenizer) to dst; returns its tokens."""
    from tokenizers import Tokenizer

    from awq_gguf.demo import demo_hf_folder

    tok = Tokenizer.from_file(str(demo_hf_folder() / "tokenizer.json"))
    text = src.read_text(encoding="utf-8")
    enc = tok.encode(text)
    if len(enc.ids) < n_tokens + 16:
        raise SystemExit(f"{src} has only {len(enc.ids)} tokens; need {n_tokens + 16}")
    end = enc.offsets[n_tokens + 16][1]
    dst.write_text(text[:end], encoding="utf-8")
    return len(tok.encode(text[:end]).ids)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--types", default="Q4_0,Q4_K_M,Q3_K_M,Q2_K")
    ap.add_argument("--datafree-types", default="Q4_0", help="types that also get AWQ with data-free calibration")
    ap.add_argument("--datafree-samples", type=int, default=N_SAMPLES)
    ap.add_argument("--chunks", type=int, default=40)
    ap.add_argument("--llama-dir", type=Path, default=ROOT / ".llama.cpp")
    ap.add_argument("--state", type=Path, default=Path(tempfile.gettempdir()) / "awq-gguf-bench-awq")
    ap.add_argument("--skip-awq", action="store_true", help="only the llama.cpp and RTN rows (AWQ runs are long)")
    ap.add_argument("--write", action="store_true", help="write the table into BENCHMARKS.md")
    ap.add_argument("--only-write", action="store_true", help="write the table from the state file, run nothing")
    args = ap.parse_args()

    from awq_gguf.demo import demo_hf_folder
    from awq_gguf.perplexity import perplexity, read_text

    bin_dir = args.llama_dir / "build/bin"
    st = args.state
    st.mkdir(parents=True, exist_ok=True)
    state_file = st / "state.json"
    state = json.loads(state_file.read_text()) if state_file.is_file() else {}

    def save() -> None:
        state_file.write_text(json.dumps(state, indent=1))

    types = [t for t in args.types.split(",") if t]
    datafree = [t for t in args.datafree_types.split(",") if t]
    if not args.only_write:
        model = demo_hf_folder()
        py = sys.executable
        awq = str(Path(py).with_name("awq-gguf"))
        eval_text = read_text(ROOT / "data/wiki.eval.txt")
        calib = st / "lee.calib.cut.txt"
        if not calib.is_file():
            state["calib_tokens"] = cut_calibration(ROOT / "data/lee.calib.txt", calib, N_SAMPLES * SEQLEN)
            save()
        env = {**os.environ, "AWQ_GGUF_CACHE": str(st / "cache")}

        def step(key: str, cmd: list[str] | None, out: Path) -> None:
            """Run cmd (making out) unless done, then score out; both kept in the state."""
            entry = state.setdefault(key, {})
            if "wall_s" not in entry and cmd is not None:
                print(f"[{key}] {' '.join(cmd)}", flush=True)
                wall, rss = run_measured(cmd, env)
                entry.update(wall_s=round(wall, 1), rss_mib=round(rss))
                save()
            if "ppl" not in entry:
                res = perplexity(out, eval_text, ctx=512, chunks=args.chunks, progress=False)
                entry.update(ppl=res.ppl, tokens=res.n_tokens, mib=out.stat().st_size / 2**20)
                save()
                print(f"[{key}] ppl {res.ppl:.4f}", flush=True)

        f16 = st / "f16.gguf"
        step("F16", [awq, "convert", str(model), "-o", str(f16), "-t", "F16", "--method", "rtn", "-q", "--force"], f16)
        imat = st / "imatrix.gguf"
        if not imat.is_file():
            run_measured([str(bin_dir / "llama-imatrix"), "-m", str(f16), "-f", str(calib), "-o", str(imat),
                          "-c", str(SEQLEN), "-b", str(SEQLEN), "--chunks", str(N_SAMPLES), "-t", str(os.cpu_count())])
        for t in types:
            o = st / f"llama-{t}.gguf"
            step(f"{t}|llama.cpp", [str(bin_dir / "llama-quantize"), str(f16), str(o), t], o)
            o = st / f"llama-imat-{t}.gguf"
            step(f"{t}|llama.cpp+imatrix", [str(bin_dir / "llama-quantize"), "--imatrix", str(imat), str(f16), str(o), t], o)
            o = st / f"ours-rtn-{t}.gguf"
            step(f"{t}|ours RTN", [awq, "convert", str(model), "-o", str(o), "-t", t, "--method", "rtn", "-q", "--force"], o)
            if args.skip_awq:
                continue
            o = st / f"ours-awq-{t}.gguf"
            step(f"{t}|ours AWQ", [awq, "convert", str(model), "-o", str(o), "-t", t, "--method", "awq", "--calib",
                                    str(calib), "--calib-samples", str(N_SAMPLES), "--calib-seqlen", str(SEQLEN),
                                    "-q", "--force"], o)
        for t in [] if args.skip_awq else datafree:
            o = st / f"ours-awq-df-{t}.gguf"
            step(f"{t}|ours AWQ data-free", [awq, "convert", str(model), "-o", str(o), "-t", t, "--method", "awq",
                                              "--calib-samples", str(args.datafree_samples), "--calib-seqlen",
                                              str(SEQLEN), "-q", "--force"], o)

    body = table(state, types, args)
    print(body)
    if args.write or args.only_write:
        write_section("awq-quality", body)


def table(state: dict, types: list[str], args) -> str:
    f16 = state.get("F16", {}).get("ppl")
    missing = [f"{t} {m}" for t in types for m in METHODS[:4] if "ppl" not in state.get(f"{t}|{m}", {})]
    partial = f" (PARTIAL: not yet measured: {', '.join(missing)})" if missing else ""
    lines = [
        f"### AWQ quality: llama.cpp (plain and imatrix) vs ours (RTN, AWQ), demo model{partial}",
        "",
        f"Machine: {machine()}. Date: {today()}. Commit: {git_rev()}. Command: `python tools/bench_awq.py --write`.",
        f"Calibration (every method, the same tokens): the first {N_SAMPLES} windows of {SEQLEN} tokens of "
        "lee_background.cor (300 news articles). AWQ data-free: the model's own seeded samples "
        f"({args.datafree_samples} x {SEQLEN} tokens). Evaluation: data/wiki.eval.txt (Wikipedia articles "
        f"calibration never saw), ctx 512, first {args.chunks} windows, llama.cpp perplexity (llama-cpp-python). "
        "llama.cpp: llama-quantize and llama-imatrix from the llama-cpp-python 0.3.36 sdist, from our F16 file.",
        "",
        "About the demo model: SmolLM2-135M-Instruct's only offline copy is a Q4_1 GGUF, so its float weights "
        "sit on a Q4_1 grid (Q4_1-like formats are nearly lossless on it). Its hidden size, 576, is not a multiple "
        "of 256, so the K mixes fall back to Q4_0/Q5_0/Q5_1/Q8_0 on most tensors; only ffn_down (1536 wide) gets "
        "K blocks. Q4_0 loses most.",
        "",
        f"F16 perplexity: {f16:.4f}." if f16 else "F16 perplexity: not measured.",
        "",
        "| type | method | MiB | PPL | dPPL | AWQ dPPL / this dPPL | convert s | peak RSS MiB |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for t in types:
        awq = state.get(f"{t}|ours AWQ", {}).get("ppl")
        for m in METHODS:
            e = state.get(f"{t}|{m}")
            if not e or "ppl" not in e:
                continue
            d = e["ppl"] - f16 if f16 else float("nan")
            ratio = f"{(awq - f16) / d:.2f}" if awq and f16 and m != "ours AWQ" and d > 0 else ""
            lines.append(f"| {t} | {m} | {e['mib']:.1f} | {e['ppl']:.4f} | {d:+.4f} | {ratio} | "
                         f"{e.get('wall_s', '')} | {e.get('rss_mib', '')} |")
    lines += ["", "dPPL = PPL - F16 PPL. Targets (issue 3): AWQ dPPL / llama.cpp+imatrix dPPL < 1.0 (aim 0.7), and "
              "AWQ dPPL / llama.cpp dPPL <= 0.5. convert s: the whole command under the load of the day (llama.cpp rows: "
              "llama-quantize alone, from the F16 file; ours: from the HF folder, AWQ search included); peak RSS: "
              "GNU time's maximum resident set size of that command."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
