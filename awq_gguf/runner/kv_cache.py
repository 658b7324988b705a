"""Per-layer key/value cache: float32 [n_head_kv, n_ctx, head_dim] per layer, filled from position 0 up."""

from __future__ import annotations

import torch

from awq_gguf.runner.errors import ContextOverflowError


class KVCache:
    def __init__(self, n_layer: int, n_head_kv: int, n_ctx: int, head_dim: int) -> None:
        self.n_ctx = n_ctx
        self.k = [torch.empty(n_head_kv, n_ctx, head_dim) for _ in range(n_layer)]
        self.v = [torch.empty(n_head_kv, n_ctx, head_dim) for _ in range(n_layer)]
        self.n_past = 0  # positions 0 .. n_past-1 hold keys/values

    def reset(self) -> None:
        self.n_past = 0

    def check_room(self, n_new: int) -> None:
        if self.n_past + n_new > self.n_ctx:
            raise ContextOverflowError(
                f"{self.n_past + n_new} tokens do not fit the context of {self.n_ctx} "
                f"({self.n_past} already in the cache, {n_new} new); use a larger --ctx or a shorter prompt"
            )

    def store(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """k, v [n_head_kv, n_new, head_dim] at positions n_past.. -> all keys/values so far [n_head_kv, T, head_dim].

        The caller advances n_past once per forward pass (after the last layer)."""
        n = k.shape[1]
        end = self.n_past + n
        self.k[layer][:, self.n_past : end] = k
        self.v[layer][:, self.n_past : end] = v
        return self.k[layer][:, :end], self.v[layer][:, :end]
