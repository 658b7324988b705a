"""The transformer forward pass on a CUDA GPU (`--device cuda`): the graph of awq_gguf.runner.model, with

  - every quantized matrix product on the project's CUDA kernels (gpu_weights: GEMV for up to 16 tokens,
    dequantize + cuBLAS for prompts);
  - torch on the GPU for the rest: RMSNorm (one fused op), RoPE as llama.cpp applies it (runner.rope's tables
    on the device), grouped-query attention (one fused SDPA call per layer, float32 accumulation), SwiGLU, the
    KV cache (gpu_kv_cache, float16 by default, as llama.cpp's); q, k, v and gate, up are one GEMV each where
    their types agree (gpu_weights.Projection);
  - in the decode step (int8 activations, on CUDA), the elementwise chains as fused kernels (cuda_kernels/fused.cu):
    the residual add, RMSNorm and the int8 rounding of the next product's input as one kernel (the GEMV then
    skips its own rounding), SiLU x up with the rounding, bias + q/k norm + RoPE + the KV-cache write as one;
    one query's attention (keys up to its position) with the rounding of wo's input as one kernel;
    `fused=False` (or AWQ_GGUF_GPU_FUSED=0) keeps the torch ops, AWQ_GGUF_GPU_FUSED_ATTN=0 keeps SDPA;
  - the one-token decode step captured as a CUDA graph per context bucket (a power of two >= 256 positions,
    at most n_ctx): the step attends over the whole bucket with the positions after the token masked, so one
    graph serves every position in it. The token id and position reach the graph through two device scalars.

Same interface as runner.model.Model (hp, w, n_ctx, new_cache, forward), so generate, evaluate and bench take
either. forward returns float32 logits on the CPU (the next token is needed on the host anyway).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from awq_gguf.runner.errors import RunnerError
from awq_gguf.runner.gguf_file import GgufFile
from awq_gguf.runner.gpu_kv_cache import GpuKVCache, KVStorage
from awq_gguf.runner.gpu_weights import GpuWeights, upload_weights
from awq_gguf.runner.hparams import HParams, RopeMode
from awq_gguf.runner.model import ATTN_CHUNK, UBATCH
from awq_gguf.runner.rope import Rope
from awq_gguf.runner.weights import ModelWeights, open_model

MIN_BUCKET = 256  # smallest context bucket of a decode graph


@dataclass(frozen=True)
class GpuBackend:
    """What runs the products, for reports (bench's backend column)."""

    device_name: str
    act_q8: bool
    graphs: bool

    @property
    def name(self) -> str:
        act = "q8" if self.act_q8 else "f16"
        return f"cuda:{self.device_name} ({act}{', graphs' if self.graphs else ''})"


class GpuModel:
    def __init__(self, file: GgufFile, hp: HParams, weights: ModelWeights, gpu: GpuWeights, n_ctx: int,
                 device: torch.device, act_q8: bool = True, graphs: bool = True, fused: bool | None = None) -> None:
        self.file, self.hp, self.w, self.gw, self.n_ctx, self.device = file, hp, weights, gpu, n_ctx, device
        self.act_q8 = act_q8  # int8-rounded activations in the GEMV; False: float16 activations, float32 KV cache
        self.graphs = graphs
        if fused is None:
            fused = os.environ.get("AWQ_GGUF_GPU_FUSED", "1") != "0"
        # the fused decode step (cuda_kernels.fused) needs CUDA and the int8 activations (float16 KV cache)
        self.fused = fused and act_q8 and device.type == "cuda" and hp.head_dim <= 1024 and hp.n_embd % 32 == 0
        # within it, attention as one kernel that also rounds wo's input (AWQ_GGUF_GPU_FUSED_ATTN=0: SDPA)
        self.fused_attn = os.environ.get("AWQ_GGUF_GPU_FUSED_ATTN", "1") != "0" and hp.head_dim % 32 == 0 \
            and hp.head_dim <= 256
        self.rope = Rope(hp.n_rot, hp.rope_base, hp.rope_freq_scale, hp.traits.rope_mode, n_ctx,
                         weights.rope_freqs).to(device)
        kv_dtype = torch.float16 if act_q8 else torch.float32
        self._kv = KVStorage(hp.n_layer, hp.n_head_kv, n_ctx, hp.head_dim, kv_dtype, device)
        self._arange = torch.arange(n_ctx, device=device)  # key positions, sliced for masks and prompt positions
        self._tok = torch.zeros(1, dtype=torch.int64, device=device)  # the decode step's inputs (graph-static)
        self._pos = torch.zeros(1, dtype=torch.int64, device=device)
        self._graphs: dict[int, torch.cuda.CUDAGraph] = {}
        self._graph_out: dict[int, torch.Tensor] = {}  # bucket -> the graph's logits buffer [1, n_vocab]
        self._pool = None  # the graphs' shared memory pool, made at the first capture

    @property
    def backend(self) -> GpuBackend:
        name = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else str(self.device)
        return GpuBackend(name, self.act_q8, self.graphs)

    @classmethod
    def load(cls, path: Path, n_ctx: int | None = None, device: torch.device | str = "cuda", act_q8: bool = True,
             graphs: bool | None = None, fused: bool | None = None) -> GpuModel:
        """Open, validate and upload `path`. The caller checks that the CUDA kernels are available
        (runner.device.load_runner does). graphs: None means $AWQ_GGUF_CUDA_GRAPHS (default on); fused: None
        means $AWQ_GGUF_GPU_FUSED (default on; applies to the int8-activation decode step on CUDA)."""
        mf = open_model(path, n_ctx)
        if graphs is None:
            graphs = os.environ.get("AWQ_GGUF_CUDA_GRAPHS", "1") != "0"
        dev = torch.device(device)
        with torch.no_grad():
            gpu = upload_weights(mf.weights, dev)
        return cls(mf.file, mf.hp, mf.weights, gpu, mf.n_ctx, dev, act_q8, graphs, fused)

    def new_cache(self) -> GpuKVCache:
        """An empty cache; retires the previous one (one storage per model, see gpu_kv_cache)."""
        return self._kv.new_cache()

    def forward(self, tokens: Sequence[int], cache: GpuKVCache, all_logits: bool = False) -> torch.Tensor:
        """Run `tokens` after what `cache` holds; float32 logits on the CPU [len(tokens) if all_logits else 1,
        n_vocab]."""
        ids = [int(t) for t in tokens]
        if not ids:
            raise RunnerError("forward needs at least one token")
        if min(ids) < 0 or max(ids) >= self.hp.n_vocab:
            raise RunnerError(f"token id out of range 0..{self.hp.n_vocab - 1}")
        cache.check_current()
        cache.check_room(len(ids))
        with torch.no_grad():
            if len(ids) == 1:
                return self._decode(ids[0], cache)
            outs = []
            for start in range(0, len(ids), UBATCH):
                chunk = ids[start : start + UBATCH]
                p0 = cache.n_past
                x = self.gw.embd[torch.tensor(chunk, device=self.device)].float()  # [n, n_embd]
                h = self._hidden(x, self._arange[p0 : p0 + len(chunk)], cache, p0 + len(chunk), p0)
                cache.n_past += len(chunk)
                if all_logits:
                    outs.append(self.gw.output.matmul(h, self.act_q8).cpu())
                elif start + UBATCH >= len(ids):
                    outs.append(self.gw.output.matmul(h[-1:], self.act_q8).cpu())
            return torch.cat(outs) if len(outs) > 1 else outs[0]

    def _bucket(self, t: int) -> int:
        """Positions a decode graph attends over for a token that sees t of them: a power of two >= MIN_BUCKET."""
        b = MIN_BUCKET
        while b < t:
            b *= 2
        return min(b, self.n_ctx)

    def _decode(self, token: int, cache: GpuKVCache) -> torch.Tensor:
        pos = cache.n_past
        self._tok.fill_(token)
        self._pos.fill_(pos)
        t = self._bucket(pos + 1)  # with or without graphs, so that both compute the same thing
        if not self.graphs:
            logits = self._decode_step(cache, t).cpu()
        elif t in self._graphs:
            self._graphs[t].replay()
            logits = self._graph_out[t].cpu()  # a copy: the next replay overwrites the buffer
        else:
            logits = self._capture(cache, t)
        cache.n_past += 1
        return logits

    def _capture(self, cache: GpuKVCache, t: int) -> torch.Tensor:
        """Run this step eagerly on a side stream (warm-up, and its result), then capture it for bucket t."""
        dev = self.device
        side = torch.cuda.Stream(dev)
        side.wait_stream(torch.cuda.current_stream(dev))
        with torch.cuda.stream(side):
            logits = self._decode_step(cache, t).cpu()
        torch.cuda.current_stream(dev).wait_stream(side)
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph, pool=self._pool):
                out = self._decode_step(cache, t)
        except RuntimeError as e:  # e.g. an op that cannot be captured: keep decoding eagerly, say so once
            warnings.warn(f"runner: CUDA graph capture failed ({e}); decoding without graphs", RuntimeWarning,
                          stacklevel=3)
            self.graphs = False
            return logits
        self._graphs[t], self._graph_out[t] = graph, out
        return logits

    def _decode_step(self, cache: GpuKVCache, t: int) -> torch.Tensor:
        """The token in self._tok at position self._pos over t cached positions -> float32 logits [1, n_vocab]
        on the device. Reads no host value of the token or position (graph-capturable)."""
        if self.fused:
            return self._decode_step_fused(cache, t)
        x = self.gw.embd[self._tok].float()  # [1, n_embd]
        h = self._hidden(x, self._pos, cache, t, None)
        return self.gw.output.matmul(h, self.act_q8)

    def _decode_step_fused(self, cache: GpuKVCache, t: int) -> torch.Tensor:
        """_decode_step with the fused kernels (cuda_kernels.fused): per layer one kernel for the residual add +
        RMSNorm + int8 rounding before q,k,v and before gate,up (the GEMVs read the rounded values as they are),
        one for bias + q/k norm + RoPE + the KV-cache write, one for SiLU x up + rounding before the down product.
        Same arithmetic as the unfused step up to float32 summation order (the rounding is the GEMV's own); the
        attention kernel (attn_decode_q8) rounds its float32 output to int8 directly, where SDPA's float16 output
        was rounded."""
        from awq_gguf.cuda_kernels.fused import (
            add_rmsnorm_q8,
            attention_smem_bytes,
            attn_decode_q8,
            rope_kv,
            silu_mul_q8,
        )

        hp, gw = self.hp, self.gw
        d, n_kv, g = hp.head_dim, hp.n_head_kv, hp.n_gqa
        neox = self.rope.mode != RopeMode.NORMAL
        sdpa_mask: list[tuple[int, torch.Tensor]] = []  # (keys, bool mask [1, keys]) once SDPA needs it
        x = gw.embd[self._tok].float()  # [1, n_embd], the residual stream (updated in place by the norm kernels)
        resid: torch.Tensor | None = None  # the last product's output, added into x by the next norm kernel
        attn_kernel = self.fused_attn and attention_smem_bytes(d, t) <= 48 * 1024

        def norm_q8(w: torch.Tensor, float_too: bool) -> tuple[object, torch.Tensor | None]:
            out = torch.empty_like(x) if float_too else None  # float activations only for float16 matrices
            return add_rmsnorm_q8(x, resid, w, hp.rms_eps, out=out), out

        for il, ly in enumerate(gw.layers):
            q, k, v = ly.qkv.call_q8(*norm_q8(ly.attn_norm, ly.qkv.needs_float))  # float32 [1, rows] each
            q16 = rope_kv(q, k, v, self.rope.cos, self.rope.sin, self._pos, hp.n_rot, neox,
                          cache.storage.k[il], cache.storage.v[il], ly.bq, ly.bk, ly.bv, ly.q_norm, ly.k_norm,
                          hp.rms_eps)  # float16 [1, n_head, d]; k, v stored at the position
            if attn_kernel and not ly.wo.needs_float:  # keys 0..pos, the output rounded for wo's GEMV
                att_q8 = attn_decode_q8(q16, cache.storage.k[il], cache.storage.v[il], self._pos, t, 1.0 / d**0.5)
                resid = ly.wo.matmul_q8(att_q8, None)  # float32 [1, n_embd]
            else:
                if not sdpa_mask:
                    _, _, tc, mask = self._masks(self._pos, t, None)[0]  # one query: mask [1, t]
                    sdpa_mask.append((tc, mask))
                tc, mask = sdpa_mask[0]
                keys, values = cache.keys_values(il, t)  # [n_kv, t, d]
                att = torch.nn.functional.scaled_dot_product_attention(
                    q16.view(1, n_kv, g, d), keys[None, :, :tc], values[None, :, :tc], attn_mask=mask,
                    scale=1.0 / d**0.5,
                )  # [1, n_kv, g, d]: head h = kv * g + j
                resid = ly.wo.matmul(att.reshape(1, hp.n_head * d), True)  # float32 [1, n_embd]
            gate, up = ly.gate_up.call_q8(*norm_q8(ly.ffn_norm, ly.gate_up.needs_float))
            h = torch.empty_like(gate, memory_format=torch.contiguous_format) if ly.w_down.needs_float else None
            resid = ly.w_down.matmul_q8(silu_mul_q8(gate, up, out=h), h)
        return gw.output.matmul_q8(*norm_q8(gw.output_norm, gw.output.needs_float))

    def _hidden(self, x: torch.Tensor, pos: torch.Tensor, cache: GpuKVCache, t: int, p0: int | None
                ) -> torch.Tensor:
        """x float32 [n, n_embd] at positions pos (int64 [n], device) -> final-normed hidden [n, n_embd].

        Keys 0..t-1 are attended (the ones after each query's position masked). p0: the first position when the
        host knows it (prompts: attention chunks then stop at the keys they can see); None in the decode step."""
        hp, q8 = self.hp, self.act_q8
        n = x.shape[0]
        rope_rows = self.rope.rows(pos)  # once per step, not per layer
        masks = self._masks(pos, t, p0)
        for il, ly in enumerate(self.gw.layers):
            h = self._norm(x, ly.attn_norm)
            q, k, v = ly.qkv(h, q8)  # float32 [n, rows] each (column views of one product where fused)
            if ly.bq is not None:
                q, k, v = q + ly.bq, k + ly.bk, v + ly.bv
            q = q.view(n, hp.n_head, hp.head_dim)
            k = k.view(n, hp.n_head_kv, hp.head_dim)
            v = v.view(n, hp.n_head_kv, hp.head_dim)
            if ly.q_norm is not None:
                q = self._norm(q, ly.q_norm)
                k = self._norm(k, ly.k_norm)
            q, k = self.rope.apply(q, rope_rows), self.rope.apply(k, rope_rows)
            cache.store(il, k.transpose(0, 1), v.transpose(0, 1), pos)
            keys, values = cache.keys_values(il, t)  # [n_kv, t, d]
            x = x + ly.wo.matmul(self._attention(q, keys, values, masks), q8)
            gate, up = ly.gate_up(self._norm(x, ly.ffn_norm), q8)
            x = x + ly.w_down.matmul(torch.nn.functional.silu(gate) * up, q8)
        return self._norm(x, self.gw.output_norm)

    def _norm(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """RMSNorm over the last dimension times w (runner.model.rms_norm's formula, one fused op)."""
        return torch.nn.functional.rms_norm(x, (x.shape[-1],), w, self.hp.rms_eps)

    def _masks(self, pos: torch.Tensor, t: int, p0: int | None) -> list[tuple[int, int, int, torch.Tensor]]:
        """Per chunk of ATTN_CHUNK queries: (first query c0, queries c, keys it sees, bool mask [n_gqa * c, keys]) with row
        j * c + i for query i, head j of a kv group (c == 1: [1, keys], broadcast). Made once per forward step:
        every layer attends with the same masks. p0: the first position when the host knows it (prompts: a chunk
        stops at the keys its last query can see); None: all t."""
        n, g = pos.shape[0], self.hp.n_gqa
        out = []
        for c0 in range(0, n, ATTN_CHUNK):
            c1 = min(n, c0 + ATTN_CHUNK)
            tc = t if p0 is None else min(t, p0 + c1)
            allowed = self._arange[:tc][None, :] <= pos[c0:c1, None]  # [c, tc]
            out.append((c0, c1 - c0, tc, allowed if c1 - c0 == 1 else allowed.repeat(g, 1)))
        return out

    def _attention(self, q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                   masks: list[tuple[int, int, int, torch.Tensor]]) -> torch.Tensor:
        """q float32 [n, n_head, d]; keys/values [n_kv, t, d] -> [n, n_head * d] in the cache's dtype, causal
        through masks (_masks). Query head h reads kv head h // n_gqa: the n_gqa heads of a kv head are put side by
        side as n_gqa * n queries of that head, so one fused attention call (SDPA) serves grouped-query attention."""
        hp = self.hp
        n, d, g, n_kv = q.shape[0], hp.head_dim, hp.n_gqa, hp.n_head_kv
        qg = q.to(keys.dtype).view(n, n_kv, g, d).permute(1, 2, 0, 3)  # [n_kv, g, n, d]
        outs = []
        for c0, c, tc, mask in masks:
            qc = qg[:, :, c0 : c0 + c].reshape(n_kv, g * c, d)
            out = torch.nn.functional.scaled_dot_product_attention(
                qc[None], keys[None, :, :tc], values[None, :, :tc], attn_mask=mask, scale=1.0 / d**0.5
            )[0]  # [n_kv, g * c, d]
            outs.append(out.view(n_kv, g, c, d).permute(2, 0, 1, 3).reshape(c, hp.n_head * d))
        return outs[0] if len(outs) == 1 else torch.cat(outs)
