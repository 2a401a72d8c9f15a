"""Which CRM work a call event makes, and what it changes in the call's log (pure).

The outbox calls :func:`route` for every (event, adapter) pair inside the transaction that
stores the event, so the log's new content and the work it needs are committed together.

.. code-block:: text

    event            log content                         work queued
    CallAlerting     new log (caller, queue, direction)  POP  (if the adapter looks up or pops)
    CallConnected    stage CONNECTED, connected_at       LOG
    CallHeld         holds + 1                           —
    CallResumed      held time                           —
    CallTransferred  transferred_to                      —
    CallEnded        stage ENDED, times, who hung up     LOG  (a missed call's only log)
    CallWrapup       stage WRAPPED_UP, code, notes       LOG

An event for a call whose log does not exist yet (its alerting was never seen) makes a log only
if it is a :class:`~crmphone.events.CallEnded`, which carries enough to write one; anything else
is reported as an anomaly and makes no work.
"""

from __future__ import annotations

import enum

import attrs

from crmphone.adapters.base import CallLog
from crmphone.events import (
    CallAlerting,
    CallConnected,
    CallEnded,
    CallEvent,
    CallWrapup,
)

__all__ = ["Routed", "WorkKind", "route"]


class WorkKind(enum.StrEnum):
    """What a queued piece of CRM work does."""

    POP = "pop"  # look the caller up, then screen-pop (the pop is skipped once it expired)
    LOG = "log"  # upsert the call log with its current content


@attrs.frozen
class Routed:
    """What one event does for one adapter: the log's new content and the work to queue."""

    log: CallLog | None
    work: tuple[WorkKind, ...] = ()
    anomaly: str | None = None


def route(event: CallEvent, log: CallLog | None, *, crm_user_id: str | None, pops: bool) -> Routed:
    """Fold ``event`` into ``log`` (None: no log yet) for an adapter; ``pops``: it looks up or pops."""
    if isinstance(event, CallAlerting):
        if log is not None:
            return Routed(log, anomaly=f"{event.key}: the call already has a log")
        return Routed(
            CallLog.from_alerting(event, crm_user_id=crm_user_id),
            (WorkKind.POP,) if pops else (),
        )
    if log is None:
        if isinstance(event, CallEnded):
            return Routed(CallLog.from_ended(event, crm_user_id=crm_user_id), (WorkKind.LOG,))
        return Routed(None, anomaly=f"{event.key}: no alerting seen for this call; ignored")
    updated = log.with_event(event)
    writes = isinstance(event, CallConnected | CallEnded | CallWrapup)
    return Routed(updated, (WorkKind.LOG,) if writes else ())
