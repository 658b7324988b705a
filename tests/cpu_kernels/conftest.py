"""Fixtures of the kernel tests: every ISA variant built for this CPU, one at a time."""

from __future__ import annotations

import pytest

from awq_gguf import cpu_kernels as ck


@pytest.fixture(params=ck.available_isas())
def isa(request: pytest.FixtureRequest):
    """Runs the test once per available ISA variant, restoring the previous choice afterwards."""
    prev = ck.isa()
    ck.set_isa(request.param)
    yield request.param
    ck.set_isa(prev)
