"""`awq-gguf inspect`: a GGUF file's metadata and a per-type tensor summary."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from awq_gguf.convert.gguf_source import open_gguf

_LONG_ARRAYS = ("tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type", "tokenizer.ggml.merges")


@dataclass(frozen=True)
class TypeSummary:
    type: str
    count: int
    n_bytes: int
    n_params: int

    @property
    def bpw(self) -> float:
        return self.n_bytes * 8 / max(self.n_params, 1)


def summarize(path: Path) -> tuple[dict[str, object], list[TypeSummary]]:
    reader = open_gguf(path)
    meta: dict[str, object] = {}
    for key, field in reader.fields.items():
        if key.startswith("GGUF."):
            continue
        if key in _LONG_ARRAYS:
            meta[key] = f"[{len(field.data)} entries]"
        else:
            value = field.contents()
            if isinstance(value, str) and len(value) > 200:
                value = value[:200].replace("\n", "\\n") + f"... ({len(value)} chars)"
            meta[key] = value
    by_type: dict[str, list[int]] = {}
    for t in reader.tensors:
        entry = by_type.setdefault(t.tensor_type.name, [0, 0, 0])
        entry[0] += 1
        entry[1] += int(t.n_bytes)
        entry[2] += int(np.prod(t.shape))
    rows = [TypeSummary(k, *v) for k, v in sorted(by_type.items(), key=lambda kv: -kv[1][1])]
    return meta, rows


def render(path: Path) -> str:
    meta, rows = summarize(path)
    lines = [f"{path}", "", "metadata:"]
    lines += [f"  {k} = {v}" for k, v in meta.items()]
    total = TypeSummary("total", sum(r.count for r in rows), sum(r.n_bytes for r in rows), sum(r.n_params for r in rows))
    lines += ["", f"  {'type':<6} {'tensors':>7} {'MiB':>9} {'params':>12} {'bpw':>6}"]
    for r in [*rows, total]:
        lines.append(f"  {r.type:<6} {r.count:>7} {r.n_bytes / 2**20:>9.2f} {r.n_params:>12} {r.bpw:>6.2f}")
    return "\n".join(lines)
