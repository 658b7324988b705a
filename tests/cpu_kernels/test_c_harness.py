"""The C harness (neon_harness.c) checks an ISA variant against the scalar table at C level: NEON built with
Debian's aarch64 cross compiler and run under qemu-aarch64 (natively on an aarch64 host); on x86 the host's own
SIMD variants, built with the same per-file flags as the extension. Skips say exactly what is missing."""

from __future__ import annotations

import platform
import shutil
import subprocess
from pathlib import Path

import pytest

from awq_gguf.cpu_kernels import _build

HERE = Path(__file__).resolve().parent
SRC = _build.HERE
BASE = [str(SRC / s) for s in _build.BASE_SOURCES]
ISA_ID = {"scalar": 0, "avx2": 1, "avx512": 2, "neon": 3}
IS_ARM = platform.machine().lower() in ("aarch64", "arm64")


def _build_and_run(cc: list[str], flags: list[str], objs: list[str], runner: list[str], isa: str,
                   tmp: Path) -> str:
    exe = tmp / f"harness_{isa}"
    cmd = [*cc, "-O2", "-std=gnu11", f"-I{SRC}", *flags, str(HERE / "neon_harness.c"), *BASE, *objs,
           "-lm", "-lpthread", "-o", str(exe)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, f"build failed: {' '.join(cmd)}\n{res.stderr[-3000:]}"
    run = subprocess.run([*runner, str(exe), str(ISA_ID[isa])], capture_output=True, text=True, timeout=600)
    out = run.stdout + run.stderr
    print(out)
    assert run.returncode == 0 and " 0 failed" in out, out[-3000:]
    return out


@pytest.mark.parametrize("march", ["armv8-a", "armv8.2-a+dotprod"])
def test_neon(tmp_path: Path, march: str) -> None:
    if IS_ARM:
        cc, runner = [shutil.which("cc") or "cc"], []
    else:
        gcc, qemu = shutil.which("aarch64-linux-gnu-gcc"), shutil.which("qemu-aarch64")
        if not gcc or not qemu:
            pytest.skip("NEON variant NOT tested: needs aarch64-linux-gnu-gcc and qemu-aarch64 "
                        "(apt-get install gcc-aarch64-linux-gnu qemu-user)")
        cc, runner = [gcc, "-static"], [qemu]
    out = _build_and_run(cc, [f"-march={march}", "-DAWQ_HAVE_NEON", str(SRC / "neon.c")], [], runner, "neon",
                         tmp_path)
    assert ("neon-dotprod" in out) == ("dotprod" in march)


@pytest.mark.parametrize("isa", ["avx2", "avx512"])
def test_x86_variants(tmp_path: Path, isa: str) -> None:
    if IS_ARM or platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip(f"{isa}: not an x86-64 host")
    flags = open("/proc/cpuinfo").read()
    need = {"avx2": (" avx2 ", " fma ", " f16c "), "avx512": (" avx512f ", " avx512bw ", " avx512vl ", " avx512dq ")}
    if not all(f in flags for f in need[isa]):
        pytest.skip(f"{isa} variant NOT tested at C level: this CPU lacks it (run on the device machine)")
    objs, macros, notes = _build.compile_isa_objects(tmp_path / "obj")
    assert not notes, notes
    _build_and_run(["cc"], [f"-D{m}={v}" for m, v in macros], objs, [], isa, tmp_path)
