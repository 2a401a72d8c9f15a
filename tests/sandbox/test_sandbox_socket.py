"""Channel WebSockets over real loopback sockets, with a raw websockets client."""

from __future__ import annotations

import asyncio
import itertools
import json
import time

import pytest
import websockets
from sandbox_helpers import Api, fast_config, recv_event, recv_frame, running, wait_until
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import InvalidStatus


async def connected_channel(
    api: Api, topics: list[str], token: str | None = None
) -> tuple[dict[str, object], ClientConnection]:
    """Create a channel, subscribe ``topics``, open its socket and wait until the sandbox sees it."""
    token = token or await api.token()
    channel = await api.channel(token)
    if topics:
        response = await api.subscribe(token, str(channel["id"]), topics)
        assert response.status_code == 200, response.text
    before = len(api.server.sandbox.links(str(channel["id"])))
    ws = await websockets.connect(str(channel["connectUri"]))
    await wait_until(lambda: len(api.server.sandbox.links(str(channel["id"]))) > before)
    return channel, ws


async def test_unknown_channel_handshake_is_404(api: Api) -> None:
    """A WebSocket to an unknown channel is refused with HTTP 404 before the upgrade."""
    with pytest.raises(InvalidStatus) as info:
        await websockets.connect(f"ws://127.0.0.1:{api.server.port}/channels/nope")
    assert info.value.response.status_code == 404
    assert json.loads(info.value.response.body or b"{}")["code"] == "not.found"
    assert api.server.sandbox.world.counters["sockets_refused"] == 1


async def test_heartbeats_arrive_at_the_configured_cadence() -> None:
    """Heartbeats arrive every heartbeat_interval, as channel.metadata "WebSocket Heartbeat"."""
    async with running(fast_config(heartbeat_interval=0.05)) as (_, api):
        _, ws = await connected_channel(api, [])
        async with ws:
            started = time.monotonic()
            arrivals = []
            for _ in range(6):
                frame = await recv_frame(ws, within=1.0)
                assert frame == {
                    "topicName": "channel.metadata",
                    "eventBody": {"message": "WebSocket Heartbeat"},
                }
                arrivals.append(time.monotonic() - started)
        gaps = [b - a for a, b in itertools.pairwise(arrivals)]
        assert 0.2 <= arrivals[-1] <= 0.6
        assert all(0.02 <= gap <= 0.2 for gap in gaps), gaps


async def test_ping_gets_pong_and_other_frames_are_ignored(api: Api) -> None:
    """{"message": "ping"} is answered with pong; unknown text and binary frames are ignored."""
    _, ws = await connected_channel(api, [])
    async with ws:
        await ws.send("hello there")
        await ws.send(b"\x00\x01")
        await ws.send(json.dumps({"message": "ping"}))
        assert await recv_frame(ws) == {
            "topicName": "channel.metadata",
            "eventBody": {"message": "pong"},
        }
    counters = api.server.sandbox.world.counters
    assert counters["pings_answered"] == 1
    assert counters["client_frames_ignored"] == 2


async def test_events_reach_only_subscribed_channels(api: Api) -> None:
    """Each channel receives only its topics; an event nobody subscribed reaches nobody."""
    sandbox = api.server.sandbox
    first, second = (f"v2.users.{a.id}.presence" for a in sandbox.agents[:2])
    channel_a, ws_a = await connected_channel(api, [first])
    channel_b, ws_b = await connected_channel(api, [second])
    async with ws_a, ws_b:
        nobody = sandbox.publish(f"v2.users.{sandbox.agents[2].id}.presence", {"n": 0})
        to_a = sandbox.publish(first, {"n": 1})
        to_b = sandbox.publish(second, {"n": 2})
        assert nobody.channel_ids == ()
        assert to_a.channel_ids == (channel_a["id"],)
        assert to_b.channel_ids == (channel_b["id"],)
        event_a, event_b = await recv_event(ws_a), await recv_event(ws_b)
        assert event_a == {
            "topicName": first,
            "version": "2",
            "eventBody": {"n": 1},
            "metadata": {"CorrelationId": to_a.correlation_id},
        }
        assert event_b["eventBody"] == {"n": 2}
        sandbox.publish(first, {"n": 3})
        assert (await recv_event(ws_a))["eventBody"] == {"n": 3}  # nothing else was queued for A


