"""Tokenizer export: every tokenizer.ggml.* key llama.cpp reads, from a Hugging Face model folder.

Three kinds of tokenizer, chosen in the order llama.cpp's own converter tries them:

- tokenizer.model (SentencePiece; Llama-2, Mistral-v0.1): tokenizer model "llama", with scores.
- tokenizer.json holding a byte-fallback BPE (a Llama SentencePiece vocabulary exported by transformers):
  model "llama", read through gguf.LlamaHfVocab.
- tokenizer.json holding a byte-level BPE (Llama-3, Qwen2/3, SmolLM, ...): model "gpt2", with merges and a
  `tokenizer.ggml.pre` naming the pre-tokenizer llama.cpp must reproduce.

The pre-tokenizer name comes first from llama.cpp's fingerprint (the token ids of a check string, hashed) for
exact known vocabularies, else from the pre_tokenizer structure in tokenizer.json (its regex and steps), which
is what actually decides how text is split. Anything else is refused: a wrong name tokenizes silently wrong.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import gguf

from awq_gguf.errors import TokenizerError

from awq_gguf.convert.arch import ARCHITECTURES

logger = logging.getLogger(__name__)

SPM_FILE = "tokenizer.model"
HF_FILE = "tokenizer.json"

# llama.cpp's fingerprint text (convert_hf_to_gguf.py, get_vocab_base_pre): the sha256 of str(token ids) of this
# string identifies a (vocabulary, pre-tokenizer) pair.
CHKTXT = (
    "\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n🚀 (normal) 😶\u200d🌫️ (multiple emojis concatenated) ✅ "
    "🦙🦙 3 33 333 3333 33333 333333 3333333 33333333 3.3 3..3 3...3 កាន់តែពិសេសអាច😁 ?我想在apple工作1314151天～ ------======= "
    "нещо на Български ''''''```````\"\"\"\"......!!!!!!?????? I've been 'told he's there, 'RE you sure? 'M not sure "
    "I'll make it, 'D you like some tea? We'Ve a'lL"
)

# Fingerprints of the published tokenizers of the families we convert (values from llama.cpp's table).
KNOWN_HASHES: dict[str, str] = {
    "0ef9807a4087ebef797fc749390439009c3b9eda9ad1a097abbe738f486c01e5": "llama-bpe",  # Meta-Llama-3(.x)
    "c136ed14d01c2745d4f60a9596ae66800e2b61fa45643e72436041855ad4089d": "smaug-bpe",
    "9d032fcbd5501f4a38150912590928bfb36091efb5df11b8e2124b0390e3fb1e": "falcon3",
    "e636dc30a262dcc0d8c323492e32ae2b70728f4df7dfe9737d9f920a282b8aea": "qwen2",  # Qwen1.5 / Qwen2 / Qwen2.5
    "d4540891389ea895b53b399da6ac824becc30f2fba0e9ddbb98f92e55ca0e97c": "qwen2",  # Qwen3
    "b3f499bb4255f8ca19fccd664443283318f2fd2414d5e0b040fbdd0cc195d6c5": "deepseek-r1-qwen",
    "1444df51289cfa8063b96f0e62b1125440111bc79a52003ea14b6eac7016fd5f": "qwen35",
    "d30d75d9059f1aa2c19359de71047b3ae408c70875e8a3ccf8c5fba56c9d8af4": "qwen35",
    "855059429035d75a914d1eda9f10a876752e281a054a7a3d421ef0533e5b6249": "smollm",  # SmolLM / SmolLM2
    "35d91631860c815f952d711435f48d356ebac988362536bed955d43bfa436e34": "starcoder",
    "3ce83efda5659b07b1ad37ca97ca5797ea4285d9b9ab0dc679e4a720c9da7454": "gpt-2",
    "63b97e4253352e6f357cc59ea5b583e3a680eaeaf2632188c2b952de2588485e": "tekken",  # Mistral-Nemo
    "0e9433cbbb161f89e264eb32e8e64bfe69e834973ffca5d41d3948a604a3e2a3": "pixtral",
    "049ecf7629871e3041641907f3de7c733e4dbfdc736f57d882ba0b0845599754": "deepseek-llm",
    "347715f544604f9118bb75ed199f68779f423cabb20db6de6f31b908d04d7821": "deepseek-coder",
    "877081d19cf6996e2c4ff0e1236341e9b7bde288f5311a56a937f0afbbb3aeb5": "deepseek-v3",
    "ccc2ef013c104be7bae2965776d611e1d7a8a2a9c547dd93a682c9a9fc80352e": "gpt-4o",
    "d353350c764d8c3b39c763113960e4fb4919bea5fbf208a0e3b22e8469dc7406": "llama4",
}

# Pre-tokenizer regexes as Hugging Face writes them in tokenizer.json.
_CONTRACTIONS = "(?i:'s|'t|'re|'ve|'m|'ll|'d)"
LLAMA3_REGEX = (
    _CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
QWEN2_REGEX = _CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
QWEN35_REGEX = (
    _CONTRACTIONS
    + r"|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
TEKKEN_REGEX = (
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|"
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|"
    r"\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
GPT4O_REGEX = (
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+" + _CONTRACTIONS + "?|"
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*" + _CONTRACTIONS + "?|"
    r"\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# A pre_tokenizer reduced to its steps: ("Split", regex, behavior, invert), ("ByteLevel", add_prefix_space,
# use_regex), ("Digits", individual_digits), or (type,) for anything else.
Signature = tuple[tuple[Any, ...], ...]
_BYTES_ONLY = ("ByteLevel", False, False)  # byte mapping after an explicit Split
_BYTES_GPT2 = ("ByteLevel", False, True)  # byte mapping with GPT-2's built-in regex


def _split(regex: str) -> tuple[str, str, str, bool]:
    return ("Split", regex, "Isolated", False)


# Structure -> llama.cpp pre name. "llama-bpe" and "smollm" are refined in _pre_from_structure.
STRUCTURES: dict[Signature, str] = {
    (_split(LLAMA3_REGEX), _BYTES_ONLY): "llama-bpe",
    (_split(QWEN2_REGEX), _BYTES_ONLY): "qwen2",
    (_split(QWEN35_REGEX), _BYTES_ONLY): "qwen35",
    (_split(TEKKEN_REGEX), _BYTES_ONLY): "tekken",
    (_split(GPT4O_REGEX), _BYTES_ONLY): "gpt-4o",
    (("Digits", True), _BYTES_GPT2): "smollm",
    (_BYTES_GPT2,): "gpt-2",
}

# Normalizers llama.cpp's BPE path can stand in for (it applies none; NFC only matters for non-NFC input).
_HARMLESS_NORMALIZERS = {None, "NFC"}


def add_vocab(writer: gguf.GGUFWriter, model_dir: Path, config: dict) -> None:
    """Write the tokenizer of the Hugging Face folder `model_dir` (config: its config.json) into `writer`."""
    model_dir = Path(model_dir)
    spm_path, hf_path = model_dir / SPM_FILE, model_dir / HF_FILE
    if not spm_path.is_file() and not hf_path.is_file():
        raise TokenizerError(f"{model_dir}: no tokenizer found (looked for {SPM_FILE} and {HF_FILE})")

    tok_config = _read_json(model_dir / "tokenizer_config.json") or {}
    llama_family = _is_llama_family(config)
    if llama_family and isinstance(tok_config.get("add_prefix_space"), bool):
        writer.add_add_space_prefix(tok_config["add_prefix_space"])

    special = None
    if spm_path.is_file():
        try:
            special = _add_sentencepiece(writer, model_dir, config, tok_config)
        except TokenizerError as e:
            if not hf_path.is_file():
                raise
            # e.g. a tiktoken file named tokenizer.model beside the tokenizer.json that describes the model
            logger.warning("%s; using %s instead", e, HF_FILE)
    if special is None:
        tokenizer_json = _read_json(hf_path)
        model = tokenizer_json.get("model") or {}
        if model.get("type") != "BPE":
            raise TokenizerError(f"{hf_path}: tokenizer model {model.get('type')!r} is not supported (only BPE)")
        if model.get("byte_fallback"):
            special = _add_llama_hf(writer, model_dir, config, tokenizer_json)
        else:
            special = _add_bpe(writer, model_dir, config, tokenizer_json, tok_config)

    # llama.cpp's LlamaModel.set_vocab: CodeLlama's infill vocabulary marks its end-of-infill token, and the
    # 49152-token vocabularies (SmolLM, Granite small) are written with add_bos False.
    n_vocab = config.get("vocab_size")
    if llama_family and n_vocab == 32016:
        special.special_token_ids["eot"] = 32010
    if llama_family and n_vocab == 49152:
        special.add_special_token["bos"] = False
    special.add_to_gguf(writer, quiet=True)


def _is_llama_family(config: dict) -> bool:
    names = config.get("architectures") or []
    return any(n in ARCHITECTURES and ARCHITECTURES[n].gguf_arch == gguf.MODEL_ARCH.LLAMA for n in names)


def _read_json(path: Path) -> Any:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise TokenizerError(f"{path}: not valid JSON ({e})") from e


def _n_vocab(config: dict, n_tokenizer: int) -> int:
    n = config.get("vocab_size")
    return n if isinstance(n, int) and n > 0 else n_tokenizer


def looks_special(text: str) -> bool:
    """llama.cpp's rule for added tokens that ought to be control tokens even when not flagged special."""
    return (
        text in ("<pad>", "<mask>", "<2mass>", "[@BOS@]")
        or (text.startswith("<|") and text.endswith("|>"))
        or (text.startswith("<｜") and text.endswith("｜>"))
        or (text.startswith("<unused") and text.endswith(">"))
    )


