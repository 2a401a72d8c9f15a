"""The media edge over real loopback: first call, persistent calls, timeouts, faults, statistics.

A minimal test-only softphone (:class:`EdgeTestPhone`) speaks the signalling protocol with
websockets and the media with aiortc through ``crmphone._webrtc``: it proceeds, answers the edge's
offer with an aiortc peer that sends a tone of its choosing, and captures what the edge sends.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

import pytest
import websockets
from aiortc import RTCSessionDescription
from sandbox_helpers import Api, fast_config, running, wait_until
from websockets.asyncio.client import ClientConnection, connect

from crmphone import _webrtc
from crmphone.audio import AudioCapture, Tone, _idle_track, _switch_track
from crmphone.sandbox import SandboxConfig, SandboxServer
from crmphone.sandbox.conversation import Phase

AGENT_TONES = (440, 660, 990, 550, 825, 1240, 620, 930, 1400, 700)
"""What the test agent says on each call: one tone per call, each at least a fifth away from the
one before, because the first ~80 ms the edge decodes on a call are the previous call's tail
(aiortc's jitter buffer releases its last packets only when new ones arrive)."""


class EdgeTestPhone:
    """A bare softphone for one agent: a signalling socket and (once set up) one peer connection."""

    def __init__(self, server: SandboxServer, api: Api, agent_id: str) -> None:
        self.server = server
        self.api = api
        self.agent_id = agent_id
        self.token = ""
        self.frames: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.ws: ClientConnection | None = None
        self.pc: Any = None
        self.sender: Any = None
        self.receiver: Any = None
        self.capture = AudioCapture(keep_seconds=1.0)
        self.connected = asyncio.Event()
        self.offers = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        self.token = str((await self.api.user_grant(self.agent_id))["access_token"])
        await self.open_socket()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close_socket()
        await self.close_media()

    # ------------------------------------------------------------------ signalling

    async def open_socket(self) -> None:
        """Create a streaming channel and connect its socket (a new one replaces the old)."""
        response = await self.api.http.post(
            "/api/v2/notifications/channels",
            params={"connectionType": "streaming"},
            headers=self.api.auth(self.token),
        )
        assert response.status_code == 200, response.text
        self.ws = await connect(response.json()["connectUri"])
        self._reader = asyncio.create_task(self._read(self.ws))

    async def close_socket(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)

    async def _read(self, ws: ClientConnection) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for text in ws:
                frame = json.loads(text)
                if frame.get("type") == "offer":
                    self.offers += 1
                await self.frames.put(frame)

    async def send(self, frame: dict[str, Any]) -> None:
        assert self.ws is not None
        await self.ws.send(json.dumps(frame))

    async def expect(self, kind: str, within: float = 5.0) -> dict[str, Any]:
        """The next frame, which must be of type ``kind``."""
        async with asyncio.timeout(within):
            frame = await self.frames.get()
        assert frame["type"] == kind, frame
        return frame

    def assert_no_frames(self) -> None:
        assert self.frames.empty(), self.frames.get_nowait()

    # ------------------------------------------------------------------ media

    async def accept(self, propose: dict[str, Any]) -> None:
        """proceed → offer → answer with a fresh peer connection → wait until it is connected."""
        await self.close_media()
        session_id = propose["sessionId"]
        await self.send({"type": "proceed", "sessionId": session_id})
        offer = await self.expect("offer")
        assert offer["sessionId"] == session_id
        self.connected = asyncio.Event()
        self.capture.reset()
        pc = self.pc = _webrtc.create_peer_connection(_webrtc.LOOPBACK_ICE)

        def on_state() -> None:
            if pc.connectionState == "connected":
                self.connected.set()

        pc.on("connectionstatechange", on_state)
        pc.on("track", lambda track: self._tasks.append(asyncio.create_task(self._consume(track))))
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer["sdp"], type="offer"))
        self.sender = pc.addTrack(_idle_track())
        self.receiver = pc.getTransceivers()[0].receiver
        answer = await pc.createAnswer()
        await _webrtc.set_local_description(pc, answer, _webrtc.LOOPBACK_ICE)
        await self.send({"type": "answer", "sessionId": session_id, "sdp": pc.localDescription.sdp})
        async with asyncio.timeout(5.0):
            await self.connected.wait()

    async def _consume(self, track: Any) -> None:
        await self.capture._consume(track)

    def play(self, frequency: int | None) -> None:
        """Send a tone from now on (None: nothing, the paused microphone)."""
        track = _idle_track() if frequency is None else Tone(frequency)._open_track()
        _switch_track(self.sender, track)

    async def hears(self, frequency: float, within: float = 3.0) -> None:
        """Wait until the captured audio is dominated by ``frequency``."""
        await wait_until(lambda: self.capture.has_tone(frequency), within)

    async def close_media(self) -> None:
        if self.pc is not None:
            await self.pc.close()
            self.pc = None
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    # ------------------------------------------------------------------ REST

    async def patch_agent(self, conversation_id: str, state: str) -> None:
        """PATCH the agent participant of the call (``connected`` answers)."""
        conversation = self.server.sandbox.calls.get(conversation_id)
        response = await self.api.http.patch(
            f"/api/v2/conversations/calls/{conversation_id}/participants/{conversation.agent.id}",
            json={"state": state},
            headers=self.api.auth(self.token),
        )
        assert response.status_code == 202, response.text


