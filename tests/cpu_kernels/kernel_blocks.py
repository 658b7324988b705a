"""Random GGUF weight rows for the kernel tests: random bytes for every quant field (all bit patterns,
negative Q6_K scales, the whole Q3_K scale range), with each fp16 scale field overwritten by a finite value."""

from __future__ import annotations

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType as T

# byte offsets of the fp16 fields inside one block
FP16_FIELDS: dict[T, tuple[int, ...]] = {
    T.Q4_0: (0,), T.Q4_1: (0, 2), T.Q5_0: (0,), T.Q5_1: (0, 2), T.Q8_0: (0,),
    T.Q2_K: (80, 82), T.Q3_K: (108,), T.Q4_K: (0, 2), T.Q5_K: (0, 2), T.Q6_K: (208,),
}  # fmt: skip
QUANT_TYPES = list(FP16_FIELDS)
ALL_TYPES = [T.F32, T.F16, *QUANT_TYPES]


def random_rows(rng: np.random.Generator, qtype: T, rows: int, cols: int) -> np.ndarray:
    """uint8 [rows, row_bytes] of random blocks of qtype (cols a multiple of the block size)."""
    if qtype == T.F32:
        return rng.standard_normal((rows, cols)).astype(np.float32).view(np.uint8)
    if qtype == T.F16:
        return rng.standard_normal((rows, cols)).astype(np.float16).view(np.uint8)
    block, size = GGML_QUANT_SIZES[qtype]
    nb = rows * cols // block
    raw = rng.integers(0, 256, size=(nb, size), dtype=np.uint8)
    for off in FP16_FIELDS[qtype]:
        vals = (rng.uniform(0.2, 1.0, nb) * rng.choice([-1.0, 1.0], nb) * 2.0**-6).astype(np.float16)
        raw[:, off:off + 2] = vals.view(np.uint8).reshape(nb, 2)
    return raw.reshape(rows, cols // block * size)


def ref_quantize_act(x: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray]:
    """What the C activation quantizer computes (float32 arithmetic, round half to even):
    returns q int8 [n, cols] and d float32 [n, cols // block]."""
    n, cols = x.shape
    xb = x.reshape(n, cols // block, block)
    amax = np.abs(xb).max(axis=2)
    d = (amax / np.float32(127.0)).astype(np.float32)
    with np.errstate(divide="ignore", over="ignore"):
        inv = np.where(d >= np.float32(1e-30), np.float32(1.0) / d, np.float32(0.0)).astype(np.float32)
    q = np.rint(xb * inv[:, :, None]).astype(np.int8)
    return q.reshape(n, cols), d


def ref_matmul(w_f: np.ndarray, x: np.ndarray, block: int | None) -> tuple[np.ndarray, np.ndarray]:
    """float64 y = xq @ W^T with x quantized as the kernels do (block None: x as is), and the matching
    scale sum(|xq| @ |W|^T) for tolerances. w_f: dequantized weights [rows, cols]."""
    w64 = w_f.astype(np.float64)
    if block is None:
        xd = x.astype(np.float64)
    else:
        q, d = ref_quantize_act(x, block)
        xd = (q.reshape(x.shape[0], -1, block).astype(np.float64) * d[:, :, None].astype(np.float64)).reshape(x.shape)
    return xd @ w64.T, np.abs(xd) @ np.abs(w64).T