# --- SentencePiece ------------------------------------------------------------------------------------------------


def _add_sentencepiece(
    writer: gguf.GGUFWriter, model_dir: Path, config: dict, tok_config: dict
) -> gguf.SpecialVocab:
    path = model_dir / SPM_FILE
    try:
        spm = gguf.SentencePieceVocab(model_dir)
        base = list(spm.sentencepiece_tokens())
    except (OSError, RuntimeError, ValueError) as e:
        raise TokenizerError(f"{path}: cannot read the SentencePiece model ({e})") from e

    n = _n_vocab(config, len(base))
    # Slots the tokenizer does not fill stay [PAD{i}] / UNUSED, as llama.cpp's converter writes them.
    tokens = [f"[PAD{i}]".encode() for i in range(n)]
    scores = [-10000.0] * n
    types = [int(gguf.TokenType.UNUSED)] * n
    if len(base) > n:
        logger.warning("%s: %d pieces but vocab_size %d; the extra pieces are dropped", path, len(base), n)
    for i, (text, score, toktype) in enumerate(base[:n]):
        tokens[i], scores[i], types[i] = text, score, int(toktype)

    def set_added(token_id: int, text: str, toktype: gguf.TokenType, source: Path) -> None:
        if token_id >= n:
            logger.warning("%s: added token %r has id %d beyond vocab_size %d; ignored", source, text, token_id, n)
            return
        tokens[token_id], scores[token_id], types[token_id] = text.encode(), -1000.0, int(toktype)

    added_file = model_dir / "added_tokens.json"
    for text, token_id in (_read_json(added_file) or {}).items():
        set_added(int(token_id), text, gguf.TokenType.USER_DEFINED, added_file)
    for token_id, data in (tok_config.get("added_tokens_decoder") or {}).items():
        text = data["content"]
        if data.get("special") or looks_special(text):
            set_added(int(token_id), text, gguf.TokenType.CONTROL, model_dir / "tokenizer_config.json")
        else:  # llama.cpp matches user-defined tokens on pre-normalized text: "▁" stands for a space
            set_added(int(token_id), text.replace("\u2581", " "), gguf.TokenType.USER_DEFINED,
                      model_dir / "tokenizer_config.json")

    writer.add_tokenizer_model("llama")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    special = gguf.SpecialVocab(model_dir, n_vocab=len(tokens))
    if int(gguf.TokenType.UNKNOWN) in types:  # the model's own <unk>, where no json names one
        special.special_token_ids.setdefault("unk", types.index(int(gguf.TokenType.UNKNOWN)))
    return special


