"""Render ``bench/report.md`` and its figures (``bench/figures/*.png``) from ``bench/results/*.json``.

``make bench`` calls :func:`render` once its benchmarks are done; ``python -m bench --report-only``
or ``python -m bench.report`` renders again from the result files already there. The report opens
with every goal of every result (met / NOT MET), then one section per figure. Each figure compares
crmphone with a baseline measured in the same run on the same machine (these machines are noisy, so
only same-run comparisons mean anything), and its section gives the numbers, the headline in words,
where it was measured and the command that reproduces it. A result file that is missing is named
as "not run" with the command that produces it; the rest still renders.

The output is deterministic: the same JSON gives byte-identical Markdown and PNGs (the Agg
renderer, matplotlib's default style whatever the user's matplotlibrc says, a fixed size and dpi,
and no software or time stamp in the PNGs), so re-rendering unchanged results shows no diff.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import matplotlib.style
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

__all__ = ["FIGURES", "REPORT", "RESULTS", "ReportError", "main", "render"]

HERE = Path(__file__).parent
RESULTS = HERE / "results"
"""Where ``python -m bench`` writes one ``<name>.json`` per benchmark."""
REPORT = HERE / "report.md"
"""The rendered report; its figures go to ``figures/`` beside it."""
FIGURES = "figures"
"""The figures' directory, relative to the report (the Markdown links are relative too)."""

PYTHON = ".venv/bin/python"
_DPI = 100
_STYLE: dict[str, Any] = {
    "font.size": 9.0,
    "axes.titlesize": 10.0,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "axes.grid.axis": "y",
    "axes.axisbelow": True,
    "grid.alpha": 0.35,
    "legend.fontsize": 8.0,
    "legend.frameon": False,
}
# One colour per role, the same in every figure: crmphone's way, then its baselines.
_OURS = "#1f77b4"
_BASELINE = "#ff7f0e"
_OTHER_BASELINE = "#8c8c8c"
_PASSED = "#2ca02c"
_FAILED = "#d62728"
_PLAIN_TICKS = FuncFormatter(lambda value, _: f"{value:,.10g}")
_NO_TICKS = FuncFormatter(lambda value, _: "")
_TIMES = "\N{MULTIPLICATION SIGN}"
# The load and soak runs' phases, in the order they happen; a phase not named here is drawn in the
# last colour.
_PHASES = {
    "startup": "#c7c7c7",
    "idle": "#7f7f7f",
    "loaded": _OURS,
    "drain": "#9467bd",
    "after": "#2ca02c",
    "": "#8c564b",
}


class ReportError(Exception):
    """A result file could not be read or a section could not be drawn from it.

    Raised by :func:`render` after it has written everything else, so one bad file costs one
    section, not the report.
    """


@attrs.frozen
class _Body:
    """What a section's renderer made: the headline in words, a Markdown table, the PNG's name."""

    headline: str
    table: list[str]
    figure: str


@attrs.frozen
class _Section:
    """One result file's section: its title, what it compares, and how to draw it."""

    result: str
    title: str
    compares: str
    draw: Callable[[Mapping[str, Any], Path], _Body]

    def command(self, data: Mapping[str, Any] | None) -> str:
        """The shell command that writes this section's result file again."""
        if self.result == "soak":
            # The soak is too long for make bench; it has its own target, timed in seconds.
            seconds = int(data["duration_s"]) if data and "duration_s" in data else 600
            return f"make soak DURATION={seconds}"
        return f"{PYTHON} -m bench {self.result}"


# ---------------------------------------------------------------------------------------------
# Formatting


def _plain(value: Any) -> str:
    """A value from the JSON as it was measured, with thousands separators."""
    if isinstance(value, bool) or value is None:
        return {True: "yes", False: "no", None: "—"}[value]
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        # Ten significant digits: what was measured, without binary noise (1.9800000000000002).
        text = f"{value:,.10g}"
        return text if "." in text or "e" in text else f"{text}.0"
    return str(value)


def _short(value: float) -> str:
    """A compact bar label: 81,832, 708, 29.3, 0.026."""
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 1:
        return f"{value:.1f}"
    if magnitude == 0:
        return "0"
    return f"{value:.2g}"


def _times(ratio: float) -> str:
    """A ratio as the headlines say it ("7.2" and a multiplication sign); two decimals near 1,
    where one would hide the difference."""
    return f"{ratio:.2f}{_TIMES}" if ratio < 2 else f"{ratio:.1f}{_TIMES}"


def _g(value: Any) -> str:
    """A number in its shortest form (20.0 → 20), anything else as it is."""
    return (
        f"{value:g}"
        if isinstance(value, int | float) and not isinstance(value, bool)
        else str(value)
    )


def _cell(text: str) -> str:
    """Text made safe for one Markdown table cell."""
    return text.replace("|", "\\|").replace("\r", "").replace("\n", "<br>")


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines.extend("| " + " | ".join(_cell(cell) for cell in row) + " |" for row in rows)
    return lines


