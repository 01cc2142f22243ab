"""One minute of churn (``bench/soak.py``): the server gives back every app, room, session and
socket that the clients made."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SOAK = Path(__file__).resolve().parents[2] / "bench" / "soak.py"


def test_one_minute_of_churn_leaves_nothing_behind(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    run = subprocess.run(
        [sys.executable, str(SOAK), "--duration", "60", "--clients", "8", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    result = json.loads(out.read_text())
    assert run.returncode == 0, (result["problems"], run.stderr[-2000:])
    assert result["problems"] == []
    assert result["counts"]["logins"] > 100
    assert result["counts"]["killed"] > 10 and result["counts"]["closed"] > 10
    assert result["counts"]["client_errors"] == 0
    assert [s["minute"] for s in result["samples"]] == [0, 1]
