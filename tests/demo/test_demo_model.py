"""The demo's values: validation, percentiles, summaries computed from the calls, strict JSON."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import attrs
import pytest

from crmphone.demo.model import (
    AgentView,
    CallResult,
    CrmTotals,
    DemoReport,
    DemoSnapshot,
    LatencySummary,
    RecordView,
    percentile,
)
from crmphone.events import ConnectionState

T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
BOTH = ("salesforce", "zendesk")


def call(
    number: int,
    answer_ms: float | None,
    *,
    over_persistent: bool | None = True,
    answered: bool = True,
    logged_in: tuple[str, ...] = BOTH,
) -> CallResult:
    return CallResult(
        conversation_id=f"conv-{number}",
        agent_id="agent-1",
        agent_name="Ada",
        number="+15551230001",
        answered=answered,
        over_persistent=over_persistent,
        answer_ms=answer_ms,
        logged_in=logged_in,
    )


def totals(adapter: str, *, records: int = 3, requests: int | None = 12) -> CrmTotals:
    return CrmTotals(
        adapter=adapter,
        records=records,
        duplicates=0,
        writes_done=records * 2,
        retries=1,
        dead_letters=0,
        requests=requests,
    )


def report(*calls: CallResult, crm: tuple[CrmTotals, ...] | None = None) -> DemoReport:
    return DemoReport(
        started_at=T0,
        seconds=30.0,
        agents=2,
        planned_calls=len(calls) or None,
        planned_seconds=None,
        calls=calls,
        crm=(totals("salesforce"), totals("zendesk")) if crm is None else crm,
        channel_reconnects=0,
        notifications=40,
        outbox_max_depth=2,
        bridge_messages=17,
        bridge_clients=1,
        versions={"python": "3.11.9", "crmphone": "0.1.0", "aiortc": "1.9.0"},
    )


EMPTY = DemoSnapshot(
    elapsed=10.0,
    planned_calls=None,
    planned_seconds=None,
    placed=0,
    finished=0,
    agents=(),
    calls=(),
    records=(),
    crm=(),
    channel_reconnects=0,
    notifications=0,
)


def snapshot(**changes: Any) -> DemoSnapshot:
    return attrs.evolve(EMPTY, **changes)


def test_percentile_nearest_rank_on_known_data() -> None:
    """Nearest rank picks the value at rank ceil(p/100·n), as in the textbook example."""
    data = [15.0, 50.0, 35.0, 20.0, 40.0]
    assert percentile(data, 5) == 15.0
    assert percentile(data, 30) == 20.0
    assert percentile(data, 40) == 20.0
    assert percentile(data, 50) == 35.0
    assert percentile(data, 100) == 50.0
    one_to_hundred = [float(value) for value in range(1, 101)]
    assert percentile(one_to_hundred, 50) == 50.0
    assert percentile(one_to_hundred, 90) == 90.0
    assert percentile(one_to_hundred, 99) == 99.0


def test_percentile_refuses_no_values_and_bad_p() -> None:
    """A percentile of nothing, or outside (0, 100], is an error rather than a made-up number."""
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)
    with pytest.raises(ValueError, match="p must be"):
        percentile([1.0], 0)
    with pytest.raises(ValueError, match="p must be"):
        percentile([1.0], 101)


def test_latency_summary_of_values() -> None:
    """A summary holds n, nearest-rank p50/p90/p99, the max and the mean of what was given."""
    summary = LatencySummary.from_values(float(value) for value in range(10, 0, -1))
    assert summary == LatencySummary(n=10, p50=5.0, p90=9.0, p99=10.0, max=10.0, mean=5.5)
    assert LatencySummary.from_values([]) is None


def test_latency_per_kind_counts_only_measured_calls_of_that_kind() -> None:
    """First calls and persistent calls are summarised apart; unmeasured calls count in neither."""
    result = report(
        call(1, 800.0, over_persistent=False),
        call(2, 1000.0, over_persistent=False),
        call(3, 100.0),
        call(4, 120.0),
        call(5, 140.0),
        call(6, None),
        call(7, None, over_persistent=None),
        call(8, None, answered=False, over_persistent=None, logged_in=()),
    )
    first = result.latency(over_persistent=False)
    persistent = result.latency(over_persistent=True)
    assert first == LatencySummary(n=2, p50=800.0, p90=1000.0, p99=1000.0, max=1000.0, mean=900.0)
    assert persistent is not None
    assert (persistent.n, persistent.p50, persistent.max) == (3, 120.0, 140.0)
    assert persistent.mean == 120.0
    assert [c.conversation_id for c in result.measured(False)] == ["conv-1", "conv-2"]


def test_latency_is_none_when_a_kind_was_not_measured() -> None:
    """No measured call of a kind gives None, never a zero that looks like a measurement."""
    result = report(call(1, 90.0), call(2, None, over_persistent=False))
    assert result.latency(over_persistent=False) is None
    assert report().latency(over_persistent=True) is None


def test_speedup_is_first_call_p50_over_persistent_p50() -> None:
    """The speedup divides the two medians, and is None unless both kinds were measured."""
    result = report(
        call(1, 900.0, over_persistent=False),
        call(2, 600.0, over_persistent=False),
        call(3, 1200.0, over_persistent=False),
        call(4, 150.0),
        call(5, 100.0),
    )
    assert result.speedup == pytest.approx(900.0 / 100.0)
    assert report(call(1, 100.0)).speedup is None
    assert report(call(1, 100.0, over_persistent=False)).speedup is None
    assert report(call(1, 100.0, over_persistent=False), call(2, 0.0)).speedup is None


def test_lost_counts_answered_calls_missing_from_any_crm() -> None:
    """A call is lost when it was answered and some adapter's CRM holds no record of it."""
    result = report(
        call(1, 100.0),
        call(2, 100.0, logged_in=("salesforce",)),
        call(3, 100.0, logged_in=()),
        call(4, None, answered=False, over_persistent=None, logged_in=()),
    )
    assert result.lost == 2
    assert result.answered == 3
    assert report(call(1, 100.0, logged_in=()), crm=()).lost == 0


