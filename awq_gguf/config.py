"""Validated settings for each command; the CLI only parses arguments into these."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from awq_gguf.errors import AwqGgufError

Method = Literal["rtn", "awq"]
METHODS: tuple[str, ...] = ("rtn", "awq")


class ConfigError(AwqGgufError):
    """A setting is out of range or names something unknown."""


@dataclass(frozen=True)
class ConvertConfig:
    model: Path | None = None  # HF folder or .gguf; None: the demo model
    out: Path | None = None  # None: <model-name>-<TYPE>.gguf in the current folder
    type: str = "Q4_K_M"  # a llama.cpp file type name (mix) such as Q4_0, Q4_K_M, F16
    method: str = "rtn"
    calib: Path | None = None
    force: bool = False
    pure: bool = False  # every 2-D weight gets the base type (llama-quantize --pure)
    progress: bool = True
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        from awq_gguf.convert.mix import canonical_name, file_type_of

        file_type_of(self.type)  # raises UnknownTypeError with the accepted names
        object.__setattr__(self, "type", canonical_name(self.type))  # "q4_k" -> "Q4_K_M", as llama-quantize
        if self.method not in METHODS:
            raise ConfigError(f"unknown --method {self.method!r}; choose one of: {', '.join(METHODS)}")
        if self.calib is not None and not self.calib.is_file():
            raise ConfigError(f"calibration file {self.calib} does not exist")
