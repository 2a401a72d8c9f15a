"""The sandbox's REST API over a real loopback socket, with a raw httpx client."""

from __future__ import annotations

import asyncio
import base64
import re
import uuid

import httpx
import pytest
import websockets
from sandbox_helpers import (
    CLIENT_ID,
    CLIENT_SECRET,
    REDIRECT_URI,
    Api,
    fast_config,
    running,
    wait_until,
)

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
ISO_MS_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def assert_genesys_error(response: httpx.Response, status: int, code: str) -> None:
    """The response is a Genesys-shaped error with this status and code."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["status"] == status
    assert body["code"] == code
    assert body["message"]
    assert body["contextId"] == response.headers["ININ-Correlation-Id"]


async def test_client_credentials_with_basic_auth_and_form(api: Api) -> None:
    """Both HTTP Basic and form credentials yield a bearer token with expires_in."""
    basic = await api.http.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, auth=(CLIENT_ID, CLIENT_SECRET)
    )
    form = await api.http.post(
        "/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
        },
    )
    for response in (basic, form):
        assert response.status_code == 200
        body = response.json()
        assert set(body) == {"access_token", "token_type", "expires_in"}
        assert body["token_type"] == "bearer"
        assert body["expires_in"] == 86400
        assert response.headers["cache-control"] == "no-store"
    assert basic.json()["access_token"] != form.json()["access_token"]


@pytest.mark.parametrize(
    ("data", "auth", "status", "error"),
    [
        ({"grant_type": "client_credentials"}, (CLIENT_ID, "wrong"), 401, "invalid_client"),
        ({"grant_type": "client_credentials"}, None, 401, "invalid_client"),
        ({"grant_type": "password"}, (CLIENT_ID, CLIENT_SECRET), 400, "unsupported_grant_type"),
        ({"grant_type": "authorization_code", "code": "x"}, None, 400, "invalid_grant"),
        ({"grant_type": "refresh_token", "refresh_token": "x"}, None, 400, "invalid_grant"),
    ],
)
async def test_oauth_errors_have_the_oauth_shape(
    api: Api, data: dict[str, str], auth: tuple[str, str] | None, status: int, error: str
) -> None:
    """Failed token requests answer {"error", "description"} with an OAuth status."""
    response = await api.http.post("/oauth/token", data=data, auth=auth)
    assert response.status_code == status
    body = response.json()
    assert body["error"] == error
    assert body["description"] == body["error_description"]
    assert CLIENT_SECRET not in response.text


async def test_every_http_answer_has_a_correlation_id(api: Api) -> None:
    """OAuth, admin and unknown-path answers carry ININ-Correlation-Id like the API's."""
    answers = [
        await api.http.post("/oauth/token", data={"grant_type": "client_credentials"}),
        await api.http.get("/sandbox/state"),
        await api.http.get("/nowhere"),
    ]
    ids = [answer.headers.get("ININ-Correlation-Id", "") for answer in answers]
    assert all(UUID.match(value) for value in ids), ids
    assert len(set(ids)) == 3
    assert answers[2].json()["contextId"] == ids[2]


async def test_garbled_basic_header_is_invalid_client(api: Api) -> None:
    """A Basic header that is not base64 id:secret is treated as no credentials."""
    for header in ("Basic !!!", "Basic " + base64.b64encode(b"no-colon").decode()):
        response = await api.http.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            headers={"Authorization": header},
        )
        assert response.json()["error"] == "invalid_client"


async def test_authorize_pkce_flow_gives_a_user_token(api: Api) -> None:
    """authorize → code → token carries a user context (users/me) and a refresh token."""
    agent = api.server.sandbox.agents[1]
    grant = await api.user_grant(agent.id)
    assert grant["refresh_token"]
    me = await api.http.get(
        "/api/v2/users/me", params={"expand": "station"}, headers=api.auth(grant["access_token"])
    )
    assert me.status_code == 200
    body = me.json()
    assert (body["id"], body["name"], body["email"]) == (agent.id, agent.name, agent.email)
    assert body["station"]["effectiveStation"]["id"] == agent.station_id
    assert body["station"]["associatedStation"]["id"] == agent.station_id
    refreshed = await api.http.post(
        "/oauth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": grant["refresh_token"],
            "client_id": CLIENT_ID,
        },
    )
    assert refreshed.status_code == 200
    again = await api.http.get(
        "/api/v2/users/me", headers=api.auth(refreshed.json()["access_token"])
    )
    assert again.json()["id"] == agent.id
    assert "station" not in again.json()


