"""CUDA kernels: importing, availability reporting, argument checks that need no GPU, API declarations in sync."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from awq_gguf.cuda_kernels import _build, _lib
from gguf import GGMLQuantizationType as T

from awq_gguf import cuda_kernels

SRC = Path(_build.__file__).parent


def test_import_and_availability_are_reported():
    ok = cuda_kernels.available()
    assert isinstance(ok, bool)
    reason = cuda_kernels.unavailable_reason()
    assert isinstance(reason, str)
    assert (reason == "") == ok
    if not torch.cuda.is_available():
        assert not ok and "CUDA" in reason


def test_missing_nvcc_is_a_clear_build_error(monkeypatch, tmp_path):
    monkeypatch.setenv("AWQ_GGUF_NVCC", str(tmp_path / "no-nvcc"))
    assert _build.find_nvcc() is None
    with pytest.raises(_build.BuildError, match="nvcc not found"):
        _build.build()


def test_arch_list(monkeypatch):
    monkeypatch.setenv("AWQ_GGUF_CUDA_ARCH", "80;90")
    assert _build.built_archs() == ["80", "90"]
    assert _build.arch_flags() == ["-gencode=arch=compute_80,code=sm_80", "-gencode=arch=compute_90,code=sm_90"]
    monkeypatch.delenv("AWQ_GGUF_CUDA_ARCH")
    assert _build.built_archs() == ["90"]


def test_cdef_matches_api_header():
    header = (SRC / "api.h").read_text()
    declared = set(re.findall(r"AWQ_API [\w\s\*]+?\b(awq_cuda_\w+)\(", header))
    bound = set(re.findall(r"\b(awq_cuda_\w+)\(", _lib.CDEF))
    assert declared == bound and len(bound) == 9
    assert f"#define AWQ_CUDA_ABI {_lib.ABI_VERSION}" in header


def test_every_source_is_built():
    for src in _build.SOURCES:
        assert (SRC / src).is_file()
    assert {p.name for p in SRC.glob("*.cu")} == set(_build.SOURCES)


def test_unsupported_type_and_bad_shapes_are_refused():
    from awq_gguf.cuda_kernels import QuantMatrix

    raw = torch.zeros(4 * 176, dtype=torch.uint8)
    with pytest.raises(ValueError, match="no CUDA kernels for Q5_K"):
        QuantMatrix.from_gguf(raw, T.Q5_K, 4, 256)
    with pytest.raises(ValueError, match="multiple of 256"):
        QuantMatrix.from_gguf(raw, T.Q4_K, 4, 100)
    with pytest.raises(ValueError, match="needs"):
        QuantMatrix.from_gguf(raw, T.Q4_K, 4, 256)
    with pytest.raises(TypeError, match="uint8"):
        QuantMatrix.from_gguf(raw.float(), T.Q4_K, 4, 256)


def test_batch1_default_modes_follow_the_type_and_shape():
    """mode 0 at batch 1 resolves through ops.BATCH1_RULES, then BATCH1_DEFAULT; explicit choices and larger batches
    pass through unchanged. The C fallback (gemv.cuh launch_gemv) makes the same choice."""
    from types import SimpleNamespace

    from awq_gguf.cuda_kernels import ops

    def m(qt, rows, cols):
        return SimpleNamespace(qtype=qt, rows=rows, cols=cols)

    assert ops.resolve_mode(m(T.Q4_0, 4096, 4096), 1, 0, 0) == (4, 14)
    assert ops.resolve_mode(m(T.Q8_0, 4096, 14336), 1, 0, 0) == (4, 14)
    assert ops.resolve_mode(m(T.Q4_K, 14336, 4096), 1, 0, 0) == (4, 12)
    assert ops.resolve_mode(m(T.Q4_K, 4096, 14336), 1, 0, 0) == (4, 14)
    assert ops.resolve_mode(m(T.Q4_K, 2048, 2048), 1, 0, 0) == (4, 14)
    assert ops.resolve_mode(m(T.Q4_K, 4096, 4096), 1, 0, 0) == (4, 12)  # square beyond 2048 rows
    assert ops.resolve_mode(m(T.Q6_K, 14336, 4096), 1, 0, 0) == (4, 12)
    assert ops.resolve_mode(m(T.Q6_K, 4096, 14336), 1, 0, 0) == (4, 19)
    assert ops.resolve_mode(m(T.Q6_K, 4096, 4096), 1, 0, 0) == (4, 14)
    assert ops.resolve_mode(m(T.Q4_0, 4096, 4096), 8, 0, 0) == (0, 0)  # the library's batch > 1 default
    assert ops.resolve_mode(m(T.Q4_0, 4096, 4096), 1, 2, 5) == (2, 5)
    src = (SRC / "gemv.cuh").read_text()
    assert ": (F::kType == 14 && wide) ? 19" in src and "const bool wide = cols > rows, square = cols == rows;" in src
    assert ("(F::kType == 2 || F::kType == 8 || (F::kType == 14 && square) ||\n"
            "                (F::kType == 12 && (wide || (square && rows <= 2048)))) ? 14 : 12;") in src
    for rule in ops.BATCH1_RULES:
        assert rule.mode in ops.Q8_MODES and rule.kind in ("wide", "square", "tall"), rule
    for bad in ({"kind": "long"}, {"mode": 3}, {"nr": 3}, {"max_rows": -1}):
        with pytest.raises(ValueError, match="ShapeRule"):
            ops.ShapeRule(**{"qtype": T.Q4_K, "kind": "wide", "mode": 14, **bad})
    for qt, (mode, _) in ops.BATCH1_DEFAULT.items():
        assert mode in ops.Q8_MODES, f"{qt.name}: default mode {mode} is not an int8 mode"
