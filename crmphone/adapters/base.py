"""The adapter contract: what a CRM plugin implements, and the values it is given.

An adapter turns calls into CRM work: it looks the caller up, pops the matching record, and
writes one call log per call. crmphone decides *when*; the adapter decides *how* for its CRM.

.. code-block:: text

    event            work item (durable, per call in order)     adapter hook
    ───────────────  ─────────────────────────────────────────  ─────────────────────────────────
    CallAlerting     pop   (expires: never popped late)          lookup_caller(log) → CallerMatch
                                                                 screen_pop(log, match)
    CallConnected    log   stage CONNECTED    (create)           log_call(log)  [or log_calls(logs)]
    CallEnded        log   stage ENDED        (complete)         log_call(log)
    CallWrapup       log   stage WRAPPED_UP   (disposition)      log_call(log)
    phone events     — (status, in order, not durable)           on_connection_event(event)
    presence events  — (status, in order, not durable)           on_presence_event(event)

Every hook is async and runs on crmphone's outbox workers, never on the path of a call or a
notification: a slow CRM delays its own work and nothing else. A synchronous client library
(simple-salesforce, zenpy) runs through :meth:`AdapterContext.run_sync`, in the adapter's own
worker threads.

Rules an adapter keeps (the conformance suite in :mod:`crmphone.testing` checks each):

* :meth:`Adapter.log_call` is an **upsert keyed by** :attr:`CallLog.key`: the same log written
  twice, or written again after a crash with the same :attr:`CallLog.write_key`, leaves one record.
  Never de-duplicate through a CRM's search index (it lags minutes).
* Errors are crmphone's: :class:`~crmphone.errors.CrmRetryableError` (with ``retry_after`` when
  the CRM said) for what may work later, :class:`~crmphone.errors.CrmPermanentError` for what will
  not. Map the client library's exceptions at the boundary, chained with ``raise … from``. The
  outbox owns retrying: an adapter never sleeps through a rate limit and has no retry loop.
* Nothing blocks the event loop: no synchronous I/O outside ``run_sync``.

A CRM with a bulk API (Salesforce's sObject Collections) implements :meth:`Adapter.log_calls`
too: the outbox then hands it up to :attr:`Adapter.max_batch` logs of different calls at once,
and gathers writes while a batch is in flight, so a burst costs a few requests instead of one
per write. Each log's outcome is its own: one bad record fails (and retries) alone.
"""

from __future__ import annotations

import abc
import asyncio
import concurrent.futures
import enum
import functools
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar, ParamSpec, Protocol, Self, TypeVar

import attrs

from crmphone.errors import ConfigError, CrmPermanentError, CrmRetryableError
from crmphone.events import (
    BaseCallEvent,
    CallAlerting,
    CallConnected,
    CallDirection,
    CallEnded,
    CallHeld,
    CallResumed,
    CallTransferred,
    CallWrapup,
    HungUpBy,
    PhoneEvent,
    PresenceEvent,
)
from crmphone.platform.retry import parse_retry_after

__all__ = [
    "Adapter",
    "AdapterContext",
    "CallLog",
    "CallerMatch",
    "Commands",
    "CrmRecord",
    "LogStage",
    "MatchOutcome",
    "Memory",
    "VolatileMemory",
    "crm_error_for_status",
]

_P = ParamSpec("_P")
_T = TypeVar("_T")


# ---------------------------------------------------------------------------------------------
# Values


@attrs.frozen
class CrmRecord:
    """A record in the CRM: ``kind`` in the CRM's own words (``Contact``, ``Lead``, ``user``,
    ``ticket``), its ``id``, and a display ``name`` when known."""

    kind: str
    id: str
    name: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The record as JSON-ready data (the outbox stores it)."""
        return {"kind": self.kind, "id": self.id, "name": self.name}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        """The record from :meth:`to_json`'s data."""
        return cls(kind=str(data["kind"]), id=str(data["id"]), name=data.get("name"))


class MatchOutcome(enum.StrEnum):
    """How many CRM records matched the caller; the screen-pop rule follows from it."""

    NONE = "none"  # pop a new-record form with the number filled in (or nothing)
    ONE = "one"  # pop that record, and link the log to it
    MANY = "many"  # pop a search page; log once, to the primary record


def _records(value: Iterable[CrmRecord]) -> tuple[CrmRecord, ...]:
    return tuple(value)


