"""The platform client's happy paths against the real sandbox, over real loopback sockets."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from crmphone.errors import (
    AuthenticationError,
    BadRequestError,
    NotFoundError,
    PermissionDeniedError,
)
from crmphone.platform import (
    AuthorizationCode,
    CallConversation,
    ClientCredentials,
    Participant,
    PlatformClient,
    authorization_url,
    make_pkce_pair,
)
from crmphone.sandbox import SandboxConfig, SandboxServer

CLIENT_ID = "platform-tests"
CLIENT_SECRET = "platform-secret-8c1d"
REDIRECT_URI = "http://127.0.0.1:9/callback"


def sandbox_config(**overrides: object) -> SandboxConfig:
    """A small sandbox with fast timers and no rate limit."""
    values: dict[str, object] = {
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "heartbeat_interval": 0.1,
        "agents": 5,
        "rate_limit_per_minute": 0,
        "ring_seconds": 0.05,
        "talk_seconds": 0.1,
        "wrapup_seconds": 0.05,
    }
    values.update(overrides)
    return SandboxConfig(**values)  # type: ignore[arg-type]


@pytest.fixture
async def server() -> AsyncIterator[SandboxServer]:
    """A sandbox platform listening on a real loopback port."""
    async with SandboxServer(sandbox_config(), host="127.0.0.1", port=0) as running:
        yield running


@pytest.fixture
async def platform(server: SandboxServer) -> AsyncIterator[PlatformClient]:
    """A PlatformClient with client credentials against the sandbox."""
    tokens = ClientCredentials(
        login_base=server.base_url, client_id=CLIENT_ID, client_secret=CLIENT_SECRET
    )
    async with PlatformClient(api_base=server.base_url, tokens=tokens, timeout=5.0) as client:
        yield client


async def sign_in(server: SandboxServer, agent_id: str) -> AuthorizationCode:
    """Run the sandbox's browser-less authorization-code flow for ``agent_id`` (PKCE)."""
    verifier, challenge = make_pkce_pair()
    url = authorization_url(server.base_url, CLIENT_ID, REDIRECT_URI, challenge, "state-1")
    async with httpx.AsyncClient(follow_redirects=False) as http:
        # httpx's params= would replace the URL's query, so the sandbox's extra goes in by hand.
        response = await http.get(f"{url}&{urlencode({'sandbox_user': agent_id})}")
    assert response.status_code in (302, 303), response.text
    query = parse_qs(urlsplit(response.headers["Location"]).query)
    assert query["state"] == ["state-1"]
    return AuthorizationCode(
        login_base=server.base_url,
        client_id=CLIENT_ID,
        redirect_uri=REDIRECT_URI,
        code=query["code"][0],
        code_verifier=verifier,
    )


async def test_client_credentials_token(server: SandboxServer) -> None:
    """The sandbox issues a cached bearer token for the configured client."""
    tokens = ClientCredentials(
        login_base=server.base_url, client_id=CLIENT_ID, client_secret=CLIENT_SECRET
    )
    token = await tokens.token()
    assert token.token_type.lower() == "bearer"
    assert token.lifetime > 0
    assert await tokens.token() is token


async def test_channels_create_list_and_head(platform: PlatformClient) -> None:
    """A created channel is listed and alive; an unknown id is not."""
    channel = await platform.create_channel()
    assert channel.connect_uri.startswith("ws://127.0.0.1:")
    assert channel.connect_uri.endswith(f"/channels/{channel.id}")
    assert channel.expires is not None
    assert channel.id in {listed.id for listed in await platform.list_channels()}
    assert await platform.channel_exists(channel.id) is True
    assert await platform.channel_exists("no-such-channel") is False


