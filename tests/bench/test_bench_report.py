"""The benchmark report: rendered from result files (made here, following each benchmark's schema)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from bench.report import RESULTS, SECTIONS, ReportError, render

REPO = Path(__file__).resolve().parents[2]
FIGURES = {section.result: f"figures/{section.result}.png" for section in SECTIONS}


def _goal(name: str, measured: Any, goal: str, *, met: bool = True) -> dict[str, Any]:
    return {"name": name, "measured": measured, "goal": goal, "met": met}


def _environment() -> dict[str, Any]:
    return {"python": "3.11.7", "machine": "x86_64", "cpus": 2, "when": "2026-11-21T15:27:20Z"}


def _quantiles(p50: float) -> dict[str, float]:
    return {"n": 20, "p50": p50, "p90": p50 * 1.1, "p99": p50 * 1.3}


def _answer_latency() -> dict[str, Any]:
    def case(rtt: float) -> dict[str, Any]:
        fresh, persistent = 30.0 + 4.5 * rtt, 4.0 + rtt
        return {
            "fresh": {"two_way_ms": _quantiles(fresh), "peer_connections_created": 21},
            "persistent": {"two_way_ms": _quantiles(persistent), "peer_connections_created": 1},
            "fresh_over_persistent_p50": round(fresh / persistent, 2),
        }

    return {
        "calls_per_case": 20,
        "latency": {f"rtt_{rtt}ms": case(rtt) for rtt in (0, 50, 150)},
        "goals": [_goal("persistent p99 two-way audio at rtt_0ms (ms)", 5.2, "<= 25")],
        "environment": _environment(),
    }


def _notifications() -> dict[str, Any]:
    return {
        "throughput": {
            "crmphone_events_per_s": [80000, 86000, 81000],
            "raw_events_per_s": [81000, 80000, 85000],
            "raw_orjson_events_per_s": [76000, 77000, 76500],
            "events_per_round": 60000,
            "ratio": 1.0,
            "ratio_vs_raw_orjson": 1.05,
        },
        "rollovers": {"lost": 0, "duplicated": 0, "rollovers_done": 10, "events_published": 5000},
        "goals": [_goal("throughput ratio vs raw websockets + json.loads", 1.0, ">= 0.7")],
        "environment": _environment(),
    }


def _outbox() -> dict[str, Any]:
    return {
        "throughput": {
            "durable": {"events_per_second": 8400, "submit_events_per_second": 10000},
            "in_memory_baseline": {"events_per_second": 9900, "submit_events_per_second": 12000},
            "durable_over_memory": 0.85,
        },
        "latency_at_100_per_second": {"events": 100, "p50_ms": 0.4, "p90_ms": 0.5, "p99_ms": 3.6},
        # A goal not met: the summary and the exit status must say so.
        "goals": [
            _goal("p99 added latency per event at 100 events/s (ms)", 7.5, "<= 5", met=False)
        ],
        "environment": _environment(),
    }


def _salesforce() -> dict[str, Any]:
    def run(per_call: float, requests: dict[str, int]) -> dict[str, Any]:
        return {
            "logging_requests_per_call": per_call,
            "requests_per_call_with_lookups": per_call + 1,
            "requests": requests,
            "logged_calls_per_second": 400 * (1.1 - per_call),
        }

    return {
        "calls": 100,
        "batched": run(0.03, {"composite": 3, "search": 100}),
        "one_task_per_request_baseline": run(1.0, {"upsert": 100, "search": 100}),
        "logging_requests_naive_over_batched": 33.3,
        "goals": [_goal("Salesforce API requests per logged call", 0.03, "<= 0.05")],
        "environment": _environment(),
    }


def _zendesk() -> dict[str, Any]:
    routes = {"calls.create": 10, "tickets.update": 10}
    return {
        "calls": 10,
        "per_second": 20.0,
        "warm": {
            "calls": 10,
            "requests": routes,
            "requests_per_logged_call": 2.0,
            "ring_to_display_ms": _quantiles(1.8),
        },
        "cold_baseline": {
            "calls": 10,
            "requests": {**routes, "search": 10},
            "requests_per_logged_call": 3.0,
            "ring_to_display_ms": _quantiles(3.7),
        },
        "goals": [_goal("ring to display request p99 (ms, cache warm)", 2.3, "<= 50")],
        "environment": _environment(),
    }


def _phase(t: int, seconds: int, loaded_from: int | None) -> str:
    if t < 2:
        return "startup"
    if t >= seconds - 3:
        return "drain"
    return "loaded" if loaded_from is None or t >= loaded_from else "idle"


def _samples(seconds: int, loaded_from: int | None) -> list[dict[str, Any]]:
    return [
        {
            "t": float(t),
            "rss_mb": 150.0
            + (20.0 if loaded_from is not None and t >= loaded_from else 0.0)
            + t % 3,
            "cpu_percent": 40.0 if loaded_from is not None and t >= loaded_from else 2.0 + t % 2,
            "open_fds": 60 + t % 4,
            "tasks": 30 + t % 5,
            "sockets": 20 + t % 3,
            "phase": _phase(t, seconds, loaded_from),
        }
        for t in range(seconds)
    ]


def _resources(rss: float, cpu: float) -> dict[str, Any]:
    return {
        "rss_mb": {"start": rss, "end": rss + 2, "max": rss + 3},
        "cpu_percent_of_one_core": cpu,
        "open_fds": {"start": 60, "end": 61, "max": 64},
        "notifications_pending_max": 12,
    }


def _load() -> dict[str, Any]:
    return {
        "agents": 1000, "channels": 3, "topics": 3000, "calls_per_second_target": 50,
        "calls_per_second_achieved": 49.2, "duration_s": 60, "calls_placed": 2952,
        "calls_logged": 2952, "lost": 0, "duplicates": 0, "event_to_write_ms": _quantiles(8.0),
        "loaded": _resources(170.0, 40.0), "idle_baseline": _resources(150.0, 2.5),
        "samples": _samples(40, loaded_from=15),
        "goals": [_goal("calls lost", 0, "0")],
    }  # fmt: skip


def _soak() -> dict[str, Any]:
    return {
        "duration_s": 300,
        "samples": _samples(60, loaded_from=None),
        "growth": {"rss_mb": 1.5, "open_fds": 0, "tasks": -1, "sockets": 0},
        "rss_mb_per_hour": 0.8,
        "leaked": {"tasks": 0, "sockets": 0},
        "goals": [_goal("open fds growth after drain", 0, "<= 2")],
    }


def _faults() -> dict[str, Any]:
    def fault(
        name: str, title: str, recovery: float | None, *, passed: bool = True
    ) -> dict[str, Any]:
        return {
            "fault": name, "title": title, "calls": 40, "events_lost": 0, "duplicates": 0,
            "recovery_s": recovery, "diagnosis": f"{title}: reconnected | resubscribed\nno loss",
            "passed": passed,
        }  # fmt: skip

    return {
        "faults": [
            fault("maintenance_every_minute", "Maintenance closes every minute", 1.2),
            fault("wall_clock_jump", "Wall clock jumps an hour", None),
            fault("combined", "Every fault at once", 9.5, passed=False),
        ],
        "goals": [_goal("events lost under every fault", 0, "0")],
    }


BUILDERS = {
    "answer_latency": _answer_latency,
    "notifications": _notifications,
    "outbox": _outbox,
    "salesforce": _salesforce,
    "zendesk": _zendesk,
    "load": _load,
    "soak": _soak,
    "faults": _faults,
}


def _results(directory: Path, names: list[str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name in names:
        (directory / f"{name}.json").write_text(json.dumps(BUILDERS[name](), indent=2))
    return directory


def _assert_real_png(path: Path) -> None:
    with Image.open(path) as image:
        assert image.format == "PNG"
        width, height = image.size
        assert 600 <= width <= 2000, (path.name, image.size)
        assert 250 <= height <= 1500, (path.name, image.size)
        colours = image.convert("RGB").getcolors(maxcolors=width * height)
        assert colours is not None
        assert len(colours) > 8, path.name


def test_every_section_has_its_figure_table_and_command(tmp_path: Path) -> None:
    """With every result present, each section links a real PNG and names the command behind it."""
    results = _results(tmp_path / "results", list(BUILDERS))
    report = render(results, tmp_path / "out" / "report.md")
    text = report.read_text(encoding="utf-8")
    for name, figure in FIGURES.items():
        _assert_real_png(report.parent / figure)
        assert f"]({figure})" in text, name
    for name in [
        "answer_latency",
        "notifications",
        "outbox",
        "salesforce",
        "zendesk",
        "load",
        "faults",
    ]:
        assert f"`.venv/bin/python -m bench {name}`" in text
    assert "`make soak DURATION=300`" in text
    assert "Not run" not in text
    assert "Persistent answers 7.5\N{MULTIPLICATION SIGN} faster at p50 with 0 ms RTT" in text
    assert "Measured 2026-11-21T15:27:20Z on Python 3.11.7, 2 CPUs (x86_64)." in text
    # A table cell keeps the diagnosis on one row: its pipe escaped, its newline a <br>.
    assert "reconnected \\| resubscribed<br>no loss" in text


def test_missing_results_are_named_with_their_command(tmp_path: Path) -> None:
    """Sections without a result file say "not run" and how to produce it; the rest still render."""
    out = tmp_path / "out" / "report.md"
    render(_results(tmp_path / "all", list(BUILDERS)), out)
    present = ["answer_latency", "zendesk"]
    text = render(_results(tmp_path / "some", present), out).read_text(encoding="utf-8")
    figures = sorted(path.name for path in (out.parent / "figures").iterdir())
    # Figures of results that are gone were removed rather than left to contradict the report.
    assert figures == ["answer_latency.png", "zendesk.png"]
    for name in set(BUILDERS) - set(present):
        assert f"Not run: `bench/results/{name}.json` is missing" in text
        assert FIGURES[name] not in text
    assert "Produce it with `.venv/bin/python -m bench load`" in text
    assert "Produce it with `make soak DURATION=600`" in text


def test_unmet_goal_is_flagged_in_the_summary(tmp_path: Path) -> None:
    """A goal not met is marked NOT MET in the goals table and counted in the line above it."""
    text = render(_results(tmp_path, list(BUILDERS)), tmp_path / "report.md").read_text()
    summary = text.split("\n## ", 2)[1]
    assert "**1 of 8 goals NOT MET.**" in summary
    assert (
        "| outbox | p99 added latency per event at 100 events/s (ms) | <= 5 | 7.5 | **NOT MET** |"
        in summary
    )
    assert summary.count("| met |") == 7


def test_rendering_twice_is_byte_identical(tmp_path: Path) -> None:
    """The same results give byte-identical Markdown and PNGs, wherever the report is written."""
    results = _results(tmp_path / "results", list(BUILDERS))
    first = render(results, tmp_path / "a" / "report.md")
    second = render(results, tmp_path / "b" / "report.md")
    assert first.read_bytes() == second.read_bytes()
    for figure in FIGURES.values():
        assert (first.parent / figure).read_bytes() == (second.parent / figure).read_bytes()


def test_unreadable_result_costs_only_its_section(tmp_path: Path) -> None:
    """A result file that is not JSON, or lacks a key, is reported after everything else is written."""
    results = _results(tmp_path / "results", ["answer_latency", "notifications"])
    (results / "outbox.json").write_text("{not json")
    (results / "zendesk.json").write_text(json.dumps({"goals": []}))
    out = tmp_path / "report.md"
    with pytest.raises(
        ReportError, match=r"outbox\.json: could not be read.*zendesk\.json: KeyError"
    ):
        render(results, out)
    text = out.read_text()
    assert "Could not be rendered from `bench/results/zendesk.json`" in text
    assert FIGURES["notifications"] in text
    _assert_real_png(tmp_path / FIGURES["answer_latency"])


def test_results_in_the_repository_render(tmp_path: Path) -> None:
    """Whatever results bench/results holds now render completely, each with its figure."""
    present = {path.stem for path in RESULTS.glob("*.json")}
    text = render(RESULTS, tmp_path / "report.md").read_text()
    for name, figure in FIGURES.items():
        assert (figure in text) == (name in present), name
        if name in present:
            _assert_real_png(tmp_path / figure)


def _bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - this interpreter, on this repository's bench package
        [sys.executable, "-m", "bench", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )


def test_report_only_renders_and_exits_one_on_an_unmet_goal(tmp_path: Path) -> None:
    """``python -m bench --report-only`` renders without running anything; status 1 if a goal is unmet."""
    results = _results(tmp_path / "results", ["answer_latency", "zendesk"])
    out = tmp_path / "report.md"
    done = _bench("--report-only", "--results", str(results), "--report", str(out))
    assert done.returncode == 0, done.stderr
    assert f"report: wrote {out}" in done.stdout
    assert FIGURES["zendesk"] in out.read_text()

    _results(results, ["outbox"])
    done = _bench("--report-only", "--results", str(results), "--report", str(out))
    assert done.returncode == 1, done.stderr
    assert (
        "p99 added latency per event at 100 events/s (ms): 7.5 (goal <= 5) NOT MET" in done.stdout
    )
    assert FIGURES["outbox"] in out.read_text()


def test_unknown_benchmark_is_refused(tmp_path: Path) -> None:
    """Naming a benchmark that does not exist fails before anything runs or is written."""
    done = _bench("nonexistent", "--results", str(tmp_path), "--report", str(tmp_path / "r.md"))
    assert done.returncode == 2
    assert "no such benchmark: nonexistent" in done.stderr
    assert not (tmp_path / "r.md").exists()
