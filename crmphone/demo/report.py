"""The demo's report files: ``demo-report.json`` and ``demo-report.html``.

:func:`write_report` writes both into a directory (made if needed), each atomically: a temporary
file in the same directory, flushed and synced, then renamed over the old one, so a reader never
sees half a report.

The HTML page is one self-contained file: inline CSS, inline SVG drawn here, no JavaScript, no
external resource (a Content-Security-Policy ``<meta>`` forbids loading any). Every text that comes
from the data (agent and caller names, numbers, adapter names, versions) is HTML-escaped.

The latency chart draws one dot per measured call: x is the call's place in the order calls were
placed, y its answer latency in ms on a linear axis from 0 with round tick values. First calls and
calls over a persistent connection have their own colour and a dashed line at their median. When a
few huge outliers would flatten everything else (values above :data:`OUTLIER_FACTOR` times the
larger of the two kinds' medians), the axis stops at the largest ordinary value and each outlier is
drawn on the top edge, hollow, with its value written beside it where there is room (and in its
tooltip always).
"""

from __future__ import annotations

import html
import json
import math
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import attrs

from .model import PERCENTILE_METHOD, CallResult, DemoReport, LatencySummary, percentile

__all__ = ["HTML_NAME", "JSON_NAME", "OUTLIER_FACTOR", "render_html", "write_report"]

JSON_NAME = "demo-report.json"
"""The JSON report's file name."""

HTML_NAME = "demo-report.html"
"""The HTML report's file name."""

OUTLIER_FACTOR = 5.0
"""A latency above this many times the larger of the two kinds' medians is an outlier: drawn on the
chart's top edge instead of stretching its axis. Medians per kind, because first calls are few and
slow by nature: a percentile over all calls would call them outliers."""

# The chart's geometry, in SVG user units (the SVG scales to the page's width).
_WIDTH, _HEIGHT = 760, 340
_LEFT, _RIGHT, _TOP, _BOTTOM = 70, 20, 24, 48

# Colour-blind-safe pair (ColorBrewer Dark2): orange for first calls, teal for persistent ones.
_STYLE = """
:root { --first: #d95f02; --persistent: #1b9e77; }
body { font: 14px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 60rem;
       padding: 0 1rem; color: #222; background: #fff; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; }
h2 { font-size: 1.15rem; margin-top: 2rem; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: .5rem 0; }
th, td { padding: .2rem .7rem; border-bottom: 1px solid #eee; text-align: left; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
.muted { color: #777; }
.bad { color: #b00020; font-weight: bold; }
.good { color: #1b7e3a; font-weight: bold; }
.headline td.n { font-size: 1.15rem; }
svg { width: 100%; height: auto; max-width: 760px; }
svg text { font: 12px system-ui, sans-serif; fill: #333; }
svg .axis { stroke: #333; stroke-width: 1; }
svg .grid { stroke: #e4e4e4; stroke-width: 1; }
svg .median { stroke-width: 1.5; stroke-dasharray: 6 4; }
svg .dot { stroke: #fff; stroke-width: 1; fill-opacity: .85; }
svg .outlier { fill-opacity: 0; stroke-width: 2; }
svg .first { fill: var(--first); stroke: var(--first); }
svg .persistent { fill: var(--persistent); stroke: var(--persistent); }
svg .dot.first, svg .dot.persistent { stroke: #fff; }
svg .dot.outlier.first { stroke: var(--first); }
svg .dot.outlier.persistent { stroke: var(--persistent); }
.key { display: inline-block; width: .8rem; height: .8rem; border-radius: 50%; }
.key.first { background: var(--first); }
.key.persistent { background: var(--persistent); }
"""

# Nothing may load: the page is read from disk, and shows names that came from outside.
_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _ms(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.1f}" if value < 100 else f"{value:,.0f}"


