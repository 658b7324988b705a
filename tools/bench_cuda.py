"""CUDA benchmark of issue 5, run on the GPU machine: copy bandwidth, our GEMV kernels against cuBLAS fp16, and
the prompt path. (The AWQ search time of one Llama-2-7B-shaped block: tools/bench_awq_gpu.py.)

  python tools/bench_cuda.py [--out DIR]                       # on the GPU machine: table, DIR/bench_cuda.json
  python tools/bench_cuda.py --write-benchmarks FILE.json      # anywhere: BENCHMARKS.md section from that JSON

Method (see the device notes): device-to-device copy of 1 GiB, bytes read + written, median of 20 event-timed
copies. Each GEMV and its cuBLAS peer (torch.nn.functional.linear on fp16 weights of the same shape) is captured
in a CUDA graph of many calls that rotate over enough weight sets to span 4x the L2, replayed and event-timed;
per-call time is the median of 5 timed replays. Weights are random GGUF blocks (random quant bytes, random
valid fp16 scales), activations random fp16. Shapes are weight [rows = out, cols = in]. Bytes counted for a
GEMV: the weight matrix's GGUF bytes + x + y (what the kernels' layouts hold too; a layout that held more would have its
extra reads not counted), so the fraction of copy bandwidth compares the format's bytes per second.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

SHAPES = [(4096, 4096), (11008, 4096), (4096, 11008), (14336, 4096), (4096, 14336)]
BATCHES = [1, 8, 16]
TYPE_NAMES = ["Q4_0", "Q4_K", "Q6_K", "Q8_0"]
KEY = "cuda-kernels"
# (rows per warp, mode) variants timed; (0, 0) is the default the library picks
MODE_NAMES = {0: "default", 1: "regs", 2: "async", 3: "fact", 4: "q8", 5: "q8 pdl", 6: "q8 pdl deep",
              7: "q8 pdl split", 8: "q8 pdl cap", 9: "q8 pdl split cap", 10: "stream", 11: "stream 16w",
              12: "q8 chain", 13: "q8 chain deep", 14: "q8 chain split", 15: "q8 chain split deep",
              16: "q8 chain cap96", 17: "q8 chain split cap96", 18: "q8 chain cap128", 19: "q8 chain split cap128"}
FLOAT_MODES = (1, 2, 3)
VARIANTS_B1 = [(0, 0), (4, 3), (4, 5), (4, 6), (4, 7), (1, 10), (2, 10), (4, 10), (1, 11), (2, 11), (4, 11), (4, 12),
               (4, 13), (4, 14), (2, 14), (4, 15), (2, 15), (4, 16), (4, 17), (4, 18), (2, 18), (4, 19), (2, 19)]
VARIANTS = [(0, 0), (4, 1), (4, 5), (4, 7), (4, 14)]


# ---------------------------------------------------------------------------------------------- measuring

def _events():
    import torch

    return torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)


def copy_bandwidth(nbytes: int = 1 << 30, reps: int = 20) -> float:
    """Bytes read + written per second of a device-to-device copy."""
    import torch

    src = torch.randint(0, 255, (nbytes,), dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    for _ in range(3):
        dst.copy_(src)
    times = []
    for _ in range(reps):
        a, b = _events()
        a.record()
        dst.copy_(src)
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) / 1e3)
    del src, dst
    return 2 * nbytes / statistics.median(times)


def graph_time(calls: list, min_calls: int = 48, replays: int = 10, repeats: int = 5) -> float:
    """Seconds per call of `calls` (rotated) captured in one CUDA graph."""
    import torch

    k = max(min_calls, len(calls))
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for c in calls:
            c()
    torch.cuda.current_stream().wait_stream(s)
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for i in range(k):
            calls[i % len(calls)]()
    g.replay()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        a, b = _events()
        a.record()
        for _ in range(replays):
            g.replay()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) / 1e3 / (replays * k))
    del g
    return statistics.median(times)


def gguf_bytes(qtype, rows: int, cols: int) -> int:
    """Bytes of a [rows, cols] matrix of qtype in a GGUF file (what the benchmarks count, whatever the kernels'
    layout holds)."""
    from gguf import GGML_QUANT_SIZES

    block, size = GGML_QUANT_SIZES[qtype]
    return rows * (cols // block) * size


def random_gguf(qtype, rows: int, cols: int, gen):
    """Random valid GGUF bytes of a [rows, cols] matrix: random quants, random fp16 scales in [1e-3, 2e-3]."""
    import torch
    from gguf import GGML_QUANT_SIZES

    block, size = GGML_QUANT_SIZES[qtype]
    nb = cols // block
    raw = torch.randint(0, 256, (rows, nb, size), dtype=torch.uint8, device="cuda", generator=gen)
    fields = {"Q4_0": [0], "Q8_0": [0], "Q4_K": [0, 2], "Q6_K": [208]}[qtype.name]
    for off in fields:
        d = (torch.rand(rows, nb, device="cuda", generator=gen) * 1e-3 + 1e-3).half()
        raw[:, :, off:off + 2] = d.view(torch.uint8).view(rows, nb, 2)
    return raw


def bench_gemv(copy_bw: float, l2: int, quick: bool, batches: list[int] = BATCHES) -> list[dict]:
    import torch
    import torch.nn.functional as F
    from gguf import GGMLQuantizationType

    from awq_gguf import cuda_kernels as ck
    from awq_gguf.cuda_kernels import fused as ck_fused
    from awq_gguf.cuda_kernels import ops as ck_ops

    gen = torch.Generator(device="cuda").manual_seed(0)
    rows_out = []
    shapes = SHAPES[:2] if quick else SHAPES
    # isolated calls: each call followed by a one-element torch kernel, which neither lets the next call start early
    # (no programmatic dependent launch across it) nor starts before the call ends; its own time is subtracted
    tick = torch.zeros(1, device="cuda")
    t_tick = graph_time([lambda: tick.add_(1)])

    def isolated(calls: list) -> float:
        return graph_time([lambda c=c: (c(), tick.add_(1)) for c in calls]) - t_tick
    for rows, cols in shapes:
        # cuBLAS fp16 peer
        wbytes16 = rows * cols * 2
        n16 = max(2, math.ceil(4 * l2 / wbytes16))
        w16 = [torch.randn(rows, cols, device="cuda", generator=gen).half() for _ in range(n16)]
        cublas = {}
        for batch in batches:
            x = torch.randn(batch, cols, device="cuda", generator=gen).half()
            cublas[batch] = graph_time([lambda w=w: F.linear(x, w) for w in w16])
            if batch == 1:
                cublas_iso = isolated([lambda w=w: F.linear(x, w) for w in w16])
        del w16
        torch.cuda.empty_cache()
        for name in TYPE_NAMES:
            qt = GGMLQuantizationType[name]
            one = ck.QuantMatrix.from_gguf(random_gguf(qt, rows, cols, gen), qt, rows, cols)
            nsets = max(2, math.ceil(4 * l2 / one.nbytes))
            sets = [one] + [ck.QuantMatrix.from_gguf(random_gguf(qt, rows, cols, gen), qt, rows, cols)
                            for _ in range(nsets - 1)]
            for batch in batches:
                x = torch.randn(batch, cols, device="cuda", generator=gen).half()
                y = torch.empty(batch, rows, device="cuda")
                nbytes = gguf_bytes(qt, rows, cols) + x.numel() * 2 + y.numel() * 4
                variants = VARIANTS_B1 if batch == 1 else VARIANTS
                by_v = {}
                for nr, mode in variants:
                    try:
                        by_v[(nr, mode)] = graph_time(
                            [lambda w=w, nr=nr, mode=mode: ck.gemv(x, w, out=y, nr=nr, mode=mode) for w in sets])
                    except Exception as e:  # noqa: BLE001 - one failing variant must not lose the run
                        print(f"  variant nr {nr} mode {mode} failed: {e}", flush=True)
                        by_v[(nr, mode)] = float("inf")
                best = min((v for v in variants if v != (0, 0)), key=lambda v: by_v[v])
                fbest = min((v for v in variants if v[1] in FLOAT_MODES), key=lambda v: by_v[v])
                t, tb, tf = by_v[(0, 0)], by_v[best], by_v[fbest]
                rows_out.append({
                    "type": name, "rows": rows, "cols": cols, "batch": batch, "us": t * 1e6,
                    "us_by_variant": {f"nr{k[0]}-mode{k[1]}": v * 1e6 for k, v in by_v.items()},
                    "best": f"nr {best[0]}, {MODE_NAMES[best[1]]}", "best_us": tb * 1e6,
                    "bytes": nbytes, "gbps": nbytes / t / 1e9, "frac_copy": nbytes / t / copy_bw,
                    "best_frac_copy": nbytes / tb / copy_bw,
                    "cublas_us": cublas[batch] * 1e6,
                    "cublas_frac_copy": (wbytes16 + batch * (cols * 2 + rows * 2)) / cublas[batch] / copy_bw,
                    "speedup": cublas[batch] / t, "best_speedup": cublas[batch] / tb,
                    "float_best": f"nr {fbest[0]}, {MODE_NAMES[fbest[1]]}", "float_best_us": tf * 1e6,
                    "float_best_frac_copy": nbytes / tf / copy_bw, "float_best_speedup": cublas[batch] / tf,
                })
                r = rows_out[-1]
                if batch == 1:
                    # the ceiling: a kernel that only reads the same number of weight bytes, launched as the
                    # chained GEMVs are (read_probe.cu), over as many buffers as there are weight sets
                    bufs = [torch.empty(gguf_bytes(qt, rows, cols) // 16 * 16, dtype=torch.uint8, device="cuda")
                            for _ in sets]
                    sink = torch.zeros(64, dtype=torch.int32, device="cuda")
                    tr = graph_time([lambda b=b: ck_ops.read_probe(b, sink) for b in bufs])
                    del bufs
                    r.update({"read_us": tr * 1e6, "read_frac_copy": nbytes / tr / copy_bw})
                    # the GEMV as the GPU runner calls it: x already rounded to int8 by the previous (fused) kernel,
                    # so no rounding kernel of its own (act = pre-rounded, fused.gemv_q8)
                    act = ck_fused.add_rmsnorm_q8(x.float().contiguous(), None,
                                                  torch.ones(cols, device="cuda"), 1e-5)
                    tp = graph_time([lambda w=w: ck_fused.gemv_q8(act, w, out=y) for w in sets])
                    r.update({"pre_us": tp * 1e6, "pre_frac_copy": nbytes / tp / copy_bw,
                              "pre_speedup": cublas[batch] / tp})
                    ti = isolated([lambda w=w: ck.gemv(x, w, out=y) for w in sets])
                    ts = isolated([lambda w=w: ck.gemv(x, w, out=y, nr=1, mode=10) for w in sets])
                    r.update({"us_isolated": ti * 1e6, "cublas_us_isolated": cublas_iso * 1e6,
                              "frac_copy_isolated": nbytes / ti / copy_bw, "speedup_isolated": cublas_iso / ti,
                              "stream_us_isolated": ts * 1e6})
                    print(f"  {name:5s} {rows:5d}x{cols:<5d} b1 isolated: {ti*1e6:.2f} us ({r['frac_copy_isolated']:.2f} "
                          f"of copy), cuBLAS {cublas_iso*1e6:.2f} us, x{r['speedup_isolated']:.2f}; stream nr 1: "
                          f"{ts*1e6:.2f} us", flush=True)
                if "read_us" in r:
                    print(f"  {name:5s} {rows:5d}x{cols:<5d} read ceiling {r['read_us']:.2f} us "
                          f"({r['read_frac_copy']:.2f} of copy); x pre-rounded: {r['pre_us']:.2f} us "
                          f"({r['pre_frac_copy']:.2f}, x{r['pre_speedup']:.2f})", flush=True)
                print(f"  {name:5s} {rows:5d}x{cols:<5d} b{batch:<2d} {r['us']:8.2f} us  {r['frac_copy']:.2f} of copy  "
                      f"cuBLAS {r['cublas_us']:8.2f} us  x{r['speedup']:.2f}  (best {r['best']}: {tb*1e6:.2f} us, "
                      f"{r['best_frac_copy']:.2f}, x{r['best_speedup']:.2f})  "
                      + " ".join(f"{k}={v:.1f}" for k, v in r["us_by_variant"].items()), flush=True)
            del sets, one
            torch.cuda.empty_cache()
    return rows_out


def bench_accuracy() -> list[dict]:
    """Relative error vs float64 of the float path (mode 3) and the int8-activation path (mode 4), per type, on
    random weights (256 x 4096, quantized by convert.quants) and fp16 activations: Gaussian, and Gaussian with
    16 outlier channels x30 (AWQ's setting)."""
    import torch
    from gguf import GGMLQuantizationType

    from awq_gguf import cuda_kernels as ck
    from awq_gguf.convert.quants import dequantize as ref_dequantize
    from awq_gguf.convert.quants import quantize

    g = torch.Generator().manual_seed(3)
    rows, cols = 256, 4096
    out = []
    for name in TYPE_NAMES:
        qt = GGMLQuantizationType[name]
        w = torch.randn(rows, cols, generator=g)
        raw = quantize(w, qt)
        ref_w = ref_dequantize(raw, qt).double().cuda()
        qm = ck.QuantMatrix.from_gguf(raw, qt, rows, cols, device="cuda")
        for kind in ("gaussian", "outliers x30"):
            x = torch.randn(8, cols, generator=g)
            if kind != "gaussian":
                x[:, torch.randperm(cols, generator=g)[:16]] *= 30
            x = x.half().cuda()
            ref = x.double() @ ref_w.T
            r = {"type": name, "x": kind}
            for mode in (3, 4):
                y = ck.gemv(x[:1], qm, mode=mode) if mode == 3 else ck.gemv(x, qm, mode=mode)
                rr = ref[:1] if mode == 3 else ref
                r[f"mode{mode}"] = float((y.double() - rr).norm() / rr.norm())
            out.append(r)
            print(f"  accuracy {name} {kind}: float path {r['mode3']:.2e}, q8 path {r['mode4']:.2e}", flush=True)
    return out


def bench_prompt(quick: bool) -> list[dict]:
    """The prompt path (dequantize to fp16, then torch.matmul) against fp16 torch.matmul, 512 tokens."""
    import torch
    from gguf import GGMLQuantizationType

    from awq_gguf import cuda_kernels as ck

    gen = torch.Generator(device="cuda").manual_seed(1)
    out = []
    for rows, cols in (SHAPES[:2] if quick else SHAPES[:3]):
        x = torch.randn(512, cols, device="cuda", generator=gen).half()
        w16 = torch.randn(rows, cols, device="cuda", generator=gen).half()
        t16 = graph_time([lambda: torch.matmul(x, w16.T)], min_calls=8)
        for name in ("Q4_K", "Q6_K"):
            qt = GGMLQuantizationType[name]
            w = ck.QuantMatrix.from_gguf(random_gguf(qt, rows, cols, gen), qt, rows, cols)
            buf = torch.empty(rows, cols, dtype=torch.float16, device="cuda")
            tdq = graph_time([lambda: ck.dequantize(w, torch.float16, out=buf)], min_calls=8)
            tall = graph_time([lambda: torch.matmul(x, ck.dequantize(w, torch.float16, out=buf).T)], min_calls=8)
            out.append({"type": name, "rows": rows, "cols": cols, "tokens": 512, "dequant_us": tdq * 1e6,
                        "total_us": tall * 1e6, "fp16_matmul_us": t16 * 1e6, "ratio_vs_fp16": tall / t16})
            print(f"  prompt {name} {rows}x{cols} 512 tok: dequant {tdq*1e6:.1f} us, total {tall*1e6:.1f} us, "
                  f"fp16 matmul {t16*1e6:.1f} us", flush=True)
    return out


# ---------------------------------------------------------------------------------------------- reporting

def device_info() -> dict:
    import torch

    props = torch.cuda.get_device_properties(0)
    info = {"name": props.name, "sms": props.multi_processor_count, "mem_gib": props.total_memory / 2**30,
            "l2_mib": getattr(props, "L2_cache_size", 0) / 2**20, "torch": torch.__version__,
            "python": platform.python_version()}
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=driver_version,clocks.max.sm,clocks.max.mem",
                              "--format=csv,noheader"], capture_output=True, text=True, timeout=20).stdout.strip()
        info["nvidia_smi"] = smi
    except (OSError, subprocess.TimeoutExpired):
        pass
    from awq_gguf.cuda_kernels._build import find_nvcc

    nvcc = find_nvcc()
    if nvcc:
        out = subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout.strip().splitlines()
        info["nvcc"] = out[-1] if out else "?"
    return info


