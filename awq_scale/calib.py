"""Calibration text -> token windows [n_samples, seqlen] for the AWQ search.

The text is a plain UTF-8 file, or a .jsonl file with one {"text": ...} object per line. It is tokenized with
the model's own tokenizer: tokenizer.json (the `tokenizers` library) or tokenizer.model (sentencepiece) for a
Hugging Face folder, llama.cpp's vocabulary (vocab_only) for a GGUF file. The token stream (documents joined)
is cut into consecutive windows of seqlen; n_samples windows spread evenly over the whole text are kept. When
the model adds a BOS token, each window starts with it (its first token replaced, as llama-perplexity does).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Callable

import torch

from awq_gguf.errors import AwqGgufError, TokenizerError
from awq_gguf.text_file import read_utf8

logger = logging.getLogger(__name__)

Encode = Callable[[str], list[int]]


class CalibrationError(AwqGgufError):
    """The calibration text is missing, unreadable, empty or too short for the windows asked for."""


def read_calibration(path: Path) -> list[str]:
    """The documents of a calibration file: the whole text, or each "text" of a .jsonl file."""
    text = read_utf8(path, "calibration file", CalibrationError)
    if path.suffix.lower() != ".jsonl":
        docs = [text]
    else:
        docs = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise CalibrationError(f"{path} line {n}: not JSON ({e.msg})") from None
            if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
                raise CalibrationError(f'{path} line {n}: expected an object with a string "text" field')
            docs.append(obj["text"])
    docs = [d for d in docs if d.strip()]
    if not docs:
        raise CalibrationError(f"calibration file {path} holds no text")
    return docs


def _hf_tokenizer(folder: Path, config: dict) -> tuple[Encode, int | None]:
    import gguf

    json_path, spm_path = folder / "tokenizer.json", folder / "tokenizer.model"
    if json_path.is_file():
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(json_path))

        def encode(text: str) -> list[int]:
            return tok.encode(text, add_special_tokens=False).ids
    elif spm_path.is_file():
        import sentencepiece

        sp = sentencepiece.SentencePieceProcessor(model_file=str(spm_path))

        def encode(text: str) -> list[int]:
            return sp.encode(text)
    else:
        raise TokenizerError(f"{folder}: no tokenizer.json or tokenizer.model to tokenize the calibration text")
    special = gguf.SpecialVocab(folder, load_merges=False)
    add_bos = special.add_special_token.get("bos", False)
    # as convert/vocab.py: llama.cpp writes the 49152-token Llama vocabularies (SmolLM) with add_bos False
    if config.get("vocab_size") == 49152 and config.get("model_type") == "llama":
        add_bos = False
    bos = special.special_token_ids.get("bos")
    return encode, (int(bos) if add_bos and bos is not None else None)


def _gguf_tokenizer(path: Path) -> tuple[Encode, int | None]:
    from awq_gguf.perplexity import load_llama

    llm = load_llama(path, ctx=512, vocab_only=True)

    def encode(text: str) -> list[int]:
        return llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)

    add_bos = llm._model.add_bos_token()  # noqa: SLF001 (no public accessor)
    return encode, (llm.token_bos() if add_bos else None)


def source_tokenizer(source) -> tuple[Encode, int | None]:
    """(encode, BOS id or None when the model adds none) for an HfSource or a GgufSource."""
    if hasattr(source, "folder"):
        return _hf_tokenizer(source.folder, source.config)
    return _gguf_tokenizer(source.path)


def make_windows(ids: list[int], n_samples: int, seqlen: int, bos: int | None = None) -> torch.Tensor:
    """int64 [n_samples, seqlen]: consecutive windows of ids, n_samples of them evenly spread over the text."""
    need = n_samples * seqlen
    if len(ids) < need:
        raise CalibrationError(
            f"the calibration text has {len(ids)} tokens; {n_samples} samples of {seqlen} tokens need {need}: "
            f"give more text or lower --calib-samples / --calib-seqlen"
        )
    n_avail = len(ids) // seqlen
    pick = torch.linspace(0, n_avail - 1, n_samples).round().long()  # distinct, since n_avail >= n_samples
    stream = torch.tensor(ids[: n_avail * seqlen], dtype=torch.long).view(n_avail, seqlen)
    windows = stream[pick].clone()
    if bos is not None:
        windows[:, 0] = bos
    return windows


def calibration_tokens(path: Path, source, n_samples: int = 128, seqlen: int = 512) -> torch.Tensor:
    """int64 [n_samples, seqlen] calibration windows of `path` under `source`'s tokenizer."""
    from .block import block_config

    if n_samples < 1:
        raise CalibrationError(f"--calib-samples must be at least 1, got {n_samples}")
    if seqlen < 2:
        raise CalibrationError(f"--calib-seqlen must be at least 2, got {seqlen}")
    n_ctx = block_config(source).n_ctx
    if seqlen > n_ctx:
        logger.warning("--calib-seqlen %d is longer than the model's context %d; using %d", seqlen, n_ctx, n_ctx)
        seqlen = n_ctx
    docs = read_calibration(path)
    encode, bos = source_tokenizer(source)
    ids = [i for doc in docs for i in encode(doc)]
    if not ids:
        raise CalibrationError(f"calibration file {path} gives no tokens")
    return make_windows(ids, n_samples, seqlen, bos)
