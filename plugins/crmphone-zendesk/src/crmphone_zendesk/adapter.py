"""The Zendesk adapter: caller lookup, Talk Partner Edition pops, one ticket and one call record
per call.

* :meth:`ZendeskAdapter.lookup_caller` searches end users by phone (digits, wildcard form)
  through a short-lived cache, and creates the end user when there is none (configurable; the
  created user is remembered, so a search index that lags minutes never makes a second one).
* :meth:`ZendeskAdapter.screen_pop` shows the matched user to the agent who is ringing
  (``POST /api/v2/channels/voice/agents/{agent}/users/{user}/display``).
* :meth:`ZendeskAdapter.log_call` makes the call's ticket once — through the voice tickets
  endpoint (``via_id`` 45 inbound, 46 outbound) with a voice comment, shown to the agent,
  ``external_id`` = the call's key, and an ``Idempotency-Key`` so a retried creation returns the
  same ticket — and the call record (``/api/v2/calls``), completed at the end with duration,
  disposition, hold and wrap-up time. Ids are kept in the adapter's durable memory; after a
  restart the ticket is found again by ``external_id`` (an exact filter, not the lagging search).

Rate limits: zenpy never sleeps through a 429 (budget of one second); the outbox schedules the
retry from ``Retry-After``. One retry layer only.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, ClassVar, Self

import requests
from zenpy import Zenpy
from zenpy.lib.api_objects import Comment, Ticket, User
from zenpy.lib.api_objects.talk_objects import CallPe
from zenpy.lib.exception import APIException

from crmphone.adapters import Adapter, AdapterContext, CallerMatch, CallLog, CrmRecord, LogStage
from crmphone.adapters.cache import LookupCache
from crmphone.adapters.numbers import e164, search_digits
from crmphone.errors import CrmError, CrmRetryableError
from crmphone.events import CallDirection

from .client import ZendeskClient, refused
from .settings import TicketRule, ZendeskSettings

__all__ = ["ZendeskAdapter"]

logger = logging.getLogger(__name__)

_VIA_INBOUND = 45
_VIA_OUTBOUND = 46
# The external id of an end user made for an unknown caller, before its E.164 number.
_CALLER_EXTERNAL_ID = "crmphone-caller:"


class ZendeskAdapter(Adapter):
    """Caller lookup, screen pops, tickets and call records for Zendesk, on zenpy."""

    description: ClassVar[str] = (
        "Zendesk: caller lookup, Talk Partner Edition pops, one voice ticket and call record "
        "per call"
    )

    def __init__(self, context: AdapterContext, settings: ZendeskSettings) -> None:
        super().__init__(context)
        self.settings = settings
        self.client = ZendeskClient(settings)
        self._cache = LookupCache(settings.lookup_cache_seconds)

    @classmethod
    def from_options(cls, options: Mapping[str, Any], context: AdapterContext) -> Self:
        """Build from an ``[[adapters]]`` table (see :mod:`crmphone_zendesk.settings`)."""
        settings = ZendeskSettings.from_options(
            options,
            prefix=f"adapters.{context.name}",
            base_timeout=context.timeout,
            base_verify=context.verify,
        )
        return cls(context, settings)

    def gauges(self) -> Mapping[str, float]:
        """``api_requests_sent`` and ``rate_limit_remaining`` (when Zendesk said), for /metrics."""
        figures = {"api_requests_sent": float(self.client.requests)}
        if self.client.rate_limit_remaining is not None:
            figures["rate_limit_remaining"] = float(self.client.rate_limit_remaining)
        return figures

    async def close(self) -> None:
        """Close the HTTP sessions."""
        self.client.close()

    # ------------------------------------------------------------------ lookup and pop

    async def lookup_caller(self, call: CallLog) -> CallerMatch:
        """The caller's end users; a new end user when none and ``create_users`` is on."""
        number = call.customer_number
        wanted = search_digits(number) if number else None
        if wanted is None:
            return CallerMatch(number=number)
        cached = self._cache.get(wanted)
        if cached is not None:
            return CallerMatch(number=number, records=cached)
        users = await self.context.run_sync(
            self.client.call, "searching the caller", lambda zd: _search(zd, wanted)
        )
        if not users and self.settings.create_users and number:
            users = [await self._created_user(number)]
        self._cache.put(wanted, tuple(users))
        return CallerMatch(number=number, records=tuple(users))

    async def _created_user(self, number: str) -> CrmRecord:
        """The end user made for an unknown ``number`` (made once, remembered).

        The user carries the external id ``crmphone-caller:<E.164>``, which Zendesk keeps unique:
        when the id of a user made earlier was never remembered (the process was killed between
        Zendesk's answer and the commit), making it again is refused and the earlier one is used.
        """
        normal = e164(number) or number
        memory_key = f"user:{normal}"
        known = await self.context.memory.get(memory_key)
        if known is not None:
            return CrmRecord("user", known, f"Caller {normal}")
        user = await self.context.run_sync(
            self.client.call,
            "creating the caller",
            lambda zd: _make_or_find_user(
                zd, User(name=f"Caller {normal}", phone=normal, role="end-user"), normal
            ),
        )
        await self.context.memory.set(memory_key, str(user.id))
        return CrmRecord("user", str(user.id), user.name)

    async def screen_pop(self, call: CallLog, match: CallerMatch) -> None:
        """Show the one matched user to the ringing agent (Talk Partner Edition display)."""
        agent = _agent_id(call)
        record = match.primary if len(match.records) == 1 else None
        if agent is None or record is None or record.kind != "user":
            return  # no agent mapping, or nothing unambiguous to show
        await self.context.run_sync(
            self.client.call,
            f"showing the caller to agent {agent}",
            lambda zd: zd.talk_pe.display_user(agent, int(record.id)),
        )

    # ------------------------------------------------------------------ logging

    async def log_call(self, log: CallLog) -> None:
        """The call's ticket (once, when its kind of call gets one) and its call record."""
        ticket_id = await self._ticket(log) if self._wants_ticket(log) else None
        call_id = await self._call_record(log, ticket_id)
        if log.completed:
            await self._complete(log, call_id, ticket_id)

    def _wants_ticket(self, log: CallLog) -> bool:
        if log.direction is CallDirection.OUTBOUND:
            return TicketRule.OUTBOUND in self.settings.tickets_for
        if log.missed:
            return TicketRule.MISSED in self.settings.tickets_for
        return TicketRule.ANSWERED in self.settings.tickets_for

    async def _ticket(self, log: CallLog) -> int:
        memory_key = f"ticket:{log.key}"
        known = await self.context.memory.get(memory_key)
        if known is not None:
            return int(known)
        found = await self.context.run_sync(
            self.client.call,
            f"finding the ticket of call {log.conversation_id}",
            lambda zd: [t.id for t in zd.tickets(external_id=log.key)],
        )
        if found:
            ticket_id = int(found[0])
        else:
            ticket = self._voice_ticket(log)
            created = await self.context.run_sync(
                self.client.call,
                f"creating the ticket of call {log.conversation_id}",
                lambda zd: zd.talk_pe.create_ticket(_agent_id(log), ticket),
                idempotency_key=f"crmphone-ticket-{log.key}",
            )
            ticket_id = int(_ticket_of(created).id)
        await self.context.memory.set(memory_key, str(ticket_id))
        return ticket_id

    def _voice_ticket(self, log: CallLog) -> dict[str, Any]:
        number = log.customer_number or "an unknown number"
        subject = self.settings.subject.format(
            number=number, direction=log.direction.value, agent=log.crm_user_id or ""
        )
        voice: dict[str, Any] = {
            "from": log.ani or "",
            "to": log.dnis or "",
            "started_at": log.alerting_at.isoformat(),
            "call_duration": int(log.duration_seconds),
        }
        agent = _agent_id(log)
        if agent is not None and log.answered:
            voice["answered_by_id"] = agent
        recording = dict(log.attributes).get("recordingUrl")
        if recording:
            voice["recording_url"] = recording
        ticket: dict[str, Any] = {
            "subject": subject[:255],
            "via_id": _VIA_OUTBOUND if log.direction is CallDirection.OUTBOUND else _VIA_INBOUND,
            "external_id": log.key,
            "tags": list(self.settings.tags),
            "voice_comment": voice,
        }
        requester = log.record
        if requester is not None and requester.kind == "user" and requester.id.isdigit():
            ticket["requester_id"] = int(requester.id)
        if agent is not None:
            ticket["assignee_id"] = agent
        return ticket

    async def _call_record(self, log: CallLog, ticket_id: int | None) -> int:
        memory_key = f"call:{log.key}"
        known = await self.context.memory.get(memory_key)
        if known is not None:
            return int(known)
        # Call records have no idempotency key and no lookup: an attempt is noted before it is
        # sent, so one that never came back (a killed process, no answer) is at least said.
        attempt_key = f"call-attempt:{log.key}"
        if await self.context.memory.get(attempt_key):
            logger.warning(
                "zendesk: an earlier attempt to make the call record of %s got no answer (the "
                "process stopped or the request timed out); if Zendesk made that record, the call "
                "now has two: the Talk Partner Edition API cannot look it up",
                log.conversation_id,
            )
        await self.context.memory.set(attempt_key, "sent")
        fields: dict[str, Any] = {
            "app_id": self.settings.app_id,
            "from_line": log.ani or log.customer_number or "unknown",
            "to_line": log.dnis or "unknown",
            "call_started_at": log.alerting_at.isoformat(),
            "direction": log.direction.value,
            "external_id": log.key,
        }
        agent = _agent_id(log)
        if agent is not None:
            fields["agent_id"] = agent
        if ticket_id is not None:
            fields["ticket_id"] = ticket_id
        record = log.record
        if record is not None and record.kind == "user" and record.id.isdigit():
            fields["end_user_id"] = int(record.id)
        try:
            created = await self.context.run_sync(
                self.client.call,
                f"creating the call record of {log.conversation_id}",
                lambda zd: zd.calls.create(fields),
            )
        except CrmError as exc:
            if refused(exc):
                await self.context.memory.set(attempt_key, "")  # nothing was made
            raise
        call_id = int(created.id)
        await self.context.memory.set(memory_key, str(call_id))
        return call_id

    async def _complete(self, log: CallLog, call_id: int, ticket_id: int | None) -> None:
        fields: dict[str, Any] = {
            "id": call_id,
            "call_ended_at": (log.ended_at or log.alerting_at).isoformat(),
            "duration": int(log.duration_seconds),
            "hold_time": round(log.held_seconds),
            "completion_status": "completed" if log.answered else "missed",
        }
        if log.wrapup_code:
            fields["call_disposition"] = log.wrapup_code
        if log.wrapup_seconds is not None:
            fields["wrap_up_time"] = int(log.wrapup_seconds)
        recording = dict(log.attributes).get("recordingUrl")
        if recording:
            fields["recording_url"] = recording
        await self.context.run_sync(
            self.client.call,
            f"completing the call record of {log.conversation_id}",
            lambda zd: zd.calls.update(CallPe(**fields)),
        )
        if ticket_id is None or log.stage is not LogStage.WRAPPED_UP:
            return
        # One summary comment per call, after wrap-up; remembered so a retry adds no second one.
        summary_key = f"summary:{log.key}"
        if await self.context.memory.get(summary_key) is not None:
            return
        body = _summary(log)
        public = self.settings.public_comment
        await self.context.run_sync(
            self.client.call,
            f"adding the summary of call {log.conversation_id}",
            lambda zd: zd.tickets.update(
                Ticket(id=ticket_id, comment=Comment(body=body, public=public))
            ),
        )
        await self.context.memory.set(summary_key, "1")


