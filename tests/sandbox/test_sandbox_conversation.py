"""The call state machine and the event shapes it renders, without any I/O."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from crmphone.errors import InvalidStateError
from crmphone.sandbox.conversation import (
    TRANSITIONS,
    Conversation,
    LegState,
    Move,
    Phase,
    Snapshot,
)

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def ids() -> itertools.count[int]:
    """A counter for readable ids."""
    return itertools.count(1)


def inbound() -> Conversation:
    """An inbound queue call alerting agent a1."""
    counter = ids()
    return Conversation.inbound(
        new_id=lambda: f"id-{next(counter)}",
        agent_id="a1",
        agent_name="Ada Lovelace",
        queue_id="q1",
        queue_name="Support",
        ani="+15551230001",
        dnis="+18005550100",
        now=T0,
        alerting_timeout_ms=8000,
        wrapup_code="Resolved",
    )


def outbound() -> Conversation:
    """An outbound call placed by agent a1."""
    counter = ids()
    return Conversation.outbound(
        new_id=lambda: f"id-{next(counter)}",
        agent_id="a1",
        agent_name="Ada Lovelace",
        agent_address="+18005550100",
        phone_number="+15557654321",
        queue_id=None,
        now=T0,
        wrapup_code="Sale",
    )


def agent_leg(snapshot: Snapshot) -> dict[str, object]:
    """The agent participant of a calls-topic body."""
    (leg,) = [p for p in snapshot.calls_body["participants"] if p["purpose"] in ("agent", "user")]
    return leg


def test_inbound_lifecycle_with_genesys_duplicates() -> None:
    """alerting twice, connected, disconnected+terminated back to back, terminated with wrap-up."""
    call = inbound()
    snapshots = call.opening()
    snapshots += call.apply(Move.ANSWER, T0 + timedelta(seconds=2))
    snapshots += call.apply(Move.CUSTOMER_HANGUP, T0 + timedelta(seconds=30))
    snapshots += call.apply(Move.FINISH_WRAPUP, T0 + timedelta(seconds=45))
    assert [s.agent_state for s in snapshots] == [
        LegState.ALERTING,
        LegState.ALERTING,
        LegState.CONNECTED,
        LegState.DISCONNECTED,
        LegState.TERMINATED,
        LegState.TERMINATED,
    ]
    assert call.phase is Phase.CLOSED
    assert call.history == [Move.ANSWER, Move.CUSTOMER_HANGUP, Move.FINISH_WRAPUP]
    last = agent_leg(snapshots[-1])
    assert last["connectedTime"] == "2026-01-01T12:00:02.000Z"
    assert last["endTime"] == "2026-01-01T12:00:30.000Z"
    assert last["disconnectType"] == "peer"
    assert last["wrapup"] == {
        "code": "Resolved",
        "notes": "Logged by the sandbox agent.",
        "tags": [],
        "durationSeconds": 15,
        "endTime": "2026-01-01T12:00:45.000Z",
    }
    assert "wrapup" not in agent_leg(snapshots[4])


def test_calls_topic_shape() -> None:
    """The conversations.calls body has customer, acd and agent legs with Genesys's fields."""
    body = inbound().snapshot().calls_body
    customer, acd, agent = body["participants"]
    assert (customer["purpose"], acd["purpose"], agent["purpose"]) == ("customer", "acd", "agent")
    assert customer["ani"] == "tel:+15551230001"
    assert customer["dnis"] == "tel:+18005550100"
    assert customer["direction"] == "inbound"
    assert acd["queue"] == {"id": "q1"}
    assert agent["user"] == {"id": "a1"}
    assert agent["queue"] == {"id": "q1"}
    assert agent["state"] == agent["initialState"] == "alerting"
    assert agent["alertingTimeoutMs"] == 8000
    assert agent["startTime"] == "2026-01-01T12:00:00.000Z"
    assert "connectedTime" not in agent  # nulls are left out
    assert all(value is not None for value in agent.values())