def _environment(data: Mapping[str, Any]) -> str:
    environment = data.get("environment")
    if not isinstance(environment, Mapping):
        return "Environment not recorded."
    return (
        f"Measured {environment.get('when', 'at an unrecorded time')} on Python "
        f"{environment.get('python', '?')}, {environment.get('cpus', '?')} CPUs "
        f"({environment.get('machine', '?')})."
    )


# ---------------------------------------------------------------------------------------------
# Drawing


def _figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Figure, figures: Path, name: str) -> str:
    filename = f"{name}.png"
    # No "Software" (matplotlib's version) in the PNG: a library upgrade alone must not change it.
    figure.savefig(figures / filename, format="png", dpi=_DPI, metadata={"Software": None})
    return filename


def _bars(
    axes: Axes,
    groups: Sequence[str],
    series: Mapping[str, Sequence[float]],
    colours: Sequence[str],
    *,
    label: Callable[[float], str] = _short,
) -> None:
    """Grouped bars, one group per entry of ``groups``, one bar per series, each with its value."""
    width = 0.8 / len(series)
    for index, ((name, values), colour) in enumerate(zip(series.items(), colours, strict=True)):
        offset = (index - (len(series) - 1) / 2) * width
        xs = [group + offset for group in range(len(groups))]
        bars = axes.bar(xs, values, width, label=name, color=colour)
        axes.bar_label(bars, labels=[label(value) for value in values], padding=2, fontsize=8)
    axes.set_xticks(range(len(groups)), list(groups))
    axes.legend(loc="upper left")


def _headroom(axes: Axes, values: Iterable[float], *, log: bool = False) -> None:
    """Room above the tallest bar for its label and the legend; decades that hold every bar.

    Tick labels are plain numbers (1,000 rather than 1e3 or 10³) so they read like the table.
    """
    values = [value for value in values if value > 0]
    if log and values:
        # A log axis starts from the decade below the shortest bar, so every bar shows.
        axes.set_yscale("log")
        bottom = 10 ** math.floor(math.log10(min(values)))
        axes.set_ylim(bottom, 10 ** (math.log10(max(values)) * 1.25 + 0.2))
        axes.yaxis.set_minor_formatter(_NO_TICKS)
    elif values:
        axes.set_ylim(0, max(values) * 1.3)
    # After set_yscale, which installs its own formatters.
    axes.yaxis.set_major_formatter(_PLAIN_TICKS)


# ---------------------------------------------------------------------------------------------
# The sections


def _rtt_ms(case: str) -> int:
    """The round-trip time a case name carries: ``rtt_150ms`` → 150."""
    digits = re.sub(r"\D", "", case)
    return int(digits) if digits else 0


def _answer_latency(data: Mapping[str, Any], figures: Path) -> _Body:
    latency: Mapping[str, Any] = data["latency"]
    cases = sorted(
        (key for key, case in latency.items() if "fresh" in case and "persistent" in case),
        key=_rtt_ms,
    )
    rtts = [f"{_rtt_ms(case)} ms" for case in cases]

    def two_way(case: str, mode: str, quantile: str) -> float:
        return float(latency[case][mode]["two_way_ms"][quantile])

    def ratio(case: str) -> float:
        measured = latency[case].get("fresh_over_persistent_p50")
        if measured is not None:
            return float(measured)
        return two_way(case, "fresh", "p50") / two_way(case, "persistent", "p50")

    figure = _figure(10, 4.6)
    panels = figure.subplots(1, 2)
    everything = [
        two_way(c, m, q) for c in cases for m in ("fresh", "persistent") for q in ("p50", "p99")
    ]
    log = max(everything) / max(min(everything), 1e-9) > 20
    for axes, quantile in zip(panels, ("p50", "p99"), strict=True):
        _bars(
            axes,
            rtts,
            {
                "persistent connection": [two_way(c, "persistent", quantile) for c in cases],
                "fresh connection per call": [two_way(c, "fresh", quantile) for c in cases],
            },
            [_OURS, _BASELINE],
        )
        _headroom(axes, everything, log=log)
        axes.set_title(f"{quantile}, {data.get('calls_per_case', '?')} calls per case")
        axes.set_xlabel("network round-trip time to the media edge")
        axes.set_ylabel("answer to two-way audio (ms" + (", log scale)" if log else ")"))
    figure.suptitle("Answer latency: persistent vs fresh connection")
    filename = _save(figure, figures, "answer_latency")

    first, *others = cases
    headline = (
        f"Persistent answers {_times(ratio(first))} faster at p50 with {rtts[0]} RTT "
        f"({two_way(first, 'persistent', 'p50'):g} ms vs {two_way(first, 'fresh', 'p50'):g} ms)"
    )
    if others:
        headline += ", " + ", ".join(
            f"{_times(ratio(case))} at {rtt}" for case, rtt in zip(others, rtts[1:], strict=True)
        )
    persistent, fresh = latency[first]["persistent"], latency[first]["fresh"]
    if "peer_connections_created" in persistent and "peer_connections_created" in fresh:
        headline += (
            f"; for {_plain(data.get('calls_per_case', '?'))} calls the persistent session set up "
            f"{persistent['peer_connections_created']} peer connection, fresh answering "
            f"{fresh['peer_connections_created']}"
        )
    rows = [
        [
            rtt,
            _plain(two_way(case, "persistent", "p50")),
            _plain(two_way(case, "fresh", "p50")),
            _plain(two_way(case, "persistent", "p99")),
            _plain(two_way(case, "fresh", "p99")),
            _times(ratio(case)),
        ]
        for case, rtt in zip(cases, rtts, strict=True)
    ]
    header = ["RTT", "persistent p50 (ms)", "fresh p50 (ms)", "persistent p99 (ms)"]
    header += ["fresh p99 (ms)", "fresh ÷ persistent at p50"]
    return _Body(headline + ".", _table(header, rows), filename)


