"""llama.cpp's named file types ("mixes") as data: which GGML type each tensor gets.

Mirrors llama_tensor_get_type / llama_tensor_get_type_impl / tensor_type_fallback in src/llama-quant.cpp of the
llama.cpp vendored in llama-cpp-python 0.3.36, for the names tools/quantize accepts that this project writes
(no imatrix, no IQ/TQ types, no --tensor-type / --output-tensor-type overrides). The result is meant to equal
what `llama-quantize IN OUT MIX` produces tensor by tensor; tests/convert/test_mix.py checks that against
fixtures recorded from the real tool.

Rules worth knowing (all from llama-quant.cpp):
  * only tensors whose name ends in "weight", with at least 2 dims, and not a norm / MoE router / position
    embedding are quantized; everything else stays F32 here (llama.cpp keeps the input type);
  * output.weight, and token_embd.weight when there is no output.weight (tied embeddings), get Q6_K unless the
    base type is Q8_0 (then Q8_0), or Q8_0 when the row length is not a multiple of the base block size, or
    the architecture is Falcon; an untied token_embd.weight just takes the base type;
  * attn_v / ffn_down get more bits on some layers in Q2_K, Q3_K_M, Q3_K_L, Q4_K_S, Q4_K_M, Q5_K_M, counted
    by their position in llama.cpp's tensor order (layer number, then name); attn_output too in Q2_K/Q3_K_M/L;
  * a row length (ggml ne[0], the last torch dim) that is not a multiple of the chosen type's block size
    falls back: Q2_K/Q3_K -> Q4_0, Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0; a 32-block type stays; if the
    result still does not fit (row length not a multiple of 32) the tensor becomes F16.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from typing import Sequence

import gguf

from awq_gguf.errors import UnknownTypeError

QT = gguf.GGMLQuantizationType
FT = gguf.LlamaFileType

# Names llama-quantize accepts (tools/quantize/quantize.cpp QUANT_OPTIONS) that this project writes.
FILE_TYPES: dict[str, FT] = {
    "Q4_0": FT.MOSTLY_Q4_0,
    "Q4_1": FT.MOSTLY_Q4_1,
    "Q5_0": FT.MOSTLY_Q5_0,
    "Q5_1": FT.MOSTLY_Q5_1,
    "Q8_0": FT.MOSTLY_Q8_0,
    "Q2_K": FT.MOSTLY_Q2_K,
    "Q3_K_S": FT.MOSTLY_Q3_K_S,
    "Q3_K_M": FT.MOSTLY_Q3_K_M,
    "Q3_K_L": FT.MOSTLY_Q3_K_L,
    "Q4_K_S": FT.MOSTLY_Q4_K_S,
    "Q4_K_M": FT.MOSTLY_Q4_K_M,
    "Q5_K_S": FT.MOSTLY_Q5_K_S,
    "Q5_K_M": FT.MOSTLY_Q5_K_M,
    "Q6_K": FT.MOSTLY_Q6_K,
    "F16": FT.MOSTLY_F16,
    "BF16": FT.MOSTLY_BF16,
    "F32": FT.ALL_F32,
}
ALIASES: dict[str, str] = {"Q3_K": "Q3_K_M", "Q4_K": "Q4_K_M", "Q5_K": "Q5_K_M"}
ACCEPTED_NAMES: tuple[str, ...] = (*FILE_TYPES, *ALIASES)

# llama_ftype_get_default_type
BASE_TYPE: dict[FT, QT] = {
    FT.MOSTLY_Q4_0: QT.Q4_0,
    FT.MOSTLY_Q4_1: QT.Q4_1,
    FT.MOSTLY_Q5_0: QT.Q5_0,
    FT.MOSTLY_Q5_1: QT.Q5_1,
    FT.MOSTLY_Q8_0: QT.Q8_0,
    FT.MOSTLY_Q2_K: QT.Q2_K,
    FT.MOSTLY_Q3_K_S: QT.Q3_K,
    FT.MOSTLY_Q3_K_M: QT.Q3_K,
    FT.MOSTLY_Q3_K_L: QT.Q3_K,
    FT.MOSTLY_Q4_K_S: QT.Q4_K,
    FT.MOSTLY_Q4_K_M: QT.Q4_K,
    FT.MOSTLY_Q5_K_S: QT.Q5_K,
    FT.MOSTLY_Q5_K_M: QT.Q5_K,
    FT.MOSTLY_Q6_K: QT.Q6_K,
    FT.MOSTLY_F16: QT.F16,
    FT.MOSTLY_BF16: QT.BF16,
    FT.ALL_F32: QT.F32,
}

# tensor_type_fallback: a 256-block type whose row length does not fit -> a 32-block type
FALLBACK: dict[QT, QT] = {
    QT.Q2_K: QT.Q4_0,
    QT.Q3_K: QT.Q4_0,
    QT.Q4_K: QT.Q5_0,
    QT.Q5_K: QT.Q5_1,
    QT.Q6_K: QT.Q8_0,
}

_FLOAT_TYPES = (QT.F32, QT.F16, QT.BF16)  # ggml_is_quantized() is false for these


def block_size(qtype: QT) -> int:
    return gguf.GGML_QUANT_SIZES[qtype][0]


def canonical_name(name: str) -> str:
    """The canonical mix name for name (case-insensitive, aliases resolved); UnknownTypeError if none."""
    key = name.strip().upper()
    key = ALIASES.get(key, key)
    if key not in FILE_TYPES:
        raise UnknownTypeError(f"unknown type {name!r}; accepted: {', '.join(ACCEPTED_NAMES)}")
    return key


def file_type_of(name: str) -> FT:
    """The gguf.LlamaFileType for a mix name such as "Q4_K_M" (case-insensitive; Q3_K/Q4_K/Q5_K are aliases)."""
    return FILE_TYPES[canonical_name(name)]


def base_type_of(name: str) -> QT:
    """The base (default) GGML type of a mix: Q4_K for Q4_K_M, Q3_K for Q3_K_L, ..."""
    return BASE_TYPE[file_type_of(name)]


@dataclass(frozen=True)
class ModelShape:
    """What llama.cpp's type choice reads from the model besides tensor names and shapes."""

    n_layer: int
    n_head: int
    n_head_kv: int
    n_expert: int = 0
    has_output: bool = True  # False when embeddings are tied (no output.weight)
    arch: str = "llama"  # GGUF architecture name; only "falcon" changes the rules
    is_70b: bool | None = None  # llama.cpp's LLM_TYPE_70B; None: inferred as llama.cpp's loaders do

    @property
    def n_gqa(self) -> int:
        return self.n_head // self.n_head_kv if self.n_head_kv else 0

    @property
    def llm_type_70b(self) -> bool:
        if self.is_70b is not None:
            return self.is_70b
        if self.arch == "llama":
            return self.n_layer == 80 and self.n_head != self.n_head_kv and self.n_expert != 8
        if self.arch in ("qwen2", "deci", "olmo"):
            return self.n_layer == 80
        return self.arch == "jais2" and self.n_layer == 68


