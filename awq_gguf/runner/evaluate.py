"""Perplexity with the runner, on exactly the windows and scoring of awq_gguf.perplexity (llama-perplexity's
method): the same tokenizer (the file's vocabulary through llama.cpp), windows, BOS replacement and scored half."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from awq_gguf.perplexity import PerplexityResult, scored_nll, windows
from awq_gguf.runner.model import Model
from awq_gguf.runner.tokenizer import Tokenizer


def runner_logits(model: Model, window: list[int]) -> np.ndarray:
    """float32 [len(window), n_vocab] logits of one window evaluated from an empty cache."""
    return model.forward(window, model.new_cache(), all_logits=True).numpy()


def eval_windows(path: Path, text: str, ctx: int, chunks: int | None) -> list[list[int]]:
    tok = Tokenizer(path)
    return windows(tok.encode(text), ctx, chunks, tok.bos if tok.add_bos else None)


def runner_perplexity(path: Path, text: str, ctx: int = 512, chunks: int | None = None, progress: bool = True,
                      backend: str | None = None, threads: int | None = None, device: str = "cpu"
                      ) -> PerplexityResult:
    from tqdm import tqdm

    from awq_gguf.runner.device import check_device, load_runner

    check_device(device, backend)  # before tokenizing: the clearest error first
    wins = eval_windows(path, text, ctx, chunks)
    model = load_runner(path, device, n_ctx=ctx, backend=backend, threads=threads)
    nll = [scored_nll(runner_logits(model, w), w) for w in tqdm(wins, desc="perplexity (runner)", unit="chunk",
                                                                 disable=not progress)]
    all_nll = np.concatenate(nll)
    mean = float(all_nll.mean())
    return PerplexityResult(float(np.exp(mean)), mean, int(all_nll.size), len(wins), ctx)