async def test_authorize_defaults_to_the_first_agent_and_keeps_redirect_query(api: Api) -> None:
    """Without sandbox_user the first agent signs in; the redirect keeps its own query."""
    response = await api.http.get(
        "/oauth/authorize",
        params={
            "client_id": CLIENT_ID,
            "redirect_uri": REDIRECT_URI + "?keep=1",
            "response_type": "code",
        },
    )
    assert response.status_code == 302
    location = response.headers["location"]
    assert location.startswith(REDIRECT_URI + "?keep=1&code=")
    code = location.split("code=")[1]
    token = await api.http.post(
        "/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI + "?keep=1",
        },
        auth=(CLIENT_ID, CLIENT_SECRET),
    )
    me = await api.http.get("/api/v2/users/me", headers=api.auth(token.json()["access_token"]))
    assert me.json()["id"] == api.server.sandbox.agents[0].id


async def test_authorize_refuses_an_unknown_client(api: Api) -> None:
    """authorize for another client_id does not redirect."""
    response = await api.http.get(
        "/oauth/authorize",
        params={"client_id": "other", "redirect_uri": REDIRECT_URI, "response_type": "code"},
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_client"


async def test_users_me_with_client_credentials_is_400(api: Api) -> None:
    """users/me needs a user context: client credentials get Genesys's 400 message."""
    token = await api.token()
    response = await api.http.get("/api/v2/users/me", headers=api.auth(token))
    assert_genesys_error(response, 400, "bad.request")
    assert response.json()["message"] == (
        "This request requires a user context. "
        "Client credentials cannot be used for requests to this resource."
    )


async def test_api_needs_a_valid_bearer_token(api: Api) -> None:
    """Missing and unknown tokens get 401 with the Genesys error shape and a correlation id."""
    missing = await api.http.get("/api/v2/users")
    assert_genesys_error(missing, 401, "authentication.required")
    unknown = await api.http.get("/api/v2/users", headers=api.auth("not-a-token"))
    assert_genesys_error(unknown, 401, "bad.credentials")
    assert UUID.match(unknown.headers["ININ-Correlation-Id"])
    assert missing.headers["ININ-Correlation-Id"] != unknown.headers["ININ-Correlation-Id"]


async def test_expired_token_is_401() -> None:
    """A token past its lifetime is refused."""
    async with running(fast_config(token_ttl=0.2)) as (server, api):
        http = api.http
        token = await api.token()
        grant = await http.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(CLIENT_ID, CLIENT_SECRET),
        )
        assert grant.json()["expires_in"] == 0.2
        assert (await http.get("/api/v2/users", headers=api.auth(token))).status_code == 200
        await wait_until(lambda: not server.sandbox.world.tokens, within=2.0)
        response = await http.get("/api/v2/users", headers=api.auth(token))
        assert_genesys_error(response, 401, "bad.credentials")


async def test_users_are_paged(api: Api) -> None:
    """pageSize/pageNumber page through the agents; totals and pageCount are right."""
    token = await api.token()
    agents = api.server.sandbox.agents
    seen = []
    for page in (1, 2):
        response = await api.http.get(
            "/api/v2/users", params={"pageSize": 2, "pageNumber": page}, headers=api.auth(token)
        )
        body = response.json()
        assert (body["pageSize"], body["pageNumber"], body["total"], body["pageCount"]) == (
            2,
            page,
            3,
            2,
        )
        seen += body["entities"]
    assert [user["id"] for user in seen] == [agent.id for agent in agents]
    assert all(user["state"] == "active" and user["email"] for user in seen)
    default = (await api.http.get("/api/v2/users", headers=api.auth(token))).json()
    assert default["pageSize"] == 25
    assert len(default["entities"]) == 3
    beyond = await api.http.get("/api/v2/users", params={"pageNumber": 9}, headers=api.auth(token))
    assert beyond.json()["entities"] == []
    for bad in ({"pageSize": 0}, {"pageSize": 501}, {"pageNumber": "x"}):
        response = await api.http.get("/api/v2/users", params=bad, headers=api.auth(token))
        assert_genesys_error(response, 400, "bad.request")


