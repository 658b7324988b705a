"""Token generation: sampling (greedy, temperature with llama.cpp's default top-k 40 / top-p 0.95) and a
streaming loop over the model and its KV cache."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch

from awq_gguf.runner.errors import ContextOverflowError, RunnerError
from awq_gguf.runner.model import Model


@dataclass(frozen=True)
class Sampling:
    temp: float = 0.8  # 0: greedy
    top_k: int = 40
    top_p: float = 0.95
    seed: int | None = None

    def __post_init__(self) -> None:
        if not self.temp >= 0:
            raise RunnerError(f"--temp must be >= 0, got {self.temp}")
        if self.top_k < 0 or not 0 < self.top_p <= 1:
            raise RunnerError(f"top-k must be >= 0 and top-p in (0, 1], got {self.top_k}, {self.top_p}")


class Sampler:
    def __init__(self, cfg: Sampling) -> None:
        self.cfg = cfg
        self.gen = torch.Generator()
        if cfg.seed is not None:
            self.gen.manual_seed(cfg.seed)
        else:
            self.gen.seed()

    def __call__(self, logits: torch.Tensor) -> int:
        """logits float32 [n_vocab] -> token id."""
        if self.cfg.temp == 0:
            return int(torch.argmax(logits))
        x = logits.double() / self.cfg.temp
        if 0 < self.cfg.top_k < x.numel():
            kth = torch.topk(x, self.cfg.top_k).values[-1]
            x = x.masked_fill(x < kth, float("-inf"))
        probs = torch.softmax(x, dim=-1)
        if self.cfg.top_p < 1:
            sp, idx = torch.sort(probs, descending=True)
            keep = torch.cumsum(sp, 0) - sp < self.cfg.top_p  # the smallest prefix reaching top_p
            probs = torch.zeros_like(probs).scatter(0, idx[keep], sp[keep])
        return int(torch.multinomial(probs, 1, generator=self.gen))


def generate(model: Model, prompt: list[int], n_predict: int, sampling: Sampling,
             stop=lambda token: False) -> Iterator[int]:
    """Up to n_predict new tokens after `prompt`, stopping at a token for which stop(token) is true (not
    yielded) or when the context is full. The prompt is checked now, before the first token is asked for."""
    check_prompt(model, prompt)
    return _tokens(model, prompt, n_predict, Sampler(sampling), stop)


def check_prompt(model: Model, prompt: list[int]) -> None:
    if not prompt:
        raise RunnerError("the prompt is empty (and the vocabulary adds no BOS)")
    if len(prompt) >= model.n_ctx:
        raise ContextOverflowError(
            f"the prompt has {len(prompt)} tokens; the context holds {model.n_ctx} (and needs room to generate); "
            "use a larger --ctx or a shorter prompt"
        )


def _tokens(model: Model, prompt: list[int], n_predict: int, sampler: Sampler, stop) -> Iterator[int]:
    cache = model.new_cache()
    logits = model.forward(prompt, cache)[-1]
    for _ in range(n_predict):
        token = sampler(logits)
        if stop(token):
            return
        yield token
        if cache.n_past >= model.n_ctx:
            return
        logits = model.forward([token], cache)[-1]
