"""AWQ search time of one Llama-2-7B-shaped block on the GPU (issue 5 target: at most 3 s per block), with the
K-quant search in its graph form (k_common.graph_search: one compiled graph per chunk) against the per-stage form
(AWQ_GGUF_GRAPH_SEARCH=0, the code before it) in the same run, and the quality of both searches' choices.

  python tools/bench_awq_gpu.py [--out DIR] [--runs 2] [--baseline-runs 2]     # on the GPU machine

The block (the one tools/bench_cuda.py timed before this script took it over, same seeds): hidden 4096, FFN
11008, 32 heads, random weights, 16 outlier input channels x30, 128 x 512 calibration tokens, Q4_K for every linear, AwqSettings(device="cuda"), every
setting at its default (20-point grid, 512-token screening of the scale candidates as on the CPU, clip search).
Both forms search the same block from the same hidden states. Quality: each search's summed group loss (its own
quantizer), and the block output MSE against the float block on 8 calibration sequences with the chosen scales
and clips, every linear quantized by the per-stage quantizer (one judge for both results), next to plain rounding.
Writes DIR/awq_gpu.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


class Timer:
    """Accumulated wall time (synchronized) of wrapped module functions, for the breakdown of one run."""

    def __init__(self) -> None:
        self.t: dict[str, float] = {}
        self.n: dict[str, int] = {}

    def wrap(self, module, attr: str, label: str):

        fn = getattr(module, attr)

        def timed(*a, **k):
            _sync()
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                _sync()
                self.t[label] = self.t.get(label, 0.0) + time.perf_counter() - t0
                self.n[label] = self.n.get(label, 0) + 1

        setattr(module, attr, timed)
        return lambda: setattr(module, attr, fn)


def make_block(dev: str = "cuda", small: bool = False):
    """(params, hidden states [N, L, C], config, types): the block tools/bench_cuda.py used to time, drawn in the
    same order (small: a tiny one, for a smoke test of this script on the CPU)."""
    import torch
    from awq_gguf.awq_scale.block import LINEARS, BlockConfig
    from gguf import GGMLQuantizationType

    C, FF, NH, N, L = (256, 512, 2, 4, 32) if small else (4096, 11008, 32, 128, 512)
    gen = torch.Generator(device=dev).manual_seed(2)

    def lin(r, c):
        return torch.randn(r, c, device=dev, generator=gen) * (1 / math.sqrt(c))

    p = {"attn_norm.weight": 1 + 0.1 * torch.randn(C, device=dev, generator=gen),
         "ffn_norm.weight": 1 + 0.1 * torch.randn(C, device=dev, generator=gen),
         "attn_q.weight": lin(C, C), "attn_k.weight": lin(C, C), "attn_v.weight": lin(C, C),
         "attn_output.weight": lin(C, C), "ffn_gate.weight": lin(FF, C), "ffn_up.weight": lin(FF, C),
         "ffn_down.weight": lin(C, FF)}
    outliers = torch.randperm(C, device=dev, generator=gen)[:16]
    h = torch.randn(N, L, C, device=dev, generator=gen)
    h[:, :, outliers] *= 30.0  # injected outlier input channels
    cfg = BlockConfig(n_head=NH, n_head_kv=NH, head_dim=C // NH, eps=1e-5, rope_base=10000.0, rope_neox=False,
                      n_rot=C // NH)
    return p, h, cfg, {stem: GGMLQuantizationType.Q4_K for stem in LINEARS}


def set_graph(on: bool) -> None:
    os.environ["AWQ_GGUF_GRAPH_SEARCH"] = "1" if on else "0"


def timed_block(p, h0, cfg, types, settings, timer: Timer | None = None):
    """(seconds, BlockResult) of awq_block on a copy of h0; with a timer, the breakdown is recorded."""
    from awq_gguf.awq_scale import awq as awq_mod
    from awq_gguf.awq_scale import clip as clip_mod
    from awq_gguf.awq_scale import search as search_mod

    undo = []
    if timer is not None:
        undo = [timer.wrap(awq_mod, "block_forward", "capture pass (block_forward)"),
                timer.wrap(awq_mod, "search_group", "scale search (search_group)"),
                timer.wrap(search_mod, "quantized_params", "  candidate weights (quantized_params)"),
                timer.wrap(search_mod, "fake_quantize", "    fake_quantize in the scale search"),
                timer.wrap(search_mod, "module_forward", "  loss-module forwards"),
                timer.wrap(awq_mod, "clip_search", "clip search (clip_search)"),
                timer.wrap(clip_mod, "fake_quantize", "  fake_quantize in the clip search"),
                timer.wrap(clip_mod, "block_output_error", "  block output errors (moments)"),
                timer.wrap(awq_mod._Collector, "stats", "loss samples (_Collector.stats)"),
                timer.wrap(awq_mod, "apply_awq", "folding (apply_awq)"),
                timer.wrap(awq_mod, "scale_moments", "scaled moments (scale_moments)"),
                timer.wrap(awq_mod, "_check_finite", "finite check")]
    h = h0.clone()
    try:
        _sync()
        t0 = time.perf_counter()
        res = awq_mod.awq_block(p, h, types, cfg, "llama", settings)
        _sync()
        return time.perf_counter() - t0, res
    finally:
        for u in undo:
            u()
        del h


def block_mse(p, h0, cfg, types, res, seqs: int = 8) -> dict:
    """Block output MSE vs float on the first `seqs` sequences: AWQ result and plain rounding, every linear
    quantized by the per-stage quantizer with the result's importance (AWQ) or none (plain)."""

    from awq_gguf.awq_scale.awq import apply_awq
    from awq_gguf.awq_scale.block import LINEARS, block_forward
    from awq_gguf.convert.quants import fake_quantize

    was = os.environ.get("AWQ_GGUF_GRAPH_SEARCH", "1")
    set_graph(False)
    try:
        x = h0[:seqs]
        ref = block_forward(p, x, cfg)
        dev = x.device
        new = apply_awq(p, {k: v.to(dev) for k, v in res.scales.items()},
                        {k: v.to(dev) for k, v in res.clip_max.items()}, cfg, "llama")

        def quantized(q, importance):
            q = dict(q)
            for name in LINEARS:
                imp = None if importance is None else importance[f"{name}.weight"].to(dev)
                q[f"{name}.weight"] = fake_quantize(q[f"{name}.weight"].float(), types[name], imp)
            return q

        awq = block_forward(quantized(new, res.importance), x, cfg)
        rtn = block_forward(quantized(p, None), x, cfg)
        return {"awq": float((awq - ref).double().pow(2).mean()), "rtn": float((rtn - ref).double().pow(2).mean())}
    finally:
        os.environ["AWQ_GGUF_GRAPH_SEARCH"] = was


