"""The Zendesk emulator's sans-I/O core: seeded data, search, validation, credentials, rate
limit, idempotency, faults and the API's answers, driven without sockets and with a manual clock.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from crmphone_zendesk.emulator import (
    HTML_NAME,
    HTML_NAME_NUMBER,
    NO_MATCH_NUMBER,
    ONE_MATCH_NUMBER,
    SHARED_NUMBER,
    ApiAnswer,
    ApiRequest,
    FaultKind,
    RecordInvalidError,
    ZendeskApi,
    ZendeskModel,
)
from crmphone_zendesk.emulator.model import IdempotencyStore, RateLimiter
from crmphone_zendesk.emulator.search import SearchTerm, matches, parse_query

TOKEN = "api-token-for-tests"
OAUTH = "oauth-for-tests"


class Clock:
    """A monotonic clock that moves only when told to."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make(clock: Clock | None = None, **options: Any) -> tuple[ZendeskModel, ZendeskApi]:
    """A model with a known API token and its API."""
    model = ZendeskModel(seed=0, api_token=TOKEN, clock=clock or Clock(), **options)
    return model, ZendeskApi(model)


def basic(model: ZendeskModel, token: str = TOKEN) -> str:
    """The HTTP Basic header for ``{email}/token:{token}``."""
    raw = f"{model.credentials.email}/token:{token}".encode()
    return "Basic " + base64.b64encode(raw).decode()


def call(
    api: ZendeskApi,
    method: str,
    path: str,
    body: Any = None,
    *,
    query: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    auth: bool = True,
) -> ApiAnswer:
    """One request through the API, authenticated unless ``auth`` is false."""
    sent = {"authorization": basic(api.model)} if auth else {}
    sent.update(headers or {})
    payload = b"" if body is None else json.dumps(body).encode()
    return api.handle(ApiRequest(method, path, query or {}, sent, payload))


def ticket_body(subject: str = "Call", **extra: Any) -> dict[str, Any]:
    """A minimal valid ``POST /tickets`` body."""
    return {"ticket": {"subject": subject, "comment": {"body": "call notes"}, **extra}}


# ---------------------------------------------------------------------- seeded data


def test_seeded_data_is_deterministic_from_the_seed() -> None:
    """The same seed gives the same ids, names and phones; another seed other ids."""
    first, second, other = ZendeskModel(seed=0), ZendeskModel(seed=0), ZendeskModel(seed=1)

    def shape(model: ZendeskModel) -> list[tuple[int, str, str | None]]:
        return [(u.id, u.name, u.phone) for u in model.users.values()]

    assert shape(first) == shape(second)
    assert [u.id for u in first.users.values()] != [u.id for u in other.users.values()]
    assert all(user.id > 10**12 for user in first.users.values())


def test_seeded_agents_customers_and_phone_formats() -> None:
    """Four agents and an admin; 50 customers in rotating formats; one/many/none cases."""
    model = ZendeskModel()
    assert len(model.agents) == 4
    assert {agent.role for agent in model.agents} == {"agent"}
    assert model.admin.role == "admin"
    assert model.admin.email == model.credentials.email
    assert len(model.customers) == 50
    assert [c.phone for c in model.customers[:4]] == [
        "(555) 010-0001",
        "+1 555 010 0002",
        "555.010.0003",
        "+15550100004",
    ]
    assert [u.id for u in model.users_with_phone(ONE_MATCH_NUMBER)] == [model.customers[0].id]
    shared = model.users_with_phone(SHARED_NUMBER)
    assert [u.id for u in shared] == [model.customers[48].id, model.customers[49].id]
    assert shared[0].phone != shared[1].phone
    assert all(model.shares_phone(user) for user in shared)
    assert not model.shares_phone(model.customers[0])
    assert model.users_with_phone(NO_MATCH_NUMBER) == []
    assert [u.name for u in model.users_with_phone(HTML_NAME_NUMBER)] == [HTML_NAME]


# ---------------------------------------------------------------------- search


