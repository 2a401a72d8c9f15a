"""A scriptable in-memory adapter, and fake calls, for tests of whatever drives adapters.

:class:`RecordingAdapter` records every hook call and can be told to fail, stall or answer
lookups; :func:`fake_call` makes the events of one realistic call. The conformance suite, the
outbox's own tests and the connector's use them; plugin authors may too.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs

from crmphone.adapters.base import (
    Adapter,
    AdapterContext,
    CallerMatch,
    CallLog,
    CrmRecord,
    LogStage,
)
from crmphone.events import (
    CallAlerting,
    CallConnected,
    CallDirection,
    CallEnded,
    CallEvent,
    CallHeld,
    CallResumed,
    CallWrapup,
    HungUpBy,
    PhoneEvent,
    PresenceEvent,
    StatusEvent,
)

__all__ = ["HookCall", "RecordingAdapter", "fake_call", "fake_call_logs"]


@attrs.frozen
class HookCall:
    """One call of an adapter hook: which, with what, and when (monotonic seconds)."""

    hook: str
    log: CallLog | None
    match: CallerMatch | None
    event: StatusEvent | None
    at: float


class RecordingAdapter(Adapter):
    """An adapter that records what it is asked and does what the test says.

    ``records`` maps a customer number to the records a lookup finds. :meth:`fail_next` makes
    the next calls of a hook raise; :meth:`stall` makes them wait until the returned event is set.
    ``logs`` holds the latest log written per key: what a CRM with an upsert would contain.
    """

    description = "records hook calls in memory (for tests)"

    def __init__(
        self,
        context: AdapterContext | None = None,
        *,
        records: dict[str, Sequence[CrmRecord]] | None = None,
    ) -> None:
        super().__init__(context or AdapterContext(name="recording"))
        self.records = dict(records or {})
        self.calls: list[HookCall] = []
        self.logs: dict[str, CallLog] = {}
        self.writes: list[CallLog] = []
        self._failures: dict[str, list[BaseException]] = {}
        self._stalls: dict[str, asyncio.Event] = {}
        self.changed = asyncio.Event()

    def fail_next(self, hook: str, *errors: BaseException) -> None:
        """Make the next ``len(errors)`` calls of ``hook`` raise these errors, in order."""
        self._failures.setdefault(hook, []).extend(errors)

    def stall(self, hook: str) -> asyncio.Event:
        """Make calls of ``hook`` wait until the returned event is set."""
        event = self._stalls[hook] = asyncio.Event()
        return event

    def of(self, hook: str) -> list[HookCall]:
        """The recorded calls of one hook, in order."""
        return [c for c in self.calls if c.hook == hook]

    async def wait_for(self, hook: str, count: int, within: float = 5.0) -> list[HookCall]:
        """Wait until ``hook`` was called ``count`` times (successfully or not)."""
        async with asyncio.timeout(within):
            while len(self.of(hook)) < count:
                self.changed.clear()
                await self.changed.wait()
        return self.of(hook)

    async def _enter(
        self,
        hook: str,
        log: CallLog | None = None,
        match: CallerMatch | None = None,
        event: StatusEvent | None = None,
    ) -> None:
        self.calls.append(HookCall(hook, log, match, event, time.monotonic()))
        self.changed.set()
        stall = self._stalls.get(hook)
        if stall is not None:
            await stall.wait()
        pending = self._failures.get(hook)
        if pending:
            raise pending.pop(0)

    async def lookup_caller(self, call: CallLog) -> CallerMatch:
        """Answer from :attr:`records`."""
        await self._enter("lookup_caller", call)
        found = self.records.get(call.customer_number or "", ())
        return CallerMatch(number=call.customer_number, records=tuple(found))

    async def screen_pop(self, call: CallLog, match: CallerMatch) -> None:
        """Record the pop."""
        await self._enter("screen_pop", call, match)

    async def log_call(self, log: CallLog) -> None:
        """Upsert the log by its key."""
        await self._enter("log_call", log)
        self.logs[log.key] = log
        self.writes.append(log)

    async def on_connection_event(self, event: PhoneEvent) -> None:
        """Record the status event."""
        await self._enter("on_connection_event", event=event)

    async def on_presence_event(self, event: PresenceEvent) -> None:
        """Record the presence event."""
        await self._enter("on_presence_event", event=event)


_serial = itertools.count(1)


def fake_call(
    *,
    agent_id: str = "agent-1",
    number: str = "+15551230001",
    direction: CallDirection = CallDirection.INBOUND,
    answered: bool = True,
    holds: int = 0,
    wrapup_code: str | None = "resolved",
    start: datetime | None = None,
    talk_seconds: int = 42,
    conversation_id: str | None = None,
) -> list[CallEvent]:
    """The events of one call, in order: alerting, connected, holds, ended, wrap-up.

    An unanswered call is alerting then ended (missed, for an inbound call).
    """
    serial = next(_serial)
    conversation_id = conversation_id or f"conv-{serial:06d}"
    participant = f"part-{serial:06d}"
    at = start or datetime.now(UTC)
    common: dict[str, Any] = {
        "conversation_id": conversation_id,
        "agent_id": agent_id,
        "participant_id": participant,
    }
    inbound = direction is CallDirection.INBOUND
    events: list[CallEvent] = [
        CallAlerting(
            **common,
            at=at,
            direction=direction,
            ani=number if inbound else "+15550009999",
            dnis="+15550009999" if inbound else number,
            queue_name="Support" if inbound else None,
        )
    ]
    if not answered:
        ended = at + timedelta(seconds=10)
        events.append(
            CallEnded(
                **common,
                at=ended,
                direction=direction,
                started_at=at,
                ended_at=ended,
                who_hung_up=HungUpBy.CUSTOMER,
                missed=inbound,
            )
        )
        return events
    connected = at + timedelta(seconds=3)
    events.append(CallConnected(**common, at=connected, connected_at=connected))
    for occurrence in range(1, holds + 1):
        held = connected + timedelta(seconds=5 * occurrence)
        events.append(CallHeld(**common, at=held, occurrence=occurrence))
        events.append(CallResumed(**common, at=held + timedelta(seconds=2), occurrence=occurrence))
    ended = connected + timedelta(seconds=talk_seconds)
    events.append(
        CallEnded(
            **common,
            at=ended,
            direction=direction,
            started_at=at,
            connected_at=connected,
            ended_at=ended,
            duration_seconds=talk_seconds,
            who_hung_up=HungUpBy.CUSTOMER,
            answered=True,
        )
    )
    if wrapup_code is not None:
        events.append(
            CallWrapup(
                **common,
                at=ended + timedelta(seconds=20),
                code=wrapup_code,
                notes="customer happy",
                duration_seconds=20,
            )
        )
    return events


def fake_call_logs(*, crm_user_id: str | None = None, **call: Any) -> dict[LogStage, CallLog]:
    """One fake call's log (as an adapter is handed it) at each stage crmphone writes:
    ``CONNECTED``, ``ENDED`` and ``WRAPPED_UP`` for an answered call (``ENDED`` alone for a
    missed one). ``call`` takes :func:`fake_call`'s options; ``crm_user_id`` the agent's CRM user."""
    first, *rest = fake_call(**call)
    assert isinstance(first, CallAlerting)
    log = CallLog.from_alerting(first, crm_user_id=crm_user_id)
    logs: dict[LogStage, CallLog] = {}
    for event in rest:
        log = log.with_event(event)
        if log.stage > LogStage.ALERTING:
            logs[log.stage] = log
    return logs