async def test_user_and_station_lookups(api: Api) -> None:
    """users/{id} and stations/{id} answer known ids and 404 otherwise."""
    token = await api.token()
    agent = api.server.sandbox.agents[2]
    user = await api.http.get(f"/api/v2/users/{agent.id}", headers=api.auth(token))
    assert user.json()["name"] == agent.name
    station = (
        await api.http.get(f"/api/v2/stations/{agent.station_id}", headers=api.auth(token))
    ).json()
    assert station["type"] == "inin_webrtc_softphone"
    assert station["webRtcPersistentEnabled"] is True
    assert station["webRtcUserId"] == agent.id
    for path in ("/api/v2/users/nobody", "/api/v2/stations/nowhere"):
        assert_genesys_error(await api.http.get(path, headers=api.auth(token)), 404, "not.found")


async def test_unknown_paths_and_methods_have_the_error_shape(api: Api) -> None:
    """404 and 405 from the router are Genesys-shaped too."""
    token = await api.token()
    missing = await api.http.get("/api/v2/nothing-here", headers=api.auth(token))
    assert_genesys_error(missing, 404, "not.found")
    wrong = await api.http.delete("/api/v2/users", headers=api.auth(token))
    assert_genesys_error(wrong, 405, "method.not.allowed")


async def test_channel_create_list_and_head(api: Api) -> None:
    """A channel has a ws:// connectUri on the request's host, a UUID and an ISO expires."""
    token = await api.token()
    channel = await api.channel(token)
    assert UUID.match(channel["id"])
    assert channel["connectUri"] == f"ws://127.0.0.1:{api.server.port}/channels/{channel['id']}"
    assert ISO_MS_Z.match(channel["expires"])
    listed = await api.http.get("/api/v2/notifications/channels", headers=api.auth(token))
    assert listed.json() == {"entities": [channel]}
    assert await api.channel_exists(token, channel["id"])
    assert not await api.channel_exists(token, str(uuid.uuid4()))
    head = await api.http.head(
        f"/api/v2/notifications/channels/{uuid.uuid4()}", headers=api.auth(token)
    )
    assert head.content == b""


async def test_connect_uri_follows_the_host_header(api: Api) -> None:
    """The connectUri is built from the Host the client used (behind a proxy, say)."""
    token = await api.token()
    response = await api.http.post(
        "/api/v2/notifications/channels",
        headers={**api.auth(token), "Host": "streaming.example:8443"},
    )
    assert response.json()["connectUri"].startswith("ws://streaming.example:8443/channels/")


async def test_subscription_endpoints(api: Api) -> None:
    """PUT replaces, POST adds, GET lists, DELETE clears; combined topics expand."""
    token = await api.token()
    channel_id = (await api.channel(token))["id"]
    first, second = (a.id for a in api.server.sandbox.agents[:2])
    put = await api.subscribe(token, channel_id, [f"v2.users.{first}?presence&conversations.calls"])
    assert put.json()["entities"] == [
        {"id": f"v2.users.{first}.presence", "state": "Permitted"},
        {"id": f"v2.users.{first}.conversations.calls", "state": "Permitted"},
    ]
    post = await api.subscribe(token, channel_id, [f"v2.users.{second}.presence"], method="POST")
    assert [e["id"] for e in post.json()["entities"]] == [
        f"v2.users.{first}.presence",
        f"v2.users.{first}.conversations.calls",
        f"v2.users.{second}.presence",
    ]
    path = f"/api/v2/notifications/channels/{channel_id}/subscriptions"
    listed = await api.http.get(path, headers=api.auth(token))
    assert len(listed.json()["entities"]) == 3
    deleted = await api.http.delete(path, headers=api.auth(token))
    assert deleted.status_code == 200
    assert (await api.http.get(path, headers=api.auth(token))).json() == {"entities": []}


