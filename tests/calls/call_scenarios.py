"""Realistic call updates for the call tracker's tests, made by the sandbox's pure call model.

:class:`Scenario` drives a :class:`~crmphone.sandbox.conversation.Conversation` through moves at
known times and keeps every snapshot it would publish, in both user-topic shapes. Hand-built
bodies (transfers, several agent legs) use :func:`leg` and :func:`conversation`.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs

from crmphone.notifications.messages import TopicEvent
from crmphone.platform.models import CallConversation
from crmphone.sandbox.conversation import Conversation, Move, Snapshot

AGENT = "agent-a"
OTHER_AGENT = "agent-b"
QUEUE = "queue-1"
T0 = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
ANI = "+15551230001"
DNIS = "+18005550100"


def at(seconds: float) -> datetime:
    """``T0`` plus ``seconds``."""
    return T0 + timedelta(seconds=seconds)


def iso(seconds: float) -> str:
    """``at(seconds)`` as the platform writes it."""
    return at(seconds).strftime("%Y-%m-%dT%H:%M:%S.") + f"{at(seconds).microsecond // 1000:03d}Z"


@attrs.define
class Scenario:
    """One sandbox call and every snapshot it published, oldest first."""

    conversation: Conversation
    snapshots: list[Snapshot] = attrs.field(factory=list)

    @classmethod
    def inbound(cls, *, queue: bool = True, agent: str = AGENT, prefix: str = "c") -> Scenario:
        """A call from ``ANI`` to ``DNIS`` alerting ``agent`` at ``T0`` (both opening copies kept)."""
        counter = itertools.count(1)
        conversation = Conversation.inbound(
            new_id=lambda: f"{prefix}-{next(counter)}",
            agent_id=agent,
            agent_name="Ada Agent",
            queue_id=QUEUE if queue else None,
            queue_name="Support" if queue else None,
            ani=ANI,
            dnis=DNIS,
            now=T0,
            alerting_timeout_ms=30_000,
            wrapup_code="Resolved",
        )
        return cls(conversation, conversation.opening())

    @classmethod
    def outbound(cls, *, agent: str = AGENT, prefix: str = "o") -> Scenario:
        """``agent`` dials ``ANI`` at ``T0``."""
        counter = itertools.count(1)
        conversation = Conversation.outbound(
            new_id=lambda: f"{prefix}-{next(counter)}",
            agent_id=agent,
            agent_name="Ada Agent",
            agent_address=DNIS,
            phone_number=ANI,
            queue_id=None,
            now=T0,
            wrapup_code="Sale",
        )
        return cls(conversation, conversation.opening())

    @property
    def id(self) -> str:
        """The conversation id."""
        return self.conversation.id

    def play(self, *moves: Move, start: float = 10.0, step: float = 10.0) -> Scenario:
        """Apply ``moves`` at ``T0 + start``, ``+ step``, ...; keeps their snapshots."""
        for index, move in enumerate(moves):
            self.snapshots.extend(self.conversation.apply(move, at(start + index * step)))
        return self

    def calls(self, index: int = -1) -> CallConversation:
        """Snapshot ``index`` as the calls-topic body parses."""
        return CallConversation.from_genesys(self.snapshots[index].calls_body)

    def all_calls(self) -> list[CallConversation]:
        """Every snapshot as a calls-topic conversation, in order."""
        return [CallConversation.from_genesys(s.calls_body) for s in self.snapshots]

    def event(self, index: int = -1, *, generic: bool = False) -> TopicEvent:
        """Snapshot ``index`` as a notification on the agent's calls (or all-media) topic."""
        return topic_event(self.snapshots[index], generic=generic)


def topic_event(snapshot: Snapshot, *, generic: bool = False) -> TopicEvent:
    """``snapshot`` as it arrives on ``v2.users.{agent}.conversations[.calls]``."""
    topic = f"v2.users.{snapshot.agent_id}.conversations"
    if generic:
        return TopicEvent(topic, snapshot.conversation_body)
    return TopicEvent(f"{topic}.calls", snapshot.calls_body)


def leg(
    participant_id: str,
    state: str,
    *,
    purpose: str = "agent",
    user: str | None = AGENT,
    queue: str | None = QUEUE,
    direction: str = "inbound",
    start: float = 0.0,
    connected: float | None = None,
    ended: float | None = None,
    disconnect_type: str | None = None,
    held: bool = False,
    wrapup_required: bool = False,
    wrapup: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """One participant of a calls-topic body (``None`` fields left out, as the platform does)."""
    body: dict[str, Any] = {
        "id": participant_id,
        "purpose": purpose,
        "state": state,
        "direction": direction,
        "startTime": iso(start),
        "connectedTime": None if connected is None else iso(connected),
        "endTime": None if ended is None else iso(ended),
        "disconnectType": disconnect_type,
        "held": held,
        "wrapupRequired": wrapup_required,
        "user": None if user is None else {"id": user},
        "queue": None if queue is None else {"id": queue},
        "wrapup": wrapup,
        **extra,
    }
    return {key: value for key, value in body.items() if value is not None}


def customer(state: str = "connected", **fields: Any) -> dict[str, Any]:
    """The customer participant of a hand-built inbound call from ``ANI``."""
    values: dict[str, Any] = {
        "purpose": "customer",
        "user": None,
        "queue": None,
        "connected": 0.0,
        "ani": f"tel:{ANI}",
        "dnis": f"tel:{DNIS}",
        "address": ANI,
        "name": "Customer",
    }
    values.update(fields)
    return leg("p-customer", state, **values)


def conversation(
    *participants: dict[str, Any], conversation_id: str = "conv-1"
) -> CallConversation:
    """A calls-topic conversation of ``participants``."""
    return CallConversation.from_genesys(
        {"id": conversation_id, "participants": list(participants)}
    )


def names(events: Sequence[object]) -> list[str]:
    """The ``name`` of each event."""
    return [getattr(event, "name", "?") for event in events]
