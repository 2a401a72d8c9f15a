"""Zendesk's HTTP API over the model, without sockets: :class:`ApiRequest` in, :class:`ApiAnswer`
out (the starlette app in :mod:`.app` only converts).

Routes (``.json`` suffix optional everywhere, as on Zendesk; the route kind in brackets is what
:attr:`Stats.requests` counts and fault scopes name):

==========  ==============================================================  ======================
GET         /api/v2/search.json?query=…                                     [search]
GET         /api/v2/search/count.json?query=…                               [search.count]
GET         /api/v2/users/search.json?query=… | ?external_id=…              [users.search]
GET         /api/v2/users/me.json, /api/v2/users/{id}.json                  [users.me, users.show]
POST        /api/v2/users.json                                              [users.create]
GET         /api/v2/tickets.json[?external_id=…]                            [tickets.list]
POST        /api/v2/tickets.json (honours ``Idempotency-Key``)              [tickets.create]
GET, PUT    /api/v2/tickets/{id}.json                                       [tickets.show, .update]
GET         /api/v2/tickets/{id}/comments.json                              [tickets.comments]
POST        /api/v2/channels/voice/agents/{a}/users/{u}/display.json        [voice.display_user]
POST        /api/v2/channels/voice/agents/{a}/tickets/{t}/display.json      [voice.display_ticket]
POST        /api/v2/channels/voice/tickets.json (``Idempotency-Key``)       [voice.tickets.create]
POST        /api/v2/calls.json; GET, PATCH /api/v2/calls/{id}               [calls.create, .show, .update]
POST        /api/v2/calls/{id}/comments.json                                [calls.comment]
==========  ==============================================================  ======================

Both search routes are what zenpy calls: ``zenpy.search(…)`` →  ``/search.json`` (results with
``result_type``), ``zenpy.users.search(query=…)`` → ``/users/search.json`` (``users``).

Every request passes, in order: a pending fault for its route (see :mod:`.faults`),
authentication (401 ``{"error": "Couldn't authenticate you"}``), the per-minute budget (429 with
``Retry-After``), then the route. Every answer but a fault's plain-text 5xx carries
``X-Rate-Limit`` and ``X-Rate-Limit-Remaining``.

Ticket creation with an ``Idempotency-Key`` header: the first request gets its normal answer and
``x-idempotency-lookup: miss``; the same key with the same body within two hours gets the stored
answer (same ticket) and ``x-idempotency-lookup: hit``; the same key with another body (or on the
other creation route) gets 400 ``IdempotentRequestError``. Only successful answers are stored,
so a request that failed validation can be retried with its key.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from .faults import FaultKind
from .model import RecordInvalidError, ZendeskModel, iso_utc
from .records import CALL_FIELDS, Comment, RequestRecord, Ticket, User, Via

__all__ = ["ROUTES", "ApiAnswer", "ApiRequest", "ZendeskApi"]

JSON_TYPE = "application/json; charset=utf-8"
TEXT_TYPE = "text/plain; charset=utf-8"
IDEMPOTENT_ROUTES = frozenset({"tickets.create", "voice.tickets.create"})

_ID = r"(?P<id>\d+)"
_JSON = r"(?:\.json)?"
ROUTES: tuple[tuple[str, str, str], ...] = (
    ("GET", rf"/api/v2/search{_JSON}", "search"),
    ("GET", rf"/api/v2/search/count{_JSON}", "search.count"),
    ("GET", rf"/api/v2/users/search{_JSON}", "users.search"),
    ("GET", rf"/api/v2/users/me{_JSON}", "users.me"),
    ("GET", rf"/api/v2/users/{_ID}{_JSON}", "users.show"),
    ("POST", rf"/api/v2/users{_JSON}", "users.create"),
    ("GET", rf"/api/v2/tickets{_JSON}", "tickets.list"),
    ("POST", rf"/api/v2/tickets{_JSON}", "tickets.create"),
    ("GET", rf"/api/v2/tickets/{_ID}{_JSON}", "tickets.show"),
    ("PUT", rf"/api/v2/tickets/{_ID}{_JSON}", "tickets.update"),
    ("GET", rf"/api/v2/tickets/{_ID}/comments{_JSON}", "tickets.comments"),
    (
        "POST",
        rf"/api/v2/channels/voice/agents/(?P<agent>\d+)/users/{_ID}/display{_JSON}",
        "voice.display_user",
    ),
    (
        "POST",
        rf"/api/v2/channels/voice/agents/(?P<agent>\d+)/tickets/{_ID}/display{_JSON}",
        "voice.display_ticket",
    ),
    ("POST", rf"/api/v2/channels/voice/tickets{_JSON}", "voice.tickets.create"),
    ("POST", rf"/api/v2/calls{_JSON}", "calls.create"),
    ("GET", rf"/api/v2/calls/{_ID}{_JSON}", "calls.show"),
    ("PATCH", rf"/api/v2/calls/{_ID}{_JSON}", "calls.update"),
    ("POST", rf"/api/v2/calls/{_ID}/comments{_JSON}", "calls.comment"),
)
"""Every API route: (method, path pattern, route kind)."""

_COMPILED = tuple((method, re.compile(pattern), kind) for method, pattern, kind in ROUTES)


@attrs.frozen
class ApiRequest:
    """An HTTP request as the API sees it. ``headers`` keys are lower-case; ``base_url`` is
    ``scheme://host:port`` as the client addressed the server (for the ``url`` members)."""

    method: str
    path: str
    query: Mapping[str, str] = attrs.field(factory=dict)
    headers: Mapping[str, str] = attrs.field(factory=dict)
    body: bytes = b""
    base_url: str = "https://127.0.0.1"


