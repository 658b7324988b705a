"""Matrix products on the file's (quantized) weights: the one place the kernels are chosen.

A backend implements two operations on a QTensor (the raw GGUF bytes of one weight matrix):
  matmul(w, x)     x float32 [n, cols]  ->  float32 [n, rows]   (x @ W^T, what ggml_mul_mat computes)
  get_rows(w, ids) ids int64 [m]        ->  float32 [m, cols]   (embedding lookup)

Backends:
  torch    dequantizes each matrix once with awq_gguf.convert.quants (bit-exact with ggml), caches the float32
           copy, and multiplies in torch. Simple and exact, but streams 4 bytes per weight: fine for the demo model.
  kernels  awq_gguf.cpu_kernels (C SIMD, quantized dot products); weight types it lacks go to the torch backend.
           Q4_0, Q4_1, Q5_0, Q5_1, Q2_K and Q3_K matrices are multiplied on a copy of their rows interleaved by 8,
           made once on first use (cpu_kernels.pack_weights, where the ISA has a kernel for it; AWQ_GGUF_PACKED=0
           turns it off): prompt batches here, one-token steps in the fused decode step (model.py).
  auto     kernels when awq_gguf.cpu_kernels provides matmul, else torch.
The choice is `select_backend(name)`; `AWQ_GGUF_BACKEND` overrides the default.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from gguf import GGMLQuantizationType as QT

from awq_gguf.runner.errors import RunnerError

DEFAULT_BACKEND = "auto"
BACKENDS = ("auto", "torch", "kernels")

# F32 matrices stay with torch (BLAS on the mmap in place); the kernels take every type in cpu_kernels.SUPPORTED.
TORCH_ONLY_TYPES = frozenset({QT.F32, QT.BF16})


@dataclass(eq=False)
class QTensor:
    """One weight matrix as stored in the file: `raw` is uint8 [rows, row_bytes], a view into the mmap."""

    name: str
    qtype: QT
    rows: int
    cols: int
    raw: np.ndarray

    @property
    def nbytes(self) -> int:
        return int(self.raw.nbytes)


class Backend(Protocol):
    name: str

    def matmul(self, w: QTensor, x: torch.Tensor) -> torch.Tensor: ...

    def get_rows(self, w: QTensor, ids: torch.Tensor) -> torch.Tensor: ...


def _bytes_tensor(raw: np.ndarray) -> torch.Tensor:
    """uint8 numpy view of the read-only mmap -> torch tensor sharing it (never written)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "non-writable array": we only read it
        return torch.from_numpy(raw)


def dequantize_rows(w: QTensor, raw: np.ndarray) -> torch.Tensor:
    """uint8 [m, row_bytes] rows of w -> float32 [m, cols]."""
    from awq_gguf.convert.quants import dequantize

    if w.qtype == QT.F32:
        return _bytes_tensor(np.ascontiguousarray(raw)).view(torch.float32)
    return dequantize(_bytes_tensor(np.ascontiguousarray(raw)), w.qtype)


class TorchBackend:
    """Dequantize once (cached per tensor), multiply in float32 torch.

    emulate_llama_cpp: round the activations first as ggml's CPU matmul does (act_quant), so the products
    match llama.cpp's to float rounding; for verification, not accuracy."""

    def __init__(self, emulate_llama_cpp: bool = False) -> None:
        self._cache: dict[int, torch.Tensor] = {}
        self.emulate = emulate_llama_cpp
        self.name = "torch+ggml-rounding" if emulate_llama_cpp else "torch"

    def weight(self, w: QTensor) -> torch.Tensor:
        """float32 [rows, cols]; F32 tensors are used in place (no copy)."""
        key = id(w)
        if key not in self._cache:
            self._cache[key] = dequantize_rows(w, w.raw)
        return self._cache[key]

    def matmul(self, w: QTensor, x: torch.Tensor) -> torch.Tensor:
        if self.emulate:
            from awq_gguf.runner.act_quant import q8_1_min_correction, round_activations

            fix = q8_1_min_correction(x, w.raw, w.qtype)
            y = round_activations(x, w.qtype) @ self.weight(w).T
            return y if fix is None else y + fix
        return x @ self.weight(w).T  # [n, cols] @ [cols, rows] -> [n, rows]

    def get_rows(self, w: QTensor, ids: torch.Tensor) -> torch.Tensor:
        if id(w) in self._cache:
            return self._cache[id(w)][ids]
        return dequantize_rows(w, w.raw[ids.numpy()])


