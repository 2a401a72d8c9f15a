"""The Salesforce emulator's REST layer without sockets: routing, sessions, OAuth, limits, faults."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from crmphone.clock import ManualClock
from crmphone.errors import ConfigError
from crmphone_salesforce.emulator import (
    LIMIT_HEADER,
    ApiRequest,
    ApiResponse,
    FaultKind,
    RouteKind,
    SalesforceApi,
    SalesforceModel,
    SalesforceSettings,
)
from crmphone_salesforce.emulator.auth import JWT_BEARER

BASE = "https://127.0.0.1:8443"
DATA = "/services/data/v62.0"


class Client:
    """Drives a SalesforceApi the way an HTTP client would, with the fixed session id."""

    def __init__(self, api: SalesforceApi) -> None:
        self.api = api
        self.token: str | None = api.model.auth.session_id

    def send(
        self, method: str, path: str, body: Any = None, *, query: dict[str, str] | None = None
    ) -> ApiResponse:
        raw = b"" if body is None else json.dumps(body).encode()
        authorization = f"Bearer {self.token}" if self.token else None
        return self.api.handle(
            ApiRequest(method, path, query or {}, raw, authorization, base_url=BASE)
        )

    def token_request(self, form: dict[str, str], authorization: str | None = None) -> ApiResponse:
        body = urlencode(form).encode()
        request = ApiRequest("POST", "/services/oauth2/token", {}, body, authorization, BASE)
        return self.api.handle(request)


def make(**settings: Any) -> tuple[Client, ManualClock]:
    clock = ManualClock()
    model = SalesforceModel(
        0, SalesforceSettings(**settings), clock=clock.monotonic, wall_clock=clock.wall
    )
    return Client(SalesforceApi(model)), clock


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    """An RSA key pair for JWT bearer assertions."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


# ---------------------------------------------------------------------- routing and shapes


def test_versions_need_no_session_and_list_release_names() -> None:
    """GET /services/data/ lists the served versions with their release labels."""
    client, _ = make()
    client.token = None
    answer = client.send("GET", "/services/data/")
    assert answer.status == 200
    assert {"label": "Winter '25", "url": "/services/data/v62.0", "version": "62.0"} in answer.body
    assert {v["version"] for v in answer.body} >= {f"{n}.0" for n in range(55, 63)}
    assert answer.headers[LIMIT_HEADER] == "api-usage=0/15000"


def test_unknown_version_is_404() -> None:
    """A version the org does not serve answers 404 NOT_FOUND."""
    client, _ = make()
    answer = client.send("GET", "/services/data/v20.0/sobjects/Task/describe")
    assert answer.status == 404
    assert answer.body == [
        {"message": "The requested resource does not exist", "errorCode": "NOT_FOUND"}
    ]


def test_every_data_answer_counts_and_reports_usage() -> None:
    """Authenticated requests count against the allowance and report it."""
    client, _ = make(api_limit=10)
    assert client.send("GET", f"{DATA}/").headers[LIMIT_HEADER] == "api-usage=1/10"
    resources = client.send("GET", f"{DATA}/")
    assert resources.body["query"] == f"{DATA}/query"
    assert resources.headers[LIMIT_HEADER] == "api-usage=2/10"
    assert client.send("GET", f"{DATA}/limits").body == {
        "DailyApiRequests": {"Max": 10, "Remaining": 7}
    }


