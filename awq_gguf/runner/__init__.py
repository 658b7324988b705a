"""The local runner: reads a GGUF file written by the converter and runs it on the CPU, as llama.cpp would (or,
with --device cuda, on an NVIDIA GPU).

Modules, one concept each:
  gguf_check     validates a GGUF header (sizes, offsets, counts) before anything trusts it
  gguf_file      opens a file through gguf.GGUFReader (mmap, no copy of the weights) after gguf_check
  hparams        the model hyperparameters from the file's metadata
  weights        the model's tensors (quantized matrices stay as mmap'd bytes), shape-checked
  backend        matrix products and row lookups on quantized weights: the one place kernels are chosen
  act_quant      ggml's 8-bit activation rounding, for the torch backend's llama.cpp-emulation mode (tests)
  rope           RoPE tables and rotation, llama.cpp's NORMAL (adjacent pairs) and NEOX (halves) modes
  kv_cache       the per-layer key/value cache
  model          the transformer forward pass (RMSNorm, GQA attention, SwiGLU); one-token steps on the kernels
                 backend run every layer in one C call (awq_gguf.cpu_kernels.DecodeStack)
  device         --device cpu|cuda: which model a command gets, and why cuda is unavailable where it is
  gpu_weights    the weights on a CUDA device (the cuda_kernels layout, or float16) and their products
  gpu_kv_cache   the GPU model's KV cache (one storage per model, for its CUDA graphs)
  gpu_model      the forward pass on the GPU: cuda_kernels for the products, torch for the rest, CUDA graphs
  gpu_bandwidth  the card's copy bandwidth, the peer of GPU decode speed
  tokenizer      the file's own vocabulary, through llama.cpp (llama-cpp-python, vocab_only)
  generate       sampling and streaming generation
  evaluate       perplexity with the runner, windowed as awq_gguf.perplexity does
  bench          prompt / generation speed, side by side with llama-cpp-python
  cli_commands   the `run` and `bench` commands and `eval --backend runner`
"""

from __future__ import annotations

from awq_gguf.runner.errors import ContextOverflowError, RunnerError, UnsupportedModelError

__all__ = ["ContextOverflowError", "RunnerError", "UnsupportedModelError", "load_model"]


def load_model(path, n_ctx: int | None = None, backend: str | None = None):
    """Open a GGUF file and build a ready-to-run Model (see awq_gguf.runner.model.Model.load)."""
    from awq_gguf.runner.model import Model

    return Model.load(path, n_ctx=n_ctx, backend=backend)
