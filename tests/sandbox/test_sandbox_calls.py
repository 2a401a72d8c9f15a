"""Generated calls as a client sees them: topic events, REST state and PATCH control."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import websockets
from sandbox_helpers import Api, fast_config, recv_event, running, wait_until
from websockets.asyncio.client import ClientConnection

from crmphone.errors import InvalidStateError, NotFoundError
from crmphone.sandbox import SandboxServer
from crmphone.sandbox.conversation import Phase

E164_SANDBOX = re.compile(r"^\+1555\d{7}$")


@pytest.fixture
async def watched(api: Api) -> AsyncIterator[tuple[Api, str, ClientConnection]]:
    """A token and a socket subscribed to the first agent's call topics and its queue's."""
    sandbox = api.server.sandbox
    agent = sandbox.agents[0].id
    token = await api.token()
    channel = await api.channel(token)
    topics = [
        f"v2.users.{agent}.conversations.calls",
        f"v2.users.{agent}.conversations",
        f"v2.routing.queues.{sandbox.queues[0].id}.conversations.calls",
    ]
    assert (await api.subscribe(token, channel["id"], topics)).status_code == 200
    # A short close timeout: a test that leaves events unread must not wait 10 s for the echo.
    async with websockets.connect(channel["connectUri"], close_timeout=0.5) as ws:
        await wait_until(lambda: len(sandbox.links()) == 1)
        yield api, token, ws


async def calls_events(ws: ClientConnection, count: int) -> list[dict[str, Any]]:
    """The next ``count`` events of the agent's conversations.calls topic (others skipped)."""
    events = []
    while len(events) < count:
        frame = await recv_event(ws, within=3)
        if frame["topicName"].endswith(".conversations.calls") and "users" in frame["topicName"]:
            events.append(frame["eventBody"])
    return events


def agent_of(body: dict[str, Any]) -> dict[str, Any]:
    """The agent participant of a conversations.calls body."""
    (agent,) = [p for p in body["participants"] if p["purpose"] == "agent"]
    return agent


async def test_automatic_inbound_call_lifecycle(watched: tuple[Api, str, ClientConnection]) -> None:
    """alerting twice → connected → disconnected → terminated → terminated with wrap-up; REST agrees."""
    api, token, ws = watched
    sandbox = api.server.sandbox
    conversation_id = await sandbox.calls.place_inbound(sandbox.agents[0].id, ani="+15551230001")
    events = await calls_events(ws, 6)
    assert {e["id"] for e in events} == {conversation_id}
    assert [agent_of(e)["state"] for e in events] == [
        "alerting",
        "alerting",
        "connected",
        "disconnected",
        "terminated",
        "terminated",
    ]
    first, last = agent_of(events[0]), agent_of(events[-1])
    assert first["direction"] == "inbound"
    assert first["user"]["id"] == sandbox.agents[0].id
    assert first["queue"]["id"] == sandbox.queues[0].id
    customer = events[0]["participants"][0]
    assert (customer["purpose"], customer["ani"]) == ("customer", "tel:+15551230001")
    assert last["connectedTime"] < last["endTime"]
    assert last["disconnectType"] == "peer"
    assert set(last["wrapup"]) >= {"code", "notes", "durationSeconds"}
    assert "wrapup" not in agent_of(events[-2])
    await sandbox.calls.wait_closed(conversation_id)
    response = await api.http.get(
        f"/api/v2/conversations/calls/{conversation_id}", headers=api.auth(token)
    )
    rest = response.json()
    assert rest.pop("selfUri") == f"/api/v2/conversations/calls/{conversation_id}"
    assert rest == events[-1]


async def test_every_call_event_goes_to_both_user_topics_and_the_queue(
    watched: tuple[Api, str, ClientConnection],
) -> None:
    """Each snapshot is published on .conversations.calls, .conversations and the queue topic."""
    api, _, ws = watched
    sandbox = api.server.sandbox
    conversation_id = await sandbox.calls.place_inbound(sandbox.agents[0].id)
    await sandbox.calls.wait_closed(conversation_id)
    topics = [e.topic_name for e in sandbox.ledger]
    agent = sandbox.agents[0].id
    queue = sandbox.queues[0].id
    assert topics.count(f"v2.users.{agent}.conversations.calls") == 6
    assert topics.count(f"v2.users.{agent}.conversations") == 6
    assert topics.count(f"v2.routing.queues.{queue}.conversations.calls") == 6
    assert topics.count(f"v2.routing.queues.{queue}.conversations") == 6
    generic = [e for e in sandbox.ledger if e.topic_name == f"v2.users.{agent}.conversations"]
    states = [
        p["calls"][0]["state"]
        for e in generic
        for p in e.event_body["participants"]
        if p["purpose"] == "agent"
    ]
    assert states == [
        "alerting",
        "alerting",
        "connected",
        "disconnected",
        "terminated",
        "terminated",
    ]
    subscribed = [e for e in sandbox.ledger if not e.topic_name.endswith(f"{queue}.conversations")]
    assert all(e.channel_ids for e in subscribed)
    received = 0
    while received < 18:
        await recv_event(ws)
        received += 1


