"""The softphone against the sandbox and its media edge: real sockets, real aiortc, real audio."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from crmphone._webrtc import LOOPBACK_ICE, sdp_candidates
from crmphone.audio import AudioCapture, Tone
from crmphone.events import (
    ConnectionState,
    DownReason,
    PersistentConnectionDown,
    PersistentConnectionUp,
)
from crmphone.phone import CallInProgressError, PhoneSettings, Softphone
from crmphone.phone.softphone import PhoneUpdate
from crmphone.platform import PlatformClient
from crmphone.sandbox import SandboxServer
from crmphone.testing import fast_channel_settings, fast_sandbox_config, sign_in_sandbox_agent
from crmphone.testing.capture import LoopbackCapture

AGENT_TONE = 700.0

pytestmark = pytest.mark.timeout(90)


class Recorder:
    """Collects a phone's updates in the background."""

    def __init__(self, phone: Softphone) -> None:
        self.updates: list[PhoneUpdate] = []
        self._changed = asyncio.Event()
        self._task = asyncio.create_task(self._run(phone))

    async def _run(self, phone: Softphone) -> None:
        async for update in phone.updates():
            self.updates.append(update)
            self._changed.set()

    def of(self, kind: type) -> list[Any]:
        return [u for u in self.updates if isinstance(u, kind)]

    async def wait_for(self, predicate: Callable[[], bool], within: float = 10.0) -> None:
        async with asyncio.timeout(within):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

    async def close(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


@asynccontextmanager
async def agent_phone(
    server: SandboxServer, *, agent: int = 0, sink: AudioCapture | None = None, **settings: Any
) -> AsyncIterator[tuple[Softphone, Recorder]]:
    agent_id = server.sandbox.agents[agent].id
    tokens = await sign_in_sandbox_agent(server.base_url, agent_id)
    values: dict[str, Any] = {
        "auto_answer": True,
        "ice": LOOPBACK_ICE,
        "channel": fast_channel_settings(),
    }
    values.update(settings)
    async with (
        PlatformClient(api_base=server.base_url, tokens=tokens) as client,
        Softphone(
            client,
            settings=PhoneSettings(**values),
            source=Tone(AGENT_TONE),
            sink=sink or AudioCapture(),
        ) as phone,
    ):
        recorder = Recorder(phone)
        await asyncio.sleep(0)
        try:
            yield phone, recorder
        finally:
            await recorder.close()


@asynccontextmanager
async def sandbox(**overrides: Any) -> AsyncIterator[SandboxServer]:
    values: dict[str, Any] = {"talk_seconds": 0.6, "alerting_timeout": 5.0}
    values.update(overrides)
    async with SandboxServer(fast_sandbox_config(**values), host="127.0.0.1", port=0) as server:
        yield server


async def call_and_wait(server: SandboxServer, agent_id: str) -> str:
    conversation_id = await server.sandbox.calls.place_inbound(agent_id, auto=True)
    await server.sandbox.calls.wait_closed(conversation_id)
    return conversation_id


def station(server: SandboxServer, agent_id: str) -> dict[str, Any]:
    stats: dict[str, Any] = server.sandbox.edge.station_stats(agent_id)
    return stats


async def test_ten_calls_ride_one_connection_with_audio_both_ways() -> None:
    sink = AudioCapture()
    async with sandbox(talk_seconds=0.8) as server, agent_phone(server, sink=sink) as (phone, rec):
        agent_id = phone.agent_id
        heard: list[tuple[int, float | None]] = []
        with LoopbackCapture() as capture:
            for _ in range(10):
                conversation_id = await server.sandbox.calls.place_inbound(agent_id, auto=True)
                await rec.wait_for(lambda: phone.status.connection is ConnectionState.ACTIVE_CALL)
                sink.reset()
                await server.sandbox.calls.wait_closed(conversation_id)
                record = next(
                    c
                    for c in station(server, agent_id)["calls"]
                    if c["conversationId"] == conversation_id
                )
                heard.append((record["callerToneHz"], sink.dominant_frequency()))
                await rec.wait_for(lambda: phone.status.connection is ConnectionState.PERSISTED)
            summary = capture.summary()
        stats = station(server, agent_id)
        assert stats["peerConnectionsCreated"] == 1
        assert stats["dtlsHandshakes"] == 1
        assert stats["callsWithNewConnection"] == 1
        assert stats["callsOverExistingConnection"] == 9
        # The wire agrees: one DTLS handshake on loopback for all ten calls. Only flows of this
        # phone's media (its port, or the edge's) count, so other traffic on lo cannot interfere.
        media = phone._media
        assert media is not None
        ports = {
            sdp_candidates(media._pc.localDescription.sdp)[0][1],
            sdp_candidates(media._pc.remoteDescription.sdp)[0][1],
        }
        ours = {flow: counts for flow, counts in summary.flows.items() if set(flow) & ports}
        assert summary.kernel_drops == 0
        assert [c.dtls_client_hellos for c in ours.values() if c.dtls_client_hellos] == [1]
        assert sum(c.rtp_packets for c in ours.values()) > 10 * 2 * 20  # audio both ways
        # each caller's distinct tone reached the agent, and the agent's tone reached the edge
        assert len({tone for tone, _ in heard}) == 10
        for tone, measured in heard:
            assert measured is not None
            assert measured == pytest.approx(tone, rel=0.03)
        for call in stats["calls"]:
            assert call["agentToneHz"] == pytest.approx(AGENT_TONE, rel=0.03)
        ups = rec.of(PersistentConnectionUp)
        assert [(u.via, u.conversation_id is not None) for u in ups] == [("first_call", True)]
        # calls over the live connection were answered fast (no set-up): loopback, generous bound
        over = [c["answerLatencyMs"] for c in stats["calls"] if c["overExistingConnection"]]
        assert max(over) < 250


async def test_inactivity_timeout_closes_and_the_next_call_sets_up_again() -> None:
    async with (
        sandbox(persistent_timeout=30.0) as server,
        agent_phone(server, inactivity_timeout=0.6) as (phone, rec),
    ):
        await call_and_wait(server, phone.agent_id)
        await rec.wait_for(lambda: bool(rec.of(PersistentConnectionDown)))
        [down] = rec.of(PersistentConnectionDown)
        assert down.reason is DownReason.IDLE_TIMEOUT
        # we told the platform: it does not keep a stale connection
        await rec.wait_for(
            lambda: station(server, phone.agent_id)["persistentState"] == "DISCONNECTED"
        )
        await call_and_wait(server, phone.agent_id)
        stats = station(server, phone.agent_id)
        assert stats["peerConnectionsCreated"] == 2
        assert stats["callsWithNewConnection"] == 2
        assert len(rec.of(PersistentConnectionUp)) == 2


async def test_stop_during_a_call_is_refused_then_forced() -> None:
    async with sandbox(talk_seconds=30) as server, agent_phone(server) as (phone, rec):
        conversation_id = await server.sandbox.calls.place_inbound(phone.agent_id, auto=True)
        await rec.wait_for(lambda: phone.status.connection is ConnectionState.ACTIVE_CALL)
        with pytest.raises(CallInProgressError, match="force=True"):
            await phone.stop()
        assert phone.status.connection is ConnectionState.ACTIVE_CALL
        await phone.stop(force=True)
        await rec.wait_for(lambda: bool(rec.of(PersistentConnectionDown)))
        [down] = rec.of(PersistentConnectionDown)
        assert down.reason is DownReason.MANUAL
        assert down.dropped_conversation_id == conversation_id
        conversation = await asyncio.wait_for(server.sandbox.calls.wait_closed(conversation_id), 5)
        assert conversation.agent.disconnect_type == "client"
        await rec.wait_for(
            lambda: station(server, phone.agent_id)["persistentState"] == "DISCONNECTED"
        )


async def test_logout_tells_the_platform() -> None:
    async with sandbox() as server:
        async with agent_phone(server) as (phone, _):
            agent_id = phone.agent_id
            await call_and_wait(server, agent_id)
            assert station(server, agent_id)["persistentState"] == "PERSISTED"
        async with asyncio.timeout(5):
            while station(server, agent_id)["persistentState"] != "DISCONNECTED":
                await asyncio.sleep(0.02)


async def test_login_with_accept_off_queue_sets_up_silently() -> None:
    async with sandbox(accept_off_queue=True) as server, agent_phone(server) as (phone, rec):
        await rec.wait_for(lambda: bool(rec.of(PersistentConnectionUp)))
        [up] = rec.of(PersistentConnectionUp)
        assert (up.via, up.conversation_id) == ("login", None)
        assert not phone.status.microphone_live  # a set-up is not a call
        await call_and_wait(server, phone.agent_id)
        stats = station(server, phone.agent_id)
        assert stats["peerConnectionsCreated"] == 1
        assert stats["callsOverExistingConnection"] == 1


async def test_manual_answer_and_microphone_privacy_between_calls() -> None:
    async with (
        sandbox(media_relay=True, talk_seconds=0.5) as server,
        agent_phone(server, auto_answer=False) as (phone, rec),
    ):
        agent_id = phone.agent_id
        calls = phone.calls()
        for _ in range(2):
            conversation_id = await server.sandbox.calls.place_inbound(agent_id, auto=True)
            ringing = await asyncio.wait_for(anext(calls), 5)
            assert ringing.conversation_id == conversation_id
            assert not phone.status.microphone_live
            await phone.answer(conversation_id)
            assert phone.status.microphone_live
            await server.sandbox.calls.wait_closed(conversation_id)
            await rec.wait_for(lambda: not phone.status.microphone_live)

        def rtp_to_edge() -> int:
            count: int = station(server, agent_id)["connection"]["relay"]["toEdge"]["rtp"]
            return count

        before = rtp_to_edge()
        assert before > 0  # the calls' audio did cross the relay
        await asyncio.sleep(1.0)
        assert rtp_to_edge() == before  # nothing sent between calls


async def test_network_loss_mid_call_is_detected_within_three_seconds() -> None:
    async with (
        sandbox(media_relay=True, talk_seconds=30) as server,
        agent_phone(server) as (phone, rec),
    ):
        await server.sandbox.calls.place_inbound(phone.agent_id, auto=True)
        await rec.wait_for(lambda: phone.status.connection is ConnectionState.ACTIVE_CALL)
        await asyncio.sleep(0.5)
        lost_at = time.monotonic()
        server.sandbox.faults.media_blackhole(phone.agent_id)
        await rec.wait_for(lambda: bool(rec.of(PersistentConnectionDown)), within=10)
        detected = time.monotonic() - lost_at
        [down] = rec.of(PersistentConnectionDown)
        assert down.reason is DownReason.MEDIA_FAILURE
        assert detected <= 3.0
        assert phone.status.connection is ConnectionState.FAILED


async def test_stale_client_fault_is_cleared_by_our_client() -> None:
    """The sandbox makes our client vanish; we notice the dead media and tell the platform."""
    async with (
        sandbox(media_relay=True, persistent_timeout=60.0) as server,
        agent_phone(server) as (phone, rec),
    ):
        agent_id = phone.agent_id
        await call_and_wait(server, agent_id)
        server.sandbox.faults.stale_client(agent_id)
        await rec.wait_for(lambda: bool(rec.of(PersistentConnectionDown)), within=10)
        assert rec.of(PersistentConnectionDown)[0].reason is DownReason.MEDIA_FAILURE
        server.sandbox.faults.media_blackhole(agent_id, on=False)
        # our terminate reaches the platform once signalling is back: no 60 s stale window
        async with asyncio.timeout(10):
            while station(server, agent_id)["persistentState"] not in ("DISCONNECTED", "FAILED"):
                await asyncio.sleep(0.05)
        await call_and_wait(server, agent_id)
        assert station(server, agent_id)["calls"][-1]["connectedAt"] is not None
