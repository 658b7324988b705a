"""Perplexity of our quantized demo model against llama.cpp's own quantization of the same F16 file.

Usage: python tools/bench_ppl.py [--types Q8_0,Q4_0,...] [--chunks 100] [--write]
Needs: python tools/fetch_text.py (data/wiki.eval.txt) and bash tools/build_llama_cpp.sh (llama-quantize).
Steps, all in one run: the demo HF folder -> our F16 GGUF; `awq-gguf verify` of that F16 file against
transformers; then per type, our `awq-gguf convert F16.gguf -t TYPE` and llama.cpp's `llama-quantize F16.gguf TYPE`,
both scored by the same llama.cpp perplexity (llama-cpp-python, llama-perplexity's method, ctx 512).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_markdown import ROOT, git_rev, machine, today, write_section  # noqa: E402

DEFAULT_TYPES = "Q8_0,Q4_0,Q5_0,Q3_K_M,Q4_K_M,Q2_K"

NOTE = (
    "About the demo model: SmolLM2-135M-Instruct's only offline copy is a Q4_1 GGUF, so its float weights sit on a "
    "Q4_1 grid (requantizing to Q4_1 is lossless, Q4_K/Q5_K/Q6_K nearly so). Its hidden size, 576, is not a "
    "multiple of 256, so llama.cpp's K mixes fall back to Q4_0/Q5_0/Q5_1/Q8_0 on most tensors; only ffn_down "
    "(1536 wide) gets K blocks. Q4_0 loses most."
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--types", default=DEFAULT_TYPES)
    ap.add_argument("--chunks", type=int, default=100, help="windows of 512 tokens scored per file")
    ap.add_argument("--verify-chunks", type=int, default=40)
    ap.add_argument("--text", type=Path, default=ROOT / "data/wiki.eval.txt")
    ap.add_argument("--llama-bin", type=Path, default=ROOT / ".llama.cpp/build/bin")
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()

    from awq_gguf.config import ConvertConfig
    from awq_gguf.convert.pipeline import convert_model
    from awq_gguf.demo import demo_hf_folder
    from awq_gguf.inspect_file import summarize
    from awq_gguf.perplexity import perplexity, read_text
    from awq_gguf.verify import verify

    quantize = args.llama_bin / "llama-quantize"
    if not quantize.is_file():
        print(f"error: {quantize} not found; run: bash tools/build_llama_cpp.sh", file=sys.stderr)
        raise SystemExit(2)
    text = read_text(args.text)
    model = demo_hf_folder()
    lines = [
        "### Perplexity: our quantization vs llama.cpp's, demo model",
        "",
        f"Machine: {machine()}. Date: {today()}. Commit: {git_rev()}. "
        f"Command: `python tools/bench_ppl.py --chunks {args.chunks} --write`.",
        f"Text: {args.text.relative_to(ROOT)} (Wikipedia articles held out from calibration), ctx 512, "
        f"first {args.chunks} windows ({args.chunks * 256} scored tokens). Both files of a row come from the same "
        "F16 GGUF (ours); llama.cpp's is llama-quantize from the llama-cpp-python 0.3.36 sdist, in the same run; "
        "both are scored by the same llama.cpp perplexity. Method: plain rounding (RTN), no imatrix on either side.",
        "",
        NOTE,
        "",
    ]
    with tempfile.TemporaryDirectory(prefix="awq-gguf-bench-") as tmp:
        t = Path(tmp)
        f16 = t / "demo-F16.gguf"
        convert_model(ConvertConfig(model=model, out=f16, type="F16", progress=False))
        print("verifying F16 against transformers ...", flush=True)
        v = verify(f16, model, text, ctx=512, chunks=args.verify_chunks)
        lines += [
            f"F16 check (`awq-gguf verify`, {args.verify_chunks} windows, {v.n_scored} scored tokens): token ids "
            f"{'identical' if v.tokens_equal else 'DIFFER'} over {v.n_text_tokens} tokens of the text; top-1 "
            f"agreement {v.top1_agreement * 100:.2f}%; mean KL {v.mean_kl:.2e}; perplexity llama.cpp "
            f"{v.ppl_gguf:.4f} vs transformers (f32) {v.ppl_reference:.4f} "
            f"({(v.ppl_gguf / v.ppl_reference - 1) * 100:+.3f}%).",
            "",
        ]
        base = perplexity(f16, text, ctx=512, chunks=args.chunks, progress=False).ppl
        print(f"F16 ppl {base:.4f}", flush=True)
        lines += [
            f"F16 perplexity on the {args.chunks} windows: {base:.4f}.",
            "",
            "| type | ours MiB | llama.cpp MiB | ours bpw | ours PPL | llama.cpp PPL | ratio | ours dPPL | llama.cpp dPPL |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for type_ in args.types.split(","):
            ours, theirs = t / f"ours-{type_}.gguf", t / f"llama-{type_}.gguf"
            start = time.perf_counter()
            res = convert_model(ConvertConfig(model=f16, out=ours, type=type_, progress=False))
            subprocess.run([str(quantize), str(f16), str(theirs), type_], check=True, capture_output=True)
            p_ours = perplexity(ours, text, ctx=512, chunks=args.chunks, progress=False).ppl
            p_theirs = perplexity(theirs, text, ctx=512, chunks=args.chunks, progress=False).ppl
            mib = lambda p: sum(r.n_bytes for r in summarize(p)[1]) / 2**20  # noqa: E731
            lines.append(
                f"| {type_} | {mib(ours):.1f} | {mib(theirs):.1f} | {res.bpw:.2f} | {p_ours:.4f} | {p_theirs:.4f} | "
                f"{p_ours / p_theirs:.4f} | {p_ours - base:+.4f} | {p_theirs - base:+.4f} |"
            )
            print(lines[-1], f"({time.perf_counter() - start:.0f} s)", flush=True)
            ours.unlink()
            theirs.unlink()
    lines += ["", "ratio = ours PPL / llama.cpp PPL (target: at most 1.005). dPPL = PPL - F16 PPL."]
    body = "\n".join(lines)
    print(body)
    if args.write:
        write_section("ppl-rtn", body)


if __name__ == "__main__":
    main()
