"""Unmodified zenpy 2.0.57 against the Zendesk emulator over real HTTPS on loopback.

zenpy is synchronous, so every call runs in a worker thread while the emulator serves on the
test's event loop. The conftest's client has a 1-second ``ratelimit_budget``: a 429 must raise
``RatelimitBudgetExceeded`` at once, never sleep.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
import requests
from requests.adapters import HTTPAdapter
from zenpy import Zenpy
from zenpy.lib.api_objects import Comment, Ticket, User
from zenpy.lib.api_objects.talk_objects import CallPe, VoiceComment
from zenpy.lib.exception import APIException, RatelimitBudgetExceeded, RecordNotFoundException

from crmphone_zendesk.emulator import (
    HTML_NAME,
    NO_MATCH_NUMBER,
    ZendeskEmulator,
)

T = TypeVar("T")


async def run(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a blocking zenpy call off the event loop the emulator serves on."""
    return await asyncio.to_thread(function, *args, **kwargs)


async def run_list(function: Callable[..., Any], *args: Any, **kwargs: Any) -> list[Any]:
    """Run a zenpy call that returns a result generator and drain it off the loop."""
    return await asyncio.to_thread(lambda: list(function(*args, **kwargs)))


class IdempotencyKeys(HTTPAdapter):
    """A test-local adapter: puts the current thread's key on POSTs as ``Idempotency-Key`` and
    keeps every ``x-idempotency-lookup`` answer header."""

    def __init__(self) -> None:
        super().__init__()
        self._local = threading.local()
        self.lookups: list[str | None] = []

    def use(self, key: str | None) -> None:
        """Send ``key`` with this thread's next POSTs (None: none)."""
        self._local.key = key

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        """Add the header, send, and record the lookup header of the answer."""
        key = getattr(self._local, "key", None)
        if key and request.method == "POST":
            request.headers["Idempotency-Key"] = key
        response = super().send(request, **kwargs)
        self.lookups.append(response.headers.get("x-idempotency-lookup"))
        return response


# ---------------------------------------------------------------------- search and users


async def test_search_finds_caller_by_phone_suffix(
    zendesk_zenpy: Zenpy, zendesk_emulator: ZendeskEmulator
) -> None:
    """zenpy.search with the wildcard phone form finds the one customer, as a User."""
    found = await run_list(zendesk_zenpy.search, "type:user role:end-user phone:*5550100001")
    assert [user.id for user in found] == [zendesk_emulator.model.customers[0].id]
    assert isinstance(found[0], User)
    assert found[0].phone == "(555) 010-0001"


async def test_search_keyword_form_and_many_and_none(zendesk_zenpy: Zenpy) -> None:
    """zenpy's keyword form works; the shared number gives two users, the free one none."""
    many = await run_list(zendesk_zenpy.search, type="user", role="end-user", phone="*5550100049")
    assert len(many) == 2
    assert all(user.shared_phone_number for user in many)
    none = await run_list(zendesk_zenpy.search, type="user", phone="*" + NO_MATCH_NUMBER[2:])
    assert none == []


async def test_search_exact_phone_is_format_sensitive(zendesk_zenpy: Zenpy) -> None:
    """phone:{digits} matches the stored digits exactly: with and without the country code."""
    with_country = await run_list(zendesk_zenpy.search, "phone:15550100004")
    assert [user.phone for user in with_country] == ["+15550100004"]
    assert await run_list(zendesk_zenpy.search, "phone:15550100001") == []
    national = await run_list(zendesk_zenpy.search, "phone:5550100001")
    assert [user.phone for user in national] == ["(555) 010-0001"]


async def test_users_search_endpoint(zendesk_zenpy: Zenpy) -> None:
    """zenpy.users.search(query=…) answers users; the HTML name comes back verbatim."""
    found = await run_list(zendesk_zenpy.users.search, query="phone:*5550100013")
    assert [user.name for user in found] == [HTML_NAME]