def persistent_states(server: SandboxServer, agent_id: str) -> list[str]:
    """The persistentState of every persistentconnection event published for the agent."""
    topic = f"v2.users.{agent_id}.persistentconnection"
    return [e.event_body["persistentState"] for e in server.sandbox.ledger if e.topic_name == topic]


def call_record(server: SandboxServer, agent_id: str, conversation_id: str) -> dict[str, Any]:
    """The edge's statistics record of one call."""
    for record in server.sandbox.edge.station_stats(agent_id)["calls"]:
        if record["conversationId"] == conversation_id:
            return dict(record)
    raise AssertionError(f"no media record for {conversation_id}")


async def hang_up(
    server: SandboxServer, agent_id: str, conversation_id: str, agent_tone: float | None = None
) -> dict[str, Any]:
    """The customer hangs up (once the edge hears ``agent_tone``); returns the call's record."""
    if agent_tone is not None:
        edge = server.sandbox.edge
        await wait_until(lambda: _near(edge.agent_tone_hz(agent_id), agent_tone))
    server.sandbox.calls.customer_hangs_up(conversation_id)
    return call_record(server, agent_id, conversation_id)


async def first_call(
    server: SandboxServer, phone: EdgeTestPhone, agent_tone: int | None = AGENT_TONES[0]
) -> tuple[str, dict[str, Any]]:
    """Place a call that the phone sets up with propose/offer/answer; returns id and propose."""
    agent_id = phone.agent_id
    conversation_id = await server.sandbox.calls.place_inbound(agent_id, auto=False)
    propose = await phone.expect("propose")
    await phone.accept(propose)
    phone.play(agent_tone)
    calls = server.sandbox.calls
    await wait_until(lambda: calls.get(conversation_id).phase is Phase.TALKING)
    return conversation_id, propose


def _near(found: float | None, expected: float) -> bool:
    return found is not None and abs(found - expected) <= 0.03 * expected


def media_config(**overrides: Any) -> SandboxConfig:
    return fast_config(**{"alerting_timeout": 5.0, **overrides})


# ---------------------------------------------------------------------- the persistent connection


async def test_ten_calls_ride_one_connection() -> None:
    """One offer/answer, then nine PATCH-answered calls: 1 peer connection, 1 DTLS handshake.

    Each call's caller tone (different per call) is heard by the phone, and the tone the phone
    sends on each call is what the edge records for it.
    """
    async with running(media_config()) as (server, api):
        agent = server.sandbox.agents[0]
        async with EdgeTestPhone(server, api, agent.id) as phone:
            conversation_id, propose = await first_call(server, phone)
            assert propose == {
                "type": "propose",
                "sessionId": propose["sessionId"],
                "conversationId": conversation_id,
                "purpose": "call",
                "autoAnswer": False,
                "persistentConnection": True,
                "stationId": agent.station_id,
            }
            conversation_ids = [conversation_id]
            record = call_record(server, agent.id, conversation_id)
            await phone.hears(record["callerToneHz"])
            await hang_up(server, agent.id, conversation_id, AGENT_TONES[0])
            phone.play(None)
            for agent_tone in AGENT_TONES[1:]:
                conversation_id = await server.sandbox.calls.place_inbound(agent.id, auto=False)
                conversation_ids.append(conversation_id)
                phone.capture.reset()
                phone.play(agent_tone)
                await phone.patch_agent(conversation_id, "connected")
                record = call_record(server, agent.id, conversation_id)
                assert record["overExistingConnection"] is True
                await phone.hears(record["callerToneHz"])
                await hang_up(server, agent.id, conversation_id, agent_tone)
                phone.play(None)
            phone.assert_no_frames()
            assert phone.offers == 1

        stats = server.sandbox.edge.station_stats(agent.id)
        assert stats["peerConnectionsCreated"] == 1
        assert stats["dtlsHandshakes"] == 1
        assert stats["callsWithNewConnection"] == 1
        assert stats["callsOverExistingConnection"] == 9
        records = stats["calls"]
        assert [r["conversationId"] for r in records] == conversation_ids
        assert len({r["callerToneHz"] for r in records}) == 10
        for record, agent_tone in zip(records, AGENT_TONES, strict=True):
            assert record["agentToneHz"] == pytest.approx(agent_tone, rel=0.03)
            assert record["answerLatencyMs"] is not None
        assert persistent_states(server, agent.id) == ["ACTIVE_CALL", "PERSISTED"] * 10
        latencies = [r["answerLatencyMs"] for r in records]
        print(f"\nloopback answer latency ms: first {latencies[0]}, persistent {latencies[1:]}")