def _notifications(data: Mapping[str, Any], figures: Path) -> _Body:
    throughput: Mapping[str, Any] = data["throughput"]
    series = {
        "crmphone channel": [float(v) for v in throughput["crmphone_events_per_s"]],
        "raw websockets + json.loads": [float(v) for v in throughput["raw_events_per_s"]],
    }
    if "raw_orjson_events_per_s" in throughput:
        series["raw websockets + orjson"] = [
            float(v) for v in throughput["raw_orjson_events_per_s"]
        ]
    rounds = len(series["crmphone channel"])
    medians = {name: statistics.median(values) for name, values in series.items()}
    ours, raw = medians["crmphone channel"], medians["raw websockets + json.loads"]
    ratio = float(throughput.get("ratio", ours / raw))

    figure = _figure(10, 4.6)
    axes = figure.subplots()
    groups = [f"round {index + 1}" for index in range(rounds)] + ["median"]
    _bars(
        axes,
        groups,
        {name: [*values, medians[name]] for name, values in series.items()},
        [_OURS, _BASELINE, _OTHER_BASELINE][: len(series)],
    )
    _headroom(axes, [value for values in series.values() for value in values])
    per_round = throughput.get("events_per_round")
    axes.set_title(
        "Notification throughput: crmphone vs raw websockets, alternating rounds"
        + (f" of {per_round:,} events" if isinstance(per_round, int) else "")
    )
    axes.set_ylabel("events received per second")
    filename = _save(figure, figures, "notifications")

    headline = (
        f"crmphone's notification channel receives {_times(ratio)} the events per second of raw "
        f"websockets + json.loads (medians of {rounds} alternating rounds: {ours:,.0f} vs "
        f"{raw:,.0f} events/s)"
    )
    if "raw websockets + orjson" in medians:
        orjson = medians["raw websockets + orjson"]
        versus = float(throughput.get("ratio_vs_raw_orjson", ours / orjson))
        headline += (
            f" and {_times(versus)} those of raw websockets + orjson ({orjson:,.0f} events/s)"
        )
    rollovers = data.get("rollovers")
    if isinstance(rollovers, Mapping) and "lost" in rollovers:
        headline += (
            f"; across {rollovers.get('rollovers_done', '?')} maintenance rollovers at "
            f"{_plain(rollovers.get('publish_rate_per_s', '?'))} events/s it lost "
            f"{rollovers['lost']} and duplicated {rollovers.get('duplicated', '?')} of "
            f"{_plain(rollovers.get('events_published', '?'))} events"
        )
    rows = [
        [group, *(f"{values[index]:,.0f}" for values in series.values())]
        for index, group in enumerate(groups[:-1])
    ]
    rows.append(["**median**", *(f"**{median:,.0f}**" for median in medians.values())])
    rows.append(["crmphone ÷ this", *(_times(ours / median) for median in medians.values())])
    return _Body(headline + ".", _table(["events/s", *series], rows), filename)