async def test_users_show_me_and_not_found(
    zendesk_zenpy: Zenpy, zendesk_emulator: ZendeskEmulator
) -> None:
    """users(id=…) and users.me() answer Users; an unknown id raises RecordNotFoundException."""
    agent = zendesk_emulator.model.agents[0]
    shown = await run(zendesk_zenpy.users, id=agent.id)
    assert (shown.id, shown.role, shown.name) == (agent.id, "agent", agent.name)
    me = await run(zendesk_zenpy.users.me)
    assert me.email == zendesk_emulator.email
    assert me.role == "admin"
    with pytest.raises(RecordNotFoundException):
        await run(zendesk_zenpy.users, id=1)


async def test_create_user_then_search_sees_it_after_the_lag() -> None:
    """A user created through the API is invisible to search until search_lag has passed."""
    now = [1000.0]
    async with ZendeskEmulator(search_lag=30.0, clock=lambda: now[0]) as emulator:
        session = _session(emulator)
        zenpy = _client(emulator, session)
        created = await run(
            zenpy.users.create, User(name="New Caller", phone="+15557654321", role="end-user")
        )
        assert created.id in emulator.model.users
        assert (created.name, created.phone, created.role) == (
            "New Caller",
            "+15557654321",
            "end-user",
        )
        assert await run_list(zenpy.search, "type:user phone:*5557654321") == []
        now[0] += 30.0
        found = await run_list(zenpy.search, "type:user phone:*5557654321")
        assert [user.id for user in found] == [created.id]
        session.close()


async def test_create_invalid_user_raises_api_exception(zendesk_zenpy: Zenpy) -> None:
    """A blank name answers 422 RecordInvalid, which zenpy raises as APIException."""
    with pytest.raises(APIException) as caught:
        await run(zendesk_zenpy.users.create, User(name=" ", role="end-user"))
    assert caught.value.response.status_code == 422
    body = caught.value.response.json()
    assert body["error"] == "RecordInvalid"
    assert body["description"] == "Record validation errors"
    assert body["details"]["name"][0]["error"] == "BlankValue"


# ---------------------------------------------------------------------- tickets


async def test_ticket_create_show_update_list_and_comments(
    zendesk_zenpy: Zenpy, zendesk_emulator: ZendeskEmulator
) -> None:
    """tickets.create → TicketAudit; tickets(id), update, tickets(external_id), comments work."""
    model = zendesk_emulator.model
    caller, agent = model.customers[0], model.agents[1]
    audit = await run(
        zendesk_zenpy.tickets.create,
        Ticket(
            subject="Call from (555) 010-0001",
            comment=Comment(body="Inbound call, 42 s", public=False),
            requester_id=caller.id,
            assignee_id=agent.id,
            external_id="conv-1",
            tags=["crmphone", "inbound"],
        ),
    )
    ticket_id = audit.ticket.id
    stored = model.tickets[ticket_id]
    assert (stored.requester_id, stored.assignee_id, stored.external_id) == (
        caller.id,
        agent.id,
        "conv-1",
    )
    assert stored.status == "open"
    assert stored.tags == ("crmphone", "inbound")
    assert [c.public for c in model.comments_of(ticket_id)] == [False]
    shown = await run(zendesk_zenpy.tickets, id=ticket_id)
    assert shown.subject == "Call from (555) 010-0001"
    assert shown.description == "Inbound call, 42 s"
    shown.status = "solved"
    shown.comment = Comment(body="Wrap-up: resolved", public=False)
    await run(zendesk_zenpy.tickets.update, shown)
    assert model.tickets[ticket_id].status == "solved"
    by_external = await run_list(zendesk_zenpy.tickets, external_id="conv-1")
    assert [ticket.id for ticket in by_external] == [ticket_id]
    assert await run_list(zendesk_zenpy.tickets, external_id="none") == []
    comments = await run_list(zendesk_zenpy.tickets.comments, ticket_id)
    assert [c.body for c in comments] == ["Inbound call, 42 s", "Wrap-up: resolved"]


