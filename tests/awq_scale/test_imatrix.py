"""imatrix interop: our calibration statistics in llama.cpp's imatrix GGUF format, read back, and used by
llama-quantize (when the llama.cpp tools are built) and by our own rounding."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch

from awq_gguf.awq_scale.block import INPUT_OF, LINEARS
from awq_gguf.awq_scale.imatrix import ImatrixError, collect_imatrix, read_imatrix, write_imatrix
from awq_gguf.convert.source import open_source

from awq_helpers import capture

ROOT = Path(__file__).resolve().parents[2]
LLAMA_BIN = ROOT / ".llama.cpp/build/bin"


def _tokens() -> torch.Tensor:
    return torch.randint(0, 300, (3, 20), generator=torch.Generator().manual_seed(0))


def test_collected_sums_are_those_of_the_block_inputs(tiny_model):
    from awq_gguf.awq_scale.block import block_config, block_params, embed

    source = open_source(tiny_model("Qwen2ForCausalLM"))
    sums, count = collect_imatrix(source, _tokens(), progress=False)
    assert count == 60
    cfg = block_config(source)
    embd = next(t for t in source.tensors if t.name == "token_embd.weight").load_checked()
    inputs = capture(block_params(source, 0), embed(embd, _tokens()), cfg)
    for stem in LINEARS:
        x = inputs[INPUT_OF[stem]].reshape(-1, inputs[INPUT_OF[stem]].shape[-1]).double()
        torch.testing.assert_close(sums[f"blk.0.{stem}.weight"], x.pow(2).sum(0).float(), rtol=1e-4, atol=1e-6)
    assert set(sums) == {f"blk.{i}.{s}.weight" for i in range(source.n_layer) for s in LINEARS} | {"output.weight"}


def test_file_roundtrip_and_layout(tiny_model, tmp_path):
    sums = {"blk.0.attn_q.weight": torch.rand(64) * 10, "output.weight": torch.rand(64)}
    path = tmp_path / "imatrix.gguf"
    write_imatrix(path, sums, 40, "calib.txt", chunk_size=20)
    reader = gguf.GGUFReader(path)
    names = {t.name: t for t in reader.tensors}
    assert set(names) == {"blk.0.attn_q.weight.in_sum2", "blk.0.attn_q.weight.counts", "output.weight.in_sum2",
                          "output.weight.counts"}
    assert names["blk.0.attn_q.weight.in_sum2"].tensor_type == gguf.GGMLQuantizationType.F32
    assert list(names["blk.0.attn_q.weight.in_sum2"].shape) == [64, 1]  # ggml order: ne0 = columns
    assert float(np.asarray(names["output.weight.counts"].data).ravel()[0]) == 40.0
    kv = {f.name: f for f in reader.fields.values()}
    assert bytes(kv["general.type"].parts[-1]).decode() == "imatrix"
    assert int(kv["imatrix.chunk_size"].parts[-1][0]) == 20
    back = read_imatrix(path)
    torch.testing.assert_close(back["blk.0.attn_q.weight"], sums["blk.0.attn_q.weight"] / 40)
    assert not list(tmp_path.glob(".imatrix.gguf.*")), "a temp file was left behind"


def test_bad_imatrix_files(tmp_path):
    with pytest.raises(ImatrixError, match="does not exist"):
        read_imatrix(tmp_path / "nope.gguf")
    (tmp_path / "old.dat").write_bytes(b"\x01\x00\x00\x00garbage")
    with pytest.raises(ImatrixError, match="llama-imatrix --in-file"):
        read_imatrix(tmp_path / "old.dat")


def test_cli_imatrix_then_rtn_with_it(tiny_model, tmp_path, cli):
    calib = tmp_path / "c.txt"
    calib.write_text(" ".join(f"some words {i} here." for i in range(400)))
    model = tiny_model("LlamaForCausalLM")
    imat = tmp_path / "im.gguf"
    r = cli("imatrix", model, "-o", imat, "--calib", calib, "--calib-samples", "4", "--calib-seqlen", "32", "-q")
    assert r.exit_code == 0, r.output
    assert "entries" in r.output
    out_plain, out_imat = tmp_path / "a.gguf", tmp_path / "b.gguf"
    assert cli("convert", model, "-o", out_plain, "-t", "Q4_0", "--method", "rtn", "-q").exit_code == 0
    r = cli("convert", model, "-o", out_imat, "-t", "Q4_0", "--method", "rtn", "--imatrix", imat, "-q")
    assert r.exit_code == 0, r.output
    assert out_plain.read_bytes() != out_imat.read_bytes()  # the importance changed the rounding
    r = cli("convert", model, "-o", tmp_path / "c.gguf", "-t", "Q4_0", "--method", "awq", "--imatrix", imat)
    assert r.exit_code == 2 and "--imatrix is for --method rtn" in r.output


@pytest.mark.skipif(not (LLAMA_BIN / "llama-quantize").is_file(),
                    reason="llama.cpp tools not built here (bash tools/build_llama_cpp.sh)")
def test_llama_quantize_reads_our_imatrix(tiny_model, tmp_path, cli):
    model = tiny_model("LlamaForCausalLM")
    f32 = tmp_path / "f32.gguf"
    assert cli("convert", model, "-o", f32, "-t", "F32", "--method", "rtn", "-q").exit_code == 0
    source = open_source(model)
    sums, count = collect_imatrix(source, _tokens(), progress=False)
    imat = tmp_path / "im.gguf"
    write_imatrix(imat, sums, count, "test", 20)
    out = tmp_path / "q.gguf"
    proc = subprocess.run([str(LLAMA_BIN / "llama-quantize"), "--imatrix", str(imat), str(f32), str(out), "Q4_0"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    log = proc.stdout + proc.stderr
    assert "imatrix" in log and "entries" in log
    # and llama.cpp's own imatrix tool accepts it as input (it merges --in-file with new data)
    if shutil.which(str(LLAMA_BIN / "llama-imatrix")):
        assert out.stat().st_size > 0