def test_duplicates_sum_over_crms() -> None:
    """Duplicates are what the CRMs counted, added up."""
    crm = (
        CrmTotals(
            adapter="salesforce",
            records=2,
            duplicates=1,
            writes_done=4,
            retries=0,
            dead_letters=0,
            requests=None,
        ),
        CrmTotals(
            adapter="zendesk",
            records=2,
            duplicates=2,
            writes_done=4,
            retries=0,
            dead_letters=0,
            requests=8,
        ),
    )
    assert report(crm=crm).duplicates == 3


def test_requests_per_call() -> None:
    """Requests per call divides by the calls logged, and is None when either is missing."""
    assert totals("x", records=4, requests=10).requests_per_call == 2.5
    assert totals("x", records=4, requests=None).requests_per_call is None
    assert totals("x", records=0, requests=10).requests_per_call is None


def test_to_json_round_trips_strictly() -> None:
    """The JSON form survives json.dumps(allow_nan=False) and loads back equal."""
    result = report(
        call(1, 812.25, over_persistent=False),
        call(2, 95.5),
        call(3, None, over_persistent=None),
        call(4, None, answered=False, over_persistent=None, logged_in=()),
    )
    data = result.to_json()
    text = json.dumps(data, allow_nan=False)
    assert json.loads(text) == data
    assert "NaN" not in text
    assert "Infinity" not in text


def test_to_json_has_a_stable_shape() -> None:
    """Keys come in a fixed order, datetimes end in Z, and the summaries are included."""
    result = report(call(1, 800.0, over_persistent=False), call(2, 100.0))
    data = result.to_json()
    assert list(data) == [
        "started_at",
        "seconds",
        "agents",
        "planned_calls",
        "planned_seconds",
        "channel_reconnects",
        "notifications",
        "outbox_max_depth",
        "bridge_messages",
        "bridge_clients",
        "versions",
        "summary",
        "latency_ms",
        "crm",
        "calls",
    ]
    assert data["started_at"] == "2026-05-04T09:00:00Z"
    assert list(data["versions"]) == ["aiortc", "crmphone", "python"]
    assert data["summary"] == {
        "calls": 2,
        "answered": 2,
        "measured": 2,
        "lost": 0,
        "duplicates": 0,
        "speedup": 8.0,
    }
    assert data["latency_ms"]["method"] == "nearest-rank"
    assert data["latency_ms"]["first_call"]["p50"] == 800.0
    assert data["crm"][0]["requests_per_call"] == 4.0
    assert data["calls"][1]["logged_in"] == ["salesforce", "zendesk"]
    assert json.dumps(data) == json.dumps(result.to_json())


