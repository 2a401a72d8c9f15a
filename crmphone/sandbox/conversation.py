"""One sandbox phone call as a pure state machine, rendered in Genesys Cloud's event shapes.

A :class:`Conversation` has a customer participant, for inbound calls an ``acd`` participant (the
queue), and the agent participant. :meth:`Conversation.apply` takes a :class:`Move` and the wall
time and returns the :class:`Snapshot` s to publish, one per platform event, including the
duplicates Genesys sends (the same state twice; ``disconnected`` then ``terminated`` back to back).

Phases and legal moves (everything else raises :class:`~crmphone.errors.InvalidStateError`):

.. code-block:: text

    RINGING --ANSWER--------------> TALKING    agent (inbound) or customer (outbound) picks up
    RINGING --REJECT--------------> CLOSED     agent declines: disconnectType client
    RINGING --ALERT_TIMEOUT-------> CLOSED     nobody answered: disconnectType timeout
    RINGING --CUSTOMER_HANGUP-----> CLOSED     caller abandons: agent leg disconnectType peer
    TALKING --HOLD/UNHOLD/MUTE/UNMUTE--> TALKING
    TALKING --CUSTOMER_HANGUP-----> WRAPUP     customer: endpoint; agent: peer
    TALKING --AGENT_HANGUP--------> WRAPUP     agent: client; customer: peer
    WRAPUP  --FINISH_WRAPUP-------> CLOSED     wrap-up code, notes and duration arrive

Two bodies are rendered per snapshot, matching the SDK's models of the two user topics:

* ``v2.users.{id}.conversations.calls`` (``ConversationCallEventTopicCallConversation``): state on
  each participant (``state``, ``initialState``, ``direction``, ``ani``, ``dnis``, ``user``,
  ``queue``, ``wrapup``...). ``GET /api/v2/conversations/calls/{id}`` answers the same body.
* ``v2.users.{id}.conversations`` (``ConversationEventTopicConversation``): participants carry
  ``userId``/``queueId`` and the media state in ``calls[]`` (``state``, ``self``/``other``
  addresses, ``disconnectedTime``, ``peerId``) with empty lists for the other media.

Fields that would be ``null`` are left out, as the platform does.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from datetime import datetime
from typing import Any

import attrs

from crmphone.errors import InvalidStateError

from . import wire

__all__ = [
    "CallDirection",
    "Conversation",
    "LegState",
    "Move",
    "Participant",
    "Phase",
    "Snapshot",
    "Wrapup",
]


class Phase(enum.Enum):
    """Where the call is, from the agent's point of view."""

    RINGING = "ringing"
    TALKING = "talking"
    WRAPUP = "wrapup"
    CLOSED = "closed"


class Move(enum.Enum):
    """Something that happens to a call."""

    ANSWER = "answer"
    REJECT = "reject"
    ALERT_TIMEOUT = "alert_timeout"
    CUSTOMER_HANGUP = "customer_hangup"
    AGENT_HANGUP = "agent_hangup"
    HOLD = "hold"
    UNHOLD = "unhold"
    MUTE = "mute"
    UNMUTE = "unmute"
    FINISH_WRAPUP = "finish_wrapup"


TRANSITIONS: dict[tuple[Phase, Move], Phase] = {
    (Phase.RINGING, Move.ANSWER): Phase.TALKING,
    (Phase.RINGING, Move.REJECT): Phase.CLOSED,
    (Phase.RINGING, Move.ALERT_TIMEOUT): Phase.CLOSED,
    (Phase.RINGING, Move.CUSTOMER_HANGUP): Phase.CLOSED,
    (Phase.TALKING, Move.HOLD): Phase.TALKING,
    (Phase.TALKING, Move.UNHOLD): Phase.TALKING,
    (Phase.TALKING, Move.MUTE): Phase.TALKING,
    (Phase.TALKING, Move.UNMUTE): Phase.TALKING,
    (Phase.TALKING, Move.CUSTOMER_HANGUP): Phase.WRAPUP,
    (Phase.TALKING, Move.AGENT_HANGUP): Phase.WRAPUP,
    (Phase.WRAPUP, Move.FINISH_WRAPUP): Phase.CLOSED,
}
"""Every legal move, in one table."""


class LegState(enum.StrEnum):
    """A participant's state, spelled as the platform spells it."""

    ALERTING = "alerting"
    DIALING = "dialing"
    CONTACTING = "contacting"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    TERMINATED = "terminated"


class CallDirection(enum.StrEnum):
    """Direction of the call as the agent sees it."""

    INBOUND = "inbound"
    OUTBOUND = "outbound"


WRAPUP_CODES = ("Resolved", "Follow-up required", "Sale", "Information given", "Escalated")
"""Wrap-up codes the sandbox agents pick from (readable names rather than code ids)."""


