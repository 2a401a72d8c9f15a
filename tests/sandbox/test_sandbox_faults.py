"""Fault injection over real sockets, through the Python API and the admin endpoints."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import websockets
from sandbox_helpers import Api, drain, fast_config, recv_event, recv_frame, running, wait_until
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from crmphone.errors import BadRequestError, NotFoundError


@asynccontextmanager
async def connected(
    api: Api, *, topics: tuple[str, ...] = (), **connect: object
) -> AsyncIterator[tuple[str, str, ClientConnection]]:
    """(token, channel id, socket) of a new channel subscribed to ``topics``."""
    token = await api.token()
    channel = await api.channel(token)
    if topics:
        assert (await api.subscribe(token, channel["id"], list(topics))).status_code == 200
    links = len(api.server.sandbox.links())
    async with websockets.connect(channel["connectUri"], **connect) as ws:  # type: ignore[arg-type]
        await wait_until(lambda: len(api.server.sandbox.links()) > links)
        yield token, channel["id"], ws


@pytest.fixture
async def fast_heartbeats() -> AsyncIterator[Api]:
    """A sandbox whose heartbeats come every 50 ms."""
    async with running(fast_config(heartbeat_interval=0.05)) as (_, api):
        yield api


async def test_socket_closing_warns_then_closes_later(api: Api) -> None:
    """socket_closing sends v2.system.socket_closing, events still flow, then a 1001 close."""
    sandbox = api.server.sandbox
    topic = f"v2.users.{sandbox.agents[0].id}.presence"
    async with connected(api, topics=(topic,)) as (_, _, ws):
        started = time.monotonic()
        record = sandbox.faults.socket_closing(close_after=0.3)
        notice = await recv_frame(ws)
        assert notice["topicName"] == "v2.system.socket_closing"
        assert notice["eventBody"]["message"]
        sandbox.publish(topic, {"still": "flowing"})
        assert (await recv_event(ws))["eventBody"] == {"still": "flowing"}
        async with asyncio.timeout(2):
            await ws.wait_closed()
        assert time.monotonic() - started >= 0.3
        assert (ws.close_code, ws.close_reason) == (1001, "server maintenance")
    assert record.kind == "socket_closing"
    assert record.params["close_after"] == 0.3


async def test_silence_is_a_dead_but_open_link(fast_heartbeats: Api) -> None:
    """Silenced: no heartbeats, pongs or events, protocol pings unanswered, TCP still open."""
    api = fast_heartbeats
    sandbox = api.server.sandbox
    topic = f"v2.users.{sandbox.agents[0].id}.presence"
    async with connected(api, topics=(topic,), close_timeout=0.5) as (_, channel_id, ws):
        await recv_frame(ws)  # a heartbeat: the link is alive
        sandbox.faults.silence()
        await drain(ws)  # what was in flight when the link went quiet
        emitted = sandbox.publish(topic, {"lost": True})
        assert emitted.channel_ids == ()
        await ws.send(json.dumps({"message": "ping"}))
        protocol_pong = await ws.ping()
        with pytest.raises(TimeoutError):
            await recv_frame(ws, within=0.3)
        assert not protocol_pong.done()
        assert ws.close_code is None
        sandbox.faults.unsilence(channel_id=channel_id)
        async with asyncio.timeout(2):
            await protocol_pong
        frames = [await recv_frame(ws) for _ in range(3)]
        assert {
            "topicName": "channel.metadata",
            "eventBody": {"message": "WebSocket Heartbeat"},
        } in frames
        sandbox.publish(topic, {"lost": False})
        assert (await recv_event(ws))["eventBody"] == {"lost": False}


async def test_drop_tcp_sends_no_close_frame(api: Api) -> None:
    """drop_tcp aborts the connection: the client sees 1006 and the channel still exists."""
    async with connected(api) as (token, channel_id, ws):
        api.server.sandbox.faults.drop_tcp()
        with pytest.raises(ConnectionClosed):
            await recv_frame(ws)
        assert ws.close_code == 1006
        assert ws.close_reason == ""
        await wait_until(lambda: not api.server.sandbox.links())
        assert await api.channel_exists(token, channel_id)


async def test_close_with_a_code_targets_one_channel(api: Api) -> None:
    """close(code, reason, channel_id=...) closes that channel's socket only."""
    async with connected(api) as (_, target, first), connected(api) as (_, _, second):
        api.server.sandbox.faults.close(4321, "testing", channel_id=target)
        async with asyncio.timeout(2):
            await first.wait_closed()
        assert (first.close_code, first.close_reason) == (4321, "testing")
        assert second.close_code is None
        assert len(api.server.sandbox.links()) == 1


async def test_revoke_token_notifies_closes_and_401s(api: Api) -> None:
    """revoke_token sends token_revoked, closes the socket and the token stops working."""
    async with connected(api) as (token, channel_id, ws):
        api.server.sandbox.faults.revoke_token(channel_id=channel_id)
        notice = await recv_frame(ws)
        assert notice["topicName"] == f"v2.system.token_revoked.{api.server.config.client_id}"
        async with asyncio.timeout(2):
            await ws.wait_closed()
        assert (ws.close_code, ws.close_reason) == (1000, "token revoked")
    response = await api.http.get("/api/v2/users", headers=api.auth(token))
    assert response.status_code == 401
    assert response.json()["code"] == "bad.credentials"
    fresh = await api.token()
    assert not await api.channel_exists(fresh, channel_id)


