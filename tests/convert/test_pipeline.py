"""The converter end to end on tiny models: tensors, names, layout and metadata in the written GGUF."""

from __future__ import annotations

import json
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from awq_gguf.config import ConvertConfig
from awq_gguf.convert.arch import ARCHITECTURES, permute_qk
from awq_gguf.convert.pipeline import convert_model
from awq_gguf.convert.quants import dequantize, quantize

ARCHS = list(ARCHITECTURES)


def _convert(model: Path, out: Path, type_: str, **kw) -> Path:
    convert_model(ConvertConfig(method="rtn", model=model, out=out, type=type_, progress=False, **kw))
    return out


def _tensors(path: Path) -> dict[str, gguf.ReaderTensor]:
    return {t.name: t for t in gguf.GGUFReader(path).tensors}


def _field(path: Path, key: str):
    f = gguf.GGUFReader(path).get_field(key)
    return None if f is None else f.contents()


@pytest.mark.parametrize("arch", ARCHS)
def test_f32_holds_hf_weights_exactly(tiny_model, tmp_path, arch):
    folder = tiny_model(arch)
    out = _convert(folder, tmp_path / "m.gguf", "F32")
    hf = load_file(folder / "model.safetensors")
    cfg = json.loads((folder / "config.json").read_text())
    spec = ARCHITECTURES[arch]
    got = _tensors(out)
    tmap = gguf.get_tensor_name_map(spec.gguf_arch, cfg["num_hidden_layers"])
    expected_names = set()
    for hf_name, w in hf.items():
        if cfg.get("tie_word_embeddings") and hf_name == "lm_head.weight":
            continue
        name = tmap.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        expected_names.add(name)
        w = w.float()
        if spec.permute_qk and ".attn_q." in name:
            w = permute_qk(w, cfg["num_attention_heads"])
        if spec.permute_qk and ".attn_k." in name:
            w = permute_qk(w, cfg["num_key_value_heads"])
        t = got[name]
        assert t.tensor_type == gguf.GGMLQuantizationType.F32
        assert tuple(int(x) for x in reversed(t.shape)) == tuple(w.shape), name
        np.testing.assert_array_equal(np.asarray(t.data).reshape(w.shape), w.numpy(), err_msg=name)
    assert set(got) == expected_names
    assert ("output.weight" in got) == (not cfg.get("tie_word_embeddings"))
    if spec.qkv_bias:
        assert "blk.0.attn_q.bias" in got and "blk.1.attn_v.bias" in got
    if spec.qk_norm:
        assert "blk.0.attn_q_norm.weight" in got and "blk.1.attn_k_norm.weight" in got


@pytest.mark.parametrize("arch", ARCHS)
def test_metadata(tiny_model, tmp_path, arch):
    folder = tiny_model(arch)
    out = _convert(folder, tmp_path / "m.gguf", "Q8_0")
    cfg = json.loads((folder / "config.json").read_text())
    a = ARCHITECTURES[arch].gguf_name
    assert _field(out, "general.architecture") == a
    assert _field(out, "general.file_type") == int(gguf.LlamaFileType.MOSTLY_Q8_0)
    assert _field(out, "general.quantization_version") == gguf.GGML_QUANT_VERSION
    assert _field(out, "general.name") == folder.name
    assert _field(out, f"{a}.block_count") == 2
    assert _field(out, f"{a}.embedding_length") == cfg["hidden_size"]
    assert _field(out, f"{a}.feed_forward_length") == cfg["intermediate_size"]
    assert _field(out, f"{a}.attention.head_count") == 4
    assert _field(out, f"{a}.attention.head_count_kv") == 2
    assert _field(out, f"{a}.rope.freq_base") == pytest.approx(10000.0)
    assert _field(out, f"{a}.attention.layer_norm_rms_epsilon") == pytest.approx(1e-6)
    head_dim = cfg.get("head_dim") or cfg["hidden_size"] // 4
    assert _field(out, f"{a}.rope.dimension_count") == head_dim
    if head_dim != cfg["hidden_size"] // 4:
        assert _field(out, f"{a}.attention.key_length") == head_dim
    assert _field(out, "awq_gguf.method") == "rtn"
    assert _field(out, "awq_gguf.type") == "Q8_0"
    assert json.loads(_field(out, "awq_gguf.settings"))["source"] == str(folder.resolve())
    assert _field(out, "tokenizer.ggml.model") == "gpt2"
    assert len(gguf.GGUFReader(out).get_field("tokenizer.ggml.tokens").data) == cfg["vocab_size"]