def _agent_id(log: CallLog) -> int | None:
    """The agent's Zendesk id from the agent map (a number), or None."""
    crm_user = log.crm_user_id
    return int(crm_user) if crm_user and crm_user.isdigit() else None


def _search(zd: Zenpy, digits: str) -> list[CrmRecord]:
    found = zd.search(type="user", role="end-user", phone=f"*{digits}")
    return [CrmRecord("user", str(user.id), user.name) for user in found]


def _ticket_of(created: Any) -> Any:
    """zenpy answers a ticket creation with the ticket or with a TicketAudit holding it."""
    return getattr(created, "ticket", None) or created


def _summary(log: CallLog) -> str:
    lines = [
        f"Call {log.direction.value} {log.customer_number or ''}".strip(),
        f"Duration: {log.duration_seconds} s",
    ]
    if log.holds:
        lines.append(f"On hold: {log.holds} time(s), {round(log.held_seconds)} s")
    if log.wrapup_code:
        lines.append(f"Disposition: {log.wrapup_code}")
    if log.notes:
        lines.append(f"Notes: {log.notes}")
    return "\n".join(lines)


def _make_or_find_user(zd: Zenpy, user: User, number: str) -> User:
    """Make ``user`` under the caller's external id; the user already made under it, if any."""
    user.external_id = f"{_CALLER_EXTERNAL_ID}{number}"
    try:
        made: User = zd.users.create(user)
    except APIException as exc:
        if not _external_id_taken(exc.response):
            raise
    else:
        return made
    found: list[User] = list(zd.users.search(external_id=user.external_id))
    if not found:  # taken, yet not found: Zendesk's view of it is not consistent yet
        raise CrmRetryableError(f"Zendesk holds a caller for {number} but did not return it yet")
    return found[0]


def _external_id_taken(response: requests.Response | None) -> bool:
    """Whether Zendesk refused a user because its external id is in use (422 DuplicateValue)."""
    if response is None or response.status_code != 422:
        return False
    try:
        details = response.json().get("details") or {}
        return any(
            problem.get("error") == "DuplicateValue" for problem in details.get("external_id", [])
        )
    except (ValueError, AttributeError, TypeError):
        return False