class Category(Enum):
    OUTPUT = "output"
    TOKEN_EMBD = "token_embd"
    ATTENTION_QKV = "attn_qkv"
    ATTENTION_KV_B = "attn_kv_b"
    ATTENTION_V = "attn_v"
    ATTENTION_K = "attn_k"
    ATTENTION_Q = "attn_q"
    ATTENTION_OUTPUT = "attn_output"
    FFN_UP = "ffn_up"
    FFN_GATE = "ffn_gate"
    FFN_DOWN = "ffn_down"
    OTHER = "other"


_ATTN_V_LIKE = (Category.ATTENTION_V, Category.ATTENTION_QKV, Category.ATTENTION_KV_B)

# tensor_get_category: substring tests, first match wins
_CATEGORY_SUBSTRINGS: tuple[tuple[str, Category], ...] = (
    ("attn_qkv.weight", Category.ATTENTION_QKV),
    ("attn_kv_b.weight", Category.ATTENTION_KV_B),
    ("attn_v.weight", Category.ATTENTION_V),
    ("attn_k.weight", Category.ATTENTION_K),
    ("attn_q.weight", Category.ATTENTION_Q),
    ("attn_output.weight", Category.ATTENTION_OUTPUT),
    ("ffn_up", Category.FFN_UP),
    ("ffn_gate", Category.FFN_GATE),
    ("ffn_down", Category.FFN_DOWN),
)


def category_of(name: str) -> Category:
    if name == "output.weight":
        return Category.OUTPUT
    if name in ("token_embd.weight", "per_layer_token_embd.weight"):
        return Category.TOKEN_EMBD
    for sub, cat in _CATEGORY_SUBSTRINGS:
        if sub in name:
            return cat
    return Category.OTHER


