"""The model's weights on a CUDA device, and the matrix products the GPU runner does with them.

Every matrix of a type the project's CUDA kernels take (awq_gguf.cuda_kernels: Q4_0, Q8_0, Q4_K, Q6_K) is
uploaded as the file's bytes (cuda_kernels.QuantMatrix, same size as in the file) and multiplied by those
kernels: the GEMV for up to MAX_GEMV_BATCH rows of activations (decode), dequantize-to-fp16 then cuBLAS for
more (prompts). Matrices of other types (float, Q5_0, Q4_1, the other K types, ...) are dequantized once on
the CPU (convert.quants, bit-exact with ggml) and kept as float16. The token embedding is also kept as a float16
table for the row lookup (a file-layout matrix has no row gather), beside the quantized copy when the output
head is tied to it. Norms and biases are float32. Matrices that multiply the same input (q, k, v; gate, up)
are concatenated by rows where their types agree (Projection), so a decode step runs fewer, larger GEMVs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from awq_gguf.runner.backend import QTensor, dequantize_rows
from awq_gguf.runner.weights import ModelWeights


def gemv_choice() -> tuple[int, int]:
    """(mode, nr) of the int8-activation GEMVs: $AWQ_GGUF_GEMV as "MODE,NR" (e.g. "7,2", for tuning runs:
    tools/bench_gpu_runner.py --gemv-sweep), else (0, 0), the library's defaults per type and batch."""
    env = os.environ.get("AWQ_GGUF_GEMV", "")
    if not env:
        return 0, 0
    try:
        mode, nr = (int(v) for v in env.split(","))
    except ValueError:
        raise ValueError(f"AWQ_GGUF_GEMV must be MODE,NR (e.g. 7,2), got {env!r}") from None
    return mode, nr


@dataclass(eq=False)
class GpuMatrix:
    """One [rows, cols] weight matrix on the GPU: `quant` (the kernels' layout) or `dense` float16."""

    name: str
    rows: int
    cols: int
    quant: object | None  # awq_gguf.cuda_kernels.QuantMatrix
    dense: torch.Tensor | None  # float16 [rows, cols]

    @property
    def nbytes(self) -> int:
        return self.quant.nbytes if self.quant is not None else self.dense.numel() * self.dense.element_size()

    def matmul(self, x: torch.Tensor, act_q8: bool = True) -> torch.Tensor:
        """x float32 or float16 [n, cols] -> float32 [n, rows] = x W^T.

        act_q8: the GEMV rounds x to int8 per 32 values (the kernels' default, as llama.cpp's GPU and CPU
        GEMV do; float32 x is rounded from float32, no float16 copy first); False keeps x as float16 (the float
        GEMV modes, float32 accumulation)."""
        from awq_gguf import cuda_kernels as ck
        from awq_gguf.cuda_kernels import ops

        n = x.shape[0]
        if self.quant is not None and n <= ops.MAX_GEMV_BATCH and act_q8:
            mode, nr = gemv_choice()
            return ck.gemv(x.contiguous(), self.quant, nr=nr, mode=mode)  # float32 [n, rows]; x rounded to int8
        x16 = x.to(torch.float16).contiguous()  # [n, cols] (no copy when x is already contiguous float16)
        if self.quant is None:
            return torch.nn.functional.linear(x16, self.dense).float()
        if n <= ops.MAX_GEMV_BATCH:
            return ck.gemv(x16, self.quant, mode=3 if n == 1 else 1)  # the float modes, batch 1 / more
        w16 = ck.dequantize(self.quant, torch.float16)  # [rows, cols], freed after the product
        return torch.matmul(x16, w16.T).float()

    def matmul_q8(self, act: object, x: torch.Tensor | None) -> torch.Tensor:
        """The product on activations a fused kernel already rounded to int8 (act: cuda_kernels.fused.Q8Act
        [n, cols]) -> float32 [n, rows]; a float16 matrix multiplies x instead (float32 [n, cols], the same
        activations unrounded: the fused kernel's float output, needed where `dense`)."""
        if self.quant is not None and act.batch <= 16:
            from awq_gguf.cuda_kernels.fused import gemv_q8

            mode, nr = gemv_choice()
            return gemv_q8(act, self.quant, nr=nr, mode=mode)
        if x is None:
            raise ValueError(f"{self.name}: a float16 matrix needs the float activations")
        return self.matmul(x, True)

    @property
    def needs_float(self) -> bool:
        """matmul_q8 reads the float activations (a float16 matrix)."""
        return self.quant is None