def _outbox(data: Mapping[str, Any], figures: Path) -> _Body:
    throughput: Mapping[str, Any] = data["throughput"]
    durable, memory = throughput["durable"], throughput["in_memory_baseline"]
    latency: Mapping[str, Any] | None = data.get("latency_at_100_per_second")
    ratio = float(
        throughput.get("durable_over_memory")
        or durable["events_per_second"] / memory["events_per_second"]
    )
    metrics = [("events_per_second", "delivered to the adapter")]
    if "submit_events_per_second" in durable and "submit_events_per_second" in memory:
        metrics.append(("submit_events_per_second", "accepted by submit()"))

    figure = _figure(10, 4.6)
    through_axes, latency_axes = figure.subplots(1, 2, width_ratios=[3, 2])
    values = {
        "durable (SQLite, WAL)": [float(durable[key]) for key, _ in metrics],
        "in-memory baseline (no durability)": [float(memory[key]) for key, _ in metrics],
    }
    _bars(through_axes, [label for _, label in metrics], values, [_OURS, _OTHER_BASELINE])
    _headroom(through_axes, [value for series in values.values() for value in series])
    through_axes.set_title("Throughput through router + outbox to a no-op adapter")
    through_axes.set_ylabel("events per second")
    quantiles = ["p50_ms", "p90_ms", "p99_ms"]
    if latency is not None:
        measured = [float(latency[key]) for key in quantiles]
        bars = latency_axes.bar([key[:3] for key in quantiles], measured, 0.6, color=_OURS)
        latency_axes.bar_label(bars, labels=[f"{value:g} ms" for value in measured], padding=2)
        _headroom(latency_axes, measured)
        latency_axes.set_title(
            f"Added latency at 100 events/s ({_plain(latency.get('events', '?'))} events)"
        )
        latency_axes.set_ylabel("submit to the adapter's write (ms)")
    else:
        latency_axes.set_axis_off()
    figure.suptitle("Durable outbox: durable vs in-memory, in the same run")
    filename = _save(figure, figures, "outbox")

    headline = (
        f"The durable outbox delivers {ratio:.0%} of the in-memory baseline's throughput "
        f"({durable['events_per_second']:,} vs {memory['events_per_second']:,} events/s)"
    )
    if latency is not None:
        headline += (
            f"; at 100 events/s it adds {latency['p50_ms']:g} ms at p50 and "
            f"{latency['p99_ms']:g} ms at p99"
        )
    rows = [
        [label, _plain(durable[key]), _plain(memory[key])]
        for key, label in [*metrics, ("events", "events"), ("log_writes", "adapter writes")]
        if key in durable and key in memory
    ]
    table = _table(["", "durable (SQLite)", "in-memory baseline"], rows)
    if latency is not None:
        table += [
            "",
            *_table(
                ["at 100 events/s", "p50", "p90", "p99"],
                [["added latency (ms)", *(_plain(latency[key]) for key in quantiles)]],
            ),
        ]
    return _Body(headline + ".", table, filename)


def _salesforce(data: Mapping[str, Any], figures: Path) -> _Body:
    batched, naive = data["batched"], data["one_task_per_request_baseline"]
    metrics = [
        ("logging_requests_per_call", "logging requests per call"),
        ("requests_per_call_with_lookups", "with the caller lookup"),
    ]
    ratio = float(
        data.get("logging_requests_naive_over_batched")
        or naive["logging_requests_per_call"] / batched["logging_requests_per_call"]
    )

    figure = _figure(10, 4.6)
    axes = figure.subplots()
    series = {
        "batched (composite requests)": [float(batched[key]) for key, _ in metrics],
        "one request per task (baseline)": [float(naive[key]) for key, _ in metrics],
    }
    _bars(axes, [label for _, label in metrics], series, [_OURS, _BASELINE], label=_plain)
    _headroom(axes, [value for values in series.values() for value in values])
    axes.set_title(
        f"Salesforce API requests per logged call, burst of {_plain(data.get('calls', '?'))} calls"
    )
    axes.set_ylabel("Salesforce API requests per call")
    filename = _save(figure, figures, "salesforce")

    headline = (
        f"Batching sends {_times(ratio)} fewer Salesforce logging requests: "
        f"{batched['logging_requests_per_call']:g} per call vs {naive['logging_requests_per_call']:g} "
        f"with one request per task"
    )
    if "logged_calls_per_second" in batched and "logged_calls_per_second" in naive:
        headline += (
            f", and logs {batched['logged_calls_per_second']:g} calls/s vs "
            f"{naive['logged_calls_per_second']:g}"
        )
    rows = [[label, _plain(batched[key]), _plain(naive[key])] for key, label in metrics]
    endpoints = sorted(set(batched.get("requests", {})) | set(naive.get("requests", {})))
    rows += [
        [
            f"{endpoint} requests",
            _plain(batched.get("requests", {}).get(endpoint, 0)),
            _plain(naive.get("requests", {}).get(endpoint, 0)),
        ]
        for endpoint in endpoints
    ]
    for key, label in [
        ("logged_calls_per_second", "logged calls per second"),
        ("drain_seconds", "drain (s)"),
        ("completed_tasks", "completed tasks"),
        ("dead_letters", "dead letters"),
    ]:
        if key in batched and key in naive:
            rows.append([label, _plain(batched[key]), _plain(naive[key])])
    return _Body(headline + ".", _table(["", "batched", "one request per task"], rows), filename)