@attrs.frozen
class CallerMatch:
    """The result of a caller lookup: the records that matched ``number``, best first.

    The first record is the :attr:`primary` one: with several matches the call is logged once,
    linked to it, never once per match.
    """

    number: str | None
    records: tuple[CrmRecord, ...] = attrs.field(default=(), converter=_records)

    @property
    def outcome(self) -> MatchOutcome:
        """None, one or many."""
        if not self.records:
            return MatchOutcome.NONE
        return MatchOutcome.ONE if len(self.records) == 1 else MatchOutcome.MANY

    @property
    def primary(self) -> CrmRecord | None:
        """The record the call log links to (the first), or None when nothing matched."""
        return self.records[0] if self.records else None

    def to_json(self) -> dict[str, Any]:
        """The match as JSON-ready data (the outbox stores it)."""
        return {"number": self.number, "records": [r.to_json() for r in self.records]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        """The match from :meth:`to_json`'s data."""
        return cls(
            number=data.get("number"),
            records=tuple(CrmRecord.from_json(r) for r in data.get("records", ())),
        )


class LogStage(enum.IntEnum):
    """How far a call has got; a log is written at each stage from CONNECTED on.

    A missed call goes from ALERTING straight to ENDED (and is logged then).
    """

    ALERTING = 1
    CONNECTED = 2
    ENDED = 3
    WRAPPED_UP = 4


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _parse_iso(value: Any) -> datetime | None:
    return None if value is None else datetime.fromisoformat(str(value))


@attrs.frozen(kw_only=True)
class CallLog:
    """Everything crmphone knows of one call for one adapter: the content of its call log.

    Built from the call's events (:meth:`from_alerting`, then :meth:`with_event`), plus what this
    adapter's lookup found (:attr:`match`) and the CRM record a click-to-dial came from
    (:attr:`linked_record`). Times are aware UTC. ``crm_user_id`` is the agent's CRM user, from
    the connector's agent map (None when unmapped).
    """

    conversation_id: str
    participant_id: str
    agent_id: str
    crm_user_id: str | None = None
    direction: CallDirection
    stage: LogStage = LogStage.ALERTING
    customer_number: str | None = None
    ani: str | None = None
    dnis: str | None = None
    caller_name: str | None = None
    queue_id: str | None = None
    queue_name: str | None = None
    attributes: tuple[tuple[str, str], ...] = ()
    alerting_at: datetime
    connected_at: datetime | None = None
    ended_at: datetime | None = None
    duration_seconds: int = 0
    answered: bool = False
    missed: bool = False
    who_hung_up: HungUpBy | None = None
    disconnect_type: str | None = None
    holds: int = 0
    held_seconds: float = 0.0
    held_since: datetime | None = None
    transferred_to: str | None = None
    wrapup_code: str | None = None
    notes: str | None = None
    wrapup_seconds: int | None = None
    match: CallerMatch | None = None
    linked_record: CrmRecord | None = None

    @property
    def key(self) -> str:
        """The log's idempotency key, ``{conversation_id}:{participant_id}``: one record per key."""
        return f"{self.conversation_id}:{self.participant_id}"

    @property
    def write_key(self) -> str:
        """The key of this write (``{key}:{stage}``): the same on every retry and after a restart,
        different from one stage to the next (for APIs such as ``Idempotency-Key`` headers that
        would otherwise answer an update with the first write's response)."""
        return f"{self.key}:{self.stage.name.lower()}"

    @property
    def completed(self) -> bool:
        """The call is over (the log's final content, apart from a later wrap-up)."""
        return self.stage >= LogStage.ENDED

    @property
    def record(self) -> CrmRecord | None:
        """The record the log belongs to: the click-to-dial origin, else the lookup's primary."""
        if self.linked_record is not None:
            return self.linked_record
        return self.match.primary if self.match is not None else None

    # -------------------------------------------------------------- building from events

    @classmethod
    def from_alerting(cls, event: CallAlerting, *, crm_user_id: str | None = None) -> Self:
        """A new call's log, from its first event."""
        return cls(
            conversation_id=event.conversation_id,
            participant_id=event.participant_id,
            agent_id=event.agent_id,
            crm_user_id=crm_user_id,
            direction=event.direction,
            customer_number=event.customer_number,
            ani=event.ani,
            dnis=event.dnis,
            caller_name=event.caller_name,
            queue_id=event.queue_id,
            queue_name=event.queue_name,
            attributes=event.attributes,
            alerting_at=event.at,
        )

    @classmethod
    def from_ended(cls, event: CallEnded, *, crm_user_id: str | None = None) -> Self:
        """The log of a call whose end is the first thing seen of it (its start was missed)."""
        started = event.started_at or event.connected_at or event.ended_at
        log = cls(
            conversation_id=event.conversation_id,
            participant_id=event.participant_id,
            agent_id=event.agent_id,
            crm_user_id=crm_user_id,
            direction=event.direction,
            alerting_at=started,
        )
        return log.with_event(event)

    def with_event(self, event: BaseCallEvent) -> Self:
        """This log with ``event`` folded in (events of other calls are refused)."""
        if (event.conversation_id, event.participant_id) != (
            self.conversation_id,
            self.participant_id,
        ):
            raise ValueError(f"event {event.key} does not belong to call log {self.key}")
        match event:
            case CallConnected():
                return attrs.evolve(
                    self,
                    stage=max(self.stage, LogStage.CONNECTED),
                    connected_at=event.connected_at,
                    answered=True,
                )
            case CallHeld():
                return attrs.evolve(self, holds=self.holds + 1, held_since=event.at)
            case CallResumed():
                if self.held_since is None:
                    return self
                held = max(0.0, (event.at - self.held_since).total_seconds())
                return attrs.evolve(self, held_seconds=self.held_seconds + held, held_since=None)
            case CallTransferred():
                target = event.to_user_id or event.to_queue_id or event.to_address
                return attrs.evolve(self, transferred_to=target)
            case CallEnded():
                held = self.held_seconds
                if self.held_since is not None:  # ended while on hold
                    held += max(0.0, (event.ended_at - self.held_since).total_seconds())
                return attrs.evolve(
                    self,
                    stage=max(self.stage, LogStage.ENDED),
                    connected_at=event.connected_at or self.connected_at,
                    ended_at=event.ended_at,
                    duration_seconds=event.duration_seconds,
                    answered=event.answered or self.answered,
                    missed=event.missed,
                    who_hung_up=event.who_hung_up,
                    disconnect_type=event.disconnect_type,
                    held_seconds=held,
                    held_since=None,
                )
            case CallWrapup():
                return attrs.evolve(
                    self,
                    stage=LogStage.WRAPPED_UP,
                    wrapup_code=event.code,
                    notes=event.notes,
                    wrapup_seconds=event.duration_seconds,
                )
            case _:
                return self

    # -------------------------------------------------------------- storage

    def to_json(self) -> dict[str, Any]:
        """The log as JSON-ready data (the outbox stores it; the webhook example posts it)."""
        return {
            "key": self.key,
            "writeKey": self.write_key,
            "conversationId": self.conversation_id,
            "participantId": self.participant_id,
            "agentId": self.agent_id,
            "crmUserId": self.crm_user_id,
            "direction": self.direction.value,
            "stage": self.stage.name.lower(),
            "customerNumber": self.customer_number,
            "ani": self.ani,
            "dnis": self.dnis,
            "callerName": self.caller_name,
            "queueId": self.queue_id,
            "queueName": self.queue_name,
            "attributes": [list(pair) for pair in self.attributes],
            "alertingAt": _iso(self.alerting_at),
            "connectedAt": _iso(self.connected_at),
            "endedAt": _iso(self.ended_at),
            "durationSeconds": self.duration_seconds,
            "answered": self.answered,
            "missed": self.missed,
            "whoHungUp": None if self.who_hung_up is None else self.who_hung_up.value,
            "disconnectType": self.disconnect_type,
            "holds": self.holds,
            "heldSeconds": round(self.held_seconds, 3),
            "heldSince": _iso(self.held_since),
            "transferredTo": self.transferred_to,
            "wrapupCode": self.wrapup_code,
            "notes": self.notes,
            "wrapupSeconds": self.wrapup_seconds,
            "match": None if self.match is None else self.match.to_json(),
            "linkedRecord": None if self.linked_record is None else self.linked_record.to_json(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        """The log from :meth:`to_json`'s data."""
        alerting_at = _parse_iso(data["alertingAt"])
        assert alerting_at is not None
        who = data.get("whoHungUp")
        match = data.get("match")
        linked = data.get("linkedRecord")
        return cls(
            conversation_id=data["conversationId"],
            participant_id=data["participantId"],
            agent_id=data["agentId"],
            crm_user_id=data.get("crmUserId"),
            direction=CallDirection(data["direction"]),
            stage=LogStage[str(data["stage"]).upper()],
            customer_number=data.get("customerNumber"),
            ani=data.get("ani"),
            dnis=data.get("dnis"),
            caller_name=data.get("callerName"),
            queue_id=data.get("queueId"),
            queue_name=data.get("queueName"),
            attributes=tuple((str(k), str(v)) for k, v in data.get("attributes", ())),
            alerting_at=alerting_at,
            connected_at=_parse_iso(data.get("connectedAt")),
            ended_at=_parse_iso(data.get("endedAt")),
            duration_seconds=int(data.get("durationSeconds", 0)),
            answered=bool(data.get("answered", False)),
            missed=bool(data.get("missed", False)),
            who_hung_up=None if who is None else HungUpBy(who),
            disconnect_type=data.get("disconnectType"),
            holds=int(data.get("holds", 0)),
            held_seconds=float(data.get("heldSeconds", 0.0)),
            held_since=_parse_iso(data.get("heldSince")),
            transferred_to=data.get("transferredTo"),
            wrapup_code=data.get("wrapupCode"),
            notes=data.get("notes"),
            wrapup_seconds=data.get("wrapupSeconds"),
            match=None if match is None else CallerMatch.from_json(match),
            linked_record=None if linked is None else CrmRecord.from_json(linked),
        )


# ---------------------------------------------------------------------------------------------
# What crmphone gives an adapter


class Commands(Protocol):
    """The narrow door from the CRM side back to the phone: commands an adapter may issue."""

    async def dial(self, number: str, *, agent_id: str, record: CrmRecord | None = None) -> str:
        """Place a call for ``agent_id`` to ``number``; return its conversation id.

        ``record`` is the CRM record the click-to-dial came from: the call's log links to it.
        """
        ...


class Memory(Protocol):
    """A small durable key-value store per adapter: what the adapter must remember across
    restarts, such as the CRM id of the record it made for a call (kept for the outbox's
    ``retention``, then forgotten)."""

    async def get(self, key: str) -> str | None:
        """The value kept under ``key``, or None."""
        ...

    async def set(self, key: str, value: str) -> None:
        """Keep ``value`` under ``key``.

        When the outbox backs it, the value is stored once this returns; while the outbox's disk
        refuses writes it is held in memory (and answered by :meth:`get`) until the disk takes it.
        """
        ...


class VolatileMemory:
    """:class:`Memory` in a dict: what an adapter has outside an outbox (tests, tools)."""

    def __init__(self) -> None:
        self._values: dict[str, str] = {}

    async def get(self, key: str) -> str | None:
        """The value kept under ``key``, or None."""
        return self._values.get(key)

    async def set(self, key: str, value: str) -> None:
        """Keep ``value`` under ``key`` until the process ends."""
        self._values[key] = value


class _NoCommands:
    async def dial(self, number: str, *, agent_id: str, record: CrmRecord | None = None) -> str:
        raise ConfigError("this connector takes no commands (no phone or platform behind it)")


@attrs.define(eq=False)
class AdapterContext:
    """What crmphone hands an adapter: its name, the agent map, commands, and worker threads.

    ``name``: the adapter's name in the configuration. ``agents``: platform user id → CRM user id.
    ``timeout``: seconds any single CRM request may take (give it to your client library; many
    take none by default and hang for hours). ``verify``: TLS verification, on by default (a CA
    bundle path to trust a private CA). ``threads``: the size of :meth:`run_sync`'s pool.
    ``memory``: what the adapter keeps across restarts (:class:`Memory`; the outbox's file while
    an outbox drives the adapter, else a :class:`VolatileMemory`).
    """

    name: str
    agents: Mapping[str, str] = attrs.field(factory=dict)
    commands: Commands = attrs.field(factory=_NoCommands)
    timeout: float = 10.0
    verify: bool | str = True
    threads: int = 4
    memory: Memory = attrs.field(factory=VolatileMemory)
    logger: logging.Logger = attrs.field(
        default=attrs.Factory(
            lambda self: logging.getLogger(f"crmphone.adapters.{self.name}"), takes_self=True
        )
    )
    _executor: concurrent.futures.ThreadPoolExecutor | None = attrs.field(
        default=None, init=False, repr=False
    )

    def __attrs_post_init__(self) -> None:
        if self.threads < 1:
            raise ConfigError(f"must be at least 1, not {self.threads}", key="threads")
        if self.timeout <= 0:
            raise ConfigError(f"must be positive, not {self.timeout}", key="timeout")

    def crm_user_for(self, agent_id: str) -> str | None:
        """The CRM user of a platform agent, or None when the agent map does not name one."""
        return self.agents.get(agent_id)

    async def run_sync(self, function: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
        """Run a blocking call in this adapter's worker threads and await its result.

        Each adapter has its own pool, so one slow CRM cannot take the threads another needs.
        """
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=self.threads, thread_name_prefix=f"crmphone-{self.name}"
            )
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, functools.partial(function, *args, **kwargs)
        )

    def close(self) -> None:
        """Release the worker threads (crmphone calls this after :meth:`Adapter.close`)."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None


# ---------------------------------------------------------------------------------------------
# The contract


class Adapter(abc.ABC):
    """Base class of CRM adapters. Subclass it, implement :meth:`log_call` and whichever other
    hooks your CRM supports, and publish the class under entry point group ``crmphone.adapters``.

    Hooks left as inherited are not called: crmphone queues no screen pops for an adapter that
    does not pop.
    """

    #: One line for ``crmphone plugins``.
    description: ClassVar[str] = ""
    max_batch: ClassVar[int] = 200
    """The most logs one :meth:`log_calls` call is handed (when the adapter implements it)."""

    def __init__(self, context: AdapterContext) -> None:
        self.context = context

    @classmethod
    def from_options(cls, options: Mapping[str, Any], context: AdapterContext) -> Self:
        """Build the adapter from its ``[[adapters]]`` options (everything but ``name``).

        Raise :class:`~crmphone.errors.ConfigError` naming the key for a missing or bad option.
        The default accepts no options.
        """
        if options:
            unknown = ", ".join(sorted(options))
            raise ConfigError(f"{cls.__name__} takes no options (got {unknown})", key="adapters")
        return cls(context)

    async def start(self) -> None:  # noqa: B027 - an optional hook, empty by design
        """Connect, sign in, warm caches: called once before any other hook."""

    async def close(self) -> None:  # noqa: B027 - an optional hook, empty by design
        """Release connections: called once at shutdown, after the last hook returned."""

    async def lookup_caller(self, call: CallLog) -> CallerMatch:
        """Find the CRM records of ``call.customer_number`` (best first)."""
        return CallerMatch(number=call.customer_number)

    async def screen_pop(self, call: CallLog, match: CallerMatch) -> None:  # noqa: B027
        """Show the agent the record(s) of ``match`` (one: that record; many: a search; none: a
        new-record form with the number, or nothing)."""

    @abc.abstractmethod
    async def log_call(self, log: CallLog) -> None:
        """Create or update the call's log: an upsert keyed by ``log.key``.

        Called at connect (``log.stage`` CONNECTED), at the end (ENDED; a missed call's first
        write) and after wrap-up (WRAPPED_UP), never out of that order. Writes queued together
        (the CRM was down, or slow) are merged into one with the latest content, so a stage may
        be skipped; a write cut short by a crash comes again with the same ``log.write_key``.
        Link the log to ``log.record`` when it is set.
        """

    async def log_calls(self, logs: Sequence[CallLog]) -> Sequence[Exception | None]:
        """Write several calls' logs in one CRM request (optional; :meth:`log_call` stays required).

        ``logs`` holds at most :attr:`max_batch` logs, each of a different call, each with the
        same meaning as a :meth:`log_call` argument. Return one outcome per log, in order:
        ``None`` when it was written, else the crmphone error for that log alone
        (:class:`~crmphone.errors.CrmRetryableError` or :class:`~crmphone.errors.CrmPermanentError`).
        Raise only when the whole request failed; every log then counts that failure.
        """
        raise NotImplementedError

    async def on_connection_event(self, event: PhoneEvent) -> None:  # noqa: B027
        """Show the phone's state (persistent connection up/down, microphone) in the CRM's UI."""

    async def on_presence_event(self, event: PresenceEvent) -> None:  # noqa: B027
        """Show or sync the agent's presence and routing status (e.g. the CRM's own presence)."""

    def gauges(self) -> Mapping[str, float]:
        """Figures the adapter keeps about its CRM (optional), exported on ``/metrics`` as
        ``crmphone_adapter_gauge{adapter, name}``: e.g. the API allowance spent today. Called
        at every scrape on the event loop: return what is already known, do no I/O."""
        return {}

    @classmethod
    def implements(cls, hook: str) -> bool:
        """True when this class overrides ``hook`` (a method name of :class:`Adapter`)."""
        return getattr(cls, hook) is not getattr(Adapter, hook)


def crm_error_for_status(
    status: int, message: str, *, retry_after: str | None = None
) -> CrmRetryableError | CrmPermanentError:
    """The crmphone error for a CRM's HTTP error status (for adapters speaking HTTP).

    408, 425, 429 and 5xx are retryable (``retry_after``: the raw ``Retry-After`` header, seconds
    or an HTTP-date); every other status is permanent. 401 is permanent here: an adapter that can
    refresh its session does so once before mapping.
    """
    if status in (408, 425, 429) or status >= 500:
        return CrmRetryableError(
            f"{message} (HTTP {status})", retry_after=parse_retry_after(retry_after)
        )
    return CrmPermanentError(f"{message} (HTTP {status})")