def test_parse_query_handles_fields_quotes_and_negation() -> None:
    """Fields are lower-cased, quoted values keep spaces, a leading minus negates."""
    assert parse_query('type:user Name:"Ann Lee" -role:agent hello') == (
        SearchTerm("type", "user"),
        SearchTerm("name", "Ann Lee"),
        SearchTerm("role", "agent", negated=True),
        SearchTerm(None, "hello"),
    )
    assert parse_query('name:"unbalanced') == (SearchTerm("name", '"unbalanced'),)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("phone:*5550100001", True),
        ("phone:*0100001", True),
        ("phone:5550100001", True),
        ("phone:15550100001", False),
        ("phone:*9990100001", False),
        ("phone:555*", True),
        ("phone:*", False),
        ("role:end-user phone:*0001", True),
        ("role:agent phone:*0001", False),
        ("-role:agent", True),
        ("name:ann*", True),
        ("name:ANN", True),
        ("ann", True),
        ("nonsense:1", False),
        ("", False),
    ],
)
def test_matches(query: str, expected: bool) -> None:
    """Digits-only phone comparison with wildcards; fields case-insensitive; free text."""
    fields = {"type": "user", "name": "Ann", "phone": "(555) 010-0001", "role": "end-user"}
    assert matches(parse_query(query), fields) is expected


def test_search_restricts_type_and_respects_the_lag() -> None:
    """type: picks the record kind; users added unindexed appear only after search_lag."""
    clock = Clock()
    model, _ = make(clock, search_lag=10.0)
    fresh = model.add_user("Fresh Caller", phone="+15559990000", indexed=False)
    assert model.search("phone:*5559990000") == []
    clock.now += 9.9
    assert model.search("phone:*5559990000") == []
    clock.now += 0.1
    assert model.search("type:user phone:*5559990000") == [fresh]
    assert model.search("type:ticket phone:*5559990000") == []
    model.faults.search_lag(0)
    assert model.search_lag == 0
    assert model.search("role:agent") == list(model.agents)


# ---------------------------------------------------------------------- validation


def test_add_user_validates_like_zendesk() -> None:
    """Blank names, bad phones, bad roles and duplicate emails are RecordInvalidError."""
    model = ZendeskModel()
    with pytest.raises(RecordInvalidError) as caught:
        model.add_user(" ", phone="12", email=model.admin.email)
    assert set(caught.value.details) == {"name", "phone", "email"}
    assert caught.value.details["email"][0]["error"] == "DuplicateValue"
    with pytest.raises(RecordInvalidError):
        model.add_user("X", role="owner")  # type: ignore[arg-type]
    user = model.add_user("Caller", phone="+1 555 765 4321", tags=["VIP", "vip"])
    assert model.users[user.id] is user
    assert model.users_with_phone("+15557654321") == [user]


def test_create_ticket_validates_references() -> None:
    """Unknown requesters, non-agent assignees and blank descriptions are refused."""
    model = ZendeskModel()
    with pytest.raises(RecordInvalidError) as caught:
        model.create_ticket(body=" ", requester_id=1, assignee_id=model.customers[0].id)
    assert set(caught.value.details) == {"base", "requester", "assignee"}
    ticket, comment = model.create_ticket(body="notes", tags=["A b", "a"])
    assert (ticket.requester_id, ticket.status, ticket.tags) == (model.admin.id, "new", ("a", "b"))
    assert comment.ticket_id == ticket.id


# ---------------------------------------------------------------------- credentials


def test_authenticate_accepts_exactly_the_configured_credentials() -> None:
    """Basic {email}/token:{token} (email case-insensitive) and Bearer; nothing else."""
    model = ZendeskModel(api_token=TOKEN, oauth_token=OAUTH)
    assert model.authenticate(basic(model)) is model.admin
    upper = f"{model.credentials.email.upper()}/token:{TOKEN}".encode()
    assert model.authenticate("Basic " + base64.b64encode(upper).decode()) is model.admin
    assert model.authenticate(f"Bearer {OAUTH}") is model.admin
    assert model.authenticate(basic(model, "wrong")) is None
    plain = f"{model.credentials.email}:{TOKEN}".encode()
    assert model.authenticate("Basic " + base64.b64encode(plain).decode()) is None
    assert model.authenticate("Basic !!!") is None
    assert model.authenticate("Bearer wrong") is None
    assert model.authenticate(None) is None
    model.revoke_credentials()
    assert model.authenticate(basic(model)) is None
    model.restore_credentials()
    assert model.authenticate(basic(model)) is model.admin


def test_credentials_never_appear_in_reprs() -> None:
    """Neither token shows in the repr of the credentials or the model's objects."""
    model = ZendeskModel(api_token=TOKEN, oauth_token=OAUTH)
    for text in (repr(model.credentials), repr(model), repr(model.admin)):
        assert TOKEN not in text
        assert OAUTH not in text