async def test_idle_timeout_disconnects_and_the_next_call_proposes_again() -> None:
    """After the idle timeout the edge terminates (idle_timeout), publishes DISCONNECTED, and the
    next call is a first call again."""
    async with running(media_config(persistent_timeout=0.5)) as (server, api):
        agent = server.sandbox.agents[0]
        async with EdgeTestPhone(server, api, agent.id) as phone:
            conversation_id, propose = await first_call(server, phone)
            await hang_up(server, agent.id, conversation_id)
            terminate = await phone.expect("terminate", within=3.0)
            assert terminate == {
                "type": "terminate",
                "sessionId": propose["sessionId"],
                "reason": "idle_timeout",
            }
            topic = f"v2.users.{agent.id}.persistentconnection"
            events = [e for e in server.sandbox.ledger if e.topic_name == topic]
            assert [e.event_body["persistentState"] for e in events] == [
                "ACTIVE_CALL",
                "PERSISTED",
                "DISCONNECTED",
            ]
            assert events[2].emitted_at - events[1].emitted_at >= 0.5
            assert events[2].event_body["errorInfo"] is None
            assert server.sandbox.edge.station_stats(agent.id)["connection"] is None

            conversation_id, again = await first_call(server, phone)
            assert again["sessionId"] != propose["sessionId"]
            assert again["conversationId"] == conversation_id
        stats = server.sandbox.edge.station_stats(agent.id)
        assert (stats["peerConnectionsCreated"], stats["dtlsHandshakes"]) == (2, 2)
        assert stats["callsWithNewConnection"] == 2


async def test_persistent_setup_at_socket_open() -> None:
    """An agent with acceptOffQueue gets a silent auto-answered set-up at login; calls then ride it."""
    async with running(media_config(accept_off_queue=True)) as (server, api):
        agent = server.sandbox.agents[0]
        async with EdgeTestPhone(server, api, agent.id) as phone:
            propose = await phone.expect("propose")
            assert propose["purpose"] == "persistent-setup"
            assert propose["autoAnswer"] is True
            assert propose["persistentConnection"] is True
            with pytest.raises(Exception, match="not found"):
                server.sandbox.calls.get(propose["conversationId"])
            await phone.accept(propose)
            await wait_until(lambda: persistent_states(server, agent.id) == ["PERSISTED"])

            conversation_id = await server.sandbox.calls.place_inbound(agent.id, auto=False)
            phone.play(AGENT_TONES[0])
            await phone.patch_agent(conversation_id, "connected")
            await phone.hears(call_record(server, agent.id, conversation_id)["callerToneHz"])
            await hang_up(server, agent.id, conversation_id)
            phone.assert_no_frames()
        stats = server.sandbox.edge.station_stats(agent.id)
        assert stats["peerConnectionsCreated"] == 1
        assert stats["callsOverExistingConnection"] == 1
        assert stats["callsWithNewConnection"] == 0
        assert persistent_states(server, agent.id) == ["PERSISTED", "ACTIVE_CALL", "PERSISTED"]


