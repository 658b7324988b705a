"""Replaying saved AWQ results on a source's tensors while the converter streams them out.

Only one block's float tensors are held at a time: the first tensor asked for from block i loads that block,
folds its scales in and applies its clamps; the block's other tensors come from that cache.
"""

from __future__ import annotations

import torch

from .awq import apply_awq
from .block import BlockConfig, Params, block_config, block_params
from .results import BlockRecord


class AwqApplier:
    def __init__(self, source, records: dict[int, BlockRecord], use_clip: bool = True) -> None:
        self.source = source
        self.records = records  # block index -> record; index n_layer: the final statistics
        self.use_clip = use_clip
        self.arch = source.arch.gguf_name
        self.cfg: BlockConfig = block_config(source)
        self._cached: tuple[int, Params] | None = None

    def _block(self, i: int) -> Params:
        if self._cached is None or self._cached[0] != i:
            self._cached = None  # free the previous block before loading the next
            rec = self.records[i]
            clip = rec.clip_max if self.use_clip else {}
            self._cached = (i, apply_awq(block_params(self.source, i), rec.scales, clip, self.cfg, self.arch))
        return self._cached[1]

    def tensor(self, name: str) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        """(the float tensor to quantize, or None to keep the source's; its importance [cols] or None; its input's
        second moments [cols/32, 32, 32] for the level refinement, or None)."""
        if name.startswith("blk."):
            i_str, stem = name[4:].split(".", 1)
            i = int(i_str)
            rec = self.records[i]
            return self._block(i)[stem], rec.importance.get(stem), rec.moments.get(stem)
        final = self.records.get(self.source.n_layer)
        if final is None:
            return None, None, None
        return None, final.importance.get(name), final.moments.get(name)