def _ratio(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _maybe(value: object) -> str:
    return "—" if value is None else _esc(value)


# Axes ----------------------------------------------------------------------------------------


def _nice_step(span: float, ticks: int) -> float:
    """A round step (1, 2, 2.5 or 5 times a power of ten) that cuts ``span`` into about ``ticks`` parts."""
    raw = span / max(1, ticks)
    magnitude = 10.0 ** math.floor(math.log10(raw))
    for multiple in (1.0, 2.0, 2.5, 5.0, 10.0):
        if multiple * magnitude >= raw:
            return multiple * magnitude
    return 10 * magnitude  # pragma: no cover - the loop returns by 10 times the magnitude


@attrs.frozen
class _Axis:
    """A linear axis from 0 to ``top`` with ticks every ``step``."""

    top: float
    step: float

    @classmethod
    def covering(cls, highest: float, ticks: int = 5) -> _Axis:
        if highest <= 0:
            return cls(top=1.0, step=0.2)
        step = _nice_step(highest, ticks)
        return cls(top=math.ceil(highest / step - 1e-9) * step, step=step)

    def ticks(self) -> list[float]:
        count = round(self.top / self.step)
        return [index * self.step for index in range(count + 1)]

    def label(self, value: float) -> str:
        if self.step >= 1:
            return f"{value:,.0f}"
        return f"{value:.{max(1, -math.floor(math.log10(self.step)))}f}"


def _outlier_limit(kinds: Sequence[Sequence[float]]) -> float | None:
    """The value above which a latency is drawn as an outlier, or ``None`` when none is.

    ``kinds``: the measured values of each kind. With fewer than three values in all, no value is
    ordinary enough to judge the others by.
    """
    values = [value for kind in kinds for value in kind]
    if len(values) < 3:
        return None
    limit = OUTLIER_FACTOR * max(percentile(kind, 50) for kind in kinds if kind)
    if limit <= 0 or max(values) <= limit:
        return None
    return limit


# The chart -----------------------------------------------------------------------------------


def _kind_class(call: CallResult) -> str:
    return "persistent" if call.over_persistent else "first"


def _latency_chart(report: DemoReport) -> str:
    """The SVG scatter of answer latency per measured call, or a note when none was measured."""
    placed = [
        (position, call)
        for position, call in enumerate(report.calls, start=1)
        if call.measured and call.answer_ms is not None
    ]
    if not placed:
        return '<p class="muted">No call had its answer latency measured: nothing to draw.</p>'
    values = [call.answer_ms for _, call in placed if call.answer_ms is not None]
    limit = _outlier_limit(
        [
            [value for call in report.measured(kind) if (value := call.answer_ms) is not None]
            for kind in (False, True)
        ]
    )
    ordinary = [value for value in values if limit is None or value <= limit]
    y_axis = _Axis.covering(max(ordinary))
    x_count = len(report.calls)
    x_step = max(1, int(_nice_step(x_count, 8))) if x_count > 1 else 1

    plot_w = _WIDTH - _LEFT - _RIGHT
    plot_h = _HEIGHT - _TOP - _BOTTOM

    def x_of(position: float) -> float:
        # Half a slot of margin each side, so the first and last dots do not sit on the frame.
        return _LEFT + (position - 0.5) / x_count * plot_w

    def y_of(value: float) -> float:
        return _TOP + plot_h - min(value, y_axis.top) / y_axis.top * plot_h

    parts = [
        (
            f'<svg viewBox="0 0 {_WIDTH} {_HEIGHT}" role="img" '
            'aria-labelledby="chart-title"><title id="chart-title">Answer latency per call, '
            "first calls vs calls over a persistent connection</title>"
        )
    ]
    for tick in y_axis.ticks():
        y = y_of(tick)
        parts.append(
            f'<line class="grid" x1="{_LEFT}" y1="{y:.1f}" x2="{_WIDTH - _RIGHT}" y2="{y:.1f}"/>'
            f'<text x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{y_axis.label(tick)}</text>'
        )
    # Call 1, then round multiples of the step (1, 20, 40… rather than 1, 21, 41…).
    x_ticks = sorted({1, *range(x_step, x_count + 1, x_step)})
    for position in x_ticks:
        x = x_of(position)
        parts.append(
            f'<line class="axis" x1="{x:.1f}" y1="{_TOP + plot_h}" x2="{x:.1f}" '
            f'y2="{_TOP + plot_h + 4}"/>'
            f'<text x="{x:.1f}" y="{_TOP + plot_h + 18}" text-anchor="middle">{position}</text>'
        )
    parts.append(
        f'<line class="axis" x1="{_LEFT}" y1="{_TOP}" x2="{_LEFT}" y2="{_TOP + plot_h}"/>'
        f'<line class="axis" x1="{_LEFT}" y1="{_TOP + plot_h}" x2="{_WIDTH - _RIGHT}" '
        f'y2="{_TOP + plot_h}"/>'
        f'<text x="{_LEFT + plot_w / 2:.1f}" y="{_HEIGHT - 8}" text-anchor="middle">'
        "call, in the order placed</text>"
        f'<text transform="translate(16 {_TOP + plot_h / 2:.1f}) rotate(-90)" '
        'text-anchor="middle">answer latency (ms)</text>'
    )
    for over_persistent, css in ((False, "first"), (True, "persistent")):
        summary = report.latency(over_persistent)
        if summary is not None and summary.p50 <= y_axis.top:
            y = y_of(summary.p50)
            parts.append(
                f'<line class="median {css}" x1="{_LEFT}" y1="{y:.1f}" '
                f'x2="{_WIDTH - _RIGHT}" y2="{y:.1f}"/>'
            )
    labelled: list[tuple[float, float]] = []
    for position, call in placed:
        assert call.answer_ms is not None  # placed holds measured calls only
        css = _kind_class(call)
        outlier = limit is not None and call.answer_ms > limit
        x, y = x_of(position), y_of(call.answer_ms)
        tip = (
            f"call {position} · {call.kind} · {_ms(call.answer_ms)} ms · "
            f"{call.agent_name} · {call.conversation_id}"
        )
        parts.append(
            f'<circle class="dot {css}{" outlier" if outlier else ""}" cx="{x:.1f}" '
            f'cy="{y:.1f}" r="4.5"><title>{_esc(tip)}</title></circle>'
        )
        if outlier:
            label = f"↑ {_ms(call.answer_ms)} ms"
            # About 7 units per character at 12px; a label that would overlap one already
            # written is left out (the dot's tooltip still has the value).
            span = 7 * len(label)
            if x > _LEFT + plot_w * 0.8:
                start, anchor, text_x = x - 7 - span, "end", x - 7
            else:
                start, anchor, text_x = x + 7, "start", x + 7
            if all(start + span < left or start > right for left, right in labelled):
                labelled.append((start, start + span))
                parts.append(
                    f'<text x="{text_x:.1f}" y="{y + 4:.1f}" text-anchor="{anchor}">{label}</text>'
                )
    parts.append("</svg>")
    legend = " &nbsp; ".join(
        f'<span class="key {css}"></span> {label} '
        f'<span class="muted">({len(report.measured(kind))} measured)</span>'
        for kind, css, label in (
            (False, "first", "first call (sets the connection up)"),
            (True, "persistent", "over a persistent connection"),
        )
    )
    note = ""
    if limit is not None:
        count = sum(1 for value in values if value > limit)
        note = (
            f'<p class="muted">{count} outlier{"s" if count != 1 else ""} above '
            f"{_ms(limit)} ms ({OUTLIER_FACTOR:g} times the larger median) drawn hollow on the top edge; "
            "hover a dot for its value.</p>"
        )
    return f"<figure>{''.join(parts)}<figcaption>{legend}</figcaption></figure>{note}"


# Tables --------------------------------------------------------------------------------------


_NUMERIC = ' class="n"'


def _table(head: Iterable[tuple[str, bool]], rows: Iterable[Iterable[str]], css: str = "") -> str:
    """An HTML table; ``head`` is (label, numeric) per column; cells are already-escaped HTML."""
    columns = list(head)
    out = [f'<table class="{css}">' if css else "<table>"]
    if any(label for label, _ in columns):
        out.append("<thead><tr>")
        out += [
            f"<th{_NUMERIC if numeric else ''}>{_esc(label)}</th>" for label, numeric in columns
        ]
        out.append("</tr></thead>")
    out.append("<tbody>")
    for row in rows:
        cells = [
            f"<td{_NUMERIC if numeric else ''}>{cell}</td>"
            for (_, numeric), cell in zip(columns, row, strict=True)
        ]
        out.append(f"<tr>{''.join(cells)}</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _flag(value: int) -> str:
    return f'<span class="{"bad" if value else "good"}">{value}</span>'


def _headline(report: DemoReport) -> str:
    rows: list[tuple[str, str]] = [
        ("calls placed", str(len(report.calls))),
        ("answered", str(report.answered)),
        ("lost (answered, missing from a CRM)", _flag(report.lost)),
        ("duplicate records", _flag(report.duplicates)),
    ]
    rows.extend((f"records in {totals.adapter}", str(totals.records)) for totals in report.crm)
    rows.extend(
        (f"{totals.adapter} API requests per call", _ratio(totals.requests_per_call))
        for totals in report.crm
    )
    speedup = report.speedup
    rows.append(
        (
            "speedup over a persistent connection (p50)",
            "—" if speedup is None else f"{speedup:.1f}x",
        )
    )
    return _table(
        (("", False), ("", True)),
        ((_esc(label), value) for label, value in rows),
        css="headline",
    )


def _percentiles(report: DemoReport) -> str:
    def row(label: str, summary: LatencySummary | None) -> list[str]:
        if summary is None:
            return [label, "0", "—", "—", "—", "—", "—"]
        return [
            label,
            str(summary.n),
            _ms(summary.p50),
            _ms(summary.p90),
            _ms(summary.p99),
            _ms(summary.max),
            _ms(summary.mean),
        ]

    head = [("kind", False), ("calls", True)] + [
        (f"{name} (ms)", True) for name in ("p50", "p90", "p99", "max", "mean")
    ]
    return _table(
        head,
        [
            row("first call", report.latency(over_persistent=False)),
            row("over a persistent connection", report.latency(over_persistent=True)),
        ],
    ) + (
        f'<p class="muted">Percentiles by the {PERCENTILE_METHOD} method: always one of the '
        "measured values.</p>"
    )


def _crm(report: DemoReport) -> str:
    if not report.crm:
        return '<p class="muted">No CRM adapter ran.</p>'
    return _table(
        [
            ("adapter", False),
            ("records", True),
            ("duplicates", True),
            ("writes done", True),
            ("retries", True),
            ("dead letters", True),
            ("API requests", True),
            ("requests per call", True),
        ],
        [
            [
                _esc(totals.adapter),
                str(totals.records),
                _flag(totals.duplicates),
                str(totals.writes_done),
                str(totals.retries),
                _flag(totals.dead_letters),
                _maybe(totals.requests),
                _ratio(totals.requests_per_call),
            ]
            for totals in report.crm
        ],
    )


def _calls(report: DemoReport) -> str:
    if not report.calls:
        return '<p class="muted">No call was placed.</p>'
    adapters = [totals.adapter for totals in report.crm]

    def logged(call: CallResult) -> str:
        missing = [name for name in adapters if name not in call.logged_in]
        shown = _esc(", ".join(call.logged_in)) or '<span class="muted">none</span>'
        if call.answered and missing:
            shown += f' <span class="bad">missing: {_esc(", ".join(missing))}</span>'
        return shown

    return _table(
        [
            ("#", True),
            ("conversation", False),
            ("agent", False),
            ("number", False),
            ("answered", False),
            ("kind", False),
            ("answer (ms)", True),
            ("logged in", False),
        ],
        [
            [
                str(position),
                _esc(call.conversation_id),
                _esc(call.agent_name),
                _maybe(call.number),
                "yes" if call.answered else '<span class="bad">no</span>',
                _esc(call.kind),
                _ms(call.answer_ms),
                logged(call),
            ]
            for position, call in enumerate(report.calls, start=1)
        ],
    )


def _settings(report: DemoReport) -> str:
    rows = [
        ("agents", str(report.agents)),
        ("planned calls", _maybe(report.planned_calls)),
        (
            "planned duration (s)",
            "—" if report.planned_seconds is None else f"{report.planned_seconds:g}",
        ),
        ("ran for (s)", f"{report.seconds:.1f}"),
        ("channel reconnects", str(report.channel_reconnects)),
        ("notifications", str(report.notifications)),
        ("outbox max depth", str(report.outbox_max_depth)),
        ("bridge messages", str(report.bridge_messages)),
        ("bridge pages connected", str(report.bridge_clients)),
    ]
    rows += [(f"{name} version", _esc(version)) for name, version in report.versions.items()]
    return _table((("setting", False), ("value", False)), rows)


def render_html(report: DemoReport) -> str:
    """The report as one self-contained HTML page (no script, no external resource)."""
    when = report.started_at.strftime("%Y-%m-%d %H:%M:%S UTC")
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>crmphone demo report — {_esc(when)}</title>",
            f"<style>{_STYLE}</style>",
            "</head>",
            "<body>",
            "<h1>crmphone demo report</h1>",
            (
                f'<p class="muted">Started {_esc(when)}, ran {report.seconds:.1f} s with '
                f"{report.agents} agents. Every figure below was measured during the run.</p>"
            ),
            "<h2>Headline</h2>",
            _headline(report),
            "<h2>Answer latency: first calls vs calls over a persistent connection</h2>",
            (
                '<p class="muted">From the alerting seen at the agent\'s phone to the first '
                "audio packet received.</p>"
            ),
            _latency_chart(report),
            _percentiles(report),
            "<h2>CRM</h2>",
            _crm(report),
            "<h2>Calls</h2>",
            _calls(report),
            "<h2>Settings</h2>",
            _settings(report),
            "</body>",
            "</html>",
            "",
        ]
    )


# Files ---------------------------------------------------------------------------------------


def _write_atomically(path: Path, text: str) -> None:
    # Same directory, so the rename is atomic; the temporary file goes if anything fails.
    handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed below before the rename
        "w", encoding="utf-8", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False
    )
    temporary = Path(handle.name)
    try:
        with handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        # NamedTemporaryFile makes 0600; a report is meant to be opened and shared.
        temporary.chmod(0o644)
        temporary.replace(path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_report(report: DemoReport, directory: Path) -> tuple[Path, Path]:
    """Write ``demo-report.json`` and ``demo-report.html`` into ``directory`` (made if needed).

    Each file is replaced atomically. Returns ``(json_path, html_path)``. An :class:`OSError`
    (no space, no permission) propagates: there is no report to fall back on.
    """
    directory.mkdir(parents=True, exist_ok=True)
    json_path, html_path = directory / JSON_NAME, directory / HTML_NAME
    document = json.dumps(report.to_json(), indent=2, allow_nan=False, ensure_ascii=False)
    _write_atomically(json_path, document + "\n")
    _write_atomically(html_path, render_html(report))
    return json_path, html_path