async def test_station_without_persistence_terminates_after_each_call() -> None:
    """persistent=False: propose says so, every call ends with terminate(call_ended), no events."""
    async with running(media_config()) as (server, api):
        agent = server.sandbox.agents[0]
        server.sandbox.edge.configure(agent.id, persistent=False)
        async with EdgeTestPhone(server, api, agent.id) as phone:
            for _ in range(2):
                conversation_id, propose = await first_call(server, phone)
                assert propose["persistentConnection"] is False
                await phone.hears(call_record(server, agent.id, conversation_id)["callerToneHz"])
                await hang_up(server, agent.id, conversation_id)
                terminate = await phone.expect("terminate")
                assert (terminate["sessionId"], terminate["reason"]) == (
                    propose["sessionId"],
                    "call_ended",
                )
        stats = server.sandbox.edge.station_stats(agent.id)
        assert stats["persistentEnabled"] is False
        assert stats["peerConnectionsCreated"] == 2
        assert stats["callsWithNewConnection"] == 2
        assert persistent_states(server, agent.id) == []


async def test_peer_connection_closed_without_terminate_is_a_failure() -> None:
    """The phone drops its peer connection while its socket stays open: the edge reports FAILED,
    sends terminate(media_failure) and the call on it ends."""
    async with running(media_config()) as (server, api):
        agent = server.sandbox.agents[0]
        async with EdgeTestPhone(server, api, agent.id) as phone:
            conversation_id, propose = await first_call(server, phone)
            await phone.close_media()
            terminate = await phone.expect("terminate")
            assert (terminate["sessionId"], terminate["reason"]) == (
                propose["sessionId"],
                "media_failure",
            )
            call = await server.sandbox.calls.wait_closed(conversation_id)
            assert call.agent.disconnect_type == "client"
        assert persistent_states(server, agent.id) == ["ACTIVE_CALL", "FAILED"]


@pytest.mark.parametrize(
    ("reason", "state"), [("manual", "DISCONNECTED"), ("media_failure", "FAILED")]
)
async def test_client_terminate_during_a_call_ends_the_call(reason: str, state: str) -> None:
    """terminate during a call closes the connection, hangs the agent up (client) and says why."""
    async with running(media_config()) as (server, api):
        agent = server.sandbox.agents[0]
        async with EdgeTestPhone(server, api, agent.id) as phone:
            conversation_id, propose = await first_call(server, phone)
            edge = server.sandbox.edge
            await wait_until(lambda: _near(edge.agent_tone_hz(agent.id), AGENT_TONES[0]))
            await phone.send(
                {"type": "terminate", "sessionId": propose["sessionId"], "reason": reason}
            )
            call = await server.sandbox.calls.wait_closed(conversation_id)
            assert call.agent.disconnect_type == "client"
            assert call.agent.connected_time is not None
            phone.assert_no_frames()
        assert persistent_states(server, agent.id) == ["ACTIVE_CALL", state]
        last = [e for e in server.sandbox.ledger if e.topic_name.endswith("persistentconnection")][
            -1
        ]
        assert last.event_body["userId"] == agent.id
        assert last.event_body["stationId"] == agent.station_id
        if state == "FAILED":
            assert last.event_body["errorInfo"]["code"] == "media_failure"
        else:
            assert last.event_body["errorInfo"] is None
        stats = server.sandbox.edge.station_stats(agent.id)
        assert stats["connection"] is None
        assert stats["calls"][0]["agentToneHz"] == pytest.approx(AGENT_TONES[0], rel=0.03)


async def test_rejecting_the_proposal_rejects_the_call() -> None:
    """reject → the call ends with the agent's disconnectType client; no peer connection is made."""
    async with running(media_config()) as (server, api):
        agent = server.sandbox.agents[0]
        async with EdgeTestPhone(server, api, agent.id) as phone:
            conversation_id = await server.sandbox.calls.place_inbound(agent.id, auto=False)
            propose = await phone.expect("propose")
            await phone.send({"type": "reject", "sessionId": propose["sessionId"]})
            call = await server.sandbox.calls.wait_closed(conversation_id)
            assert call.agent.disconnect_type == "client"
            assert call.agent.connected_time is None
            # The session is gone: a late proceed is refused.
            await phone.send({"type": "proceed", "sessionId": propose["sessionId"]})
            error = await phone.expect("error")
            assert error["code"] == "session.not.found"
        assert server.sandbox.edge.station_stats(agent.id)["peerConnectionsCreated"] == 0


