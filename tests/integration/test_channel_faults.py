"""The notification stream against the real sandbox over loopback: every fault, every event once.

Each test publishes a numbered stream of events while a fault is injected, then compares what the
consumer received with the sandbox's ledger of what it emitted: nothing lost, nothing twice.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
import websockets

from crmphone.errors import AuthenticationError, ChannelLimitError, SubscriptionError
from crmphone.notifications import (
    CloseDiagnosis,
    LikelyCause,
    NotificationStream,
    Resync,
    TopicEvent,
)
from crmphone.platform import ClientCredentials, PlatformClient
from crmphone.sandbox import SandboxServer
from crmphone.testing import TEST_CLIENT_ID as CLIENT_ID
from crmphone.testing import TEST_CLIENT_SECRET as CLIENT_SECRET
from crmphone.testing import fast_channel_settings as fast_settings
from crmphone.testing import fast_sandbox_config as fast_config

pytestmark = pytest.mark.timeout(30)


class Recorder:
    """Consumes a stream in the background and keeps everything it is told."""

    def __init__(self, stream: NotificationStream) -> None:
        self.stream = stream
        self.events: list[TopicEvent] = []
        self.arrived = asyncio.Condition()
        self.task = asyncio.create_task(self._consume())

    async def _consume(self) -> None:
        async for event in self.stream:
            self.events.append(event)
            async with self.arrived:
                self.arrived.notify_all()

    def sequence_numbers(self, topic: str) -> list[int]:
        return [e.event_body["seq"] for e in self.events if e.topic_name == topic]

    async def wait_for(self, count: int) -> None:
        async with asyncio.timeout(10), self.arrived:
            await self.arrived.wait_for(lambda: len(self.events) >= count)

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


class Publisher:
    """Publishes numbered events on one topic at a steady rate until stopped."""

    def __init__(self, sandbox: SandboxServer, topic: str, interval: float = 0.005) -> None:
        self.sandbox = sandbox
        self.topic = topic
        self.interval = interval
        self.count = 0
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            self.sandbox.sandbox.publish(self.topic, {"seq": self.count})
            self.count += 1
            await asyncio.sleep(self.interval)

    async def stop(self) -> int:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        return self.count


def emitted_sequence(sandbox: SandboxServer, topic: str) -> list[int]:
    """What the sandbox actually delivered to at least one channel, in order."""
    return [
        e.event_body["seq"]
        for e in sandbox.sandbox.ledger
        if e.topic_name == topic and e.channel_ids
    ]


@contextlib.asynccontextmanager
async def following(
    client: PlatformClient, topics: list[str], **settings: Any
) -> AsyncIterator[tuple[NotificationStream, Recorder, list[CloseDiagnosis], list[Resync]]]:
    closes: list[CloseDiagnosis] = []
    resyncs: list[Resync] = []
    stream = NotificationStream(
        client,
        topics,
        settings=fast_settings(**settings),
        on_close=closes.append,
        on_resync=resyncs.append,
    )
    async with stream:
        recorder = Recorder(stream)
        try:
            yield stream, recorder, closes, resyncs
        finally:
            await recorder.stop()


def topic_of(sandbox: SandboxServer, suffix: str = "conversations.calls") -> str:
    return f"v2.users.{sandbox.sandbox.agents[0].id}.{suffix}"


async def run_fault(
    sandbox: SandboxServer,
    client: PlatformClient,
    inject: Any,
    *,
    settle: float = 1.5,
    lossless: bool = True,
    **settings: Any,
) -> tuple[NotificationStream, Recorder, list[CloseDiagnosis], list[Resync]]:
    """Publish, inject the fault, keep publishing until recovered, then check against the ledger.

    ``lossless`` faults (make-before-break) must deliver exactly what the sandbox emitted. Faults that
    break continuity (a dead link, a server close, eviction) may lose what the platform had in flight
    on the dead socket — the platform has no replay — so for them: nothing twice, nothing invented,
    everything published after the recovery received, and the resync hook told of the gap.
    """
    topic = topic_of(sandbox)
    async with following(client, [topic], **settings) as (stream, recorder, closes, resyncs):
        publisher = Publisher(sandbox, topic)
        await asyncio.sleep(0.3)
        result = inject()
        if asyncio.iscoroutine(result):
            await result
        await asyncio.sleep(settle)
        if not lossless:
            # Recovery takes what the fault dictates (Retry-After, backoff): publish on until
            # the stream has reported its resync, then a little longer, on a loaded machine too.
            async with asyncio.timeout(15):
                while not any(r.gap_started is not None for r in resyncs):
                    await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)
        await publisher.stop()
        emitted = emitted_sequence(sandbox, topic)
        if lossless:
            await recorder.wait_for(len(emitted))
        else:
            async with asyncio.timeout(10):
                while emitted[-1] not in recorder.sequence_numbers(topic):
                    await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)  # anything extra (a duplicate) would arrive now
        received = recorder.sequence_numbers(topic)
        assert len(received) == len(set(received)), "an event was delivered twice"
        if lossless:
            assert sorted(received) == emitted, "events were lost or delivered twice"
        else:
            assert set(received) <= set(emitted)
            assert any(r.gap_started is not None for r in resyncs), "no resync after a gap"
            # The last 50 events (250 ms of publishing) were emitted well after the recovery.
            assert set(emitted[-50:]) <= set(received), "events after the recovery were lost"
        return stream, recorder, closes, resyncs


async def test_events_arrive_once_and_in_order(
    sandbox: SandboxServer, client: PlatformClient
) -> None:
    """A healthy channel delivers every published event once, in publication order."""
    topic = topic_of(sandbox)
    async with following(client, [topic]) as (_stream, recorder, closes, _):
        for seq in range(50):
            sandbox.sandbox.publish(topic, {"seq": seq})
        await recorder.wait_for(50)
        assert recorder.sequence_numbers(topic) == list(range(50))
        assert closes == []


async def test_heartbeats_keep_a_quiet_channel_alive(
    sandbox: SandboxServer, client: PlatformClient
) -> None:
    """Heartbeats alone keep the channel up: no ping is needed and nothing closes."""
    async with following(client, [topic_of(sandbox)]) as (stream, _, closes, _):
        await asyncio.sleep(1.5)  # three heartbeat_timeouts of 0.5 s
        assert closes == []
        assert stream.stats.reconnects == 0


async def test_a_silent_socket_is_abandoned_and_replaced(
    sandbox: SandboxServer, client: PlatformClient
) -> None:
    """A link that stays open but says nothing is detected within the liveness budget and replaced."""
    loop = asyncio.get_running_loop()
    injected_at: list[float] = []

    def inject() -> None:
        injected_at.append(loop.time())
        sandbox.sandbox.faults.silence()

    topic = topic_of(sandbox)
    async with following(client, [topic]) as (_stream, recorder, closes, resyncs):
        await asyncio.sleep(0.2)
        inject()
        async with asyncio.timeout(5):
            while not closes:
                await asyncio.sleep(0.01)
        detected = loop.time() - injected_at[0]
        # heartbeat_timeout 0.5 + pong_timeout 0.3, plus at most one heartbeat interval of slack.
        assert detected <= 0.5 + 0.3 + 0.3
        assert closes[0].cause is LikelyCause.NETWORK_SILENCE
        async with asyncio.timeout(5):
            while not resyncs:
                await asyncio.sleep(0.01)
        assert resyncs[0].gap_started is not None
        sandbox.sandbox.publish(topic, {"seq": 0})
        await recorder.wait_for(1)


async def test_dropped_tcp_is_diagnosed_as_network_and_recovered(
    sandbox: SandboxServer, client: PlatformClient
) -> None:
    """A TCP connection that dies without a close frame is reported as such and reconnected."""
    _, _, closes, resyncs = await run_fault(
        sandbox, client, sandbox.sandbox.faults.drop_tcp, lossless=False
    )
    assert closes[0].cause is LikelyCause.NETWORK_SILENCE
    assert closes[0].facts.close_code is None
    assert resyncs, "a gap must trigger the resync hook"


@pytest.mark.parametrize("second_socket", ["displace", "allow"])
async def test_maintenance_close_loses_nothing(second_socket: str) -> None:
    """socket_closing → make-before-break: nothing lost, nothing twice, no gap, whatever a second socket does."""
    config = fast_config(second_socket=second_socket)
    async with SandboxServer(config, host="127.0.0.1", port=0) as sandbox:
        tokens = ClientCredentials(
            login_base=sandbox.base_url, client_id=CLIENT_ID, client_secret=CLIENT_SECRET
        )
        async with PlatformClient(api_base=sandbox.base_url, tokens=tokens) as client:
            stream, _, closes, resyncs = await run_fault(
                sandbox,
                client,
                lambda: sandbox.sandbox.faults.socket_closing(close_after=0.4),
            )
            assert stream.stats.rollovers == 1
            assert all(r.gap_started is None for r in resyncs)
            assert all(
                c.cause
                in {LikelyCause.MAINTENANCE, LikelyCause.CLIENT_CLOSED, LikelyCause.DISPLACED}
                for c in closes
            )


async def test_repeated_maintenance_closes_lose_nothing(
    sandbox: SandboxServer, client: PlatformClient
) -> None:
    """Five maintenance closes in a row under a steady stream: every event exactly once."""

    async def inject() -> None:
        for _ in range(5):
            sandbox.sandbox.faults.socket_closing(close_after=0.2)
            await asyncio.sleep(0.35)

    stream, _, _, resyncs = await run_fault(sandbox, client, inject)
    assert stream.stats.rollovers == 5
    assert all(r.gap_started is None for r in resyncs)


async def test_server_error_close_is_diagnosed_and_recovered(
    sandbox: SandboxServer, client: PlatformClient
) -> None:
    """A 1011 close is reported with its code and reason verbatim, then the channel comes back."""
    _, _, closes, _ = await run_fault(
        sandbox,
        client,
        lambda: sandbox.sandbox.faults.close(code=1011, reason="internal error"),
        lossless=False,
    )
    assert closes[0].cause is LikelyCause.SERVER_ERROR
    assert (closes[0].facts.close_code, closes[0].facts.close_reason) == (1011, "internal error")


async def test_revoked_token_gets_a_fresh_token_and_channel(
    sandbox: SandboxServer, client: PlatformClient
) -> None:
    """token_revoked → a new token, a new channel, the same topics, and the events keep coming."""
    before = await client.tokens.token()
    stream, _, closes, _ = await run_fault(
        sandbox, client, sandbox.sandbox.faults.revoke_token, lossless=False
    )
    assert client.tokens.current is not None
    assert client.tokens.current.value != before.value
    assert stream.stats.channels_created >= 2
    assert closes[0].cause is LikelyCause.TOKEN_REVOKED


async def test_no_longer_subscribed_resubscribes_on_a_new_channel(
    sandbox: SandboxServer, client: PlatformClient
) -> None:
    """no_longer_subscribed → new channel with the same subscriptions; the event stream goes on."""
    stream, _, _, _ = await run_fault(
        sandbox,
        client,
        lambda: sandbox.sandbox.faults.no_longer_subscribed(reason="another_channel_subscribed"),
        lossless=False,
    )
    assert stream.stats.channels_created >= 2


async def test_malformed_frames_are_counted_and_survived(
    sandbox: SandboxServer, client: PlatformClient
) -> None:
    """Garbage on the socket is counted and logged; the channel stays up and loses nothing."""
    stream, _, closes, _ = await run_fault(sandbox, client, sandbox.sandbox.faults.malformed_frames)
    assert stream.stats.malformed >= 4
    assert [c for c in closes if c.cause is not LikelyCause.CLIENT_CLOSED] == []
    assert stream.stats.reconnects == 0


@pytest.mark.parametrize("lifetime", ["channel_ttl", "token_ttl"])
async def test_expiry_rolls_over_before_it_happens(lifetime: str) -> None:
    """A channel, or the token it is bound to, about to expire is replaced make-before-break.

    The platform never gets to close it on us: every close is our own, and nothing is lost.
    """
    config = fast_config(**{lifetime: 2.0})
    async with SandboxServer(config, host="127.0.0.1", port=0) as sandbox:
        tokens = ClientCredentials(
            login_base=sandbox.base_url, client_id=CLIENT_ID, client_secret=CLIENT_SECRET
        )
        async with PlatformClient(api_base=sandbox.base_url, tokens=tokens) as client:
            stream, _, closes, _ = await run_fault(
                sandbox, client, lambda: None, settle=2.5, rollover_margin=0.5
            )
            assert stream.stats.channels_created >= 2
            assert all(c.cause is LikelyCause.CLIENT_CLOSED for c in closes)


async def test_eviction_by_a_21st_channel_is_diagnosed(
    sandbox: SandboxServer, client: PlatformClient
) -> None:
    """When someone else's new channels evict ours, the diagnosis says so and a new one takes over."""

    topic = topic_of(sandbox)
    async with following(client, [topic]) as (stream, recorder, closes, resyncs):
        # Channels with a live socket are evicted last: the intruder keeps 20 of them connected.
        intruders = []
        for _ in range(20):
            channel = await client.create_channel()
            intruders.append(
                await websockets.connect(channel.connect_uri, ping_interval=None, close_timeout=0.5)
            )
        try:
            async with asyncio.timeout(5):
                while not resyncs:
                    await asyncio.sleep(0.01)
            sandbox.sandbox.publish(topic, {"seq": 1})
            await recorder.wait_for(1)
        finally:
            for ws in intruders:
                await ws.close()
    assert closes[0].cause is LikelyCause.EVICTED
    assert closes[0].facts.channel_exists_after is False
    assert stream.stats.channels_created == 2
    assert resyncs[0].gap_started is not None


