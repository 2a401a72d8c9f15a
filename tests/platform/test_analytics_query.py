"""The conversation detail query: the sandbox's endpoint and PlatformClient.conversation_ids_between.

After a gap in the notification stream the connector asks the analytics API which calls were
active meanwhile. These tests run the real sandbox on loopback with a manual clock, so every call
starts, is answered, ends and finishes its wrap-up at a known instant.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import PureCloudPlatformClientV2 as PureCloud
import pytest

from crmphone.clock import ManualClock
from crmphone.errors import BadRequestError, PermissionDeniedError
from crmphone.platform import ClientCredentials, PlatformClient
from crmphone.sandbox import SandboxServer, SandboxThread
from crmphone.testing import (
    TEST_CLIENT_ID,
    TEST_CLIENT_SECRET,
    fast_sandbox_config,
    sign_in_sandbox_agent,
)

QUERY = "/api/v2/analytics/conversations/details/query"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> ManualClock:
    """The sandbox's clock: event timestamps move only when a test advances it."""
    return ManualClock(start_wall=T0)


@pytest.fixture
async def server(clock: ManualClock) -> AsyncIterator[SandboxServer]:
    """A sandbox on a real loopback port whose call timestamps come from ``clock``."""
    async with SandboxServer(fast_sandbox_config(), host="127.0.0.1", port=0, clock=clock) as s:
        yield s


@pytest.fixture
def tokens(server: SandboxServer) -> ClientCredentials:
    """Client credentials for the sandbox (an integration's token, as the connector uses)."""
    return ClientCredentials(
        login_base=server.base_url, client_id=TEST_CLIENT_ID, client_secret=TEST_CLIENT_SECRET
    )


@pytest.fixture
async def platform(
    server: SandboxServer, tokens: ClientCredentials
) -> AsyncIterator[PlatformClient]:
    """crmphone's platform client on the sandbox."""
    async with PlatformClient(api_base=server.base_url, tokens=tokens) as client:
        yield client


async def finished_call(server: SandboxServer, clock: ManualClock, agent: int = 0) -> str:
    """An inbound call that rings 5 s, talks 60 s and wraps up 10 s, all on ``clock``."""
    calls = server.sandbox.calls
    conversation_id = await calls.place_inbound(server.sandbox.agents[agent].id, auto=False)
    clock.advance(5)
    calls.agent_answers(conversation_id)
    clock.advance(60)
    calls.customer_hangs_up(conversation_id)
    clock.advance(10)  # the wrap-up lands a moment later, stamped with this time
    async with asyncio.timeout(5):
        await calls.wait_closed(conversation_id)
    return conversation_id


def api_requests(server: SandboxServer) -> int:
    """How many API requests the sandbox has served so far."""
    return server.sandbox.world.counters["api_requests"]


async def post_query(server: SandboxServer, tokens: ClientCredentials, body: Any) -> httpx.Response:
    """POST ``body`` to the detail query as a raw HTTP client would."""
    token = await tokens.token()
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        return await http.post(QUERY, json=body, headers={"Authorization": token.authorization})


