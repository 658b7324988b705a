"""ConvertConfig: the method defaults (AWQ, or rtn with an imatrix) and the combinations it refuses."""

from __future__ import annotations

from pathlib import Path

import pytest

from awq_gguf.config import ConfigError, ConvertConfig


def test_awq_is_the_default_method() -> None:
    assert ConvertConfig().method == "awq"


def test_an_imatrix_file_makes_rtn_the_default(tmp_path: Path) -> None:
    imat = tmp_path / "imatrix.gguf"
    imat.write_bytes(b"GGUF")
    assert ConvertConfig(imatrix=imat).method == "rtn"
    with pytest.raises(ConfigError, match="--imatrix is for --method rtn"):
        ConvertConfig(imatrix=imat, method="awq")


def test_awq_only_options_are_refused_with_rtn(tmp_path: Path) -> None:
    calib = tmp_path / "c.txt"
    calib.write_text("text")
    with pytest.raises(ConfigError, match="belong to --method awq"):
        ConvertConfig(method="rtn", calib=calib)
    with pytest.raises(ConfigError, match="unknown --method 'gptq'"):
        ConvertConfig(method="gptq")
