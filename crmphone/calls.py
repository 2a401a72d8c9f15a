"""Conversation updates in, call events out: one small state machine per agent leg, sans-I/O.

The platform has no sequence numbers and no replay. The same state arrives more than once,
``disconnected`` and ``terminated`` come back to back, a wrap-up arrives later as one more update,
two sockets or two topics deliver the same update, and after a reconnect the caller re-reads live
calls over REST. :class:`CallTracker` turns all of that into each :mod:`crmphone.events` event
exactly once, in a valid order.

It follows every *agent leg*: a participant with purpose ``agent`` (queue calls) or ``user``
(direct calls) belonging to one of the tracked agents. Legs, not conversations, are the unit
because one conversation can offer itself to several agents, or to the same agent twice; each leg
of *this* agent that changes moves its own machine, and the other legs are left alone.

Every update is reduced to what it says about the leg — how far it got (offered, talking, ended,
wrapped up), whether it is held, whether it ended in a transfer — and the machine walks the
table below from where it is to there, emitting each step's events. An update that shows less
progress than the machine has seen is stale and changes nothing, so nothing goes backwards;
one that shows the same progress changes nothing either, so duplicates are free. Progress comes
from the leg's state and its monotone timestamps (a ``connectedTime`` means it was answered,
whatever the state says). Only hold/resume flips within a call cannot be ordered this way (the
platform dates neither), so they are taken as they come, always alternating.

.. code-block:: text

    state       step        next        events
    NEW         OFFER       ALERTING    CallAlerting
    ALERTING    ANSWER      CONNECTED   CallConnected
    ALERTING    END         ENDED       CallEnded (answered=False; missed when inbound)
    CONNECTED   HOLD        HELD        CallHeld
    HELD        RESUME      CONNECTED   CallResumed
    CONNECTED   END         ENDED       CallEnded
    HELD        END         ENDED       CallEnded
    CONNECTED   TRANSFER    ENDED       CallTransferred, CallEnded
    HELD        TRANSFER    ENDED       CallTransferred, CallEnded
    ENDED       WRAPUP      WRAPPED_UP  CallWrapup

An ended leg is remembered for ``retention`` seconds after its last change (a late wrap-up still
comes through once; late duplicates emit nothing), and at most ``max_ended`` ended legs are kept,
so memory stays bounded. Updates the tracker cannot read are counted in :attr:`CallTracker.stats`
and logged, never raised.
"""

from __future__ import annotations

import collections
import enum
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any, TypeAlias

import attrs

from crmphone.clock import Clock, SystemClock
from crmphone.errors import InvalidStateError, PlatformError
from crmphone.events import (
    BaseCallEvent,
    CallAlerting,
    CallConnected,
    CallDirection,
    CallEnded,
    CallEvent,
    CallHeld,
    CallResumed,
    CallTransferred,
    CallWrapup,
    HungUpBy,
)
from crmphone.notifications.messages import TopicEvent
from crmphone.platform.models import CallConversation, Participant

__all__ = ["TRANSITIONS", "CallState", "CallTracker", "Step", "TrackerStats"]

logger = logging.getLogger(__name__)


class CallState(enum.Enum):
    """Where one agent leg is; ``NEW`` until its first event."""

    NEW = "new"
    ALERTING = "alerting"
    CONNECTED = "connected"
    HELD = "held"
    ENDED = "ended"
    WRAPPED_UP = "wrapped_up"


class Step(enum.Enum):
    """What an update says happened to the leg."""

    OFFER = "offer"
    ANSWER = "answer"
    HOLD = "hold"
    RESUME = "resume"
    END = "end"
    TRANSFER = "transfer"
    WRAPUP = "wrapup"


TRANSITIONS: dict[tuple[CallState, Step], tuple[CallState, tuple[type[BaseCallEvent], ...]]] = {
    (CallState.NEW, Step.OFFER): (CallState.ALERTING, (CallAlerting,)),
    (CallState.ALERTING, Step.ANSWER): (CallState.CONNECTED, (CallConnected,)),
    (CallState.ALERTING, Step.END): (CallState.ENDED, (CallEnded,)),
    (CallState.CONNECTED, Step.HOLD): (CallState.HELD, (CallHeld,)),
    (CallState.HELD, Step.RESUME): (CallState.CONNECTED, (CallResumed,)),
    (CallState.CONNECTED, Step.END): (CallState.ENDED, (CallEnded,)),
    (CallState.HELD, Step.END): (CallState.ENDED, (CallEnded,)),
    (CallState.CONNECTED, Step.TRANSFER): (CallState.ENDED, (CallTransferred, CallEnded)),
    (CallState.HELD, Step.TRANSFER): (CallState.ENDED, (CallTransferred, CallEnded)),
    (CallState.ENDED, Step.WRAPUP): (CallState.WRAPPED_UP, (CallWrapup,)),
}
"""Every legal transition and the events it emits, in one table (drawn in the module docs)."""