async def test_manual_call_answered_muted_held_and_hung_up_over_rest(
    watched: tuple[Api, str, ClientConnection],
) -> None:
    """With auto=False the agent drives the call with PATCH; each change is an event."""
    api, token, ws = watched
    sandbox = api.server.sandbox
    conversation_id = await sandbox.calls.place_inbound(sandbox.agents[0].id, auto=False)
    alerting = await calls_events(ws, 2)
    participant = agent_of(alerting[0])["id"]
    path = f"/api/v2/conversations/calls/{conversation_id}/participants/{participant}"

    async def patch(body: dict[str, Any]) -> httpx.Response:
        return await api.http.patch(path, json=body, headers=api.auth(token))

    answered = await patch({"state": "connected"})
    assert (answered.status_code, answered.content) == (202, b"")
    assert agent_of((await calls_events(ws, 1))[0])["state"] == "connected"
    await patch({"muted": True})
    assert agent_of((await calls_events(ws, 1))[0])["muted"] is True
    await patch({"held": True})
    held = agent_of((await calls_events(ws, 1))[0])
    assert (held["held"], held["state"]) == (True, "connected")
    assert "startHoldTime" in held
    again = await patch({"state": "connected"})
    assert again.status_code == 400
    await patch({"state": "disconnected"})
    ended = await calls_events(ws, 3)
    assert [agent_of(e)["state"] for e in ended] == ["disconnected", "terminated", "terminated"]
    assert agent_of(ended[0])["disconnectType"] == "client"
    assert "wrapup" in agent_of(ended[-1])


async def test_rejecting_a_ringing_call(watched: tuple[Api, str, ClientConnection]) -> None:
    """PATCH disconnected while alerting rejects: disconnectType client, no wrap-up."""
    api, token, ws = watched
    sandbox = api.server.sandbox
    conversation_id = await sandbox.calls.place_inbound(sandbox.agents[0].id, auto=False)
    participant = agent_of((await calls_events(ws, 2))[0])["id"]
    response = await api.http.patch(
        f"/api/v2/conversations/calls/{conversation_id}/participants/{participant}",
        json={"state": "disconnected"},
        headers=api.auth(token),
    )
    assert response.status_code == 202
    ended = await calls_events(ws, 2)
    assert [agent_of(e)["state"] for e in ended] == ["disconnected", "terminated"]
    assert agent_of(ended[0])["disconnectType"] == "client"
    conversation = await sandbox.calls.wait_closed(conversation_id)
    assert conversation.phase is Phase.CLOSED
    assert conversation.agent.wrapup is None


async def test_unanswered_manual_call_times_out(watched: tuple[Api, str, ClientConnection]) -> None:
    """A manual call nobody answers ends after alerting_timeout with disconnectType timeout."""
    api, _, ws = watched
    sandbox = api.server.sandbox
    await sandbox.calls.place_inbound(sandbox.agents[0].id, auto=False, alerting_timeout=0.1)
    events = await calls_events(ws, 4)
    assert agent_of(events[0])["alertingTimeoutMs"] == 100
    assert [agent_of(e)["state"] for e in events] == [
        "alerting",
        "alerting",
        "disconnected",
        "terminated",
    ]
    assert agent_of(events[2])["disconnectType"] == "timeout"


async def test_customer_hangs_up_from_python(watched: tuple[Api, str, ClientConnection]) -> None:
    """customer_hangs_up ends a talking manual call; a closed call cannot hang up again."""
    api, _, ws = watched
    calls = api.server.sandbox.calls
    conversation_id = await calls.place_inbound(api.server.sandbox.agents[0].id, auto=False)
    conversation = calls.get(conversation_id)
    calls.patch_participant(conversation_id, conversation.agent.id, state="connected")
    calls.customer_hangs_up(conversation_id)
    events = await calls_events(ws, 5)
    assert agent_of(events[3])["disconnectType"] == "peer"
    await calls.wait_closed(conversation_id)
    with pytest.raises(InvalidStateError):
        calls.customer_hangs_up(conversation_id)


