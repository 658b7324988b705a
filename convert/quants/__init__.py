"""GGUF block quantizers, one per weight type.

One quantizer, two uses: `quantize` returns the exact bytes written to the GGUF file, and the AWQ search scores
candidate scales with `fake_quantize`, which is `dequantize(quantize(w))` of those same bytes.

Every quantizer has the signature `(w, importance) -> bytes`:
  w           float32 [rows, cols], cols a multiple of the type's block size, on any torch device
  importance  float32 [cols] or None: per-column weights of the squared error (llama.cpp's imatrix values,
              mean x^2 of the column's activations). None means plain squared error.
  returns     uint8 [rows, cols // block_size * type_size], rows laid out exactly as ggml stores them
Every dequantizer maps those bytes back to float32 [rows, cols], bit for bit as ggml / gguf.quants do.

The 32-weight symmetric formats (Q4_0, Q5_0, Q8_0) also take the input's second moments per block of 32 columns
(`quantize(..., moments=...)`): their levels are then refined under those moments (refine.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

QuantizeFn = Callable[[torch.Tensor, "torch.Tensor | None"], torch.Tensor]
DequantizeFn = Callable[[torch.Tensor], torch.Tensor]
RefineFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


class QuantShapeError(ValueError):
    """A tensor's shape does not fit the block format it is being quantized to."""


@dataclass(frozen=True)
class BlockFormat:
    qtype: GGMLQuantizationType
    quantize: QuantizeFn
    dequantize: DequantizeFn

    @property
    def block_size(self) -> int:
        return GGML_QUANT_SIZES[self.qtype][0]

    @property
    def type_size(self) -> int:
        return GGML_QUANT_SIZES[self.qtype][1]

    @property
    def fake(self) -> QuantizeFn | None:
        """(w, importance) -> float32 values of the quantized weights, bit-equal to dequantize(quantize(..)) but
        faster (no byte packing), where the format's quantizer provides it."""
        return getattr(self.quantize, "fake", None)

    @property
    def refine(self) -> "RefineFn | None":
        """(w, bytes, moments [cols/32, 32, 32]) -> bytes with levels refined under the input's second moments,
        where the format supports it (the 32-weight symmetric formats, see refine.py)."""
        return getattr(self.quantize, "refine", None)

    def row_bytes(self, cols: int) -> int:
        return cols // self.block_size * self.type_size


_FORMATS: dict[GGMLQuantizationType, BlockFormat] = {}


def register(fmt: BlockFormat) -> BlockFormat:
    _FORMATS[fmt.qtype] = fmt
    return fmt


# One module per weight type (shared helpers beside them); each calls register() at import time.
_MODULES = ("float_types", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q2_k", "q3_k", "q4_k", "q5_k", "q6_k")


def _load_all() -> None:
    import importlib

    for mod in _MODULES:
        importlib.import_module(f"{__name__}.{mod}")


def get_format(qtype: GGMLQuantizationType) -> BlockFormat:
    if not _FORMATS:
        _load_all()
    try:
        return _FORMATS[qtype]
    except KeyError:
        supported = ", ".join(sorted(t.name for t in _FORMATS))
        raise ValueError(f"no quantizer for {qtype.name}; supported: {supported}") from None


def supported_types() -> list[GGMLQuantizationType]:
    if not _FORMATS:
        _load_all()
    return list(_FORMATS)


def check_shape(w: torch.Tensor, qtype: GGMLQuantizationType, name: str = "tensor") -> None:
    block = GGML_QUANT_SIZES[qtype][0]
    if w.ndim != 2 or w.shape[1] % block:
        raise QuantShapeError(
            f"{name}: shape {tuple(w.shape)} cannot be quantized to {qtype.name}: "
            f"needs 2 dims and a row length that is a multiple of {block}"
        )


def _check_inputs(w: torch.Tensor, qtype: GGMLQuantizationType, importance: torch.Tensor | None,
                  moments: torch.Tensor | None = None) -> None:
    check_shape(w, qtype)
    if importance is not None and importance.shape != (w.shape[1],):
        raise QuantShapeError(f"importance has shape {tuple(importance.shape)}, expected ({w.shape[1]},)")
    if moments is not None and moments.shape != (w.shape[1] // 32, 32, 32):
        raise QuantShapeError(f"moments have shape {tuple(moments.shape)}, expected ({w.shape[1] // 32}, 32, 32) "
                              f"for a tensor of shape {tuple(w.shape)}")


def refinable(qtype: GGMLQuantizationType) -> bool:
    """Whether quantize(..., moments=...) refines this type's levels (otherwise moments are ignored)."""
    return get_format(qtype).refine is not None


def quantize(w: torch.Tensor, qtype: GGMLQuantizationType, importance: torch.Tensor | None = None,
             moments: torch.Tensor | None = None) -> torch.Tensor:
    """float32 [rows, cols] -> uint8 [rows, row_bytes], the GGUF bytes of type `qtype`.

    moments: E[x_b x_b^T] [cols/32, 32, 32] of the input per block of 32 columns; for the types that support it
    (refinable) the levels are then refined to lower the output error they imply (refine.py)."""
    _check_inputs(w, qtype, importance, moments)
    fmt = get_format(qtype)
    w = w.float().contiguous()
    q = fmt.quantize(w, importance)
    if moments is not None and fmt.refine is not None:
        q = fmt.refine(w, q, moments)
    return q


def dequantize(q: torch.Tensor, qtype: GGMLQuantizationType) -> torch.Tensor:
    """uint8 [rows, row_bytes] -> float32 [rows, cols]."""
    return get_format(qtype).dequantize(q)


def fake_quantize(w: torch.Tensor, qtype: GGMLQuantizationType, importance: torch.Tensor | None = None,
                  moments: torch.Tensor | None = None) -> torch.Tensor:
    """The float values the GGUF file will hold for `w`: what the AWQ search scores."""
    fake = get_format(qtype).fake
    if fake is None or (moments is not None and refinable(qtype)):
        return dequantize(quantize(w, qtype, importance, moments), qtype)
    _check_inputs(w, qtype, importance, moments)
    return fake(w.float().contiguous(), importance)