async def test_ticket_errors(zendesk_zenpy: Zenpy) -> None:
    """An unknown ticket raises RecordNotFoundException; a ticket without comment 422."""
    with pytest.raises(RecordNotFoundException):
        await run(zendesk_zenpy.tickets, id=999_999)
    with pytest.raises(APIException) as caught:
        await run(zendesk_zenpy.tickets.create, Ticket(subject="no comment"))
    assert caught.value.response.status_code == 422
    assert caught.value.response.json()["details"]["base"][0]["error"] == "BlankValue"


async def test_idempotency_key_through_zenpy(
    zendesk_emulator: ZendeskEmulator, zendesk_session: requests.Session
) -> None:
    """With a key added by a mounted adapter, a retried creation returns the same ticket."""
    keys = IdempotencyKeys()
    zendesk_session.mount("https://", keys)
    zenpy = _client(zendesk_emulator, zendesk_session)
    model = zendesk_emulator.model

    def create(subject: str) -> Any:
        keys.use("conv-7:ticket")
        try:
            return zenpy.tickets.create(Ticket(subject=subject, comment=Comment(body="call")))
        finally:
            keys.use(None)

    first = await run(create, "Call")
    again = await run(create, "Call")
    assert first.ticket.id == again.ticket.id
    assert len(model.tickets) == 1
    assert keys.lookups == ["miss", "hit"]
    with pytest.raises(APIException) as caught:
        await run(create, "Another call")
    assert caught.value.response.status_code == 400
    assert caught.value.response.json()["error"] == "IdempotentRequestError"
    assert len(model.tickets) == 1


# ---------------------------------------------------------------------- Talk Partner Edition


async def test_display_user_and_ticket(
    zendesk_zenpy: Zenpy, zendesk_emulator: ZendeskEmulator
) -> None:
    """talk_pe.display_user/display_ticket answer 200 and are recorded with monotonic times."""
    model = zendesk_emulator.model
    agent, caller = model.agents[0], model.customers[4]
    before = time.monotonic()
    response = await run(zendesk_zenpy.talk_pe.display_user, agent.id, caller.id)
    assert response.status_code == 200
    audit = await run(zendesk_zenpy.tickets.create, Ticket(subject="s", comment=Comment(body="b")))
    response = await run(zendesk_zenpy.talk_pe.display_ticket, agent.id, audit.ticket.id)
    assert response.status_code == 200
    assert [(d.kind, d.agent_id, d.target_id, d.shown) for d in model.displays] == [
        ("user", agent.id, caller.id, True),
        ("ticket", agent.id, audit.ticket.id, True),
    ]
    assert before <= model.displays[0].at <= model.displays[1].at <= time.monotonic()


async def test_display_unknown_agent_or_user_is_record_not_found(
    zendesk_zenpy: Zenpy, zendesk_emulator: ZendeskEmulator
) -> None:
    """An unknown agent, an end-user as agent, or an unknown user raise RecordNotFoundException."""
    model = zendesk_emulator.model
    agent, caller = model.agents[0], model.customers[0]
    for agent_id, user_id in ((1, caller.id), (caller.id, caller.id), (agent.id, 2)):
        with pytest.raises(RecordNotFoundException):
            await run(zendesk_zenpy.talk_pe.display_user, agent_id, user_id)
    assert [d.shown for d in model.displays] == [False, False, False]


async def test_voice_ticket_with_voice_comment(
    zendesk_zenpy: Zenpy, zendesk_emulator: ZendeskEmulator
) -> None:
    """talk_pe.create_ticket makes a via-45 ticket with a private VoiceComment and pops it."""
    model = zendesk_emulator.model
    agent, caller = model.agents[2], model.customers[1]
    ticket = await run(
        zendesk_zenpy.talk_pe.create_ticket,
        agent.id,
        Ticket(
            subject="Inbound call",
            requester_id=caller.id,
            via_id=45,
            voice_comment={
                "from": "+15550100002",
                "to": "+15550000000",
                "recording_url": "https://recordings.example/1.mp3",
                "started_at": "2026-01-05T10:00:00Z",
                "call_duration": 42,
                "answered_by_id": agent.id,
                "location": "Springfield",
                "transcription_text": "Hello",
            },
        ),
    )
    assert isinstance(ticket, Ticket)
    assert ticket.via.channel == "voice"
    comment = model.comments_of(ticket.id)[0]
    assert (comment.type, comment.public) == ("VoiceComment", False)
    assert comment.data["call_duration"] == 42
    assert comment.data["answered_by_name"] == agent.name
    assert "https://recordings.example/1.mp3" in comment.body
    assert model.displays[-1].target_id == ticket.id
    with pytest.raises(APIException) as caught:
        await run(
            zendesk_zenpy.talk_pe.create_ticket,
            agent.id,
            Ticket(subject="x", via_id=12, comment=Comment(body="b")),
        )
    assert caught.value.response.status_code == 422