@attrs.frozen
class ApiAnswer:
    """An HTTP answer: status, body, content type, extra headers, and ``delay`` — the seconds
    the I/O layer waits before sending it (a ``slow`` fault)."""

    status: int
    body: bytes = b""
    content_type: str = JSON_TYPE
    headers: Mapping[str, str] = attrs.field(factory=dict)
    delay: float = 0.0

    @classmethod
    def json(
        cls, status: int, document: Any, headers: Mapping[str, str] | None = None
    ) -> ApiAnswer:
        """A JSON answer."""
        body = json.dumps(document, ensure_ascii=False).encode("utf-8")
        return cls(status, body, JSON_TYPE, dict(headers or {}))

    @classmethod
    def text(cls, status: int, text: str, headers: Mapping[str, str] | None = None) -> ApiAnswer:
        """A plain-text answer (what proxies and some Zendesk errors send)."""
        return cls(status, text.encode("utf-8"), TEXT_TYPE, dict(headers or {}))

    def with_headers(self, headers: Mapping[str, str]) -> ApiAnswer:
        """The same answer with ``headers`` added (replacing same-named ones)."""
        return attrs.evolve(self, headers={**self.headers, **headers})

    def document(self) -> Any:
        """The JSON body decoded (ValueError for a non-JSON body)."""
        return json.loads(self.body)


def not_found() -> ApiAnswer:
    """Zendesk's 404 for a record that does not exist."""
    return ApiAnswer.json(404, {"error": "RecordNotFound", "description": "Not found"})


def record_invalid(error: RecordInvalidError) -> ApiAnswer:
    """Zendesk's 422 for a record that failed validation."""
    return ApiAnswer.json(
        422,
        {
            "error": "RecordInvalid",
            "description": "Record validation errors",
            "details": error.details,
        },
    )


def bad_request(error: str, description: str) -> ApiAnswer:
    """A 400 with Zendesk's ``{"error", "description"}`` body."""
    return ApiAnswer.json(400, {"error": error, "description": description})