# How far a leg got; an update showing less than the machine's rank is stale.
_RANK: dict[CallState, int] = {
    CallState.NEW: 0,
    CallState.ALERTING: 1,
    CallState.CONNECTED: 2,
    CallState.HELD: 2,
    CallState.ENDED: 3,
    CallState.WRAPPED_UP: 4,
}
_OFFERED, _TALKING, _ENDED, _WRAPPED_UP = 1, 2, 3, 4
_IN_CALL = frozenset({CallState.ALERTING, CallState.CONNECTED, CallState.HELD})

AGENT_PURPOSES = frozenset({"agent", "user"})
_REMOTE_PURPOSES = frozenset({"customer", "external"})
_PENDING_STATES = frozenset({"alerting", "contacting", "offering"})
# The platform counts an agent's "dialing" leg as up (the agent is on the line while it rings out);
# whether the customer answered is read from the customer's leg.
_UP_STATES = frozenset({"connected", "dialing"})
_ENDED_STATES = frozenset({"disconnected", "terminated"})
_KNOWN_STATES = _PENDING_STATES | _UP_STATES | _ENDED_STATES
_AGENT_SIDE_TYPES = frozenset({"client", "endpoint"})
_SYSTEM_SIDE_TYPES = frozenset(
    {"system", "timeout", "error", "transport.failure", "uncallable", "spam"}
)

_USER_TOPIC = re.compile(r"v2\.users\.(?P<user>[^.]+)\.conversations(?P<calls>\.calls)?")


@attrs.define
class TrackerStats:
    """Counters of what the tracker was fed and what it made of it (for metrics and logs)."""

    updates: int = 0
    """Conversation updates fed (topic events, REST re-reads)."""
    events: int = 0
    """Call events emitted."""
    duplicates: int = 0
    """Leg updates that showed nothing new."""
    stale: int = 0
    """Leg updates older than what was already seen (ignored)."""
    ignored: int = 0
    """Topic events not for this tracker: other topics, untracked agents, other media."""
    anomalies: int = 0
    """Updates that could not be understood (no events came of them)."""
    unknown_states: int = 0
    """Leg states the tracker does not know, read from the leg's timestamps instead."""
    expired: int = 0
    """Ended legs forgotten after their retention."""
    last_anomaly: str | None = None
    """What was wrong with the latest anomaly."""


@attrs.define
class _Leg:
    """What the tracker remembers of one agent leg between updates."""

    conversation_id: str
    participant_id: str
    agent_id: str
    direction: CallDirection
    state: CallState = CallState.NEW
    started_at: datetime | None = None
    connected_at: datetime | None = None
    wrapup_required: bool = False
    holds: int = 0
    resumes: int = 0
    closed: bool = False  # forgotten on purpose: no wrap-up is expected any more

    @property
    def key(self) -> tuple[str, str]:
        return (self.conversation_id, self.participant_id)

    @property
    def live(self) -> bool:
        """Still in progress, or ended with a wrap-up still to come."""
        if self.state is CallState.NEW or self.state in _IN_CALL:
            return True
        return self.state is CallState.ENDED and self.wrapup_required and not self.closed


@attrs.frozen
class _Observation:
    """What one update says about a leg."""

    rank: int
    answered: bool
    held: bool
    transfer: bool


@attrs.frozen
class _Update:
    """One leg in one conversation update: what the event builders read."""

    conversation: CallConversation
    leg: Participant


class _UnusableBodyError(Exception):
    """A generic-topic body the tracker cannot read (becomes an anomaly, never escapes)."""