def _zendesk(data: Mapping[str, Any], figures: Path) -> _Body:
    warm, cold = data["warm"], data["cold_baseline"]
    routes = sorted(set(warm.get("requests", {})) | set(cold.get("requests", {})))
    quantiles = ["p50", "p90", "p99"]

    figure = _figure(10, 4.8)
    requests_axes, display_axes = figure.subplots(1, 2)
    colours = [matplotlib.colormaps["tab10"](index % 10) for index in range(len(routes))]
    bottoms = [0.0, 0.0]
    for route, colour in zip(routes, colours, strict=True):
        heights = [
            run.get("requests", {}).get(route, 0) / max(run.get("calls", 1), 1)
            for run in (warm, cold)
        ]
        requests_axes.bar(
            ["cache warm", "cache cold (baseline)"],
            heights,
            0.5,
            bottom=bottoms,
            label=route,
            color=colour,
        )
        bottoms = [bottom + height for bottom, height in zip(bottoms, heights, strict=True)]
    totals = [float(warm["requests_per_logged_call"]), float(cold["requests_per_logged_call"])]
    for x, total in enumerate(totals):
        requests_axes.annotate(
            f"{total:g}",
            (x, total),
            ha="center",
            va="bottom",
            xytext=(0, 2),
            textcoords="offset points",
            fontsize=8,
        )
    requests_axes.set_ylim(0, max(totals) * 1.15)
    requests_axes.yaxis.set_major_formatter(_PLAIN_TICKS)
    requests_axes.set_title("Zendesk API requests per logged call, by route")
    requests_axes.set_ylabel("requests per logged call")
    requests_axes.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7)
    ring = {
        "cache warm": [float(warm["ring_to_display_ms"][q]) for q in quantiles],
        "cache cold (baseline)": [float(cold["ring_to_display_ms"][q]) for q in quantiles],
    }
    _bars(display_axes, quantiles, ring, [_OURS, _BASELINE])
    _headroom(display_axes, [value for values in ring.values() for value in values])
    display_axes.set_title("Ring to screen pop (display request at Zendesk)")
    display_axes.set_ylabel("milliseconds")
    figure.suptitle(
        f"Zendesk: caller cache warm vs cold, {_plain(data.get('calls', '?'))} calls at "
        f"{_g(data.get('per_second', '?'))} per second"
    )
    filename = _save(figure, figures, "zendesk")

    saved = totals[1] - totals[0]
    ring_ratio = float(
        data.get("cold_over_warm_p50") or ring["cache cold (baseline)"][0] / ring["cache warm"][0]
    )
    headline = (
        f"A warm caller cache needs {totals[0]:g} Zendesk requests per logged call vs {totals[1]:g} "
        f"cold ({saved:g} fewer) and pops the screen {_times(ring_ratio)} faster at p50 "
        f"({ring['cache warm'][0]:g} ms vs {ring['cache cold (baseline)'][0]:g} ms)"
    )
    rows = [["requests per logged call", _plain(totals[0]), _plain(totals[1])]]
    rows += [
        [
            f"{route} requests",
            _plain(warm.get("requests", {}).get(route, 0)),
            _plain(cold.get("requests", {}).get(route, 0)),
        ]
        for route in routes
    ]
    rows += [
        [f"ring to display {q} (ms)", _plain(w), _plain(c)]
        for q, w, c in zip(
            quantiles, ring["cache warm"], ring["cache cold (baseline)"], strict=True
        )
    ]
    for key, label in [("tickets", "tickets"), ("user_pops", "screen pops")]:
        if key in warm and key in cold:
            rows.append([label, _plain(warm[key]), _plain(cold[key])])
    return _Body(headline + ".", _table(["", "cache warm", "cache cold"], rows), filename)


def _timeline(axes: Axes, samples: Sequence[Mapping[str, Any]], key: str, ylabel: str) -> None:
    """One resource over time, a line per phase in the phase's colour."""
    named = [str(sample.get("phase", "loaded")) for sample in samples]
    for phase in sorted(set(named), key=_phase_order):
        # Other phases' samples break the line (NaN); each run of this phase reaches on to the next
        # phase's first sample, so the curve stays continuous and a one-sample phase still shows.
        ys = [
            float(sample[key])
            if named[index] == phase or (index > 0 and named[index - 1] == phase)
            else math.nan
            for index, sample in enumerate(samples)
        ]
        axes.plot(
            [float(sample["t"]) for sample in samples],
            ys,
            label=phase,
            linewidth=1.4,
            color=_PHASES.get(phase, _PHASES[""]),
        )
    axes.set_ylabel(ylabel)
    axes.grid(axis="x", alpha=0.35)
    low, high = axes.get_ylim()
    axes.set_ylim(min(0.0, low), high * 1.1 if high > 0 else 1.0)


def _phase_order(phase: str) -> tuple[int, str]:
    return (list(_PHASES).index(phase) if phase in _PHASES else len(_PHASES), phase)


