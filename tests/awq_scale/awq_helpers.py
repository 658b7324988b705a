"""Shared helpers of the AWQ tests: tiny-model blocks, their GGUF types and captured activations."""

from __future__ import annotations

from pathlib import Path

import torch
from gguf import GGMLQuantizationType

from awq_gguf.awq_scale.block import LINEARS, BlockConfig, Params, block_config, block_forward, block_params, embed
from awq_gguf.awq_scale.groups import ATTENTION, ScaleGroup
from awq_gguf.awq_scale.search import GroupStats
from awq_gguf.convert.mix import ModelShape, plan_types
from awq_gguf.convert.source import ModelSource, open_source


def model_types(source: ModelSource, file_type: str) -> dict[str, GGMLQuantizationType]:
    shape = ModelShape(n_layer=source.n_layer, n_head=source.n_head, n_head_kv=source.n_head_kv,
                       has_output=any(t.name == "output.weight" for t in source.tensors))
    return plan_types([(t.name, t.shape) for t in source.tensors], file_type, shape)


def block_types(source: ModelSource, file_type: str, i: int = 0) -> dict[str, GGMLQuantizationType]:
    types = model_types(source, file_type)
    return {stem: types[f"blk.{i}.{stem}.weight"] for stem in LINEARS}


def tiny_block(folder: Path, i: int = 0, n: int = 4, L: int = 32, seed: int = 0
               ) -> tuple[ModelSource, BlockConfig, Params, torch.Tensor]:
    """(source, config, block i's float32 params, hidden states [n, L, C] entering block 0 for random tokens)."""
    source = open_source(folder)
    cfg = block_config(source)
    g = torch.Generator().manual_seed(seed)
    embd = next(t for t in source.tensors if t.name == "token_embd.weight").load_checked()
    h = embed(embd, torch.randint(0, embd.shape[0], (n, L), generator=g))
    return source, cfg, block_params(source, i), h


def capture(p: Params, h: torch.Tensor, cfg: BlockConfig) -> dict[str, torch.Tensor]:
    """Every linear input of the block (INPUT_OF names) on hidden states h."""
    store: dict[str, torch.Tensor] = {}
    block_forward(p, h, cfg, lambda name, x: store.__setitem__(name, x))
    return store


def group_stats(store: dict[str, torch.Tensor], group: ScaleGroup) -> GroupStats:
    from awq_gguf.awq_scale.block import INPUT_OF

    x = store[INPUT_OF[group.inspect]]
    flat = x.reshape(-1, x.shape[-1])
    x_loss = x if group.inspect == ATTENTION else flat
    return GroupStats(flat.abs().mean(0), flat.pow(2).mean(0), x_loss)
