"""What a converter input looks like once opened: metadata writers plus lazily loaded float tensors."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

import gguf
import torch

from awq_gguf.errors import BadWeightError, ModelNotFoundError

from .arch import ArchSpec


@dataclass(frozen=True)
class SourceTensor:
    name: str  # GGUF name, e.g. "blk.3.attn_q.weight"
    shape: tuple[int, ...]  # torch order: [rows, cols] for matrices, cols = ggml's ne[0]
    load: Callable[[], torch.Tensor] = field(repr=False)  # float32 tensor of `shape`, in llama.cpp's layout
    origin: str = ""  # where it came from (HF name or GGUF name), for error messages

    def load_checked(self) -> torch.Tensor:
        w = self.load()
        if tuple(w.shape) != self.shape:
            raise BadWeightError(f"tensor {self.origin or self.name}: shape {tuple(w.shape)}, expected {self.shape}")
        if not torch.isfinite(w).all():
            bad = int((~torch.isfinite(w)).sum())
            raise BadWeightError(
                f"tensor {self.origin or self.name} holds {bad} NaN/Inf value(s); fix or re-export the checkpoint"
            )
        return w


class ModelSource(Protocol):
    name: str  # model name for the default output file, e.g. "SmolLM2-135M-Instruct"
    arch: ArchSpec
    n_layer: int
    n_head: int
    n_head_kv: int
    tensors: list[SourceTensor]  # in the order they are written

    def write_metadata(self, writer: gguf.GGUFWriter) -> None:
        """Architecture hyperparameters and tokenizer keys (not general.file_type / our own keys)."""
        ...

    def close(self) -> None: ...


def open_source(path: Path) -> ModelSource:
    """A Hugging Face model folder or a .gguf file."""
    from .gguf_source import GgufSource
    from .hf_source import HfSource

    if not path.exists():
        raise ModelNotFoundError(f"model path {path} does not exist; give a Hugging Face model folder or a .gguf file")
    if path.is_dir():
        return HfSource(path)
    return GgufSource(path)