def _load(data: Mapping[str, Any], figures: Path) -> _Body:
    samples: Sequence[Mapping[str, Any]] = data["samples"]
    idle, loaded = data["idle_baseline"], data["loaded"]
    latency = data["event_to_write_ms"]

    figure = _figure(10, 7.2)
    panels = figure.subplots(3, 1, sharex=True)
    for axes, (key, label) in zip(
        panels,
        [("rss_mb", "RSS (MB)"), ("cpu_percent", "CPU (% of one core)"), ("open_fds", "open fds")],
        strict=True,
    ):
        _timeline(axes, samples, key, label)
        idle_values = [float(sample[key]) for sample in samples if sample.get("phase") == "idle"]
        if idle_values:
            axes.axhline(
                statistics.fmean(idle_values),
                color=_PHASES["idle"],
                linestyle="--",
                linewidth=1.0,
                label="idle mean",
            )
    panels[0].legend(loc="lower right", title="phase")
    panels[-1].set_xlabel("time since sampling began (s)")
    figure.suptitle(
        f"Load: one connector following {_plain(data['agents'])} agents, idle baseline then "
        f"{_plain(data['calls_per_second_achieved'])} calls/s"
    )
    filename = _save(figure, figures, "load")

    headline = (
        f"One connector following {_plain(data['agents'])} agents "
        f"({_plain(data.get('channels', '?'))} channels, {_plain(data.get('topics', '?'))} topics) at "
        f"{_plain(data['calls_per_second_achieved'])} calls/s (target "
        f"{_plain(data['calls_per_second_target'])}) sent each CRM write {latency['p99']:g} ms after "
        f"the platform's event at p99 ({latency['p50']:g} ms at p50); RSS peaked at "
        f"{loaded['rss_mb']['max']:g} MB loaded vs {idle['rss_mb']['max']:g} MB idle, CPU "
        f"{loaded['cpu_percent_of_one_core']:g} % vs {idle['cpu_percent_of_one_core']:g} % of one "
        f"core; {_plain(data['lost'])} calls lost, {_plain(data['duplicates'])} duplicated"
    )
    rows = [
        [f"{what} {part}", _plain(idle[key][part]), _plain(loaded[key][part])]
        for key, what in [("rss_mb", "RSS (MB)"), ("open_fds", "open fds")]
        for part in ("start", "end", "max")
    ]
    rows.insert(
        3,
        [
            "CPU (% of one core)",
            _plain(idle["cpu_percent_of_one_core"]),
            _plain(loaded["cpu_percent_of_one_core"]),
        ],
    )
    rows.append(
        [
            "notifications waiting, max",
            _plain(idle["notifications_pending_max"]),
            _plain(loaded["notifications_pending_max"]),
        ]
    )
    table = _table(["", "idle baseline", "loaded"], rows)
    table += [
        "",
        *_table(
            [
                "calls placed",
                "calls logged",
                "lost",
                "duplicates",
                "event → write p50 / p90 / p99 (ms)",
            ],
            [
                [
                    _plain(data["calls_placed"]),
                    _plain(data["calls_logged"]),
                    _plain(data["lost"]),
                    _plain(data["duplicates"]),
                    f"{latency['p50']:g} / {latency['p90']:g} / {latency['p99']:g} (n = {_plain(latency['n'])})",
                ]
            ],
        ),
    ]
    return _Body(headline + ".", table, filename)


def _soak(data: Mapping[str, Any], figures: Path) -> _Body:
    samples: Sequence[Mapping[str, Any]] = data["samples"]
    growth, leaked = data["growth"], data["leaked"]
    resources = [
        ("rss_mb", "RSS (MB)"),
        ("open_fds", "open fds"),
        ("tasks", "asyncio tasks"),
        ("sockets", "sockets"),
    ]

    figure = _figure(10, 6.4)
    panels = figure.subplots(2, 2, sharex=True).flatten()
    for axes, (key, label) in zip(panels, resources, strict=True):
        _timeline(axes, samples, key, label)
        axes.set_title(f"{label}: {growth[key]:+g} after warm-up")
    panels[0].legend(loc="lower right", title="phase")
    for axes in panels[2:]:
        axes.set_xlabel("time (s)")
    figure.suptitle(f"Soak: {_plain(data['duration_s'])} s, growth from after warm-up to the end")
    filename = _save(figure, figures, "soak")

    headline = (
        f"Over a {_plain(data['duration_s'])} s soak, RSS grew {growth['rss_mb']:+g} MB after warm-up "
        f"({data['rss_mb_per_hour']:+g} MB/hour), open fds {growth['open_fds']:+g}, tasks "
        f"{growth['tasks']:+g}, sockets {growth['sockets']:+g}; leaked {_plain(leaked['tasks'])} "
        f"tasks and {_plain(leaked['sockets'])} sockets"
    )
    rows = [[label, f"{growth[key]:+g}"] for key, label in resources]
    rows.append(["RSS slope (MB/hour)", f"{data['rss_mb_per_hour']:+g}"])
    rows += [[f"leaked {key}", _plain(leaked[key])] for key in ("tasks", "sockets")]
    return _Body(headline + ".", _table(["", "growth after warm-up"], rows), filename)


