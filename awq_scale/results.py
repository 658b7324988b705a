"""Saved AWQ search results: one folder per (model, calibration, types, settings), one safetensors file per block.

A results folder holds meta.json (what the search ran on) and block-NNN.safetensors for every finished block
(NNN = n_layer is the final norm's statistics for an untied output matrix). Each block file holds
  scale.<prev stem>   [n_scale]  the group's scales (e.g. scale.attn_norm)
  clip.<linear stem>  [rows, nb] the clamp bound of each quantization block of a clipped linear
  imp.<linear stem>   [cols]     mean x^2 of the linear's input after scaling (the quantizer's importance)
  mom.<linear stem>   [cols/32, 32, 32]  E[x_b x_b^T] of that input per block of 32 columns (level refinement;
                                 only for linears whose type refines, see convert.quants.refine)
Blocks are written as they finish, so an interrupted search continues from the last finished block (--resume).
The scales and importance do not depend on the weight type, so a folder can be re-applied to another type
(the clip bounds then are dropped: they belong to the type they were searched for).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from awq_gguf.errors import AwqGgufError

from .awq import AwqSettings, BlockResult

FORMAT_VERSION = 1
# settings that change the search's result (threads, device and progress do not)
_RESULT_SETTINGS = ("n_grid", "act_only", "duo", "clip", "max_shrink", "clip_grid", "loss_tokens", "screen_tokens",
                    "screen_keep", "importance", "seed")
# bumped whenever the search itself changes (candidates, screening, quantizer numerics): results saved by an
# older search then get another key, and are searched again instead of silently reused
SEARCH_VERSION = 4  # 3: importance for a tied output head (token_embd.weight); 4: block second moments saved


class ResultsError(AwqGgufError):
    """A saved AWQ search cannot be used for this conversion."""


def default_root() -> Path:
    return Path(os.environ.get("AWQ_GGUF_CACHE", Path.home() / ".cache" / "awq-gguf")) / "awq"


def model_fingerprint(source) -> str:
    """sha256 over the tensor names, shapes and the bytes of the (small) norm weights: tells models apart."""
    h = hashlib.sha256(source.arch.gguf_name.encode())
    for t in source.tensors:
        h.update(f"{t.name}:{tuple(t.shape)};".encode())
    for t in source.tensors:
        if t.name.endswith("norm.weight"):
            h.update(t.load_checked().numpy().tobytes())
    return h.hexdigest()


def types_fingerprint(types: dict) -> str:
    return hashlib.sha256(json.dumps({k: v.name for k, v in sorted(types.items())}).encode()).hexdigest()


@dataclass(frozen=True)
class SearchKey:
    """What a search result depends on."""

    model: str  # model_fingerprint
    calib: str  # sha256 of the calibration token ids, or a description of data-free calibration
    types: str  # types_fingerprint of the plan
    settings: dict  # the result-relevant AwqSettings fields

    @staticmethod
    def of(source, calib: str, types: dict, settings: AwqSettings) -> "SearchKey":
        s = asdict(settings)
        return SearchKey(model_fingerprint(source), calib, types_fingerprint(types),
                         {"search_version": SEARCH_VERSION, **{k: s[k] for k in _RESULT_SETTINGS}})

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]


def calib_digest(tokens: torch.Tensor) -> str:
    return "tokens:" + hashlib.sha256(tokens.to(torch.int64).contiguous().numpy().tobytes()).hexdigest()


@dataclass(frozen=True)
class BlockRecord:
    scales: dict[str, torch.Tensor]
    clip_max: dict[str, torch.Tensor]
    importance: dict[str, torch.Tensor]  # keyed "attn_q.weight" as BlockResult
    moments: dict[str, torch.Tensor] = field(default_factory=dict)  # keyed as importance


class SearchResults:
    """A results folder: meta.json plus the finished blocks."""

    def __init__(self, folder: Path, meta: dict) -> None:
        self.folder = folder
        self.meta = meta

    # -- opening ------------------------------------------------------------------------------------------

    @staticmethod
    def create(folder: Path, key: SearchKey, n_layer: int, model_name: str, type_name: str) -> "SearchResults":
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("block-*.safetensors"):
            old.unlink()
        meta = {"format": FORMAT_VERSION, "key": asdict(key), "n_layer": n_layer, "model_name": model_name,
                "type": type_name}
        tmp = folder / "meta.json.tmp"
        tmp.write_text(json.dumps(meta, indent=1, sort_keys=True))
        tmp.replace(folder / "meta.json")
        return SearchResults(folder, meta)

    @staticmethod
    def open(folder: Path) -> "SearchResults":
        meta_path = folder / "meta.json"
        if not meta_path.is_file():
            raise ResultsError(f"{folder} is not an AWQ results folder (no meta.json)")
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError) as e:
            raise ResultsError(f"{meta_path} is unreadable ({e}); delete the folder and search again") from None
        if meta.get("format") != FORMAT_VERSION:
            raise ResultsError(f"{folder} was written by another version of awq-gguf; delete it and search again")
        return SearchResults(folder, meta)

    @property
    def key(self) -> dict:
        return self.meta["key"]

    def mismatch(self, key: SearchKey, same_types: bool = True) -> str | None:
        """Why this folder's search does not fit `key` (None when it does)."""
        mine, theirs = self.key, asdict(key)
        if mine["model"] != theirs["model"]:
            return f"it was computed for another model ({self.meta.get('model_name')})"
        if mine["calib"] != theirs["calib"]:
            return "it was computed on other calibration data"
        if mine["settings"] != theirs["settings"]:
            diff = sorted(k for k in theirs["settings"] if mine["settings"].get(k) != theirs["settings"][k])
            return f"it was computed with other AWQ settings ({', '.join(diff)})"
        if same_types and mine["types"] != theirs["types"]:
            return f"it was computed for another weight type ({self.meta.get('type')})"
        return None

    # -- blocks -------------------------------------------------------------------------------------------

    def _path(self, i: int) -> Path:
        return self.folder / f"block-{i:03d}.safetensors"

    def finished(self) -> int:
        """Number of leading blocks (0..n_layer, then the final statistics) already saved."""
        n = 0
        while self._path(n).is_file():
            n += 1
        return n

    @property
    def complete(self) -> bool:
        return self.finished() >= self.meta["n_layer"] + 1

    def save(self, i: int, result: BlockResult) -> None:
        tensors = {f"scale.{k}": v for k, v in result.scales.items()}
        tensors |= {f"clip.{k}": v for k, v in result.clip_max.items()}
        tensors |= {f"imp.{k.removesuffix('.weight')}": v for k, v in result.importance.items()}
        tensors |= {f"mom.{k.removesuffix('.weight')}": v for k, v in result.moments.items()}
        tmp = self._path(i).with_suffix(".tmp")
        save_file({k: v.contiguous().float() for k, v in tensors.items()}, str(tmp))
        tmp.replace(self._path(i))

    def load(self, i: int) -> BlockRecord:
        try:
            t = load_file(str(self._path(i)))
        except Exception as e:  # a truncated or foreign file
            raise ResultsError(f"{self._path(i)} is unreadable ({e}); delete {self.folder} and search again") from None
        pick = lambda p: {k[len(p):]: v for k, v in t.items() if k.startswith(p)}  # noqa: E731
        return BlockRecord(pick("scale."), pick("clip."), {f"{k}.weight": v for k, v in pick("imp.").items()},
                           {f"{k}.weight": v for k, v in pick("mom.").items()})