async def test_patch_errors(watched: tuple[Api, str, ClientConnection]) -> None:
    """Unknown ids are 404; impossible or malformed changes are 400."""
    api, token, _ = watched
    sandbox = api.server.sandbox
    conversation_id = await sandbox.calls.place_inbound(sandbox.agents[0].id, auto=False)
    conversation = sandbox.calls.get(conversation_id)
    base = f"/api/v2/conversations/calls/{conversation_id}/participants"
    cases = [
        (
            f"/api/v2/conversations/calls/nope/participants/{conversation.agent.id}",
            {"state": "connected"},
            404,
        ),
        (f"{base}/nope", {"state": "connected"}, 404),
        (f"{base}/{conversation.customer.id}", {"held": True}, 400),
        (f"{base}/{conversation.agent.id}", {"held": True}, 400),  # not talking yet
        (f"{base}/{conversation.agent.id}", {"state": "dialing"}, 400),
        (f"{base}/{conversation.agent.id}", {"muted": "yes"}, 400),
        (f"{base}/{conversation.agent.id}", {}, 400),
        (f"{base}/{conversation.agent.id}", [1], 400),
    ]
    for path, body, status in cases:
        response = await api.http.patch(path, json=body, headers=api.auth(token))
        assert response.status_code == status, (path, body, response.text)
        assert response.json()["status"] == status
    unknown = await api.http.get("/api/v2/conversations/calls/nope", headers=api.auth(token))
    assert unknown.status_code == 404
    with pytest.raises(NotFoundError):
        await sandbox.calls.place_inbound("no-such-agent")
    with pytest.raises(NotFoundError):
        await sandbox.calls.place_inbound(sandbox.agents[0].id, queue_id="no-such-queue")


async def test_outbound_call_events() -> None:
    """A call placed over REST by a user dials, connects, ends and wraps up on the user's topic."""
    async with running(fast_config()) as (server, api):
        http = api.http
        agent = server.sandbox.agents[1]
        user = (await api.user_grant(agent.id))["access_token"]
        channel = await api.channel(user)
        topic = f"v2.users.{agent.id}.conversations.calls"
        assert (await api.subscribe(user, channel["id"], [topic])).status_code == 200
        async with websockets.connect(channel["connectUri"]) as ws:
            await wait_until(lambda: len(server.sandbox.links()) == 1)
            placed = await http.post(
                "/api/v2/conversations/calls",
                json={
                    "phoneNumber": "+15557654321",
                    "callFromQueueId": server.sandbox.queues[1].id,
                },
                headers=api.auth(user),
            )
            assert placed.status_code == 200
            states = []
            for _ in range(6):
                body = (await recv_event(ws, within=3))["eventBody"]
                (leg,) = [p for p in body["participants"] if p["purpose"] == "agent"]
                states.append(leg["state"])
                assert leg["direction"] == "outbound"
                assert leg["queue"]["id"] == server.sandbox.queues[1].id
    assert states == ["dialing", "dialing", "connected", "disconnected", "terminated", "terminated"]


async def test_background_generator_places_realistic_calls() -> None:
    """With calls_per_minute set, calls arrive on their own from +1555 numbers to idle agents."""
    config = fast_config(calls_per_minute=1200.0, ring_seconds=0.02, talk_seconds=0.02)
    async with SandboxServer(config) as server:
        calls = server.sandbox.calls
        await wait_until(lambda: len(calls.conversations) >= 5, within=5)
        agents = {a.id for a in server.sandbox.agents}
        for conversation in calls.conversations:
            assert E164_SANDBOX.match(conversation.customer.address)
            assert conversation.agent_id in agents
        busy = [c.agent_id for c in calls.conversations if c.phase is not Phase.CLOSED]
        assert len(busy) == len(set(busy))  # never two live calls for one agent
    assert E164_SANDBOX.match(calls.random_ani())


async def test_closing_the_sandbox_stops_running_calls() -> None:
    """Calls still ringing when the sandbox stops are cancelled, not left running."""
    async with SandboxServer(fast_config(ring_seconds=30.0)) as server:
        calls = server.sandbox.calls
        conversation_id = await calls.place_inbound(server.sandbox.agents[0].id)
    async with asyncio.timeout(1):
        conversation = await calls.wait_closed(conversation_id)
    assert conversation.phase is Phase.RINGING