async def test_subscriptions_put_post_get_delete(
    platform: PlatformClient, server: SandboxServer
) -> None:
    """PUT replaces, POST adds, GET lists and DELETE clears a channel's topics."""
    first, second = (agent.id for agent in server.sandbox.agents[:2])
    calls = f"v2.users.{first}.conversations.calls"
    presence = f"v2.users.{first}.presence"
    other = f"v2.users.{second}.conversations.calls"
    channel = await platform.create_channel()
    put = await platform.put_subscriptions(channel.id, [calls, presence])
    assert [s.id for s in put] == [calls, presence]
    await platform.add_subscriptions(channel.id, [other])
    listed = await platform.get_subscriptions(channel.id)
    assert {s.id for s in listed} == {calls, presence, other}
    await platform.put_subscriptions(channel.id, [other])
    assert [s.id for s in await platform.get_subscriptions(channel.id)] == [other]
    await platform.delete_subscriptions(channel.id)
    assert await platform.get_subscriptions(channel.id) == ()


async def test_ignore_errors_reports_rejected_topics(
    platform: PlatformClient, server: SandboxServer
) -> None:
    """A denied topic is Rejected with its missing permission under ignore_errors, 403 without."""
    agent = server.sandbox.agents[0].id
    allowed = f"v2.users.{agent}.conversations.calls"
    denied = "v2.routing.queues."
    server.sandbox.faults.deny_topic_prefix(denied, missing="routing:queue:view")
    queue_topic = f"v2.routing.queues.{server.sandbox.queues[0].id}.conversations.calls"
    channel = await platform.create_channel()
    result = await platform.put_subscriptions(
        channel.id, [allowed, queue_topic], ignore_errors=True
    )
    by_topic = {s.id: s for s in result}
    assert by_topic[allowed].state == "Permitted"
    assert by_topic[queue_topic].rejected
    assert by_topic[queue_topic].missing_permissions == ("routing:queue:view",)
    assert [s.id for s in await platform.get_subscriptions(channel.id)] == [allowed]
    with pytest.raises(PermissionDeniedError) as info:
        await platform.put_subscriptions(channel.id, [queue_topic])
    assert queue_topic in str(info.value)
    assert info.value.status == 403


async def test_list_users_follows_pages(platform: PlatformClient, server: SandboxServer) -> None:
    """With two users per page, every sandbox agent still comes back, in order."""
    users = await platform.list_users(page_size=2)
    assert [user.id for user in users] == [agent.id for agent in server.sandbox.agents]
    assert all(user.email for user in users)


async def test_users_me_needs_a_user_token(platform: PlatformClient, server: SandboxServer) -> None:
    """users/me answers 400 to client credentials and the agent with a signed-in token."""
    with pytest.raises(BadRequestError, match="needs a user's token"):
        await platform.get_me()
    agent = server.sandbox.agents[1]
    tokens = await sign_in(server, agent.id)
    async with PlatformClient(api_base=server.base_url, tokens=tokens) as user_client:
        me = await user_client.get_me()
        assert (me.id, me.station_id) == (agent.id, agent.station_id)
        station = await user_client.get_station(agent.station_id)
        assert station.type == "inin_webrtc_softphone"
        assert station.web_rtc_persistent_enabled is True
        renewed = await tokens.refresh()  # the refresh_token grant
        assert renewed is tokens.current
        assert (await user_client.get_me()).id == agent.id


async def test_get_call_and_answer_then_hang_up(
    platform: PlatformClient, server: SandboxServer
) -> None:
    """A manual inbound call can be read, answered, muted and hung up through the REST client."""
    agent = server.sandbox.agents[0]
    conversation_id = await server.sandbox.calls.place_inbound(agent.id, auto=False)
    call = await platform.get_call(conversation_id)
    legs = [p for p in call.participants if p.purpose == "agent" and p.user_id == agent.id]
    assert len(legs) == 1
    leg = legs[0]
    assert leg.state == "alerting"
    customer = next(p for p in call.participants if p.purpose == "customer")
    assert customer.ani
    await platform.patch_participant(conversation_id, leg.id, state="connected")
    answered = await _wait_for_state(platform, conversation_id, leg.id, "connected")
    assert answered.connected_time is not None
    await platform.patch_participant(conversation_id, leg.id, muted=True)
    muted = await _wait_for_state(platform, conversation_id, leg.id, "connected")
    assert muted.muted is True
    await platform.patch_participant(conversation_id, leg.id, state="disconnected")
    ended = await _wait_for_state(platform, conversation_id, leg.id, "disconnected", "terminated")
    assert ended.end_time is not None