def iso(moment: datetime) -> str:
    """``moment`` as Genesys writes it."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


async def test_calls_that_began_and_ended_inside_the_window_are_found_and_no_others(
    server: SandboxServer, clock: ManualClock, platform: PlatformClient
) -> None:
    """Calls inside the window come back in start order; calls before and after it do not."""
    before = await finished_call(server, clock, agent=0)  # 09:00:00 to 09:01:15
    clock.advance(60)
    window_start = clock.wall()
    inside_a = await finished_call(server, clock, agent=1)
    inside_b = await finished_call(server, clock, agent=2)
    clock.advance(1)
    window_end = clock.wall()
    clock.advance(60)
    after = await finished_call(server, clock, agent=0)

    assert await platform.conversation_ids_between(window_start, window_end) == (
        inside_a,
        inside_b,
    )
    # A window touching only the tail of a call (its wrap-up) still finds it.
    tail = T0 + timedelta(seconds=70)
    assert await platform.conversation_ids_between(tail, tail + timedelta(seconds=2)) == (before,)
    everything = await platform.conversation_ids_between(T0, clock.wall())
    assert everything == (before, inside_a, inside_b, after)
    later = clock.wall() + timedelta(seconds=1)  # the last call's wrap-up ended at clock.wall()
    assert await platform.conversation_ids_between(later, later + timedelta(days=1)) == ()


async def test_a_call_still_going_on_is_found_without_a_conversation_end(
    server: SandboxServer, clock: ManualClock, platform: PlatformClient, tokens: ClientCredentials
) -> None:
    """A live call that began before the window overlaps it up to now; its end comes later."""
    calls = server.sandbox.calls
    live = await calls.place_inbound(server.sandbox.agents[0].id, auto=False)
    calls.agent_answers(live)
    clock.advance(120)
    window = (clock.wall() - timedelta(seconds=10), clock.wall())
    assert await platform.conversation_ids_between(*window) == (live,)

    interval = f"{iso(window[0])}/{iso(window[1])}"
    ongoing = (await post_query(server, tokens, {"interval": interval})).json()
    assert "conversationEnd" not in ongoing["conversations"][0]

    calls.customer_hangs_up(live)
    async with asyncio.timeout(5):
        await calls.wait_closed(live)
    ended = (await post_query(server, tokens, {"interval": interval})).json()
    assert ended["conversations"][0]["conversationEnd"] == iso(clock.wall())


async def test_the_user_filter_keeps_the_calls_those_users_took_part_in(
    server: SandboxServer, clock: ManualClock, platform: PlatformClient
) -> None:
    """user_ids selects by agent, or-combined, batched 50 ids a query, in start order."""
    agents = [agent.id for agent in server.sandbox.agents]
    first, second, third = [await finished_call(server, clock, agent=i) for i in range(3)]
    start, end = T0, clock.wall()

    assert await platform.conversation_ids_between(start, end, user_ids=[agents[1]]) == (second,)
    both = await platform.conversation_ids_between(start, end, user_ids=[agents[2], agents[0]])
    assert both == (first, third)
    assert await platform.conversation_ids_between(start, end, user_ids=["nobody"]) == ()

    many = [f"user-{i}" for i in range(110)] + [agents[2], agents[1], agents[2]]
    served = api_requests(server)
    assert await platform.conversation_ids_between(start, end, user_ids=many) == (second, third)
    assert api_requests(server) - served == 3  # 112 distinct ids: batches of 50, 50 and 12


async def test_pages_are_followed_until_every_hit_is_collected(
    server: SandboxServer, clock: ManualClock, platform: PlatformClient
) -> None:
    """Five calls at two a page take three requests; a page that holds them all takes one."""
    placed = [await finished_call(server, clock, agent=i % 3) for i in range(5)]
    start, end = T0, clock.wall()

    served = api_requests(server)
    assert await platform.conversation_ids_between(start, end, page_size=2) == tuple(placed)
    assert api_requests(server) - served == 3
    served = api_requests(server)
    assert await platform.conversation_ids_between(start, end, page_size=5) == tuple(placed)
    assert api_requests(server) - served == 1  # totalHits reached: no empty page asked for


async def test_the_answer_has_genesys_detail_shape_and_omits_conversations_when_empty(
    server: SandboxServer, clock: ManualClock, tokens: ClientCredentials
) -> None:
    """Conversation, participants, voice sessions and segments; no ``conversations`` when none."""
    agent = server.sandbox.agents[0].id
    conversation_id = await finished_call(server, clock)
    interval = f"{iso(T0)}/{iso(clock.wall())}"

    response = await post_query(
        server,
        tokens,
        {
            "interval": interval,
            "order": "asc",
            "orderBy": "conversationStart",
            "paging": {"pageSize": 25, "pageNumber": 1},
            "segmentFilters": [
                {
                    "type": "or",
                    "predicates": [
                        {"type": "dimension", "dimension": "userId", "value": agent},
                        {"dimension": "userId", "operator": "matches", "value": "someone"},
                    ],
                }
            ],
        },
    )
    assert response.status_code == 200
    assert response.headers["ININ-Correlation-Id"]
    body = response.json()
    assert body["totalHits"] == 1
    (conversation,) = body["conversations"]
    assert conversation["conversationId"] == conversation_id
    assert conversation["conversationStart"] == iso(T0)
    assert conversation["conversationEnd"] == iso(T0 + timedelta(seconds=75))  # wrap-up done
    assert conversation["originatingDirection"] == "inbound"
    legs = {p["purpose"]: p for p in conversation["participants"]}
    assert list(legs) == ["customer", "acd", "agent"]
    assert legs["agent"]["userId"] == agent
    assert "userId" not in legs["customer"]
    (session,) = legs["agent"]["sessions"]
    assert session["mediaType"] == "voice"
    assert [s["segmentType"] for s in session["segments"]] == ["alert", "interact", "wrapup"]
    assert session["segments"][1]["disconnectType"] == "peer"

    later = f"{iso(clock.wall() + timedelta(hours=1))}/{iso(clock.wall() + timedelta(hours=2))}"
    empty = await post_query(server, tokens, {"interval": later})
    assert empty.json() == {"totalHits": 0}
    beyond = await post_query(server, tokens, {"interval": interval, "paging": {"pageNumber": 2}})
    assert beyond.json() == {"totalHits": 1}


INTERVAL = "2026-03-02T09:00:00.000Z/2026-03-02T10:00:00.000Z"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "must be a JSON object"),
        ({}, "interval is required"),
        ({"interval": "yesterday/today"}, "ISO-8601"),
        ({"interval": "2026-03-02T10:00:00Z/2026-03-02T09:00:00Z"}, "must end after it starts"),
        ({"interval": "2026-03-01T00:00:00Z/2026-03-09T00:00:00Z"}, "at most 7 days"),
        ({"interval": INTERVAL, "paging": {"pageSize": 101}}, "paging.pageSize"),
        ({"interval": INTERVAL, "paging": {"pageSize": "10"}}, "paging.pageSize"),
        ({"interval": INTERVAL, "paging": {"pageNumber": 0}}, "paging.pageNumber"),
        ({"interval": INTERVAL, "paging": [1, 25]}, "paging must be an object"),
        ({"interval": INTERVAL, "order": "sideways"}, "order must be"),
        ({"interval": INTERVAL, "segmentFilters": [{"type": "xor"}]}, '"and" or "or"'),
        (
            {"interval": INTERVAL, "segmentFilters": [{"type": "or", "predicates": []}]},
            "at least one predicate",
        ),
        (
            {
                "interval": INTERVAL,
                "segmentFilters": [{"type": "or", "predicates": [{"dimension": "shoeSize"}]}],
            },
            "'shoeSize' is not supported",
        ),
        (
            {
                "interval": INTERVAL,
                "conversationFilters": [
                    {"type": "and", "predicates": [{"dimension": "conversationId"}]}
                ],
            },
            "value must be a non-empty string",
        ),
    ],
)
async def test_a_bad_query_is_a_400_naming_what_is_wrong(
    server: SandboxServer, tokens: ClientCredentials, body: Any, message: str
) -> None:
    """Malformed interval, paging, order or filters answer 400 in Genesys's error shape."""
    response = await post_query(server, tokens, body)
    assert response.status_code == 400
    error = response.json()
    assert (error["status"], error["code"]) == (400, "bad.request")
    assert message in error["message"]


