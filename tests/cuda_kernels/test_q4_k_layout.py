"""Q4_K's load-time re-layout for the CUDA kernels (ops._q4_k_planes; q4_k.cuh's header describes it), checked on
the CPU: the planes, read as the kernel reads them, give ggml's Q4_K values (gguf's dequantize, whose float32
d sc q - dmin m rounds once: within one float32 ulp of the exact value computed here in float64)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType as T
from gguf.quants import dequantize

from awq_gguf.cuda_kernels import ops


def random_q4_k(rows: int, nsb: int, seed: int) -> np.ndarray:
    """[rows, nsb, 144] Q4_K super-blocks: every scale / min / nibble byte random, d and dmin finite."""
    rng = np.random.default_rng(seed)
    b = rng.integers(0, 256, (rows, nsb, 144), dtype=np.uint8)
    for off in (0, 2):
        d = rng.uniform(-2.0, 2.0, (rows, nsb)).astype(np.float16)
        b[:, :, off:off + 2] = d.view(np.uint8).reshape(rows, nsb, 2)
    return b


def kernel_view(planes: tuple[torch.Tensor, ...], rows: int, nsb: int) -> np.ndarray:
    """What FmtQ4_K computes per chunk c (sub-block c % 8 of super-block c / 8): d sc q - dmin m, with byte i of the
    chunk's 16 nibble bytes holding element i (low) and element i + 16 (high)."""
    p0, p1, p2 = (p.numpy() for p in planes)
    nch = nsb * 8
    nib = p0.reshape(rows, nch, 16)
    dm = p1[: rows * nsb * 4].view(np.float16).reshape(rows, nsb, 2).astype(np.float64)
    sm = p2[: rows * nch * 2].reshape(rows, nch, 2).astype(np.float64)
    q = np.concatenate([nib & 15, nib >> 4], axis=2).astype(np.float64)  # [rows, nch, 32]
    d = np.repeat(dm[:, :, 0], 8, axis=1)[:, :, None]
    dmin = np.repeat(dm[:, :, 1], 8, axis=1)[:, :, None]
    return (d * sm[:, :, 0:1] * q - dmin * sm[:, :, 1:2]).reshape(rows, nsb * 256)


@pytest.mark.parametrize("rows,nsb,seed", [(1, 1, 0), (3, 2, 1), (7, 5, 2), (16, 16, 3)])
def test_planes_give_ggml_values_exactly(rows, nsb, seed):
    raw = random_q4_k(rows, nsb, seed)
    planes = ops._q4_k_planes(torch.from_numpy(raw))
    want = dequantize(raw.reshape(rows, nsb * 144), T.Q4_K).astype(np.float64)
    got = kernel_view(planes, rows, nsb)
    assert np.isfinite(want).all()
    ulp = np.spacing(np.abs(want).astype(np.float32)).astype(np.float64)
    bad = np.abs(got - want) > ulp
    assert not bad.any(), f"{bad.sum()} values off by more than a float32 ulp ({rows} rows, {nsb} super-blocks)"
    assert (got == want).mean() > 0.9  # mostly bit-identical: the rounding is rare


def test_plane_sizes_and_padding():
    rows, nsb = 5, 3
    p0, p1, p2 = ops._q4_k_planes(torch.from_numpy(random_q4_k(rows, nsb, 4)))
    assert p0.numel() == rows * nsb * 128
    # d | dmin and (sc, m): padded to 16 bytes (the stream kernel copies aligned spans), the padding zero
    assert p1.numel() == (rows * nsb * 4 + 15) // 16 * 16 and not p1[rows * nsb * 4:].any()
    assert p2.numel() % 16 == 0 and p2.numel() >= rows * nsb * 16 + 2 and not p2[rows * nsb * 16:].any()
    assert all(p.dtype == torch.uint8 and p.is_contiguous() for p in (p0, p1, p2))
    # 148 bytes per 256 weights before padding: the 12 packed scale bytes become 16
    assert p0.numel() + rows * nsb * 4 + rows * nsb * 16 == rows * nsb * 148


def test_scales_and_mins_unpacked_to_6_bits():
    """Every (sc, m) byte is a 6-bit value; all 64 values of each occur for random packed bytes."""
    raw = random_q4_k(64, 16, 5)
    _, _, p2 = ops._q4_k_planes(torch.from_numpy(raw))
    sm = p2[: 64 * 16 * 16].numpy().reshape(-1, 2)
    assert sm.max() < 64
    assert set(np.unique(sm[:, 0])) == set(range(64)) and set(np.unique(sm[:, 1])) == set(range(64))
