"""Finds the compiled kernels: the extension built at install time if it matches the C sources next to it,
else a build of those sources in a cache folder (built once, on first use; ~/.cache/awq_gguf/cpu_kernels or
$AWQ_GGUF_CACHE). Editing a C file therefore rebuilds on the next import instead of running stale code."""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import os
import sys
import tempfile
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent
MODULE = "awq_gguf.cpu_kernels._kernels"


class KernelBuildError(ImportError):
    """The C kernels are neither installed nor buildable here (no C compiler, or cffi missing)."""


def _sources_hash() -> str | None:
    if not (HERE / "api.h").exists():
        return None
    from . import _build

    return _build.source_hash()


def _cache_dir(build_id: str) -> Path:
    root = Path(os.environ.get("AWQ_GGUF_CACHE") or Path.home() / ".cache" / "awq_gguf")
    tag = sys.implementation.cache_tag or "py"
    return root / "cpu_kernels" / f"{build_id}-{tag}"


def _load_file(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(MODULE, path)
    if spec is None or spec.loader is None:
        raise KernelBuildError(f"cannot load the kernels from {path}")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _build_into(cache: Path) -> Path:
    from . import _build

    try:
        import cffi  # noqa: F401
    except ImportError as exc:
        raise KernelBuildError("the CPU kernels need the cffi package (pip install cffi)") from exc

    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="build-", dir=cache))
    ffi = _build.build_ffi(tmp / "obj", optional=False)
    try:
        built = Path(ffi.compile(tmpdir=str(tmp), verbose=False))
    except Exception as exc:  # cffi raises VerificationError / distutils errors; report them as one
        raise KernelBuildError(
            f"building the CPU kernels failed ({type(exc).__name__}: {exc}); a C compiler (cc/gcc) is needed"
        ) from exc
    if not built.exists():
        raise KernelBuildError(f"building the CPU kernels produced no {built.name}; a C compiler (cc/gcc) is needed")
    final = cache / built.name
    os.replace(built, final)  # atomic: a concurrent process sees the old or the new file, never half
    return final


def load() -> ModuleType:
    try:  # every cffi extension imports it; without it neither the installed nor a cached build loads
        import _cffi_backend  # noqa: F401
    except ImportError as exc:
        raise KernelBuildError("the CPU kernels need the cffi package (pip install cffi)") from exc
    want = _sources_hash()
    try:
        mod = importlib.import_module(MODULE)
        if want is None or mod.ffi.string(mod.lib.awq_build_id()).decode() == want:
            return mod
    except ImportError:
        if want is None:
            raise KernelBuildError("the CPU kernels extension is not installed and its C sources are missing")
    cache = _cache_dir(want)
    suffixes = importlib.machinery.EXTENSION_SUFFIXES
    for suffix in suffixes:
        hit = cache / ("_kernels" + suffix)
        if hit.exists():
            return _load_file(hit)
    return _load_file(_build_into(cache))
