"""The two measurements behind each batch-1 GEMV default of the GPU kernels (cuda_kernels/ops.py BATCH1_DEFAULT and
BATCH1_RULES), on the GPU machine:

  python tools/bench_gpu_defaults.py gemv --types Q4_K,Q6_K --shapes 4096x11008,4096x14336 --modes 12,13,14,19
      # the GEMV as the GPU runner calls it (x already rounded to int8): us per call and fraction of the copy
      # bandwidth per (type, shape, mode), 4 rows per warp unless a mode says MODE/NR, CUDA graphs rotating over
      # 4x L2 of weights
  python tools/bench_gpu_defaults.py runner --shape tinyllama-1.1b --variant Q4_K:wide:14 --variant Q6_K:wide:19 --smi
      # the GPU runner's decode-step graph (Q4_K_M, random weights) with the library defaults and with each
      # variant, the graphs replayed in turn (one replay each per round); --smi samples nvidia-smi every 50 ms

A variant TYPE:SHAPE:MODE makes TYPE's batch-1 GEMVs on matrices of SHAPE (tall: rows > cols, wide: cols > rows,
square, any; SHAPE<=N: with at most N rows) run MODE with 4 rows per warp (MODE/NR: NR rows); rules joined by '+'
make one variant (Q4_K:wide:14+Q6_K:square<=2048:14).
Replaying in turn matters: an H100 here reached 87-90 C and software thermal slowdown within ~2 s of sustained
decode (SM clock 1980 -> 1200-1450 MHz), so variants timed one after another favour whichever ran first
(BENCHMARKS.md gpu-runner, 2026-11-28). The choices of 2026-11-28 (ops.BATCH1_RULES: Q4_K 14 and Q6_K 19 on wide
matrices, Q6_K 14 on square ones, Q4_K 14 on square ones up to 2048 rows) were measured this way; a variant rule has
the form of a BATCH1_RULES entry.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

SHAPE_KINDS = ("tall", "wide", "square", "any")  # ops.ShapeRule's kinds, and any (all three)


def parse_mode(text: str) -> tuple[int, int]:
    """'14' -> (14, 4); '14/2' -> (14, 2): a q8 mode and its rows per warp (4 unless given)."""
    mode, sep, nr = text.partition("/")
    m, n = int(mode), int(nr) if sep else 4
    if n not in (1, 2, 4):
        raise ValueError(f"rows per warp must be 1, 2 or 4, got {text!r}")
    return m, n


def parse_variant(text: str) -> list:
    """'Q4_K:wide:14+Q6_K:tall<=12288:13/2' -> the ops.ShapeRule entries it names (SHAPE 'any': one per shape kind):
    [ShapeRule(Q4_K, 'wide', 14, 4, 0), ShapeRule(Q6_K, 'tall', 13, 2, 12288)]."""
    from gguf import GGMLQuantizationType as T

    from awq_gguf.cuda_kernels.ops import ShapeRule

    rules = []
    for part in text.split("+"):
        try:
            name, shape, mode = part.split(":")
            kind, sep, bound = shape.partition("<=")
            qtype, (m, n), max_rows = T[name], parse_mode(mode), int(bound) if sep else 0
        except (ValueError, KeyError):
            raise ValueError(f"variant rule must be TYPE:SHAPE[<=ROWS]:MODE[/NR] (e.g. Q4_K:wide:14), got {part!r}"
                             ) from None
        if kind not in SHAPE_KINDS:
            raise ValueError(f"variant rule {part!r}: SHAPE must be one of {', '.join(SHAPE_KINDS)}")
        try:
            rules += [ShapeRule(qtype, k, m, n, max_rows) for k in (SHAPE_KINDS[:3] if kind == "any" else (kind,))]
        except ValueError as e:  # ShapeRule's own checks: an int8 mode, a row bound >= 0
            raise ValueError(f"variant rule {part!r}: {e}") from None
    return rules


def resolver(rules: list, base):
    """ops.resolve_mode with the rules (ops.ShapeRule) applied first (batch 1, mode and nr left to the library)."""

    def resolve(w, batch: int, nr: int, mode: int) -> tuple[int, int]:
        if mode == 0 and nr == 0 and batch == 1:
            for rule in rules:
                if rule.matches(w.qtype, w.rows, w.cols):
                    return rule.nr, rule.mode
        return base(w, batch, nr, mode)

    return resolve


def gemv(types: list[str], shapes: list[tuple[int, int]], modes: list[str]) -> list[dict]:
    import torch
    from bench_cuda import copy_bandwidth, graph_time, gguf_bytes, random_gguf
    from gguf import GGMLQuantizationType as T

    from awq_gguf import cuda_kernels as ck
    from awq_gguf.cuda_kernels import fused as fz

    gen = torch.Generator(device="cuda").manual_seed(0)
    l2 = torch.cuda.get_device_properties(0).L2_cache_size
    copy_bw = copy_bandwidth()
    out = []
    for name in types:
        qt = T[name]
        for rows, cols in shapes:
            one = ck.QuantMatrix.from_gguf(random_gguf(qt, rows, cols, gen), qt, rows, cols)
            sets = [one] + [ck.QuantMatrix.from_gguf(random_gguf(qt, rows, cols, gen), qt, rows, cols)
                            for _ in range(max(2, math.ceil(4 * l2 / one.nbytes)) - 1)]
            act = fz.add_rmsnorm_q8(torch.randn(1, cols, device="cuda", generator=gen), None,
                                    torch.ones(cols, device="cuda"), 1e-5)
            y = torch.empty(1, rows, device="cuda")
            nbytes = gguf_bytes(qt, rows, cols) + cols * 2 + rows * 4  # as tools/bench_cuda.py counts a batch-1 call
            row = {"type": name, "rows": rows, "cols": cols, "copy_bw": copy_bw, "us": {}, "of_copy": {}}
            for key in ["0", *modes]:  # 0: the library's default
                m, n = parse_mode(key)
                t = graph_time([lambda w=w, m=m, n=n if m else 0, a=act, o=y: fz.gemv_q8(a, w, out=o, nr=n, mode=m)
                                for w in sets])
                row["us"][key], row["of_copy"][key] = t * 1e6, nbytes / t / copy_bw
            print(f"{name} {rows}x{cols}: " + "  ".join(
                f"{'default' if m == '0' else m}: {row['us'][m]:.2f} us ({row['of_copy'][m]:.2f})" for m in row["us"]),
                flush=True)
            out.append(row)
            del sets, one
            torch.cuda.empty_cache()
    return out


def runner(shape: str, variants: list[str], rounds: int, reps: int, work: Path) -> list[dict]:
    import torch
    from bench_gpu_runner import capture_step, convert, time_graphs
    from random_llama import SHAPES, write_random_llama

    from awq_gguf.cuda_kernels import fused, ops

    path = work / f"{shape}-Q4_K_M.gguf"
    if not path.exists():
        write_random_llama(work / shape, SHAPES[shape])
        convert(work / shape, path, "Q4_K_M")
    base = ops.resolve_mode
    held = {}
    try:
        for name in ["defaults", *variants]:  # the mode is chosen when the graph is captured
            ops.resolve_mode = fused.resolve_mode = base if name == "defaults" else resolver(parse_variant(name), base)
            held[name] = capture_step(path)
    finally:
        ops.resolve_mode = fused.resolve_mode = base
    out = []
    for r in range(rounds):
        times = time_graphs({k: h[2] for k, h in held.items()}, reps=reps)
        out.append({"shape": shape, "round": r, "step_us": {k: v * 1e6 for k, v in times.items()}})
        print(f"{shape} round {r}: " + "  ".join(f"{k}: {v * 1e6:.1f} us" for k, v in times.items()), flush=True)
    del held
    torch.cuda.empty_cache()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("gemv", help="x pre-rounded GEMV per (type, shape, mode)")
    g.add_argument("--types", default="Q4_K,Q6_K")
    g.add_argument("--shapes", default="4096x4096,11008x4096,4096x11008,14336x4096,4096x14336")
    g.add_argument("--modes", default="12,13,14,15,19", help="q8 modes, each MODE or MODE/NR (rows per warp, 4 unless given)")
    r = sub.add_parser("runner", help="decode-step graphs of the defaults and variants, replayed in turn")
    r.add_argument("--shape", default="tinyllama-1.1b")
    r.add_argument("--variant", action="append", default=[], help="TYPE:SHAPE:MODE[+...] (repeatable)")
    r.add_argument("--rounds", type=int, default=2)
    r.add_argument("--reps", type=int, default=300)
    r.add_argument("--work", type=Path, default=Path("/tmp/gpu_runner_bench"))
    for p in (g, r):
        p.add_argument("--out", type=Path, default=Path("."))
        p.add_argument("--smi", action="store_true", help="nvidia-smi clocks / temperature / throttling, 50 ms")
    args = ap.parse_args()
    try:  # bad arguments fail here, in one line, before any GPU work
        for v in getattr(args, "variant", []):
            parse_variant(v)
        if args.cmd == "gemv":
            shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")]
            modes = args.modes.split(",")
            for m in modes:
                parse_mode(m)
    except ValueError as e:
        ap.error(str(e))
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "smi.csv", "w") if args.smi else open("/dev/null", "w") as log:
        smi = subprocess.Popen(
            ["nvidia-smi", "--query-gpu=timestamp,clocks.sm,power.draw,temperature.gpu,clocks_event_reasons.active",
             "--format=csv", "-lms", "50"], stdout=log) if args.smi else None
        try:
            if args.cmd == "gemv":
                res = gemv(args.types.split(","), shapes, modes)
            else:
                res = runner(args.shape, args.variant, args.rounds, args.reps, args.work)
        finally:
            if smi is not None:
                smi.terminate()
    (args.out / f"gpu_defaults_{args.cmd}.json").write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