class CallTracker:
    """Turns conversation updates into call events, each exactly once (see the module docs).

    ``agent_ids`` limits tracking to those agents (``None``: every agent leg seen). ``clock``
    dates what the platform did not (hold, resume, wrap-up, vanished calls) and ages ended legs.
    Feed it every ``v2.users.{id}.conversations.calls`` (or ``…conversations``) event with
    :meth:`feed_event`; after a channel reconnect re-read :meth:`live_conversation_ids` over REST,
    pass what came back to :meth:`resync`, and :meth:`forget` each call that answered 404.
    Not thread-safe: use it from one task.
    """

    def __init__(
        self,
        agent_ids: Iterable[str] | None = None,
        clock: Clock | None = None,
        *,
        retention: float = 3600.0,
        max_ended: int = 10_000,
    ) -> None:
        if not retention > 0:
            raise ValueError(f"retention must be > 0 seconds, not {retention!r}")
        if max_ended < 1:
            raise ValueError(f"max_ended must be >= 1, not {max_ended!r}")
        self._agent_ids = None if agent_ids is None else frozenset(agent_ids)
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._retention = retention
        self._max_ended = max_ended
        self._legs: dict[str, dict[str, _Leg]] = {}
        # Ended legs by when they last changed (monotonic), oldest first.
        self._ended: collections.OrderedDict[tuple[str, str], float] = collections.OrderedDict()
        self.stats = TrackerStats()

    def __len__(self) -> int:
        """Return how many legs are remembered (live and recently ended)."""
        return sum(len(legs) for legs in self._legs.values())

    # ------------------------------------------------------------------ input

    def feed(
        self, conversation: CallConversation, *, agent_id: str | None = None
    ) -> list[CallEvent]:
        """Take one update of ``conversation``; return the events it implies, in order.

        ``agent_id`` restricts the update to that agent's legs (the user of the topic it came on);
        otherwise every tracked agent's legs in it are considered.
        """
        self._expire()
        self.stats.updates += 1
        legs = [
            participant
            for participant in conversation.participants
            if participant.purpose in AGENT_PURPOSES
            and participant.user_id is not None
            and (agent_id is None or participant.user_id == agent_id)
            and (self._agent_ids is None or participant.user_id in self._agent_ids)
        ]
        if not legs:
            if agent_id is not None and (self._agent_ids is None or agent_id in self._agent_ids):
                self._anomaly(f"conversation {conversation.id} has no call leg of agent {agent_id}")
            else:
                self.stats.ignored += 1
            return []
        events: list[CallEvent] = []
        for participant in legs:
            events.extend(self._advance(_Update(conversation, participant)))
        self.stats.events += len(events)
        return events

    def feed_event(self, event: TopicEvent) -> list[CallEvent]:
        """Take one notification; return the events it implies, in order.

        Understands ``v2.users.{id}.conversations.calls`` and ``v2.users.{id}.conversations``
        (whose participants carry their call state in ``calls[]``). Other topics, untracked agents
        and non-call conversations are ignored; a body that cannot be read is an anomaly. Never
        raises for what the platform sent.
        """
        match = _USER_TOPIC.fullmatch(event.topic_name)
        if match is None:
            self.stats.ignored += 1
            return []
        agent_id = match["user"]
        if self._agent_ids is not None and agent_id not in self._agent_ids:
            self.stats.ignored += 1
            return []
        try:
            if match["calls"]:
                conversation = CallConversation.from_genesys(event.event_body)
            else:
                body = _calls_shape(event.event_body)
                if body is None:
                    self.stats.ignored += 1  # a chat, email... on the all-media topic
                    return []
                conversation = CallConversation.from_genesys(body)
        except (PlatformError, _UnusableBodyError) as exc:
            self._anomaly(f"unreadable {event.topic_name} event: {exc}")
            return []
        return self.feed(conversation, agent_id=agent_id)

    def resync(self, current: Iterable[CallConversation]) -> list[CallEvent]:
        """Catch up after a gap from the calls' current state (REST re-reads); return what was missed.

        Emits exactly the events not yet emitted — a call that connected and ended during the gap
        yields both, in order — and none twice. Calls that no longer exist (404) go to
        :meth:`forget`.
        """
        events: list[CallEvent] = []
        for conversation in current:
            events.extend(self.feed(conversation))
        return events

    def forget(self, conversation_id: str, reason: str = "vanished") -> list[CallEvent]:
        """Stop following a conversation the platform no longer knows; return its last events.

        Each of its legs that had not ended gets a :class:`~crmphone.events.CallEnded` with
        ``who_hung_up`` unknown, dated now; no wrap-up is awaited any more. ``reason`` is logged.
        Unknown conversations yield nothing.
        """
        self._expire()
        legs = self._legs.get(conversation_id)
        if not legs:
            return []
        logger.info("forgetting call %s: %s", conversation_id, reason)
        events: list[CallEvent] = []
        for leg in legs.values():
            if leg.state in _IN_CALL:
                events.extend(self._step(leg, Step.END, None))
            leg.closed = True
            self._mark_ended(leg)
        self.stats.events += len(events)
        return events

    # ------------------------------------------------------------------ inspection

    def live_conversation_ids(self) -> set[str]:
        """Conversations with a leg still in progress or awaiting its wrap-up: what to re-read."""
        self._expire()
        return {
            conversation_id
            for conversation_id, legs in self._legs.items()
            if any(leg.live for leg in legs.values())
        }

    def state(self, conversation_id: str, participant_id: str) -> CallState | None:
        """Where the leg ``participant_id`` of ``conversation_id`` is, or ``None`` if not known."""
        leg = self._legs.get(conversation_id, {}).get(participant_id)
        return None if leg is None else leg.state

    # ------------------------------------------------------------------ the machine

    def _advance(self, update: _Update) -> list[CallEvent]:
        participant = update.leg
        conversation_legs = self._legs.get(update.conversation.id, {})
        leg = conversation_legs.get(participant.id)
        if leg is None:
            assert participant.user_id is not None
            leg = _Leg(
                conversation_id=update.conversation.id,
                participant_id=participant.id,
                agent_id=participant.user_id,
                direction=_direction(participant),
            )
        if _state(participant) not in _KNOWN_STATES:
            self.stats.unknown_states += 1
            logger.debug("leg %s: unknown state %r", participant.id, participant.state)
        observation = _observe(update, leg.direction)
        if observation.rank < _RANK[leg.state]:
            self.stats.stale += 1
            return []
        if leg.started_at is None:
            leg.started_at = participant.start_time
        leg.wrapup_required = participant.wrapup_required
        steps = _plan(leg.state, observation)
        if not steps:
            self.stats.duplicates += 1
            return []
        if leg.state is CallState.NEW:
            self._legs.setdefault(leg.conversation_id, {})[leg.participant_id] = leg
        events: list[CallEvent] = []
        for step in steps:
            events.extend(self._step(leg, step, update))
        if leg.state in (CallState.ENDED, CallState.WRAPPED_UP):
            self._mark_ended(leg)
        return events

    def _step(self, leg: _Leg, step: Step, update: _Update | None) -> list[CallEvent]:
        transition = TRANSITIONS.get((leg.state, step))
        if transition is None:
            raise InvalidStateError(
                f"call {leg.conversation_id} leg {leg.participant_id} cannot {step.value} "
                f"while {leg.state.value}"
            )
        target, kinds = transition
        now = self._clock.wall()
        events = [_BUILDERS[kind](leg, update, now) for kind in kinds]
        leg.state = target
        return events

    def _mark_ended(self, leg: _Leg) -> None:
        self._ended[leg.key] = self._clock.monotonic()
        self._ended.move_to_end(leg.key)

    def _expire(self) -> None:
        horizon = self._clock.monotonic() - self._retention
        ended = self._ended
        while ended:
            key, changed = next(iter(ended.items()))
            if changed > horizon and len(ended) <= self._max_ended:
                break
            del ended[key]
            conversation_id, participant_id = key
            legs = self._legs.get(conversation_id)
            if legs is not None:
                legs.pop(participant_id, None)
                if not legs:
                    del self._legs[conversation_id]
            self.stats.expired += 1

    def _anomaly(self, reason: str) -> None:
        self.stats.anomalies += 1
        self.stats.last_anomaly = reason
        logger.warning("call update ignored: %s", reason)