class _BadRequest(Exception):  # noqa: N818 - internal signal, becomes the 400 it carries
    def __init__(self, answer: ApiAnswer) -> None:
        super().__init__(answer.status)
        self.answer = answer


_Handler = Callable[["ZendeskApi", ApiRequest, "re.Match[str]"], ApiAnswer]


class ZendeskApi:
    """Answers :class:`ApiRequest`s from a :class:`ZendeskModel` (see the module docstring)."""

    def __init__(self, model: ZendeskModel) -> None:
        self.model = model

    def handle(self, request: ApiRequest) -> ApiAnswer:
        """The answer to one request, counted in ``model.stats``."""
        model = self.model
        now = model.now()
        route, match = _route(request.method, request.path)
        lookup: str | None = None
        if route == "root":
            answer = ApiAnswer.text(
                200, "crmphone Zendesk emulator: the API is under /api/v2 (HTTPS).\n"
            )
        else:
            answer, lookup = self._answer(request, route, match, now)
        model.stats.record(
            RequestRecord(now, request.method, request.path, route, answer.status, lookup)
        )
        return answer

    def _answer(
        self, request: ApiRequest, route: str, match: re.Match[str] | None, now: float
    ) -> tuple[ApiAnswer, str | None]:
        model = self.model
        delay = 0.0
        fault = model.faults.take(route, now) if match is not None else None
        if fault is not None and fault.kind is FaultKind.UNAVAILABLE:
            return ApiAnswer.text(fault.status, _REASONS.get(fault.status, "Error")), None
        rate_headers = {"X-Rate-Limit": str(model.rate_limit)}
        if fault is not None and fault.kind is FaultKind.RATE_LIMITED:
            return _too_many(fault.retry_after, rate_headers), None
        if fault is not None and fault.kind is FaultKind.SLOW:
            delay = fault.delay
        expired = fault is not None and fault.kind is FaultKind.EXPIRED_CREDENTIALS
        if expired or model.authenticate(request.headers.get("authorization")) is None:
            rate_headers["X-Rate-Limit-Remaining"] = str(model.rate_limiter.remaining(now))
            answer = ApiAnswer.json(401, {"error": "Couldn't authenticate you"})
            answer = answer.with_headers({"WWW-Authenticate": 'Basic realm="Web Password"'})
            return attrs.evolve(answer.with_headers(rate_headers), delay=delay), None
        admitted, value = model.rate_limiter.admit(now)
        if not admitted:
            return _too_many(value, rate_headers), None
        rate_headers["X-Rate-Limit-Remaining"] = str(value)
        if fault is not None and fault.kind is FaultKind.REJECTED:
            body = {
                "error": "RecordInvalid",
                "description": "Record validation errors",
                "details": {
                    "base": [
                        {
                            "description": "Refused by a business rule (injected fault)",
                            "error": "InvalidValue",
                        }
                    ]
                },
            }
            answer = ApiAnswer.json(422, body).with_headers(rate_headers)
            return attrs.evolve(answer, delay=delay), None
        answer, lookup = self._routed(request, route, match, now)
        return attrs.evolve(answer.with_headers(rate_headers), delay=delay), lookup

    def _routed(
        self,
        request: ApiRequest,
        route: str,
        match: re.Match[str] | None,
        now: float,
    ) -> tuple[ApiAnswer, str | None]:
        if match is None:
            return ApiAnswer.json(
                404, {"error": "InvalidEndpoint", "description": "Not found"}
            ), None
        handler: _Handler = getattr(type(self), "_" + route.replace(".", "_"))
        key = request.headers.get("idempotency-key")
        if route not in IDEMPOTENT_ROUTES or not key:
            return self._run(handler, request, match), None
        fingerprint = _fingerprint(route, request.body)
        found = self.model.idempotency.lookup(key, fingerprint, now)
        if found.outcome == "mismatch":
            return bad_request(
                "IdempotentRequestError",
                "The Idempotency-Key was already used for a request with different parameters",
            ), None
        if found.outcome == "hit":
            assert isinstance(found.answer, ApiAnswer)
            return found.answer.with_headers({"x-idempotency-lookup": "hit"}), "hit"
        answer = self._run(handler, request, match)
        if 200 <= answer.status < 300:
            self.model.idempotency.store(key, fingerprint, answer, now)
        return answer.with_headers({"x-idempotency-lookup": "miss"}), "miss"

    def _run(self, handler: _Handler, request: ApiRequest, match: re.Match[str]) -> ApiAnswer:
        try:
            return handler(self, request, match)
        except RecordInvalidError as error:
            return record_invalid(error)
        except _BadRequest as error:
            return error.answer

    # ------------------------------------------------------------------ search

    def _search(self, request: ApiRequest, match: re.Match[str]) -> ApiAnswer:
        found = self.model.search(request.query.get("query", ""))
        results = [
            {**self._render(record, request.base_url), "result_type": _kind(record)}
            for record in found
        ]
        return ApiAnswer.json(
            200,
            {
                "results": results,
                "facets": None,
                "next_page": None,
                "previous_page": None,
                "count": len(results),
            },
        )

    def _search_count(self, request: ApiRequest, match: re.Match[str]) -> ApiAnswer:
        return ApiAnswer.json(
            200, {"count": len(self.model.search(request.query.get("query", "")))}
        )

    def _users_search(self, request: ApiRequest, match: re.Match[str]) -> ApiAnswer:
        if "external_id" in request.query:
            wanted = request.query["external_id"]
            found = [u for u in self.model.users.values() if u.external_id == wanted]
        else:
            found = self.model.search(request.query.get("query", ""), only="user")
        users = [self.user_json(user, request.base_url) for user in found]
        return ApiAnswer.json(
            200, {"users": users, "next_page": None, "previous_page": None, "count": len(users)}
        )

    # ------------------------------------------------------------------ users

    def _users_me(self, request: ApiRequest, match: re.Match[str]) -> ApiAnswer:
        return ApiAnswer.json(200, {"user": self.user_json(self.model.admin, request.base_url)})

    def _users_show(self, request: ApiRequest, match: re.Match[str]) -> ApiAnswer:
        user = self.model.user(int(match["id"]))
        if user is None:
            return not_found()
        return ApiAnswer.json(200, {"user": self.user_json(user, request.base_url)})

    def _users_create(self, request: ApiRequest, match: re.Match[str]) -> ApiAnswer:
        raw = _member(_object_body(request), "user")
        role = _optional(raw, "role", str) or "end-user"
        if role not in ("end-user", "agent", "admin"):
            raise RecordInvalidError.one("role", f"Role: {role} is not a valid role")
        user = self.model.add_user(
            _optional(raw, "name", str) or "",
            phone=_optional(raw, "phone", str),
            role=role,  # type: ignore[arg-type]  # checked just above
            email=_optional(raw, "email", str),
            external_id=_optional(raw, "external_id", str),
            tags=_string_list(raw, "tags"),
            indexed=False,
        )
        location = f"{request.base_url}/api/v2/users/{user.id}.json"
        return ApiAnswer.json(
            201, {"user": self.user_json(user, request.base_url)}, {"Location": location}
        )

    # ------------------------------------------------------------------ tickets

    def _tickets_list(self, request: ApiRequest, match: re.Match[str]) -> ApiAnswer:
        if "external_id" in request.query:
            found = self.model.tickets_by_external_id(request.query["external_id"])
        else:
            found = list(self.model.tickets.values())
        tickets = [self.ticket_json(ticket, request.base_url) for ticket in found]
        return _listing(request, "tickets", tickets)

    def _tickets_create(self, request: ApiRequest, match: re.Match[str]) -> ApiAnswer:
        raw = _member(_object_body(request), "ticket")
        arguments = _ticket_arguments(raw)
        via_id = _optional(raw, "via_id", int)
        if via_id is not None:
            rel = {44: "voicemail", 45: "inbound", 46: "outbound"}.get(via_id)
            arguments["via"] = Via("voice", rel, via_id=via_id) if rel else Via(via_id=via_id)
        ticket, comment = self.model.create_ticket(**arguments)
        base = request.base_url
        location = f"{base}/api/v2/tickets/{ticket.id}.json"
        return ApiAnswer.json(
            201,
            {"ticket": self.ticket_json(ticket, base), "audit": self.audit_json(ticket, comment)},
            {"Location": location},
        )

    def _tickets_show(self, request: ApiRequest, match: re.Match[str]) -> ApiAnswer:
        ticket = self.model.ticket(int(match["id"]))
        if ticket is None:
            return not_found()
        return ApiAnswer.json(200, {"ticket": self.ticket_json(ticket, request.base_url)})

    def _tickets_update(self, request: ApiRequest, match: re.Match[str]) -> ApiAnswer:
        ticket_id = int(match["id"])
        if self.model.ticket(ticket_id) is None:
            return not_found()
        raw = _member(_object_body(request), "ticket")
        comment = raw.get("comment")
        if comment is not None and not isinstance(comment, Mapping):
            raise RecordInvalidError.one("comment", "Comment: is invalid")
        changes = {key: value for key, value in raw.items() if key != "comment"}
        if "tags" in changes:
            changes["tags"] = _string_list(raw, "tags")
        ticket, added = self.model.update_ticket(ticket_id, changes, comment=comment)
        return ApiAnswer.json(
            200,
            {
                "ticket": self.ticket_json(ticket, request.base_url),
                "audit": self.audit_json(ticket, added, created=False),
            },
        )

    def _tickets_comments(self, request: ApiRequest, match: re.Match[str]) -> ApiAnswer:
        ticket_id = int(match["id"])
        if self.model.ticket(ticket_id) is None:
            return not_found()
        comments = [self.comment_json(c) for c in self.model.comments_of(ticket_id)]
        return _listing(request, "comments", comments)

    # ------------------------------------------------------------------ Talk Partner Edition

    def _voice_display_user(self, request: ApiRequest, match: re.Match[str]) -> ApiAnswer:
        return self._display(match, "user")

    def _voice_display_ticket(self, request: ApiRequest, match: re.Match[str]) -> ApiAnswer:
        return self._display(match, "ticket")

    def _display(self, match: re.Match[str], kind: Any) -> ApiAnswer:
        if not self.model.display(int(match["agent"]), kind, int(match["id"])):
            return not_found()
        # Zendesk documents the status only; the body is empty here (unconfirmed).
        return ApiAnswer(200, b"", JSON_TYPE)

    def _voice_tickets_create(self, request: ApiRequest, match: re.Match[str]) -> ApiAnswer:
        body = _object_body(request)
        raw = _member(body, "ticket")
        agent = body.get("display_to_agent")
        if agent in ("", None):
            agent = None  # zenpy sends "" when no agent is given
        elif isinstance(agent, str) and agent.isdigit():
            agent = int(agent)
        elif isinstance(agent, bool) or not isinstance(agent, int):
            raise RecordInvalidError.one("display_to_agent", "Display to agent: is invalid")
        voice = raw.get("voice_comment")
        if voice is not None and not isinstance(voice, Mapping):
            raise RecordInvalidError.one("voice_comment", "Voice comment: is invalid")
        via_id = raw.get("via_id")
        if not isinstance(via_id, int):
            raise RecordInvalidError.one(
                "via_id", "Via: must be 44 (voicemail), 45 (inbound) or 46 (outbound)"
            )
        arguments = _ticket_arguments(raw, require_comment=voice is None)
        ticket = self.model.create_voice_ticket(
            via_id=via_id, voice_comment=voice, display_to_agent=agent, **arguments
        )
        location = f"{request.base_url}/api/v2/tickets/{ticket.id}.json"
        return ApiAnswer.json(
            201, {"ticket": self.ticket_json(ticket, request.base_url)}, {"Location": location}
        )

    def _calls_create(self, request: ApiRequest, match: re.Match[str]) -> ApiAnswer:
        body = _object_body(request)
        call_fields = _member(body, "call")
        comment = body.get("comment")
        if comment is not None and not isinstance(comment, Mapping):
            raise RecordInvalidError.one("comment", "Comment: is invalid")
        call, _ = self.model.create_call(call_fields, comment=comment)
        return ApiAnswer.json(201, {"call": self.call_json(call.id)})

    def _calls_show(self, request: ApiRequest, match: re.Match[str]) -> ApiAnswer:
        if self.model.call(int(match["id"])) is None:
            return not_found()
        return ApiAnswer.json(200, {"call": self.call_json(int(match["id"]))})

    def _calls_update(self, request: ApiRequest, match: re.Match[str]) -> ApiAnswer:
        call_id = int(match["id"])
        if self.model.call(call_id) is None:
            return not_found()
        self.model.update_call(call_id, _member(_object_body(request), "call"))
        return ApiAnswer.json(200, {"call": self.call_json(call_id)})

    def _calls_comment(self, request: ApiRequest, match: re.Match[str]) -> ApiAnswer:
        call_id = int(match["id"])
        if self.model.call(call_id) is None:
            return not_found()
        body = _object_body(request)
        # zenpy posts the comment itself; accept the wrapped form too.
        wrapped = body.get("comment")
        comment = wrapped if isinstance(wrapped, Mapping) and "title" not in body else body
        added = self.model.add_call_comment(call_id, comment)
        return ApiAnswer.json(201, self.comment_json(added))

    # ------------------------------------------------------------------ shapes

    def _render(self, record: User | Ticket, base_url: str) -> dict[str, Any]:
        if isinstance(record, User):
            return self.user_json(record, base_url)
        return self.ticket_json(record, base_url)

    def user_json(self, user: User, base_url: str) -> dict[str, Any]:
        """A user as Zendesk renders it."""
        end_user = user.role == "end-user"
        return {
            "id": user.id,
            "url": f"{base_url}/api/v2/users/{user.id}.json",
            "name": user.name,
            "email": user.email,
            "created_at": iso_utc(user.created_at),
            "updated_at": iso_utc(user.updated_at),
            "time_zone": "Eastern Time (US & Canada)",
            "iana_time_zone": "America/New_York",
            "phone": user.phone,
            "shared_phone_number": self.model.shares_phone(user) if user.phone else None,
            "photo": None,
            "locale_id": 1,
            "locale": "en-US",
            "organization_id": None,
            "role": user.role,
            "verified": not end_user,
            "external_id": user.external_id,
            "tags": list(user.tags),
            "alias": "",
            "active": True,
            "shared": False,
            "shared_agent": False,
            "last_login_at": None,
            "two_factor_auth_enabled": None,
            "signature": None,
            "details": "",
            "notes": "",
            "role_type": None,
            "custom_role_id": None,
            "moderator": not end_user,
            "ticket_restriction": "requested" if end_user else None,
            "only_private_comments": False,
            "restricted_agent": end_user,
            "suspended": False,
            "default_group_id": None,
            "report_csv": False,
            "user_fields": {},
        }

    def ticket_json(self, ticket: Ticket, base_url: str) -> dict[str, Any]:
        """A ticket as Zendesk renders it."""
        comments = self.model.comments_of(ticket.id)
        return {
            "url": f"{base_url}/api/v2/tickets/{ticket.id}.json",
            "id": ticket.id,
            "external_id": ticket.external_id,
            "via": via_json(ticket.via),
            "created_at": iso_utc(ticket.created_at),
            "updated_at": iso_utc(ticket.updated_at),
            "type": ticket.type,
            "subject": ticket.subject,
            "raw_subject": ticket.subject,
            "description": ticket.description,
            "priority": ticket.priority,
            "status": ticket.status,
            "recipient": None,
            "requester_id": ticket.requester_id,
            "submitter_id": ticket.submitter_id,
            "assignee_id": ticket.assignee_id,
            "organization_id": None,
            "group_id": None,
            "collaborator_ids": [],
            "follower_ids": [],
            "email_cc_ids": [],
            "forum_topic_id": None,
            "problem_id": None,
            "has_incidents": False,
            "is_public": any(comment.public for comment in comments),
            "due_at": None,
            "tags": list(ticket.tags),
            "custom_fields": [],
            "satisfaction_rating": None,
            "sharing_agreement_ids": [],
            "fields": [],
            "followup_ids": [],
            "brand_id": None,
            "allow_channelback": False,
            "allow_attachments": True,
        }

    def comment_json(self, comment: Comment) -> dict[str, Any]:
        """A comment as Zendesk renders it (voice comments with their ``data``)."""
        document: dict[str, Any] = {
            "id": comment.id,
            "type": comment.type,
            "author_id": comment.author_id,
            "body": comment.body,
            "html_body": comment.html_body,
            "plain_body": comment.body,
            "public": comment.public,
            "attachments": [],
            "audit_id": comment.audit_id,
            "via": via_json(comment.via),
            "created_at": iso_utc(comment.created_at),
            "metadata": {"system": {}, "custom": {}},
        }
        if comment.type in ("VoiceComment", "TpeVoiceComment"):
            document["data"] = dict(comment.data)
            document["formatted_from"] = comment.via.source_from.get("phone") or "Unknown"
            document["formatted_to"] = comment.via.source_to.get("phone") or "Unknown"
            document["transcription_visible"] = False
        if comment.type == "TpeVoiceComment":
            document["trusted"] = True
            document["title"] = comment.title
        return document

    def audit_json(
        self, ticket: Ticket, comment: Comment | None, *, created: bool = True
    ) -> dict[str, Any]:
        """The audit Zendesk returns with a created or updated ticket."""
        events: list[dict[str, Any]] = []
        if comment is not None:
            event = self.comment_json(comment)
            event.pop("via", None)
            event.pop("created_at", None)
            event.pop("metadata", None)
            events.append(event)
        if created:
            for field in ("subject", "requester_id", "status", "priority", "type", "assignee_id"):
                value = getattr(ticket, field)
                events.append(
                    {
                        "id": self.model.new_event_id(),
                        "type": "Create",
                        "value": None if value is None else str(value),
                        "field_name": field,
                    }
                )
        return {
            "id": comment.audit_id if comment is not None else self.model.new_event_id(),
            "ticket_id": ticket.id,
            "created_at": iso_utc(ticket.updated_at),
            "author_id": comment.author_id if comment is not None else ticket.submitter_id,
            "via": via_json(ticket.via if created else Via()),
            "metadata": {"system": {"client": "crmphone-emulator"}, "custom": {}},
            "events": events,
        }

    def call_json(self, call_id: int) -> dict[str, Any]:
        """A call record as Zendesk renders it (every property, nulls included)."""
        call = self.model.calls[call_id]
        return {name: call.fields.get(name) for name in CALL_FIELDS}


