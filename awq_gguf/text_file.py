"""Reading user-given text files (evaluation, calibration) with one-line errors."""

from __future__ import annotations

from pathlib import Path

from awq_gguf.errors import AwqGgufError


def read_utf8(path: Path, what: str, error: type[AwqGgufError] = AwqGgufError, hint: str = "") -> str:
    """The whole file as text; `error("<what> <path> does not exist<hint>")` or "... is not UTF-8 ..." otherwise."""
    if not path.is_file():
        raise error(f"{what} {path} does not exist{hint}")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise error(f"{what} {path} is not UTF-8 ({e.reason} at byte {e.start})") from None