def markdown(res: dict) -> str:
    d = res["device"]
    lines = ["## CUDA kernels: GEMV on GGUF blocks, prompt path, AWQ block search (issue 5)", "",
             f"Card: {d['name']} ({d['sms']} SMs, {d['l2_mib']:.0f} MiB L2, {d['mem_gib']:.0f} GiB; "
             f"{d.get('nvidia_smi', '')}), torch {d['torch']}, {d.get('nvcc', 'nvcc ?')}. Date {res['date']}, "
             f"commit {res['commit']}. Command: `python tools/bench_cuda.py` on the device machine; baselines "
             f"(copy, cuBLAS fp16) measured in the same run.", "",
             f"Device-to-device copy: **{res['copy_bw'] / 1e12:.2f} TB/s** (read + write, 1 GiB, median of 20).", "",
             "GEMV: our kernels (fp16 activations, float32 output) on random GGUF blocks vs "
             "cuBLAS fp16 (`F.linear`) on the same shape (weight rows x cols = out x in). Time per call from CUDA "
             "graphs rotating over 4x L2 of weights, back to back (a GEMV launched with programmatic dependent launch "
             "starts its weight loads while the previous call finishes, as in a model's chain of products); for the "
             "q8 modes 4-9 and 12-19 the time includes the activation-rounding kernel, the stream kernel (10, 11) rounds x "
             "itself. 'of copy' = (GGUF weight + x + y bytes) / time / copy bandwidth; 'default' = what `gemv` runs "
             "with mode 0 at the time of the run; best variant = the fastest of the variants timed: rows per warp "
             "(nr) x regs (register prefetch) / fact (regs with the factored batch-1 arithmetic) / q8 (int8 "
             "activations per 32, dp4a) / q8 pdl (q8 with programmatic dependent launch) / q8 pdl deep (q8 pdl with 8 row-chunks per warp in flight) / split (a block's 4 warps split each row group's columns) / cap (at most 64 registers) / stream (one kernel, weights through per-warp shared-memory rings by bulk copies, 8 warps a block; 16w: 16 warps) / chain (the rounding kernel launched with PDL too and the GEMV letting the next call start at once, on q8 pdl, deep, split and split deep) / cap128 (at most 128 registers, 4 blocks per SM); x pre-rounded = the default variant on activations already rounded to int8 by the previous kernel, as the GPU runner's fused kernels hand them over (no rounding kernel per call); read ceiling = a kernel that only reads the same weight bytes, launched as the chained GEMVs (read_probe.cu), the same bytes counted: what a GEMV could reach at most in this harness; float best = the fastest "
             "of the float-activation variants (regs / fact), the exact path. Speedup = cuBLAS time / ours.", ""]
    for batch in BATCHES:
        rows = [r for r in res["gemv"] if r["batch"] == batch]
        if not rows:
            continue
        ceil = any("read_us" in r for r in rows)
        lines += [f"Batch {batch}:", "",
                  "| type | rows x cols | default: us | GB/s | of copy | speedup | best variant: us, of copy, speedup | float best: us, of copy, speedup | cuBLAS fp16 us | cuBLAS of copy |"
                  + (" x pre-rounded: us, of copy, speedup | read ceiling: us, of copy |" if ceil else ""),
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|---:|" if ceil else "")]
        for r in rows:
            fb = (f"{r['float_best']}: {r['float_best_us']:.1f}, {r['float_best_frac_copy']:.2f}, "
                  f"{r['float_best_speedup']:.2f}x" if "float_best" in r else "-")
            rc = ""
            if ceil:
                pre = (f" {r['pre_us']:.1f}, {r['pre_frac_copy']:.2f}, {r['pre_speedup']:.2f}x"
                       + (f" (wide: {r['pre_wide_us']:.1f}, {r['pre_wide_frac_copy']:.2f})" if "pre_wide_us" in r else "")
                       if "pre_us" in r else " -")
                rc = pre + (f" | {r['read_us']:.1f}, {r['read_frac_copy']:.2f} |" if "read_us" in r else " | - |")
            lines.append(f"| {r['type']} | {r['rows']}x{r['cols']} | {r['us']:.1f} | {r['gbps']:.0f} | "
                         f"{r['frac_copy']:.2f} | {r['speedup']:.2f}x | {r['best']}: {r['best_us']:.1f}, "
                         f"{r['best_frac_copy']:.2f}, {r['best_speedup']:.2f}x | {fb} | "
                         f"{r['cublas_us']:.1f} | {r['cublas_frac_copy']:.2f} |" + rc)
        lines.append("")
        iso = [r for r in rows if "us_isolated" in r]
        if iso:
            lines += ["Batch 1, isolated calls (the default variant and cuBLAS, each call followed by a one-element "
                      "torch kernel whose own time is subtracted: no overlap between consecutive products):", "",
                      "| type | rows x cols | default: us | of copy | cuBLAS fp16 us | speedup | stream (nr 1) us |",
                      "|---|---|---:|---:|---:|---:|---:|"]
            for r in iso:
                lines.append(f"| {r['type']} | {r['rows']}x{r['cols']} | {r['us_isolated']:.1f} | "
                             f"{r['frac_copy_isolated']:.2f} | {r['cublas_us_isolated']:.1f} | "
                             f"{r['speedup_isolated']:.2f}x | {r.get('stream_us_isolated', float('nan')):.1f} |")
            lines.append("")
    if res.get("accuracy"):
        lines += ["Accuracy of the two activation paths: relative error ||y - y64|| / ||y64|| against float64 "
                  "(dequantized weights times the fp16 x), random 256x4096 weights quantized by convert.quants; "
                  "float path = mode 3 (batch 1), q8 path = mode 4 (batch 8).", "",
                  "| type | activations | float path | q8 path |", "|---|---|---:|---:|"]
        for r in res["accuracy"]:
            lines.append(f"| {r['type']} | {r['x']} | {r['mode3']:.1e} | {r['mode4']:.1e} |")
        lines.append("")
    if res.get("prompt"):
        lines += ["Prompt path (512 tokens): dequantize to fp16 with our kernel, then torch.matmul (cuBLAS), vs "
                  "fp16 torch.matmul on fp16 weights.", "",
                  "| type | rows x cols | dequant us | dequant + matmul us | fp16 matmul us | ratio |",
                  "|---|---|---:|---:|---:|---:|"]
        for r in res["prompt"]:
            lines.append(f"| {r['type']} | {r['rows']}x{r['cols']} | {r['dequant_us']:.1f} | {r['total_us']:.1f} | "
                         f"{r['fp16_matmul_us']:.1f} | {r['ratio_vs_fp16']:.2f} |")
        lines.append("")
    if res.get("tests"):
        lines += [f"GPU tests in the same call: `{res['tests']}`.", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.environ.get("OUT", "."), help="folder for bench_cuda.json / .md")
    ap.add_argument("--skip-prompt", action="store_true", help="GEMV and accuracy only")
    ap.add_argument("--skip-awq", action="store_true", help="ignored: the AWQ block is tools/bench_awq_gpu.py's now")
    ap.add_argument("--quick", action="store_true", help="two shapes only")
    ap.add_argument("--batches", default=",".join(map(str, BATCHES)), help="GEMV batch sizes (default %(default)s)")
    ap.add_argument("--tests", default="", help="a line about the GPU test run, for the report")
    ap.add_argument("--write-benchmarks", metavar="JSON", help="write BENCHMARKS.md's section from a result file")
    ap.add_argument("--note", default="", help="a closing paragraph for --write-benchmarks")
    ap.add_argument("--commit", default="", help="the commit the code is at (the device copy's .git may lag)")
    args = ap.parse_args()

    if args.write_benchmarks:
        from bench_markdown import write_section

        res = json.loads(Path(args.write_benchmarks).read_text())
        write_section(KEY, markdown(res) + ("\n" + args.note.strip() + "\n" if args.note else ""))
        print(f"wrote section {KEY} of BENCHMARKS.md")
        return

    import datetime

    from awq_gguf import cuda_kernels as ck

    if not ck.available():
        sys.exit(f"bench_cuda: {ck.unavailable_reason()}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    res: dict = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                 "device": device_info(), "tests": args.tests}
    try:
        res["commit"] = args.commit or subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                       text=True).stdout.strip() or "?"
    except OSError:
        res["commit"] = "?"
    print(f"device: {res['device']}", flush=True)

    def save():
        (out / "bench_cuda.json").write_text(json.dumps(res, indent=1))
        (out / "bench_cuda.md").write_text(markdown(res))

    res["copy_bw"] = copy_bandwidth()
    print(f"copy bandwidth: {res['copy_bw'] / 1e12:.3f} TB/s (read + write)", flush=True)
    l2 = int(res["device"]["l2_mib"] * 2**20) or 50 << 20
    res["gemv"] = bench_gemv(res["copy_bw"], l2, args.quick, [int(b) for b in args.batches.split(",")])
    save()
    try:
        res["accuracy"] = bench_accuracy()
    except Exception as e:  # noqa: BLE001 - keep the timings
        print(f"  accuracy failed: {e}", flush=True)
    save()
    if args.skip_prompt:
        res["prompt"] = []
        print()
        print(markdown(res))
        return
    res["prompt"] = bench_prompt(args.quick)
    save()
    print()
    print(markdown(res))


if __name__ == "__main__":
    main()
