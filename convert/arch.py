"""Supported architectures as data: one row per Hugging Face architecture, no per-model code.

Tensor names map through the `gguf` package's TensorNameMap; this table holds only what differs between
families: the GGUF architecture, whether q/k rows are permuted for llama.cpp's RoPE, and which optional tensors
(biases, q/k norms) the family has.
"""

from __future__ import annotations

from dataclasses import dataclass

import gguf
import torch

from awq_gguf.errors import UnsupportedArchitectureError


@dataclass(frozen=True)
class ArchSpec:
    hf_arch: str  # config.json "architectures"[0]
    gguf_arch: gguf.MODEL_ARCH
    # llama.cpp's LLAMA architecture rotates adjacent pairs (GPT-J style); HF Llama/Mistral checkpoints rotate
    # halves, so q and k rows are permuted on the way in. Qwen2/Qwen3 use NEOX RoPE in llama.cpp: no permute.
    permute_qk: bool
    qkv_bias: bool = False  # Qwen2: q/k/v projections carry biases
    qk_norm: bool = False  # Qwen3: RMSNorm on each head of q and k

    @property
    def gguf_name(self) -> str:
        return gguf.MODEL_ARCH_NAMES[self.gguf_arch]


ARCHITECTURES: dict[str, ArchSpec] = {
    spec.hf_arch: spec
    for spec in (
        ArchSpec("LlamaForCausalLM", gguf.MODEL_ARCH.LLAMA, permute_qk=True),
        ArchSpec("MistralForCausalLM", gguf.MODEL_ARCH.LLAMA, permute_qk=True),
        ArchSpec("Qwen2ForCausalLM", gguf.MODEL_ARCH.QWEN2, permute_qk=False, qkv_bias=True),
        ArchSpec("Qwen3ForCausalLM", gguf.MODEL_ARCH.QWEN3, permute_qk=False, qk_norm=True),
    )
}

# GGUF architecture name -> the spec used when the input is a GGUF file (already in llama.cpp's layout).
GGUF_ARCHITECTURES: dict[str, ArchSpec] = {}
for _spec in ARCHITECTURES.values():
    GGUF_ARCHITECTURES.setdefault(_spec.gguf_name, _spec)


def arch_for_hf(config: dict) -> ArchSpec:
    names = config.get("architectures") or []
    for name in names:
        if name in ARCHITECTURES:
            return ARCHITECTURES[name]
    raise UnsupportedArchitectureError(
        f"unsupported architecture {names[0] if names else '(none in config.json)'}; "
        f"supported: {', '.join(ARCHITECTURES)}"
    )


def arch_for_gguf(name: str) -> ArchSpec:
    if name not in GGUF_ARCHITECTURES:
        raise UnsupportedArchitectureError(
            f"unsupported GGUF architecture {name!r}; supported: {', '.join(GGUF_ARCHITECTURES)}"
        )
    return GGUF_ARCHITECTURES[name]


def permute_qk(w: torch.Tensor, n_head: int) -> torch.Tensor:
    """HF rotate-half row order -> llama.cpp's interleaved pairs, per head. w: [n_head * head_dim, ...]."""
    rows = w.shape[0]
    return w.reshape(n_head, 2, rows // n_head // 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


def unpermute_qk(w: torch.Tensor, n_head: int) -> torch.Tensor:
    """Inverse of permute_qk: llama.cpp's interleaved pairs -> HF rotate-half row order."""
    rows = w.shape[0]
    return w.reshape(n_head, rows // n_head // 2, 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)