# ---------------------------------------------------------------------- helpers

_REASONS = {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}
_REASONS[504] = "Gateway Timeout"


def via_json(via: Via) -> dict[str, Any]:
    """A ``via`` member: channel and source."""
    return {
        "channel": via.channel,
        "source": {"from": dict(via.source_from), "to": dict(via.source_to), "rel": via.rel},
    }


def _listing(request: ApiRequest, name: str, items: list[dict[str, Any]]) -> ApiAnswer:
    """A collection in the pagination style the client asked for; everything fits on one page
    (the emulator holds few records)."""
    if any(parameter.startswith("page[") for parameter in request.query):
        # Cursor pagination, which zenpy asks for on tickets and comments.
        return ApiAnswer.json(
            200,
            {
                name: items,
                "meta": {"has_more": False, "after_cursor": None, "before_cursor": None},
                "links": {"prev": None, "next": None},
            },
        )
    return ApiAnswer.json(
        200, {name: items, "next_page": None, "previous_page": None, "count": len(items)}
    )


def _too_many(retry_after: int, rate_headers: Mapping[str, str]) -> ApiAnswer:
    # The body of Zendesk's 429 is not documented; plain text here (unconfirmed).
    headers = {**rate_headers, "X-Rate-Limit-Remaining": "0", "Retry-After": str(retry_after)}
    return ApiAnswer.text(429, "Too Many Requests", headers)