# --- Llama vocabulary exported as tokenizer.json (byte-fallback BPE) -----------------------------------------------


def _add_llama_hf(writer: gguf.GGUFWriter, model_dir: Path, config: dict, tokenizer_json: dict) -> gguf.SpecialVocab:
    path = model_dir / HF_FILE
    try:
        vocab = gguf.LlamaHfVocab(model_dir)
        entries = list(vocab.all_tokens())
    except (FileNotFoundError, TypeError) as e:  # decoder not the Llama one, or a Llama-3 style vocabulary
        raise TokenizerError(f"{path}: byte-fallback BPE that is not a Llama SentencePiece export ({e})") from e
    except Exception as e:  # transformers' loader raises many kinds
        raise TokenizerError(f"{path}: cannot load the tokenizer ({type(e).__name__}: {e})") from e

    n = _n_vocab(config, len(entries))
    if len(entries) > n:
        raise TokenizerError(f"{path}: {len(entries)} tokens do not fit config.json vocab_size {n}")
    # LlamaHfVocab scores every token -1000, which leaves llama.cpp's SentencePiece merger to merge left to right;
    # score each merged token by its merge's rank instead (earlier merge, higher score), as SentencePiece's BPE
    # scores are, so llama.cpp merges in the order the tokenizer.json merges do.
    ranks = merge_ranks(tokenizer_json["model"].get("merges") or [])
    tokens = [text for text, _, _ in entries] + [f"[PAD{i}]".encode() for i in range(len(entries), n)]
    scores = [-float(ranks[text]) if text in ranks else score for text, score, _ in entries]
    scores += [-1000.0] * (n - len(entries))
    types = [int(t) for _, _, t in entries] + [int(gguf.TokenType.UNUSED)] * (n - len(entries))

    writer.add_tokenizer_model("llama")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    return gguf.SpecialVocab(model_dir, n_vocab=len(tokens))


