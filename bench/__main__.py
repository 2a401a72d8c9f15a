"""``make bench``: run every benchmark, write ``bench/results/<name>.json``, render ``bench/report.md``.

Each benchmark compares against a baseline measured in the same run (ratios), since these machines
are noisy. ``python -m bench notifications`` runs one; no argument runs all of :data:`BENCHMARKS`.
Either way the report is then rendered from every result file present (see :mod:`bench.report`),
so one re-run benchmark updates its section and keeps the others. ``--report-only`` renders
without running anything.

Exit status: 1 when a goal is not met (of the benchmarks run; with ``--report-only``, of every
result rendered) or the report could not be rendered completely; 0 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench._environment import environment
from bench.report import FIGURES, REPORT, RESULTS, ReportError, render

HERE = Path(__file__).parent

# Run in this order by ``make bench``; adding one is adding its line (``bench/<name>.py`` with
# ``async def run() -> dict``).
BENCHMARKS = (
    "notifications",
    "answer_latency",
    "outbox",
    "salesforce",
    "zendesk",
    "faults",
    "load",
)


def _is_benchmark(name: str) -> bool:
    return (
        name.isidentifier()
        and not name.startswith("_")
        and name != "report"
        and (HERE / f"{name}.py").is_file()
    )


def _goals_met(result: dict[str, Any]) -> bool:
    """Print each goal of one result; whether all of them were met."""
    met = True
    for goal in result.get("goals", []):
        status = "met" if goal["met"] else "NOT MET"
        print(f"   {goal['name']}: {goal['measured']} (goal {goal['goal']}) {status}")
        met = met and bool(goal["met"])
    return met


def _run(name: str, results: Path) -> bool:
    """Run one benchmark and write its result; whether it met all its goals."""
    module = importlib.import_module(f"bench.{name}")
    print(f"== {name}", flush=True)
    result: dict[str, Any] = asyncio.run(module.run())
    result["environment"] = environment()
    path = results / f"{name}.json"
    path.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    met = _goals_met(result)
    print(f"   wrote {path}", flush=True)
    return met


def _rendered_goals_met(results: Path) -> bool:
    """Print the goals of every result already written; whether all of them were met."""
    met = True
    for path in sorted(results.glob("*.json")):
        try:
            result = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # the report names the file it could not read
        if isinstance(result, dict):
            print(f"== {path.stem}")
            met = _goals_met(result) and met
    return met


def main(argv: Sequence[str]) -> int:
    """Run the named benchmarks (all by default), write their results, render the report."""
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Run crmphone's benchmarks and render bench/report.md from their results.",
    )
    parser.add_argument(
        "names",
        nargs="*",
        metavar="name",
        help=f"benchmarks to run, bench/<name>.py (default: {', '.join(BENCHMARKS)})",
    )
    parser.add_argument(
        "--report-only", action="store_true", help="render the report from existing results only"
    )
    parser.add_argument("--results", type=Path, default=RESULTS, help="directory of *.json results")
    parser.add_argument("--report", type=Path, default=REPORT, help="the Markdown report to write")
    options = parser.parse_args(argv)
    if options.report_only and options.names:
        parser.error("--report-only runs no benchmark: give no names with it")
    # Any bench/<name>.py with a run() may be named, listed in BENCHMARKS or not yet.
    unknown = [name for name in options.names if not _is_benchmark(name)]
    if unknown:
        parser.error(f"no such benchmark: {', '.join(unknown)} (known: {', '.join(BENCHMARKS)})")

    options.results.mkdir(parents=True, exist_ok=True)
    if options.report_only:
        met = _rendered_goals_met(options.results)
    else:
        met = True
        for name in options.names or BENCHMARKS:
            met = _run(name, options.results) and met
    try:
        report = render(options.results, options.report)
    except ReportError as error:
        print(f"report: {error}", file=sys.stderr)
        return 1
    print(f"report: wrote {report} (figures in {report.parent / FIGURES})", flush=True)
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
