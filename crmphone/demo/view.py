"""The demo's terminal view: :func:`render` for each refresh of ``rich.live.Live``, and
:func:`summary` once at the end.

Pure functions of a :class:`~crmphone.demo.model.DemoSnapshot` or
:class:`~crmphone.demo.model.DemoReport`: no I/O, no clock. Every cell is a
:class:`rich.text.Text` built from plain strings, so a caller's name such as ``[bold]x[/]`` is
printed as it is, never read as rich markup. Columns crop with an ellipsis instead of wrapping, so
the view keeps its shape from 100 columns down to a narrow terminal.

The bridge URL is shown without its query, fragment or user info: the bridge's token travels in a
URL fragment (``#token=…``) and a terminal view can end up in a recording or a pasted log.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

from rich import box
from rich.console import Group, RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from crmphone.events import ConnectionState

from .model import (
    AgentView,
    CallView,
    CrmView,
    DemoReport,
    DemoSnapshot,
    LatencySummary,
    RecordView,
)

__all__ = ["MAX_CALLS_SHOWN", "MAX_RECORDS_SHOWN", "render", "summary"]

MAX_RECORDS_SHOWN = 8
"""How many of the CRM records just written the live view lists (newest first)."""

MAX_CALLS_SHOWN = 10
"""How many calls the live view lists; live calls come before ended ones."""

_NONE = "—"

_CALL_STYLES = {"ringing": "bold yellow", "connected": "green", "on hold": "cyan", "ended": "dim"}


# Cells ---------------------------------------------------------------------------------------


def _text(value: str | None, style: str = "") -> Text:
    # Text(...) never parses markup: user data goes through here.
    return Text(_NONE, style="dim") if value is None else Text(value, style=style)


def _number(value: int | None, *, warn: bool = False) -> Text:
    if value is None:
        return Text(_NONE, style="dim")
    return Text(str(value), style="bold red" if warn and value > 0 else "")


def _clock(seconds: float) -> str:
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def _ms(value: float | None) -> str:
    if value is None:
        return _NONE
    # Sub-100 ms differences matter for the persistent connection; above that, whole ms suffice.
    return f"{value:.1f} ms" if value < 100 else f"{value:,.0f} ms"


def _short_id(conversation_id: str) -> str:
    return conversation_id if len(conversation_id) <= 9 else conversation_id[:8] + "…"


def _public_url(url: str) -> str:
    """``url`` without user info, query or fragment (where tokens travel)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "(unreadable URL)"
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port is None else f"{host}:{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _table(title: str, *, caption: str | None = None) -> Table:
    return Table(
        title=title,
        title_justify="left",
        title_style="bold",
        caption=caption,
        caption_justify="left",
        caption_style="dim",
        box=box.SIMPLE_HEAD,
        expand=True,
        pad_edge=False,
        show_edge=False,
    )


def _column(
    table: Table,
    header: str,
    *,
    ratio: int | None = None,
    least: int | None = None,
    right: bool = False,
) -> None:
    # A flexible column (ratio) shares what the fixed ones leave; ``least`` keeps names readable
    # when a narrow terminal leaves little.
    table.add_column(
        header,
        justify="right" if right else "left",
        no_wrap=True,
        overflow="ellipsis",
        ratio=ratio,
        width=least,
    )


# The live view -------------------------------------------------------------------------------


def _header(snapshot: DemoSnapshot) -> RenderableType:
    line = Text()
    line.append("crmphone demo", style="bold")
    line.append(f"  {_clock(snapshot.elapsed)}")
    if snapshot.planned_seconds is not None:
        line.append(f" / {_clock(snapshot.planned_seconds)}", style="dim")
    line.append(f"  ·  calls {snapshot.placed} placed")
    if snapshot.planned_calls is not None:
        line.append(f" / {snapshot.planned_calls} planned")
    line.append(f", {snapshot.finished} finished")
    grid = Table.grid(expand=True, padding=(0, 1))
    grid.add_column(no_wrap=True, overflow="ellipsis", ratio=1)
    grid.add_column(no_wrap=True, width=24)
    grid.add_column(no_wrap=True, justify="right", width=4)
    grid.add_row(
        line,
        ProgressBar(total=1.0, completed=snapshot.progress),
        Text(f"{snapshot.progress:.0%}"),
    )
    return grid