def test_allowance_spent_is_403_and_a_day_later_it_returns() -> None:
    """Past the daily maximum every request is refused until the window rolls over."""
    client, clock = make(api_limit=2)
    assert [client.send("GET", f"{DATA}/").status for _ in range(3)] == [200, 200, 403]
    refused = client.send("GET", f"{DATA}/")
    assert refused.body == [
        {"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}
    ]
    assert refused.headers[LIMIT_HEADER] == "api-usage=2/2"
    clock.advance(timedelta(days=1).total_seconds())
    assert client.send("GET", f"{DATA}/").status == 200


def test_create_get_update_delete_shapes() -> None:
    """Create answers 201 with the id, get the record with attributes, update/delete 204."""
    client, _ = make()
    created = client.send("POST", f"{DATA}/sobjects/Task/", {"Subject": "Call"})
    assert created.status == 201
    assert created.body["success"] is True
    task_id = created.body["id"]
    fetched = client.send("GET", f"{DATA}/sobjects/Task/{task_id}")
    assert fetched.body["attributes"] == {"type": "Task", "url": f"{DATA}/sobjects/Task/{task_id}"}
    picked = client.send("GET", f"{DATA}/sobjects/Task/{task_id}", query={"fields": "Subject"})
    assert list(picked.body) == ["attributes", "Id", "Subject"]
    assert client.send("PATCH", f"{DATA}/sobjects/Task/{task_id}", {"Subject": "x"}).status == 204
    assert client.send("DELETE", f"{DATA}/sobjects/Task/{task_id}").status == 204
    assert client.send("GET", f"{DATA}/sobjects/Task/{task_id}").status == 404


def test_upsert_route_codes_and_encoded_values() -> None:
    """Upsert answers 201 then 200; a percent-encoded slash stays inside the value."""
    client, _ = make()
    path = f"{DATA}/sobjects/Task/CTI_Call_Id__c/conv%2F1"
    first = client.send("PATCH", path, {"Subject": "a"})
    second = client.send("PATCH", path, {"Subject": "b"})
    assert (first.status, first.body["created"]) == (201, True)
    assert second.status == 200
    assert second.body == {"id": first.body["id"], "success": True, "errors": [], "created": False}
    assert client.api.model.record("Task", first.body["id"])["CTI_Call_Id__c"] == "conv/1"  # type: ignore[index]
    assert client.send("GET", path).body["Subject"] == "b"
    assert client.send("DELETE", path).status == 204
    assert client.send("GET", path).status == 404
    assert first.route is RouteKind.UPSERT


def test_bad_bodies_and_methods() -> None:
    """Broken JSON is JSON_PARSER_ERROR; an unsupported method is 405; unknown paths 404."""
    client, _ = make()
    raw = ApiRequest("POST", f"{DATA}/sobjects/Task", {}, b"{not json", f"Bearer {client.token}")
    answer = client.api.handle(raw)
    assert answer.status == 400
    assert answer.body[0]["errorCode"] == "JSON_PARSER_ERROR"
    listed = client.send("POST", f"{DATA}/sobjects/Task", [1, 2])
    assert listed.body[0]["errorCode"] == "JSON_PARSER_ERROR"
    assert client.send("PUT", f"{DATA}/sobjects/Task", {}).status == 405
    assert client.send("GET", f"{DATA}/tooling/query").status == 404
    assert client.send("GET", "/elsewhere").status == 404


def test_describe_names_external_ids() -> None:
    """Describe lists fields with type and externalId; the global describe lists the objects."""
    client, _ = make()
    described = client.send("GET", f"{DATA}/sobjects/Task/describe").body
    fields = {f["name"]: f for f in described["fields"]}
    assert fields["CTI_Call_Id__c"]["externalId"] is True
    assert fields["CallType"]["restrictedPicklist"] is True
    assert fields["CallDurationInSeconds"]["type"] == "int"
    assert described["keyPrefix"] == "00T"
    names = {o["name"] for o in client.send("GET", f"{DATA}/sobjects").body["sobjects"]}
    assert names == {"Account", "Contact", "Lead", "Case", "Task", "User", "CTI_Call__c"}
    assert client.send("GET", f"{DATA}/sobjects/Lead").body["objectDescribe"]["name"] == "Lead"


def test_query_and_search_need_their_text() -> None:
    """query and search without q are refused with their malformed codes."""
    client, _ = make()
    assert client.send("GET", f"{DATA}/query").body[0]["errorCode"] == "MALFORMED_QUERY"
    assert client.send("GET", f"{DATA}/search").body[0]["errorCode"] == "MALFORMED_SEARCH"


def test_collections_route_shapes() -> None:
    """Collections answer 200 with per-record results; delete takes ids in the query."""
    client, _ = make()
    body = {"records": [{"attributes": {"type": "Task"}, "Subject": "a"}]}
    created = client.send("POST", f"{DATA}/composite/sobjects", body)
    assert created.status == 200
    assert created.body[0]["success"] is True
    task_id = created.body[0]["id"]
    upsert = {"records": [{"attributes": {"type": "Task"}, "CTI_Call_Id__c": "k"}]}
    upserted = client.send("PATCH", f"{DATA}/composite/sobjects/Task/CTI_Call_Id__c", upsert)
    assert upserted.body[0]["created"] is True
    deleted = client.send(
        "DELETE", f"{DATA}/composite/sobjects", query={"ids": task_id, "allOrNone": "true"}
    )
    assert deleted.body == [{"id": task_id, "success": True, "errors": []}]
    assert created.route is RouteKind.COMPOSITE


def test_stats_count_requests_by_route() -> None:
    """Every request is counted by route kind and logged with its status."""
    client, _ = make()
    client.send("GET", f"{DATA}/query", query={"q": "SELECT Id FROM Task"})
    client.send("GET", f"{DATA}/query", query={"q": "SELECT Id FROM"})
    client.send("GET", "/services/data/")
    stats = client.api.model.stats
    assert stats.requests == {"query": 2, "versions": 1}
    assert stats.total == 3
    assert [entry.status for entry in stats.log] == [200, 400, 200]


# ---------------------------------------------------------------------- sessions and faults


def test_missing_unknown_and_expired_sessions_are_401() -> None:
    """No token, a wrong token, or an expired session: 401 INVALID_SESSION_ID."""
    client, clock = make(session_ttl=60.0)
    expected = [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]
    client.token = None
    assert client.send("GET", f"{DATA}/").body == expected
    client.token = "00D!unknown-session"
    assert client.send("GET", f"{DATA}/").status == 401
    grant = client.token_request(
        {
            "grant_type": "client_credentials",
            "client_id": client.api.model.auth.client_id,
            "client_secret": client.api.model.auth.client_secret,
        }
    )
    client.token = grant.body["access_token"]
    assert client.send("GET", f"{DATA}/").status == 200
    clock.advance(59.0)
    assert client.send("GET", f"{DATA}/").status == 200  # use extends the session
    clock.advance(61.0)
    assert client.send("GET", f"{DATA}/").body == expected
    assert client.api.model.usage.used == 2


def test_expire_sessions_ends_all_but_a_new_login_works() -> None:
    """expire_sessions kills tokens and the fixed session id; OAuth logins still work."""
    client, _ = make()
    fixed = client.token
    assert client.api.model.expire_sessions() == 1
    assert client.send("GET", f"{DATA}/").status == 401
    form = {
        "grant_type": "client_credentials",
        "client_id": client.api.model.auth.client_id,
        "client_secret": client.api.model.auth.client_secret,
    }
    client.token = client.token_request(form).body["access_token"]
    assert client.send("GET", f"{DATA}/").status == 200
    client.api.model.auth.revive_session_id()
    client.token = fixed
    assert client.send("GET", f"{DATA}/").status == 200


def test_faults_are_consumed_once_each_in_scope() -> None:
    """A scoped fault waits for its route; each fault hits exactly one request."""
    client, _ = make()
    faults = client.api.model.faults
    faults.fail_next("request_limit", route="search")
    faults.fail_next(FaultKind.EXPIRED_SESSION, count=2)
    assert client.send("GET", f"{DATA}/").status == 401
    assert client.send("GET", f"{DATA}/search", query={"q": "FIND {1} IN PHONE FIELDS"}).status == 403  # fmt: skip
    assert client.send("GET", f"{DATA}/").status == 401
    assert client.send("GET", f"{DATA}/search", query={"q": "FIND {1} IN PHONE FIELDS"}).status == 200  # fmt: skip
    assert faults.pending == ()
    assert faults.applied == {FaultKind.EXPIRED_SESSION: 2, FaultKind.REQUEST_LIMIT: 1}


def test_unavailable_answers_html_with_retry_after() -> None:
    """The unavailable fault answers 503 with an HTML page, as Salesforce's edge does."""
    client, _ = make()
    client.api.model.faults.fail_next("unavailable", route="composite", retry_after=7)
    answer = client.send("POST", f"{DATA}/composite/sobjects", {"records": []})
    assert answer.status == 503
    assert answer.body is None
    assert answer.html is not None
    assert "Service Unavailable" in answer.html
    assert answer.headers["Retry-After"] == "7"
    assert client.api.model.usage.used == 0


def test_slow_fault_does_the_work_and_delays_the_answer() -> None:
    """A slow answer carries its delay, and the write has happened already."""
    client, _ = make()
    client.api.model.faults.fail_next("slow", route="upsert", delay=2.5)
    answer = client.send("PATCH", f"{DATA}/sobjects/Task/CTI_Call_Id__c/late", {})
    assert answer.status == 201
    assert answer.delay == 2.5
    assert client.api.model.count("Task") == 1


def test_fault_arguments_are_checked() -> None:
    """Unknown kinds and routes, negative counts and session faults on the token route fail."""
    faults, _ = make()
    queue = faults.api.model.faults
    with pytest.raises(ConfigError):
        queue.fail_next("meteor")
    with pytest.raises(ConfigError):
        queue.fail_next("slow", route="moon")
    with pytest.raises(ConfigError):
        queue.fail_next("slow", count=-1)
    with pytest.raises(ConfigError):
        queue.fail_next("expired_session", route="oauth")


# ---------------------------------------------------------------------- OAuth


def test_client_credentials_in_the_form_or_as_basic() -> None:
    """Client credentials work in the form and as HTTP Basic; the answer has Salesforce's keys."""
    client, _ = make()
    auth = client.api.model.auth
    credentials = {"client_id": auth.client_id, "client_secret": auth.client_secret}
    form = client.token_request({"grant_type": "client_credentials", **credentials})
    assert form.status == 200
    assert set(form.body) == {"access_token", "signature", "scope", "instance_url", "id", "token_type", "issued_at"}  # fmt: skip
    assert form.body["instance_url"] == BASE
    assert form.body["token_type"] == "Bearer"
    assert form.body["id"] == f"{BASE}/id/{auth.org_id}/{client.api.model.integration_user_id}"
    basic = base64.b64encode(f"{auth.client_id}:{auth.client_secret}".encode()).decode()
    assert (
        client.token_request({"grant_type": "client_credentials"}, f"Basic {basic}").status == 200
    )


def test_client_credentials_errors() -> None:
    """A wrong secret is invalid_client, an unknown client invalid_client_id, a grant type
    the org does not know unsupported_grant_type; no secret appears in the answer."""
    client, _ = make()
    auth = client.api.model.auth
    wrong = client.token_request(
        {"grant_type": "client_credentials", "client_id": auth.client_id, "client_secret": "nope"}
    )
    assert (wrong.status, wrong.body) == (
        400,
        {"error": "invalid_client", "error_description": "invalid client credentials"},
    )
    unknown = client.token_request({"grant_type": "client_credentials", "client_id": "x"})
    assert unknown.body["error"] == "invalid_client_id"
    password = client.token_request({"grant_type": "password"})
    assert password.body["error"] == "unsupported_grant_type"
    assert auth.client_secret not in repr(auth) + json.dumps(wrong.body)
    secret_request = ApiRequest("POST", "/services/oauth2/token", {}, f"client_secret={auth.client_secret}".encode(), f"Bearer {auth.session_id}")  # fmt: skip
    assert auth.client_secret not in repr(secret_request)
    assert auth.session_id not in repr(secret_request) + repr(client.api.model.settings)


def assertion(key: rsa.RSAPrivateKey, clock: ManualClock, **claims: Any) -> str:
    payload = {
        "iss": "crmphone-emulator-connected-app",
        "sub": "ada.lovelace@sandbox.example",
        "aud": "https://login.salesforce.com",
        "exp": int(clock.wall().timestamp()) + 180,
        **claims,
    }
    return jwt.encode(payload, key, algorithm="RS256")


def test_jwt_bearer_logs_in_as_the_subject(rsa_key: rsa.RSAPrivateKey) -> None:
    """A valid assertion yields a session acting as the user named by sub."""
    client, clock = make(jwt_certificate=public_pem(rsa_key))
    grant = client.token_request({"grant_type": JWT_BEARER, "assertion": assertion(rsa_key, clock)})
    assert grant.status == 200
    client.token = grant.body["access_token"]
    created = client.send("POST", f"{DATA}/sobjects/Task", {"Subject": "mine"})
    task = client.api.model.record("Task", created.body["id"])
    assert task is not None
    assert task["OwnerId"] == client.api.model.agent_user_ids[0]
    own_url = client.token_request({"grant_type": JWT_BEARER, "assertion": assertion(rsa_key, clock, aud=BASE)})  # fmt: skip
    assert own_url.status == 200


@pytest.mark.parametrize(
    ("claims", "error", "description"),
    [
        ({"aud": "https://example.com"}, "invalid_grant", "audience is invalid"),
        ({"exp": 0}, "invalid_grant", "expired authorization code"),
        ({"sub": "nobody@example.com"}, "invalid_grant", "user hasn't approved this consumer"),
        ({"iss": "someone-else"}, "invalid_client_id", "client identifier invalid"),
    ],
)
def test_jwt_bearer_refusals(
    rsa_key: rsa.RSAPrivateKey, claims: dict[str, Any], error: str, description: str
) -> None:
    """Wrong audience, expiry, user or issuer are refused with Salesforce's OAuth errors."""
    client, clock = make(jwt_certificate=public_pem(rsa_key))
    answer = client.token_request(
        {"grant_type": JWT_BEARER, "assertion": assertion(rsa_key, clock, **claims)}
    )
    assert (answer.status, answer.body) == (400, {"error": error, "error_description": description})


def test_jwt_bearer_needs_the_registered_key(rsa_key: rsa.RSAPrivateKey) -> None:
    """An assertion signed by another key, or with no certificate registered, is invalid."""
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    client, clock = make()
    form = {"grant_type": JWT_BEARER, "assertion": assertion(rsa_key, clock)}
    assert client.token_request(form).body["error_description"] == "invalid assertion"
    client.api.model.auth.register_certificate(public_pem(other))
    assert client.token_request(form).body["error_description"] == "invalid assertion"
    garbage = {"grant_type": JWT_BEARER, "assertion": "not.a.jwt"}
    assert client.token_request(garbage).body["error"] == "invalid_grant"
    with pytest.raises(ConfigError):
        client.api.model.auth.register_certificate(b"-----BEGIN PUBLIC KEY-----\nxx\n")
