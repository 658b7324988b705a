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
from ulp import assert_within_f32_ulp


def random_q4_k(rows: int, nsb: int, seed: int) -> np.ndarray:
    """[rows, nsb, 144] Q4_K super-blocks: every scale / min / nibble byte random, d and dmin finite."""
    rng = np.random.default_rng(seed)
    b = rng.integers(0, 256, (rows, nsb, 144), dtype=np.uint8)
    for off in (0, 2):
        d = rng.uniform(-2.0, 2.0, (rows, nsb)).astype(np.float16)
        b[:, :, off:off + 2] = d.view(np.uint8).reshape(rows, nsb, 2)
    return b


def read_scales(sb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each sub-block's 6-bit (scale, min) from re-laid super-blocks [rows, nsb, 144], as FmtQ4_K::scales reads them:
    low 4 bits in byte 4 + j (low / high nibble), top 2 bits in bits 4j .. 4j + 3 of bytes 12..15."""
    low = sb[:, :, 4:12].astype(np.int64)                                              # [rows, nsb, 8]
    top = (sb[:, :, 12:16].copy().view("<u4").astype(np.int64) >> (4 * np.arange(8))) & 15  # [rows, nsb, 8]
    return (low & 15) | ((top & 3) << 4), (low >> 4) | ((top >> 2) << 4)


def kernel_view(planes: tuple[torch.Tensor, ...], rows: int, nsb: int) -> np.ndarray:
    """What FmtQ4_K computes per chunk c (sub-block j = c % 8 of super-block c / 8): d sc_j q - dmin m_j, with the
    low 4 bits of sc_j / m_j in byte 4 + j (low / high nibble), their top 2 bits in bits 4j .. 4j + 3 of bytes 12..15,
    and byte i of the chunk's 16 nibble bytes (at 16 + 16 j) holding element i (low) and element i + 16 (high)."""
    (p0,) = (p.numpy() for p in planes)
    sb = p0.reshape(rows, nsb, 144)
    dm = sb[:, :, :4].copy().view(np.float16).reshape(rows, nsb, 2).astype(np.float64)
    sc, mn = read_scales(sb)
    nib = sb[:, :, 16:].reshape(rows, nsb, 8, 16)
    q = np.concatenate([nib & 15, nib >> 4], axis=3).astype(np.float64)  # [rows, nsb, 8, 32]
    val = dm[:, :, 0, None, None] * sc[..., None] * q - dm[:, :, 1, None, None] * mn[..., None]
    return val.reshape(rows, nsb * 256)


@pytest.mark.parametrize("rows,nsb,seed", [(1, 1, 0), (3, 2, 1), (7, 5, 2), (16, 16, 3)])
def test_planes_give_ggml_values_exactly(rows, nsb, seed):
    raw = random_q4_k(rows, nsb, seed)
    planes = ops._q4_k_planes(torch.from_numpy(raw))
    want = dequantize(raw.reshape(rows, nsb * 144), T.Q4_K).astype(np.float64)
    got = kernel_view(planes, rows, nsb)
    assert_within_f32_ulp(got, want, f"{rows} rows, {nsb} super-blocks")
    assert (got == want).mean() > 0.9  # mostly bit-identical: the rounding is rare


def test_one_plane_of_the_file_size():
    rows, nsb = 5, 3
    raw = random_q4_k(rows, nsb, 4)
    (p0,) = ops._q4_k_planes(torch.from_numpy(raw))
    assert p0.numel() == rows * nsb * 144 and p0.dtype == torch.uint8 and p0.is_contiguous()
    sb = p0.numpy().reshape(rows, nsb, 144)
    assert np.array_equal(sb[:, :, :4], raw[:, :, :4])  # d, dmin unchanged
    # the nibble bytes are a permutation of the file's nibbles (same multiset of 4-bit values per super-block)
    for r in range(rows):
        for b in range(nsb):
            got = np.sort(np.concatenate([sb[r, b, 16:] & 15, sb[r, b, 16:] >> 4]))
            want = np.sort(np.concatenate([raw[r, b, 16:] & 15, raw[r, b, 16:] >> 4]))
            assert np.array_equal(got, want)


def test_scales_and_mins_cover_all_6_bit_values():
    """Random packed bytes give every 6-bit scale and min value, and the repacking keeps each one."""
    rows, nsb = 64, 16
    raw = random_q4_k(rows, nsb, 5)
    (p0,) = ops._q4_k_planes(torch.from_numpy(raw))
    sc, mn = read_scales(p0.numpy().reshape(rows, nsb, 144))
    assert set(np.unique(sc)) == set(range(64)) and set(np.unique(mn)) == set(range(64))