def _agents(agents: Iterable[AgentView]) -> RenderableType:
    table = _table("Agents")
    _column(table, "agent", ratio=3, least=8)
    _column(table, "persistent")
    _column(table, "mic")
    _column(table, "presence", ratio=2, least=6)
    _column(table, "call")
    _column(table, "calls", right=True)
    for agent in agents:
        table.add_row(
            _text(agent.name),
            _persistent(agent),
            Text("live", style="bold red") if agent.microphone_live else Text("off", style="dim"),
            _text(agent.presence),
            _text(agent.call_state, _CALL_STYLES.get(agent.call_state or "", "")),
            _number(agent.calls_answered),
        )
    return table


def _persistent(agent: AgentView) -> Text:
    if agent.persistent_active:
        return Text("● active", style="bold green")
    # Not persistent: say why when it is on its way up or broke, else just "off".
    if agent.connection == ConnectionState.ESTABLISHING:
        return Text("◌ connecting", style="yellow")
    if agent.connection == ConnectionState.FAILED:
        return Text("✕ failed", style="bold red")
    return Text("○ off", style="dim")


def _calls(calls: tuple[CallView, ...]) -> RenderableType:
    # Live calls first (stable: otherwise in the order given), then the ones just ended.
    ordered = sorted(calls, key=lambda call: call.state == "ended")
    shown = ordered[:MAX_CALLS_SHOWN]
    hidden = len(ordered) - len(shown)
    table = _table("Calls", caption=f"+{hidden} more" if hidden else None)
    _column(table, "state")
    _column(table, "agent", ratio=2, least=6)
    _column(table, "caller", ratio=3, least=8)
    _column(table, "number", ratio=2, least=6)
    _column(table, "time", right=True)
    for call in shown:
        table.add_row(
            Text(call.state, style=_CALL_STYLES[call.state]),
            _text(call.agent_name),
            _text(call.caller_name),
            _text(call.number),
            Text(_clock(call.seconds)),
        )
    if not shown:
        table.add_row(Text("no calls yet", style="dim"), *(Text("") for _ in range(4)))
    return table


def _records(records: tuple[RecordView, ...]) -> RenderableType:
    newest = sorted(records, key=lambda record: record.at, reverse=True)[:MAX_RECORDS_SHOWN]
    table = _table("CRM records just written")
    _column(table, "at (UTC)")
    _column(table, "crm", ratio=1, least=6)
    _column(table, "stage", ratio=2, least=6)
    _column(table, "record", ratio=4, least=10)
    _column(table, "conversation", ratio=1, least=6)
    for record in newest:
        table.add_row(
            Text(record.at.strftime("%H:%M:%S")),
            _text(record.adapter, "bold"),
            _text(record.stage),
            _text(record.record),
            Text(_short_id(record.conversation_id), style="dim"),
        )
    if not newest:
        table.add_row(Text("none yet", style="dim"), *(Text("") for _ in range(4)))
    return table


def _crm(crm: Iterable[CrmView]) -> RenderableType:
    table = _table("CRM")
    _column(table, "adapter", ratio=1, least=8)
    _column(table, "writes", right=True)
    _column(table, "retries", right=True)
    _column(table, "dead letters", right=True)
    _column(table, "outbox", right=True)
    _column(table, "API requests", right=True)
    for totals in crm:
        table.add_row(
            _text(totals.adapter, "bold"),
            _number(totals.writes_done),
            _number(totals.retries),
            _number(totals.dead_letters, warn=True),
            Text(str(totals.outbox_depth), style="yellow" if totals.outbox_depth else ""),
            _number(totals.requests),
        )
    return table


