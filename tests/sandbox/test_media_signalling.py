"""The signalling wire of the media edge, and its settings: frames, validation, sockets (no media)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import websockets
from sandbox_helpers import Api, fast_config, recv_event, recv_frame, running
from websockets.asyncio.client import connect

from crmphone.errors import ConfigError
from crmphone.sandbox import SandboxConfig
from crmphone.sandbox.signalling import (
    Answer,
    FrameError,
    Ping,
    Proceed,
    Reject,
    Terminate,
    TerminateReason,
    error_frame,
    parse_client_frame,
    propose_frame,
)
from crmphone.sandbox.world import ACCEPT_OFF_QUEUE


async def _streaming_uri(api: Api, token: str) -> str:
    response = await api.http.post(
        "/api/v2/notifications/channels",
        params={"connectionType": "streaming"},
        headers=api.auth(token),
    )
    assert response.status_code == 200, response.text
    return str(response.json()["connectUri"])


async def _user_token(api: Api, agent_id: str) -> str:
    return str((await api.user_grant(agent_id))["access_token"])


# ---------------------------------------------------------------------- frames


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"type":"proceed","sessionId":"s1"}', Proceed("s1")),
        ('{"type":"reject","sessionId":"s1"}', Reject("s1")),
        ('{"type":"answer","sessionId":"s1","sdp":"v=0\\r\\n"}', Answer("s1", "v=0\r\n")),
        (
            '{"type":"terminate","sessionId":"s1","reason":"logout"}',
            Terminate("s1", TerminateReason.LOGOUT),
        ),
        ('{"type":"ping","id":7}', Ping(7)),
        ('{"type":"ping","id":"abc"}', Ping("abc")),
    ],
)
def test_client_frames_parse_into_messages(text: str, expected: object) -> None:
    """Each client frame type becomes its frozen message value."""
    assert parse_client_frame(text) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("not json", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ('{"type":"hello"}', "Unknown frame type"),
        ('{"type":"proceed"}', "sessionId"),
        ('{"type":"answer","sessionId":"s1"}', "sdp"),
        ('{"type":"answer","sessionId":"s1","sdp":"nonsense"}', "sdp"),
        ('{"type":"terminate","sessionId":"s1","reason":"call_ended"}', "reason"),
        ('{"type":"ping"}', "id"),
        ('{"type":"ping","id":true}', "id"),
    ],
)
def test_malformed_client_frames_are_refused(text: str, fragment: str) -> None:
    """Frames that break the protocol raise FrameError (code bad.request) naming the problem."""
    with pytest.raises(FrameError, match=fragment) as caught:
        parse_client_frame(text)
    assert caught.value.code == "bad.request"


def test_server_frames_have_the_documented_shape() -> None:
    """propose carries every attribute of the Jingle proposal; error omits an unknown session."""
    propose = json.loads(
        propose_frame(
            session_id="s",
            conversation_id="c",
            purpose="call",
            auto_answer=False,
            persistent_connection=True,
            station_id="st",
        )
    )
    assert propose == {
        "type": "propose",
        "sessionId": "s",
        "conversationId": "c",
        "purpose": "call",
        "autoAnswer": False,
        "persistentConnection": True,
        "stationId": "st",
    }
    assert json.loads(error_frame("bad.request", "no")) == {
        "type": "error",
        "code": "bad.request",
        "message": "no",
    }


# ---------------------------------------------------------------------- settings


def test_media_settings_have_production_defaults() -> None:
    """Persistent connections on, 10 minutes idle, no off-queue permission, no relay, loopback."""
    config = SandboxConfig()
    assert config.persistent_connections is True
    assert config.persistent_timeout == 600.0
    assert config.accept_off_queue is False
    assert config.media_relay is False
    assert config.media_delay == 0.0
    assert config.media_host == "127.0.0.1"
    assert config.uses_relay is False
    assert SandboxConfig(media_delay=0.05).uses_relay is True


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("persistent_connections", "yes"),
        ("persistent_timeout", 0),
        ("persistent_timeout", float("nan")),
        ("accept_off_queue", 1),
        ("media_relay", None),
        ("media_delay", -0.1),
        ("media_host", "localhost"),
        ("media_host", ""),
    ],
)
def test_media_settings_are_validated(key: str, value: Any) -> None:
    """A bad media setting is a ConfigError naming the key."""
    with pytest.raises(ConfigError, match=f"sandbox.{key}"):
        SandboxConfig.from_mapping({key: value})


# ---------------------------------------------------------------------- REST and sockets


async def test_streaming_channels_need_a_user_token() -> None:
    """connectionType=streaming answers a /stream/channels URI to users, 400 to client tokens."""
    async with running(fast_config()) as (server, api):
        client_token = await api.token()
        response = await api.http.post(
            "/api/v2/notifications/channels",
            params={"connectionType": "streaming"},
            headers=api.auth(client_token),
        )
        assert response.status_code == 400
        assert response.json()["code"] == "bad.request"
        agent = server.sandbox.agents[0]
        response = await api.http.post(
            "/api/v2/notifications/channels",
            params={"connectionType": "streaming"},
            headers=api.auth(await _user_token(api, agent.id)),
        )
        body = response.json()
        assert body["connectUri"] == f"ws://127.0.0.1:{server.port}/stream/channels/{body['id']}"
        assert body["expires"].endswith("Z")


async def test_unknown_streaming_channel_is_refused_with_404() -> None:
    """The handshake for a channel that does not exist gets HTTP 404, as for notification sockets."""
    async with running(fast_config()) as (server, _):
        with pytest.raises(websockets.InvalidStatus) as caught:
            async with connect(f"ws://127.0.0.1:{server.port}/stream/channels/nope"):
                pass
        assert caught.value.response.status_code == 404


async def test_ping_unknown_sessions_and_bad_frames_get_answers() -> None:
    """ping → pong with its id; a frame for no session → session.not.found; junk → bad.request."""
    async with running(fast_config()) as (server, api):
        agent = server.sandbox.agents[0]
        uri = await _streaming_uri(api, await _user_token(api, agent.id))
        async with connect(uri) as ws:
            await ws.send(json.dumps({"type": "ping", "id": "p-1"}))
            assert await recv_frame(ws) == {"type": "pong", "id": "p-1"}
            await ws.send(json.dumps({"type": "proceed", "sessionId": "nobody"}))
            frame = await recv_frame(ws)
            assert frame["type"] == "error"
            assert frame["code"] == "session.not.found"
            assert frame["sessionId"] == "nobody"
            await ws.send("{{{")
            frame = await recv_frame(ws)
            assert (frame["type"], frame["code"]) == ("error", "bad.request")
            await ws.send(b"\x00binary")
            assert (await recv_frame(ws))["code"] == "bad.request"


async def test_a_second_signalling_socket_displaces_the_first() -> None:
    """One signalling socket per agent: the newcomer wins, the first is closed with 4000."""
    async with running(fast_config()) as (server, api):
        agent = server.sandbox.agents[0]
        token = await _user_token(api, agent.id)
        first_uri = await _streaming_uri(api, token)
        second_uri = await _streaming_uri(api, token)
        async with connect(first_uri) as first, connect(second_uri) as second:
            with pytest.raises(websockets.ConnectionClosed):
                await recv_frame(first)
            assert first.close_code == 4000
            assert first.close_reason == "displaced by a new connection"
            await second.send(json.dumps({"type": "ping", "id": 1}))
            assert await recv_frame(second) == {"type": "pong", "id": 1}
            links = server.sandbox.edge.signalling.links()
            assert [link.agent_id for link in links] == [agent.id]
        stats = server.sandbox.edge.station_stats(agent.id)
        assert stats["signallingConnected"] is False


async def test_station_and_permissions_reflect_the_edge_configuration() -> None:
    """stations/{id} shows webRtcPersistentEnabled per station; users/me lists acceptOffQueue."""
    async with running(fast_config(accept_off_queue=True)) as (server, api):
        first, second = server.sandbox.agents[:2]
        server.sandbox.edge.configure(second.id, persistent=False, accept_off_queue=False)
        token = await api.token()
        for agent, enabled in ((first, True), (second, False)):
            response = await api.http.get(
                f"/api/v2/stations/{agent.station_id}", headers=api.auth(token)
            )
            assert response.json()["webRtcPersistentEnabled"] is enabled
        for agent, granted in ((first, True), (second, False)):
            response = await api.http.get(
                "/api/v2/users/me",
                params={"expand": "station,authorization"},
                headers=api.auth(await _user_token(api, agent.id)),
            )
            body = response.json()
            assert body["station"]["effectiveStation"]["id"] == agent.station_id
            assert (ACCEPT_OFF_QUEUE in body["authorization"]["permissions"]) is granted


async def test_persistentconnection_topic_is_accepted_and_delivered() -> None:
    """A channel may subscribe to v2.users.{id}.persistentconnection and gets its events."""
    async with running(fast_config()) as (server, api):
        agent = server.sandbox.agents[0]
        token = await api.token()
        channel = await api.channel(token)
        topic = f"v2.users.{agent.id}.persistentconnection"
        response = await api.subscribe(token, channel["id"], [topic])
        assert response.json()["entities"] == [{"id": topic, "state": "Permitted"}]
        async with connect(channel["connectUri"]) as ws:
            server.sandbox.publish(topic, {"persistentState": "PERSISTED"})
            event = await recv_event(ws)
            assert event["topicName"] == topic


async def test_media_faults_validate_their_target() -> None:
    """stale_client needs a softphone; media_blackhole needs the relay; bad JSON params are 400."""
    async with running(fast_config()) as (server, api):
        agent = server.sandbox.agents[0]
        response = await api.http.post(
            "/sandbox/faults", json={"kind": "stale_client", "agentId": agent.id}
        )
        assert response.status_code == 400
        assert "no softphone" in response.json()["message"]
        response = await api.http.post(
            "/sandbox/faults", json={"kind": "media_blackhole", "agentId": agent.id}
        )
        assert response.status_code == 400
        assert "media_relay" in response.json()["message"]
        response = await api.http.post(
            "/sandbox/faults", json={"kind": "stale_client", "agentId": "nobody"}
        )
        assert response.status_code == 404
        response = await api.http.post(
            "/sandbox/faults", json={"kind": "media_blackhole", "agentId": agent.id, "on": "no"}
        )
        assert response.status_code == 400
    async with running(fast_config(media_relay=True)) as (server, api):
        agent = server.sandbox.agents[0]
        response = await api.http.post(
            "/sandbox/faults", json={"kind": "media_blackhole", "agentId": agent.id, "on": True}
        )
        assert response.status_code == 200, response.text
        applied = response.json()["applied"]
        assert applied["kind"] == "media_blackhole"
        assert applied["params"] == {"agent_id": agent.id, "on": True}


async def test_stats_list_every_station_before_any_call() -> None:
    """GET /sandbox/stats has one entry per station, with zero counters and no calls."""
    async with running(fast_config()) as (server, api):
        response = await api.http.get("/sandbox/stats")
        assert response.status_code == 200
        stations = response.json()["stations"]
        assert [s["userId"] for s in stations] == [a.id for a in server.sandbox.agents]
        first = stations[0]
        assert first == {
            "stationId": server.sandbox.agents[0].station_id,
            "userId": server.sandbox.agents[0].id,
            "persistentState": "UNKNOWN",
            "persistentEnabled": True,
            "timeoutSeconds": 600.0,
            "acceptOffQueue": False,
            "signallingConnected": False,
            "connection": None,
            "peerConnectionsCreated": 0,
            "dtlsHandshakes": 0,
            "callsOverExistingConnection": 0,
            "callsWithNewConnection": 0,
            "calls": [],
        }


async def test_automatic_calls_wait_for_an_online_softphone() -> None:
    """An automatic call is answered for an agent without a softphone, not for one that is online."""
    async with running(fast_config(alerting_timeout=0.3)) as (server, api):
        sandbox = server.sandbox
        offline, online = sandbox.agents[:2]
        uri = await _streaming_uri(api, await _user_token(api, online.id))
        async with connect(uri) as ws:
            answered = await sandbox.calls.place_inbound(offline.id)
            proposed = await sandbox.calls.place_inbound(online.id)
            frame = await recv_frame(ws)
            assert (frame["type"], frame["conversationId"]) == ("propose", proposed)
            done = await sandbox.calls.wait_closed(answered)
            assert done.agent.connected_time is not None
            timed_out = await sandbox.calls.wait_closed(proposed)
            assert timed_out.agent.connected_time is None
            assert timed_out.agent.disconnect_type == "timeout"
            # The proposal is withdrawn with the call.
            frame = await recv_frame(ws)
            assert frame == {
                "type": "terminate",
                "sessionId": frame["sessionId"],
                "reason": "call_ended",
            }


async def test_an_unanswered_proposal_follows_the_agent_to_a_new_socket() -> None:
    """A propose made to a socket that a newer one displaced is made again on the newer one."""
    async with running(fast_config()) as (server, api):
        agent = server.sandbox.agents[0]
        token = await _user_token(api, agent.id)
        async with connect(await _streaming_uri(api, token)) as first:
            conversation_id = await server.sandbox.calls.place_inbound(agent.id, auto=False)
            proposed = await recv_frame(first)
            assert proposed["conversationId"] == conversation_id
            async with connect(await _streaming_uri(api, token)) as second:
                assert await recv_frame(second) == proposed
                await second.send(
                    json.dumps({"type": "reject", "sessionId": proposed["sessionId"]})
                )
                call = await server.sandbox.calls.wait_closed(conversation_id)
                assert call.agent.disconnect_type == "client"