def _faults(data: Mapping[str, Any], figures: Path) -> _Body:
    faults: Sequence[Mapping[str, Any]] = data["faults"]
    titles = [str(fault.get("title") or fault["fault"]) for fault in faults]
    recoveries = [fault.get("recovery_s") for fault in faults]

    figure = _figure(10, 1.6 + 0.42 * len(faults))
    axes = figure.subplots()
    ys = list(range(len(faults)))[::-1]
    bars = axes.barh(
        ys,
        [float(value) if value is not None else 0.0 for value in recoveries],
        0.6,
        color=[_PASSED if fault["passed"] else _FAILED for fault in faults],
    )
    axes.bar_label(
        bars,
        labels=[
            (f"{value:g} s" if value is not None else "no recovery time measured")
            + ("" if fault["passed"] else "  FAILED")
            for value, fault in zip(recoveries, faults, strict=True)
        ],
        padding=3,
        fontsize=8,
    )
    axes.set_yticks(ys, titles)
    axes.grid(axis="y", visible=False)
    axes.grid(axis="x", alpha=0.35)
    longest = max((float(value) for value in recoveries if value is not None), default=1.0)
    axes.set_xlim(0, max(longest, 1e-3) * 1.35)
    axes.set_xlabel("time to recover (s); green: passed (0 lost, 0 duplicated), red: failed")
    axes.set_title("Fault matrix: time to recover per injected fault")
    filename = _save(figure, figures, "faults")

    passed = sum(1 for fault in faults if fault["passed"])
    lost = sum(int(fault["events_lost"]) for fault in faults)
    duplicates = sum(int(fault["duplicates"]) for fault in faults)
    headline = (
        f"{passed} of {len(faults)} faults passed; {lost} events lost and {duplicates} CRM records "
        f"duplicated in all"
    )
    timed = [
        (float(value), title)
        for value, title in zip(recoveries, titles, strict=True)
        if value is not None
    ]
    if timed:
        slowest, which = max(timed)
        headline += f"; slowest recovery {slowest:g} s ({which})"
    rows = [
        [
            title,
            _plain(fault["calls"]),
            _plain(fault["events_lost"]),
            _plain(fault["duplicates"]),
            f"{fault['recovery_s']:g}" if fault.get("recovery_s") is not None else "—",
            "passed" if fault["passed"] else "**FAILED**",
            str(fault.get("diagnosis", "")),
        ]
        for title, fault in zip(titles, faults, strict=True)
    ]
    header = ["fault", "calls", "events lost", "duplicates", "recovery (s)", "result"]
    return _Body(headline + ".", _table([*header, "diagnosis shown"], rows), filename)


SECTIONS = (
    _Section(
        "answer_latency",
        "Answer latency: persistent vs fresh connection",
        "Time from answering to two-way audio, over a persistent connection and over a fresh "
        "connection per call, at several network round-trip times.",
        _answer_latency,
    ),
    _Section(
        "notifications",
        "Notification throughput: crmphone vs raw websockets",
        "Events per second received from one blaster by crmphone's notification channel and by a "
        "bare websockets client, in alternating rounds.",
        _notifications,
    ),
    _Section(
        "outbox",
        "Outbox throughput: durable vs in-memory",
        "Events per second through the router and the durable outbox (SQLite) to a no-op adapter, "
        "against the same pipeline without durability; and the latency the outbox adds.",
        _outbox,
    ),
    _Section(
        "salesforce",
        "CRM API requests per call: Salesforce",
        "Salesforce API requests per logged call with the adapter's batching, against one request "
        "per task, for the same burst of calls.",
        _salesforce,
    ),
    _Section(
        "zendesk",
        "CRM API requests per call: Zendesk",
        "Zendesk API requests per logged call and ring-to-screen-pop time with the caller cache "
        "warm, against a cold cache.",
        _zendesk,
    ),
    _Section(
        "load",
        "Load test: connector resources, idle vs loaded",
        "One connector process's RSS, CPU and open file descriptors over time, following the same "
        "agents with no calls (the baseline) and then under load.",
        _load,
    ),
    _Section(
        "soak",
        "Soak: growth over time",
        "Memory, file descriptors, tasks and sockets over a long run, compared with their level "
        "after warm-up (the goal is flat).",
        _soak,
    ),
    _Section(
        "faults",
        "Fault matrix",
        "Each fault injected into a running connector with both adapters: events lost, CRM records "
        "duplicated, time to recover and the diagnosis the user is shown.",
        _faults,
    ),
)
"""The report's sections in order; each draws ``figures/<result>.png`` from ``<result>.json``."""


# ---------------------------------------------------------------------------------------------
# The report