def _route(method: str, path: str) -> tuple[str, re.Match[str] | None]:
    if path in ("", "/"):
        return "root", None
    for route_method, pattern, kind in _COMPILED:
        match = pattern.fullmatch(path)
        if match is not None and route_method == method.upper():
            return kind, match
    return "unknown", None


def _kind(record: User | Ticket) -> str:
    return "user" if isinstance(record, User) else "ticket"


def _fingerprint(route: str, body: bytes) -> str:
    try:
        canonical = json.dumps(json.loads(body or b"null"), sort_keys=True, separators=(",", ":"))
        material = canonical.encode("utf-8")
    except ValueError:
        material = body
    return hashlib.sha256(route.encode("ascii") + b"\0" + material).hexdigest()


def _object_body(request: ApiRequest) -> dict[str, Any]:
    try:
        document = json.loads(request.body or b"{}")
    except ValueError as error:
        raise _BadRequest(
            bad_request("InvalidJSON", "The request body is not valid JSON")
        ) from error
    if not isinstance(document, dict):
        raise _BadRequest(bad_request("InvalidJSON", "The request body must be a JSON object"))
    return document


def _member(body: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = body.get(name)
    if not isinstance(value, Mapping):
        raise _BadRequest(
            bad_request("ParameterMissing", f"param is missing or the value is empty: {name}")
        )
    return value


def _optional(raw: Mapping[str, Any], name: str, kind: type[Any]) -> Any:
    value = raw.get(name)
    if value is None:
        return None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        label = name.replace("_", " ").capitalize()
        raise RecordInvalidError.one(name, f"{label}: {value!r} is invalid")
    return value


def _string_list(raw: Mapping[str, Any], name: str) -> list[str]:
    value = raw.get(name)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise RecordInvalidError.one(name, f"{name.capitalize()}: must be a list of text")
    return list(value)


def _ticket_arguments(raw: Mapping[str, Any], *, require_comment: bool = True) -> dict[str, Any]:
    """``create_ticket`` arguments from a JSON ticket, types checked (RecordInvalidError)."""
    comment = raw.get("comment")
    if comment is not None and not isinstance(comment, Mapping):
        raise RecordInvalidError.one("comment", "Comment: is invalid")
    comment = comment or {}
    body = _optional(comment, "body", str)
    if body is None and comment.get("html_body") is None:
        body = _optional(raw, "description", str)
    if body is None and comment.get("html_body") is None and not require_comment:
        body = ""
    public = comment.get("public", True)
    if not isinstance(public, bool):
        raise RecordInvalidError.one("public", "Public: must be true or false")
    return {
        "body": body,
        "html_body": _optional(comment, "html_body", str),
        "public": public,
        "author_id": _optional(comment, "author_id", int),
        "subject": _optional(raw, "subject", str),
        "requester_id": _optional(raw, "requester_id", int),
        "assignee_id": _optional(raw, "assignee_id", int),
        "external_id": _optional(raw, "external_id", str),
        "tags": _string_list(raw, "tags"),
        "priority": _optional(raw, "priority", str),
        "ticket_type": _optional(raw, "type", str),
        "status": _optional(raw, "status", str),
    }
