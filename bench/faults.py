"""The fault matrix (issue 8): the connector with every adapter against the sandbox and the CRM
emulators, under each fault and then all of them; see :mod:`crmphone.demo.matrix`.

Writes ``bench/results/faults.json`` (through ``python -m bench``) and regenerates the docs page
``docs/reference/fault-matrix.md`` from the same rows. The baseline of every row is the same
house without the fault: 0 events lost and 0 duplicates.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from crmphone.demo.matrix import FaultOutcome, matrix_markdown, run_matrix

DOCS_PAGE = Path(__file__).resolve().parents[1] / "docs" / "reference" / "fault-matrix.md"
COMMAND = "make bench  (or: .venv/bin/python -m bench faults)"


def _progress(outcome: FaultOutcome) -> None:
    recovery = "never" if outcome.recovery_s is None else f"{outcome.recovery_s:.2f} s"
    print(
        f"   {outcome.fault:16} calls {outcome.calls:3}  lost {outcome.events_lost}  "
        f"duplicates {outcome.duplicates}  recovery {recovery}",
        flush=True,
    )


async def run() -> dict[str, Any]:
    """Run the matrix; write the docs page; return the results."""
    outcomes = await run_matrix(on_outcome=_progress)
    rows = [outcome.to_json() for outcome in outcomes]
    measured = time.strftime("%Y-%m-%d", time.gmtime())
    DOCS_PAGE.write_text(
        matrix_markdown(rows, measured=f"on {measured} on a 2-core machine", command=COMMAND),
        encoding="utf-8",
    )
    return {
        "faults": rows,
        "goals": [
            {
                "name": "events lost, every fault and combined",
                "goal": "0",
                "measured": sum(row["events_lost"] for row in rows),
                "met": all(row["events_lost"] == 0 for row in rows),
            },
            {
                "name": "CRM records duplicated, every fault and combined",
                "goal": "0",
                "measured": sum(row["duplicates"] for row in rows),
                "met": all(row["duplicates"] == 0 for row in rows),
            },
            {
                "name": "faults recovered from",
                "goal": f"{len(rows)}/{len(rows)}",
                "measured": f"{sum(row['recovery_s'] is not None for row in rows)}/{len(rows)}",
                "met": all(row["recovery_s"] is not None for row in rows),
            },
        ],
    }