def _plan(state: CallState, observation: _Observation) -> list[Step]:
    """The steps that take a leg from ``state`` to what ``observation`` shows (empty: nothing new).

    Yields only transitions of :data:`TRANSITIONS`, in order; the caller drops stale observations.
    """
    steps: list[Step] = []
    if state is CallState.NEW:
        steps.append(Step.OFFER)
        state = CallState.ALERTING
    if state is CallState.ALERTING and observation.answered:
        steps.append(Step.ANSWER)
        state = CallState.CONNECTED
    if observation.rank == _TALKING:
        if state is CallState.CONNECTED and observation.held:
            steps.append(Step.HOLD)
        elif state is CallState.HELD and not observation.held:
            steps.append(Step.RESUME)
    if observation.rank >= _ENDED and state in _IN_CALL:
        talked = state is not CallState.ALERTING
        steps.append(Step.TRANSFER if observation.transfer and talked else Step.END)
        state = CallState.ENDED
    if observation.rank == _WRAPPED_UP and state is CallState.ENDED:
        steps.append(Step.WRAPUP)
    return steps


# ---------------------------------------------------------------------------------- reading


def _observe(update: _Update, direction: CallDirection) -> _Observation:
    """Reduce one update of a leg to how far it got (see :data:`_RANK`)."""
    leg = update.leg
    state = _state(leg)
    ended = state in _ENDED_STATES or (state not in _KNOWN_STATES and leg.end_time is not None)
    answered, _ = _answer(update, direction)
    wrapup = leg.wrapup
    wrapped = (
        ended
        and wrapup is not None
        and (
            wrapup.code is not None
            or wrapup.notes is not None
            or wrapup.duration_seconds is not None
        )
    )
    if wrapped:
        rank = _WRAPPED_UP
    elif ended:
        rank = _ENDED
    elif answered:
        rank = _TALKING
    else:
        rank = _OFFERED
    return _Observation(
        rank=rank,
        answered=answered,
        held=leg.held and not ended,
        transfer=(leg.disconnect_type or "").lower().startswith("transfer"),
    )