def test_generated_credentials_differ_between_models() -> None:
    """Tokens not given are random, whatever the seed."""
    assert ZendeskModel(seed=0).credentials.api_token != ZendeskModel(seed=0).credentials.api_token


# ---------------------------------------------------------------------- rate limit, idempotency


def test_rate_limiter_window() -> None:
    """The budget runs out within a minute; Retry-After counts to the window's end."""
    limiter = RateLimiter(2)
    assert limiter.admit(100.0) == (True, 1)
    assert limiter.admit(100.5) == (True, 0)
    assert limiter.admit(110.2) == (False, 50)
    assert limiter.remaining(159.0) == 0
    assert limiter.admit(160.0) == (True, 1)


def test_idempotency_store_hit_mismatch_and_expiry() -> None:
    """Same key and fingerprint hit, another fingerprint mismatches, two hours expire it."""
    store: IdempotencyStore[str] = IdempotencyStore()
    assert store.lookup("k", "f", 0.0).outcome == "miss"
    store.store("k", "f", "answer", 0.0)
    assert store.lookup("k", "f", 7199.0).answer == "answer"
    assert store.lookup("k", "g", 7199.0).outcome == "mismatch"
    assert store.lookup("k", "f", 7200.0).outcome == "miss"
    assert len(store) == 0


# ---------------------------------------------------------------------- faults


def test_faults_are_consumed_in_order_and_scoped() -> None:
    """Each request takes the first pending fault for its route; scopes name route families."""
    model = ZendeskModel()
    model.faults.rate_limited(burst=2, retry_after=5, route="tickets")
    model.faults.unavailable(route="voice.display_user")
    model.faults.slow(0.5)
    assert model.faults.take("search", 1.0).kind is FaultKind.SLOW  # type: ignore[union-attr]
    assert model.faults.take("search", 1.0) is None
    assert model.faults.take("voice.display_ticket", 1.0) is None
    assert model.faults.take("voice.display_user", 1.0).status == 503  # type: ignore[union-attr]
    assert model.faults.take("tickets.create", 1.0).retry_after == 5  # type: ignore[union-attr]
    assert len(model.faults.pending) == 1
    model.faults.clear()
    assert model.faults.pending == ()
    assert [record.route for record in model.faults.consumed] == [
        "search",
        "voice.display_user",
        "tickets.create",
    ]


def test_fail_next_refuses_bad_parameters() -> None:
    """Unknown kinds, zero counts, a zero Retry-After and non-5xx statuses are ValueErrors."""
    faults = ZendeskModel().faults
    for kwargs in ({"kind": "boom"}, {"kind": "slow", "count": 0}, {"kind": "rate_limited", "retry_after": 0}, {"kind": "unavailable", "status": 404}):  # fmt: skip
        with pytest.raises(ValueError, match=r"."):
            faults.fail_next(**kwargs)
    with pytest.raises(ValueError, match="negative"):
        faults.search_lag(-1)


# ---------------------------------------------------------------------- the API's answers


def test_unknown_paths_root_and_unauthenticated_requests() -> None:
    """Unknown routes 404 InvalidEndpoint; / explains; no credentials 401 with rate headers."""
    model, api = make()
    answer = call(api, "GET", "/api/v2/nothing.json")
    assert (answer.status, answer.document()["error"]) == (404, "InvalidEndpoint")
    assert call(api, "DELETE", "/api/v2/tickets/1.json").status == 404
    assert b"/api/v2" in call(api, "GET", "/", auth=False).body
    answer = call(api, "GET", "/api/v2/users/me.json", auth=False)
    assert answer.status == 401
    assert answer.document() == {"error": "Couldn't authenticate you"}
    assert answer.headers["WWW-Authenticate"].startswith("Basic")
    assert answer.headers["X-Rate-Limit"] == "700"
    assert model.stats.requests["users.me"] == 1