async def test_subscription_body_must_be_a_list_of_ids(api: Api) -> None:
    """Bodies that are not [{"id": topic}] (or not JSON) are 400."""
    token = await api.token()
    channel_id = (await api.channel(token))["id"]
    path = f"/api/v2/notifications/channels/{channel_id}/subscriptions"
    for content in (b"{not json", b'{"id": "x"}', b'["v2.users.x.presence"]', b'[{"id": 5}]'):
        response = await api.http.put(
            path, content=content, headers={**api.auth(token), "Content-Type": "application/json"}
        )
        assert_genesys_error(response, 400, "bad.request")


async def test_system_topics_and_the_topic_limit_are_400(api: Api) -> None:
    """channel.metadata, v2.system.* and more than 1,000 topics are refused with 400."""
    token = await api.token()
    channel_id = (await api.channel(token))["id"]
    for topic in ("channel.metadata", "v2.system.socket_closing"):
        response = await api.subscribe(token, channel_id, [topic])
        assert_genesys_error(response, 400, "bad.request")
        assert "system topic" in response.json()["message"]
    many = [f"v2.users.{uuid.UUID(int=i)}.presence" for i in range(1001)]
    response = await api.subscribe(token, channel_id, many, ignore_errors=True)
    assert_genesys_error(response, 400, "bad.request")
    assert "at most 1000 topics" in response.json()["message"]
    fits = await api.subscribe(token, channel_id, many[:1000], ignore_errors=True)
    assert fits.status_code == 200
    assert len(fits.json()["entities"]) == 1000


async def test_ignore_errors_reports_rejections_and_403_without(api: Api) -> None:
    """Denied and unknown topics come back Rejected with ignoreErrors; otherwise the request is 403."""
    sandbox = api.server.sandbox
    sandbox.faults.deny_topic_prefix("v2.routing.queues", missing="routing:queue:view")
    token = await api.token()
    channel_id = (await api.channel(token))["id"]
    allowed = f"v2.users.{sandbox.agents[0].id}.conversations.calls"
    denied = f"v2.routing.queues.{sandbox.queues[0].id}.conversations.calls"
    forbidden = await api.subscribe(token, channel_id, [allowed, denied])
    assert_genesys_error(forbidden, 403, "missing.permissions")
    assert denied in forbidden.json()["message"]
    response = await api.subscribe(token, channel_id, [allowed, denied], ignore_errors=True)
    assert response.status_code == 200
    ok, rejected = response.json()["entities"]
    assert ok == {"id": allowed, "state": "Permitted"}
    assert rejected["state"] == "Rejected"
    assert rejected["missingPermissions"] == ["routing:queue:view"]
    assert rejected["rejectionReason"]


@pytest.mark.parametrize("extends", [True, False])
async def test_resubscribing_extends_expires_when_configured(extends: bool) -> None:
    """PUT subscriptions pushes expires later only when resubscribe_extends is on."""
    async with running(fast_config(resubscribe_extends=extends)) as (server, api):
        http = api.http
        token = await api.token()
        channel = await api.channel(token)
        await asyncio.sleep(0.05)
        topic = f"v2.users.{server.sandbox.agents[0].id}.presence"
        assert (await api.subscribe(token, channel["id"], [topic])).status_code == 200
        listed = await http.get("/api/v2/notifications/channels", headers=api.auth(token))
        expires = listed.json()["entities"][0]["expires"]
        assert (expires > channel["expires"]) is extends
        assert (expires == channel["expires"]) is not extends


