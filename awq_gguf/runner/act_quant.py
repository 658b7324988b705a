"""Activation rounding as ggml's CPU matmul does it, for the torch backend's llama.cpp-emulation mode.

ggml multiplies a quantized weight by activations converted to the weight type's `vec_dot_type`
(ggml-cpu.c type_traits_cpu): Q8_0 blocks of 32 for Q4_0/Q5_0/Q8_0, Q8_1 for Q4_1/Q5_1, Q8_K blocks of 256 for
the K types, F16 for F16 weights. The integer dot products are exact, so the result equals the float product
with the activations replaced by their dequantized 8-bit values; `round_activations` returns those values.
This is how the runner can be checked against llama.cpp to ~1e-6 KL; by default the runner keeps float32
activations (more accurate than llama.cpp).
"""

from __future__ import annotations

import torch
from gguf import GGMLQuantizationType as QT

_Q8_0_FAMILY = {QT.Q4_0, QT.Q5_0, QT.Q8_0, QT.Q4_1, QT.Q5_1}
_Q8_K_FAMILY = {QT.Q2_K, QT.Q3_K, QT.Q4_K, QT.Q5_K, QT.Q6_K}


def _q8_0(x: torch.Tensor) -> torch.Tensor:
    """quantize_row_q8_0 (x86 SIMD version): per 32: d = amax/127 stored as fp16, q = round_even(x * (127/amax))."""
    b = x.reshape(-1, 32)
    amax = b.abs().amax(-1, keepdim=True)
    d = amax / 127
    inv = torch.where(amax > 0, 127.0 / amax, torch.zeros_like(amax))
    q = torch.round(b * inv)
    return (q * d.half().float()).reshape(x.shape)


def q8_1_min_correction(x: torch.Tensor, raw_w, qtype: QT) -> torch.Tensor | None:
    """Q4_1/Q5_1 weights meet Q8_1 activations, whose block sum s = fp16(d * sum(q)) (d float32) multiplies the
    weight block's min m: ggml adds m * s where the dequantized product has m * fp16(d) * sum(q). Returns the
    difference to add to x_hat @ W^T, float32 [n, rows], or None for other types.
    x float32 [n, cols]; raw_w uint8 numpy [rows, row_bytes]."""
    if qtype not in (QT.Q4_1, QT.Q5_1):
        return None
    import numpy as np

    block_bytes = 20 if qtype == QT.Q4_1 else 24
    rows = raw_w.shape[0]
    m = torch.from_numpy(
        np.ascontiguousarray(raw_w.reshape(rows, -1, block_bytes)[:, :, 2:4]).view(np.float16)[..., 0].astype(np.float32)
    )  # [rows, n_blocks]
    b = x.reshape(x.shape[0], -1, 32)
    amax = b.abs().amax(-1)  # [n, n_blocks]
    d = amax / 127
    inv = torch.where(amax > 0, 127.0 / amax, torch.zeros_like(amax))
    qsum = torch.round(b * inv[..., None]).sum(-1)
    delta = (d * qsum).half().float() - d.half().float() * qsum  # [n, n_blocks]
    return delta @ m.T


def _q8_k(x: torch.Tensor) -> torch.Tensor:
    """quantize_row_q8_K_ref: per 256: iscale = -127/max (max = signed value of largest |x|), q = min(127,
    nearest_int(iscale x)), d = 1/iscale (float32)."""
    b = x.reshape(-1, 256)
    idx = b.abs().argmax(-1, keepdim=True)
    mx = torch.gather(b, -1, idx)
    safe = torch.where(mx != 0, mx, torch.ones_like(mx))
    iscale = -127.0 / safe
    q = torch.round(iscale * b).clamp(max=127)  # nearest_int rounds half to even
    return torch.where(mx != 0, q * (1.0 / iscale), torch.zeros_like(b)).reshape(x.shape)


def round_activations(x: torch.Tensor, qtype: QT) -> torch.Tensor:
    """x float32 [n, cols] -> the values ggml's dot products see for a weight of type qtype."""
    if qtype in _Q8_0_FAMILY:
        return _q8_0(x)
    if qtype in _Q8_K_FAMILY:
        return _q8_k(x)
    if qtype == QT.F16:
        return x.half().float()
    if qtype == QT.BF16:
        return x.bfloat16().float()
    return x