def test_per_minute_budget_and_rate_headers() -> None:
    """Every answer carries X-Rate-Limit(-Remaining); past the budget 429 with Retry-After."""
    clock = Clock()
    _, api = make(clock, rate_limit=2)
    first = call(api, "GET", "/api/v2/users/me.json")
    assert (first.headers["X-Rate-Limit"], first.headers["X-Rate-Limit-Remaining"]) == ("2", "1")
    assert call(api, "GET", "/api/v2/users/me.json").headers["X-Rate-Limit-Remaining"] == "0"
    clock.now += 20
    limited = call(api, "GET", "/api/v2/users/me.json")
    assert limited.status == 429
    assert (limited.headers["Retry-After"], limited.headers["X-Rate-Limit-Remaining"]) == (
        "40",
        "0",
    )
    clock.now += 40
    assert call(api, "GET", "/api/v2/users/me.json").status == 200


def test_fault_answers() -> None:
    """rate_limited, unavailable, expired_credentials and slow put their shape on the wire."""
    model, api = make()
    model.faults.rate_limited(retry_after=7)
    model.faults.unavailable(status=502)
    model.faults.expired_credentials()
    model.faults.slow(0.25)
    limited = call(api, "GET", "/api/v2/users/me.json")
    assert (limited.status, limited.headers["Retry-After"]) == (429, "7")
    unavailable = call(api, "GET", "/api/v2/users/me.json")
    assert (unavailable.status, unavailable.body) == (502, b"Bad Gateway")
    assert unavailable.content_type.startswith("text/plain")
    assert "X-Rate-Limit" not in unavailable.headers
    assert call(api, "GET", "/api/v2/users/me.json").status == 401
    slow = call(api, "GET", "/api/v2/users/me.json")
    assert (slow.status, slow.delay) == (200, 0.25)
    assert [r.status for r in model.stats.log] == [429, 502, 401, 200]


def test_search_answer_shape() -> None:
    """Search answers results with result_type, count, next/previous page and facets."""
    _, api = make()
    answer = call(api, "GET", "/api/v2/search.json", query={"query": "type:user phone:*5550100049"})
    document = answer.document()
    assert set(document) == {"results", "count", "next_page", "previous_page", "facets"}
    assert document["count"] == 2
    assert {r["result_type"] for r in document["results"]} == {"user"}
    assert all(r["shared_phone_number"] for r in document["results"])
    count = call(api, "GET", "/api/v2/search/count.json", query={"query": "role:agent"})
    assert count.document() == {"count": 4}
    by_external = call(api, "GET", "/api/v2/users/search.json", query={"external_id": "none"})
    assert by_external.document()["users"] == []


def test_idempotency_over_the_api() -> None:
    """miss, then hit with the same ticket; another body 400; after two hours a new ticket."""
    clock = Clock()
    model, api = make(clock)
    key = {"idempotency-key": "conv-1"}
    first = call(api, "POST", "/api/v2/tickets.json", ticket_body(), headers=key)
    assert (first.status, first.headers["x-idempotency-lookup"]) == (201, "miss")
    again = call(api, "POST", "/api/v2/tickets.json", ticket_body(), headers=key)
    assert (again.status, again.headers["x-idempotency-lookup"]) == (201, "hit")
    assert again.document()["ticket"]["id"] == first.document()["ticket"]["id"]
    other = call(api, "POST", "/api/v2/tickets.json", ticket_body("Other"), headers=key)
    assert (other.status, other.document()["error"]) == (400, "IdempotentRequestError")
    voice = {"display_to_agent": "", "ticket": {"via_id": 45, "comment": {"body": "b"}}}
    elsewhere = call(api, "POST", "/api/v2/channels/voice/tickets.json", voice, headers=key)
    assert elsewhere.status == 400
    assert len(model.tickets) == 1
    clock.now += 2 * 60 * 60
    later = call(api, "POST", "/api/v2/tickets.json", ticket_body(), headers=key)
    assert later.headers["x-idempotency-lookup"] == "miss"
    assert len(model.tickets) == 2
    assert [r.idempotency_lookup for r in model.stats.log] == ["miss", "hit", None, None, "miss"]


def test_failed_creations_are_not_stored_under_their_key() -> None:
    """A 422 is not kept: the same key and body are processed again (still 422, a miss)."""
    model, api = make()
    key = {"idempotency-key": "bad"}
    body = {"ticket": {"subject": "no comment"}}
    for _ in range(2):
        answer = call(api, "POST", "/api/v2/tickets.json", body, headers=key)
        assert (answer.status, answer.headers["x-idempotency-lookup"]) == (422, "miss")
    assert model.tickets == {}


