"""add_vocab on tiny tokenizers built here: byte-level BPE with Llama-3, Qwen2 and SmolLM pre-tokenizers, a
SentencePiece model, and a Llama vocabulary exported as tokenizer.json (byte-fallback BPE).

Each folder is written into a metadata-only GGUF and read back. Where llama_cpp is importable, the GGUF is also
loaded vocab-only and llama.cpp's token ids must equal the Hugging Face tokenizer's on varied text.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import gguf
import pytest

from awq_gguf.convert.vocab import GPT4O_REGEX, LLAMA3_REGEX, QWEN2_REGEX, add_vocab, pre_signature
from awq_gguf.errors import TokenizerError

T = gguf.TokenType

TEXT = """\
The quick brown fox jumps over the lazy dog. It's 3:45 PM on 2024-05-17, and we've got 1,234,567 reasons to
convert models. I'll say it again: don't quantize what you can't measure! Llamas, alpacas and vicuñas graze at
4,000 meters; the café serves crème brûlée for 12.50 euros. Numbers like 3.14159, 42, 007 and 1e-5 appear often.
def add(a, b):
    return a + b  # sum of two values
for i in range(10):
    print(f"{i}: {i * i}")
Tokenizers split text into pieces, then merge the pieces by rank. A byte-level vocabulary maps every byte to a
printable character, so no text is ever unknown. SentencePiece models store a score for each piece instead of
merges, and llama.cpp must reproduce the same ids from either kind. The weights of a transformer are matrices;
attention layers hold queries, keys and values, while feed-forward layers expand the hidden size and project
it back. Quantization stores those weights in four or five bits with a scale per block of thirty-two values.
Naïve résumé: Zürich, Kraków, São Paulo, Москва, 東京, 서울 — and emoji 🚀🦙 too.
"""

SAMPLES = [
    "Hello world 123",
    "The quick brown fox jumps over the lazy dog.",
    "It's 3:45 PM; we've got 1,234,567 reasons, don't we? I'LL SAY IT'S FINE.",
    "  leading spaces,\ttabs\tand\n\nnew lines   ",
    "def add(a, b):\n    return a + b  # sum\n",
    "Naïve café in Zürich costs 12.50€ — 東京 🚀🦙",
    "x=42;y=007;z=3.14159e-5",
]


def corpus() -> list[str]:
    """A few hundred words: TEXT plus shuffled sentences of its words."""
    words = TEXT.split()
    rng = random.Random(0)
    extra = [" ".join(rng.choice(words) for _ in range(15)) for _ in range(40)]
    return TEXT.splitlines() + extra


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False))


def gguf_of(folder: Path, config: dict, out: Path) -> dict[str, Any]:
    """add_vocab into a metadata-only GGUF at `out`; its fields read back as Python values."""
    writer = gguf.GGUFWriter(out, "llama")
    _add_minimal_hparams(writer, config)
    add_vocab(writer, folder, config)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.close()
    reader = gguf.GGUFReader(out)
    return {name: field.contents() for name, field in reader.fields.items()}


def _add_minimal_hparams(writer: gguf.GGUFWriter, config: dict) -> None:
    # enough llama hparams for llama.cpp to open the file vocab-only
    writer.add_context_length(512)
    writer.add_embedding_length(64)
    writer.add_block_count(1)
    writer.add_feed_forward_length(128)
    writer.add_head_count(4)
    writer.add_head_count_kv(4)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_dimension_count(16)


# --- byte-level BPE tokenizers ------------------------------------------------------------------------------------


def train_bpe(pre_tokenizer: Any, vocab_size: int = 420, special: list[str] | None = None,
              ignore_merges: bool = False) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(ignore_merges=ignore_merges))
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special or [], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus(), trainer)
    return tok


def split_then_bytes(regex: str) -> Any:
    from tokenizers import Regex, pre_tokenizers

    return pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(regex), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
    ])


def llama3_folder(root: Path, ignore_merges: bool = True) -> tuple[Path, dict]:
    from tokenizers import AddedToken, processors

    folder = root / "llama3"
    folder.mkdir()
    tok = train_bpe(split_then_bytes(LLAMA3_REGEX), ignore_merges=ignore_merges)
    base = tok.get_vocab_size()
    tok.add_special_tokens(["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"])
    tok.add_tokens([AddedToken("[TOOL]", special=False, normalized=False)])
    bos = tok.token_to_id("<|begin_of_text|>")
    tok.post_processor = processors.TemplateProcessing(
        single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|> $B:1",
        special_tokens=[("<|begin_of_text|>", bos)])
    tok.save(str(folder / "tokenizer.json"))
    write_json(folder / "tokenizer_config.json", {
        "bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>", "clean_up_tokenization_spaces": True,
        "chat_template": "{% for m in messages %}<|start|>{{ m['content'] }}<|eot_id|>{% endfor %}",
        "tokenizer_class": "PreTrainedTokenizerFast",
    })
    config = {"architectures": ["LlamaForCausalLM"], "vocab_size": base + 4 + 5, "bos_token_id": bos,
              "eos_token_id": tok.token_to_id("<|eot_id|>")}
    write_json(folder / "config.json", config)
    return folder, config


def qwen2_folder(root: Path) -> tuple[Path, dict]:
    from tokenizers import normalizers

    folder = root / "qwen2"
    folder.mkdir()
    tok = train_bpe(split_then_bytes(QWEN2_REGEX))
    tok.normalizer = normalizers.NFC()
    tok.add_special_tokens(["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    tok.save(str(folder / "tokenizer.json"))
    write_json(folder / "tokenizer_config.json", {
        "add_prefix_space": False, "bos_token": None, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
        "unk_token": None, "errors": "replace", "clean_up_tokenization_spaces": False,
        "chat_template": "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
                         "{% endfor %}",
        "tokenizer_class": "Qwen2Tokenizer",
    })
    config = {"architectures": ["Qwen2ForCausalLM"], "vocab_size": tok.get_vocab_size() + 16,
              "eos_token_id": tok.token_to_id("<|im_end|>")}
    write_json(folder / "config.json", config)
    return folder, config


SMOL_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<repo_name>", "<file_sep>"]


def smollm_folder(root: Path, clean_up: bool = False, vocab_size: int = 49152) -> tuple[Path, dict]:
    from tokenizers import pre_tokenizers, processors

    folder = root / f"smollm-{clean_up}-{vocab_size}"
    folder.mkdir()
    pre = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
    ])
    tok = train_bpe(pre, special=SMOL_SPECIAL)  # the specials are ids 0..4, inside the BPE vocabulary
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.save(str(folder / "tokenizer.json"))
    write_json(folder / "tokenizer_config.json", {
        "add_prefix_space": False, "bos_token": "<|im_start|>", "eos_token": "<|im_end|>",
        "unk_token": "<|endoftext|>", "pad_token": "<|im_end|>", "clean_up_tokenization_spaces": clean_up,
        "tokenizer_class": "GPT2Tokenizer", "model_max_length": 8192,
    })
    config = {"architectures": ["LlamaForCausalLM"], "vocab_size": vocab_size, "bos_token_id": 1,
              "eos_token_id": 2}
    write_json(folder / "config.json", config)
    return folder, config


def expected_bpe_tokens(folder: Path, n_vocab: int) -> list[str]:
    tj = json.loads((folder / "tokenizer.json").read_text())
    by_id = {i: t for t, i in tj["model"]["vocab"].items()} | {a["id"]: a["content"] for a in tj["added_tokens"]}
    return [by_id.get(i, f"[PAD{i}]") for i in range(n_vocab)]


def expected_merges(folder: Path) -> list[str]:
    merges = json.loads((folder / "tokenizer.json").read_text())["model"]["merges"]
    return [m if isinstance(m, str) else " ".join(m) for m in merges]


def test_llama3_bpe(tmp_path: Path) -> None:
    folder, config = llama3_folder(tmp_path)
    kv = gguf_of(folder, config, tmp_path / "v.gguf")
    n = config["vocab_size"]
    tokens = kv["tokenizer.ggml.tokens"]
    assert kv["tokenizer.ggml.model"] == "gpt2"
    assert kv["tokenizer.ggml.pre"] == "llama-bpe"
    assert tokens == expected_bpe_tokens(folder, n)
    assert tokens[-5:] == [f"[PAD{i}]" for i in range(n - 5, n)]
    types = kv["tokenizer.ggml.token_type"]
    ids = {t: i for i, t in enumerate(tokens)}
    for name in ("<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"):
        assert types[ids[name]] == T.CONTROL
    assert types[ids["[TOOL]"]] == T.USER_DEFINED
    assert types[-5:] == [T.UNUSED] * 5
    assert set(types[: n - 9]) == {T.NORMAL}
    assert "tokenizer.ggml.scores" not in kv  # llama.cpp's BPE path writes none
    assert kv["tokenizer.ggml.merges"] == expected_merges(folder)
    assert kv["tokenizer.ggml.bos_token_id"] == ids["<|begin_of_text|>"]
    assert kv["tokenizer.ggml.eos_token_id"] == ids["<|eot_id|>"]
    assert kv["tokenizer.ggml.add_bos_token"] is True  # from the TemplateProcessing post-processor
    assert "<|start|>" in kv["tokenizer.chat_template"]


def test_llama3_regex_without_ignore_merges_is_smaug(tmp_path: Path) -> None:
    folder, config = llama3_folder(tmp_path, ignore_merges=False)
    assert gguf_of(folder, config, tmp_path / "v.gguf")["tokenizer.ggml.pre"] == "smaug-bpe"


def test_qwen2_bpe(tmp_path: Path) -> None:
    folder, config = qwen2_folder(tmp_path)
    kv = gguf_of(folder, config, tmp_path / "v.gguf")
    tokens, types = kv["tokenizer.ggml.tokens"], kv["tokenizer.ggml.token_type"]
    ids = {t: i for i, t in enumerate(tokens)}
    assert kv["tokenizer.ggml.model"] == "gpt2"
    assert kv["tokenizer.ggml.pre"] == "qwen2"
    assert tokens == expected_bpe_tokens(folder, config["vocab_size"])
    assert [types[ids[t]] for t in ("<|endoftext|>", "<|im_start|>", "<|im_end|>")] == [T.CONTROL] * 3
    assert types[-16:] == [T.UNUSED] * 16
    assert kv["tokenizer.ggml.merges"] == expected_merges(folder)
    assert kv["tokenizer.ggml.eos_token_id"] == ids["<|im_end|>"]
    assert kv["tokenizer.ggml.padding_token_id"] == ids["<|endoftext|>"]
    assert "tokenizer.ggml.bos_token_id" not in kv
    assert "tokenizer.ggml.add_bos_token" not in kv
    assert "tokenizer.ggml.add_space_prefix" not in kv  # llama.cpp writes it for the Llama family only
    assert kv["tokenizer.chat_template"].startswith("{% for m in messages %}<|im_start|>")


def test_smollm_bpe(tmp_path: Path) -> None:
    folder, config = smollm_folder(tmp_path)
    kv = gguf_of(folder, config, tmp_path / "v.gguf")
    tokens, types = kv["tokenizer.ggml.tokens"], kv["tokenizer.ggml.token_type"]
    assert kv["tokenizer.ggml.pre"] == "smollm"
    assert len(tokens) == len(types) == 49152
    # the special tokens live inside the BPE vocabulary; still control tokens, as llama.cpp's converter types them
    assert tokens[:5] == SMOL_SPECIAL and types[:5] == [T.CONTROL] * 5
    assert tokens == expected_bpe_tokens(folder, 49152)
    assert tokens[-1] == "[PAD49151]" and types[-1] == T.UNUSED
    assert kv["tokenizer.ggml.merges"] == expected_merges(folder)
    assert (kv["tokenizer.ggml.bos_token_id"], kv["tokenizer.ggml.eos_token_id"]) == (1, 2)
    assert (kv["tokenizer.ggml.unknown_token_id"], kv["tokenizer.ggml.padding_token_id"]) == (0, 2)
    assert kv["tokenizer.ggml.add_bos_token"] is False  # llama.cpp's rule for 49152-token Llama vocabularies
    assert kv["tokenizer.ggml.add_space_prefix"] is False  # tokenizer_config's add_prefix_space


def test_digits_bytelevel_with_space_cleanup_is_starcoder(tmp_path: Path) -> None:
    folder, config = smollm_folder(tmp_path, clean_up=True, vocab_size=1000)
    kv = gguf_of(folder, config, tmp_path / "v.gguf")
    assert kv["tokenizer.ggml.pre"] == "starcoder"
    assert "tokenizer.ggml.add_bos_token" not in kv  # the 49152 rule only


def test_gpt2_and_gpt4o_structures() -> None:
    assert pre_signature({"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                          "use_regex": True}) == (("ByteLevel", False, True),)
    from awq_gguf.convert.vocab import STRUCTURES

    gpt4o = {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": GPT4O_REGEX}, "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}
    assert STRUCTURES[pre_signature(gpt4o)] == "gpt-4o"


def test_unknown_pre_tokenizer_is_refused(tmp_path: Path) -> None:
    from tokenizers import pre_tokenizers

    folder = tmp_path / "odd"
    folder.mkdir()
    pre = pre_tokenizers.Sequence([pre_tokenizers.Whitespace(),
                                   pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    train_bpe(pre).save(str(folder / "tokenizer.json"))
    with pytest.raises(TokenizerError, match=r"odd/tokenizer.json: unknown BPE pre-tokenizer .*Whitespace"):
        gguf_of(folder, {"architectures": ["LlamaForCausalLM"]}, tmp_path / "v.gguf")


def test_missing_tokenizer_files(tmp_path: Path) -> None:
    write_json(tmp_path / "config.json", {"architectures": ["LlamaForCausalLM"], "vocab_size": 10})
    with pytest.raises(TokenizerError) as err:
        add_vocab(gguf.GGUFWriter(tmp_path / "v.gguf", "llama"), tmp_path, {"vocab_size": 10})
    message = str(err.value)
    assert str(tmp_path) in message and "tokenizer.model" in message and "tokenizer.json" in message
    assert "\n" not in message


def test_unreadable_tokenizer_model(tmp_path: Path) -> None:
    folder, config = llama3_folder(tmp_path)
    (folder / "tokenizer.model").write_bytes(b"IHRpa3Rva2Vu 0\n")  # a tiktoken file, not SentencePiece
    assert gguf_of(folder, config, tmp_path / "a.gguf")["tokenizer.ggml.pre"] == "llama-bpe"
    (folder / "tokenizer.json").unlink()
    with pytest.raises(TokenizerError, match="tokenizer.model: cannot read the SentencePiece model"):
        gguf_of(folder, config, tmp_path / "b.gguf")


def test_tokenizer_larger_than_vocab_size_is_refused(tmp_path: Path) -> None:
    folder, config = qwen2_folder(tmp_path)
    with pytest.raises(TokenizerError, match="does not fit config.json vocab_size 100"):
        gguf_of(folder, {**config, "vocab_size": 100}, tmp_path / "v.gguf")


# --- SentencePiece and its tokenizer.json export ------------------------------------------------------------------


def spm_folder(root: Path) -> tuple[Path, dict]:
    import sentencepiece as spm

    folder = root / "spm"
    folder.mkdir()
    (root / "corpus.txt").write_text("\n".join(corpus()) + "\n", encoding="utf-8")
    spm.SentencePieceTrainer.Train(
        input=str(root / "corpus.txt"), model_prefix=str(folder / "tokenizer"), vocab_size=400, model_type="bpe",
        byte_fallback=True, character_coverage=1.0, user_defined_symbols=["<tool>"], unk_id=0, bos_id=1, eos_id=2,
        pad_id=-1, minloglevel=2)
    (folder / "tokenizer.vocab").unlink()
    write_json(folder / "tokenizer_config.json", {
        "add_bos_token": True, "add_eos_token": False, "bos_token": "<s>", "eos_token": "</s>",
        "unk_token": "<unk>", "tokenizer_class": "LlamaTokenizer", "legacy": True,
        "added_tokens_decoder": {"3": {"content": "<tool>", "special": False, "normalized": False}},
    })
    config = {"architectures": ["MistralForCausalLM"], "vocab_size": 402, "bos_token_id": 1, "eos_token_id": 2}
    write_json(folder / "config.json", config)
    return folder, config


def test_sentencepiece(tmp_path: Path) -> None:
    import sentencepiece as spm

    folder, config = spm_folder(tmp_path)
    sp = spm.SentencePieceProcessor(model_file=str(folder / "tokenizer.model"))
    kv = gguf_of(folder, config, tmp_path / "v.gguf")
    tokens, types, scores = kv["tokenizer.ggml.tokens"], kv["tokenizer.ggml.token_type"], kv["tokenizer.ggml.scores"]
    assert kv["tokenizer.ggml.model"] == "llama"
    assert kv["tokenizer.ggml.pre"] == "default"
    assert len(tokens) == len(types) == len(scores) == 402
    assert tokens[:400] == [sp.id_to_piece(i) for i in range(400)]
    assert tokens[400:] == ["[PAD400]", "[PAD401]"] and types[400:] == [T.UNUSED] * 2
    assert scores[:3] == [0.0, 0.0, 0.0]
    assert scores[4:400] == pytest.approx([sp.get_score(i) if i != 3 else -1000.0 for i in range(4, 400)])
    assert types[:4] == [T.UNKNOWN, T.CONTROL, T.CONTROL, T.USER_DEFINED]
    assert types[4:260] == [T.BYTE] * 256 and tokens[4] == "<0x00>" and tokens[259] == "<0xFF>"
    assert set(types[260:400]) == {T.NORMAL}
    assert "tokenizer.ggml.merges" not in kv
    assert (kv["tokenizer.ggml.unknown_token_id"], kv["tokenizer.ggml.bos_token_id"],
            kv["tokenizer.ggml.eos_token_id"]) == (0, 1, 2)
    assert kv["tokenizer.ggml.add_bos_token"] is True and kv["tokenizer.ggml.add_eos_token"] is False


def llama_hf_folder(root: Path) -> tuple[Path, dict]:
    """A Llama vocabulary as transformers exports it to tokenizer.json (byte-fallback BPE, no tokenizer.model)."""
    import sentencepiece as spm
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, processors

    src, _ = spm_folder(root)
    sp = spm.SentencePieceProcessor(model_file=str(src / "tokenizer.model"))
    vocab = {sp.id_to_piece(i): i for i in range(sp.get_piece_size())}
    # merges in SentencePiece's order: by the merged piece's score, every split of it into two known pieces
    merges = []
    for piece, i in sorted(vocab.items(), key=lambda kv: (-sp.get_score(kv[1]), kv[1])):
        if sp.is_control(i) or sp.is_unknown(i) or sp.is_byte(i) or i == 3 or len(piece) < 2:
            continue
        merges += [(piece[:k], piece[k:]) for k in range(1, len(piece)) if piece[:k] in vocab and piece[k:] in vocab]
    folder = root / "llama-hf"
    folder.mkdir()
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")])
    tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in ("<unk>", "<s>", "</s>")])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B:1",
                                                       special_tokens=[("<s>", 1)])
    tok.save(str(folder / "tokenizer.json"))
    write_json(folder / "tokenizer_config.json", {
        "add_bos_token": True, "add_eos_token": False, "bos_token": "<s>", "eos_token": "</s>",
        "unk_token": "<unk>", "tokenizer_class": "LlamaTokenizer", "legacy": True,
    })
    config = {"architectures": ["LlamaForCausalLM"], "vocab_size": 403, "bos_token_id": 1, "eos_token_id": 2}
    write_json(folder / "config.json", config)
    return folder, config


def test_llama_tokenizer_json(tmp_path: Path) -> None:
    folder, config = llama_hf_folder(tmp_path)
    kv = gguf_of(folder, config, tmp_path / "v.gguf")
    vocab = json.loads((folder / "tokenizer.json").read_text())["model"]["vocab"]
    tokens, types, scores = kv["tokenizer.ggml.tokens"], kv["tokenizer.ggml.token_type"], kv["tokenizer.ggml.scores"]
    assert kv["tokenizer.ggml.model"] == "llama"
    assert kv["tokenizer.ggml.pre"] == "default"
    assert tokens[:400] == sorted(vocab, key=vocab.get)
    assert tokens[400:] == ["[PAD400]", "[PAD401]", "[PAD402]"] and types[400:] == [T.UNUSED] * 3
    assert types[:3] == [T.CONTROL] * 3 and types[4:260] == [T.BYTE] * 256
    # merged pieces are scored by merge rank: the first merge's piece scores highest
    merges = json.loads((folder / "tokenizer.json").read_text())["model"]["merges"]
    first = "".join(merges[0]) if isinstance(merges[0], list) else merges[0].replace(" ", "")
    assert scores[tokens.index(first)] == 0.0
    assert max(scores[260:400]) == 0.0
    assert (kv["tokenizer.ggml.bos_token_id"], kv["tokenizer.ggml.eos_token_id"]) == (1, 2)
    assert kv["tokenizer.ggml.add_bos_token"] is True


# --- llama.cpp's token ids against the Hugging Face tokenizer's ---------------------------------------------------


def llama_vocab(path: Path) -> Any:
    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    return llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)


def llama_ids(llm: Any, text: str) -> list[int]:
    return llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)


@pytest.mark.parametrize("make", [llama3_folder, qwen2_folder, smollm_folder])
def test_llama_cpp_matches_bpe_ids(tmp_path: Path, make: Any) -> None:
    from tokenizers import Tokenizer

    folder, config = make(tmp_path)
    gguf_of(folder, config, tmp_path / "v.gguf")
    llm = llama_vocab(tmp_path / "v.gguf")
    hf = Tokenizer.from_file(str(folder / "tokenizer.json"))
    for text in SAMPLES + TEXT.splitlines():
        assert llama_ids(llm, text) == hf.encode(text, add_special_tokens=False).ids, text


def test_llama_cpp_matches_sentencepiece_ids(tmp_path: Path) -> None:
    import sentencepiece as spm

    folder, config = spm_folder(tmp_path)
    gguf_of(folder, config, tmp_path / "v.gguf")
    llm = llama_vocab(tmp_path / "v.gguf")
    sp = spm.SentencePieceProcessor(model_file=str(folder / "tokenizer.model"))
    for text in SAMPLES + TEXT.splitlines():
        text = " ".join(text.split())  # SentencePiece folds runs of whitespace; llama.cpp does not
        assert llama_ids(llm, text) == sp.encode(text), text


def test_llama_cpp_matches_llama_tokenizer_json_ids(tmp_path: Path) -> None:
    from tokenizers import Tokenizer

    folder, config = llama_hf_folder(tmp_path)
    gguf_of(folder, config, tmp_path / "v.gguf")
    llm = llama_vocab(tmp_path / "v.gguf")
    hf = Tokenizer.from_file(str(folder / "tokenizer.json"))
    for text in SAMPLES + TEXT.splitlines():
        assert llama_ids(llm, text) == hf.encode(text, add_special_tokens=False).ids, text
