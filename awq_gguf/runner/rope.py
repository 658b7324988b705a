"""Rotary position embeddings exactly as ggml's CPU rope applies them (ggml-cpu/ops.cpp, ggml_rope_cache_init).

Angles: theta(p, i) = p * base^(-2i/n_rot) / freq_factor[i] * freq_scale, for pair i < n_rot/2, with ggml's
float32 recurrence theta_{i+1} = theta_i * theta_scale. Rotation pairs:
  NORMAL (llama):        (x[2i], x[2i+1])          -- the converter permutes llama q/k rows for this
  NEOX   (qwen2, qwen3): (x[i],  x[i + n_rot/2])
"""

from __future__ import annotations

import numpy as np
import torch

from awq_gguf.runner.hparams import RopeMode


class Rope:
    def __init__(self, n_rot: int, base: float, freq_scale: float, mode: RopeMode, max_pos: int,
                 freq_factors: torch.Tensor | None = None) -> None:
        self.n_rot, self.mode = n_rot, mode
        half = n_rot // 2
        # ggml: theta_scale = powf(freq_base, -2.0f/n_dims); theta = p; theta *= theta_scale per pair (float32).
        theta_scale = np.float32(np.power(np.float32(base), np.float32(-2.0) / np.float32(n_rot)))
        pos = np.arange(max_pos, dtype=np.float32)
        theta = np.empty((max_pos, half), dtype=np.float32)  # [pos, pair]
        cur = pos.copy()
        for i in range(half):
            theta[:, i] = cur
            cur = (cur * theta_scale).astype(np.float32)
        if freq_factors is not None:
            theta = (theta / freq_factors.numpy().astype(np.float32)).astype(np.float32)
        theta = (np.float32(freq_scale) * theta).astype(np.float32)
        self.cos = torch.from_numpy(np.cos(theta.astype(np.float64)).astype(np.float32))  # [max_pos, half]
        self.sin = torch.from_numpy(np.sin(theta.astype(np.float64)).astype(np.float32))
        self.cis = torch.complex(self.cos, self.sin)  # NORMAL mode: adjacent pairs as complex numbers times cis

    @property
    def max_pos(self) -> int:
        return int(self.cos.shape[0])

    def __call__(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """x [n_tok, n_heads, head_dim], pos int64 [n_tok] -> rotated copy of x."""
        return self.apply(x, self.rows(pos))

    def rows(self, pos: torch.Tensor) -> torch.Tensor:
        """The table rows of positions pos (int64 [n_tok]), for apply: complex cos + i sin [n_tok, 1, half] in
        NORMAL mode, float32 [2, n_tok, 1, half] (cos, sin) in NEOX mode. One lookup serves every layer."""
        if self.mode == RopeMode.NORMAL:
            return self.cis[pos][:, None, :]
        return torch.stack((self.cos[pos], self.sin[pos]))[:, :, None, :]

    def apply(self, x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """x [n_tok, n_heads, head_dim] rotated by the rows of its positions (rows(pos)) -> a new tensor."""
        r = self.n_rot
        if self.mode == RopeMode.NORMAL and x.dtype == torch.float32:
            # (x0 + i x1) * (cos + i sin): the same two products and sums per pair as below, one fused kernel
            # (bit-equal to the stack path; pp512 RoPE 2.7 -> 0.25 ms per call on the dev machine)
            pairs = x[..., :r].reshape(*x.shape[:-1], r // 2, 2)
            out = torch.view_as_real(torch.view_as_complex(pairs) * rows).flatten(-2)
        elif self.mode == RopeMode.NORMAL:
            cos, sin = rows.real, rows.imag
            x0, x1 = x[..., 0:r:2], x[..., 1:r:2]
            out = torch.stack((x0 * cos - x1 * sin, x0 * sin + x1 * cos), dim=-1).flatten(-2)
        else:
            cos, sin = rows[0], rows[1]
            x0, x1 = x[..., : r // 2], x[..., r // 2 : r]
            out = torch.cat((x0 * cos - x1 * sin, x0 * sin + x1 * cos), dim=-1)
        if r < x.shape[-1]:
            out = torch.cat((out, x[..., r:]), dim=-1)
        return out

    def to(self, device: torch.device | str) -> Rope:
        """A copy whose tables live on `device` (the GPU runner indexes them with device positions)."""
        out = object.__new__(Rope)
        out.n_rot, out.mode = self.n_rot, self.mode
        out.cos, out.sin, out.cis = self.cos.to(device), self.sin.to(device), self.cis.to(device)
        return out