def merge_ranks(merges: list) -> dict[bytes, int]:
    """Merged token (UTF-8) -> rank of the first merge that makes it; merges as "a b" strings or [a, b] pairs."""
    ranks: dict[bytes, int] = {}
    for rank, merge in enumerate(merges):
        left, right = merge if isinstance(merge, list) else merge.split(" ", 1)
        ranks.setdefault((left + right).encode(), rank)
    return ranks


# --- byte-level BPE ------------------------------------------------------------------------------------------------


def _add_bpe(
    writer: gguf.GGUFWriter, model_dir: Path, config: dict, tokenizer_json: dict, tok_config: dict
) -> gguf.SpecialVocab:
    from tokenizers import Tokenizer

    path = model_dir / HF_FILE
    decoder = tokenizer_json.get("decoder") or {}
    if decoder.get("type") != "ByteLevel":
        raise TokenizerError(f"{path}: BPE without a ByteLevel decoder (got {decoder.get('type')!r}) is not supported")
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as e:  # tokenizers raises a bare Exception on malformed files
        raise TokenizerError(f"{path}: cannot load the tokenizer ({e})") from e

    pre = bpe_pre_name(model_dir, tokenizer_json, tok_config, tokenizer)

    # gguf.BpeVocab types every added token CONTROL and skips added tokens that sit inside the base vocabulary
    # (SmolLM's <|endoftext|> is id 0); llama.cpp's converter types them by their `special` flag, so do that.
    id_to_token: dict[int, str] = {i: t for t, i in tokenizer_json["model"]["vocab"].items()}
    added: dict[int, dict] = {}
    for entry in tokenizer_json.get("added_tokens") or []:
        id_to_token[entry["id"]] = entry["content"]
        added[entry["id"]] = entry

    n = _n_vocab(config, max(id_to_token) + 1)
    if max(id_to_token) >= n:
        raise TokenizerError(f"{path}: token id {max(id_to_token)} does not fit config.json vocab_size {n}")

    tokens: list[str] = []
    types: list[int] = []
    for i in range(n):
        if i not in id_to_token:
            tokens.append(f"[PAD{i}]")
            types.append(int(gguf.TokenType.UNUSED))
            continue
        text = id_to_token[i]
        if i in added:
            entry = added[i]
            if not entry.get("normalized", True):
                # llama.cpp expects added tokens pre-normalized: take what the tokenizer gives back for them
                text = tokenizer.decode(tokenizer.encode(text, add_special_tokens=False).ids, skip_special_tokens=False)
            if entry.get("special") or looks_special(text):
                types.append(int(gguf.TokenType.CONTROL))
            else:
                text = text.replace("\u2581", " ")
                types.append(int(gguf.TokenType.USER_DEFINED))
        else:
            types.append(int(gguf.TokenType.NORMAL))
        tokens.append(text)

    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    special = gguf.SpecialVocab(model_dir, load_merges=True)
    if not special.merges:
        raise TokenizerError(f"{path}: BPE tokenizer without merges")
    return special


