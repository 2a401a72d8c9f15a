"""The public event vocabulary: what adapters, the router and the outbox receive.

Every event is a frozen attrs value with a stable :attr:`~BaseCallEvent.name` (a class-level string
such as ``"call.alerting"``), the ``conversation_id`` and ``agent_id`` it concerns, and ``at``, an
aware UTC datetime (the platform's timestamp where it gave one, else the wall clock of the layer
that noticed). Nothing in an event is platform-specific text an adapter would have to parse: phone
numbers are plain (``+15551230001``, no ``tel:``), states and parties are enums.

One call, as the agent lives it, produces these events in this order (each at most once, except
hold and resume, which alternate):

.. code-block:: text

    CallAlerting ─► CallConnected ─► (CallHeld ─► CallResumed)* ─► [CallTransferred] ─► CallEnded ─► CallWrapup
         └────────────────────────────────────────────────────────────────────────────► CallEnded   (missed/declined)

:attr:`~BaseCallEvent.key` is the event's idempotency key, the same whichever process or resync
emitted it, so the outbox can refuse a second copy.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import ClassVar, TypeAlias

import attrs

__all__ = [
    "BaseCallEvent",
    "CallAlerting",
    "CallConnected",
    "CallDirection",
    "CallEnded",
    "CallEvent",
    "CallHeld",
    "CallResumed",
    "CallTransferred",
    "CallWrapup",
    "ConnectionState",
    "ConnectionStateChanged",
    "DownReason",
    "Event",
    "HungUpBy",
    "MicrophoneLive",
    "PersistentConnectionDown",
    "PersistentConnectionUp",
    "PhoneEvent",
    "PresenceChanged",
    "PresenceEvent",
    "RoutingStatus",
    "RoutingStatusChanged",
    "StatusEvent",
]


def _utc(value: datetime) -> datetime:
    """Normalise an aware datetime to UTC; a naive one is refused (its zone would be a guess)."""
    if not isinstance(value, datetime):
        raise TypeError(f"expected a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"event times must be timezone-aware, got naive {value.isoformat()}")
    return value.astimezone(UTC)


def _optional_utc(value: datetime | None) -> datetime | None:
    return None if value is None else _utc(value)


class CallDirection(enum.StrEnum):
    """Which way the call goes, seen from the agent: the customer called in, or was called."""

    INBOUND = "inbound"
    OUTBOUND = "outbound"


class HungUpBy(enum.StrEnum):
    """Who ended the call for the agent.

    ``SYSTEM`` covers the platform's own decisions (alerting timeout, errors, lost media);
    ``UNKNOWN`` is used when the platform did not say, or the call vanished from view.
    """

    AGENT = "agent"
    CUSTOMER = "customer"
    SYSTEM = "system"
    UNKNOWN = "unknown"


@attrs.frozen(kw_only=True)
class BaseCallEvent:
    """What every call event carries.

    ``participant_id`` is the agent's leg of the conversation (the id the platform's participant
    commands take: answer, hang up, hold). One agent can have more than one leg in a conversation
    (a call offered to them twice), so keys include it.
    """

    name: ClassVar[str] = "call"
    conversation_id: str
    agent_id: str
    participant_id: str
    at: datetime = attrs.field(converter=_utc)

    @property
    def key(self) -> str:
        """The idempotency key: ``{conversation_id}:{participant_id}:{name}``.

        Stable across processes and resyncs, so a second copy of the same event is recognisable.
        """
        return f"{self.conversation_id}:{self.participant_id}:{self.name}"


@attrs.frozen(kw_only=True)
class CallAlerting(BaseCallEvent):
    """A call was offered to the agent (inbound: ringing; outbound: the agent is dialling).

    The moment for a screen pop: :attr:`customer_number` is the number to look up. ``ani`` is
    the calling number and ``dnis`` the called one; ``caller_name`` is the name the platform
    shows for the customer, if any. ``attributes`` are the call's participant data (key, value)
    pairs, sorted, for mapping onto CRM fields.
    """

    name: ClassVar[str] = "call.alerting"
    direction: CallDirection
    ani: str | None = None
    dnis: str | None = None
    queue_id: str | None = None
    queue_name: str | None = None
    caller_name: str | None = None
    attributes: tuple[tuple[str, str], ...] = ()

    @property
    def customer_number(self) -> str | None:
        """The customer's number: the caller for inbound calls, the called number for outbound."""
        return self.ani if self.direction is CallDirection.INBOUND else self.dnis


@attrs.frozen(kw_only=True)
class CallConnected(BaseCallEvent):
    """The agent and the customer are talking (``at`` equals ``connected_at``)."""

    name: ClassVar[str] = "call.connected"
    connected_at: datetime = attrs.field(converter=_utc)


