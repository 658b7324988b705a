"""Prompt (pp) and generation (tg) speed of the runner and of llama.cpp (llama-cpp-python) on the same file,
in the same process, with the same threads, measured as llama-bench does:

  pp N   one batch of N random tokens from an empty cache (logits of the last token only); tokens/s = N / time
  tg N   N single-token decoding steps from an empty cache; tokens/s = N / time

With device "cuda" the runner runs on the GPU (runner.gpu_model) and the peer is the copy-bandwidth bound of
decoding (gpu_bandwidth): the card's measured device-to-device copy bandwidth over the weight bytes per token.

Each engine is warmed up first (for the torch backend that builds its dequantized weight cache). Repetitions
alternate between the engines so background load hits both alike. "Weight bytes streamed per second" counts
the file's bytes of every matrix a step multiplies by (bytes_per_token), once per pp batch and once per tg step.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from awq_gguf.runner.model import Model


@dataclass
class EngineResult:
    engine: str  # "runner" or "llama.cpp"
    backend: str  # runner: torch / kernels:<isa>; llama.cpp: its system info line, shortened
    pp: float = 0.0  # tokens/s, mean over repetitions
    tg: float = 0.0
    pp_runs: list[float] = field(default_factory=list)
    tg_runs: list[float] = field(default_factory=list)
    pp_bytes_per_s: float = 0.0  # weight bytes streamed per second
    tg_bytes_per_s: float = 0.0

    def finish(self, weight_bytes: int, n_pp: int) -> None:
        self.pp = statistics.fmean(self.pp_runs) if self.pp_runs else 0.0
        self.tg = statistics.fmean(self.tg_runs) if self.tg_runs else 0.0
        self.pp_bytes_per_s = weight_bytes * self.pp / n_pp
        self.tg_bytes_per_s = weight_bytes * self.tg


@dataclass
class BenchReport:
    file: str
    threads: int
    n_pp: int
    n_tg: int
    reps: int
    weight_bytes: int  # file bytes of the matrices one step reads
    engines: dict[str, EngineResult]
    device: str = "cpu"
    copy_bandwidth: float = 0.0  # cuda: bytes/s read + written by a device-to-device copy, measured in this run

    @property
    def tg_bound(self) -> float:
        """cuda: tokens/s if each decode step streamed its weight bytes at copy bandwidth (0 on cpu)."""
        return self.copy_bandwidth / self.weight_bytes if self.copy_bandwidth else 0.0

    def as_dict(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if k != "engines"}
        for name, r in self.engines.items():
            d[name] = asdict(r)
        if {"runner", "llama.cpp"} <= set(self.engines):
            ours, theirs = self.engines["runner"], self.engines["llama.cpp"]
            d["ratio"] = {k: (getattr(ours, k) / getattr(theirs, k) if getattr(theirs, k) else None) for k in ("pp", "tg")}
        if self.copy_bandwidth:
            d["tg_bound"] = self.tg_bound
            d["tg_of_bound"] = self.engines["runner"].tg / self.tg_bound
        return d

    def table(self) -> str:
        lines = [
            f"{self.file}: {self.weight_bytes / 2**20:.1f} MiB of weights per step, {self.threads} threads, "
            f"{self.reps} repetitions",
            f"{'engine':<10} {'backend':<22} {'pp' + str(self.n_pp):>10} {'tg' + str(self.n_tg):>10} "
            f"{'pp GB/s':>9} {'tg GB/s':>9}",
        ]
        for name, r in self.engines.items():
            lines.append(f"{name:<10} {r.backend[:22]:<22} {r.pp:>10.1f} {r.tg:>10.2f} "
                         f"{r.pp_bytes_per_s / 1e9:>9.2f} {r.tg_bytes_per_s / 1e9:>9.2f}")
        d = self.as_dict()
        if "ratio" in d:
            lines.append(f"runner / llama.cpp: pp {d['ratio']['pp']:.2f}x, tg {d['ratio']['tg']:.2f}x")
        if self.copy_bandwidth:
            lines.append(f"copy bandwidth {self.copy_bandwidth / 1e9:.0f} GB/s (read + write): tg bound "
                         f"{self.tg_bound:.1f} tok/s; runner tg {d['tg_of_bound']:.2f} of it")
        return "\n".join(lines)


class _RunnerEngine:
    def __init__(self, model: Model) -> None:  # or runner.gpu_model.GpuModel (same interface)
        self.m = model

    def pp(self, tokens: list[int]) -> float:
        cache = self.m.new_cache()
        t = time.perf_counter()
        self.m.forward(tokens, cache)
        return len(tokens) / (time.perf_counter() - t)

    def tg(self, tokens: list[int]) -> float:
        cache = self.m.new_cache()
        t = time.perf_counter()
        for tok in tokens:
            self.m.forward([tok], cache)
        return len(tokens) / (time.perf_counter() - t)


class _LlamaEngine:
    def __init__(self, path: Path, n_ctx: int, n_batch: int, threads: int) -> None:
        import llama_cpp

        self.llm = llama_cpp.Llama(model_path=str(path), n_ctx=n_ctx, n_batch=n_batch, n_ubatch=n_batch,
                                   n_threads=threads, n_threads_batch=threads, logits_all=False, verbose=False)
        info = llama_cpp.llama_print_system_info().decode(errors="replace")
        flags = [p.split("=")[0].strip() for p in info.split("|") if p.strip().endswith("= 1")]
        self.backend = "ggml CPU " + ",".join(f for f in flags if f in ("AVX2", "AVX512", "AVX512_VNNI", "FMA", "F16C", "NEON"))

    def pp(self, tokens: list[int]) -> float:
        self.llm.reset()
        t = time.perf_counter()
        self.llm.eval(tokens)
        return len(tokens) / (time.perf_counter() - t)

    def tg(self, tokens: list[int]) -> float:
        self.llm.reset()
        t = time.perf_counter()
        for tok in tokens:
            self.llm.eval([tok])
        return len(tokens) / (time.perf_counter() - t)


def bench(path: Path, n_pp: int = 512, n_tg: int = 128, reps: int = 2, threads: int | None = None,
          backend: str | None = None, peer: bool = True, progress=None, device: str = "cpu") -> BenchReport:
    """peer: llama.cpp beside the runner (cpu only; on cuda the peer is the copy-bandwidth bound)."""
    from awq_gguf.runner.device import load_runner

    threads = threads or os.cpu_count() or 1
    n_ctx = max(n_pp, n_tg) + 8
    model = load_runner(path, device, n_ctx=n_ctx, backend=backend, threads=threads)
    peer = peer and device == "cpu"
    rng = np.random.default_rng(0)
    pp_tokens = rng.integers(0, model.hp.n_vocab, n_pp).tolist()
    tg_tokens = rng.integers(0, model.hp.n_vocab, n_tg).tolist()
    engines: dict[str, object] = {"runner": _RunnerEngine(model)}
    results = {"runner": EngineResult("runner", model.backend.name)}
    if peer:
        llama = _LlamaEngine(path, n_ctx, n_pp, threads)
        engines["llama.cpp"] = llama
        results["llama.cpp"] = EngineResult("llama.cpp", llama.backend)
    for eng in engines.values():  # warm-up: weight caches, page cache, thread pools
        # on cuda a whole prompt: a prompt of more than 16 tokens takes another path (dequantize + cuBLAS), whose
        # first call loads its kernels (measured: the first pp512 at 955 tok/s, the next four at ~9000)
        eng.pp(pp_tokens if device == "cuda" else pp_tokens[:16])
        eng.tg(tg_tokens[:4])
    for rep in range(reps):
        for name, eng in engines.items():
            results[name].pp_runs.append(eng.pp(pp_tokens))
            if progress:
                progress(f"rep {rep + 1}/{reps} {name} pp{n_pp}: {results[name].pp_runs[-1]:.1f} tok/s")
        for name, eng in engines.items():
            results[name].tg_runs.append(eng.tg(tg_tokens))
            if progress:
                progress(f"rep {rep + 1}/{reps} {name} tg{n_tg}: {results[name].tg_runs[-1]:.2f} tok/s")
    weight_bytes = model.w.bytes_per_token()
    for r in results.values():
        r.finish(weight_bytes, n_pp)
    bandwidth = 0.0
    if device == "cuda":
        from awq_gguf.runner.gpu_bandwidth import copy_bandwidth

        bandwidth = copy_bandwidth(model.device)
    return BenchReport(str(path), threads, n_pp, n_tg, reps, weight_bytes, results, device, bandwidth)
