"""tools/bench_gpu_defaults.py: variant rules and the resolver they make (no GPU needed)."""
from __future__ import annotations

from types import ModuleType, SimpleNamespace

import pytest
from gguf import GGMLQuantizationType as T


@pytest.fixture(scope="module")
def bgd(load_tool) -> ModuleType:
    return load_tool("bench_gpu_defaults")


def test_variant_rules_parse(bgd: ModuleType) -> None:
    from awq_gguf.cuda_kernels.ops import ShapeRule

    assert bgd.parse_variant("Q4_K:wide:14+Q6_K:any<=4096:19/2") == [
        ShapeRule(T.Q4_K, "wide", 14, 4, 0), ShapeRule(T.Q6_K, "tall", 19, 2, 4096),
        ShapeRule(T.Q6_K, "wide", 19, 2, 4096), ShapeRule(T.Q6_K, "square", 19, 2, 4096)]
    assert bgd.parse_mode("12") == (12, 4) and bgd.parse_mode("13/1") == (13, 1)
    for bad in ("Q4_K:wide", "Q9_K:wide:14", "Q4_K:long:14", "Q4_K:wide:x", "Q4_K:wide:14/3", "Q4_K:wide:14/",
                "Q4_K:wide<=:14", "Q4_K:wide<=x:14"):
        with pytest.raises(ValueError, match="must be TYPE:SHAPE|SHAPE must be"):
            bgd.parse_variant(bad)
    with pytest.raises(ValueError, match="int8 mode"):  # ops.ShapeRule's own check
        bgd.parse_variant("Q4_K:wide:3")


def test_resolver_applies_rules_at_batch_1_only(bgd: ModuleType) -> None:
    def base(w, batch, nr, mode):
        return (nr, mode) if mode else (4, 12)

    def m(qt, rows, cols):
        return SimpleNamespace(qtype=qt, rows=rows, cols=cols)

    rm = bgd.resolver(bgd.parse_variant("Q4_K:wide:14+Q4_K:square:17+Q6_K:square:13/2+Q6_K:tall<=12288:13"), base)
    assert rm(m(T.Q6_K, 12288, 4096), 1, 0, 0) == (4, 13)
    assert rm(m(T.Q6_K, 14336, 4096), 1, 0, 0) == (4, 12)  # over the rows bound: the base
    assert rm(m(T.Q4_K, 4096, 11008), 1, 0, 0) == (4, 14)
    assert rm(m(T.Q6_K, 4096, 4096), 1, 0, 0) == (2, 13)
    assert rm(m(T.Q4_K, 4096, 4096), 1, 0, 0) == (4, 17)
    assert rm(m(T.Q4_K, 11008, 4096), 1, 0, 0) == (4, 12)  # tall: no rule, the base
    assert rm(m(T.Q6_K, 4096, 11008), 1, 0, 0) == (4, 12)  # other type
    assert rm(m(T.Q4_K, 4096, 11008), 8, 0, 0) == (4, 12)  # batch > 1
    assert rm(m(T.Q4_K, 4096, 11008), 1, 2, 5) == (2, 5)  # explicit choice


def test_bad_arguments_exit_2_in_one_line_before_gpu_work(tmp_path) -> None:
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "tools" / "bench_gpu_defaults.py"
    for args in (["runner", "--variant", "Q4_K:long:14"], ["gemv", "--shapes", "4096by4096"],
                 ["gemv", "--modes", "12,14/5"]):
        r = subprocess.run([sys.executable, str(script), *args, "--out", str(tmp_path / "o")], capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 2, r.stderr
        assert "Traceback" not in r.stderr
        assert r.stderr.strip().splitlines()[-1].startswith("bench_gpu_defaults.py: error: ")
        assert not (tmp_path / "o").exists()  # nothing written
