"""Runner-specific user errors; all are AwqGgufErrors, so the CLI prints them as one line with exit code 2."""

from __future__ import annotations

from awq_gguf.errors import AwqGgufError, CorruptModelError, UnsupportedArchitectureError

__all__ = ["ContextOverflowError", "CorruptModelError", "RunnerError", "UnsupportedModelError"]


class RunnerError(AwqGgufError):
    """A problem running a model that is not the file's fault (bad option values, missing chat template...)."""


class UnsupportedModelError(UnsupportedArchitectureError):
    """A well-formed GGUF the runner cannot run: another architecture, tensor type or RoPE scaling."""


class ContextOverflowError(RunnerError):
    """The prompt (or prompt plus generation) does not fit the context."""