async def test_call_record_create_update_get_and_comment(
    zendesk_zenpy: Zenpy, zendesk_emulator: ZendeskEmulator
) -> None:
    """calls.create (with a comment: ticket made), update, get and comment as zenpy sends them."""
    model = zendesk_emulator.model
    agent, caller = model.agents[0], model.customers[2]
    call = await run(
        zendesk_zenpy.calls.create,
        CallPe(
            app_id=1003048,
            from_line="+15550100003",
            to_line="+15550000000",
            call_started_at="2026-01-05T11:31:40+01",
            direction="inbound",
            end_user_id=caller.id,
            agent_id=agent.id,
            external_id="conv-9",
        ),
        comment=VoiceComment(
            title="Inbound call", call_fields=["from_line", "direction"], display_to_agent=agent.id
        ),
    )
    assert isinstance(call, CallPe)
    assert call.call_started_at == "2026-01-05T10:31:40Z"
    ticket = model.tickets[call.ticket_id]
    assert ticket.requester_id == caller.id
    assert (ticket.via.channel, ticket.via.via_id) == ("voice", 45)
    assert model.displays[-1].target_id == ticket.id
    call.duration = 42
    call.call_ended_at = "2026-01-05T10:32:22Z"
    call.call_disposition = "resolved"
    call.wrap_up_time = 15
    call.hold_time = 3
    await run(zendesk_zenpy.calls.update, call)
    stored = model.calls[call.id]
    assert (stored["duration"], stored["call_disposition"], stored["wrap_up_time"]) == (
        42,
        "resolved",
        15,
    )
    fetched = await run(zendesk_zenpy.calls, id=call.id)
    assert fetched.duration == 42
    answer = await run(
        zendesk_zenpy.calls.comment, call, VoiceComment(title="Wrap-up", call_fields=["duration"])
    )
    assert answer["type"] == "TpeVoiceComment"
    assert answer["data"]["call_id"] == call.id
    assert [c.type for c in model.comments_of(ticket.id)] == ["TpeVoiceComment"] * 2
    with pytest.raises(RecordNotFoundException):
        await run(zendesk_zenpy.calls, id=1)


async def test_invalid_call_is_record_invalid(zendesk_zenpy: Zenpy) -> None:
    """A call without its mandatory fields answers 422 naming each of them."""
    with pytest.raises(APIException) as caught:
        await run(zendesk_zenpy.calls.create, CallPe(app_id=1, direction="sideways"))
    details = caught.value.response.json()["details"]
    assert set(details) == {"from_line", "to_line", "call_started_at"}


# ---------------------------------------------------------------------- rate limits and faults


async def test_rate_limit_fault_raises_budget_exceeded_without_sleeping(
    zendesk_zenpy: Zenpy, zendesk_emulator: ZendeskEmulator
) -> None:
    """A 429 with Retry-After: 30 makes zenpy raise RatelimitBudgetExceeded at once."""
    zendesk_emulator.model.faults.rate_limited(burst=1, retry_after=30)
    started = time.monotonic()
    with pytest.raises(RatelimitBudgetExceeded):
        await run(zendesk_zenpy.users.me)
    assert time.monotonic() - started < 0.9
    assert zendesk_emulator.model.stats.log[-1].status == 429


