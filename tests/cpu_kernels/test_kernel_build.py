"""The build never breaks installation: without a usable C compiler the SIMD variants are skipped with a note,
and the lazy build reports KernelBuildError (an ImportError) instead of crashing."""

from __future__ import annotations

from pathlib import Path

import pytest

from awq_gguf.cpu_kernels import _build, _loader


def test_isa_objects_skipped_without_compiler(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CC", "/bin/false")
    objs, macros, notes = _build.compile_isa_objects(tmp_path)
    assert objs == [] and macros == []
    assert len(notes) == len(_build.isa_variants()), notes


def test_isa_objects_with_missing_compiler(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    objs, _, notes = _build.compile_isa_objects(tmp_path)
    assert objs == [] and len(notes) == len(_build.isa_variants())


def test_lazy_build_without_compiler_raises_clearly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CC", "/bin/false")
    with pytest.raises(_loader.KernelBuildError, match="C compiler"):
        _loader._build_into(tmp_path / "cache")


def test_cdef_matches_api() -> None:
    text = _build.cdef_text()
    assert "#" not in text and "awq_matmul" in text and "awq_get_rows" in text