async def test_a_400_from_the_query_is_a_bad_request_error(
    server: SandboxServer, platform: PlatformClient
) -> None:
    """An interval beyond the platform's 31 days comes back as BadRequestError with its reason."""
    with pytest.raises(BadRequestError) as info:
        await platform.conversation_ids_between(T0, T0 + timedelta(days=32))
    assert info.value.status == 400
    assert "31 days" in str(info.value)
    assert QUERY in str(info.value)


async def test_a_user_token_needs_the_conversation_detail_permission(
    server: SandboxServer, clock: ManualClock
) -> None:
    """Without analytics:conversationDetail:view an agent's token gets 403; with it, the calls."""
    agent = server.sandbox.agents[0].id
    conversation_id = await finished_call(server, clock)
    tokens = await sign_in_sandbox_agent(server.base_url, agent)
    async with PlatformClient(api_base=server.base_url, tokens=tokens) as client:
        with pytest.raises(PermissionDeniedError) as info:
            await client.conversation_ids_between(T0, clock.wall())
        assert "analytics:conversationDetail:view" in str(info.value)
        server.sandbox.world.set_permission(agent, "analytics:conversationDetail:view", True)
        assert await client.conversation_ids_between(T0, clock.wall()) == (conversation_id,)


@pytest.fixture
def sandbox_thread() -> Iterator[SandboxThread]:
    """A sandbox in a background thread, for the synchronous Genesys SDK."""
    with SandboxThread(fast_sandbox_config(), host="127.0.0.1", port=0) as running:
        yield running


