"""A consumer that falls behind the notification stream: batches, the backlog warning, no loss.

The stream never stops reading its sockets (that would starve heartbeats and get them closed);
instead a slow consumer takes everything waiting in one batch and catches up.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from crmphone.errors import ChannelError
from crmphone.notifications import NotificationStream, TopicEvent
from crmphone.platform import PlatformClient
from crmphone.sandbox import SandboxServer
from crmphone.testing import fast_channel_settings

pytestmark = pytest.mark.timeout(30)


def _sequence(events: list[TopicEvent]) -> list[int]:
    return [event.event_body["seq"] for event in events]


async def _until_pending(stream: NotificationStream, count: int) -> None:
    async with asyncio.timeout(10):
        while stream.pending() < count:
            await asyncio.sleep(0.01)


async def test_a_backlog_is_taken_in_one_batch_in_order(
    sandbox: SandboxServer, client: PlatformClient, caplog: pytest.LogCaptureFixture
) -> None:
    """Events that piled up while nobody consumed come back as one ordered batch, with one
    warning when the backlog passed its mark and one note when it was cleared."""
    topic = f"v2.users.{sandbox.sandbox.agents[0].id}.conversations.calls"
    settings = fast_channel_settings(backlog_warning=50)
    caplog.set_level(logging.INFO, logger="crmphone.notifications")
    async with NotificationStream(client, [topic], settings=settings) as stream:
        for seq in range(200):
            sandbox.sandbox.publish(topic, {"seq": seq})
        await _until_pending(stream, 200)

        first = await stream.next_batch(limit=30)
        rest = await stream.next_batch()

        assert _sequence(first) == list(range(30))
        assert _sequence(rest) == list(range(30, 200))
        assert stream.pending() == 0
        assert stream.stats.max_pending == 200
    behind = [r for r in caplog.records if "falls behind" in r.getMessage()]
    caught_up = [r for r in caplog.records if "caught up" in r.getMessage()]
    assert [r.levelno for r in behind] == [logging.WARNING]
    assert "50 events are waiting" in behind[0].getMessage()
    assert len(caught_up) == 1


async def test_events_after_a_cleared_backlog_arrive_one_by_one(
    sandbox: SandboxServer, client: PlatformClient
) -> None:
    """Once caught up, the next batch holds just the next event (nothing is held back to fill a
    batch)."""
    topic = f"v2.users.{sandbox.sandbox.agents[0].id}.conversations.calls"
    async with NotificationStream(client, [topic], settings=fast_channel_settings()) as stream:
        sandbox.sandbox.publish(topic, {"seq": 0})
        async with asyncio.timeout(10):
            assert _sequence(await stream.next_batch()) == [0]
            sandbox.sandbox.publish(topic, {"seq": 1})
            assert _sequence(await stream.next_batch()) == [1]


async def test_a_failure_comes_after_the_events_received_before_it(
    client: PlatformClient,
) -> None:
    """When the stream ends in an error, the events already received are handed over first, and
    the error is raised by the next call (and again after that)."""
    stream = NotificationStream(client, ["v2.users.someone.conversations.calls"])
    for seq in range(3):
        stream._deliver(TopicEvent("v2.users.someone.conversations.calls", {"seq": seq}))
    stream._fail(ChannelError("beyond repair"))
    stream._deliver(TopicEvent("v2.users.someone.conversations.calls", {"seq": 99}))

    assert _sequence(await stream.next_batch()) == [0, 1, 2]
    for _ in range(2):
        with pytest.raises(ChannelError, match="beyond repair"):
            await stream.next_batch()
