"""GPU runner evidence (issue 5): decode and prompt speed of `--device cuda` on a random-weight 1B-class Llama
converted by our converter, against the copy-bandwidth bound, plus its logits against the CPU runner.

On the device machine (no network; the model is built there):

  python tools/bench_gpu_runner.py --out $OUT [--types Q4_K_M Q4_0] [--commit SHA]

Steps: tools/random_llama.py writes TinyLlama-1.1B's shape (hidden 2048, FFN 5632, 22 layers, 32:4 heads,
vocab 32000) with N(0, 0.02) float16 weights; `convert --method rtn` (awq_gguf.convert.pipeline) writes each
type; runner.bench (device cuda: pp512 and tg128, the copy-bandwidth bound measured in the same run); tg with
the CUDA graphs off (AWQ_GGUF_CUDA_GRAPHS=0) for the ablation; the decode graph's replay time alone (CUDA
events, no host work: what the GPU spends per token), with the fused decode kernels and without them (the torch-op
step, GpuModel(fused=False): the baseline in the same run); logits of a 32-token prompt and 8 decode steps against the
CPU runner's torch backend (float32, exact dequantization). Prints a markdown table; JSON goes to --out.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from random_llama import SHAPES, write_random_llama


def convert(folder: Path, out: Path, type_: str) -> float:
    from awq_gguf.convert.pipeline import convert_model

    from awq_gguf.config import ConvertConfig

    t = time.perf_counter()
    convert_model(ConvertConfig(method="rtn", model=folder, out=out, type=type_, force=True, progress=False))
    return time.perf_counter() - t


def capture_step(path: Path, n_ctx: int = 520, fused: bool = True) -> tuple:
    """(model, cache, graph): the decode step's captured graph (bucket 256); fused=False: the decode step of torch
    ops instead of the fused kernels. The model and cache are returned to keep the graph's buffers alive."""
    from awq_gguf.runner.gpu_model import GpuModel

    m = GpuModel.load(path, n_ctx=n_ctx, fused=fused)
    cache = m.new_cache()
    m.forward([1, 2, 3, 4], cache)
    m.forward([5], cache)  # captures the bucket's graph
    return m, cache, m._graphs[m._bucket(cache.n_past)]


def time_graphs(graphs: dict, reps: int = 200) -> dict:
    """Seconds per replay of each graph, median of `reps`, the graphs replayed in turn (one replay each per round):
    variants compared this way see the same clocks. Sustained replays heat the card (an H100 here reached 87-90 C
    and its thermal slowdown within ~2 s, SM clock 1980 -> 1200-1450 MHz), so back-to-back runs of one variant
    after another favour whichever ran first."""
    times = {k: [] for k in graphs}
    for _ in range(reps):
        for k, g in graphs.items():
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            g.replay()
            b.record()
            b.synchronize()
            times[k].append(a.elapsed_time(b) / 1e3)
    return {k: statistics.median(v) for k, v in times.items()}


def graph_step_time(path: Path, n_ctx: int = 520, reps: int = 200, fused: bool = True) -> float:
    """Seconds per decode step of the captured graph alone, median of `reps` replays."""
    return time_graphs({"step": capture_step(path, n_ctx, fused)[2]}, reps)["step"]


KERNEL_GROUPS = [  # (group, substrings of the CUDA kernel name), first match wins
    ("fused elementwise (ours: norm/SiLU + rounding, RoPE + KV write)", ("add_rmsnorm_q8", "silu_mul_q8", "rope_kv")),
    ("GEMV (ours)", ("gemv_q8_kernel", "gemv_kernel")),
    ("activation rounding (ours)", ("quant_x_kernel",)),
    ("attention (SDPA, or ours: attn_decode_q8)", ("fmha", "attention", "flash", "efficient", "attn_decode")),
    ("RMSNorm", ("rms", "norm")),
    ("index / KV store", ("index", "gather", "scatter")),
    ("casts and copies", ("copy", "Copy", "direct_copy", "cast")),
]