def choices(res) -> dict:
    """What the search chose: per group the exponent and form, and the clipped fraction per linear."""
    out = {}
    for g, r in res.report.groups:
        out[g.prev] = {"ratio": r.ratio, "duo": r.duo, "loss_unit": r.loss_unit, "loss": r.loss}
    return out


def compare_results(a, b) -> dict:
    """How far two searches' choices are apart: scales (max relative difference per group), clip bounds
    (fraction of blocks with the same bound, max relative difference)."""
    out = {}
    for k in a.scales:
        sa, sb = a.scales[k].double(), b.scales[k].double()
        out[f"scales {k}"] = float(((sa - sb).abs() / sa.abs()).max())
    for k in a.clip_max:
        ca, cb = a.clip_max[k].double(), b.clip_max.get(k)
        if cb is None:
            out[f"clip {k}"] = "missing in one"
            continue
        cb = cb.double()
        out[f"clip {k} same"] = float((ca == cb).double().mean())
        out[f"clip {k} max rel"] = float(((ca - cb).abs() / ca.abs().clamp_min(1e-30)).max())
    return out


def gpu_busy(p, h0, cfg, types, settings) -> dict:
    """One awq_block under torch.profiler: wall time, GPU kernel time (sum of kernel durations), kernel count."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        t, _ = timed_block(p, h0, cfg, types, settings)
    ev = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    kernels = [e for e in ev if "memcpy" not in e.name.lower() and "memset" not in e.name.lower()]
    return {"wall_s": t, "kernel_s": sum(e.device_time for e in kernels) / 1e6, "kernels": len(kernels),
            "memcpy_s": sum(e.device_time for e in ev if "memcpy" in e.name.lower()) / 1e6,
            "top": prof.key_averages().table(sort_by="cuda_time_total", row_limit=12, max_name_column_width=60)}


def fake_quantize_ms(w, imp, reps: int = 5) -> float:
    import torch
    from awq_gguf.convert.quants import fake_quantize
    from gguf import GGMLQuantizationType

    fake_quantize(w, GGMLQuantizationType.Q4_K, imp)
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fake_quantize(w, GGMLQuantizationType.Q4_K, imp)
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return statistics.median(times)


def profile_fake_quantize(w, imp) -> dict:
    """GPU kernels and their time in one fake_quantize call (torch.profiler)."""
    import torch
    from awq_gguf.convert.quants import fake_quantize
    from gguf import GGMLQuantizationType
    from torch.profiler import ProfilerActivity, profile

    fake_quantize(w, GGMLQuantizationType.Q4_K, imp)
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fake_quantize(w, GGMLQuantizationType.Q4_K, imp)
        torch.cuda.synchronize()
    events = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    gpu_us = sum(e.device_time for e in events)
    return {"kernels": len(events), "gpu_ms": gpu_us / 1e3,
            "top": prof.key_averages().table(sort_by="cuda_time_total", row_limit=8, max_name_column_width=50)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    ap.add_argument("--runs", type=int, default=2, help="timed graph-form runs after the profiled first one")
    ap.add_argument("--baseline-runs", type=int, default=2, help="per-stage runs (the first compiles its sums)")
    ap.add_argument("--budget", type=float, default=240.0, help="skip what is left past this many seconds")
    ap.add_argument("--commit", default="")
    ap.add_argument("--skip-per-stage-fq", action="store_true", help="time one fake_quantize in the graph form only")
    ap.add_argument("--smoke", action="store_true",
                    help="a tiny block on the CPU (per-stage form only): tests this script")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    if os.environ.get("AWQ_GGUF_COMPILE", "1") == "0":
        print("warning: AWQ_GGUF_COMPILE=0 turns torch.compile off: the graph form runs eagerly, which is not the "
              "product's timing (unset it for this benchmark)", file=sys.stderr, flush=True)
    import torch
    from awq_gguf.awq_scale.awq import AwqSettings
    from awq_gguf.convert.quants import compiled, k_common

    start = time.perf_counter()
    card = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    out: dict = {"commit": args.commit, "card": card, "torch": torch.__version__,
                 "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "graph_chunk": k_common.CHUNK_BLOCKS_GRAPH}
    try:
        import triton

        out["triton"] = triton.__version__
    except ImportError:
        out["triton"] = None
    print(f"{out['card']}, torch {out['torch']}, triton {out['triton']}", flush=True)
    dev = "cpu" if args.smoke else "cuda"
    p, h0, cfg, types = make_block(dev, args.smoke)
    settings = AwqSettings(device=dev, progress=False)
    out["settings"] = {k: v for k, v in vars(settings).items() if not k.startswith("_")}

    def dump():
        with open(os.path.join(args.out, "awq_gpu.json"), "w") as f:
            json.dump(out, f, indent=1, default=str)

    # graph form: first run profiled (compiles), then timed runs
    set_graph(True)
    timer = Timer()
    t, res_graph = timed_block(p, h0, cfg, types, settings, timer)
    out["graph_first_s"] = t
    out["graph_breakdown_first"] = {k: [round(v, 3), timer.n[k]] for k, v in timer.t.items()}
    out["compile_ok"] = compiled.enabled()
    print(f"graph form, first run (compiles, profiled): {t:.2f} s; {res_graph.report.line()}", flush=True)
    for k, (v, n) in out["graph_breakdown_first"].items():
        print(f"  {k:45s} {v:7.2f} s ({n} calls)", flush=True)
    if compiled._disabled_reason:
        print(f"torch.compile failed: {compiled._disabled_reason}", flush=True)
    dump()
    timer = Timer()
    t, _ = timed_block(p, h0, cfg, types, settings, timer)
    out["graph_profiled_s"] = t
    out["graph_breakdown"] = {k: [round(v, 3), timer.n[k]] for k, v in timer.t.items()}
    print(f"graph form, second run (profiled, warm): {t:.2f} s", flush=True)
    for k, (v, n) in out["graph_breakdown"].items():
        print(f"  {k:45s} {v:7.2f} s ({n} calls)", flush=True)
    out["graph_s"] = []
    for _ in range(args.runs):
        t, res_graph = timed_block(p, h0, cfg, types, settings)
        out["graph_s"].append(t)
        print(f"graph form, timed run: {t:.2f} s", flush=True)
    # the same with the results copied back by a plain .cpu() (before awq_scale.host_copy)
    from awq_gguf.awq_scale import awq as awq_mod

    staged = awq_mod.to_host
    awq_mod.to_host = lambda t: t.cpu().contiguous()
    try:
        out["graph_plain_cpu_copy_s"], _ = timed_block(p, h0, cfg, types, settings)
    finally:
        awq_mod.to_host = staged
    print(f"graph form, results by plain .cpu(): {out['graph_plain_cpu_copy_s']:.2f} s", flush=True)
    if not args.smoke:
        busy = gpu_busy(p, h0, cfg, types, settings)
        print(busy.pop("top"), flush=True)
        out["graph_profile"] = busy
        print(f"graph form under torch.profiler: {busy}", flush=True)
    out["graph_report"] = res_graph.report.line()
    out["graph_choices"] = choices(res_graph)
    out["peak_gib"] = torch.cuda.max_memory_allocated() / 2**30 if not args.smoke else 0.0
    dump()

    # one fake_quantize of the FFN shape with importance, both forms
    w = p["ffn_up.weight"]
    imp = torch.rand(w.shape[1], device=dev) + 0.1
    fq = {}
    for label, on in () if args.smoke else (("graph", True), ("per-stage", False))[:1 if args.skip_per_stage_fq else 2]:
        set_graph(on)
        fq[label] = {"ms": fake_quantize_ms(w, imp)}
        if time.perf_counter() - start < args.budget:
            prof = profile_fake_quantize(w, imp)
            fq[label].update(kernels=prof["kernels"], gpu_ms=prof["gpu_ms"])
            print(prof["top"], flush=True)
        print(f"fake_quantize Q4_K 11008x4096 with importance, {label}: {fq[label]}", flush=True)
    set_graph(True)
    for chunk in () if args.smoke else (1 << 16, 1 << 20):
        k_common.CHUNK_BLOCKS_GRAPH = chunk
        fq[f"graph chunk {chunk}"] = {"ms": fake_quantize_ms(w, imp)}
        print(f"  graph, chunk {chunk} super-blocks: {fq[f'graph chunk {chunk}']['ms']:.2f} ms", flush=True)
    k_common.CHUNK_BLOCKS_GRAPH = out["graph_chunk"]
    out["fake_quantize_ffn"] = fq
    dump()

    # per-stage form (the code before the graph form), same block and hidden states
    set_graph(False)
    out["per_stage_s"] = []
    res_stage = None
    for i in range(args.baseline_runs):
        if time.perf_counter() - start > args.budget:
            print("budget spent: per-stage runs skipped", flush=True)
            break
        t, res_stage = timed_block(p, h0, cfg, types, settings)
        out["per_stage_s"].append(t)
        print(f"per-stage form, run {i + 1}{' (compiles its sums)' if i == 0 else ''}: {t:.2f} s", flush=True)
    set_graph(True)
    if res_stage is not None:
        out["per_stage_report"] = res_stage.report.line()
        out["per_stage_choices"] = choices(res_stage)
        out["graph_vs_per_stage"] = compare_results(res_stage, res_graph)
        out["block_mse_graph"] = block_mse(p, h0, cfg, types, res_graph)
        out["block_mse_per_stage"] = block_mse(p, h0, cfg, types, res_stage)
        print(f"graph:     {out['graph_report']}\nper-stage: {out['per_stage_report']}", flush=True)
        print(f"block output MSE (per-stage quantizer as judge): graph search {out['block_mse_graph']}, "
              f"per-stage search {out['block_mse_per_stage']}", flush=True)
        print(json.dumps(out["graph_vs_per_stage"], indent=1), flush=True)
    dump()
    print(f"\nsummary: graph form {out['graph_s']} s per block (first run {out['graph_first_s']:.1f} s); "
          f"per-stage {out['per_stage_s']} s; peak {out['peak_gib']:.1f} GiB; "
          f"total {time.perf_counter() - start:.0f} s",
          flush=True)


if __name__ == "__main__":
    main()