async def test_no_longer_subscribed_drops_topics_but_keeps_the_socket(api: Api) -> None:
    """no_longer_subscribed names the channel, carries the reason and empties its subscriptions."""
    sandbox = api.server.sandbox
    topic = f"v2.users.{sandbox.agents[0].id}.presence"
    async with connected(api, topics=(topic,)) as (token, channel_id, ws):
        sandbox.faults.no_longer_subscribed(reason="user_tokens_revoked")
        notice = await recv_frame(ws)
        assert notice["topicName"] == f"v2.system.no_longer_subscribed.{channel_id}"
        assert notice["eventBody"]["reason"] == "user_tokens_revoked"
        listed = await api.http.get(
            f"/api/v2/notifications/channels/{channel_id}/subscriptions", headers=api.auth(token)
        )
        assert listed.json() == {"entities": []}
        assert sandbox.publish(topic, {}).channel_ids == ()
        assert ws.close_code is None


async def test_rate_limit_burst_refuses_the_next_requests(api: Api) -> None:
    """The next `count` API requests get 429 with the given Retry-After; then service resumes."""
    token = await api.token()
    api.server.sandbox.faults.rate_limit_burst(2, retry_after=3)
    for _ in range(2):
        response = await api.http.get("/api/v2/users", headers=api.auth(token))
        assert response.status_code == 429
        assert response.headers["Retry-After"] == "3"
        assert response.json()["code"] == "too.many.requests"
    assert (await api.http.get("/api/v2/users", headers=api.auth(token))).status_code == 200


async def test_malformed_frames_arrive_as_announced(api: Api) -> None:
    """Each malformed kind arrives in order: not JSON, binary, unknown shape, oversized, truncated."""
    async with connected(api, max_size=None) as (_, _, ws):
        api.server.sandbox.faults.malformed_frames(oversized_bytes=1_100_000)
        frames = [await ws.recv() for _ in range(5)]
    not_json, binary, unknown, oversized, truncated = frames
    with pytest.raises(ValueError):  # noqa: PT011 - any JSON decoding error
        json.loads(not_json)
    assert isinstance(binary, bytes)
    assert "topicName" not in json.loads(unknown)
    assert isinstance(oversized, str)
    assert len(oversized) == 1_100_000
    assert json.loads(oversized)["topicName"] == "channel.metadata"
    assert isinstance(truncated, str)
    assert truncated.startswith('{"topicName"')
    with pytest.raises(ValueError):  # noqa: PT011 - any JSON decoding error
        json.loads(truncated)


async def test_oversized_frame_trips_a_default_client(api: Api) -> None:
    """With the client's default 1 MiB max_size the oversized frame closes the socket with 1009."""
    async with connected(api) as (_, _, ws):
        api.server.sandbox.faults.malformed_frames(kinds=("oversized",))
        with pytest.raises(ConnectionClosed) as info:
            await recv_frame(ws)
        assert info.value.sent is not None
        assert info.value.sent.code == 1009  # the client gave up: message too big


async def test_faults_are_recorded_and_checked(api: Api) -> None:
    """Every applied fault is recorded with its targets; unknown channels and kinds are errors."""
    faults = api.server.sandbox.faults
    async with connected(api):
        record = faults.silence()
        faults.unsilence()
    assert record.kind == "silence"
    assert len(record.targets) == 1
    assert [r.kind for r in faults.records] == ["silence", "unsilence"]
    with pytest.raises(NotFoundError):
        faults.drop_tcp(channel_id="unknown")
    with pytest.raises(BadRequestError):
        faults.malformed_frames(kinds=("gibberish",))
    with pytest.raises(BadRequestError):
        faults.apply({"kind": "meteor_strike"})
    with pytest.raises(BadRequestError):
        faults.apply({"kind": "close", "colour": "red"})


async def test_admin_endpoints(api: Api) -> None:
    """/sandbox/faults applies faults, /sandbox/state shows everything, calls and publish work."""
    sandbox = api.server.sandbox
    topic = f"v2.users.{sandbox.agents[0].id}.conversations.calls"
    async with connected(api, topics=(topic,)) as (_, channel_id, ws):
        applied = await api.http.post(
            "/sandbox/faults",
            json={"kind": "rate_limit_burst", "count": 1, "retry_after": 2},
        )
        assert applied.status_code == 200
        assert applied.json()["applied"]["kind"] == "rate_limit_burst"
        placed = await api.http.post(
            "/sandbox/calls", json={"agentId": sandbox.agents[0].id, "ani": "+15550001111"}
        )
        conversation_id = placed.json()["conversationId"]
        event = await recv_event(ws)
        assert event["eventBody"]["id"] == conversation_id
        published = await api.http.post("/sandbox/publish", json={"topic": topic, "body": {"x": 1}})
        assert published.json()["channelIds"] == [channel_id]
        state = (await api.http.get("/sandbox/state")).json()
        assert [c["id"] for c in state["channels"]] == [channel_id]
        assert state["channels"][0]["topics"] == [topic]
        assert [s["channelId"] for s in state["liveSockets"]] == [channel_id]
        assert state["faults"][0]["kind"] == "rate_limit_burst"
        assert state["counters"]["calls_inbound"] == 1
        assert state["conversations"][0]["id"] == conversation_id
        assert state["ledgerSize"] == len(sandbox.ledger)
        assert api.server.config.client_secret not in json.dumps(state)
        bad_kind = await api.http.post("/sandbox/faults", json={"kind": "meteor_strike"})
        assert bad_kind.status_code == 400
        assert bad_kind.json()["code"] == "bad.request"
        missing = await api.http.post("/sandbox/faults", json={"kind": "close", "channel_id": "x"})
        assert missing.status_code == 404
        not_json = await api.http.post("/sandbox/calls", content=b"[1, 2")
        assert not_json.status_code == 400
        no_topic = await api.http.post("/sandbox/publish", json={"body": {}})
        assert no_topic.status_code == 400
