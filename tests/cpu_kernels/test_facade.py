"""The Python facade: ISA override through AWQ_GGUF_ISA, and clear exceptions (never a crash) on bad input."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

import numpy as np
import pytest
from gguf import GGMLQuantizationType as T

from awq_gguf import cpu_kernels as ck

from kernel_blocks import random_rows


def _isa_in_child(value: str) -> subprocess.CompletedProcess:
    code = "from awq_gguf import cpu_kernels as ck; print(ck.isa())"
    env = {**os.environ, "AWQ_GGUF_ISA": value}
    # run outside the repo root: `python -c` puts the cwd first on sys.path, and the repo's awq_gguf/ folder
    # (without the mapped subpackages) would shadow an installed, non-editable package
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300,
                          cwd=tempfile.gettempdir())


@pytest.mark.parametrize("isa", ck.available_isas())
def test_env_override(isa: str) -> None:
    res = _isa_in_child(isa)
    assert res.returncode == 0 and res.stdout.strip() == isa, res.stderr


def test_env_override_unknown_or_unavailable() -> None:
    res = _isa_in_child("sse9")
    assert res.returncode != 0 and "KernelUnavailableError" in res.stderr and "sse9" in res.stderr
    missing = [i for i in ck.ISAS if i not in ck.available_isas()]
    if missing:
        res = _isa_in_child(missing[0])
        assert res.returncode != 0 and "not available" in res.stderr


def test_default_is_best() -> None:
    if "AWQ_GGUF_ISA" not in os.environ:
        assert ck.isa() == ck.available_isas()[-1]


@pytest.fixture
def w() -> np.ndarray:
    return random_rows(np.random.default_rng(0), T.Q4_0, 8, 64)


def test_bad_arguments(w: np.ndarray) -> None:
    x = np.ones((2, 64), np.float32)
    with pytest.raises(ck.KernelShapeError, match=r"96 columns but w \(8, 36\)"):
        ck.matmul(w, T.Q4_0, np.ones((2, 96), np.float32))
    with pytest.raises(ck.KernelShapeError, match="columns"):
        ck.matmul(random_rows(np.random.default_rng(0), T.Q4_K, 2, 256), T.Q4_K, np.ones((1, 255), np.float32))
    with pytest.raises(ck.KernelShapeError, match="whole number of Q8_0"):
        ck.matmul(w, T.Q8_0, x)  # Q4_0 bytes read as Q8_0: 36 B rows are no whole Q8_0 blocks
    with pytest.raises(ck.KernelTypeError, match="float32"):
        ck.matmul(w, T.Q4_0, x.astype(np.float64))
    with pytest.raises(ck.KernelTypeError, match="uint8"):
        ck.matmul(w.astype(np.int16), T.Q4_0, x)
    with pytest.raises(ck.KernelShapeError, match="C-contiguous"):
        ck.matmul(np.asfortranarray(w), T.Q4_0, x)
    with pytest.raises(ck.KernelShapeError, match="C-contiguous"):
        ck.matmul(w, T.Q4_0, np.ones((64, 2), np.float32).T)
    with pytest.raises(ck.KernelShapeError, match="2-D"):
        ck.matmul(w.reshape(-1), T.Q4_0, x)
    with pytest.raises(ck.KernelShapeError, match="whole number"):
        ck.matmul(w[:, :-1].copy(), T.Q4_0, x)
    with pytest.raises(ck.KernelTypeError, match="not supported"):
        ck.matmul(w, T.IQ2_XXS, x)
    with pytest.raises(ck.KernelTypeError, match="not a GGML type"):
        ck.matmul(w, 999, x)
    with pytest.raises(ck.KernelShapeError, match="threads"):
        ck.matmul(w, T.Q4_0, x, threads=0)
    with pytest.raises(ck.KernelShapeError, match="out must"):
        ck.matmul(w, T.Q4_0, x, out=np.empty((2, 9), np.float32))
    with pytest.raises(ck.KernelShapeError, match=r"\[0, 8\)"):
        ck.get_rows(w, T.Q4_0, [0, 8])
    with pytest.raises(ck.KernelShapeError, match=r"\[0, 8\)"):
        ck.get_rows(w, T.Q4_0, [-1])
    with pytest.raises(ck.KernelTypeError, match="integer"):
        ck.get_rows(w, T.Q4_0, [0.5])
    with pytest.raises(ck.KernelError):  # the common base class
        ck.dequantize(w, T.Q4_K)
    unaligned = np.frombuffer(np.zeros(2 * 64 * 4 + 1, np.uint8).tobytes()[1:], np.float32).reshape(2, 64)
    if not unaligned.flags.aligned:
        with pytest.raises(ck.KernelShapeError, match="aligned"):
            ck.matmul(w, T.Q4_0, unaligned)


def test_shapes(w: np.ndarray) -> None:
    x = np.random.default_rng(1).standard_normal(64).astype(np.float32)
    y1 = ck.matmul(w, T.Q4_0, x)
    assert y1.shape == (8,)
    np.testing.assert_array_equal(y1, ck.matmul(w, T.Q4_0, x[None])[0])
    assert ck.matmul(w, T.Q4_0, np.zeros((0, 64), np.float32)).shape == (0, 8)
    assert ck.matmul(w[:0], T.Q4_0, x[None]).shape == (1, 0)
    assert ck.get_rows(w, T.Q4_0, np.array([], np.int64)).shape == (0, 64)
    f32 = np.random.default_rng(2).standard_normal((3, 5)).astype(np.float32)
    np.testing.assert_array_equal(ck.dequantize(f32, T.F32), f32)  # float arrays accepted for F32/F16
