"""What the emulated Zendesk account holds: users, tickets, comments, call records, and what
happened to it (display requests, API requests). All frozen values; the store replaces a record
with an evolved copy when it changes.

Times: ``created_at``/``updated_at`` are aware UTC datetimes (the wall clock, rendered as Zendesk's
``2024-01-17T18:31:19Z``); ``indexed_at`` and every ``at`` are seconds on the model's monotonic
clock (what search lag and benchmarks compare against).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Any, Literal

import attrs

__all__ = [
    "CALL_FIELDS",
    "Call",
    "Comment",
    "DisplayRequest",
    "RequestRecord",
    "Ticket",
    "User",
    "Via",
]

Role = Literal["end-user", "agent", "admin"]

CALL_FIELDS = (
    "id",
    "account_id",
    "ticket_id",
    "end_user_id",
    "organization_id",
    "brand_id",
    "app_id",
    "agent_id",
    "from_line",
    "from_line_nickname",
    "to_line",
    "to_line_nickname",
    "call_started_at",
    "call_ended_at",
    "direction",
    "duration",
    "dnis",
    "phone_name",
    "call_type",
    "end_user_location",
    "callback",
    "callback_source",
    "callback_number",
    "wait_time",
    "time_to_answer",
    "queue_time",
    "exceeded_queue_time",
    "queue_name",
    "ivr_time_spent",
    "ivr_hops",
    "ivr_action",
    "ivr_routed_to",
    "ivr_destination_group_name",
    "talk_time",
    "hold_time",
    "consultation_time",
    "wrap_up_time",
    "completion_status",
    "call_abandoned_position",
    "customer_requested_voicemail",
    "voicemail",
    "outside_business_hours",
    "overflowed",
    "overflowed_to",
    "call_disposition",
    "recording_url",
    "recording_time",
    "not_recording_time",
    "call_recording_consent",
    "call_recording_consent_action",
    "recording_control_interactions",
    "created_at",
    "updated_at",
    "transcript",
    "external_id",
)
"""Every property of a Talk Partner Edition call record, in the order Zendesk renders them."""


def _frozen_mapping(value: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(value))


@attrs.frozen
class User:
    """A Zendesk user: an agent, an admin (the API user) or an end-user (a caller)."""

    id: int
    name: str
    role: Role
    created_at: datetime
    updated_at: datetime
    phone: str | None = None
    email: str | None = None
    external_id: str | None = None
    tags: tuple[str, ...] = ()
    indexed_at: float = -math.inf
    """When search starts to see the user (monotonic; seeded users: always)."""

    @property
    def is_agent(self) -> bool:
        """Agents and admins can be shown records (Talk Partner Edition display)."""
        return self.role in ("agent", "admin")


@attrs.frozen
class Via:
    """How a ticket or comment came in: ``channel`` (``api``, ``voice``) and its source."""

    channel: str = "api"
    rel: str | None = None
    source_from: Mapping[str, Any] = attrs.field(factory=dict, converter=_frozen_mapping)
    source_to: Mapping[str, Any] = attrs.field(factory=dict, converter=_frozen_mapping)
    via_id: int | None = None
    """The numeric via type when the client gave one (44 voicemail, 45/46 phone call)."""


@attrs.frozen
class Ticket:
    """A ticket; its comments are :class:`Comment` records with its ``ticket_id``."""

    id: int
    subject: str | None
    description: str
    status: str
    requester_id: int
    submitter_id: int
    created_at: datetime
    updated_at: datetime
    assignee_id: int | None = None
    external_id: str | None = None
    tags: tuple[str, ...] = ()
    priority: str | None = None
    type: str | None = None
    via: Via = attrs.field(factory=Via)
    indexed_at: float = -math.inf


@attrs.frozen
class Comment:
    """A ticket comment: ``Comment``, ``VoiceComment`` (voice tickets) or ``TpeVoiceComment``
    (call records); ``data`` holds the voice fields."""

    id: int
    ticket_id: int
    audit_id: int
    type: str
    author_id: int
    body: str
    html_body: str
    public: bool
    created_at: datetime
    via: Via = attrs.field(factory=Via)
    data: Mapping[str, Any] = attrs.field(factory=dict, converter=_frozen_mapping)
    title: str | None = None


@attrs.frozen
class Call:
    """A Talk Partner Edition call record: every :data:`CALL_FIELDS` entry in ``fields``
    (``call_started_at``/``call_ended_at`` already normalised to UTC ``…Z`` strings)."""

    id: int
    fields: Mapping[str, Any] = attrs.field(converter=_frozen_mapping)
    created_at: datetime
    updated_at: datetime

    def __getitem__(self, name: str) -> Any:
        """A call property by name (``call["duration"]``); KeyError for unknown names."""
        return self.fields[name]


@attrs.frozen
class DisplayRequest:
    """One Talk Partner Edition display request (a screen pop), shown or refused.

    ``at`` is the model's monotonic time when the request arrived: benchmarks measure from the
    ring to it.
    """

    at: float
    agent_id: int
    kind: Literal["user", "ticket"]
    target_id: int
    shown: bool


@attrs.frozen
class RequestRecord:
    """One API request as answered: when, what, which route kind, which status."""

    at: float
    method: str
    path: str
    route: str
    status: int
    idempotency_lookup: str | None = None
    """``miss`` or ``hit`` when the request carried an ``Idempotency-Key`` Zendesk honours."""
