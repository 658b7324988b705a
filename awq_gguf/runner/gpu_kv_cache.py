"""The GPU runner's key/value cache: one storage per model, [n_head_kv, n_ctx, head_dim] per layer.

The decode step's CUDA graphs read and write the cache at fixed addresses, so a model keeps one storage and each
`new_cache()` hands it to a fresh GpuKVCache (n_past 0) and retires the previous one: a retired cache raises if
it is used again, instead of silently sharing rows with its successor. The storage starts zeroed: the decode
graphs attend over a whole bucket of positions with the future masked, and a masked row must hold finite
values (0 * NaN would still be NaN).
"""

from __future__ import annotations

import torch

from awq_gguf.runner.errors import ContextOverflowError, RunnerError


class KVStorage:
    """The tensors themselves, and which GpuKVCache currently owns them."""

    def __init__(self, n_layer: int, n_head_kv: int, n_ctx: int, head_dim: int, dtype: torch.dtype,
                 device: torch.device) -> None:
        self.n_ctx = n_ctx
        self.k = [torch.zeros(n_head_kv, n_ctx, head_dim, dtype=dtype, device=device) for _ in range(n_layer)]
        self.v = [torch.zeros(n_head_kv, n_ctx, head_dim, dtype=dtype, device=device) for _ in range(n_layer)]
        self.generation = 0

    def new_cache(self) -> GpuKVCache:
        self.generation += 1
        return GpuKVCache(self, self.generation)


class GpuKVCache:
    """A sequence's view of the storage: positions 0 .. n_past-1 hold its keys and values."""

    def __init__(self, storage: KVStorage, generation: int) -> None:
        self.storage = storage
        self.generation = generation
        self.n_ctx = storage.n_ctx
        self.n_past = 0

    def reset(self) -> None:
        self.check_current()
        self.n_past = 0

    def check_current(self) -> None:
        if self.generation != self.storage.generation:
            raise RunnerError("this KV cache was retired by a later new_cache() on the same GPU model "
                              "(the model keeps one cache storage for its CUDA graphs); use the newest cache")

    def check_room(self, n_new: int) -> None:
        if self.n_past + n_new > self.n_ctx:
            raise ContextOverflowError(
                f"{self.n_past + n_new} tokens do not fit the context of {self.n_ctx} "
                f"({self.n_past} already in the cache, {n_new} new); use a larger --ctx or a shorter prompt"
            )

    def store(self, layer: int, k: torch.Tensor, v: torch.Tensor, pos: torch.Tensor) -> None:
        """k, v [n_head_kv, n_new, head_dim] written at positions pos (int64 [n_new], on the device); graph-safe
        (no host value of pos is read)."""
        self.storage.k[layer].index_copy_(1, pos, k.to(self.storage.k[layer].dtype))
        self.storage.v[layer].index_copy_(1, pos, v.to(self.storage.v[layer].dtype))

    def keys_values(self, layer: int, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Positions 0..t-1 of the layer's keys and values, [n_head_kv, t, head_dim] views."""
        return self.storage.k[layer][:, :t], self.storage.v[layer][:, :t]