def bpe_pre_name(model_dir: Path, tokenizer_json: dict, tok_config: dict, tokenizer: Any) -> str:
    """The `tokenizer.ggml.pre` llama.cpp needs to split text as this tokenizer does; TokenizerError if unknown."""
    path = Path(model_dir) / HF_FILE
    chkhsh = hashlib.sha256(str(tokenizer.encode(CHKTXT).ids).encode()).hexdigest()
    if chkhsh in KNOWN_HASHES:
        return KNOWN_HASHES[chkhsh]

    normalizer = tokenizer_json.get("normalizer")
    if (normalizer or {}).get("type") not in _HARMLESS_NORMALIZERS:
        raise TokenizerError(
            f"{path}: byte-level BPE with a {normalizer.get('type')} normalizer has no llama.cpp equivalent"
        )
    signature = pre_signature(tokenizer_json.get("pre_tokenizer"))
    name = STRUCTURES.get(signature)
    if name is None:
        raise TokenizerError(
            f"{path}: unknown BPE pre-tokenizer {json.dumps(signature, ensure_ascii=False)} (fingerprint "
            f"{chkhsh[:16]}); llama.cpp could not split text the same way"
        )
    return _refine(name, tokenizer_json, tok_config)


def _refine(name: str, tokenizer_json: dict, tok_config: dict) -> str:
    # Llama-3's regex names two llama.cpp types: "llama-bpe" also skips merges for words already in the
    # vocabulary (tokenizer.json's ignore_merges), "smaug-bpe" does not.
    if name == "llama-bpe" and not tokenizer_json["model"].get("ignore_merges", False):
        return "smaug-bpe"
    # Digits + GPT-2 regex is StarCoder's split; llama.cpp's "smollm" differs only in keeping spaces on decode,
    # which is what clean_up_tokenization_spaces=False asks for.
    if name == "smollm" and tok_config.get("clean_up_tokenization_spaces", True):
        return "starcoder"
    return name


def pre_signature(pre: dict | None) -> Signature:
    """tokenizer.json's pre_tokenizer as a tuple of the steps that decide the split (see Signature)."""
    if not pre:
        return ()
    steps = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else [pre]
    out: list[tuple[Any, ...]] = []
    for step in steps:
        kind = step.get("type")
        if kind == "Split":
            pattern = step.get("pattern") or {}
            # a literal String pattern is kept apart from a regex with the same text
            regex = pattern["Regex"] if "Regex" in pattern else f"String:{pattern.get('String')}"
            out.append(("Split", regex, step.get("behavior"), bool(step.get("invert", False))))
        elif kind == "ByteLevel":
            out.append(("ByteLevel", bool(step.get("add_prefix_space", True)), bool(step.get("use_regex", True))))
        elif kind == "Digits":
            out.append(("Digits", bool(step.get("individual_digits", False))))
        else:
            out.append((kind,))
    return tuple(out)
