"""RoPE with llama3 frequency factors (rope_freqs.weight) and linear scaling, against llama.cpp on F32 files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from awq_gguf.perplexity import log_softmax
from awq_gguf.runner.model import Model

llama_cpp = pytest.importorskip("llama_cpp")
from tiny_models import make_tiny_model  # noqa: E402

# A small rope_theta and original context make the scaled (low) frequencies turn visibly within 48 positions.
SCALINGS = {
    "llama3": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 16},
    "linear": {"rope_type": "linear", "factor": 4.0},
}


@pytest.mark.parametrize("kind", list(SCALINGS))
def test_scaled_rope_matches_llama_cpp(tmp_path, kind):
    from awq_gguf.config import ConvertConfig
    from awq_gguf.convert.pipeline import convert_model

    folder = make_tiny_model(tmp_path / "hf", "LlamaForCausalLM")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["rope_theta"] = 100.0
    cfg["rope_scaling"] = SCALINGS[kind]
    cfg.pop("rope_parameters", None)
    (folder / "config.json").write_text(json.dumps(cfg))
    out = tmp_path / "m.gguf"
    convert_model(ConvertConfig(method="rtn", model=folder, out=out, type="F32", progress=False))

    toks = list(range(5, 53))
    llm = llama_cpp.Llama(model_path=str(out), n_ctx=64, n_batch=64, n_ubatch=64, logits_all=True, n_threads=1,
                          n_threads_batch=1, verbose=False)
    llm.eval(toks)
    ref = log_softmax(np.array(llm.scores[: len(toks)], dtype=np.float32))
    m = Model.load(out, n_ctx=64, backend="torch", emulate_llama_cpp=True, threads=1)
    if kind == "llama3":
        assert m.w.rope_freqs is not None and float(m.w.rope_freqs.max()) > 1
    else:
        assert m.hp.rope_freq_scale == pytest.approx(0.25)
    ours = log_softmax(m.forward(toks, m.new_cache(), all_logits=True).numpy())
    kl = (np.exp(ref) * (ref - ours)).sum(-1).mean()
    assert kl < 1e-6, kl
    # The fused C decode (one token at a time on the kernels backend) reads the same scaled angle tables.
    from awq_gguf.runner.backend import kernels_available

    if kernels_available():
        mk = Model.load(out, n_ctx=64, backend="kernels", threads=1)
        cache = mk.new_cache()
        steps = np.stack([mk.forward([t], cache)[0].numpy() for t in toks])
        assert mk._stack is not None
        fused = log_softmax(steps)
        assert (np.exp(ref) * (ref - fused)).sum(-1).mean() < 1e-5
    # The same weights with unscaled RoPE are visibly off: the check above has teeth.
    m.rope = type(m.rope)(m.hp.n_rot, m.hp.rope_base, 1.0, m.hp.traits.rope_mode, 64, None)
    plain = log_softmax(m.forward(toks, m.new_cache(), all_logits=True).numpy())
    assert (np.exp(ref) * (ref - plain)).sum(-1).mean() > 100 * kl


@pytest.mark.parametrize("n_rot,head_dim", [(64, 64), (32, 48)])
def test_normal_rope_complex_path_equals_pairwise_formula(n_rot, head_dim):
    """NORMAL RoPE runs as a complex product; it must equal the pairwise formula (also with n_rot < head_dim)."""
    import torch

    from awq_gguf.runner.hparams import RopeMode
    from awq_gguf.runner.rope import Rope

    r = Rope(n_rot, 10000.0, 0.5, RopeMode.NORMAL, 40)
    x = torch.randn(7, 3, head_dim)
    pos = torch.tensor([0, 1, 5, 9, 17, 33, 39])
    got = r(x, pos)
    cos, sin = r.cos[pos][:, None, :], r.sin[pos][:, None, :]
    x0, x1 = x[..., 0:n_rot:2], x[..., 1:n_rot:2]
    ref = torch.stack((x0 * cos - x1 * sin, x0 * sin + x1 * cos), dim=-1).flatten(-2)
    ref = torch.cat((ref, x[..., n_rot:]), dim=-1)
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-6)
    assert got.shape == x.shape
