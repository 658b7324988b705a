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
    method: str | None = None  # "awq" or "rtn"; None: awq, or rtn when an imatrix file is given
    calib: Path | None = None  # text or .jsonl; None with --method awq: data-free (self-generated) calibration
    calib_samples: int = 128
    calib_seqlen: int = 512
    clip: bool = True  # AWQ's clipping search
    refine: bool = True  # AWQ: refine Q4_0/Q5_0/Q8_0 levels under the inputs' block second moments
    resume: bool = False  # continue an interrupted AWQ search
    scales: Path | None = None  # an AWQ results folder to use (re-apply to this type, or resume)
    imatrix: Path | None = None  # llama.cpp imatrix file: per-column importance for the rounding
    device: str = "cpu"  # where the AWQ search runs
    threads: int | None = None  # torch threads (None: torch's default)
    force: bool = False
    pure: bool = False  # every 2-D weight gets the base type (llama-quantize --pure)
    progress: bool = True
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        from awq_gguf.convert.mix import canonical_name, file_type_of

        file_type_of(self.type)  # raises UnknownTypeError with the accepted names
        object.__setattr__(self, "type", canonical_name(self.type))  # "q4_k" -> "Q4_K_M", as llama-quantize
        if self.method is None:
            object.__setattr__(self, "method", "rtn" if self.imatrix is not None else "awq")
        if self.method not in METHODS:
            raise ConfigError(f"unknown --method {self.method!r}; choose one of: {', '.join(METHODS)}")
        if self.calib is not None and not self.calib.is_file():
            raise ConfigError(f"calibration file {self.calib} does not exist")
        if self.calib_samples < 1 or self.calib_seqlen < 2:
            raise ConfigError(f"--calib-samples must be >= 1 and --calib-seqlen >= 2 (got {self.calib_samples}, "
                              f"{self.calib_seqlen})")
        if self.method == "rtn" and (self.calib is not None or self.resume or self.scales is not None):
            raise ConfigError("--calib, --resume and --scales belong to --method awq")
        if self.method == "awq" and self.imatrix is not None:
            raise ConfigError("--imatrix is for --method rtn (AWQ collects its own statistics, after scaling)")
        if self.imatrix is not None and not self.imatrix.is_file():
            raise ConfigError(f"imatrix file {self.imatrix} does not exist")
        if self.scales is not None and not self.scales.is_dir():
            raise ConfigError(f"AWQ results folder {self.scales} does not exist")
        if self.device not in ("cpu", "cuda"):
            raise ConfigError(f"unknown --device {self.device!r}; choose cpu or cuda")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"--threads must be at least 1, got {self.threads}")


@dataclass(frozen=True)
class ImatrixConfig:
    model: Path | None = None  # HF folder or .gguf; None: the demo model
    out: Path = Path("imatrix.gguf")
    calib: Path | None = None  # None: data-free calibration, as convert --method awq
    calib_samples: int = 128
    calib_seqlen: int = 512
    force: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        if self.calib is not None and not self.calib.is_file():
            raise ConfigError(f"calibration file {self.calib} does not exist")
        if self.calib_samples < 1 or self.calib_seqlen < 2:
            raise ConfigError(f"--calib-samples must be >= 1 and --calib-seqlen >= 2 (got {self.calib_samples}, "
                              f"{self.calib_seqlen})")
