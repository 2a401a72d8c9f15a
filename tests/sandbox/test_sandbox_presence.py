"""The sandbox's presence and routing status, through crmphone's client and the official SDK."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from crmphone.errors import BadRequestError, NotFoundError, PermissionDeniedError
from crmphone.notifications import NotificationStream, TopicEvent
from crmphone.platform import PlatformClient, UserPresence, UserRoutingStatus
from crmphone.presence import presence_topics
from crmphone.sandbox import SandboxServer
from crmphone.testing import sign_in_sandbox_agent


async def definition_id(client: PlatformClient, system_presence: str) -> str:
    definitions = await client.presence_definitions()
    return next(d.id for d in definitions if d.system_presence == system_presence)


async def test_definitions_are_the_system_presences(client: PlatformClient) -> None:
    """Every system presence is listed once, with Genesys's well-known On Queue id."""
    definitions = await client.presence_definitions()
    names = [d.system_presence for d in definitions]
    assert len(names) == len(set(names))
    assert {"AVAILABLE", "ON_QUEUE", "OFFLINE", "BUSY", "AWAY"} <= set(names)
    assert await definition_id(client, "ON_QUEUE") == "e08eaf1b-ee47-4fa9-a231-1200e284798f"


async def test_agents_start_offline_and_off_queue(
    sandbox: SandboxServer, client: PlatformClient
) -> None:
    """A fresh agent reads Offline / OFF_QUEUE, alone and through the users list's expand."""
    agent = sandbox.sandbox.agents[0].id
    assert (await client.get_presence(agent)).system_presence == "OFFLINE"
    assert (await client.get_routing_status(agent)).status == "OFF_QUEUE"
    [user] = await client.get_users([agent], expand=("presence", "routingStatus"))
    assert user.presence is not None
    assert user.presence.system_presence == "OFFLINE"
    assert user.routing_status == UserRoutingStatus(
        status="OFF_QUEUE",
        started_at=user.routing_status.started_at if user.routing_status else None,
    )


async def test_going_on_queue_publishes_presence_and_routing_status(
    sandbox: SandboxServer, client: PlatformClient
) -> None:
    """On Queue → a presence event and IDLE; Available → a presence event and OFF_QUEUE."""
    agent = sandbox.sandbox.agents[0].id
    seen: list[TopicEvent] = []
    async with NotificationStream(client, presence_topics(agent)) as stream:

        async def collect(count: int) -> None:
            async for notification in stream:
                seen.append(notification)
                if len(seen) == count:
                    return

        on_queue = await client.set_presence(agent, await definition_id(client, "ON_QUEUE"))
        assert on_queue.system_presence == "ON_QUEUE"
        async with asyncio.timeout(5):
            await collect(2)
        await client.set_routing_status(agent, "OFF_QUEUE")
        async with asyncio.timeout(5):
            await collect(4)
    kinds = [(n.topic_name.rsplit(".", 1)[1], n.event_body) for n in seen]
    presences = [UserPresence.from_genesys(body) for kind, body in kinds if kind == "presence"]
    statuses = [UserRoutingStatus.from_genesys(b).status for k, b in kinds if k == "routingStatus"]
    assert [p.system_presence for p in presences] == ["ON_QUEUE", "AVAILABLE"]
    assert statuses == ["IDLE", "OFF_QUEUE"]


async def test_setting_the_same_presence_publishes_nothing_new(
    sandbox: SandboxServer, client: PlatformClient
) -> None:
    """A change that changes nothing answers the state and emits no event."""
    agent = sandbox.sandbox.agents[1].id
    busy = await definition_id(client, "BUSY")
    await client.set_presence(agent, busy, message="Lunch soon")
    before = sandbox.sandbox.world.counters.copy()
    again = await client.set_presence(agent, busy)
    assert again.message == "Lunch soon"  # no message given: the old one stays
    published = sandbox.sandbox.world.counters
    assert published.get("events_published", 0) == before.get("events_published", 0)


async def test_bad_presence_requests_are_refused_clearly(
    sandbox: SandboxServer, client: PlatformClient
) -> None:
    """Unknown definition → 400, unknown status → 400, unknown user or source → 404."""
    agent = sandbox.sandbox.agents[0].id
    with pytest.raises(BadRequestError, match="does not exist"):
        await client.set_presence(agent, "no-such-definition")
    with pytest.raises(BadRequestError, match="cannot be set"):
        await client.set_routing_status(agent, "INTERACTING")
    with pytest.raises(NotFoundError):
        await client.get_presence("no-such-user")
    with pytest.raises(NotFoundError):
        await client.get_presence(agent, source="microsoftteams")


async def test_an_agent_may_change_only_their_own_presence(sandbox: SandboxServer) -> None:
    """A user token sets its own presence; another agent's is 403."""
    me, other = sandbox.sandbox.agents[0].id, sandbox.sandbox.agents[1].id
    tokens = await sign_in_sandbox_agent(sandbox.base_url, me)
    async with PlatformClient(api_base=sandbox.base_url, tokens=tokens) as agent_client:
        away = await definition_id(agent_client, "AWAY")
        assert (await agent_client.set_presence(me, away)).system_presence == "AWAY"
        with pytest.raises(PermissionDeniedError):
            await agent_client.set_presence(other, away)


async def test_the_deprecated_definitions_path_answers_display_words(
    sandbox: SandboxServer, client: PlatformClient
) -> None:
    """Older SDKs' /api/v2/presencedefinitions names On Queue with a space, as Genesys did."""
    token = await client._tokens.token()
    async with httpx.AsyncClient(base_url=sandbox.base_url) as http:
        answer = await http.get(
            "/api/v2/presencedefinitions", headers={"Authorization": f"Bearer {token.value}"}
        )
    assert answer.status_code == 200
    names = {entity["systemPresence"] for entity in answer.json()["entities"]}
    assert "On Queue" in names
    assert answer.json()["pageCount"] == 1
