"""cffi build of `awq_gguf.cpu_kernels._kernels` (out-of-line API mode).

Used two ways:
- at install time, through `cffi_modules` in setup.py (`make_ffibuilder`, called by cffi): the extension is marked optional, so a machine with no
  C compiler still installs (the package then tries the lazy build below on first use and says why it failed);
- lazily, by `_loader.load()`, into a cache folder when the installed extension is missing or stale.

The scalar kernels, the threaded drivers and the dispatcher are compiled with no ISA flags. Each SIMD variant
is its own translation unit compiled here with its own -m flags into an object file, linked in only if the
compiler accepts those flags; dispatch.c learns which ones exist through AWQ_HAVE_* macros and asks the CPU at
run time (cpuid + xgetbv), so the extension never executes an instruction the machine lacks.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shlex
import subprocess
import sysconfig
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cffi import FFI

HERE = Path(__file__).resolve().parent
MODULE = "awq_gguf.cpu_kernels._kernels"
BASE_SOURCES = ["scalar.c", "pool.c", "matmul.c", "layer.c", "dispatch.c"]
HEADERS = ["kernels.h", "scalar.h", "api.h", "pool.h", "drivers.h"]
COMMON_FLAGS = ["-O3", "-std=gnu11", "-fPIC", "-fno-strict-aliasing"]


def isa_variants() -> list[tuple[str, str, list[str], str]]:
    """(name, source file, compiler flags, macro telling dispatch.c it exists) for this machine's arch."""
    arch = platform.machine().lower()
    if arch in ("x86_64", "amd64"):
        avx2 = ["-mavx2", "-mfma", "-mf16c"]
        avx512 = avx2 + ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq"]
        return [
            ("avx2", "avx2.c", avx2, "AWQ_HAVE_AVX2"),
            ("avx512", "avx512.c", avx512, "AWQ_HAVE_AVX512"),
            ("avx512vnni", "avx512.c", avx512 + ["-mavx512vnni", "-DAWQ_VNNI=1"], "AWQ_HAVE_AVX512VNNI"),
        ]
    if arch in ("aarch64", "arm64"):
        return [("neon", "neon.c", [], "AWQ_HAVE_NEON")]
    return []


def c_compiler() -> list[str]:
    cc = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    return shlex.split(cc)


def compile_isa_objects(objdir: Path) -> tuple[list[str], list[tuple[str, str]], list[str]]:
    """Compile each available SIMD file; returns (object paths, define macros, notes on skipped variants)."""
    objdir.mkdir(parents=True, exist_ok=True)
    objects: list[str] = []
    macros: list[tuple[str, str]] = []
    notes: list[str] = []
    for name, src, flags, macro in isa_variants():
        if src not in [p.name for p in HERE.glob("*.c")]:
            notes.append(f"{name}: {src} missing")
            continue
        obj = objdir / f"{name}.o"
        cmd = [*c_compiler(), *COMMON_FLAGS, *flags, "-I", str(HERE), "-c", str(HERE / src), "-o", str(obj)]
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        except (OSError, subprocess.SubprocessError) as exc:
            notes.append(f"{name}: {exc}")
            continue
        if res.returncode != 0:
            notes.append(f"{name}: compiler refused ({res.stderr.strip().splitlines()[-1:] or ''})")
            continue
        objects.append(str(obj))
        macros.append((macro, "1"))
    return objects, macros, notes


def cdef_text() -> str:
    """api.h without its preprocessor lines."""
    lines = (HERE / "api.h").read_text().splitlines()
    return "\n".join(line for line in lines if not line.lstrip().startswith("#"))


def source_hash() -> str:
    """Hash of every C source and header (the build id compiled into the extension)."""
    h = hashlib.sha256()
    for p in sorted(HERE.glob("*.[ch]")):
        h.update(p.name.encode() + b"\0" + p.read_bytes())
    return h.hexdigest()[:16]


def make_ffibuilder() -> "FFI":
    """setup.py's entry (cffi calls it): setuptools wants source paths relative to setup.py's folder."""
    return build_ffi(Path(tempfile.mkdtemp(prefix="awq_gguf_isa_")), relative=True)


def build_ffi(objdir: Path, relative: bool = False, optional: bool = True) -> "FFI":
    """The FFI builder; SIMD objects are compiled into objdir first. optional: setuptools may skip the
    extension when it fails to build (install time); the lazy build wants the error instead."""

    def path(name: str) -> str:
        return os.path.relpath(HERE / name) if relative else str(HERE / name)

    from cffi import FFI  # only the build needs cffi's compiler side; hashing the sources does not

    objects, macros, notes = compile_isa_objects(objdir)
    macros.append(("AWQ_BUILD_ID", f'"{source_hash()}"'))
    for note in notes:
        print(f"awq_gguf.cpu_kernels: skipping SIMD variant {note}")
    ffi = FFI()
    ffi.cdef(cdef_text())
    ffi.set_source(
        MODULE,
        '#include "api.h"\n',
        sources=[path(s) for s in BASE_SOURCES],
        include_dirs=[str(HERE)],
        define_macros=macros,
        extra_compile_args=COMMON_FLAGS,
        extra_objects=objects,
        libraries=["pthread"] if os.name == "posix" else [],
        depends=[path(h) for h in HEADERS],
        optional=optional,  # install never fails over the kernels; _loader explains at first use
    )
    return ffi


if __name__ == "__main__":
    build_ffi(Path(tempfile.mkdtemp(prefix="awq_gguf_isa_"))).compile(verbose=True)