def kernel_profile(path: Path, steps: int = 20) -> dict:
    """CUDA kernel time per decode step, grouped (torch.profiler over eager steps: the same kernels the graph
    replays, without its launch savings), beside the graph's step time."""
    from torch.profiler import ProfilerActivity, profile

    from awq_gguf.runner.gpu_model import GpuModel

    m = GpuModel.load(path, n_ctx=520, graphs=False)
    cache = m.new_cache()
    m.forward([1, 2, 3, 4], cache)
    m.forward([5], cache)
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for i in range(steps):
            m.forward([6 + i], cache)
    groups: dict[str, list[float]] = {}
    for e in prof.key_averages():
        if e.device_type != torch.autograd.DeviceType.CUDA:
            continue
        us = getattr(e, "device_time_total", None) or getattr(e, "cuda_time_total", 0.0)
        name = next((g for g, keys in KERNEL_GROUPS if any(k in e.key for k in keys)), "other elementwise")
        acc = groups.setdefault(name, [0.0, 0.0])
        acc[0] += us / steps
        acc[1] += e.count / steps
    return {g: {"us_per_step": v[0], "kernels_per_step": v[1]} for g, v in groups.items()}


def accuracy(path: Path) -> dict:
    """GPU runner vs CPU runner (torch backend, float32) on a 32-token prompt's last logits and 8 greedy decode
    steps fed the CPU's tokens; with the default int8 activations ("q8") and with float activations ("f16")."""
    from awq_gguf.runner.gpu_model import GpuModel
    from awq_gguf.runner.model import Model

    cpu = Model.load(path, n_ctx=64, backend="torch", threads=os.cpu_count())
    ids = np.random.default_rng(0).integers(0, cpu.hp.n_vocab, 32).tolist()
    cc = cpu.new_cache()
    want, toks = [cpu.forward(ids, cc)], []
    for _ in range(8):
        toks.append(int(want[-1].argmax()))
        want.append(cpu.forward([toks[-1]], cc))
    out = {}
    for name, act_q8 in (("q8", True), ("f16", False)):
        gpu = GpuModel.load(path, n_ctx=64, act_q8=act_q8)
        gc = gpu.new_cache()
        got = [gpu.forward(ids, gc)] + [gpu.forward([t], gc) for t in toks]
        rel = [float((g.double() - w.double()).norm() / w.double().norm()) for g, w in zip(got, want)]
        top1 = float(np.mean([int(g.argmax()) == int(w.argmax()) for g, w in zip(got, want)]))
        out[name] = {"rel_max": max(rel), "rel_mean": float(np.mean(rel)), "top1": top1, "steps": len(rel)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("."))
    ap.add_argument("--work", type=Path, default=Path("/tmp/gpu_runner_bench"))
    ap.add_argument("--types", nargs="+", default=["Q4_K_M", "Q4_0"])
    ap.add_argument("--shape", default="tinyllama-1.1b", choices=sorted(SHAPES))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--commit", default="")
    ap.add_argument("--skip-accuracy", action="store_true")
    ap.add_argument("--profile", action="store_true", help="kernel time per decode step by group (first type)")
    ap.add_argument("--gemv-sweep", nargs="*", default=[], metavar="MODE,NR",
                    help="also time the graph step with every GEMV forced to these (mode, rows per warp) choices "
                         "(AWQ_GGUF_GEMV), e.g. 5,4 7,2")
    ap.add_argument("--skip-tg", action="store_true", help="graph step times only (no pp/tg, no ablations)")
    args = ap.parse_args()

    from awq_gguf.runner.bench import bench

    props = torch.cuda.get_device_properties(0)
    info = {"card": props.name, "sms": props.multi_processor_count, "torch": torch.__version__,
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "commit": args.commit, "shape": args.shape, "cpus": os.cpu_count()}
    print(json.dumps(info), flush=True)
    folder = args.work / args.shape
    t = time.perf_counter()
    write_random_llama(folder, SHAPES[args.shape])
    info["model_write_s"] = time.perf_counter() - t
    rows = []
    for type_ in args.types:
        path = args.work / f"{args.shape}-{type_}.gguf"
        row = {"type": type_, "convert_s": convert(folder, path, type_), "file_mib": path.stat().st_size / 2**20}
        print(f"{type_}: converted in {row['convert_s']:.1f} s", flush=True)
        if args.skip_tg:
            row["graph_step_s"] = graph_step_time(path)
        else:
            rep = bench(path, n_pp=512, n_tg=128, reps=args.reps, device="cuda")
            d = rep.as_dict()
            row |= {"weight_bytes": rep.weight_bytes, "copy_bw": rep.copy_bandwidth, "pp": d["runner"]["pp"],
                    "pp_runs": d["runner"]["pp_runs"], "tg": d["runner"]["tg"], "tg_runs": d["runner"]["tg_runs"],
                    "tg_bound": d["tg_bound"], "tg_of_bound": d["tg_of_bound"], "backend": d["runner"]["backend"]}
            os.environ["AWQ_GGUF_CUDA_GRAPHS"] = "0"
            try:
                row["tg_no_graphs"] = bench(path, n_pp=16, n_tg=128, reps=1, device="cuda").as_dict()["runner"]["tg"]
            finally:
                del os.environ["AWQ_GGUF_CUDA_GRAPHS"]
            row["graph_step_s"] = graph_step_time(path)
            row["graph_step_unfused_s"] = graph_step_time(path, fused=False)
            os.environ["AWQ_GGUF_GPU_FUSED_ATTN"] = "0"
            try:
                row["graph_step_sdpa_s"] = graph_step_time(path)  # fused, but attention by SDPA
            finally:
                del os.environ["AWQ_GGUF_GPU_FUSED_ATTN"]
        sweep = {}
        if args.gemv_sweep:  # every variant's graph captured first, then replayed in turn (time_graphs)
            held = {"defaults": capture_step(path)}
            for choice in args.gemv_sweep:
                os.environ["AWQ_GGUF_GEMV"] = choice
                try:
                    held[choice] = capture_step(path)
                finally:
                    del os.environ["AWQ_GGUF_GEMV"]
            times = time_graphs({k: v[2] for k, v in held.items()})
            del held
            row["gemv_sweep_defaults_s"] = times.pop("defaults")
            sweep = times
            for choice in args.gemv_sweep:
                print(f"{type_}: GEMV mode,nr {choice}: graph step {sweep[choice] * 1e6:.0f} us (defaults, "
                      f"alternated: {row['gemv_sweep_defaults_s'] * 1e6:.0f} us)", flush=True)
        row["gemv_sweep"] = sweep
        if not args.skip_accuracy:
            row["accuracy"] = accuracy(path)
        if args.profile and not rows:
            row["profile"] = kernel_profile(path)
        print(json.dumps(row), flush=True)
        rows.append(row)
        torch.cuda.empty_cache()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_runner.json").write_text(json.dumps({"info": info, "rows": rows}, indent=1))
    if args.gemv_sweep:
        print("\n| type | graph step us, library defaults (replayed in turn with the others) | "
              + " | ".join(f"mode,nr {c}" for c in args.gemv_sweep) + " |\n|---|---:|" + "---:|" * len(args.gemv_sweep))
        for r in rows:
            print(f"| {r['type']} | {r['gemv_sweep_defaults_s'] * 1e6:.0f} | "
                  + " | ".join(f"{r['gemv_sweep'][c] * 1e6:.0f}" for c in args.gemv_sweep) + " |")
    if args.skip_tg:
        return

    print(f"\n{info['card']}, {info['date']}, commit {info['commit']}, torch {info['torch']}; "
          f"copy bandwidth {rows[0]['copy_bw'] / 1e9:.0f} GB/s (read + write)")
    print("| type | weights MiB/token | pp512 tok/s | tg128 tok/s | bound tok/s | tg / bound | graph step us "
          "| graph-only tok/s (of bound) | graph step us: unfused / fused with SDPA | tg no graphs | logits rel err q8 / f16 (max) | top-1 q8 / f16 |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    nan = {"rel_max": float("nan"), "top1": float("nan")}
    for r in rows:
        q8, f16 = r.get("accuracy", {}).get("q8", nan), r.get("accuracy", {}).get("f16", nan)
        g = 1 / r["graph_step_s"]
        print(f"| {r['type']} | {r['weight_bytes'] / 2**20:.0f} | {r['pp']:.0f} | {r['tg']:.1f} | {r['tg_bound']:.0f} "
              f"| {r['tg_of_bound']:.3f} | {r['graph_step_s'] * 1e6:.0f} | {g:.0f} ({g / r['tg_bound']:.3f}) "
              f"| {r['graph_step_unfused_s'] * 1e6:.0f} / {r['graph_step_sdpa_s'] * 1e6:.0f} | {r['tg_no_graphs']:.1f} | {q8['rel_max']:.1e} / {f16['rel_max']:.1e} "
              f"| {q8['top1']:.2f} / {f16['top1']:.2f} |")
    for r in rows:
        if "profile" in r:
            total = sum(v["us_per_step"] for v in r["profile"].values())
            print(f"\n{r['type']}: CUDA kernel time per eager decode step {total:.0f} us "
                  f"(graph replay {r['graph_step_s'] * 1e6:.0f} us)")
            print("| kernels | us per step | kernels per step |\n|---|---:|---:|")
            for g, v in sorted(r["profile"].items(), key=lambda kv: -kv[1]["us_per_step"]):
                print(f"| {g} | {v['us_per_step']:.0f} | {v['kernels_per_step']:.0f} |")


if __name__ == "__main__":
    main()
