"""A Hugging Face model folder as a converter input: config.json plus (sharded) safetensors, read lazily."""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

import gguf
import torch
from safetensors import safe_open

from awq_gguf.errors import BadWeightError, CorruptModelError, ModelNotFoundError

from .arch import arch_for_hf, permute_qk
from .hparams import add_hparams, model_dims, rope_freqs_tensor
from .source import SourceTensor

_FLOAT_DTYPES = {"F32", "F16", "BF16"}
_SKIP = re.compile(r"rotary_emb\.inv_freq$")


def read_safetensors_header(path: Path) -> dict[str, dict]:
    """Parse and check a safetensors header: every tensor's bytes must lie inside the file."""
    size = path.stat().st_size
    try:
        with open(path, "rb") as f:
            raw_len = f.read(8)
            if len(raw_len) < 8:
                raise ValueError("shorter than its 8-byte header length")
            (n,) = struct.unpack("<Q", raw_len)
            if n > size - 8:
                raise ValueError(f"header length {n} exceeds the file size {size}")
            header = json.loads(f.read(n))
    except (ValueError, UnicodeDecodeError) as e:
        raise CorruptModelError(f"{path}: not a valid safetensors file ({e}); re-download or re-save it") from None
    header.pop("__metadata__", None)
    data_len = size - 8 - n
    for name, info in header.items():
        end = info.get("data_offsets", [0, 0])[1]
        if end > data_len:
            raise CorruptModelError(
                f"{path}: truncated: tensor {name} ends at byte {end} of the data section but only {data_len} "
                f"bytes are there; re-download the file"
            )
    return header


class HfSource:
    def __init__(self, folder: Path) -> None:
        config_path = folder / "config.json"
        if not config_path.is_file():
            raise ModelNotFoundError(f"{folder} has no config.json; give a Hugging Face model folder or a .gguf file")
        try:
            self.config: dict = json.loads(config_path.read_text())
        except json.JSONDecodeError as e:
            raise CorruptModelError(f"{config_path}: invalid JSON ({e})") from None
        self.folder = folder
        self.name = folder.resolve().name
        self.arch = arch_for_hf(self.config)
        dims = model_dims(self.config)
        self.n_layer, self.n_head, self.n_head_kv = dims.n_layer, dims.n_head, dims.n_head_kv
        self.tied = bool(self.config.get("tie_word_embeddings", False))
        self._handles: dict[Path, object] = {}
        self.tensors = self._collect_tensors()

    def _shard_files(self) -> list[Path]:
        index = self.folder / "model.safetensors.index.json"
        if index.is_file():
            weight_map: dict[str, str] = json.loads(index.read_text())["weight_map"]
            files = sorted({self.folder / f for f in weight_map.values()})
            missing = [f.name for f in files if not f.is_file()]
            if missing:
                raise ModelNotFoundError(f"{self.folder}: shard(s) listed in the index are missing: {', '.join(missing)}")
            return files
        files = sorted(self.folder.glob("*.safetensors"))
        if not files:
            raise ModelNotFoundError(
                f"{self.folder} has no *.safetensors weights (pytorch .bin checkpoints are not read: re-save with "
                f"safetensors)"
            )
        return files

    def _collect_tensors(self) -> list[SourceTensor]:
        tmap = gguf.get_tensor_name_map(self.arch.gguf_arch, self.n_layer)
        found: dict[str, SourceTensor] = {}
        for path in self._shard_files():
            for hf_name, info in read_safetensors_header(path).items():
                if _SKIP.search(hf_name) or (self.tied and hf_name == "lm_head.weight"):
                    continue
                name = tmap.get_name(hf_name, try_suffixes=(".weight", ".bias"))
                if name is None:
                    raise BadWeightError(
                        f"{path.name}: tensor {hf_name} has no GGUF name for {self.arch.hf_arch}; "
                        f"is config.json's architecture right?"
                    )
                if info["dtype"] not in _FLOAT_DTYPES:
                    raise CorruptModelError(
                        f"{path.name}: tensor {hf_name} has dtype {info['dtype']}; only F32, F16 and BF16 "
                        f"checkpoints are converted"
                    )
                found[name] = SourceTensor(name, tuple(info["shape"]), self._loader(path, hf_name, name), hf_name)
        rope = rope_freqs_tensor(self.config)
        if rope is not None:
            found["rope_freqs.weight"] = SourceTensor("rope_freqs.weight", tuple(rope.shape), lambda: rope)
        missing = [n for n in ("token_embd.weight", "output_norm.weight") if n not in found]
        if missing:
            raise BadWeightError(f"{self.folder}: checkpoint lacks {', '.join(missing)}; the files are incomplete")
        return sorted(found.values(), key=lambda t: _write_order(t.name, self.arch.gguf_arch))

    def _loader(self, path: Path, hf_name: str, name: str):
        def load() -> torch.Tensor:
            handle = self._handles.get(path)
            if handle is None:
                try:
                    handle = self._handles[path] = safe_open(str(path), framework="pt")
                except Exception as e:  # safetensors raises its own error type for any malformed file
                    raise CorruptModelError(f"{path}: cannot be read as safetensors ({e})") from None
            w = handle.get_tensor(hf_name).float()  # type: ignore[attr-defined]
            if self.arch.permute_qk and (".attn_q." in name or ".attn_k." in name):
                w = permute_qk(w, self.n_head if ".attn_q." in name else self.n_head_kv)
            return w

        return load

    def write_metadata(self, writer: gguf.GGUFWriter) -> None:
        from .vocab import add_vocab

        add_hparams(writer, self.config, self.arch)
        add_vocab(writer, self.folder, self.config)

    def close(self) -> None:
        self._handles.clear()


def _write_order(name: str, arch: gguf.MODEL_ARCH) -> tuple[int, int, int]:
    """token_embd and rope_freqs first, then blocks in numeric order, then output_norm and output."""
    m = re.match(r"blk\.(\d+)\.(.+?)\.(weight|bias)$", name)
    if m:
        kinds = [gguf.TENSOR_NAMES[t].split(".")[-1] for t in gguf.MODEL_TENSORS[arch]]
        rank = kinds.index(m.group(2)) if m.group(2) in kinds else len(kinds)
        return (1, int(m.group(1)), rank * 2 + (m.group(3) == "bias"))
    head, tail = ["token_embd.weight", "rope_freqs.weight"], ["output_norm.weight", "output.weight"]
    if name in head:
        return (0, head.index(name), 0)
    return (2, tail.index(name) if name in tail else len(tail), 0)
