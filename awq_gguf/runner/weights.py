"""The model's tensors, looked up by llama.cpp's names and checked against the hyperparameters.

Weight matrices stay as QTensors (raw bytes in the mmap); 1-D tensors (norms, biases, rope_freqs) are small and
become float32 torch tensors.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from gguf import GGMLQuantizationType as QT

from awq_gguf.errors import CorruptModelError
from awq_gguf.runner.backend import QTensor, dequantize_rows
from awq_gguf.runner.errors import RunnerError, UnsupportedModelError
from awq_gguf.runner.gguf_file import GgufFile, open_checked
from awq_gguf.runner.hparams import HParams, read_hparams


@dataclass
class LayerWeights:
    attn_norm: torch.Tensor  # [n_embd]
    wq: QTensor  # [n_head * head_dim, n_embd]
    wk: QTensor  # [n_head_kv * head_dim, n_embd]
    wv: QTensor  # [n_head_kv * head_dim, n_embd]
    wo: QTensor  # [n_embd, n_head * head_dim]
    bq: torch.Tensor | None  # [n_head * head_dim] (qwen2)
    bk: torch.Tensor | None
    bv: torch.Tensor | None
    q_norm: torch.Tensor | None  # [head_dim] (qwen3)
    k_norm: torch.Tensor | None
    ffn_norm: torch.Tensor  # [n_embd]
    w_gate: QTensor  # [n_ff, n_embd]
    w_up: QTensor  # [n_ff, n_embd]
    w_down: QTensor  # [n_embd, n_ff]


@dataclass
class ModelWeights:
    token_embd: QTensor  # [n_vocab, n_embd]
    output_norm: torch.Tensor  # [n_embd]
    output: QTensor  # [n_vocab, n_embd]; token_embd itself when the embeddings are tied
    rope_freqs: torch.Tensor | None  # [head_dim / 2] llama3 frequency divisors
    layers: list[LayerWeights]

    def matrices(self) -> list[QTensor]:
        """Every matrix a forward pass multiplies by (the output once, even when tied)."""
        out = [m for lw in self.layers for m in (lw.wq, lw.wk, lw.wv, lw.wo, lw.w_gate, lw.w_up, lw.w_down)]
        return out + [self.output]

    def bytes_per_token(self) -> int:
        """File bytes of the weights one decoding step reads (all matrices; one embedding row is negligible)."""
        return sum(m.nbytes for m in self.matrices())


def supported_weight_types() -> set[QT]:
    from awq_gguf.convert.quants import supported_types

    return set(supported_types())


def vocab_size(f: GgufFile) -> int:
    t = f.tensors.get("token_embd.weight")
    if t is None:
        raise CorruptModelError(f"{f.path}: tensor 'token_embd.weight' is missing")
    dims = [int(d) for d in t.shape]
    if len(dims) != 2:
        raise CorruptModelError(f"{f.path}: token_embd.weight has shape {dims}, expected 2 dimensions")
    return dims[1]


class _Loader:
    def __init__(self, f: GgufFile, hp: HParams) -> None:
        self.f, self.hp = f, hp
        self.types = supported_weight_types()

    def _get(self, name: str, optional: bool):
        t = self.f.tensors.get(name)
        if t is None and not optional:
            raise CorruptModelError(f"{self.f.path}: tensor {name!r} is missing")
        return t

    def _check_shape(self, name: str, t, shape: tuple[int, ...]) -> None:
        got = tuple(int(d) for d in reversed(t.shape))  # ggml stores dims innermost first
        if got != shape:
            raise CorruptModelError(f"{self.f.path}: tensor {name!r} has shape {list(got)}, expected {list(shape)}")
        if t.tensor_type not in self.types:
            raise UnsupportedModelError(
                f"{self.f.path}: tensor {name!r} has type {t.tensor_type.name}, which the runner does not support; "
                f"supported: {', '.join(sorted(q.name for q in self.types))}"
            )

    def matrix(self, name: str, rows: int, cols: int, optional: bool = False) -> QTensor | None:
        t = self._get(name, optional)
        if t is None:
            return None
        self._check_shape(name, t, (rows, cols))
        raw = np.asarray(t.data).view(np.uint8).reshape(rows, -1)  # [rows, row_bytes], still the mmap
        return QTensor(name, QT(t.tensor_type), rows, cols, raw)

    def vector(self, name: str, n: int, optional: bool = False) -> torch.Tensor | None:
        t = self._get(name, optional)
        if t is None:
            return None
        self._check_shape(name, t, (n,))
        raw = np.asarray(t.data).view(np.uint8).reshape(1, -1)
        v = dequantize_rows(QTensor(name, QT(t.tensor_type), 1, n, raw), raw).reshape(n).clone()
        if not torch.isfinite(v).all():
            raise CorruptModelError(f"{self.f.path}: tensor {name!r} holds NaN or Inf")
        return v


def load_weights(f: GgufFile, hp: HParams) -> ModelWeights:
    ld = _Loader(f, hp)
    d, kv = hp.head_dim, hp.n_head_kv * hp.head_dim
    layers = []
    for i in range(hp.n_layer):
        b = f"blk.{i}."
        bias_optional = not hp.traits.qkv_bias  # qwen2 requires them; llama accepts them (create_tensor_qkv)
        lw = LayerWeights(
            attn_norm=ld.vector(b + "attn_norm.weight", hp.n_embd),
            wq=ld.matrix(b + "attn_q.weight", hp.n_head * d, hp.n_embd),
            wk=ld.matrix(b + "attn_k.weight", kv, hp.n_embd),
            wv=ld.matrix(b + "attn_v.weight", kv, hp.n_embd),
            wo=ld.matrix(b + "attn_output.weight", hp.n_embd, hp.n_head * d),
            bq=ld.vector(b + "attn_q.bias", hp.n_head * d, optional=bias_optional),
            bk=ld.vector(b + "attn_k.bias", kv, optional=bias_optional),
            bv=ld.vector(b + "attn_v.bias", kv, optional=bias_optional),
            q_norm=ld.vector(b + "attn_q_norm.weight", d, optional=not hp.traits.qk_norm),
            k_norm=ld.vector(b + "attn_k_norm.weight", d, optional=not hp.traits.qk_norm),
            ffn_norm=ld.vector(b + "ffn_norm.weight", hp.n_embd),
            w_gate=ld.matrix(b + "ffn_gate.weight", hp.n_ff, hp.n_embd),
            w_up=ld.matrix(b + "ffn_up.weight", hp.n_ff, hp.n_embd),
            w_down=ld.matrix(b + "ffn_down.weight", hp.n_embd, hp.n_ff),
        )
        if not hp.traits.qk_norm:
            lw.q_norm = lw.k_norm = None
        layers.append(lw)
    token_embd = ld.matrix("token_embd.weight", hp.n_vocab, hp.n_embd)
    output = ld.matrix("output.weight", hp.n_vocab, hp.n_embd, optional=True) or token_embd
    rope_freqs = ld.vector("rope_freqs.weight", hp.n_rot // 2, optional=True)
    return ModelWeights(token_embd, ld.vector("output_norm.weight", hp.n_embd), output, rope_freqs, layers)


@dataclass(frozen=True)
class ModelFile:
    """A validated, mapped model file: what every runner model (CPU or GPU) is built from."""

    file: GgufFile
    hp: HParams
    weights: ModelWeights
    n_ctx: int


def open_model(path: Path, n_ctx: int | None = None) -> ModelFile:
    """Open and validate `path`, read its hyperparameters, map its weights. n_ctx defaults to min(the training
    context, 4096)."""
    f = open_checked(Path(path))
    hp = read_hparams(f, vocab_size(f))
    weights = load_weights(f, hp)
    if n_ctx is None:
        n_ctx = min(hp.n_ctx_train, 4096)
    if n_ctx < 1:
        raise RunnerError(f"context length must be positive, got {n_ctx}")
    return ModelFile(f, hp, weights, n_ctx)
