"""A call log as a Salesforce Task: the fields the leading connectors write (pure, no I/O).

At connect the Task is ``In Progress``; from the end on it is ``Completed`` with the duration
(an integer, never ""), the disposition (the wrap-up code, or ``Missed``), and the notes. It is
linked to the caller (``WhoId``: a Contact or Lead), to what the call is about (``WhatId``: an
Account, Case or Opportunity — the click-to-dial record, or the matched account), and owned by
the agent's Salesforce user (``OwnerId``). The external id field carries the log's key, so the
same call always upserts the same Task.
"""

from __future__ import annotations

import enum
from typing import Any

from crmphone.adapters import CallLog, CrmRecord, LogStage
from crmphone.events import CallDirection

from .settings import SalesforceSettings

__all__ = ["WHAT_KINDS", "WHO_KINDS", "creating", "task_fields", "without_insert_only"]

#: Records a Task's WhoId may name (people).
WHO_KINDS = frozenset({"Contact", "Lead"})
#: Records a Task's WhatId may name (things).
WHAT_KINDS = frozenset({"Account", "Case", "Opportunity"})
_SUBJECT_LIMIT = 255
_DESCRIPTION_LIMIT = 32_000


def _subject(log: CallLog) -> str:
    number = log.customer_number or "an unknown number"
    if log.direction is CallDirection.OUTBOUND:
        text = f"Outbound call to {number}"
    elif log.missed:
        text = f"Missed call from {number}"
    else:
        text = f"Inbound call from {number}"
    return text[:_SUBJECT_LIMIT]


def _links(log: CallLog) -> tuple[str | None, str | None]:
    """``(WhoId, WhatId)``: the click-to-dial record first, then the lookup's primary match."""
    who: str | None = None
    what: str | None = None
    candidates: list[CrmRecord] = []
    if log.linked_record is not None:
        candidates.append(log.linked_record)
    if log.match is not None and log.match.primary is not None:
        candidates.append(log.match.primary)
    for record in candidates:
        if record.kind in WHO_KINDS and who is None:
            who = record.id
        elif record.kind in WHAT_KINDS and what is None:
            what = record.id
    return who, what


def creating(log: CallLog) -> bool:
    """True when this write of ``log`` normally creates its Task: the write at connect, or the
    first and only write of a missed call. (After an outage the first write may be a later
    stage; that Task is then made without ``TaskSubtype``, which only an insert may set.)"""
    return log.stage is LogStage.CONNECTED or (log.missed and log.stage is LogStage.ENDED)


def _mapped(log: CallLog, source: str) -> Any:
    if source.startswith("attributes."):
        return dict(log.attributes).get(source.removeprefix("attributes."))
    value = getattr(log, source)
    return value.value if isinstance(value, enum.Enum) else value


def task_fields(log: CallLog, settings: SalesforceSettings) -> dict[str, Any]:
    """The Task fields for ``log`` (without the external id field, which names the record).

    Salesforce fills the Task's ``AccountId`` itself from the contact it names.
    """
    who, what = _links(log)
    fields: dict[str, Any] = {
        "Subject": _subject(log),
        "Type": "Call",
        "CallType": "Outbound" if log.direction is CallDirection.OUTBOUND else "Inbound",
        # With a call object keying the call, the Task is found by CallObject: make it unique
        # per agent leg (the log's key) rather than per conversation.
        "CallObject": log.key if settings.call_object else log.conversation_id,
        "ActivityDate": log.alerting_at.date().isoformat(),
        "Status": settings.status_completed if log.completed else settings.status_in_progress,
    }
    if creating(log):
        # Settable when the Task is created only; an update that names it is refused.
        fields["TaskSubtype"] = "Call"
    if who is not None:
        fields["WhoId"] = who
    if what is not None:
        fields["WhatId"] = what
    if log.crm_user_id:
        fields["OwnerId"] = log.crm_user_id
    if log.completed:
        fields["CallDurationInSeconds"] = int(log.duration_seconds)
        disposition = log.wrapup_code or ("Missed" if log.missed else None)
        if disposition:
            fields["CallDisposition"] = disposition[:255]
        if log.notes:
            fields["Description"] = log.notes[:_DESCRIPTION_LIMIT]
    for source, target in settings.fields:
        value = _mapped(log, source)
        if value is not None:
            fields[target] = value
    return fields


def without_insert_only(fields: dict[str, Any]) -> dict[str, Any]:
    """``fields`` without those only an insert may set (to resend an update that named one)."""
    return {name: value for name, value in fields.items() if name != "TaskSubtype"}