def _goal_rows(name: str, data: Mapping[str, Any]) -> list[tuple[list[str], bool]]:
    goals = data.get("goals", [])
    return [
        (
            [
                name,
                str(goal.get("name", "?")),
                _plain(goal.get("goal", "?")),
                _plain(goal.get("measured", "?")),
                "met" if goal.get("met") else "**NOT MET**",
            ],
            bool(goal.get("met")),
        )
        for goal in goals
    ]


def _read(results: Path, problems: list[str]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(results.glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            problems.append(f"{path.name}: could not be read ({error})")
            continue
        if not isinstance(data, dict):
            problems.append(f"{path.name}: not a JSON object")
            continue
        found[path.stem] = data
    return found


def _render(results: Path, out: Path) -> tuple[Path, list[str]]:
    problems: list[str] = []
    found = _read(results, problems)
    figures = out.parent / FIGURES
    figures.mkdir(parents=True, exist_ok=True)
    known = [section.result for section in SECTIONS]
    ordered = [name for name in known if name in found] + sorted(set(found) - set(known))

    goal_rows = [row for name in ordered for row in _goal_rows(name, found[name])]
    unmet = [row for row, met in goal_rows if not met]
    lines = [
        "# crmphone benchmark report",
        "",
        (
            "Rendered from `bench/results/*.json` by `make bench` (re-render without running: "
            f"`{PYTHON} -m bench --report-only`). Every figure compares crmphone with a baseline "
            "measured in the same run on the same machine, because only same-run comparisons survive "
            "a noisy machine; each section names the command that reproduces it."
        ),
        "",
        "## Goals",
        "",
    ]
    if not goal_rows:
        lines.append("No results with goals yet: run `make bench`.")
    elif unmet:
        lines.append(f"**{len(unmet)} of {len(goal_rows)} goals NOT MET.**")
    else:
        lines.append(f"All {len(goal_rows)} goals met.")
    if goal_rows:
        header = ["benchmark", "goal", "target", "measured", "status"]
        lines += ["", *_table(header, [row for row, _ in goal_rows])]
    missing = [section for section in SECTIONS if section.result not in found]
    if missing:
        lines += [
            "",
            "Not run yet: "
            + ", ".join(f"{section.result} (`{section.command(None)}`)" for section in missing)
            + ".",
        ]

    written: set[str] = set()
    for section in SECTIONS:
        lines += ["", f"## {section.title}", "", section.compares, ""]
        data = found.get(section.result)
        if data is None:
            lines.append(
                f"Not run: `bench/results/{section.result}.json` is missing. Produce it with "
                f"`{section.command(None)}`, then re-render with `{PYTHON} -m bench --report-only`."
            )
            continue
        try:
            body = section.draw(data, figures)
        except (KeyError, IndexError, TypeError, ValueError, ZeroDivisionError) as error:
            problem = f"{section.result}.json: {type(error).__name__}: {error}"
            problems.append(problem)
            lines.append(
                f"Could not be rendered from `bench/results/{section.result}.json`: {problem}"
            )
            continue
        written.add(body.figure)
        lines += [
            f"**{body.headline}**",
            "",
            f"![{section.title}]({FIGURES}/{body.figure})",
            "",
            *body.table,
            "",
            f"{_environment(data)} Reproduce: `{section.command(data)}`"
            + (" (or `make bench` for every benchmark)." if section.result != "soak" else "."),
        ]
    others = [name for name in ordered if name not in known]
    if others:
        lines += [
            "",
            "## Other results",
            "",
            "No figure yet for: "
            + ", ".join(f"`{name}.json` (`{PYTHON} -m bench {name}`)" for name in others)
            + "; their goals are in the table above.",
        ]

    # A figure whose results are gone would outlive them and contradict the report.
    for section in SECTIONS:
        stale = figures / f"{section.result}.png"
        if stale.name not in written and stale.exists():
            stale.unlink()
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out, problems


def render(results: Path = RESULTS, out: Path = REPORT) -> Path:
    """Render the report at ``out`` and its figures in ``figures/`` beside it, from ``results``.

    Reads every ``*.json`` in ``results``; a missing one is "not run" in the report. Returns
    ``out``. Raises :class:`ReportError`, after writing everything else, when a file could not be
    read or a figure could not be drawn from it.
    """
    with matplotlib.style.context(["default", _STYLE]):
        path, problems = _render(results, out)
    if problems:
        raise ReportError(f"{out} was written, but: " + "; ".join(problems))
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bench.report``: render the report from the results already written."""
    parser = argparse.ArgumentParser(prog="python -m bench.report", description=main.__doc__)
    parser.add_argument("--results", type=Path, default=RESULTS, help="directory of *.json results")
    parser.add_argument("--out", type=Path, default=REPORT, help="the Markdown report to write")
    options = parser.parse_args(argv)
    try:
        path = render(options.results, options.out)
    except ReportError as error:
        print(f"report: {error}", file=sys.stderr)
        return 1
    print(f"wrote {path} and its figures in {path.parent / FIGURES}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
