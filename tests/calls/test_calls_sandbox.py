"""The call tracker against the real sandbox: a generated call's published events, end to end."""

from __future__ import annotations

import asyncio

from crmphone.calls import CallTracker
from crmphone.clock import ManualClock
from crmphone.events import CallAlerting, CallConnected, CallEnded, CallEvent, CallWrapup
from crmphone.notifications.messages import TopicEvent
from crmphone.platform import PlatformClient
from crmphone.sandbox import SandboxServer


async def test_a_sandbox_call_yields_alerting_connected_ended_wrapup_once_each(
    sandbox: SandboxServer, client: PlatformClient
) -> None:
    """Every conversations.calls body the sandbox published for the agent → four events, once."""
    platform = sandbox.sandbox
    agent = platform.agents[0].id
    conversation_id = await platform.calls.place_inbound(agent, ani="+15551230042")
    async with asyncio.timeout(5):
        await platform.calls.wait_closed(conversation_id)

    calls_topic = f"v2.users.{agent}.conversations.calls"
    published = [entry for entry in platform.ledger if entry.topic_name == calls_topic]
    assert len(published) == 6  # alerting twice, connected, disconnected, terminated twice

    tracker = CallTracker({agent}, ManualClock())
    events: list[CallEvent] = []
    for entry in published:
        events.extend(tracker.feed_event(TopicEvent(entry.topic_name, entry.event_body)))
    assert [type(event) for event in events] == [CallAlerting, CallConnected, CallEnded, CallWrapup]
    assert {event.conversation_id for event in events} == {conversation_id}
    alerting, connected, ended, wrapup = events
    assert isinstance(alerting, CallAlerting)
    assert (alerting.agent_id, alerting.ani, alerting.queue_id) == (
        agent,
        "+15551230042",
        platform.queues[0].id,
    )
    assert isinstance(ended, CallEnded)
    assert (ended.answered, ended.missed, ended.who_hung_up) == (True, False, "customer")
    assert ended.connected_at == connected.at
    assert isinstance(wrapup, CallWrapup)
    assert wrapup.code is not None
    assert tracker.stats.anomalies == 0

    # Everything the sandbox published (both user topics, queue topics) tells the same story.
    everything = CallTracker({agent}, ManualClock())
    replayed: list[CallEvent] = []
    for entry in platform.ledger:
        replayed.extend(everything.feed_event(TopicEvent(entry.topic_name, entry.event_body)))
    assert [event.key for event in replayed] == [event.key for event in events]

    # A resync from the REST state of the finished call finds nothing missed.
    assert tracker.resync([await client.get_call(conversation_id)]) == []
    assert tracker.live_conversation_ids() == set()