async def test_per_minute_budget_answers_429() -> None:
    """Beyond rate_limit requests in a minute: 429 and RatelimitBudgetExceeded, not a sleep."""
    async with ZendeskEmulator(rate_limit=2) as emulator:
        session = _session(emulator)
        zenpy = _client(emulator, session)
        await run(zenpy.users.me)
        await run(zenpy.users.me)
        started = time.monotonic()
        with pytest.raises(RatelimitBudgetExceeded):
            await run(zenpy.users.me)
        assert time.monotonic() - started < 0.9
        session.close()


async def test_expired_credentials_and_wrong_token_raise_api_exception(
    zendesk_zenpy: Zenpy, zendesk_emulator: ZendeskEmulator
) -> None:
    """Injected expiry, revoked credentials and a wrong token all answer 401 JSON."""
    zendesk_emulator.model.faults.expired_credentials()
    with pytest.raises(APIException) as caught:
        await run(zendesk_zenpy.users.me)
    assert caught.value.response.status_code == 401
    assert caught.value.response.json() == {"error": "Couldn't authenticate you"}
    await run(zendesk_zenpy.users.me)  # the fault was consumed
    zendesk_emulator.model.revoke_credentials()
    with pytest.raises(APIException):
        await run(zendesk_zenpy.users.me)
    zendesk_emulator.model.restore_credentials()
    with _session(zendesk_emulator) as session:
        wrong = Zenpy(
            subdomain=zendesk_emulator.subdomain,
            domain=zendesk_emulator.domain,
            email=zendesk_emulator.email,
            token=zendesk_emulator.api_token + "-wrong",
            session=session,
        )
        with pytest.raises(APIException) as caught:
            await run(wrong.users.me)
    assert caught.value.response.status_code == 401


async def test_oauth_bearer_token_authenticates(zendesk_emulator: ZendeskEmulator) -> None:
    """zenpy with oauth_token sends Authorization: Bearer, which the emulator accepts."""
    with _session(zendesk_emulator) as session:
        zenpy = Zenpy(
            subdomain=zendesk_emulator.subdomain,
            domain=zendesk_emulator.domain,
            oauth_token=zendesk_emulator.oauth_token,
            session=session,
        )
        me = await run(zenpy.users.me)
    assert me.id == zendesk_emulator.model.admin.id


async def test_unavailable_plain_text_raises_http_error(
    zendesk_zenpy: Zenpy, zendesk_emulator: ZendeskEmulator
) -> None:
    """A proxy's 503 text/plain surfaces from zenpy as requests.HTTPError (no JSON to read)."""
    zendesk_emulator.model.faults.unavailable(route="search")
    with pytest.raises(requests.HTTPError) as caught:
        await run_list(zendesk_zenpy.search, "phone:*5550100001")
    assert caught.value.response is not None
    assert caught.value.response.status_code == 503
    assert caught.value.response.text == "Service Unavailable"
    assert await run_list(zendesk_zenpy.search, "phone:*5550100001")


async def test_slow_fault_delays_the_answer(
    zendesk_zenpy: Zenpy, zendesk_emulator: ZendeskEmulator
) -> None:
    """A slow fault delays one answer by its delay; the next answer is prompt."""
    zendesk_emulator.model.faults.slow(0.3, route="users")
    started = time.monotonic()
    await run(zendesk_zenpy.users.me)
    slow = time.monotonic() - started
    started = time.monotonic()
    await run(zendesk_zenpy.users.me)
    assert slow >= 0.3 > time.monotonic() - started


# ---------------------------------------------------------------------- helpers


def _session(emulator: ZendeskEmulator) -> requests.Session:
    session = requests.Session()
    session.verify = str(emulator.ca_file)
    session.trust_env = False
    return session


def _client(emulator: ZendeskEmulator, session: requests.Session) -> Zenpy:
    return Zenpy(
        subdomain=emulator.subdomain,
        domain=emulator.domain,
        email=emulator.email,
        token=emulator.api_token,
        session=session,
        ratelimit_budget=1,
        disable_cache=True,
    )