def test_malformed_bodies() -> None:
    """Non-JSON and missing members are 400s; wrong member types are 422 RecordInvalid."""
    model, api = make()
    answer = api.handle(
        ApiRequest("POST", "/api/v2/users.json", {}, {"authorization": basic(model)}, b"{not json")
    )
    assert (answer.status, answer.document()["error"]) == (400, "InvalidJSON")
    missing = call(api, "POST", "/api/v2/users.json", {"name": "flat"})
    assert (missing.status, missing.document()["error"]) == (400, "ParameterMissing")
    wrong = call(api, "POST", "/api/v2/tickets.json", ticket_body(requester_id="12"))
    assert wrong.status == 422
    assert wrong.document()["details"]["requester_id"][0]["error"] == "InvalidValue"


def test_user_creation_answer() -> None:
    """POST /users answers 201 with the user and a Location header."""
    model, api = make()
    answer = call(api, "POST", "/api/v2/users", {"user": {"name": "New", "phone": "+15557654321"}})
    user = answer.document()["user"]
    assert (answer.status, user["role"], user["phone"]) == (201, "end-user", "+15557654321")
    assert answer.headers["Location"].endswith(f"/api/v2/users/{user['id']}.json")
    assert user["id"] in model.users


def test_voice_ticket_rules() -> None:
    """display_to_agent must be an agent; via_id must be 44/45/46; voicemail is via 44."""
    model, api = make()
    path = "/api/v2/channels/voice/tickets.json"
    voicemail = {"via_id": 44, "voice_comment": {"from": "+15550100001", "to": "+15550000000"}}
    refused = call(
        api, "POST", path, {"display_to_agent": model.customers[0].id, "ticket": voicemail}
    )
    assert refused.status == 422
    assert "display_to_agent" in refused.document()["details"]
    bad_via = call(api, "POST", path, {"ticket": {"via_id": 1, "comment": {"body": "b"}}})
    assert bad_via.status == 422
    created = call(api, "POST", path, {"display_to_agent": "", "ticket": voicemail})
    ticket = created.document()["ticket"]
    assert created.status == 201
    assert ticket["via"] == {
        "channel": "voice",
        "source": {"from": {"phone": "+15550100001"}, "to": {"phone": "+15550000000"}, "rel": "voicemail"},
    }  # fmt: skip
    assert model.comments_of(ticket["id"])[0].type == "VoiceComment"
    assert model.displays == []


def test_call_records() -> None:
    """Calls normalise times to UTC, ignore read-only keys, check types and references."""
    model, api = make()
    fields = {
        "app_id": 1,
        "from_line": "+15550100001",
        "to_line": "+15550000000",
        "call_started_at": "2026-01-05T11:31:40+01:00",
        "direction": "outbound",
    }
    created = call(api, "POST", "/api/v2/calls", {"call": fields}).document()["call"]
    assert created["call_started_at"] == "2026-01-05T10:31:40Z"
    assert created["ticket_id"] is None
    assert list(created)[:3] == ["id", "account_id", "ticket_id"]
    call_id = created["id"]
    patch = {"call": {"id": 5, "duration": 42, "call_ended_at": "2026-01-05T10:32:22Z"}}
    updated = call(api, "PATCH", f"/api/v2/calls/{call_id}", patch).document()["call"]
    assert (updated["id"], updated["duration"]) == (call_id, 42)
    bad = call(
        api,
        "PATCH",
        f"/api/v2/calls/{call_id}",
        {"call": {"duration": "42", "agent_id": model.customers[0].id, "voicemail": "no"}},
    )
    assert set(bad.document()["details"]) == {"duration", "agent_id", "voicemail"}
    assert call(api, "PATCH", "/api/v2/calls/1", patch).status == 404
    comment = call(api, "POST", f"/api/v2/calls/{call_id}/comments.json", {"title": "Done"})
    assert comment.status == 201
    ticket = model.tickets[model.calls[call_id]["ticket_id"]]
    assert (ticket.via.via_id, ticket.via.rel) == (46, "outbound")


def test_stats_count_routes_and_bound_the_log() -> None:
    """Requests are counted per route kind; the log keeps only the most recent ones."""
    model, api = make(request_log_size=3)
    for _ in range(4):
        call(api, "GET", "/api/v2/users/me.json")
    call(api, "GET", "/api/v2/nothing")
    assert model.stats.requests == {"users.me": 4, "unknown": 1}
    assert model.stats.total == 5
    assert [r.route for r in model.stats.log] == ["users.me", "users.me", "unknown"]