async def test_ledger_matches_what_every_socket_received(api: Api) -> None:
    """Every ledger entry reached each listed channel exactly once, as the identical frame text."""
    sandbox = api.server.sandbox
    topic = f"v2.users.{sandbox.agents[0].id}.conversations"
    _, ws_a = await connected_channel(api, [topic])
    _, ws_b = await connected_channel(api, [topic])
    async with ws_a, ws_b:
        for n in range(50):
            sandbox.publish(topic, {"seq": n})
        received = {}
        for name, ws in (("a", ws_a), ("b", ws_b)):
            texts = []
            while len(texts) < 50:
                async with asyncio.timeout(2):
                    text = await ws.recv()
                if json.loads(text)["topicName"] != "channel.metadata":
                    texts.append(text)
            received[name] = texts
    ledger = [e for e in sandbox.ledger if e.topic_name == topic]
    assert [e.text for e in ledger] == received["a"] == received["b"]
    assert all(len(e.channel_ids) == 2 for e in ledger)
    assert len({e.correlation_id for e in ledger}) == 50
    assert [json.loads(t)["eventBody"]["seq"] for t in received["a"]] == list(range(50))


async def test_a_stuck_socket_does_not_block_publishing(api: Api) -> None:
    """A client that stops reading delays nobody: publish returns at once, others get everything."""
    sandbox = api.server.sandbox
    topic = f"v2.users.{sandbox.agents[0].id}.presence"
    token = await api.token()
    channels = [await api.channel(token) for _ in range(2)]
    for channel in channels:
        assert (await api.subscribe(token, str(channel["id"]), [topic])).status_code == 200
    # Uncompressed, so the payload really fills the stuck client's buffers.
    stuck = await websockets.connect(str(channels[0]["connectUri"]), compression=None)
    reader = await websockets.connect(str(channels[1]["connectUri"]), compression=None)
    await wait_until(lambda: len(sandbox.links()) == 2)
    body = {"padding": "x" * 20_000}
    try:
        started = time.monotonic()
        for n in range(1000):  # 20 MB: far beyond what socket buffers hold for the stuck client
            sandbox.publish(topic, {**body, "seq": n})
        assert time.monotonic() - started < 1.0
        for n in range(1000):
            assert (await recv_event(reader, within=5))["eventBody"]["seq"] == n
        (stuck_link,) = sandbox.links(str(channels[0]["id"]))
        assert stuck_link.queued > 0
    finally:
        stuck.transport.abort()  # a polite close would wait behind 20 MB
        await reader.close()


async def test_second_socket_displaces_the_first_with_4000(api: Api) -> None:
    """Under "displace" a second WebSocket closes the first with 4000; the newcomer gets events."""
    sandbox = api.server.sandbox
    topic = f"v2.users.{sandbox.agents[0].id}.presence"
    channel, first = await connected_channel(api, [topic])
    second = await websockets.connect(str(channel["connectUri"]))
    async with first, second:
        await first.wait_closed()
        assert (first.close_code, first.close_reason) == (4000, "displaced by a new connection")
        sandbox.publish(topic, {"n": 1})
        assert (await recv_event(second))["eventBody"] == {"n": 1}
    assert sandbox.world.counters["sockets_displaced"] == 1


async def test_second_socket_allowed_gets_events_too() -> None:
    """Under "allow" both sockets stay open and both receive every event."""
    async with running(fast_config(second_socket="allow")) as (server, api):
        topic = f"v2.users.{server.sandbox.agents[0].id}.presence"
        channel, first = await connected_channel(api, [topic])
        second = await websockets.connect(str(channel["connectUri"]))
        async with first, second:
            await wait_until(lambda: len(server.sandbox.links()) == 2)
            emitted = server.sandbox.publish(topic, {"n": 1})
            assert emitted.channel_ids == (channel["id"],)
            assert (await recv_event(first))["eventBody"] == (await recv_event(second))["eventBody"]
            assert first.close_code is None


async def test_channel_expiry_closes_the_socket() -> None:
    """At expires the socket closes with 1000 "channel expired" and the channel is gone."""
    async with running(fast_config(channel_ttl=0.3)) as (_, api):
        token = await api.token()
        channel, ws = await connected_channel(api, [], token)
        async with ws:
            async with asyncio.timeout(2):
                await ws.wait_closed()
            assert (ws.close_code, ws.close_reason) == (1000, "channel expired")
        assert not await api.channel_exists(token, str(channel["id"]))
        with pytest.raises(InvalidStatus):
            await websockets.connect(str(channel["connectUri"]))


async def test_token_expiry_closes_its_channels() -> None:
    """When the creating token expires its channels close with 1000 "token expired"."""
    async with running(fast_config(token_ttl=0.3)) as (server, api):
        _, ws = await connected_channel(api, [])
        async with ws:
            async with asyncio.timeout(2):
                await ws.wait_closed()
            assert (ws.close_code, ws.close_reason) == (1000, "token expired")
        assert server.sandbox.world.channels == ()
        assert server.sandbox.world.removals[-1].cause == "token_expired"


async def test_server_shutdown_closes_sockets_with_1012() -> None:
    """Stopping the sandbox closes open WebSockets with 1012 (service restart)."""
    async with running(fast_config()) as (_, api):
        _, ws = await connected_channel(api, [])
    async with asyncio.timeout(2):
        await ws.wait_closed()
    assert ws.close_code == 1012
