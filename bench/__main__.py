"""``make bench``: run every benchmark and write ``bench/results/<name>.json``.

Each benchmark compares against a baseline measured in the same run (ratios), since these machines
are noisy. ``python -m bench notifications`` runs one; no argument runs all.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
BENCHMARKS = ("notifications", "answer_latency", "outbox", "salesforce", "zendesk")


def _environment() -> dict[str, Any]:
    return {
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "cpus": __import__("os").cpu_count(),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def main(argv: list[str]) -> int:
    """Run the named benchmarks (all by default); print and write their results."""
    names = argv or list(BENCHMARKS)
    RESULTS.mkdir(parents=True, exist_ok=True)
    failed = False
    for name in names:
        module = importlib.import_module(f"bench.{name}")
        print(f"== {name}", flush=True)
        result: dict[str, Any] = asyncio.run(module.run())
        result["environment"] = _environment()
        path = RESULTS / f"{name}.json"
        path.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
        for goal in result.get("goals", []):
            status = "met" if goal["met"] else "NOT MET"
            print(f"   {goal['name']}: {goal['measured']} (goal {goal['goal']}) {status}")
            failed = failed or not goal["met"]
        print(f"   wrote {path}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