async def test_outbound_call_sets_up_the_agents_own_leg() -> None:
    """The agent dials: propose(autoAnswer=true); the media binds once the customer answers."""
    async with running(media_config(talk_seconds=30.0)) as (server, api):
        agent = server.sandbox.agents[0]
        async with EdgeTestPhone(server, api, agent.id) as phone:
            response = await api.http.post(
                "/api/v2/conversations/calls",
                json={"phoneNumber": "+15550001111"},
                headers=api.auth(phone.token),
            )
            conversation_id = response.json()["id"]
            propose = await phone.expect("propose")
            assert (propose["conversationId"], propose["autoAnswer"]) == (conversation_id, True)
            await phone.accept(propose)
            phone.play(AGENT_TONES[0])
            await phone.hears(call_record(server, agent.id, conversation_id)["callerToneHz"])
            edge = server.sandbox.edge
            await wait_until(lambda: _near(edge.agent_tone_hz(agent.id), AGENT_TONES[0]))
            await phone.patch_agent(conversation_id, "disconnected")
            record = call_record(server, agent.id, conversation_id)
        assert record["agentToneHz"] == pytest.approx(AGENT_TONES[0], rel=0.03)
        assert persistent_states(server, agent.id) == ["ACTIVE_CALL", "PERSISTED"]


# ---------------------------------------------------------------------- the stale connection


@pytest.mark.parametrize("relay", [False, True])
async def test_stale_client_makes_calls_fail_until_the_timeout(relay: bool) -> None:
    """The client vanishes without terminate: the edge keeps believing in the connection, calls to
    the agent fail (alerting timeout) with nothing on the new socket, until the idle timeout;
    then the next call proposes again. The media is dropped (blackholed in the relay)."""
    config = media_config(persistent_timeout=1.5, alerting_timeout=0.3, media_relay=relay)
    async with running(config) as (server, api):
        agent = server.sandbox.agents[0]
        async with EdgeTestPhone(server, api, agent.id) as phone:
            conversation_id, propose = await first_call(server, phone)
            stale_id = propose["sessionId"]
            await hang_up(server, agent.id, conversation_id)
            response = await api.http.post(
                "/sandbox/faults", json={"kind": "stale_client", "agentId": agent.id}
            )
            assert response.status_code == 200, response.text
            assert response.json()["applied"]["kind"] == "stale_client"
            assert phone.ws is not None
            await phone.ws.wait_closed()
            assert phone.ws.close_code == 1006  # aborted: no close frame
            connection = server.sandbox.edge.station_stats(agent.id)["connection"]
            assert connection["mediaDropped"] is True
            if relay:
                assert connection["relay"]["blackhole"] is True
            await phone.open_socket()  # the softphone comes back; the platform still believes

            failed = await server.sandbox.calls.place_inbound(agent.id, auto=False)
            call = await server.sandbox.calls.wait_closed(failed)
            assert call.agent.disconnect_type == "timeout"
            record = call_record(server, agent.id, failed)
            assert record["overExistingConnection"] is True
            assert record["connectedAt"] is None
            phone.assert_no_frames()
            assert persistent_states(server, agent.id)[-1] == "PERSISTED"

            await wait_until(lambda: persistent_states(server, agent.id)[-1] == "DISCONNECTED", 3.0)
            # The platform tells the agent's (new) socket that the connection it believed in is
            # gone; then the next call is a first call again.
            terminate = await phone.expect("terminate")
            assert (terminate["sessionId"], terminate["reason"]) == (stale_id, "idle_timeout")
            conversation_id, _ = await first_call(server, phone)
            assert call_record(server, agent.id, conversation_id)["overExistingConnection"] is False
        assert persistent_states(server, agent.id) == [
            "ACTIVE_CALL",
            "PERSISTED",
            "DISCONNECTED",
            "ACTIVE_CALL",
        ]


# ---------------------------------------------------------------------- the relay


