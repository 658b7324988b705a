"""The transformer forward pass of the llama / qwen2 / qwen3 graphs in llama.cpp (src/models/*.cpp):

  x = token_embd[tokens]
  per layer:  h = rms_norm(x) * attn_norm
              q, k, v = h Wq^T (+bq), h Wk^T (+bk), h Wv^T (+bv)     [qwen2 biases]
              q, k = rms_norm_per_head(q) * q_norm, ... (k)          [qwen3]
              q, k = rope(q), rope(k)                                  NORMAL (llama) or NEOX (qwen2/3)
              x = x + softmax(q k^T / sqrt(head_dim) + causal) v  Wo^T   grouped-query: head h reads kv h // n_gqa
              x = x + (silu(h' Wgate^T) * (h' Wup^T)) Wdown^T,  h' = rms_norm(x) * ffn_norm
  logits = (rms_norm(x) * output_norm) output^T                       output = token_embd when tied
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from awq_gguf.runner.backend import Backend, select_backend
from awq_gguf.runner.errors import RunnerError
from awq_gguf.runner.gguf_file import GgufFile
from awq_gguf.runner.hparams import HParams, RopeMode
from awq_gguf.runner.kv_cache import KVCache
from awq_gguf.runner.rope import Rope
from awq_gguf.runner.weights import ModelWeights, open_model

UBATCH = 512  # tokens per forward chunk for long inputs (bounds activation memory, as llama.cpp's n_ubatch)
ATTN_CHUNK = 128  # queries per attention call in a prompt batch


def rms_norm(x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
    """x [..., d] * rsqrt(mean(x^2) + eps) * w [d] (ggml_rms_norm then ggml_mul)."""
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


class Model:
    def __init__(self, file: GgufFile, hp: HParams, weights: ModelWeights, backend: Backend, n_ctx: int,
                 emulate_llama_cpp: bool = False) -> None:
        self.file, self.hp, self.w, self.backend, self.n_ctx = file, hp, weights, backend, n_ctx
        # llama.cpp's defaults round K/V to an F16 cache, q to F16 for q.k and the softmax to F16 for p.v.
        self.f16_attention = emulate_llama_cpp
        self.rope = Rope(hp.n_rot, hp.rope_base, hp.rope_freq_scale, hp.traits.rope_mode, n_ctx, weights.rope_freqs)

    @classmethod
    def load(cls, path: Path, n_ctx: int | None = None, backend: str | None = None,
             threads: int | None = None, emulate_llama_cpp: bool = False) -> "Model":
        """Open, validate and map `path`. n_ctx defaults to min(the training context, 4096).

        emulate_llama_cpp: the torch backend with ggml's activation rounding and an F16 KV cache, to compare
        with llama.cpp to float rounding (tests); the default keeps float32 everywhere."""
        mf = open_model(path, n_ctx)
        f, hp, weights, n_ctx = mf.file, mf.hp, mf.weights, mf.n_ctx
        threads = threads or os.cpu_count() or 1
        be = select_backend(backend, threads, emulate_llama_cpp)
        # With the C kernels, torch only does the small ops (norms, RoPE, attention); waking its OpenMP pool for
        # each of those costs more than it saves (on a busy machine, ~15 ms a wake-up), so it gets one thread.
        # (Measured on the 2-core machine: tg 7.6 -> 19 tok/s; pp512 no slower.)
        model = cls(f, hp, weights, be, n_ctx, emulate_llama_cpp)
        model.threads = threads
        model.small_ops_single_thread = be.name.startswith("kernels")
        torch.set_num_threads(1 if model.small_ops_single_thread else threads)
        return model

    def new_cache(self) -> KVCache:
        return KVCache(self.hp.n_layer, self.hp.n_head_kv, self.n_ctx, self.hp.head_dim)

    def forward(self, tokens: Sequence[int], cache: KVCache, all_logits: bool = False) -> torch.Tensor:
        """Run `tokens` after what `cache` holds; logits float32 [len(tokens) if all_logits else 1, n_vocab]."""
        if isinstance(tokens, (list, tuple)) and len(tokens) == 1 and self.fused_decode_ready():
            token = int(tokens[0])
            if not 0 <= token < self.hp.n_vocab:
                raise RunnerError(f"token id out of range 0..{self.hp.n_vocab - 1}")
            cache.check_room(1)
            return self._decode_fused(token, cache)
        return self._forward(tokens, cache, all_logits)

    @torch.inference_mode()
    def _forward(self, tokens: Sequence[int], cache: KVCache, all_logits: bool) -> torch.Tensor:
        ids = torch.as_tensor(list(tokens), dtype=torch.int64)
        if ids.ndim != 1 or ids.numel() == 0:
            raise RunnerError("forward needs at least one token")
        if int(ids.min()) < 0 or int(ids.max()) >= self.hp.n_vocab:
            raise RunnerError(f"token id out of range 0..{self.hp.n_vocab - 1}")
        cache.check_room(ids.numel())
        if ids.numel() == 1 and self.fused_decode_ready():
            return self._decode_fused(int(ids[0]), cache)
        outs = []
        for start in range(0, ids.numel(), UBATCH):
            chunk = ids[start : start + UBATCH]
            last = start + UBATCH >= ids.numel()
            h = self._hidden(chunk, cache)  # [n, n_embd], normed
            if all_logits:
                outs.append(self.backend.matmul(self.w.output, h))
            elif last:
                outs.append(self.backend.matmul(self.w.output, h[-1:]))
        return torch.cat(outs) if len(outs) > 1 else outs[0]

    threads: int = 1
    small_ops_single_thread: bool = False
    # One-token steps through cpu_kernels' fused decode (every layer in one C call; see fused_decode_ready).
    # None: decided on first use; AWQ_GGUF_FUSED_DECODE=0 (or setting it False) keeps the torch path.
    fused_decode: bool | None = None
    _stack = None
    _stack_cache = None

    def fused_decode_ready(self) -> bool:
        """Whether one-token forwards run through the C decode step: the kernels backend (not the torch or the
        llama.cpp-emulation backend), and every layer matrix of a type the kernels take."""
        if self.fused_decode is None:
            self.fused_decode = os.environ.get("AWQ_GGUF_FUSED_DECODE", "1") != "0" and self._fused_possible()
        if self.fused_decode and self._stack is None:
            from awq_gguf.cpu_kernels import KernelError

            try:
                self._stack = self._build_stack()
            except KernelError as e:  # a shape the C step refuses: keep the torch path, say so once
                import warnings

                warnings.warn(f"runner: fused decode unavailable for this model ({e}); using the torch path",
                              RuntimeWarning, stacklevel=2)
                self.fused_decode = False
        return bool(self.fused_decode)

    def _fused_possible(self) -> bool:
        from awq_gguf.runner.backend import KernelBackend

        if not isinstance(self.backend, KernelBackend) or self.f16_attention:
            return False
        from awq_gguf import cpu_kernels as ck

        ok = set(ck.SUPPORTED)
        return all(m.qtype in ok for m in self.w.matrices()[:-1])

    def _build_stack(self):
        from awq_gguf import cpu_kernels as ck

        hp = self.hp
        cfg = ck.DecodeConfig(hp.n_embd, hp.n_head, hp.n_head_kv, hp.head_dim, hp.n_ff, self.n_ctx, hp.rms_eps,
                              hp.traits.rope_mode == RopeMode.NEOX, self.rope.cos.numpy(), self.rope.sin.numpy())

        def vec(t):
            return None if t is None else np.ascontiguousarray(t.numpy(), dtype=np.float32)

        def mat(w):  # the prompt's interleaved copy where there is one (backend.packed): one copy serves both paths
            p = self.backend.packed(w)
            return (w.raw, w.qtype) if p is None else p

        layers = [
            ck.DecodeLayer(cfg, attn_norm=vec(lw.attn_norm), ffn_norm=vec(lw.ffn_norm),
                           wq=mat(lw.wq), wk=mat(lw.wk), wv=mat(lw.wv), wo=mat(lw.wo), w_gate=mat(lw.w_gate),
                           w_up=mat(lw.w_up), w_down=mat(lw.w_down),
                           bq=vec(lw.bq), bk=vec(lw.bk), bv=vec(lw.bv), q_norm=vec(lw.q_norm), k_norm=vec(lw.k_norm))
            for lw in self.w.layers
        ]
        stack = ck.DecodeStack(cfg, layers)
        ok = set(ck.SUPPORTED)
        self._fused_ends = self.w.token_embd.qtype in ok and self.w.output.qtype in ok
        if self._fused_ends:  # embedding row and head in C too: three C calls per token
            stack.set_embedding((self.w.token_embd.raw, self.w.token_embd.qtype))
            stack.set_head(vec(self.w.output_norm), (self.w.output.raw, self.w.output.qtype))
        return stack

    _fused_ends = False

    def _decode_fused(self, token: int, cache: KVCache) -> torch.Tensor:
        """One token at position cache.n_past: embedding, every layer in one C call, output norm and matrix."""
        if self._stack_cache is not cache:
            self._stack.bind_cache([(k.numpy(), v.numpy()) for k, v in zip(cache.k, cache.v)])
            self._stack_cache = cache
        if self._fused_ends:
            logits = self._stack.token(token, cache.n_past, self.threads)
            cache.n_past += 1
            return torch.from_numpy(logits)[None]
        x = np.array(self.backend.get_rows(self.w.token_embd, torch.tensor([token])).numpy()[0], dtype=np.float32)
        self._stack.step(x, cache.n_past, self.threads)
        cache.n_past += 1
        h = rms_norm(torch.from_numpy(x)[None], self.w.output_norm, self.hp.rms_eps)
        return self.backend.matmul(self.w.output, h)

    def _hidden(self, ids: torch.Tensor, cache: KVCache) -> torch.Tensor:
        hp, be = self.hp, self.backend
        n = ids.numel()
        pos = torch.arange(cache.n_past, cache.n_past + n)
        x = be.get_rows(self.w.token_embd, ids).float()  # [n, n_embd]
        for il, lw in enumerate(self.w.layers):
            h = rms_norm(x, lw.attn_norm, hp.rms_eps)
            q, k, v = be.matmul(lw.wq, h), be.matmul(lw.wk, h), be.matmul(lw.wv, h)
            if lw.bq is not None:
                q, k, v = q + lw.bq, k + lw.bk, v + lw.bv
            q = q.view(n, hp.n_head, hp.head_dim)
            k = k.view(n, hp.n_head_kv, hp.head_dim)
            v = v.view(n, hp.n_head_kv, hp.head_dim)
            if lw.q_norm is not None:
                q = rms_norm(q, lw.q_norm, hp.rms_eps)
                k = rms_norm(k, lw.k_norm, hp.rms_eps)
            q, k = self.rope(q, pos), self.rope(k, pos)
            if self.f16_attention:
                q, k, v = q.half().float(), k.half().float(), v.half().float()
            keys, values = cache.store(il, k.transpose(0, 1), v.transpose(0, 1))  # [n_kv, T, d]
            attn = self._prompt_attention(q, keys, values, pos)  # [n, n_head * d]
            x = x + be.matmul(lw.wo, attn)
            h = rms_norm(x, lw.ffn_norm, hp.rms_eps)
            g = torch.nn.functional.silu(be.matmul(lw.w_gate, h)) * be.matmul(lw.w_up, h)
            x = x + be.matmul(lw.w_down, g)
        cache.n_past += n
        return rms_norm(x, self.w.output_norm, hp.rms_eps)

    _tasks = None

    def _prompt_attention(self, q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                          pos: torch.Tensor) -> torch.Tensor:
        """_attention for batches of several queries, spread over the model's threads (torch itself runs on one
        thread here, see load): one task per (query chunk, kv head) through runner.parallel.TaskPool, heaviest
        chunks first. The same SDPA calls per head group as _attention, so the same results."""
        hp = self.hp
        n = q.shape[0]
        if n == 1 or self.threads <= 1 or not self.small_ops_single_thread or self.f16_attention:
            return self._attention(q, keys, values, pos)
        if self._tasks is None:
            from awq_gguf.runner.parallel import TaskPool

            self._tasks = TaskPool.shared(self.threads)
        out = torch.empty(n, hp.n_head, hp.head_dim)
        g, scale = hp.n_gqa, 1.0 / hp.head_dim**0.5
        inference = torch.is_inference_mode_enabled()  # thread-local: the helpers take the caller's

        def run(task: tuple[int, int]) -> None:
            with torch.inference_mode(inference):
                head_group(*task)

        def head_group(c0: int, kv: int) -> None:
            p = pos[c0 : c0 + ATTN_CHUNK]
            tc = min(int(p[-1]) + 1, keys.shape[1])
            mask = torch.arange(tc)[None, :] <= p[:, None]  # [chunk, tc] True = may attend
            o = torch.nn.functional.scaled_dot_product_attention(
                q[c0 : c0 + ATTN_CHUNK, kv * g : (kv + 1) * g].transpose(0, 1), keys[kv : kv + 1, :tc],
                values[kv : kv + 1, :tc], attn_mask=mask, scale=scale, enable_gqa=True,
            )  # [g, chunk, d]
            out[c0 : c0 + ATTN_CHUNK, kv * g : (kv + 1) * g] = o.transpose(0, 1)

        self._tasks.run(run, [(c0, kv) for c0 in reversed(range(0, n, ATTN_CHUNK)) for kv in range(hp.n_head_kv)])
        return out.reshape(n, hp.n_head * hp.head_dim)

    def _attention(self, q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """q [n, n_head, d]; keys/values [n_kv, T, d] (positions 0..T-1) -> [n, n_head * d], causal."""
        hp = self.hp
        n, t = q.shape[0], keys.shape[1]
        if not self.f16_attention:  # fused (flash-style) CPU kernel, grouped-query heads broadcast
            # Queries in chunks of ATTN_CHUNK, each over only the keys up to its last position: a causal mask
            # wastes half of a full T x T product (pp512: half the attention time).
            outs = []
            for c0 in range(0, n, ATTN_CHUNK):
                p = pos[c0 : c0 + ATTN_CHUNK]
                tc = min(int(p[-1]) + 1, t)
                mask = torch.arange(tc)[None, :] <= p[:, None]  # [chunk, tc] True = may attend
                out = torch.nn.functional.scaled_dot_product_attention(
                    q[c0 : c0 + ATTN_CHUNK].transpose(0, 1), keys[:, :tc], values[:, :tc], attn_mask=mask,
                    scale=1.0 / hp.head_dim**0.5, enable_gqa=True,
                )  # [n_head, chunk, d]
                outs.append(out.transpose(0, 1).reshape(-1, hp.n_head * hp.head_dim))
            return outs[0] if len(outs) == 1 else torch.cat(outs)
        qg = q.permute(1, 0, 2).reshape(hp.n_head_kv, hp.n_gqa, n, hp.head_dim)  # head h -> kv group h // n_gqa
        scores = torch.matmul(qg, keys.transpose(1, 2)[:, None]) * (1.0 / hp.head_dim**0.5)  # [n_kv, g, n, T]
        future = torch.arange(t)[None, :] > pos[:, None]  # [n, T]
        scores = scores.masked_fill(future, float("-inf"))
        probs = torch.softmax(scores, dim=-1)
        if self.f16_attention:
            probs = probs.half().float()
        out = torch.matmul(probs, values[:, None])  # [n_kv, g, n, d]
        return out.reshape(hp.n_head, n, hp.head_dim).permute(1, 0, 2).reshape(n, hp.n_head * hp.head_dim)
