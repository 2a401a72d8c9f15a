"""The fault matrix end to end: the connector with both adapters, the sandbox and the CRM
emulators, each fault injected while calls flow; nothing lost, nothing twice, recovered, and the
user told why. The full-length matrix is `make bench` (bench/faults.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crmphone.demo.matrix import COMBINED, FAULTS, MatrixSettings, matrix_markdown, run_fault

pytestmark = pytest.mark.timeout(120)

SHORT = MatrixSettings(lead_in=1.0, tail=1.0, crm_outage=3.0)
ROOT = Path(__file__).resolve().parents[2]

# What the diagnosis of each fault must say (lower case, one of), so a user knows what happened.
SAYS = {
    "maintenance": ("socket_closing",),
    "silent_drop": ("silent",),
    "token_revoked": ("token_revoked",),
    "channel_evicted": ("evicted",),
    "crm_down": ("503", "unavailable"),
    "rate_limits": ("429",),
    "crm_session": ("401", "session expired"),
    "sigkill": ("missed event",),
    "read_only_disk": ("read-only",),
    "clock_jump": ("clock jumped",),
    COMBINED: ("",),
}


@pytest.mark.parametrize("name", [fault.name for fault in FAULTS] + [COMBINED])
async def test_a_fault_loses_nothing_duplicates_nothing_and_is_explained(name: str) -> None:
    """Under the fault every call is logged once in each CRM, the house recovers, and the
    connector's log names the cause."""
    outcome = await run_fault(name, SHORT)
    assert outcome.calls >= 5
    assert outcome.events_lost == 0, outcome
    assert outcome.duplicates == 0, outcome
    assert outcome.recovery_s is not None, outcome
    assert outcome.diagnosis, outcome
    assert any(words in outcome.diagnosis.lower() for words in SAYS[name]), outcome.diagnosis


def test_the_docs_table_is_the_one_the_last_bench_run_wrote() -> None:
    """docs/reference/fault-matrix.md is generated from bench/results/faults.json, row for row."""
    results = json.loads((ROOT / "bench" / "results" / "faults.json").read_text())
    page = (ROOT / "docs" / "reference" / "fault-matrix.md").read_text()
    names = {row["fault"] for row in results["faults"]}
    assert names == {fault.name for fault in FAULTS} | {COMBINED}
    for row in results["faults"]:
        assert f"| {row['title']} |" in page
    header = page.split("| Fault |")[0]
    assert "make bench" in header
    assert matrix_markdown(results["faults"], measured="x", command="y").count("\n| ") == (
        page.count("\n| ")
    )