def test_empty_report_serialises() -> None:
    """A run that placed no call still gives strict JSON, with None where nothing was measured."""
    data = report(crm=()).to_json()
    json.dumps(data, allow_nan=False)
    assert data["latency_ms"]["first_call"] is None
    assert data["latency_ms"]["persistent"] is None
    assert data["summary"]["speedup"] is None
    assert data["calls"] == []


@pytest.mark.parametrize("bad", [math.nan, math.inf, -1.0])
def test_non_finite_or_negative_latency_is_refused(bad: float) -> None:
    """A NaN, infinite or negative latency cannot enter a report (it would break the JSON)."""
    with pytest.raises(ValueError, match="finite"):
        call(1, bad)


def test_latency_needs_a_kind_and_an_answer() -> None:
    """A measured latency belongs to an answered call whose kind is known."""
    with pytest.raises(ValueError, match="over_persistent"):
        call(1, 100.0, over_persistent=None)
    with pytest.raises(ValueError, match="answered"):
        call(1, 100.0, answered=False)


def test_report_times_are_aware_utc() -> None:
    """The start time is normalised to UTC, and a naive one is refused."""
    paris = timezone(timedelta(hours=2))
    later = DemoReport(
        started_at=datetime(2026, 5, 4, 11, 0, tzinfo=paris),
        seconds=1.0,
        agents=1,
        planned_calls=None,
        planned_seconds=1.0,
        calls=(),
        crm=(),
        channel_reconnects=0,
        notifications=0,
        outbox_max_depth=0,
        bridge_messages=0,
        bridge_clients=0,
    )
    assert later.started_at == T0
    assert later.started_at.tzinfo is UTC
    with pytest.raises(ValueError, match="timezone-aware"):
        RecordView(
            adapter="salesforce",
            conversation_id="c",
            stage="call.connected",
            record=None,
            at=datetime(2026, 5, 4, 9, 0),  # naive on purpose
        )


def test_counts_must_not_be_negative() -> None:
    """A negative count is a bug in the caller, refused at construction."""
    with pytest.raises(ValueError, match="writes_done"):
        CrmTotals(
            adapter="x",
            records=0,
            duplicates=0,
            writes_done=-1,
            retries=0,
            dead_letters=0,
            requests=None,
        )


def test_agent_connection_takes_the_enum_or_its_value() -> None:
    """The connection is a ConnectionState value; the member is accepted, anything else refused."""
    agent = AgentView(
        id="a",
        name="Ada",
        connection=ConnectionState.PERSISTED,
        persistent_active=True,
        microphone_live=False,
    )
    assert agent.connection == "PERSISTED"
    assert type(agent.connection) is str
    with pytest.raises(ValueError, match="connection"):
        AgentView(
            id="a", name="Ada", connection="UP", persistent_active=True, microphone_live=False
        )
    with pytest.raises(ValueError, match="call_state"):
        AgentView(
            id="a",
            name="Ada",
            connection="IDLE",
            persistent_active=False,
            microphone_live=False,
            call_state="dialing",
        )


def test_progress_follows_planned_calls_first() -> None:
    """With a planned count, progress is finished / planned, whatever the time says."""
    assert snapshot(planned_calls=8, planned_seconds=10.0, finished=2, elapsed=9.0).progress == 0.25


def test_progress_follows_time_without_a_count() -> None:
    """Without a count, progress is elapsed / planned seconds."""
    assert snapshot(planned_seconds=40.0, elapsed=10.0).progress == 0.25


def test_progress_clamps_to_one_and_defaults_to_zero() -> None:
    """Progress never passes 1 (overtime, extra calls) and is 0 with nothing planned."""
    assert snapshot(planned_calls=4, finished=6).progress == 1.0
    assert snapshot(planned_seconds=5.0, elapsed=7.5).progress == 1.0
    assert snapshot(elapsed=100.0).progress == 0.0


def test_planned_values_must_be_positive() -> None:
    """Zero planned calls or seconds is refused: None says "not planned"."""
    with pytest.raises(ValueError, match="planned_calls"):
        snapshot(planned_calls=0)
    with pytest.raises(ValueError, match="planned_seconds"):
        snapshot(planned_seconds=0.0)
