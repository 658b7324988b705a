"""The file's own vocabulary, through llama.cpp: llama_cpp.Llama(path, vocab_only=True).

Reimplementing every llama.cpp pre-tokenizer (BPE regexes per model, SentencePiece) would be a project of its
own; loading only the vocabulary through llama-cpp-python costs milliseconds, reads no tensor data, and gives
exactly the token ids llama.cpp itself uses, which is what the logit comparisons need.
"""

from __future__ import annotations

import codecs
from pathlib import Path

from awq_gguf.runner.errors import RunnerError


def _load_vocab(path: Path):
    """llama_cpp.Llama with only the vocabulary; the header is validated first, llama.cpp's chatter silenced."""
    import contextlib

    import llama_cpp

    from awq_gguf.runner.gguf_check import check_header

    check_header(path)
    try:
        from llama_cpp._utils import suppress_stdout_stderr

        quiet = suppress_stdout_stderr(disable=False)
    except ImportError:  # private helper; only cosmetic
        quiet = contextlib.nullcontext()
    try:
        with quiet:
            return llama_cpp.Llama(model_path=str(path), n_ctx=256, n_batch=8, n_ubatch=8, vocab_only=True,
                                   verbose=False)
    except (ValueError, RuntimeError) as e:
        raise RunnerError(f"llama.cpp could not load the vocabulary of {path}: {e}") from None


class Tokenizer:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._llm = _load_vocab(self.path)

    @property
    def bos(self) -> int:
        return int(self._llm.token_bos())

    @property
    def eos(self) -> int:
        return int(self._llm.token_eos())

    @property
    def add_bos(self) -> bool:
        return bool(self._llm._model.add_bos_token())  # noqa: SLF001 (no public accessor)

    def encode(self, text: str, special: bool = False) -> list[int]:
        """As common_tokenize(add_special=true): BOS prepended when the vocabulary says so."""
        return list(self._llm.tokenize(text.encode("utf-8"), add_bos=True, special=special))

    def is_eog(self, token: int) -> bool:
        import llama_cpp

        return bool(llama_cpp.llama_vocab_is_eog(self._llm._model.vocab, token))  # noqa: SLF001

    def token_bytes(self, token: int) -> bytes:
        return bytes(self._llm.detokenize([token], special=False))

    def decoder(self) -> "StreamDecoder":
        return StreamDecoder(self)

    def chat_prompt(self, user: str) -> str:
        """The file's tokenizer.chat_template applied to one user message, with the generation prompt."""
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        template = self._llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise RunnerError(f"{self.path}: --chat needs tokenizer.chat_template in the file; it has none")
        vocab = self._llm
        bos = vocab.detokenize([self.bos], special=True).decode("utf-8", "replace")
        eos = vocab.detokenize([self.eos], special=True).decode("utf-8", "replace")
        try:
            fmt = Jinja2ChatFormatter(template, eos_token=eos, bos_token=bos, add_generation_prompt=True)
            return fmt(messages=[{"role": "user", "content": user}]).prompt
        except Exception as e:  # jinja2 syntax/undefined errors from a file's template
            raise RunnerError(f"{self.path}: its chat template failed ({type(e).__name__}: {e})") from None


class StreamDecoder:
    """Token ids -> text pieces as they complete (a multi-byte character may span several tokens)."""

    def __init__(self, tok: Tokenizer) -> None:
        self._tok = tok
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, token: int) -> str:
        return self._utf8.decode(self._tok.token_bytes(token))

    def flush(self) -> str:
        return self._utf8.decode(b"", final=True)
