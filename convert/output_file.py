"""Atomic output: write to a hidden temp file beside OUT, rename at the end; a failed run leaves no OUT."""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType

from awq_gguf.errors import OutputError


def check_output(out: Path, force: bool) -> None:
    if out.is_dir():
        raise OutputError(f"output {out} is a folder; give a file name ending in .gguf")
    if out.exists() and not force:
        raise OutputError(f"output {out} exists; pass --force to overwrite it or choose another -o")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"output folder {parent} does not exist; create it or choose another -o")
    probe = parent / f".{out.name}.{os.getpid()}.probe"
    try:  # os.access says yes to root even on read-only file systems: try for real
        probe.touch()
        probe.unlink()
    except OSError as e:
        raise OutputError(f"output folder {parent} is not writable ({e.strerror}); choose another -o") from None


class AtomicOutput:
    """`with AtomicOutput(out, force) as tmp:` write tmp; on success it becomes `out`, on any error it is removed."""

    def __init__(self, out: Path, force: bool) -> None:
        check_output(out, force)
        self.out = out
        self.tmp = out.with_name(f".{out.name}.{os.getpid()}.partial")

    def __enter__(self) -> Path:
        return self.tmp

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if exc_type is None:
            os.replace(self.tmp, self.out)
        else:
            self.tmp.unlink(missing_ok=True)