async def test_rate_limited_reconnect_waits_and_succeeds(
    sandbox: SandboxServer, client: PlatformClient
) -> None:
    """429s while reconnecting are waited out (Retry-After honoured) and the channel comes back."""

    def inject() -> None:
        sandbox.sandbox.faults.rate_limit_burst(count=3, retry_after=1)
        sandbox.sandbox.faults.drop_tcp()

    await run_fault(sandbox, client, inject, settle=3.0, lossless=False)


async def test_topics_beyond_one_channel_spread_over_several(client: PlatformClient) -> None:
    """More topics than one channel holds are spread over several, and events arrive from each."""
    config = fast_config(agents=4, max_topics_per_channel=3)
    async with SandboxServer(config, host="127.0.0.1", port=0) as sandbox:
        tokens = ClientCredentials(
            login_base=sandbox.base_url, client_id=CLIENT_ID, client_secret=CLIENT_SECRET
        )
        async with PlatformClient(api_base=sandbox.base_url, tokens=tokens) as own_client:
            topics = [
                f"v2.users.{agent.id}.{suffix}"
                for agent in sandbox.sandbox.agents
                for suffix in ("conversations.calls", "presence")
            ]
            async with following(own_client, topics, max_topics_per_channel=3) as (
                stream,
                recorder,
                _,
                _,
            ):
                assert len(stream.plan) == 3
                assert len(set(stream.channel_ids)) == 3
                for topic in topics:
                    sandbox.sandbox.publish(topic, {"seq": 0})
                await recorder.wait_for(len(topics))
                assert sorted(e.topic_name for e in recorder.events) == sorted(topics)