def test_the_genesys_sdk_queries_conversation_details(sandbox_thread: SandboxThread) -> None:
    """ConversationsApi.post_analytics_conversations_details_query parses the sandbox's answer."""
    sdk = PureCloud.api_client.ApiClient(host=sandbox_thread.base_url)
    sdk.get_client_credentials_token(TEST_CLIENT_ID, TEST_CLIENT_SECRET)
    agent = sandbox_thread.sandbox.agents[1].id
    calls = sandbox_thread.sandbox.calls
    began = datetime.now(UTC) - timedelta(minutes=1)
    conversation_id = sandbox_thread.run(calls.place_inbound(agent, auto=True))
    sandbox_thread.run(calls.wait_closed(conversation_id))

    predicate = PureCloud.SegmentDetailQueryPredicate()
    predicate.type = "dimension"
    predicate.dimension = "userId"
    predicate.operator = "matches"
    predicate.value = agent
    segment_filter = PureCloud.SegmentDetailQueryFilter()
    segment_filter.type = "or"
    segment_filter.predicates = [predicate]
    paging = PureCloud.PagingSpec()
    paging.page_size = 25
    paging.page_number = 1
    query = PureCloud.ConversationQuery()
    query.interval = f"{iso(began)}/{iso(datetime.now(UTC) + timedelta(minutes=1))}"
    query.order = "asc"
    query.order_by = "conversationStart"
    query.paging = paging
    query.segment_filters = [segment_filter]

    api = PureCloud.ConversationsApi(sdk)
    answer = api.post_analytics_conversations_details_query(query)
    assert answer.total_hits == 1
    (conversation,) = answer.conversations
    assert conversation.conversation_id == conversation_id
    assert conversation.conversation_start.tzinfo is not None
    assert conversation.conversation_end > conversation.conversation_start
    assert conversation.originating_direction == "inbound"
    legs = {p.purpose: p for p in conversation.participants}
    assert legs["agent"].user_id == agent
    (session,) = legs["agent"].sessions
    assert session.media_type == "voice"
    assert [s.segment_type for s in session.segments] == ["alert", "interact", "wrapup"]
    assert session.segments[-1].wrap_up_code

    predicate.value = sandbox_thread.sandbox.agents[2].id
    nothing = api.post_analytics_conversations_details_query(query)
    assert (nothing.total_hits, nothing.conversations) == (0, None)
    paging.page_size = 101
    with pytest.raises(PureCloud.rest.ApiException) as info:
        api.post_analytics_conversations_details_query(query)
    assert info.value.status == 400
