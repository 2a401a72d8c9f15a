"""The event vocabulary: stable names, idempotency keys, UTC times, invariants."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import attrs
import pytest

from crmphone import events
from crmphone.events import (
    CallAlerting,
    CallConnected,
    CallDirection,
    CallEnded,
    CallHeld,
    CallResumed,
    CallTransferred,
    CallWrapup,
    HungUpBy,
)

WHEN = datetime(2026, 1, 1, 9, tzinfo=UTC)
IDS: dict[str, Any] = {"conversation_id": "c-1", "agent_id": "a-1", "participant_id": "p-1"}


def test_names_are_stable() -> None:
    """Adapters and the outbox persist these names: they never change."""
    assert {kind.name for kind in events.CallEvent.__args__} == {
        "call.alerting",
        "call.connected",
        "call.held",
        "call.resumed",
        "call.transferred",
        "call.ended",
        "call.wrapup",
    }


def test_keys_identify_the_event_of_the_leg() -> None:
    """One key per leg and kind; holds and resumes add their occurrence."""
    alerting = CallAlerting(**IDS, at=WHEN, direction=CallDirection.INBOUND)
    assert alerting.key == "c-1:p-1:call.alerting"
    assert CallHeld(**IDS, at=WHEN, occurrence=2).key == "c-1:p-1:call.held:2"
    assert CallResumed(**IDS, at=WHEN).key == "c-1:p-1:call.resumed:1"
    assert CallWrapup(**IDS, at=WHEN).key == "c-1:p-1:call.wrapup"


def test_times_are_normalised_to_utc_and_naive_ones_refused() -> None:
    """Aware times of any zone become UTC; a naive time is a ValueError."""
    paris = WHEN.astimezone(timezone(timedelta(hours=1)))
    connected = CallConnected(**IDS, at=paris, connected_at=paris)
    assert connected.at.tzinfo is UTC
    assert connected.at == WHEN
    with pytest.raises(ValueError, match="timezone-aware"):
        CallConnected(**IDS, at=WHEN.replace(tzinfo=None), connected_at=WHEN)
    with pytest.raises(TypeError, match="datetime"):
        CallTransferred(**IDS, at="2026-01-01")  # type: ignore[arg-type]


def test_an_ended_call_cannot_be_answered_and_missed_or_last_negative_time() -> None:
    """The invariants of CallEnded are checked at construction."""
    ended: dict[str, Any] = {**IDS, "at": WHEN, "ended_at": WHEN, "direction": "inbound"}
    with pytest.raises(ValueError, match="both answered and missed"):
        CallEnded(**ended, answered=True, missed=True)
    with pytest.raises(ValueError, match="duration_seconds"):
        CallEnded(**ended, duration_seconds=-1)
    assert CallEnded(**ended).who_hung_up is HungUpBy.UNKNOWN
    assert HungUpBy.UNKNOWN.value == "unknown"  # a StrEnum: stored and compared as text


def test_customer_number_follows_the_direction() -> None:
    """Inbound: the caller; outbound: the number the agent dialled."""
    inbound = CallAlerting(
        **IDS, at=WHEN, direction=CallDirection.INBOUND, ani="+1555", dnis="+1800"
    )
    assert inbound.customer_number == "+1555"
    assert attrs.evolve(inbound, direction=CallDirection.OUTBOUND).customer_number == "+1800"


def test_events_are_frozen_and_keyword_only() -> None:
    """Values: immutable, and built with names (no positional mix-ups of ids)."""
    held = CallHeld(**IDS, at=WHEN)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        held.occurrence = 2  # type: ignore[misc]
    with pytest.raises(TypeError):
        CallHeld("c-1", "a-1", "p-1", WHEN)  # type: ignore[call-arg]
