"""The demo's terminal view: what it shows, user data printed literally, narrow terminals."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
from rich.console import Console, RenderableType

from crmphone.demo.model import (
    AgentView,
    CallResult,
    CallView,
    CrmTotals,
    CrmView,
    DemoReport,
    DemoSnapshot,
    RecordView,
)
from crmphone.demo.view import MAX_RECORDS_SHOWN, render, summary

T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
MARKUP_NAME = "[bold red]Eve[/bold red] <img src=x>"


def text_of(renderable: RenderableType, width: int = 100) -> str:
    console = Console(record=True, width=width, color_system=None, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


def agents() -> tuple[AgentView, ...]:
    return (
        AgentView(
            id="a1",
            name="Ada Agent",
            connection="ACTIVE_CALL",
            persistent_active=True,
            microphone_live=True,
            presence="On Queue",
            call_state="connected",
            calls_answered=3,
        ),
        AgentView(
            id="a2",
            name="Bob Agent",
            connection="IDLE",
            persistent_active=False,
            microphone_live=False,
            presence=None,
            call_state=None,
            calls_answered=0,
        ),
        AgentView(
            id="a3",
            name="Cy Agent",
            connection="FAILED",
            persistent_active=False,
            microphone_live=False,
            presence="Available",
            call_state="ringing",
            calls_answered=1,
        ),
    )


def records(count: int) -> tuple[RecordView, ...]:
    return tuple(
        RecordView(
            adapter="salesforce",
            conversation_id=f"conversation-{index:02d}",
            stage="call.connected",
            record=f"Contact Number{index:02d}",
            at=T0 + timedelta(seconds=index),
        )
        for index in range(count)
    )


def snapshot(**changes: Any) -> DemoSnapshot:
    base = DemoSnapshot(
        elapsed=75.0,
        planned_calls=40,
        planned_seconds=None,
        placed=12,
        finished=10,
        agents=agents(),
        calls=(
            CallView(
                conversation_id="c-1",
                agent_name="Ada Agent",
                number="+15551230001",
                caller_name="Grace Hopper",
                state="connected",
                seconds=12.0,
            ),
            CallView(
                conversation_id="c-2",
                agent_name="Cy Agent",
                number=None,
                caller_name=None,
                state="ringing",
                seconds=2.0,
            ),
        ),
        records=records(3),
        crm=(
            CrmView(
                adapter="salesforce",
                writes_done=21,
                requests=57,
                dead_letters=0,
                outbox_depth=1,
                retries=2,
            ),
            CrmView(
                adapter="zendesk",
                writes_done=19,
                requests=None,
                dead_letters=1,
                outbox_depth=0,
                retries=0,
            ),
        ),
        channel_reconnects=1,
        notifications=345,
        bridge_url="http://127.0.0.1:8765/dashboard.html",
        bridge_clients=2,
    )
    return attrs.evolve(base, **changes)


def a_report(*calls: CallResult) -> DemoReport:
    return DemoReport(
        started_at=T0,
        seconds=62.0,
        agents=3,
        planned_calls=4,
        planned_seconds=None,
        calls=calls,
        crm=(
            CrmTotals(
                adapter="salesforce",
                records=len(calls),
                duplicates=0,
                writes_done=8,
                retries=1,
                dead_letters=0,
                requests=len(calls) * 3,
            ),
        ),
        channel_reconnects=2,
        notifications=90,
        outbox_max_depth=3,
        bridge_messages=50,
        bridge_clients=1,
    )


def measured(number: int, answer_ms: float, *, over_persistent: bool) -> CallResult:
    return CallResult(
        conversation_id=f"c-{number}",
        agent_id="a1",
        agent_name="Ada Agent",
        number=None,
        answered=True,
        over_persistent=over_persistent,
        answer_ms=answer_ms,
        logged_in=("salesforce",),
    )


def test_render_shows_every_part() -> None:
    """Header, agents, calls, records, CRM counters and the footer all appear at 100 columns."""
    out = text_of(render(snapshot()))
    for expected in (
        "01:15",
        "12 placed / 40 planned",
        "10 finished",
        "25%",
        "Ada Agent",
        "● active",
        "○ off",
        "failed",
        "live",
        "On Queue",
        "connected",
        "ringing",
        "Grace Hopper",
        "+15551230001",
        "Contact Number02",
        "salesforce",
        "zendesk",
        "57",
        "channel reconnects 1",
        "notifications 345",
        "http://127.0.0.1:8765/dashboard.html (2 pages)",
    ):
        assert expected in out, expected


def test_render_fits_100_columns() -> None:
    """No line of the view is wider than the 100-column terminal it was drawn for."""
    out = text_of(render(snapshot()))
    assert max(len(line) for line in out.splitlines()) <= 100


def test_user_data_is_printed_literally() -> None:
    """Names that look like rich markup or HTML appear exactly as written."""
    out = text_of(
        render(
            snapshot(
                agents=(attrs.evolve(agents()[0], name=MARKUP_NAME, presence="[blink]x[/]"),),
                calls=(
                    CallView(
                        conversation_id="c-9",
                        agent_name=MARKUP_NAME,
                        number="[link=x]+1[/link]",
                        caller_name=MARKUP_NAME,
                        state="on hold",
                        seconds=1.0,
                    ),
                ),
                records=(attrs.evolve(records(1)[0], record=MARKUP_NAME, adapter="[i]sf[/i]"),),
            )
        ),
        width=160,
    )
    assert out.count(MARKUP_NAME) == 4  # agent, call agent, caller, record
    assert "[blink]x[/]" in out
    assert "[link=x]+1[/link]" in out
    assert "[i]sf[/i]" in out


def test_records_newest_first_and_capped() -> None:
    """Only the newest records are listed, newest on top."""
    out = text_of(render(snapshot(records=records(12))))
    shown = [f"Number{index:02d}" for index in range(12) if f"Number{index:02d}" in out]
    assert len(shown) == MAX_RECORDS_SHOWN
    assert shown == [f"Number{index:02d}" for index in range(12 - MAX_RECORDS_SHOWN, 12)]
    assert out.index("Number11") < out.index("Number04")


def test_bridge_url_never_shows_a_token() -> None:
    """The bridge URL loses its fragment, query and user info, where a token could travel."""
    url = "http://me:pw@127.0.0.1:8765/dashboard.html?token=QUERYSECRET#token=FRAGMENTSECRET"
    out = text_of(render(snapshot(bridge_url=url)))
    assert "http://127.0.0.1:8765/dashboard.html" in out
    for secret in ("QUERYSECRET", "FRAGMENTSECRET", "pw@", "me:"):
        assert secret not in out


def test_empty_snapshot_renders() -> None:
    """Before anything happens the view still draws, with placeholders."""
    out = text_of(
        render(
            snapshot(
                agents=(),
                calls=(),
                records=(),
                crm=(),
                placed=0,
                finished=0,
                planned_calls=None,
                bridge_url=None,
                bridge_clients=0,
            )
        )
    )
    assert "no calls yet" in out
    assert "none yet" in out
    assert "bridge off" in out
    assert "0%" in out


def test_narrow_terminal_crops_without_crashing() -> None:
    """At 60 columns (and even 30) the view draws, and no line is wider than the terminal."""
    busy = snapshot(records=records(12), agents=agents() * 4)
    for width in (60, 30):
        out = text_of(render(busy), width=width)
        assert max(len(line) for line in out.splitlines()) <= width
        assert "…" in out


def test_summary_states_the_measured_figures() -> None:
    """The end summary gives calls, p50/p99 per kind, the speedup, records, lost and reconnects."""
    out = text_of(
        summary(
            a_report(
                measured(1, 800.0, over_persistent=False),
                measured(2, 100.0, over_persistent=True),
                measured(3, 200.0, over_persistent=True),
            )
        )
    )
    for expected in (
        "calls placed 3 of 4 planned",
        "answered 3",
        "lost 0",
        "duplicates 0",
        "channel reconnects 2",
        "first call",
        "800 ms",
        "persistent connection",
        "100 ms",
        "200 ms",
        "8.0x faster",
        "salesforce",
        "3.0",
    ):
        assert expected in out, expected


def test_summary_of_an_empty_run() -> None:
    """With nothing measured the summary says so instead of showing zeros as results."""
    out = text_of(summary(a_report()))
    assert "calls placed 0" in out
    assert "not measured" in out
    assert "—" in out