# tensor_allows_quantization: names never quantized (substring tests), for the architectures we handle
_NEVER_QUANTIZED = (
    "_norm.weight", "ffn_gate_inp.weight", "ffn_gate_tid2eid.weight", "altup", "laurel", "per_layer_model_proj",
    "ssm_conv1d", "shortconv.conv.weight", "indexer.k_proj.weight", "indexer.q_proj.weight",
    "time_mix_first.weight", "time_mix_w0.weight", "time_mix_w1.weight", "time_mix_w2.weight",
    "time_mix_v0.weight", "time_mix_v1.weight", "time_mix_v2.weight", "time_mix_a0.weight",
    "time_mix_a1.weight", "time_mix_a2.weight", "time_mix_g1.weight", "time_mix_g2.weight",
    "time_mix_decay_w1.weight", "time_mix_decay_w2.weight", "time_mix_lerp_fused.weight", "attn_rel_b.weight",
    ".position_embd", "sam.pos_embd", "sam.neck.", "sam.net_", ".rel_pos", ".patch_embd", ".patch_merger",
    "a.rvq.codebook", "mm.a.code_embd",
)


def ggml_n_dims(shape: Sequence[int]) -> int:
    """ggml_n_dims of a tensor given in torch order: trailing ggml dims of size 1 (leading torch ones) don't count."""
    ne = list(reversed(shape)) or [1]
    n = len(ne)
    while n > 1 and ne[n - 1] == 1:
        n -= 1
    return n


def allows_quantization(name: str, shape: Sequence[int]) -> bool:
    if ggml_n_dims(shape) < 2 or not name.endswith("weight"):
        return False
    if name in ("position_embd.weight", "token_types.weight"):
        return False
    return not any(s in name for s in _NEVER_QUANTIZED)


def use_more_bits(i_layer: int, n_layers: int) -> bool:
    """The layers Q4_K_M/Q5_K_M give more bits: the first and last eighth, and every third in between."""
    return i_layer < n_layers // 8 or i_layer >= 7 * n_layers // 8 or (i_layer - n_layers // 8) % 3 == 2


def _layer_of(name: str) -> int:
    m = re.match(r"blk\.(-?\d+)\.", name)
    return int(m.group(1)) if m else -1


def llama_cpp_order(names: Sequence[str]) -> list[str]:
    """llama-quantize's tensor order (its weights map): layer number (non-block tensors first), then name."""
    return sorted(names, key=lambda n: (_layer_of(n), n))


@dataclass
class _Counters:
    n_attention_wv: int
    n_ffn_down: int
    i_attention_wv: int = 0
    i_ffn_down: int = 0


