"""Lazy nvcc build of the CUDA kernels into a per-user cache folder.

The .cu/.cuh/.h files beside this module are compiled with nvcc for sm_90 (Hopper; `AWQ_GGUF_CUDA_ARCH` picks
others, e.g. "80;90") into one shared library, libawq_gguf_cuda.so, keyed by a hash of the sources, the nvcc
version and the flags: a later process finds it built. Each .cu is compiled by its own nvcc process, in
parallel, into a temporary folder that is renamed into place at the end, so concurrent builds never see a half
written library.

Environment: AWQ_GGUF_NVCC (the nvcc to use; else PATH, CUDA_HOME, /usr/local/cuda), AWQ_GGUF_CUDA_CACHE (the
cache folder; else $XDG_CACHE_HOME or ~/.cache, then awq_gguf/cuda_kernels), AWQ_GGUF_CUDA_ARCH.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

SRC_DIR = Path(__file__).resolve().parent
SOURCES = ("api.cu", "kernels_q4_0.cu", "kernels_q8_0.cu", "kernels_q4_k.cu", "kernels_q6_k.cu", "fused.cu",
           "read_probe.cu")
LIB_NAME = "libawq_gguf_cuda.so"


class BuildError(RuntimeError):
    """nvcc is missing or failed; the message says which and how."""


def find_nvcc() -> str | None:
    env = os.environ.get("AWQ_GGUF_NVCC")
    if env:
        return env if Path(env).is_file() else None
    found = shutil.which("nvcc")
    if found:
        return found
    for home in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if home and (Path(home) / "bin" / "nvcc").is_file():
            return str(Path(home) / "bin" / "nvcc")
    return None


def cache_root() -> Path:
    env = os.environ.get("AWQ_GGUF_CUDA_CACHE")
    if env:
        return Path(env)
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "awq_gguf" / "cuda_kernels"


def built_archs() -> list[str]:
    """Compute capabilities the library is built for ("90" = sm_90), from AWQ_GGUF_CUDA_ARCH."""
    archs = os.environ.get("AWQ_GGUF_CUDA_ARCH", "90").replace(",", ";").split(";")
    return [a.strip() for a in archs if a.strip()]


def arch_flags() -> list[str]:
    return [f"-gencode=arch=compute_{a},code=sm_{a}" for a in built_archs()]


def compile_flags() -> list[str]:
    return ["-O3", "-std=c++17", "-Xcompiler", "-fPIC", "-Xcompiler", "-fvisibility=hidden", *arch_flags()]


def _source_files() -> list[Path]:
    return sorted(p for p in SRC_DIR.iterdir() if p.suffix in (".cu", ".cuh", ".h"))


def _key(nvcc: str) -> str:
    h = hashlib.sha256()
    version = subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout
    h.update(version.encode())
    h.update(" ".join(compile_flags()).encode())
    for p in _source_files():
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        raise BuildError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")


def build(force: bool = False) -> Path:
    """Path of the built library, building it first if the cache has no current one. Raises BuildError."""
    nvcc = find_nvcc()
    if nvcc is None:
        raise BuildError("nvcc not found (set AWQ_GGUF_NVCC, or put nvcc on PATH, or CUDA_HOME)")
    out_dir = cache_root() / _key(nvcc)
    lib = out_dir / LIB_NAME
    if lib.is_file() and not force:
        return lib
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="build-", dir=out_dir.parent))
    try:
        flags = compile_flags()
        objs = [tmp / (Path(src).stem + ".o") for src in SOURCES]
        jobs = [[nvcc, *flags, "-c", str(SRC_DIR / src), "-o", str(obj)] for src, obj in zip(SOURCES, objs)]
        with ThreadPoolExecutor(max_workers=min(len(jobs), os.cpu_count() or 1)) as pool:
            list(pool.map(_run, jobs))
        # static cudart inside the library: nothing to find at dlopen time; streams and device pointers are
        # driver objects, shared with torch's runtime through the primary context.
        _run([nvcc, *arch_flags(), "-shared", "-o", str(tmp / LIB_NAME), *map(str, objs)])
        for obj in objs:
            obj.unlink()
        if force and out_dir.exists():
            shutil.rmtree(out_dir, ignore_errors=True)
        try:
            os.replace(tmp, out_dir)
        except OSError:  # another process finished first: use its library
            if not lib.is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return lib
