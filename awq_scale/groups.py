"""AWQ scaling groups per architecture, as data (one table keyed by the GGUF architecture name).

A group is one scale vector s over the input channels of some linears: the op in front of them (`prev`: an
RMSNorm weight, or the rows of a linear) is divided by s and the linears' input columns are multiplied by s,
so the float model is unchanged; the search picks s to lower the error of `inspect`'s output once the linears
are quantized. Names are GGUF tensor stems inside a block ("attn_q" for "blk.N.attn_q.weight").
"""

from __future__ import annotations

from dataclasses import dataclass

from awq_gguf.errors import UnsupportedArchitectureError

# Modules whose output is a group's loss, besides single linears (named by their stem).
ATTENTION = "attn"  # the whole attention: q/k/v projections, RoPE, softmax, o projection
FFN = "ffn"  # the whole SwiGLU MLP: gate, up, down


@dataclass(frozen=True)
class ScaleGroup:
    prev: str  # divided by s: a norm weight ("attn_norm") or the output rows of a linear ("attn_v")
    linears: tuple[str, ...]  # input columns multiplied by s; these are fake-quantized during the search
    inspect: str  # whose output the loss compares: ATTENTION, FFN or one linear's stem
    # s lives on prev's rows, which are key/value heads; the linears' input columns are query heads, so each
    # entry of s repeats over the n_head / n_head_kv query heads that read that kv head (GQA v -> o).
    kv_repeat: bool = False

    @property
    def prev_is_norm(self) -> bool:
        return self.prev.endswith("_norm")


# Llama, Mistral, Qwen2 and Qwen3 share one block layout: pre-norm attention then pre-norm SwiGLU.
_LLAMA_LIKE: tuple[ScaleGroup, ...] = (
    ScaleGroup("attn_norm", ("attn_q", "attn_k", "attn_v"), ATTENTION),
    ScaleGroup("attn_v", ("attn_output",), "attn_output", kv_repeat=True),
    ScaleGroup("ffn_norm", ("ffn_gate", "ffn_up"), FFN),
    ScaleGroup("ffn_up", ("ffn_down",), "ffn_down"),
)

GROUPS: dict[str, tuple[ScaleGroup, ...]] = {
    "llama": _LLAMA_LIKE,
    "qwen2": _LLAMA_LIKE,  # q/k/v biases: untouched by column scaling; v's bias is divided with its rows
    "qwen3": _LLAMA_LIKE,  # q/k norms act per head after the projections: column scaling leaves them be
}


def groups_for(gguf_arch: str) -> tuple[ScaleGroup, ...]:
    if gguf_arch not in GROUPS:
        raise UnsupportedArchitectureError(
            f"AWQ has no scaling groups for architecture {gguf_arch!r}; supported: {', '.join(GROUPS)}"
        )
    return GROUPS[gguf_arch]


def scaled_linears(gguf_arch: str) -> tuple[str, ...]:
    """Every linear stem some group scales, in group order."""
    return tuple(name for g in groups_for(gguf_arch) for name in g.linears)