def _state(participant: Participant) -> str:
    return participant.state.lower()


def _remotes(update: _Update) -> list[Participant]:
    return [p for p in update.conversation.participants if p.purpose in _REMOTE_PURPOSES]


def _answer(update: _Update, direction: CallDirection) -> tuple[bool, datetime | None]:
    """Whether agent and customer are (or were) talking, and since when if the platform said.

    ``connectedTime`` counts even when the state lags behind it. On an outbound call the agent's
    leg is up while the customer's phone still rings, so the customer's leg must be up too.
    """
    leg = update.leg
    if leg.connected_time is None and _state(leg) not in _UP_STATES:
        return False, None
    moments = [leg.connected_time]
    if direction is CallDirection.OUTBOUND:
        remotes = _remotes(update)
        if remotes:
            answered = [
                remote
                for remote in remotes
                if remote.connected_time is not None or _state(remote) == "connected"
            ]
            if not answered:
                return False, None
            moments.extend(remote.connected_time for remote in answered)
    known = [moment for moment in moments if moment is not None]
    # Talking starts when the last of the two sides came on the line.
    return True, max(known) if known else None


def _direction(leg: Participant) -> CallDirection:
    direction = (leg.direction or "").lower()
    if direction == CallDirection.OUTBOUND:
        return CallDirection.OUTBOUND
    if direction == CallDirection.INBOUND:
        return CallDirection.INBOUND
    # No direction: an agent leg that began dialing or contacting placed the call.
    if (leg.initial_state or "").lower() in ("dialing", "contacting"):
        return CallDirection.OUTBOUND
    return CallDirection.INBOUND


def _number(address: str | None) -> str | None:
    """A platform address as a plain number: ``tel:+15551230001`` → ``+15551230001``."""
    if address is None:
        return None
    text = address.strip()
    if text[:4].lower() == "tel:":
        text = text[4:].strip()
    return text or None


def _who_hung_up(update: _Update) -> HungUpBy:
    kind = (update.leg.disconnect_type or "").lower()
    if kind in _AGENT_SIDE_TYPES or kind.startswith("transfer"):
        return HungUpBy.AGENT
    if kind == "peer":
        return HungUpBy.CUSTOMER
    if kind in _SYSTEM_SIDE_TYPES:
        return HungUpBy.SYSTEM
    # The agent's leg did not say; the customer's leg may.
    for remote in _remotes(update):
        if (remote.disconnect_type or "").lower() in _AGENT_SIDE_TYPES:
            return HungUpBy.CUSTOMER
    return HungUpBy.UNKNOWN