@dataclass(eq=False)
class Projection:
    """Matrices that multiply the same input (q, k, v; gate, up), their rows concatenated into one matrix where
    consecutive ones share a type: one GEMV (and one activation rounding) instead of several."""

    parts: list[GpuMatrix]  # the concatenated matrices, in output order
    splits: list[list[int]]  # per part: the output rows of each original matrix in it

    def __call__(self, x: torch.Tensor, act_q8: bool = True) -> list[torch.Tensor]:
        """x [n, cols] -> one float32 [n, rows_i] per original matrix (column views of the parts' outputs)."""
        outs: list[torch.Tensor] = []
        for part, sizes in zip(self.parts, self.splits):
            y = part.matmul(x, act_q8)  # [n, sum(sizes)]
            outs.extend(y.split(sizes, dim=1) if len(sizes) > 1 else (y,))
        return outs

    def call_q8(self, act: object, x: torch.Tensor | None) -> list[torch.Tensor]:
        """As __call__ on activations already rounded to int8 (GpuMatrix.matmul_q8): every quantized part reads
        the same act, so the rounding is done once for all of them."""
        outs: list[torch.Tensor] = []
        for part, sizes in zip(self.parts, self.splits):
            y = part.matmul_q8(act, x)  # [n, sum(sizes)]
            outs.extend(y.split(sizes, dim=1) if len(sizes) > 1 else (y,))
        return outs

    @property
    def needs_float(self) -> bool:
        return any(p.needs_float for p in self.parts)


@dataclass
class GpuLayer:
    attn_norm: torch.Tensor  # float32 [n_embd]
    qkv: Projection  # -> q [n, n_head * head_dim], k, v [n, n_head_kv * head_dim]
    wo: GpuMatrix  # [n_embd, n_head * head_dim]
    bq: torch.Tensor | None  # [n_head * head_dim] (qwen2)
    bk: torch.Tensor | None
    bv: torch.Tensor | None
    q_norm: torch.Tensor | None  # [head_dim] (qwen3)
    k_norm: torch.Tensor | None
    ffn_norm: torch.Tensor  # [n_embd]
    gate_up: Projection  # -> gate, up [n, n_ff]
    w_down: GpuMatrix  # [n_embd, n_ff]


@dataclass
class GpuWeights:
    embd: torch.Tensor  # float16 [n_vocab, n_embd]: the token embedding table for row lookups
    output_norm: torch.Tensor  # float32 [n_embd]
    output: GpuMatrix  # [n_vocab, n_embd]
    layers: list[GpuLayer]

    def matrices(self) -> list[GpuMatrix]:
        out = [m for ly in self.layers for m in (*ly.qkv.parts, ly.wo, *ly.gate_up.parts, ly.w_down)]
        return out + [self.output]


def upload_matrix(w: QTensor, device: torch.device, kernels: bool = True) -> GpuMatrix:
    """The file's matrix on `device`: the kernels' layout when they take its type (and `kernels`), else float16."""
    from awq_gguf import cuda_kernels as ck

    if kernels and w.qtype in ck.SUPPORTED:
        qm = ck.QuantMatrix.from_gguf(w.raw, w.qtype, w.rows, w.cols, device=device)
        return GpuMatrix(w.name, w.rows, w.cols, qm, None)
    dense = dequantize_rows(w, w.raw).reshape(w.rows, w.cols).to(device=device, dtype=torch.float16)
    return GpuMatrix(w.name, w.rows, w.cols, None, dense)


def upload_projection(ws: list[QTensor], device: torch.device, kernels: bool = True) -> Projection:
    """Consecutive matrices of one type (and width) become one matrix: their file rows concatenated."""
    groups: list[list[QTensor]] = []
    for w in ws:
        if groups and groups[-1][0].qtype == w.qtype and groups[-1][0].cols == w.cols:
            groups[-1].append(w)
        else:
            groups.append([w])
    parts = []
    for grp in groups:
        raw = np.concatenate([w.raw for w in grp]) if len(grp) > 1 else grp[0].raw  # [sum(rows), row_bytes]
        name = "+".join(w.name for w in grp)
        parts.append(upload_matrix(QTensor(name, grp[0].qtype, raw.shape[0], grp[0].cols, raw), device, kernels))
    return Projection(parts, [[w.rows for w in grp] for grp in groups])


def upload_weights(w: ModelWeights, device: torch.device, kernels: bool = True) -> GpuWeights:
    """Every tensor of the model on `device` (see the module docstring for the layouts). kernels=False keeps
    every matrix as float16 (the forward pass without the CUDA kernels: what the CPU tests of its graph use)."""
    from awq_gguf import cuda_kernels as ck

    def vec(t: torch.Tensor | None) -> torch.Tensor | None:
        return None if t is None else t.to(device=device, dtype=torch.float32)

    def mat(m: QTensor) -> GpuMatrix:
        return upload_matrix(m, device, kernels)

    layers = [
        GpuLayer(
            attn_norm=vec(lw.attn_norm), qkv=upload_projection([lw.wq, lw.wk, lw.wv], device, kernels),
            wo=mat(lw.wo), bq=vec(lw.bq), bk=vec(lw.bk), bv=vec(lw.bv), q_norm=vec(lw.q_norm),
            k_norm=vec(lw.k_norm), ffn_norm=vec(lw.ffn_norm),
            gate_up=upload_projection([lw.w_gate, lw.w_up], device, kernels), w_down=mat(lw.w_down),
        )
        for lw in w.layers
    ]
    output = mat(w.output)
    if w.output is w.token_embd and output.dense is not None:
        embd = output.dense  # tied and already float16: one table
    else:
        token = output if w.output is w.token_embd else mat(w.token_embd)
        embd = token.dense if token.quant is None else ck.dequantize(token.quant, torch.float16)
    return GpuWeights(embd, vec(w.output_norm), output, layers)