def _mix_type(qt: QT, name: str, cat: Category, row_len: int, ft: FT, model: ModelShape, tied: bool,
              c: _Counters) -> QT:
    """llama_tensor_get_type_impl for the file types in FILE_TYPES (no imatrix, no overrides)."""
    falcon = model.arch == "falcon"
    n_expert = max(1, model.n_expert)

    def layer_info(i_layer: int, n_layer: int) -> tuple[int, int]:
        if n_expert > 1:  # MoE experts are not in layer order: take the layer from the name
            i_layer = _layer_of(name)
            if not 0 <= i_layer < n_layer:
                raise ValueError(f"bad layer {i_layer} for tensor {name}; must be in [0, {n_layer})")
        return i_layer, n_layer

    if cat is Category.OUTPUT or (tied and cat is Category.TOKEN_EMBD):
        if falcon or row_len % block_size(qt) != 0:
            return QT.Q8_0
        return QT.Q6_K if qt != QT.Q8_0 else qt
    if cat is Category.TOKEN_EMBD:
        return qt  # untied: the base type (the IQ/TQ mixes would change it)

    if cat in _ATTN_V_LIKE:  # attn_qkv/attn_kv_b are caught here, so their own branch below never runs
        if ft == FT.MOSTLY_Q2_K:
            qt = QT.Q4_K if model.n_gqa >= 4 else QT.Q3_K
        elif ft == FT.MOSTLY_Q3_K_M:
            qt = QT.Q5_K if c.i_attention_wv < 2 else QT.Q4_K
        elif ft == FT.MOSTLY_Q3_K_L:
            qt = QT.Q5_K
        elif ft in (FT.MOSTLY_Q4_K_M, FT.MOSTLY_Q5_K_M) and use_more_bits(c.i_attention_wv, c.n_attention_wv):
            qt = QT.Q6_K
        elif ft == FT.MOSTLY_Q4_K_S and c.i_attention_wv < 4:
            qt = QT.Q5_K
        if model.llm_type_70b and qt in (QT.Q3_K, QT.Q4_K):
            qt = QT.Q5_K  # 70B: attn_v is 8x smaller than attn_q (GQA 8), so more bits are cheap
        if model.n_expert == 8:
            qt = QT.Q8_0
        c.i_attention_wv += 1
    elif cat is Category.ATTENTION_K:
        if model.n_expert == 8:
            qt = QT.Q8_0
    elif cat is Category.FFN_DOWN:
        i_layer, n_layer = layer_info(c.i_ffn_down, c.n_ffn_down)
        if ft == FT.MOSTLY_Q2_K:
            qt = QT.Q3_K
        elif ft == FT.MOSTLY_Q3_K_M:
            if i_layer < n_layer // 16:
                qt = QT.Q5_K
            else:
                qt = QT.Q4_K if (not falcon or use_more_bits(i_layer, n_layer)) else QT.Q3_K
        elif ft == FT.MOSTLY_Q3_K_L:
            qt = QT.Q4_K if falcon else QT.Q5_K
        elif ft == FT.MOSTLY_Q4_K_M:
            if falcon:
                qt = (QT.Q6_K if i_layer < n_layer // 16
                      else QT.Q5_K if use_more_bits(i_layer, n_layer) else QT.Q4_K)
            elif use_more_bits(i_layer, n_layer):
                qt = QT.Q6_K
        elif ft == FT.MOSTLY_Q5_K_M and use_more_bits(i_layer, n_layer):
            qt = QT.Q6_K
        elif ft == FT.MOSTLY_Q4_K_S and not falcon and i_layer < n_layer // 8:
            qt = QT.Q5_K
        c.i_ffn_down += 1
    elif cat is Category.ATTENTION_OUTPUT:
        if not falcon:
            if model.n_expert == 8:
                if ft in (FT.MOSTLY_Q2_K, FT.MOSTLY_Q3_K_S, FT.MOSTLY_Q3_K_M, FT.MOSTLY_Q4_K_S, FT.MOSTLY_Q4_K_M):
                    qt = QT.Q5_K
            elif ft == FT.MOSTLY_Q2_K:
                qt = QT.Q3_K
            elif ft == FT.MOSTLY_Q3_K_M:
                qt = QT.Q4_K
            elif ft == FT.MOSTLY_Q3_K_L:
                qt = QT.Q5_K
        elif ft == FT.MOSTLY_Q3_K_L:
            qt = QT.Q4_K
    # attn_q, attn_k (dense), ffn_gate, ffn_up, other: the base type for these file types
    return qt


def _fallback(qt: QT, row_len: int) -> QT:
    """tensor_type_fallback: a type whose block does not divide the row length -> a smaller block, else F16."""
    if row_len % block_size(qt) == 0:
        return qt
    out = FALLBACK.get(qt, qt)  # a 32-block type has nothing smaller: it stays, then fails the check below
    if row_len % block_size(out) != 0:
        out = QT.F16
    return out


def plan_types(tensors: Sequence[tuple[str, tuple[int, ...]]], file_type: str, model: ModelShape,
               pure: bool = False) -> dict[str, QT]:
    """The GGML type llama-quantize gives each tensor for the mix file_type ("Q4_K_M", "Q8_0", "F16", ...).

    tensors: (GGUF name, shape in torch order [rows, cols]) for every tensor of the file (the order does not
    matter: llama.cpp's own order is used for its layer counters). Returns name -> type. Tensors llama.cpp does
    not quantize (1-D norms and biases, MoE routers, ...) are F32. pure=True: every quantizable weight gets the
    base type (llama-quantize --pure), still subject to the row-length fallback.
    """
    ft = file_type_of(file_type)
    base = BASE_TYPE[ft]
    names = [n for n, _ in tensors]
    shapes = dict(tensors)
    if len(shapes) != len(names):
        raise ValueError("duplicate tensor names in the tensor list")
    if "output.weight" in shapes and not model.has_output:
        raise ValueError("ModelShape.has_output is False but the tensor list has output.weight")
    tied = not model.has_output

    counters = _Counters(n_attention_wv=sum(category_of(n) in _ATTN_V_LIKE for n in names),
                         n_ffn_down=model.n_layer)
    out: dict[str, QT] = {}
    for name in llama_cpp_order(names):
        shape = tuple(shapes[name])
        if not allows_quantization(name, shape):
            out[name] = QT.F32
            continue
        if base in _FLOAT_TYPES:  # F32/F16/BF16 files: every weight matrix takes the base type, nothing else
            out[name] = base
            continue
        row_len = int(shape[-1])
        qt = base
        if not pure:
            qt = _mix_type(qt, name, category_of(name), row_len, ft, model, tied, counters)
        out[name] = _fallback(qt, row_len)
    return {n: out[n] for n in names}
