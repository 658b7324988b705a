"""Perplexity of a GGUF file under llama.cpp (llama-cpp-python), computed as llama-perplexity does.

The text is tokenized whole (BOS prepended only if the vocabulary's add_bos says so), cut into windows of `ctx`
tokens; if add_bos, each window's first token is replaced by BOS; the logits at positions ctx/2 .. ctx-2 score
the next token. The perplexity is exp(mean negative log-likelihood) over all scored tokens.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from awq_gguf.errors import AwqGgufError


class TextTooShortError(AwqGgufError):
    """The evaluation text has fewer tokens than the windows need."""


@dataclass(frozen=True)
class PerplexityResult:
    ppl: float
    nll: float  # mean negative log-likelihood per scored token
    n_tokens: int  # scored tokens
    n_chunks: int
    ctx: int

    def as_dict(self) -> dict:
        return {"ppl": self.ppl, "nll": self.nll, "n_tokens": self.n_tokens, "chunks": self.n_chunks, "ctx": self.ctx}


def read_text(path: Path) -> str:
    from awq_gguf.text_file import read_utf8

    text = read_utf8(path, "text file", hint="; run `python tools/fetch_text.py` for the Wikipedia text")
    if not text.strip():
        raise AwqGgufError(f"text file {path} is empty")
    return text


def load_llama(path: Path, ctx: int, vocab_only: bool = False):
    """A llama_cpp.Llama with all logits kept; loading errors become one-line AwqGgufErrors."""
    from awq_gguf.convert.gguf_source import open_gguf

    open_gguf(path)  # clear errors for missing, truncated or non-GGUF files before llama.cpp sees them
    import llama_cpp

    try:
        return llama_cpp.Llama(
            model_path=str(path),
            n_ctx=ctx,
            n_batch=ctx,
            n_ubatch=ctx,
            logits_all=True,
            n_threads=os.cpu_count() or 1,
            n_threads_batch=os.cpu_count() or 1,
            vocab_only=vocab_only,
            verbose=False,
        )
    except (ValueError, RuntimeError) as e:
        raise AwqGgufError(f"llama.cpp could not load {path}: {e}") from None


def tokenize(llm, text: str) -> list[int]:
    """As common_tokenize(ctx, text, add_special=true, parse_special=false)."""
    return llm.tokenize(text.encode("utf-8"), add_bos=True, special=False)


def windows(tokens: list[int], ctx: int, chunks: int | None, bos: int | None) -> list[list[int]]:
    n = len(tokens) // ctx
    if n < 1 or len(tokens) < 2 * ctx:
        raise TextTooShortError(f"the text has {len(tokens)} tokens; ctx {ctx} needs at least {2 * ctx}")
    if chunks is not None:
        n = min(n, chunks)
    out = []
    for i in range(n):
        w = list(tokens[i * ctx : (i + 1) * ctx])
        if bos is not None:
            w[0] = bos
        out.append(w)
    return out


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """float64 log-probabilities, rows of [n, vocab]."""
    x = logits.astype(np.float64)
    x -= x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def scored_nll(logits: np.ndarray, window: list[int]) -> np.ndarray:
    """Per-token NLL of window[first+1:] given logits [ctx, vocab] at positions first .. ctx-2."""
    ctx = len(window)
    first = ctx // 2
    lp = log_softmax(logits[first : ctx - 1])
    return -lp[np.arange(ctx - 1 - first), np.asarray(window[first + 1 :])]


def llama_logits(llm, window: list[int]) -> np.ndarray:
    """float32 [len(window), vocab] logits from llama.cpp for one window evaluated from an empty cache."""
    llm.reset()
    llm.eval(window)
    return np.array(llm.scores[: len(window)], dtype=np.float32)


def perplexity(path: Path, text: str, ctx: int = 512, chunks: int | None = None, progress: bool = True) -> PerplexityResult:
    from tqdm import tqdm

    llm = load_llama(path, ctx)
    bos = llm.token_bos() if llm._model.add_bos_token() else None  # noqa: SLF001 (no public accessor)
    wins = windows(tokenize(llm, text), ctx, chunks, bos)
    nll: list[np.ndarray] = []
    for w in tqdm(wins, desc="perplexity", unit="chunk", disable=not progress):
        nll.append(scored_nll(llama_logits(llm, w), w))
    all_nll = np.concatenate(nll)
    mean = float(all_nll.mean())
    return PerplexityResult(float(np.exp(mean)), mean, int(all_nll.size), len(wins), ctx)
