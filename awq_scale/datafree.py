"""Data-free calibration: the model writes its own calibration text.

With no --calib, AWQ calibrates on text sampled from the float model itself (as LLM-QAT does for its
data-free distillation): each sequence starts with BOS (when the model adds one) and the first token of a word
drawn from a fixed list of common English sentence openers; the rest is sampled token by token at temperature
1.0 from the model's 40 most likely tokens, with end-of-text tokens masked so every sequence runs to full
length. Seeded (torch.Generator on the CPU), so the same model and settings give the same tokens.

The sampler holds all block weights in float32 (about 4 bytes per parameter) and a KV cache of
n_samples x seqlen tokens per layer; batched over the samples, one token per step.
"""

from __future__ import annotations

import math

import torch
from tqdm import tqdm

from .block import block_config, block_params, ffn, linear, qkv, rms_norm

DATAFREE_VERSION = 1
TOP_K = 40
TEMPERATURE = 1.0
OPENERS = (
    "The", "In", "A", "This", "When", "After", "It", "There", "On", "During", "Although", "Many", "One", "His",
    "Her", "Most", "Some", "According", "By", "As", "For", "At", "While", "Since", "Before", "We", "Today",
    "History", "Science", "Music", "Water", "People", "Children", "The city", "Researchers", "Scientists",
)


def _special_ids(source) -> set[int]:
    """End-of-text and BOS ids to mask out of the sampling."""
    ids: set[int] = set()
    if hasattr(source, "config"):
        for k in ("eos_token_id", "bos_token_id", "pad_token_id"):
            v = source.config.get(k)
            ids.update(v if isinstance(v, list) else [v] if isinstance(v, int) else [])
    else:
        from awq_gguf.convert.gguf_source import field_value

        for k in ("eos", "bos", "eot", "eom", "padding"):
            v = field_value(source.reader, f"tokenizer.ggml.{k}_token_id")
            if v is not None:
                ids.add(int(v))
    return ids


@torch.no_grad()
def generate_calibration(source, n_samples: int, seqlen: int, seed: int = 0, device: str = "cpu",
                         progress: bool = True) -> torch.Tensor:
    """int64 [n_samples, seqlen] token ids sampled from the source model (see the module docstring)."""
    from .calib import source_tokenizer

    cfg = block_config(source)
    seqlen = min(seqlen, cfg.n_ctx)
    encode, bos = source_tokenizer(source)
    gen = torch.Generator().manual_seed(seed)
    by_name = {t.name: t for t in source.tensors}
    embd = by_name["token_embd.weight"].load_checked().to(device)  # [vocab, C]
    out_w = by_name["output.weight"].load_checked().to(device) if "output.weight" in by_name else embd
    out_norm = by_name["output_norm.weight"].load_checked().to(device)
    blocks = [{k: v.to(device) for k, v in block_params(source, i).items()} for i in range(source.n_layer)]
    mask = torch.zeros(out_w.shape[0], dtype=torch.bool)
    mask[[i for i in _special_ids(source) if 0 <= i < out_w.shape[0]]] = True
    mask = mask.to(device)

    # prompts: BOS + the first token of a random opener
    starts = [encode(OPENERS[int(j)])[:1] for j in torch.randint(len(OPENERS), (n_samples,), generator=gen)]
    prefix = [[bos] if bos is not None else [] for _ in range(n_samples)]
    tokens = torch.tensor([p + s for p, s in zip(prefix, starts)], dtype=torch.long)  # [n, P]
    P = tokens.shape[1]
    out = torch.empty(n_samples, seqlen, dtype=torch.long)
    out[:, :P] = tokens[:, :seqlen]

    hd, n_kv = cfg.head_dim, cfg.n_head_kv
    cache_k = [torch.empty(n_samples, n_kv, seqlen, hd, device=device) for _ in blocks]
    cache_v = [torch.empty(n_samples, n_kv, seqlen, hd, device=device) for _ in blocks]

    def step(ids: torch.Tensor, pos: int) -> torch.Tensor:
        """ids [n, T] at positions pos..pos+T-1 -> logits of the last position [n, vocab]."""
        h = embd[ids.to(device)]  # [n, T, C]
        n, T, _ = h.shape
        for i, p in enumerate(blocks):
            q, k, v = qkv(p, rms_norm(h, p["attn_norm.weight"], cfg.eps), cfg, pos)
            cache_k[i][:, :, pos:pos + T] = k.transpose(1, 2)
            cache_v[i][:, :, pos:pos + T] = v.transpose(1, 2)
            att = torch.nn.functional.scaled_dot_product_attention(
                q.transpose(1, 2), cache_k[i][:, :, :pos + T], cache_v[i][:, :, :pos + T],
                is_causal=T > 1, scale=1.0 / math.sqrt(hd), enable_gqa=True,
            )  # [n, n_head, T, hd]  (T > 1 only for the prompt at pos 0, where causal is right)
            h = h + linear(att.transpose(1, 2).reshape(n, T, cfg.n_head * hd), p, "attn_output")
            h = h + ffn(p, rms_norm(h, p["ffn_norm.weight"], cfg.eps))
        return rms_norm(h[:, -1], out_norm, cfg.eps) @ out_w.T  # [n, vocab]

    logits = step(tokens, 0)
    for pos in tqdm(range(P, seqlen), desc="data-free calibration", unit="tok", disable=not progress):
        logits = logits.float().masked_fill(mask, float("-inf")) / TEMPERATURE
        top, idx = logits.topk(TOP_K, dim=-1)  # [n, K]
        pick = torch.multinomial(top.softmax(-1).cpu(), 1, generator=gen)  # [n, 1]
        nxt = idx.cpu().gather(1, pick)  # [n, 1]
        out[:, pos] = nxt[:, 0]
        if pos + 1 < seqlen:
            logits = step(nxt, pos)
    return out
