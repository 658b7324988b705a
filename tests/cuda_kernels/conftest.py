"""Fixtures of the CUDA kernel tests: the loaded library and a fresh seed per test module (printed, to replay)."""

from __future__ import annotations

import random

import pytest


@pytest.fixture(scope="module")
def ck():
    """awq_gguf.cuda_kernels, built and loaded; a GPU test fails (not skips) when the library cannot load."""
    from awq_gguf import cuda_kernels

    if not cuda_kernels.available():
        pytest.fail(cuda_kernels.unavailable_reason())
    return cuda_kernels


@pytest.fixture(scope="module")
def seed(request: pytest.FixtureRequest) -> int:
    s = random.SystemRandom().randrange(2**31)
    print(f"{request.module.__name__}: seed {s}")
    return s