def _footer(snapshot: DemoSnapshot) -> RenderableType:
    line = Text(no_wrap=True, overflow="ellipsis")
    line.append("channel reconnects ")
    line.append(
        str(snapshot.channel_reconnects), style="bold red" if snapshot.channel_reconnects else ""
    )
    line.append(f"  ·  notifications {snapshot.notifications}  ·  bridge ")
    if snapshot.bridge_url is None:
        line.append("off", style="dim")
    else:
        line.append(_public_url(snapshot.bridge_url), style="underline")
        pages = "page" if snapshot.bridge_clients == 1 else "pages"
        line.append(f" ({snapshot.bridge_clients} {pages})")
    return line


def render(snapshot: DemoSnapshot) -> RenderableType:
    """The live view of ``snapshot``, for ``rich.live.Live`` (call it again at each refresh).

    A header with the elapsed time, calls placed / planned and a progress bar; tables of agents,
    calls, the CRM records just written (newest :data:`MAX_RECORDS_SHOWN`) and CRM counters; and
    a footer with channel reconnects, notifications and the bridge.
    """
    return Group(
        _header(snapshot),
        Text(""),
        _agents(snapshot.agents),
        _calls(snapshot.calls),
        _records(snapshot.records),
        _crm(snapshot.crm),
        _footer(snapshot),
    )


# The summary ---------------------------------------------------------------------------------


def _latency_row(table: Table, kind: str, latency: LatencySummary | None) -> None:
    if latency is None:
        table.add_row(Text(kind), Text("0"), *(Text(_NONE, style="dim") for _ in range(4)))
        return
    table.add_row(
        Text(kind),
        Text(str(latency.n)),
        Text(_ms(latency.p50)),
        Text(_ms(latency.p90)),
        Text(_ms(latency.p99)),
        Text(_ms(latency.max)),
    )


def summary(report: DemoReport) -> RenderableType:
    """The end-of-run summary of ``report``: calls, answer latency of first calls vs calls over a
    persistent connection (and the speedup), records per CRM, duplicates, lost calls, API requests
    per call and channel reconnects."""
    head = Text()
    head.append("crmphone demo — summary", style="bold")
    head.append(f"  ({_clock(report.seconds)}, {report.agents} agents)", style="dim")

    calls = Text()
    calls.append(f"calls placed {len(report.calls)}")
    if report.planned_calls is not None:
        calls.append(f" of {report.planned_calls} planned")
    calls.append(f"  ·  answered {report.answered}  ·  lost ")
    calls.append(str(report.lost), style="bold red" if report.lost else "bold green")
    calls.append("  ·  duplicates ")
    calls.append(str(report.duplicates), style="bold red" if report.duplicates else "bold green")
    calls.append(f"  ·  channel reconnects {report.channel_reconnects}")

    latency = _table("Answer latency (alerting at the phone → first audio packet)")
    _column(latency, "kind", ratio=1, least=10)
    _column(latency, "calls", right=True)
    for header in ("p50", "p90", "p99", "max"):
        _column(latency, header, right=True)
    _latency_row(latency, "first call", report.latency(over_persistent=False))
    _latency_row(latency, "persistent connection", report.latency(over_persistent=True))

    speedup = report.speedup
    if speedup is None:
        faster = Text("speedup: not measured (needs first calls and persistent calls)", style="dim")
    else:
        faster = Text()
        faster.append("over a persistent connection, calls are answered ")
        faster.append(f"{speedup:.1f}x", style="bold green")
        faster.append(" faster (p50)")

    crm = _table("CRM")
    _column(crm, "adapter", ratio=1, least=8)
    _column(crm, "records", right=True)
    _column(crm, "duplicates", right=True)
    _column(crm, "dead letters", right=True)
    _column(crm, "retries", right=True)
    _column(crm, "requests/call", right=True)
    for totals in report.crm:
        per_call = totals.requests_per_call
        crm.add_row(
            _text(totals.adapter, "bold"),
            _number(totals.records),
            _number(totals.duplicates, warn=True),
            _number(totals.dead_letters, warn=True),
            _number(totals.retries),
            Text(_NONE, style="dim") if per_call is None else Text(f"{per_call:.1f}"),
        )
    return Group(head, calls, Text(""), latency, faster, Text(""), crm)
