"""Q6_K's load-time re-layout for the CUDA kernels (ops._q6_k_planes; q6_k.cuh's header describes it), checked on
the CPU: the planes, read as the kernel reads them, give ggml's Q6_K values (gguf's dequantize rounds d sc (q - 32)
once in float32: within one float32 ulp of the exact value computed here in float64)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType as T
from gguf.quants import dequantize

from awq_gguf.cuda_kernels import ops
from ulp import assert_within_f32_ulp


def random_q6_k(rows: int, nsb: int, seed: int) -> np.ndarray:
    """[rows, nsb, 210] Q6_K super-blocks: quant and scale bytes random, d finite."""
    rng = np.random.default_rng(seed)
    b = rng.integers(0, 256, (rows, nsb, 210), dtype=np.uint8)
    d = rng.uniform(-2.0, 2.0, (rows, nsb)).astype(np.float16)
    b[:, :, 208:210] = d.view(np.uint8).reshape(rows, nsb, 2)
    return b


def kernel_view(planes: tuple[torch.Tensor, ...], rows: int, nsb: int) -> np.ndarray:
    """What FmtQ6_K computes for chunk c (elements 32c .. 32c + 31 of a row): element e's low nibble from byte e % 16
    of the chunk's 16 (high nibble for e >= 16), its top 2 bits from bits 2 (e // 8) of byte e % 4 of word (e % 8) // 4
    of the chunk's 8 top-bit bytes; scale (e >= 16) of the chunk's two; d of its super-block."""
    p0, p1, p2 = (p.numpy() for p in planes)
    nch = nsb * 8
    pairs = p0.reshape(rows, nch // 2, 48)
    nib = np.stack([pairs[:, :, :16], pairs[:, :, 16:32]], axis=2).reshape(rows, nch, 16).astype(np.int64)
    top = np.stack([pairs[:, :, 32:40], pairs[:, :, 40:48]], axis=2).reshape(rows, nch, 8).astype(np.int64)
    e = np.arange(32)
    low = np.where(e < 16, nib[:, :, e % 16] & 15, nib[:, :, e % 16] >> 4)
    hi2 = (top[:, :, 4 * ((e % 8) // 4) + e % 4] >> (2 * (e // 8))) & 3
    q = (low | (hi2 << 4)).astype(np.float64)  # [rows, nch, 32]
    sc = p1.reshape(rows, nch, 2).view(np.int8).astype(np.float64)[:, :, (e >= 16).astype(int)]
    d = np.repeat(p2[: rows * nsb * 2].view(np.float16).reshape(rows, nsb).astype(np.float64), 8, axis=1)[:, :, None]
    return (d * sc * (q - 32)).reshape(rows, nsb * 256)


@pytest.mark.parametrize("rows,nsb,seed", [(1, 1, 0), (3, 2, 1), (7, 5, 2), (16, 16, 3)])
def test_planes_give_ggml_values(rows, nsb, seed):
    raw = random_q6_k(rows, nsb, seed)
    planes = ops._q6_k_planes(torch.from_numpy(raw))
    want = dequantize(raw.reshape(rows, nsb * 210), T.Q6_K).astype(np.float64)
    got = kernel_view(planes, rows, nsb)
    assert_within_f32_ulp(got, want, f"{rows} rows, {nsb} super-blocks")


def test_same_bytes_as_the_file():
    rows, nsb = 5, 3
    raw = random_q6_k(rows, nsb, 4)
    p0, p1, p2 = ops._q6_k_planes(torch.from_numpy(raw))
    assert p0.numel() == rows * nsb * 192 and p1.numel() == rows * nsb * 16
    assert np.array_equal(p1.numpy().reshape(rows, nsb, 16), raw[:, :, 192:208])  # the scales as they are
    assert np.array_equal(p2.numpy()[: rows * nsb * 2].reshape(rows, nsb, 2), raw[:, :, 208:])  # d
    assert p2.numel() % 16 == 0 and not p2[rows * nsb * 2:].any()  # padded with zeros (ops._half_plane)
    # the quant bytes of a super-block are the file's 6-bit values regrouped: the same count of each nibble value and
    # of each top-bit pair
    f_low = np.concatenate([raw[:, :, :128] & 15, raw[:, :, :128] >> 4], axis=2)
    f_top = np.concatenate([(raw[:, :, 128:192] >> s) & 3 for s in (0, 2, 4, 6)], axis=2)
    sb = p0.numpy().reshape(rows, nsb, 4, 48)
    nib, top = sb[:, :, :, :32].reshape(rows, nsb, 128), sb[:, :, :, 32:].reshape(rows, nsb, 64)
    n_low = np.concatenate([nib & 15, nib >> 4], axis=2)
    n_top = np.concatenate([(top >> s) & 3 for s in (0, 2, 4, 6)], axis=2)
    for r in range(rows):
        for b in range(nsb):
            assert np.array_equal(np.sort(f_low[r, b]), np.sort(n_low[r, b]))
            assert np.array_equal(np.sort(f_top[r, b]), np.sort(n_top[r, b]))