async def test_media_delay_shows_in_the_first_rtp_of_a_patch_answered_call() -> None:
    """With 50 ms each way, the agent's first RTP (sent when the caller is heard) trails the answer
    by one round trip; the relay saw exactly one DTLS ClientHello for two calls."""
    async with running(media_config(media_delay=0.05)) as (server, api):
        agent = server.sandbox.agents[0]
        async with EdgeTestPhone(server, api, agent.id) as phone:
            conversation_id, _ = await first_call(server, phone)
            await hang_up(server, agent.id, conversation_id, AGENT_TONES[0])
            phone.play(None)
            # Quiet period: the first call's last packets spend 50 ms in the relay, and nothing
            # announces their landing. Arriving during the next call they would pass for its
            # first RTP.
            await asyncio.sleep(0.25)

            conversation_id = await server.sandbox.calls.place_inbound(agent.id, auto=False)
            answered_at = datetime.now(UTC)
            await phone.patch_agent(conversation_id, "connected")
            heard = await _webrtc.first_rtp_at(phone.receiver, after=answered_at, within=2.0)
            assert heard is not None
            phone.play(AGENT_TONES[1])  # the agent answers the caller's first sound
            await phone.hears(call_record(server, agent.id, conversation_id)["callerToneHz"])
            await hang_up(server, agent.id, conversation_id)

            stats = server.sandbox.edge.station_stats(agent.id)
            relay = stats["connection"]["relay"]
            assert relay["oneWayDelay"] == 0.05
            hellos = relay["toEdge"]["dtlsClientHellos"] + relay["toClient"]["dtlsClientHellos"]
            assert hellos == 1

        record = call_record(server, agent.id, conversation_id)
        connected = datetime.fromisoformat(record["connectedAt"])
        first_rtp = datetime.fromisoformat(record["firstAgentRtpAt"])
        round_trip_ms = (first_rtp - connected).total_seconds() * 1000
        print(
            f"\nrelay 2 x 50 ms: answer -> agent's first RTP {round_trip_ms:.1f} ms; answer "
            f"latency fresh {stats['calls'][0]['answerLatencyMs']} ms, "
            f"persistent {record['answerLatencyMs']} ms"
        )
        assert 95 <= round_trip_ms <= 300
        assert record["answerLatencyMs"] >= 100
        fresh = stats["calls"][0]["answerLatencyMs"]
        assert fresh > record["answerLatencyMs"]


async def test_media_blackhole_drops_the_path_and_heals() -> None:
    """media_blackhole(on) loses every datagram of the station's path; off lets media through."""
    async with running(media_config(media_relay=True)) as (server, api):
        agent = server.sandbox.agents[0]
        async with EdgeTestPhone(server, api, agent.id) as phone:
            conversation_id, _ = await first_call(server, phone)
            await phone.hears(call_record(server, agent.id, conversation_id)["callerToneHz"])
            server.sandbox.faults.media_blackhole(agent.id, on=True)
            relay = server.sandbox.edge.station_stats(agent.id)["connection"]["relay"]
            assert relay["blackhole"] is True
            dropped = relay["toEdge"]["dropped"]
            await wait_until(
                lambda: (
                    server.sandbox.edge.station_stats(agent.id)["connection"]["relay"]["toEdge"][
                        "dropped"
                    ]
                    > dropped + 5
                )
            )
            server.sandbox.faults.media_blackhole(agent.id, on=False)
            phone.capture.reset()
            await phone.hears(call_record(server, agent.id, conversation_id)["callerToneHz"])


# ---------------------------------------------------------------------- statistics and lifecycle


async def test_stats_endpoint_reports_calls() -> None:
    """GET /sandbox/stats: counters per station and one record per call, with every field."""
    async with running(media_config()) as (server, api):
        agent = server.sandbox.agents[0]
        async with EdgeTestPhone(server, api, agent.id) as phone:
            conversation_id, _ = await first_call(server, phone)
            await phone.hears(call_record(server, agent.id, conversation_id)["callerToneHz"])
            await hang_up(server, agent.id, conversation_id)
            response = await api.http.get("/sandbox/stats")
        station = response.json()["stations"][0]
        assert station["userId"] == agent.id
        assert station["persistentState"] == "PERSISTED"
        assert station["connection"]["phase"] == "connected"
        assert station["connection"]["peerConnectionState"] == "connected"
        (record,) = station["calls"]
        assert set(record) == {
            "conversationId",
            "overExistingConnection",
            "callerToneHz",
            "alertingAt",
            "connectedAt",
            "firstAgentRtpAt",
            "answerLatencyMs",
            "agentToneHz",
        }
        alerting = datetime.fromisoformat(record["alertingAt"])
        connected = datetime.fromisoformat(record["connectedAt"])
        first_rtp = datetime.fromisoformat(record["firstAgentRtpAt"])
        assert alerting < connected
        assert alerting < first_rtp
        expected = (max(connected, first_rtp) - alerting).total_seconds() * 1000
        assert record["answerLatencyMs"] == pytest.approx(expected, abs=0.01)
        assert record["callerToneHz"] in range(300, 3001, 100)


async def test_closing_the_sandbox_closes_every_connection() -> None:
    """Leaving the server closes the edge's peer connections and leaves no edge task behind."""
    async with running(media_config()) as (server, api):
        agent = server.sandbox.agents[0]
        phone = EdgeTestPhone(server, api, agent.id)
        await phone.__aenter__()
        await first_call(server, phone)
    try:
        assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("sandbox-edge")]
        await wait_until(lambda: phone.pc.connectionState == "closed", 5.0)
    finally:
        await phone.__aexit__(None, None, None)