def test_quantized_bytes_are_our_quantizer(tiny_model, tmp_path):
    """Each Q4_0 tensor in the file is exactly quantize() of the float weight, and norms stay F32."""
    folder = tiny_model("Qwen2ForCausalLM")
    f32 = _tensors(_convert(folder, tmp_path / "f.gguf", "F32"))
    q = _tensors(_convert(folder, tmp_path / "q.gguf", "Q4_0", pure=True))
    for name, t in q.items():
        ref = torch.from_numpy(np.asarray(f32[name].data).copy()).reshape(-1, int(f32[name].shape[0]))
        if t.tensor_type == gguf.GGMLQuantizationType.F32:
            assert ref.shape[0] == 1 or name.endswith(".bias"), name
            continue
        assert t.tensor_type == gguf.GGMLQuantizationType.Q4_0, name
        ours = quantize(ref, gguf.GGMLQuantizationType.Q4_0).numpy()
        np.testing.assert_array_equal(np.asarray(t.data).reshape(ours.shape), ours, err_msg=name)


def test_gguf_input_roundtrip(tiny_model, tmp_path):
    """GGUF in: tensors dequantized then requantized; F32 -> F32 is the identity, metadata carried over."""
    first = _convert(tiny_model("LlamaForCausalLM"), tmp_path / "a-F32.gguf", "F32")
    second = _convert(first, tmp_path / "b.gguf", "F32")
    a, b = _tensors(first), _tensors(second)
    assert list(a) == list(b)
    for name in a:
        np.testing.assert_array_equal(np.asarray(a[name].data), np.asarray(b[name].data), err_msg=name)
    for key in ("tokenizer.ggml.pre", "llama.block_count", "general.name", "tokenizer.ggml.bos_token_id"):
        assert _field(first, key) == _field(second, key), key
    assert len(gguf.GGUFReader(second).get_field("tokenizer.ggml.merges").data) == len(
        gguf.GGUFReader(first).get_field("tokenizer.ggml.merges").data
    )


def test_requantize_q8_gguf_to_q4(tiny_model, tmp_path):
    q8 = _convert(tiny_model("MistralForCausalLM"), tmp_path / "m-Q8_0.gguf", "Q8_0")
    q4 = _convert(q8, tmp_path / "m-Q4_0.gguf", "Q4_0")
    t8, t4 = _tensors(q8), _tensors(q4)
    name = "blk.0.ffn_up.weight"
    w8 = dequantize(torch.from_numpy(np.asarray(t8[name].data).copy()), t8[name].tensor_type)
    w4 = dequantize(torch.from_numpy(np.asarray(t4[name].data).copy()), t4[name].tensor_type)
    assert t4[name].tensor_type == gguf.GGMLQuantizationType.Q4_0
    rel = float((w4 - w8).pow(2).mean().sqrt() / w8.pow(2).mean().sqrt())
    assert 0.01 < rel < 0.2  # 4-bit error, not garbage


def test_sharded_checkpoint(tiny_model, tmp_path):
    """model.safetensors.index.json with two shards converts to the same file as the single shard."""
    from safetensors.torch import save_file

    src = tiny_model("Qwen3ForCausalLM")
    sharded = tmp_path / "sharded"
    sharded.mkdir()
    for f in src.iterdir():
        if f.name != "model.safetensors":
            (sharded / f.name).write_bytes(f.read_bytes())
    tensors = load_file(src / "model.safetensors")
    names = sorted(tensors)
    halves = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    weight_map = {}
    for fname, part in halves.items():
        save_file({n: tensors[n] for n in part}, sharded / fname, metadata={"format": "pt"})
        weight_map.update({n: fname for n in part})
    (sharded / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    a = _tensors(_convert(src, tmp_path / "a.gguf", "Q8_0"))
    b = _tensors(_convert(sharded, tmp_path / "b.gguf", "Q8_0"))
    assert list(a) == list(b)
    for name in a:
        np.testing.assert_array_equal(np.asarray(a[name].data), np.asarray(b[name].data), err_msg=name)


def test_default_output_name(tiny_model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = tiny_model("LlamaForCausalLM")
    result = convert_model(ConvertConfig(method="rtn", model=folder, type="q8_0", progress=False))
    assert result.out == tmp_path / f"{folder.name}-Q8_0.gguf"
    assert result.out.is_file()
    assert result.bpw == pytest.approx(8.5, abs=0.3)


def test_tensor_order_blocks_numeric(tiny_model, tmp_path):
    out = _convert(tiny_model("LlamaForCausalLM"), tmp_path / "m.gguf", "F16")
    names = list(_tensors(out))
    assert names[0] == "token_embd.weight"
    assert names[-1] == "output_norm.weight"
    blocks = [int(n.split(".")[1]) for n in names if n.startswith("blk.")]
    assert blocks == sorted(blocks)
