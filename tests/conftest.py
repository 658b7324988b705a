"""Shared fixtures: tiny random models per architecture, built once per session, and a CLI runner."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

# Tests run eager: torch.compile's first compile of each quantizer costs a minute on a cold cache (its own test,
# tests/convert/quants/test_compiled.py, turns it on). One torch thread: the tensors here are small, and on a
# shared 2-core machine a second thread mostly waits.
os.environ.setdefault("AWQ_GGUF_COMPILE", "0")
torch.set_num_threads(1)

from tiny_models import ARCH_CONFIGS, make_tiny_model  # noqa: E402

ARCHS = list(ARCH_CONFIGS)


def _has_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:
        return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _has_cuda():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU; none here")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory):
    """tiny_model(arch) -> folder of a random 2-layer HF model of that architecture (built once)."""
    built: dict[str, Path] = {}

    def get(arch: str) -> Path:
        if arch not in built:
            built[arch] = make_tiny_model(tmp_path_factory.mktemp(arch), arch)
        return built[arch]

    return get


@pytest.fixture()
def cli():
    """cli(*args) -> click Result of `awq-gguf args...`, run in-process."""
    from typer.testing import CliRunner

    from awq_gguf.cli import app

    runner = CliRunner()

    def run(*args: object):
        return runner.invoke(app, [str(a) for a in args])

    return run