def _transfer_target(update: _Update) -> tuple[str | None, str | None, str | None]:
    """``(user_id, queue_id, address)`` of where the agent sent the call, as far as shown.

    The target is the newest leg still in the call that joined after the agent answered, other
    than the customer's (the first customer/external leg; the platform lists participants in the
    order they joined).
    """
    leg = update.leg
    remotes = _remotes(update)
    customer_id = remotes[0].id if remotes else None
    since = leg.connected_time or leg.start_time
    for candidate in reversed(update.conversation.participants):
        if candidate.id in (leg.id, customer_id):
            continue
        if _state(candidate) in _ENDED_STATES:
            continue
        if candidate.user_id is not None and candidate.user_id == leg.user_id:
            continue
        if since is not None and candidate.start_time is not None and candidate.start_time < since:
            continue
        if candidate.purpose == "acd":
            return None, candidate.queue_id, None
        if candidate.purpose in AGENT_PURPOSES:
            return candidate.user_id, None, None
        return None, None, _number(candidate.address)
    return None, None, None


# ---------------------------------------------------------------------------------- events

_Builder: TypeAlias = Callable[[_Leg, "_Update | None", datetime], CallEvent]


def _require(update: _Update | None, kind: str) -> _Update:
    if update is None:
        raise InvalidStateError(f"{kind} needs a conversation update")  # pragma: no cover - table
    return update


def _alerting(leg: _Leg, update: _Update | None, now: datetime) -> CallEvent:
    update = _require(update, CallAlerting.name)
    participant = update.leg
    remotes = _remotes(update)
    customer = remotes[0] if remotes else None
    queue_id = participant.queue_id
    acd = next(
        (
            p
            for p in update.conversation.participants
            if p.purpose == "acd" and (queue_id is None or p.queue_id == queue_id)
        ),
        None,
    )
    if queue_id is None and acd is not None:
        queue_id = acd.queue_id
    inbound = leg.direction is CallDirection.INBOUND
    ani = _number(participant.ani)
    dnis = _number(participant.dnis)
    if customer is not None:
        ani = ani or _number(customer.ani) or (_number(customer.address) if inbound else None)
        dnis = dnis or _number(customer.dnis) or (None if inbound else _number(customer.address))
    if dnis is None and inbound and acd is not None:
        dnis = _number(acd.address)
    attributes = dict(customer.attributes) if customer is not None else {}
    attributes.update(participant.attributes)
    return CallAlerting(
        conversation_id=leg.conversation_id,
        agent_id=leg.agent_id,
        participant_id=leg.participant_id,
        at=leg.started_at or now,
        direction=leg.direction,
        ani=ani,
        dnis=dnis,
        queue_id=queue_id,
        queue_name=acd.name if acd is not None and acd.queue_id == queue_id else None,
        caller_name=customer.name if customer is not None else None,
        attributes=tuple(sorted(attributes.items())),
    )


def _connected(leg: _Leg, update: _Update | None, now: datetime) -> CallEvent:
    update = _require(update, CallConnected.name)
    _, connected_at = _answer(update, leg.direction)
    if connected_at is None:
        connected_at = now  # up, but not dated yet
    leg.connected_at = connected_at
    return CallConnected(
        conversation_id=leg.conversation_id,
        agent_id=leg.agent_id,
        participant_id=leg.participant_id,
        at=connected_at,
        connected_at=connected_at,
    )


def _held(leg: _Leg, update: _Update | None, now: datetime) -> CallEvent:
    leg.holds += 1
    return CallHeld(
        conversation_id=leg.conversation_id,
        agent_id=leg.agent_id,
        participant_id=leg.participant_id,
        at=now,
        occurrence=leg.holds,
    )


def _resumed(leg: _Leg, update: _Update | None, now: datetime) -> CallEvent:
    leg.resumes += 1
    return CallResumed(
        conversation_id=leg.conversation_id,
        agent_id=leg.agent_id,
        participant_id=leg.participant_id,
        at=now,
        occurrence=leg.resumes,
    )


def _transferred(leg: _Leg, update: _Update | None, now: datetime) -> CallEvent:
    update = _require(update, CallTransferred.name)
    to_user_id, to_queue_id, to_address = _transfer_target(update)
    return CallTransferred(
        conversation_id=leg.conversation_id,
        agent_id=leg.agent_id,
        participant_id=leg.participant_id,
        at=update.leg.end_time or now,
        to_user_id=to_user_id,
        to_queue_id=to_queue_id,
        to_address=to_address,
    )