@attrs.frozen(kw_only=True)
class CallHeld(BaseCallEvent):
    """The customer was put on hold; ``occurrence`` counts the holds of this call from 1."""

    name: ClassVar[str] = "call.held"
    occurrence: int = 1

    @property
    def key(self) -> str:
        """The idempotency key, with the occurrence: a call can be held several times."""
        return f"{super().key}:{self.occurrence}"


@attrs.frozen(kw_only=True)
class CallResumed(BaseCallEvent):
    """The customer was taken off hold; ``occurrence`` pairs it with the :class:`CallHeld`."""

    name: ClassVar[str] = "call.resumed"
    occurrence: int = 1

    @property
    def key(self) -> str:
        """The idempotency key, with the occurrence: a call can be resumed several times."""
        return f"{super().key}:{self.occurrence}"


@attrs.frozen(kw_only=True)
class CallTransferred(BaseCallEvent):
    """The agent transferred the call away; a :class:`CallEnded` for the agent follows.

    The target, when the platform showed it: another agent (``to_user_id``), a queue
    (``to_queue_id``), or an outside number (``to_address``). All ``None`` when unknown.
    """

    name: ClassVar[str] = "call.transferred"
    to_user_id: str | None = None
    to_queue_id: str | None = None
    to_address: str | None = None


@attrs.frozen(kw_only=True)
class CallEnded(BaseCallEvent):
    """The call ended for the agent (``at`` equals ``ended_at``).

    ``answered`` says whether the agent ever talked to the customer; ``missed`` is an inbound call
    the agent never answered (declined, timed out, or abandoned by the caller).
    ``duration_seconds`` is the talk time, connect to end, holds included (0 when unanswered).
    ``disconnect_type`` is the platform's raw reason (``client``, ``peer``, ``timeout``,
    ``transfer``...), for the record; ``who_hung_up`` is what it means.
    """

    name: ClassVar[str] = "call.ended"
    direction: CallDirection
    started_at: datetime | None = attrs.field(default=None, converter=_optional_utc)
    connected_at: datetime | None = attrs.field(default=None, converter=_optional_utc)
    ended_at: datetime = attrs.field(converter=_utc)
    duration_seconds: int = attrs.field(default=0)
    who_hung_up: HungUpBy = HungUpBy.UNKNOWN
    disconnect_type: str | None = None
    answered: bool = False
    missed: bool = attrs.field(default=False)

    @duration_seconds.validator
    def _check_duration(self, attribute: attrs.Attribute[int], value: int) -> None:
        if value < 0:
            raise ValueError(f"duration_seconds must be >= 0, not {value!r}")

    @missed.validator
    def _check_missed(self, attribute: attrs.Attribute[bool], value: bool) -> None:
        if value and self.answered:
            raise ValueError("a call cannot be both answered and missed")


@attrs.frozen(kw_only=True)
class CallWrapup(BaseCallEvent):
    """The agent's after-call work: wrap-up ``code``, ``notes``, and the seconds it took."""

    name: ClassVar[str] = "call.wrapup"
    code: str | None = None
    notes: str | None = None
    duration_seconds: int | None = None


CallEvent: TypeAlias = (
    CallAlerting | CallConnected | CallHeld | CallResumed | CallTransferred | CallEnded | CallWrapup
)
"""Any call event (match on the class to handle each kind)."""


# ---------------------------------------------------------------------------------------------
# Connection and presence events.
#
# The phone's events (crmphone.phone emits them; a UI draws the "persistent connection active"
# icon and the microphone from them). The presence layer adds its events here too, and to the
# ``Event`` union below. Do not add them elsewhere: adapters import the vocabulary
# from this one module.
# ---------------------------------------------------------------------------------------------


class ConnectionState(enum.StrEnum):
    """The phone's media connection, named as the platform's ``persistentState`` names it.

    ``IDLE``: no connection yet in this session (the platform says ``UNKNOWN``).
    ``ESTABLISHING``: offer/answer, ICE and DTLS under way (or awaited, after a login set-up).
    ``PERSISTED``: connected, no call on it. ``ACTIVE_CALL``: a call rides it.
    ``DISCONNECTED``: ended on purpose (timeout, logout, stop). ``FAILED``: ended by a failure.
    From ``DISCONNECTED`` and ``FAILED`` the next call sets it up again like a first call.
    """

    IDLE = "IDLE"
    ESTABLISHING = "ESTABLISHING"
    PERSISTED = "PERSISTED"
    ACTIVE_CALL = "ACTIVE_CALL"
    DISCONNECTED = "DISCONNECTED"
    FAILED = "FAILED"

    @property
    def is_up(self) -> bool:
        """True when media can flow (``PERSISTED`` or ``ACTIVE_CALL``)."""
        return self in (ConnectionState.PERSISTED, ConnectionState.ACTIVE_CALL)