async def test_subscriptions_on_unknown_channels_are_404(api: Api) -> None:
    """Another owner's or an unknown channel is not found."""
    token = await api.token()
    response = await api.subscribe(token, "no-such-channel", [])
    assert_genesys_error(response, 404, "not.found")
    user = await api.user_grant()
    channel_id = (await api.channel(token))["id"]
    theirs = await api.subscribe(user["access_token"], channel_id, [])
    assert_genesys_error(theirs, 404, "not.found")


async def test_twenty_first_channel_evicts_a_socketless_one_first() -> None:
    """With 20 channels, the 21st evicts the LRU channel without a socket; connected ones stay."""
    async with running(fast_config()) as (server, api):
        http = api.http
        token = await api.token()
        channels = [await api.channel(token) for _ in range(20)]
        async with websockets.connect(channels[0]["connectUri"]) as oldest_connected:
            await wait_until(lambda: len(server.sandbox.links()) == 1)
            await api.channel(token)
            assert await api.channel_exists(token, channels[0]["id"])
            assert not await api.channel_exists(token, channels[1]["id"])
            listed = await http.get("/api/v2/notifications/channels", headers=api.auth(token))
            assert len(listed.json()["entities"]) == 20
            assert oldest_connected.close_code is None
        assert server.sandbox.world.counters["channels_evicted"] == 1


async def test_eviction_closes_the_socket_with_channel_removed() -> None:
    """When every channel is connected, the LRU one is evicted and its socket closed with 1000."""
    async with running(fast_config(max_channels_per_client=2)) as (server, api):
        token = await api.token()
        first, second = await api.channel(token), await api.channel(token)
        async with (
            websockets.connect(first["connectUri"]) as ws1,
            websockets.connect(second["connectUri"]) as ws2,
        ):
            await wait_until(lambda: len(server.sandbox.links()) == 2)
            await api.channel(token)
            await ws1.wait_closed()
            assert (ws1.close_code, ws1.close_reason) == (1000, "channel removed")
            assert ws2.close_code is None
            assert not await api.channel_exists(token, first["id"])


async def test_rate_limit_answers_429_with_retry_after() -> None:
    """Beyond rate_limit_per_minute a token gets 429, Retry-After in whole seconds, Genesys body."""
    async with running(fast_config(rate_limit_per_minute=5)) as (_server, api):
        http = api.http
        token, other = await api.token(), await api.token()
        for count in range(1, 6):
            ok = await http.get("/api/v2/users", headers=api.auth(token))
            assert ok.status_code == 200
            assert ok.headers["inin-ratelimit-count"] == str(count)
            assert ok.headers["inin-ratelimit-allowed"] == "5"
        limited = await http.get("/api/v2/users", headers=api.auth(token))
        assert_genesys_error(limited, 429, "too.many.requests")
        retry_after = limited.headers["Retry-After"]
        assert retry_after.isdigit()
        assert 1 <= int(retry_after) <= 60
        assert (await http.get("/api/v2/users", headers=api.auth(other))).status_code == 200


async def test_place_call_needs_a_user_context(api: Api) -> None:
    """POST conversations/calls dials for the token's user; client credentials get 400."""
    client_token = await api.token()
    response = await api.http.post(
        "/api/v2/conversations/calls",
        json={"phoneNumber": "+15557654321"},
        headers=api.auth(client_token),
    )
    assert_genesys_error(response, 400, "bad.request")
    user = await api.user_grant()
    placed = await api.http.post(
        "/api/v2/conversations/calls",
        json={"phoneNumber": "+15557654321"},
        headers=api.auth(user["access_token"]),
    )
    assert placed.status_code == 200
    body = placed.json()
    assert body["selfUri"] == f"/api/v2/conversations/calls/{body['id']}"
    call = await api.http.get(body["selfUri"], headers=api.auth(user["access_token"]))
    (agent,) = [p for p in call.json()["participants"] if p["purpose"] == "user"]
    assert agent["user"]["id"] == api.server.sandbox.agents[0].id
    assert agent["direction"] == "outbound"
    missing = await api.http.post(
        "/api/v2/conversations/calls", json={}, headers=api.auth(user["access_token"])
    )
    assert_genesys_error(missing, 400, "bad.request")
