"""CI's short soak: ``python -m bench.soak`` at small scale, end to end, must come back flat.

A sandbox, ``crmphone run`` and a webhook receiver, each a real process on loopback, for half a
minute of calls after a warm-up. Only what is robust on a busy machine is asserted: no call lost,
no write duplicated, and descriptors, sockets and tasks back to their post-warm-up level once
the calls drained. Timings and the RSS slope are recorded, not judged (too short to mean much).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]


def test_a_short_soak_loses_nothing_and_comes_back_flat(tmp_path: Path) -> None:
    """Thirty seconds at 5 calls/s over 100 agents: all logged once, nothing left behind."""
    output = tmp_path / "soak.json"
    command = [
        sys.executable,
        "-m",
        "bench.soak",
        "--duration=30",
        "--agents=100",
        "--rate=5",
        "--warmup=10",
        "--sample-every=1",
        f"--output={output}",
    ]
    finished = subprocess.run(  # noqa: S603 - this interpreter, on this repository's bench
        command, cwd=ROOT, capture_output=True, text=True, timeout=400, check=False
    )
    assert output.exists(), finished.stdout + finished.stderr
    result = json.loads(output.read_text())
    shown = finished.stdout + finished.stderr[-3000:]

    assert result["calls_placed"] >= 100, shown
    assert result["calls_logged"] == result["calls_placed"], shown
    assert (result["lost"], result["duplicates"]) == (0, 0), shown
    assert result["leaked"] == {"tasks": 0, "sockets": 0}, shown
    flat = {g["name"]: g["met"] for g in result["goals"] if "after drain" in g["name"]}
    assert len(flat) == 3, result["goals"]
    assert all(flat.values()), shown
    phases = {sample["phase"] for sample in result["samples"]}
    assert {"post_warmup", "loaded", "drain", "after"} <= phases