class KernelBackend:
    """awq_gguf.cpu_kernels for the types it supports; the torch backend for the rest (F32/F16 norms, ...)."""

    def __init__(self, threads: int | None = None) -> None:
        from awq_gguf import cpu_kernels

        self._k = cpu_kernels
        self._threads = threads
        self._fallback = TorchBackend()
        self._types = frozenset(cpu_kernels.SUPPORTED) - TORCH_ONLY_TYPES
        self.name = f"kernels:{cpu_kernels.isa_detail()}"
        self._pack = os.environ.get("AWQ_GGUF_PACKED", "1") != "0"
        self._packed: dict[int, object] = {}  # id(QTensor) -> cpu_kernels.PackedMatrix, or None: not packable

    def packed(self, w: QTensor):
        """w's rows interleaved by 8 for the prompt GEMM (made on first use, then cached), or None where the
        type, the row count or the ISA has no such kernel."""
        key = id(w)
        if key not in self._packed:
            # packed_gemm_native: the type has an interleaved layout and this ISA a kernel for it
            ok = (self._pack and w.qtype in self._types and w.rows % 8 == 0 and w.rows > 0
                  and self._k.packed_gemm_native(w.qtype))
            self._packed[key] = self._k.pack_weights(w.raw, w.qtype) if ok else None
        return self._packed[key]

    def matmul(self, w: QTensor, x: torch.Tensor) -> torch.Tensor:
        if w.qtype not in self._types:
            return self._fallback.matmul(w, x)
        xs = np.ascontiguousarray(x.detach().numpy(), dtype=np.float32)  # [n, cols]
        p = self.packed(w) if xs.shape[0] > 1 else None
        if p is not None:
            return torch.from_numpy(self._k.matmul_packed(p, xs, threads=self._threads))  # [n, rows]
        return torch.from_numpy(self._k.matmul(w.raw, w.qtype, xs, threads=self._threads))  # [n, rows]

    def get_rows(self, w: QTensor, ids: torch.Tensor) -> torch.Tensor:
        if w.qtype not in self._types:
            return self._fallback.get_rows(w, ids)
        return torch.from_numpy(self._k.get_rows(w.raw, w.qtype, ids.numpy(), threads=self._threads))


def kernels_available() -> bool:
    try:
        from awq_gguf import cpu_kernels
    except ImportError:
        return False
    return callable(getattr(cpu_kernels, "matmul", None)) and callable(getattr(cpu_kernels, "get_rows", None))


def select_backend(name: str | None = None, threads: int | None = None, emulate_llama_cpp: bool = False) -> Backend:
    """Backend by name (auto, torch, kernels); None means $AWQ_GGUF_BACKEND or DEFAULT_BACKEND.

    emulate_llama_cpp selects the torch backend with ggml's activation rounding (tests and diagnostics)."""
    if emulate_llama_cpp:
        return TorchBackend(emulate_llama_cpp=True)
    name = name or os.environ.get("AWQ_GGUF_BACKEND") or DEFAULT_BACKEND
    if name not in BACKENDS:
        raise RunnerError(f"unknown runner backend {name!r}; choose one of {', '.join(BACKENDS)}")
    if name == "auto":
        name = "kernels" if kernels_available() else "torch"
    if name == "kernels":
        if not kernels_available():
            raise RunnerError("the kernels backend needs awq_gguf.cpu_kernels, which is not built here; use --backend torch")
        return KernelBackend(threads)
    return TorchBackend()