async def test_call_event_bodies_parse_as_call_conversations(
    platform: PlatformClient, server: SandboxServer
) -> None:
    """Every conversations.calls eventBody of a call parses with the same constructor as REST."""
    agent = server.sandbox.agents[2]
    conversation_id = await server.sandbox.calls.place_inbound(agent.id, auto=True)
    await asyncio.wait_for(server.sandbox.calls.wait_closed(conversation_id), timeout=5.0)
    topic = f"v2.users.{agent.id}.conversations.calls"
    bodies = [e.event_body for e in server.sandbox.ledger if e.topic_name == topic]
    assert len(bodies) >= 3  # alerting, connected, disconnected at least
    events = [CallConversation.from_genesys(body) for body in bodies]
    assert {event.id for event in events} == {conversation_id}
    agent_states = [
        p.state for event in events for p in event.participants if p.user_id == agent.id
    ]
    assert agent_states[0] == "alerting"
    assert "connected" in agent_states
    assert agent_states[-1] in ("disconnected", "terminated")
    final = await platform.get_call(conversation_id)
    assert final == events[-1]


async def test_rate_limit_is_waited_out_over_the_wire(server: SandboxServer) -> None:
    """Real 429s with Retry-After are retried after exactly that long (sleep injected)."""
    waits: list[float] = []

    async def no_sleep(seconds: float) -> None:
        waits.append(seconds)

    tokens = ClientCredentials(
        login_base=server.base_url, client_id=CLIENT_ID, client_secret=CLIENT_SECRET
    )
    await tokens.token()
    server.sandbox.faults.rate_limit_burst(2, retry_after=1)
    async with PlatformClient(api_base=server.base_url, tokens=tokens, sleep=no_sleep) as client:
        assert isinstance(await client.list_channels(), tuple)
    assert waits == [1.0, 1.0]


async def test_revoked_token_is_refreshed_once(
    platform: PlatformClient, server: SandboxServer
) -> None:
    """After the platform revokes the token, the next request gets a 401, a new token, success."""
    await platform.list_channels()
    before = platform.tokens.current
    server.sandbox.faults.revoke_token()
    await platform.list_channels()
    after = platform.tokens.current
    assert before is not None
    assert after is not None
    assert after.value != before.value


async def test_wrong_secret_is_refused_clearly(server: SandboxServer) -> None:
    """The sandbox refuses a wrong secret and the error names the settings, not the secret."""
    tokens = ClientCredentials(
        login_base=server.base_url, client_id=CLIENT_ID, client_secret="wrong-secret-1234"
    )
    with pytest.raises(AuthenticationError, match="CRMPHONE_CLIENT_SECRET") as info:
        await tokens.token()
    assert "wrong-secret-1234" not in str(info.value)
    assert "invalid_client" in str(info.value)


async def test_unknown_call_is_not_found(platform: PlatformClient) -> None:
    """get_call of an unknown id raises NotFoundError."""
    with pytest.raises(NotFoundError):
        await platform.get_call("00000000-0000-4000-8000-000000000000")


async def test_requests_are_logged_without_the_token(
    platform: PlatformClient, caplog: pytest.LogCaptureFixture
) -> None:
    """Against a real server too, request logs carry method, path and status, never the token."""
    caplog.set_level(logging.DEBUG, logger="crmphone.platform")
    await platform.list_channels()
    token = platform.tokens.current
    assert token is not None
    messages = [record.getMessage() for record in caplog.records]
    assert any("GET /api/v2/notifications/channels -> 200" in m for m in messages)
    assert all(token.value not in m and CLIENT_SECRET not in m for m in messages)


async def _wait_for_state(
    platform: PlatformClient, conversation_id: str, participant_id: str, *states: str
) -> Participant:
    """Poll get_call until the participant reaches one of ``states`` (bounded to 5 s)."""

    async def poll() -> Participant:
        while True:
            call = await platform.get_call(conversation_id)
            participant = call.participant(participant_id)
            if participant is not None and participant.state in states:
                return participant
            await asyncio.sleep(0.02)

    return await asyncio.wait_for(poll(), timeout=5.0)
