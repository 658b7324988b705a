"""One comparison the layout tests share: values computed exactly (float64) against a float32 reference that rounds
once, e.g. gguf's dequantize."""

from __future__ import annotations

import numpy as np


def assert_within_f32_ulp(got: np.ndarray, want: np.ndarray, what: str) -> None:
    """Every value of got within one float32 ulp of want (both finite)."""
    assert got.shape == want.shape, f"{what}: shapes {got.shape} and {want.shape}"
    assert np.isfinite(want).all(), f"{what}: the reference has non-finite values"
    ulp = np.spacing(np.abs(want).astype(np.float32)).astype(np.float64)
    bad = np.abs(got - want) > ulp
    assert not bad.any(), f"{what}: {bad.sum()} of {bad.size} values off by more than a float32 ulp"