def _ended(leg: _Leg, update: _Update | None, now: datetime) -> CallEvent:
    # update is None when the call vanished (forget): nothing is known of how it ended.
    ended_at = (update.leg.end_time if update is not None else None) or now
    answered = leg.connected_at is not None
    duration = 0
    if leg.connected_at is not None:
        duration = max(0, round((ended_at - leg.connected_at).total_seconds()))
    return CallEnded(
        conversation_id=leg.conversation_id,
        agent_id=leg.agent_id,
        participant_id=leg.participant_id,
        at=ended_at,
        direction=leg.direction,
        started_at=leg.started_at,
        connected_at=leg.connected_at,
        ended_at=ended_at,
        duration_seconds=duration,
        who_hung_up=HungUpBy.UNKNOWN if update is None else _who_hung_up(update),
        disconnect_type=None if update is None else update.leg.disconnect_type,
        answered=answered,
        missed=not answered and leg.direction is CallDirection.INBOUND,
    )


def _wrapup(leg: _Leg, update: _Update | None, now: datetime) -> CallEvent:
    update = _require(update, CallWrapup.name)
    wrapup = update.leg.wrapup
    assert wrapup is not None  # an observation only ranks as wrapped up with one
    return CallWrapup(
        conversation_id=leg.conversation_id,
        agent_id=leg.agent_id,
        participant_id=leg.participant_id,
        at=now,
        code=wrapup.code,
        notes=wrapup.notes,
        duration_seconds=wrapup.duration_seconds,
    )


_BUILDERS: dict[type[BaseCallEvent], _Builder] = {
    CallAlerting: _alerting,
    CallConnected: _connected,
    CallHeld: _held,
    CallResumed: _resumed,
    CallTransferred: _transferred,
    CallEnded: _ended,
    CallWrapup: _wrapup,
}


# ---------------------------------------------------------------------------------- the all-media topic


def _calls_shape(body: object) -> dict[str, Any] | None:
    """Rewrite a ``v2.users.{id}.conversations`` body in the ``conversations.calls`` shape.

    There each participant keeps its call state in ``calls[]`` (the latest call last) and names
    its user and queue as ``userId``/``queueId``. Participants without calls (other media) are
    left out; ``None`` when no participant has a call. The result is validated by
    :meth:`CallConversation.from_genesys` like any calls body.
    """
    if not isinstance(body, Mapping):
        raise _UnusableBodyError(f"the event body must be a JSON object, got {type(body).__name__}")
    participants = body.get("participants")
    if not isinstance(participants, list):
        raise _UnusableBodyError("the event body has no 'participants' array")
    rewritten: list[dict[str, Any]] = []
    for index, item in enumerate(participants):
        if not isinstance(item, Mapping):
            raise _UnusableBodyError(f"participants[{index}] is not a JSON object")
        calls = item.get("calls")
        if calls is None or calls == []:
            continue
        if not isinstance(calls, list) or not isinstance(calls[-1], Mapping):
            raise _UnusableBodyError(f"participants[{index}].calls is not an array of objects")
        call: Mapping[str, Any] = calls[-1]
        user_id, queue_id = item.get("userId"), item.get("queueId")
        entry = {
            "id": item.get("id"),
            "purpose": item.get("purpose"),
            "state": call.get("state"),
            "initialState": call.get("initialState"),
            "direction": call.get("direction"),
            "address": item.get("address"),
            "name": item.get("name"),
            "user": {"id": user_id} if user_id is not None else None,
            "queue": {"id": queue_id} if queue_id is not None else None,
            "startTime": item.get("startTime"),
            "connectedTime": call.get("connectedTime") or item.get("connectedTime"),
            "endTime": call.get("disconnectedTime") or item.get("endTime"),
            "disconnectType": call.get("disconnectType"),
            "held": call.get("held"),
            "muted": call.get("muted"),
            "recording": call.get("recording"),
            "wrapupRequired": item.get("wrapupRequired"),
            "wrapup": item.get("wrapup") or call.get("wrapup"),
            "alertingTimeoutMs": item.get("alertingTimeoutMs"),
            "attributes": item.get("attributes"),
        }
        rewritten.append({key: value for key, value in entry.items() if value is not None})
    if not rewritten:
        return None
    return {"id": body.get("id"), "participants": rewritten}
