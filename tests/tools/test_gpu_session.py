"""tools/gpu_session.sh: a bad stage is refused before any work (no GPU needed)."""
from __future__ import annotations

import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "tools" / "gpu_session.sh"


def test_unknown_stage_exits_2_before_any_work(tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = subprocess.run(["bash", str(SCRIPT), "t", "bogus"], capture_output=True, text=True,
                         env={"OUT": str(out), "PATH": "/usr/bin:/bin"}, timeout=60)
    assert res.returncode == 2
    assert res.stdout == ""
    assert res.stderr.strip().splitlines() == ["gpu_session.sh: unknown stage 'bogus' (stages: t g rv bc gr awq)"]
    assert not out.exists()  # nothing written, no stage run


def test_script_parses() -> None:
    assert subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True).returncode == 0