def test_conversations_topic_shape() -> None:
    """The conversations body puts the media state in calls[] with self/other addresses."""
    call = inbound()
    call.apply(Move.ANSWER, T0)
    body = call.snapshot().conversation_body
    agent = body["participants"][-1]
    assert agent["userId"] == "a1"
    assert agent["queueId"] == "q1"
    (media,) = agent["calls"]
    assert media["state"] == "connected"
    assert media["direction"] == "inbound"
    assert media["self"]["addressNormalized"].startswith("sip:a1@")
    assert media["other"]["addressNormalized"] == "+15551230001"
    assert media["peerId"] == body["participants"][0]["calls"][0]["id"]
    assert agent["chats"] == agent["emails"] == []


@pytest.mark.parametrize(
    ("move", "agent_type", "customer_type"),
    [
        (Move.REJECT, "client", "peer"),
        (Move.ALERT_TIMEOUT, "timeout", "peer"),
        (Move.CUSTOMER_HANGUP, "peer", "endpoint"),
    ],
)
def test_calls_that_end_while_ringing(move: Move, agent_type: str, customer_type: str) -> None:
    """A call ended while ringing closes at once, without wrap-up, with the right disconnectType."""
    call = inbound()
    snapshots = call.apply(move, T0 + timedelta(seconds=3))
    assert [s.agent_state for s in snapshots] == [LegState.DISCONNECTED, LegState.TERMINATED]
    assert call.phase is Phase.CLOSED
    agent = agent_leg(snapshots[0])
    assert agent["disconnectType"] == agent_type
    assert agent["wrapupRequired"] is False
    assert "connectedTime" not in agent
    customer = snapshots[0].calls_body["participants"][0]
    assert customer["disconnectType"] == customer_type


def test_agent_hangup_then_wrapup() -> None:
    """The agent hanging up is disconnectType client; the customer's leg is peer."""
    call = inbound()
    call.apply(Move.ANSWER, T0)
    snapshots = call.apply(Move.AGENT_HANGUP, T0 + timedelta(seconds=5))
    agent = agent_leg(snapshots[0])
    customer = snapshots[0].calls_body["participants"][0]
    assert (agent["disconnectType"], customer["disconnectType"]) == ("client", "peer")
    assert call.phase is Phase.WRAPUP


def test_hold_and_mute_stay_connected() -> None:
    """Hold and mute change flags (and startHoldTime) without leaving the connected state."""
    call = inbound()
    call.apply(Move.ANSWER, T0)
    (held,) = call.apply(Move.HOLD, T0 + timedelta(seconds=1))
    leg = agent_leg(held)
    assert (leg["state"], leg["held"], leg["startHoldTime"]) == (
        "connected",
        True,
        "2026-01-01T12:00:01.000Z",
    )
    (muted,) = call.apply(Move.MUTE, T0 + timedelta(seconds=2))
    assert agent_leg(muted)["muted"] is True
    (resumed,) = call.apply(Move.UNHOLD, T0 + timedelta(seconds=3))
    assert agent_leg(resumed)["held"] is False
    assert "startHoldTime" not in agent_leg(resumed)
    assert call.phase is Phase.TALKING


def test_illegal_moves_raise_and_change_nothing() -> None:
    """A move outside the transition table raises InvalidStateError; the call is unchanged."""
    call = inbound()
    for move in Move:
        if (Phase.RINGING, move) not in TRANSITIONS:
            with pytest.raises(InvalidStateError):
                call.apply(move, T0)
    assert call.phase is Phase.RINGING
    assert call.history == []
    assert call.agent.state is LegState.ALERTING


def test_outbound_call_dials_then_connects() -> None:
    """An outbound call starts dialing/contacting and connects when the customer answers."""
    call = outbound()
    agent, customer = call.agent, call.customer
    assert (agent.state, customer.state) == (LegState.DIALING, LegState.CONTACTING)
    assert agent.purpose == "user"
    assert call.acd is None
    call.apply(Move.ANSWER, T0 + timedelta(seconds=1))
    body = call.snapshot().calls_body
    assert [p["state"] for p in body["participants"]] == ["connected", "connected"]
    assert [p["direction"] for p in body["participants"]] == ["outbound", "outbound"]
    assert body["participants"][0]["dnis"] == "tel:+15557654321"


def test_participant_lookup() -> None:
    """participant() finds legs by id and answers None for strangers."""
    call = inbound()
    assert call.participant(call.agent.id) is call.agent
    assert call.participant("nobody") is None
    assert call.can(Move.ANSWER)
    assert not call.can(Move.FINISH_WRAPUP)