@attrs.frozen
class Wrapup:
    """The agent's after-call work: code, notes, and how long it took."""

    code: str
    notes: str
    duration_seconds: int
    end_time: datetime

    def to_genesys(self) -> dict[str, Any]:
        """The ``wrapup`` object of a participant."""
        return {
            "code": self.code,
            "notes": self.notes,
            "tags": [],
            "durationSeconds": self.duration_seconds,
            "endTime": wire.iso_utc(self.end_time),
        }


@attrs.define
class Participant:
    """One leg of the call (customer, acd or agent), mutated as the call progresses."""

    id: str
    call_id: str
    purpose: str
    name: str
    address: str
    direction: CallDirection
    state: LegState
    initial_state: LegState
    start_time: datetime
    ani: str
    dnis: str
    user_id: str | None = None
    queue_id: str | None = None
    connected_time: datetime | None = None
    end_time: datetime | None = None
    disconnect_type: str | None = None
    held: bool = False
    muted: bool = False
    start_hold_time: datetime | None = None
    wrapup_required: bool = False
    wrapup: Wrapup | None = None
    alerting_timeout_ms: int | None = None
    peer_call_id: str | None = None

    @property
    def ended(self) -> bool:
        """True once the leg is disconnected or terminated."""
        return self.state in (LegState.DISCONNECTED, LegState.TERMINATED)

    def connect(self, now: datetime) -> None:
        """The leg is answered."""
        self.state = LegState.CONNECTED
        self.connected_time = now

    def disconnect(self, now: datetime, disconnect_type: str) -> None:
        """The leg ends (no effect on a leg that already ended)."""
        if self.ended:
            return
        self.state = LegState.DISCONNECTED
        self.end_time = now
        self.disconnect_type = disconnect_type
        self.held = False
        self.start_hold_time = None

    def to_call_participant(self) -> dict[str, Any]:
        """The participant in the ``conversations.calls`` topic / REST call conversation."""
        body: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "address": self.address,
            "startTime": wire.iso_utc(self.start_time),
            "connectedTime": _iso(self.connected_time),
            "endTime": _iso(self.end_time),
            "startHoldTime": _iso(self.start_hold_time),
            "purpose": self.purpose,
            "state": self.state.value,
            "initialState": self.initial_state.value,
            "direction": self.direction.value,
            "disconnectType": self.disconnect_type,
            "held": self.held,
            "wrapupRequired": self.wrapup_required,
            "user": {"id": self.user_id} if self.user_id else None,
            "queue": {"id": self.queue_id} if self.queue_id else None,
            "attributes": {},
            "alertingTimeoutMs": self.alerting_timeout_ms,
            "provider": "Edge",
            "wrapup": self.wrapup.to_genesys() if self.wrapup else None,
            "peer": self.peer_call_id,
            "muted": self.muted,
            "confined": False,
            "recording": False,
            "recordingState": "none",
            "ani": self.ani,
            "dnis": self.dnis,
        }
        return _without_nulls(body)

    def to_conversation_participant(self, other: Participant | None) -> dict[str, Any]:
        """The participant in the ``conversations`` topic: media state inside ``calls[]``."""
        call: dict[str, Any] = {
            "id": self.call_id,
            "state": self.state.value,
            "initialState": self.initial_state.value,
            "recording": False,
            "recordingState": "none",
            "muted": self.muted,
            "confined": False,
            "held": self.held,
            "securePause": False,
            "disconnectType": self.disconnect_type,
            "startHoldTime": _iso(self.start_hold_time),
            "direction": self.direction.value,
            "self": _address(self.name, self.address),
            "other": _address(other.name, other.address) if other else None,
            "provider": "Edge",
            "peerId": self.peer_call_id,
            "connectedTime": _iso(self.connected_time),
            "disconnectedTime": _iso(self.end_time),
            "afterCallWorkRequired": self.wrapup_required,
        }
        body: dict[str, Any] = {
            "id": self.id,
            "connectedTime": _iso(self.connected_time),
            "endTime": _iso(self.end_time),
            "userId": self.user_id,
            "queueId": self.queue_id,
            "name": self.name,
            "purpose": self.purpose,
            "address": self.address,
            "wrapupRequired": self.wrapup_required,
            "wrapup": self.wrapup.to_genesys() if self.wrapup else None,
            "alertingTimeoutMs": self.alerting_timeout_ms,
            "attributes": {},
            "calls": [_without_nulls(call)],
            "callbacks": [],
            "chats": [],
            "cobrowsesessions": [],
            "emails": [],
            "messages": [],
            "screenshares": [],
            "socialExpressions": [],
            "videos": [],
        }
        return _without_nulls(body)