class DownReason(enum.StrEnum):
    """Why a persistent connection ended."""

    IDLE_TIMEOUT = "idle_timeout"
    """No call for the inactivity timeout (default 600 s)."""
    LOGOUT = "logout"
    """The agent logged out (the softphone closed)."""
    MANUAL = "manual"
    """The agent stopped it (``stop()``; with ``force=True`` during a call, which dropped it)."""
    MEDIA_FAILURE = "media_failure"
    """No media (RTP or RTCP) arrived for the liveness window: the path is dead."""
    SETUP_FAILED = "setup_failed"
    """Offer/answer, ICE or DTLS did not complete, or the login set-up never came."""
    PLATFORM = "platform"
    """The platform ended it (its own timeout, or it reported the connection failed)."""


@attrs.frozen
class PersistentConnectionUp:
    """The persistent connection is up: later calls will ride it with no new set-up.

    ``via`` is ``"login"`` (silent set-up for agents who may take calls off queue) or
    ``"first_call"`` (set up by the call ``conversation_id``).
    """

    name: ClassVar[str] = "phone.persistent_connection_up"
    agent_id: str
    station_id: str | None
    via: str
    conversation_id: str | None
    at: datetime


@attrs.frozen
class PersistentConnectionDown:
    """The persistent connection ended; the next call sets it up again like a first call.

    ``dropped_conversation_id`` names the call a forced stop (or a failure) ended with it.
    """

    name: ClassVar[str] = "phone.persistent_connection_down"
    agent_id: str
    station_id: str | None
    reason: DownReason
    detail: str
    at: datetime
    dropped_conversation_id: str | None = None


@attrs.frozen
class MicrophoneLive:
    """Whether audio from the microphone is being sent right now."""

    name: ClassVar[str] = "phone.microphone_live"
    agent_id: str
    live: bool
    at: datetime


@attrs.frozen
class ConnectionStateChanged:
    """Every change of :class:`ConnectionState`, for UIs that draw the whole state."""

    name: ClassVar[str] = "phone.connection_state"
    agent_id: str
    previous: ConnectionState
    state: ConnectionState
    at: datetime


PhoneEvent = (
    PersistentConnectionUp | PersistentConnectionDown | MicrophoneLive | ConnectionStateChanged
)
"""Any event the phone's connection policy emits."""


# Presence (the platform's view of the agent: the presence they chose and the routing status
# the platform gives them). crmphone.presence turns the platform's presence and routingStatus
# topics into these.


class RoutingStatus(enum.StrEnum):
    """The platform's routing status of an agent (who can be offered queue calls now)."""

    OFF_QUEUE = "OFF_QUEUE"
    """Not on queue: no queue calls are offered."""
    IDLE = "IDLE"
    """On queue and free: the next queue call may be offered."""
    INTERACTING = "INTERACTING"
    """On queue and busy with a call."""
    NOT_RESPONDING = "NOT_RESPONDING"
    """On queue, but let an offered call go unanswered: nothing more is offered until they act."""
    COMMUNICATING = "COMMUNICATING"
    """On queue, busy with a call that did not come from a queue."""


@attrs.frozen
class PresenceChanged:
    """The agent's presence changed (what they chose: Available, Busy, On Queue, Offline, …).

    ``system_presence`` is the platform's system presence in upper snake case (``AVAILABLE``,
    ``AWAY``, ``BUSY``, ``OFFLINE``, ``IDLE``, ``ON_QUEUE``, ``MEAL``, ``TRAINING``, ``MEETING``,
    ``BREAK``; an organisation's own presences map onto one of these). ``presence_id`` is the
    presence definition (an organisation may define several per system presence), ``message``
    the agent's status text, ``previous`` the system presence before (None: first seen).
    """

    name: ClassVar[str] = "presence.changed"
    agent_id: str
    system_presence: str
    presence_id: str | None
    message: str
    previous: str | None
    at: datetime

    @property
    def on_queue(self) -> bool:
        """True when the agent went on queue."""
        return self.system_presence == "ON_QUEUE"


@attrs.frozen
class RoutingStatusChanged:
    """The agent's routing status changed; ``previous`` is None the first time it is seen."""

    name: ClassVar[str] = "presence.routing_status"
    agent_id: str
    status: RoutingStatus
    previous: RoutingStatus | None
    at: datetime


PresenceEvent: TypeAlias = PresenceChanged | RoutingStatusChanged
"""Any presence event."""

StatusEvent: TypeAlias = PhoneEvent | PresenceEvent
"""What describes *now* rather than a call: shown as it comes, never stored."""

Event: TypeAlias = CallEvent | PhoneEvent | PresenceEvent
"""Every event an adapter can receive."""
