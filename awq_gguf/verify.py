"""Run a GGUF file in llama.cpp and its float reference in transformers on the same tokens, and compare."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import gguf
import numpy as np

from awq_gguf.errors import AwqGgufError, ModelNotFoundError

from .perplexity import llama_logits, load_llama, log_softmax, scored_nll, tokenize, windows


@dataclass(frozen=True)
class VerifyResult:
    tokens_equal: bool
    n_text_tokens: int
    first_mismatch: int | None  # index of the first differing token id, if any
    top1_agreement: float  # fraction of scored positions where both argmax agree
    mean_kl: float  # mean KL(reference || gguf) in nats over scored positions
    ppl_gguf: float
    ppl_reference: float
    n_scored: int
    ctx: int

    def as_dict(self) -> dict:
        return self.__dict__.copy()

    def report(self) -> str:
        tok = "identical" if self.tokens_equal else f"DIFFER (first at token {self.first_mismatch})"
        return "\n".join(
            [
                f"token ids: {tok} over {self.n_text_tokens} tokens (llama.cpp vs transformers tokenizer)",
                f"top-1 agreement: {self.top1_agreement * 100:.2f}% over {self.n_scored} scored tokens (ctx {self.ctx})",
                f"mean KL(reference || gguf): {self.mean_kl:.6f} nats",
                f"perplexity: gguf {self.ppl_gguf:.4f}, reference {self.ppl_reference:.4f} "
                f"({(self.ppl_gguf / self.ppl_reference - 1) * 100:+.3f}%)",
            ]
        )


def reference_from_file(path: Path) -> Path:
    """The model folder recorded in the file's awq_gguf.settings by the converter, if it still exists."""
    reader = gguf.GGUFReader(path, "r")
    field = reader.get_field("awq_gguf.settings")
    src = json.loads(field.contents()).get("source") if field is not None else None
    if not src or not Path(src).is_dir():
        raise ModelNotFoundError(f"{path} records no Hugging Face source folder; pass --reference MODEL_FOLDER")
    return Path(src)


def hf_token_ids(folder: Path, text: str) -> list[int]:
    """The reference tokenization: tokenizer.json as the `tokenizers` library runs it (what HF fast tokenizers
    are defined by), with its own special-token post-processing; SentencePiece-only folders via AutoTokenizer.

    transformers 5's AutoTokenizer rebuilds the pre-tokenizer of folders that declare GPT2Tokenizer (SmolLM2's
    real config does) and drops steps such as Digits, so it is not used where tokenizer.json exists.
    """
    if (folder / "tokenizer.json").is_file():
        from tokenizers import Tokenizer

        return Tokenizer.from_file(str(folder / "tokenizer.json")).encode(text, add_special_tokens=True).ids
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder)(text, add_special_tokens=True)["input_ids"]


def verify(path: Path, reference: Path | None, text: str, ctx: int = 512, chunks: int = 8) -> VerifyResult:
    import torch
    from transformers import AutoModelForCausalLM

    ref = reference or reference_from_file(path)
    if not (ref / "config.json").is_file():
        raise ModelNotFoundError(f"reference {ref} is not a Hugging Face model folder (no config.json)")
    llm = load_llama(path, ctx)
    ids_llama = tokenize(llm, text)
    ids_hf = hf_token_ids(ref, text)
    n = min(len(ids_llama), len(ids_hf))
    diff = next((i for i in range(n) if ids_llama[i] != ids_hf[i]), None)
    if diff is None and len(ids_llama) != len(ids_hf):
        diff = n
    bos = llm.token_bos() if llm._model.add_bos_token() else None  # noqa: SLF001
    wins = windows(ids_llama, ctx, chunks, bos)

    model = AutoModelForCausalLM.from_pretrained(ref, dtype=torch.float32)
    model.eval()
    first = ctx // 2
    agree = kl_sum = 0.0
    nll_g: list[np.ndarray] = []
    nll_r: list[np.ndarray] = []
    n_scored = 0
    for w in wins:
        lg = llama_logits(llm, w)
        with torch.no_grad():
            lr = model(torch.tensor([w])).logits[0].float().numpy()
        if lr.shape[-1] != lg.shape[-1]:
            raise AwqGgufError(f"vocab sizes differ: gguf {lg.shape[-1]}, reference {lr.shape[-1]}")
        pg, pr = log_softmax(lg[first : ctx - 1]), log_softmax(lr[first : ctx - 1])
        agree += float((pg.argmax(-1) == pr.argmax(-1)).sum())
        kl_sum += float((np.exp(pr) * (pr - pg)).sum())
        nll_g.append(scored_nll(lg, w))
        nll_r.append(scored_nll(lr, w))
        n_scored += ctx - 1 - first
    return VerifyResult(
        tokens_equal=diff is None,
        n_text_tokens=len(ids_llama),
        first_mismatch=diff,
        top1_agreement=agree / n_scored,
        mean_kl=kl_sum / n_scored,
        ppl_gguf=float(np.exp(np.concatenate(nll_g).mean())),
        ppl_reference=float(np.exp(np.concatenate(nll_r).mean())),
        n_scored=n_scored,
        ctx=ctx,
    )