@attrs.frozen
class Snapshot:
    """The call at one instant, as both user topics render it."""

    conversation_id: str
    agent_id: str
    queue_id: str | None
    calls_body: dict[str, Any]
    conversation_body: dict[str, Any]
    agent_state: LegState


@attrs.define
class Conversation:
    """A call between a customer and one sandbox agent (see the module docstring)."""

    id: str
    agent_id: str
    direction: CallDirection
    customer: Participant
    agent: Participant
    acd: Participant | None
    queue_id: str | None
    wrapup_code: str
    phase: Phase = Phase.RINGING
    history: list[Move] = attrs.field(factory=list)
    """Every move applied so far, in order."""

    @classmethod
    def inbound(
        cls,
        *,
        new_id: Callable[[], str],
        agent_id: str,
        agent_name: str,
        queue_id: str | None,
        queue_name: str | None,
        ani: str,
        dnis: str,
        now: datetime,
        alerting_timeout_ms: int,
        wrapup_code: str,
    ) -> Conversation:
        """A customer calls ``dnis`` from ``ani``; the call is in the queue and alerts the agent."""
        conversation_id = new_id()
        customer = Participant(
            id=new_id(),
            call_id=new_id(),
            purpose="customer",
            name="Customer",
            address=ani,
            direction=CallDirection.INBOUND,
            state=LegState.CONNECTED,
            initial_state=LegState.CONNECTED,
            start_time=now,
            connected_time=now,
            ani=f"tel:{ani}",
            dnis=f"tel:{dnis}",
        )
        acd = None
        if queue_id is not None:
            acd = Participant(
                id=new_id(),
                call_id=new_id(),
                purpose="acd",
                name=queue_name or "Queue",
                address=dnis,
                direction=CallDirection.INBOUND,
                state=LegState.CONNECTED,
                initial_state=LegState.CONNECTED,
                start_time=now,
                connected_time=now,
                ani=f"tel:{ani}",
                dnis=f"tel:{dnis}",
                queue_id=queue_id,
            )
        agent = Participant(
            id=new_id(),
            call_id=new_id(),
            purpose="agent" if queue_id is not None else "user",
            name=agent_name,
            address=f"sip:{agent_id}@sandbox.example",
            direction=CallDirection.INBOUND,
            state=LegState.ALERTING,
            initial_state=LegState.ALERTING,
            start_time=now,
            ani=f"tel:{ani}",
            dnis=f"tel:{dnis}",
            user_id=agent_id,
            queue_id=queue_id,
            wrapup_required=True,
            alerting_timeout_ms=alerting_timeout_ms,
            peer_call_id=customer.call_id,
        )
        customer.peer_call_id = agent.call_id
        return cls(
            id=conversation_id,
            agent_id=agent_id,
            direction=CallDirection.INBOUND,
            customer=customer,
            agent=agent,
            acd=acd,
            queue_id=queue_id,
            wrapup_code=wrapup_code,
        )

    @classmethod
    def outbound(
        cls,
        *,
        new_id: Callable[[], str],
        agent_id: str,
        agent_name: str,
        agent_address: str,
        phone_number: str,
        queue_id: str | None,
        now: datetime,
        wrapup_code: str,
    ) -> Conversation:
        """The agent dials ``phone_number``: the agent leg is dialing, the customer contacted."""
        conversation_id = new_id()
        agent = Participant(
            id=new_id(),
            call_id=new_id(),
            purpose="agent" if queue_id is not None else "user",
            name=agent_name,
            address=f"sip:{agent_id}@sandbox.example",
            direction=CallDirection.OUTBOUND,
            state=LegState.DIALING,
            initial_state=LegState.DIALING,
            start_time=now,
            ani=f"tel:{agent_address}",
            dnis=f"tel:{phone_number}",
            user_id=agent_id,
            queue_id=queue_id,
            wrapup_required=True,
        )
        customer = Participant(
            id=new_id(),
            call_id=new_id(),
            purpose="customer",
            name="Customer",
            address=phone_number,
            direction=CallDirection.OUTBOUND,
            state=LegState.CONTACTING,
            initial_state=LegState.CONTACTING,
            start_time=now,
            ani=f"tel:{agent_address}",
            dnis=f"tel:{phone_number}",
            peer_call_id=agent.call_id,
        )
        agent.peer_call_id = customer.call_id
        return cls(
            id=conversation_id,
            agent_id=agent_id,
            direction=CallDirection.OUTBOUND,
            customer=customer,
            agent=agent,
            acd=None,
            queue_id=queue_id,
            wrapup_code=wrapup_code,
        )

    @property
    def participants(self) -> tuple[Participant, ...]:
        """Customer, acd (when present), agent — the order Genesys lists them in."""
        return tuple(p for p in (self.customer, self.acd, self.agent) if p is not None)

    def participant(self, participant_id: str) -> Participant | None:
        """The participant with ``participant_id``, or None."""
        for participant in self.participants:
            if participant.id == participant_id:
                return participant
        return None

    def opening(self) -> list[Snapshot]:
        """The snapshots that announce a new call (the first state arrives twice, as on Genesys)."""
        first = self.snapshot()
        return [first, first]

    def can(self, move: Move) -> bool:
        """True when ``move`` is legal in the current phase."""
        return (self.phase, move) in TRANSITIONS

    def apply(self, move: Move, now: datetime) -> list[Snapshot]:
        """Perform ``move`` at wall time ``now``; returns the snapshots to publish, in order.

        Raises InvalidStateError when the move is not legal in the current phase.
        """
        target = TRANSITIONS.get((self.phase, move))
        if target is None:
            raise InvalidStateError(
                f"Conversation {self.id} cannot {move.value} while {self.phase.value}."
            )
        snapshots = self._perform(move, now)
        self.history.append(move)
        self.phase = target
        return snapshots

    def _perform(self, move: Move, now: datetime) -> list[Snapshot]:
        agent, customer = self.agent, self.customer
        match move:
            case Move.ANSWER:
                agent.connect(now)
                customer.connect(now)
                if self.acd is not None:
                    self.acd.disconnect(now, "transfer")
                return [self.snapshot()]
            case Move.HOLD | Move.UNHOLD:
                agent.held = move is Move.HOLD
                agent.start_hold_time = now if agent.held else None
                return [self.snapshot()]
            case Move.MUTE | Move.UNMUTE:
                agent.muted = move is Move.MUTE
                return [self.snapshot()]
            case Move.REJECT | Move.ALERT_TIMEOUT | Move.CUSTOMER_HANGUP if (
                self.phase is Phase.RINGING
            ):
                agent.wrapup_required = False
                agent_type = {
                    Move.REJECT: "client",
                    Move.ALERT_TIMEOUT: "timeout",
                    Move.CUSTOMER_HANGUP: "peer",
                }[move]
                customer_type = "endpoint" if move is Move.CUSTOMER_HANGUP else "peer"
                return self._end(now, agent_type=agent_type, customer_type=customer_type)
            case Move.CUSTOMER_HANGUP:
                return self._end(now, agent_type="peer", customer_type="endpoint")
            case Move.AGENT_HANGUP:
                return self._end(now, agent_type="client", customer_type="peer")
            case Move.FINISH_WRAPUP:
                assert agent.end_time is not None
                agent.wrapup = Wrapup(
                    code=self.wrapup_code,
                    notes="Logged by the sandbox agent.",
                    duration_seconds=max(0, round((now - agent.end_time).total_seconds())),
                    end_time=now,
                )
                return [self.snapshot()]
        raise AssertionError(f"unhandled move {move}")  # pragma: no cover - TRANSITIONS guards

    def _end(self, now: datetime, *, agent_type: str, customer_type: str) -> list[Snapshot]:
        """Disconnect every leg, then terminate the agent's: two snapshots back to back."""
        self.customer.disconnect(now, customer_type)
        if self.acd is not None:
            self.acd.disconnect(now, "transfer" if self.agent.connected_time else customer_type)
        self.agent.disconnect(now, agent_type)
        disconnected = self.snapshot()
        for participant in self.participants:
            participant.state = LegState.TERMINATED
        return [disconnected, self.snapshot()]

    def snapshot(self) -> Snapshot:
        """The call as it is now, in both topic shapes."""
        participants = self.participants
        calls_body = {
            "id": self.id,
            "participants": [p.to_call_participant() for p in participants],
            "recordingState": "none",
            "securePause": False,
            "maxParticipants": len(participants),
        }
        conversation_body = {
            "id": self.id,
            "maxParticipants": len(participants),
            "participants": [p.to_conversation_participant(self._other(p)) for p in participants],
            "recordingState": "none",
            "securePause": False,
            "address": self.customer.address,
        }
        return Snapshot(
            conversation_id=self.id,
            agent_id=self.agent_id,
            queue_id=self.queue_id,
            calls_body=calls_body,
            conversation_body=conversation_body,
            agent_state=self.agent.state,
        )

    def _other(self, participant: Participant) -> Participant | None:
        if participant is self.customer:
            return self.agent
        if participant is self.agent:
            return self.customer
        return self.customer  # the acd leg talks to the customer


def _iso(moment: datetime | None) -> str | None:
    return wire.iso_utc(moment) if moment is not None else None


def _address(name: str, address: str) -> dict[str, str]:
    return {
        "name": name,
        "nameRaw": name,
        "addressNormalized": address,
        "addressRaw": address,
        "addressDisplayable": address,
    }


def _without_nulls(body: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in body.items() if value is not None}