async def test_too_many_topics_for_the_channel_limit_is_a_clear_error(
    client: PlatformClient,
) -> None:
    """Topics that would need more channels than a user may have fail before anything is created."""
    topics = [f"v2.users.u{i}.presence" for i in range(20)]
    with pytest.raises(ChannelLimitError):
        NotificationStream(client, topics, settings=fast_settings(max_topics_per_channel=1))


async def test_rejected_topics_are_named_with_the_missing_permission(
    sandbox: SandboxServer, client: PlatformClient
) -> None:
    """A topic the client may not read fails the start with the topic and the permission it lacks."""
    queue_topic = "v2.routing.queues.6a0b1c2d-0000-4000-8000-00000000000q.conversations.calls"
    sandbox.sandbox.world.deny_topic_prefix("v2.routing.queues", missing="routing:queue:view")
    stream = NotificationStream(client, [topic_of(sandbox), queue_topic], settings=fast_settings())
    with pytest.raises(SubscriptionError) as caught:
        await stream.__aenter__()
    assert queue_topic in str(caught.value)
    assert "routing:queue:view" in str(caught.value)


async def test_bad_credentials_fail_the_start_clearly(sandbox: SandboxServer) -> None:
    """Wrong client credentials raise AuthenticationError, without echoing the secret."""
    tokens = ClientCredentials(
        login_base=sandbox.base_url, client_id=CLIENT_ID, client_secret="not-the-secret-93"
    )
    async with PlatformClient(api_base=sandbox.base_url, tokens=tokens) as client:
        stream = NotificationStream(client, [topic_of(sandbox)], settings=fast_settings())
        with pytest.raises(AuthenticationError) as caught:
            await stream.__aenter__()
        assert "not-the-secret-93" not in str(caught.value)


async def test_closing_the_stream_as_a_socket_ends_does_not_hang(
    sandbox: SandboxServer, client: PlatformClient
) -> None:
    """Leaving the stream right when a close is reported stops promptly (a cancellation race)."""
    reported: asyncio.Future[CloseDiagnosis] = asyncio.get_running_loop().create_future()

    def on_close(diagnosis: CloseDiagnosis) -> None:
        if not reported.done():
            reported.set_result(diagnosis)

    stream = NotificationStream(
        client, [topic_of(sandbox)], settings=fast_settings(), on_close=on_close
    )
    async with asyncio.timeout(5):  # before the fix, leaving the block below hung forever
        async with stream:
            sandbox.sandbox.faults.close(code=1011, reason="boom")
            await reported
