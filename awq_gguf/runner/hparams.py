"""Model hyperparameters from a GGUF file's metadata, with the defaults llama.cpp applies, validated."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from awq_gguf.errors import CorruptModelError
from awq_gguf.runner.errors import UnsupportedModelError
from awq_gguf.runner.gguf_file import GgufFile


class RopeMode(Enum):
    NORMAL = 0  # llama.cpp LLAMA_ROPE_TYPE_NORM: rotate adjacent pairs (x[2i], x[2i+1])
    NEOX = 2  # LLAMA_ROPE_TYPE_NEOX: rotate halves (x[i], x[i + n_rot/2])


@dataclass(frozen=True)
class ArchTraits:
    rope_mode: RopeMode
    qkv_bias: bool  # q/k/v projections may carry biases (required for qwen2)
    qk_norm: bool  # per-head RMSNorm of q and k before RoPE (qwen3)


# As llama.cpp's llama_model_rope_type() and the per-arch graphs (src/models/{llama,qwen2,qwen3}.cpp).
ARCH_TRAITS: dict[str, ArchTraits] = {
    "llama": ArchTraits(RopeMode.NORMAL, qkv_bias=False, qk_norm=False),
    "qwen2": ArchTraits(RopeMode.NEOX, qkv_bias=True, qk_norm=False),
    "qwen3": ArchTraits(RopeMode.NEOX, qkv_bias=False, qk_norm=True),
}

_LIMIT = 1 << 20  # sanity bound on any dimension read from metadata


@dataclass(frozen=True)
class HParams:
    arch: str
    traits: ArchTraits
    n_layer: int
    n_embd: int
    n_ff: int
    n_head: int
    n_head_kv: int
    head_dim: int
    n_rot: int
    n_ctx_train: int
    rms_eps: float
    rope_base: float
    rope_freq_scale: float  # 1 / linear scaling factor
    n_vocab: int  # from the token embedding's shape

    @property
    def n_gqa(self) -> int:
        return self.n_head // self.n_head_kv


def read_hparams(f: GgufFile, n_vocab: int) -> HParams:
    arch = f.field("general.architecture", str)
    if arch not in ARCH_TRAITS:
        raise UnsupportedModelError(
            f"{f.path}: architecture {arch!r} is not supported by the runner; supported: {', '.join(ARCH_TRAITS)}"
        )
    p = f"{arch}."

    def dim(key: str, default: int | None = None) -> int:
        v = f.field(p + key, int) if default is None else f.field(p + key, int, default)
        if not 1 <= v <= _LIMIT:
            raise CorruptModelError(f"{f.path}: metadata {p + key} = {v} is out of range")
        return v

    for key in ("attention.head_count", "attention.head_count_kv", "feed_forward_length"):
        if _is_array(f, p + key):
            raise UnsupportedModelError(f"{f.path}: per-layer {p + key} (an array) is not supported by the runner")

    n_embd = dim("embedding_length")
    n_head = dim("attention.head_count")
    n_head_kv = dim("attention.head_count_kv", n_head)
    if n_head % n_head_kv:
        raise CorruptModelError(f"{f.path}: head_count {n_head} is not a multiple of head_count_kv {n_head_kv}")
    head_dim = dim("attention.key_length", max(n_embd // n_head, 1))
    if dim("attention.value_length", head_dim) != head_dim:
        raise UnsupportedModelError(f"{f.path}: key_length != value_length is not supported by the runner")
    n_rot = dim("rope.dimension_count", head_dim)
    if n_rot != head_dim:
        raise UnsupportedModelError(f"{f.path}: partial RoPE (n_rot {n_rot} != head_dim {head_dim}) is not supported")
    if head_dim % 2:
        raise CorruptModelError(f"{f.path}: head dimension {head_dim} is odd")

    scaling = f.field(p + "rope.scaling.type", str, "none")
    freq_scale = 1.0
    if scaling == "linear":
        factor = f.field(p + "rope.scaling.factor", float, 1.0)
        if not 0 < factor < 1e6:
            raise CorruptModelError(f"{f.path}: rope.scaling.factor {factor} is out of range")
        freq_scale = 1.0 / factor
    elif scaling != "none":
        raise UnsupportedModelError(f"{f.path}: RoPE scaling {scaling!r} is not supported by the runner (none, linear)")
    elif f.has(p + "rope.scale_linear"):
        freq_scale = 1.0 / f.field(p + "rope.scale_linear", float)

    eps = f.field(p + "attention.layer_norm_rms_epsilon", float)
    base = f.field(p + "rope.freq_base", float, 10000.0)
    if not (0 < eps < 1) or not (1 < base < 1e12):
        raise CorruptModelError(f"{f.path}: rms epsilon {eps} or rope base {base} is out of range")
    return HParams(
        arch=arch,
        traits=ARCH_TRAITS[arch],
        n_layer=dim("block_count"),
        n_embd=n_embd,
        n_ff=dim("feed_forward_length"),
        n_head=n_head,
        n_head_kv=n_head_kv,
        head_dim=head_dim,
        n_rot=n_rot,
        n_ctx_train=dim("context_length", 4096),
        rms_eps=eps,
        rope_base=base,
        rope_freq_scale=freq_scale,
        n_vocab=n_vocab,
    )


def _is_array(f: GgufFile, key: str) -> bool:
    from gguf import GGUFValueType

    fld = f.reader.get_field(key)
    return fld is not None and bool(fld.types) and fld.types[0] == GGUFValueType.ARRAY
