"""PlatformClient against a mocked API host: requests, retries, token refresh, error mapping."""

from __future__ import annotations

import json
import logging
import random
from datetime import timedelta
from email.utils import format_datetime

import httpx
import pytest
import respx
from platform_fakes import ACCESS, API, LOGIN, SECRET, RecordedSleeps, token_response

from crmphone.clock import ManualClock
from crmphone.errors import (
    AuthenticationError,
    BadRequestError,
    ConfigError,
    InvalidStateError,
    NotFoundError,
    PermissionDeniedError,
    PlatformError,
    RateLimitedError,
    ServerError,
    TransportError,
    UsageError,
)
from crmphone.platform import (
    ClientCredentials,
    PlatformClient,
    RetryPolicy,
    StaticToken,
    TopicSubscription,
)

CHANNELS = f"{API}/api/v2/notifications/channels"
CHANNEL_BODY = {
    "connectUri": "wss://streaming.example.test/channels/ch-1",
    "id": "ch-1",
    "expires": "2026-01-02T00:00:00.000Z",
}
ERROR_403 = {
    "message": "Missing permission conversation:call:view",
    "code": "missing.permissions",
    "status": 403,
    "contextId": "ctx-403",
    "details": [],
    "errors": [],
}


def genesys_error(status: int, message: str, code: str, **headers: str) -> httpx.Response:
    """An error response shaped like Genesys Cloud's."""
    return httpx.Response(
        status,
        json={"message": message, "code": code, "status": status, "contextId": f"ctx-{status}"},
        headers={"ININ-Correlation-Id": f"corr-{status}", **headers},
    )


async def test_create_channel_sends_bearer_token_and_parses(
    mock: respx.MockRouter, mocked_client: PlatformClient
) -> None:
    """create_channel POSTs with the bearer token and returns a Channel."""
    route = mock.post(CHANNELS).mock(return_value=httpx.Response(200, json=CHANNEL_BODY))
    channel = await mocked_client.create_channel()
    assert channel.id == "ch-1"
    request = route.calls.last.request
    assert request.headers["Authorization"] == f"Bearer {ACCESS}"
    assert request.headers["User-Agent"].startswith("crmphone/")
    assert request.content == b""


async def test_list_channels(mock: respx.MockRouter, mocked_client: PlatformClient) -> None:
    """list_channels returns every entity as a Channel."""
    mock.get(CHANNELS).mock(
        return_value=httpx.Response(
            200, json={"entities": [CHANNEL_BODY, {**CHANNEL_BODY, "id": "ch-2"}]}
        )
    )
    channels = await mocked_client.list_channels()
    assert [channel.id for channel in channels] == ["ch-1", "ch-2"]


async def test_channel_exists_maps_head_statuses(
    mock: respx.MockRouter, mocked_client: PlatformClient
) -> None:
    """HEAD 200 means alive, 404 means gone; the id is quoted into one path segment."""
    mock.head(f"{CHANNELS}/ch-1").mock(return_value=httpx.Response(200))
    mock.head(f"{CHANNELS}/gone").mock(return_value=httpx.Response(404))
    odd = mock.head(f"{CHANNELS}/a%2Fb").mock(return_value=httpx.Response(404))
    assert await mocked_client.channel_exists("ch-1") is True
    assert await mocked_client.channel_exists("gone") is False
    assert await mocked_client.channel_exists("a/b") is False
    assert odd.called


async def test_put_subscriptions_sends_topics(
    mock: respx.MockRouter, mocked_client: PlatformClient
) -> None:
    """PUT sends [{"id": topic}, …] and returns the platform's list."""
    topics = ["v2.users.u-1.conversations.calls", "v2.users.u-1.presence"]
    route = mock.put(f"{CHANNELS}/ch-1/subscriptions").mock(
        return_value=httpx.Response(200, json={"entities": [{"id": t} for t in topics]})
    )
    result = await mocked_client.put_subscriptions("ch-1", topics)
    request = route.calls.last.request
    assert json.loads(request.content) == [{"id": t} for t in topics]
    assert "ignoreErrors" not in str(request.url)
    assert result == tuple(TopicSubscription(id=t) for t in topics)


async def test_ignore_errors_returns_per_topic_states(
    mock: respx.MockRouter, mocked_client: PlatformClient
) -> None:
    """With ignore_errors the query says ignoreErrors=true and rejected topics come back."""
    route = mock.post(f"{CHANNELS}/ch-1/subscriptions", params={"ignoreErrors": "true"}).mock(
        return_value=httpx.Response(
            200,
            json={
                "entities": [
                    {"id": "v2.users.u-1.presence", "state": "Permitted"},
                    {
                        "id": "v2.routing.queues.q.conversations.calls",
                        "state": "Rejected",
                        "rejectionReason": "Missing permissions",
                        "missingPermissions": ["routing:queue:view"],
                    },
                ]
            },
        )
    )
    result = await mocked_client.add_subscriptions(
        "ch-1", ("v2.users.u-1.presence", "v2.routing.queues.q.conversations.calls"), True
    )
    assert route.called
    assert [s.rejected for s in result] == [False, True]
    assert result[1].missing_permissions == ("routing:queue:view",)


async def test_forbidden_subscription_without_ignore_errors(
    mock: respx.MockRouter, mocked_client: PlatformClient
) -> None:
    """Without ignore_errors a 403 raises PermissionDeniedError with the platform's words."""
    mock.put(f"{CHANNELS}/ch-1/subscriptions").mock(
        return_value=httpx.Response(403, json=ERROR_403, headers={"ININ-Correlation-Id": "c-9"})
    )
    with pytest.raises(PermissionDeniedError) as info:
        await mocked_client.put_subscriptions("ch-1", ["v2.users.u-1.conversations.calls"])
    error = info.value
    message = str(error)
    assert "PUT /api/v2/notifications/channels/ch-1/subscriptions failed: 403" in message
    assert "Missing permission conversation:call:view" in message
    assert "role" in message
    assert "ignore_errors=True" in message
    assert (error.status, error.code, error.correlation_id) == (403, "missing.permissions", "c-9")


async def test_get_and_delete_subscriptions(
    mock: respx.MockRouter, mocked_client: PlatformClient
) -> None:
    """GET lists the topics; DELETE clears them and accepts an empty 204."""
    mock.get(f"{CHANNELS}/ch-1/subscriptions").mock(
        return_value=httpx.Response(200, json={"entities": [{"id": "t"}]})
    )
    deleted = mock.delete(f"{CHANNELS}/ch-1/subscriptions").mock(return_value=httpx.Response(204))
    assert await mocked_client.get_subscriptions("ch-1") == (TopicSubscription(id="t"),)
    await mocked_client.delete_subscriptions("ch-1")
    assert deleted.called


async def test_a_single_string_of_topics_is_refused(mocked_client: PlatformClient) -> None:
    """Passing one topic string instead of a list is caught before anything is sent."""
    with pytest.raises(UsageError, match="not a single string"):
        await mocked_client.put_subscriptions("ch-1", "v2.users.u-1.presence")
    with pytest.raises(UsageError, match="channel_id"):
        await mocked_client.get_subscriptions("")


async def test_get_call_and_patch_participant(
    mock: respx.MockRouter, mocked_client: PlatformClient
) -> None:
    """get_call parses the conversation; patch_participant sends only the given fields."""
    mock.get(f"{API}/api/v2/conversations/calls/c-1").mock(
        return_value=httpx.Response(
            200,
            json={
                "id": "c-1",
                "participants": [{"id": "p", "purpose": "agent", "state": "alerting"}],
            },
        )
    )
    patch = mock.patch(f"{API}/api/v2/conversations/calls/c-1/participants/p").mock(
        return_value=httpx.Response(202)
    )
    call = await mocked_client.get_call("c-1")
    assert call.participants[0].state == "alerting"
    await mocked_client.patch_participant("c-1", "p", state="connected")
    await mocked_client.patch_participant("c-1", "p", muted=True, held=False)
    assert [json.loads(c.request.content) for c in patch.calls] == [
        {"state": "connected"},
        {"muted": True, "held": False},
    ]
    with pytest.raises(UsageError, match="at least one"):
        await mocked_client.patch_participant("c-1", "p")


async def test_place_call_returns_the_conversation_id(
    mock: respx.MockRouter, mocked_client: PlatformClient
) -> None:
    """place_call posts phoneNumber (and callFromQueueId) and returns the new id."""
    route = mock.post(f"{API}/api/v2/conversations/calls").mock(
        return_value=httpx.Response(200, json={"id": "c-new", "selfUri": "/x"})
    )
    assert await mocked_client.place_call("+15551230001", queue_id="q-1") == "c-new"
    assert json.loads(route.calls.last.request.content) == {
        "phoneNumber": "+15551230001",
        "callFromQueueId": "q-1",
    }
    route.mock(return_value=httpx.Response(200, json={"selfUri": "/x"}))
    with pytest.raises(PlatformError, match="no conversation 'id'"):
        await mocked_client.place_call("+15551230001")


async def test_list_users_follows_every_page(
    mock: respx.MockRouter, mocked_client: PlatformClient
) -> None:
    """list_users asks page after page until pageCount is reached."""

    def page(request: httpx.Request) -> httpx.Response:
        number = int(request.url.params["pageNumber"])
        users = [{"id": f"u-{number}-{i}", "name": f"User {number}.{i}"} for i in range(2)]
        return httpx.Response(
            200, json={"entities": users, "pageNumber": number, "pageSize": 2, "pageCount": 3}
        )

    route = mock.get(f"{API}/api/v2/users").mock(side_effect=page)
    users = await mocked_client.list_users()
    assert [u.id for u in users] == [f"u-{n}-{i}" for n in (1, 2, 3) for i in range(2)]
    assert [c.request.url.params["pageNumber"] for c in route.calls] == ["1", "2", "3"]


async def test_list_users_stops_at_total_or_an_empty_page(
    mock: respx.MockRouter, mocked_client: PlatformClient
) -> None:
    """Without pageCount, total ends the paging; without either, an empty page does."""
    pages = [
        httpx.Response(200, json={"entities": [{"id": "a"}, {"id": "b"}], "total": 3}),
        httpx.Response(200, json={"entities": [{"id": "c"}], "total": 3}),
    ]
    mock.get(f"{API}/api/v2/users").mock(side_effect=pages)
    assert [u.id for u in await mocked_client.list_users()] == ["a", "b", "c"]
    mock.get(f"{API}/api/v2/users").mock(
        side_effect=[
            httpx.Response(200, json={"entities": [{"id": "a"}]}),
            httpx.Response(200, json={"entities": []}),
        ]
    )
    assert [u.id for u in await mocked_client.list_users()] == ["a"]


async def test_get_me_expands_station_and_get_station(
    mock: respx.MockRouter, mocked_client: PlatformClient
) -> None:
    """get_me expands station and permissions; get_station reads the persistent flag."""
    me = mock.get(f"{API}/api/v2/users/me", params={"expand": "station,authorization"}).mock(
        return_value=httpx.Response(
            200,
            json={
                "id": "u-1",
                "station": {"effectiveStation": {"id": "st-1"}},
                "authorization": {"permissions": ["routing:conversation:acceptOffQueue"]},
            },
        )
    )
    mock.get(f"{API}/api/v2/stations/st-1").mock(
        return_value=httpx.Response(
            200,
            json={"id": "st-1", "type": "inin_webrtc_softphone", "webRtcPersistentEnabled": True},
        )
    )
    user = await mocked_client.get_me()
    assert me.called
    assert user.station_id == "st-1"
    assert user.permissions == ("routing:conversation:acceptOffQueue",)
    station = await mocked_client.get_station(user.station_id)
    assert station.web_rtc_persistent_enabled is True


async def test_get_me_with_client_credentials_explains_the_400(
    mock: respx.MockRouter, mocked_client: PlatformClient
) -> None:
    """A 400 on users/me adds that a user token is needed."""
    mock.get(f"{API}/api/v2/users/me").mock(
        return_value=genesys_error(400, "This request requires a user context.", "bad.request")
    )
    with pytest.raises(BadRequestError, match="needs a user's token") as info:
        await mocked_client.get_me()
    assert "requires a user context" in str(info.value)
    assert isinstance(info.value.__cause__, BadRequestError)


async def test_429_with_retry_after_then_success(
    mock: respx.MockRouter, mocked_client: PlatformClient, sleeps: RecordedSleeps
) -> None:
    """A 429 is retried after exactly the Retry-After seconds."""
    route = mock.get(CHANNELS).mock(
        side_effect=[
            httpx.Response(429, headers={"Retry-After": "3"}),
            httpx.Response(200, json={"entities": []}),
        ]
    )
    assert await mocked_client.list_channels() == ()
    assert route.call_count == 2
    assert sleeps.delays == [3.0]


async def test_retry_after_as_http_date(
    mock: respx.MockRouter,
    mocked_client: PlatformClient,
    sleeps: RecordedSleeps,
    clock: ManualClock,
) -> None:
    """A Retry-After HTTP-date is waited out relative to the client's clock."""
    when = format_datetime(clock.wall() + timedelta(seconds=5), usegmt=True)
    mock.get(CHANNELS).mock(
        side_effect=[
            httpx.Response(503, headers={"Retry-After": when}),
            httpx.Response(200, json={"entities": []}),
        ]
    )
    await mocked_client.list_channels()
    assert sleeps.delays == [5.0]


async def test_persistent_503_exhausts_the_budget(
    mock: respx.MockRouter, mocked_client: PlatformClient, sleeps: RecordedSleeps
) -> None:
    """503 on every attempt ends in ServerError after max_attempts, with growing waits."""
    route = mock.get(CHANNELS).mock(return_value=genesys_error(503, "Service down", "unavailable"))
    with pytest.raises(ServerError) as info:
        await mocked_client.list_channels()
    assert route.call_count == 4
    assert len(sleeps.delays) == 3
    assert all(0 <= d <= 0.5 * 2**i for i, d in enumerate(sleeps.delays))
    message = str(info.value)
    assert "GET /api/v2/notifications/channels failed: 503" in message
    assert "Service down" in message
    assert "after 4 attempts" in message
    assert info.value.correlation_id == "corr-503"


async def test_persistent_429_is_rate_limited_error_with_retry_after(
    mock: respx.MockRouter, mocked_client: PlatformClient
) -> None:
    """A 429 that outlasts the budget raises RateLimitedError carrying retry_after."""
    mock.get(CHANNELS).mock(
        return_value=genesys_error(
            429, "Rate limit exceeded", "too.many.requests", **{"Retry-After": "90"}
        )
    )
    with pytest.raises(RateLimitedError) as info:
        await mocked_client.list_channels()
    assert info.value.retry_after == 90.0
    assert "300 requests/min" in str(info.value)


async def test_401_refreshes_the_token_once_then_succeeds(
    mock: respx.MockRouter, clock: ManualClock, sleeps: RecordedSleeps
) -> None:
    """A 401 triggers one token refresh and the request is sent again with the new token."""
    mock.post(f"{LOGIN}/oauth/token").mock(
        side_effect=[token_response("old"), token_response("new")]
    )
    api = mock.get(CHANNELS).mock(
        side_effect=[httpx.Response(401), httpx.Response(200, json={"entities": []})]
    )
    tokens = ClientCredentials(
        login_base=LOGIN, client_id="id", client_secret=SECRET, clock=clock, sleep=sleeps
    )
    async with PlatformClient(api_base=API, tokens=tokens, clock=clock, sleep=sleeps) as client:
        assert await client.list_channels() == ()
    assert [c.request.headers["Authorization"] for c in api.calls] == ["Bearer old", "Bearer new"]


async def test_401_twice_raises_authentication_error(
    mock: respx.MockRouter, clock: ManualClock, sleeps: RecordedSleeps
) -> None:
    """A second 401 after the refresh is final: AuthenticationError naming what to check."""
    login = mock.post(f"{LOGIN}/oauth/token").mock(return_value=token_response())
    api = mock.get(CHANNELS).mock(
        return_value=genesys_error(401, "Invalid login credentials.", "bad.credentials")
    )
    tokens = ClientCredentials(
        login_base=LOGIN, client_id="id", client_secret=SECRET, clock=clock, sleep=sleeps
    )
    async with PlatformClient(api_base=API, tokens=tokens, clock=clock, sleep=sleeps) as client:
        with pytest.raises(AuthenticationError) as info:
            await client.list_channels()
    assert api.call_count == 2
    assert login.call_count == 2
    message = str(info.value)
    assert "Invalid login credentials." in message
    assert "CRMPHONE_CLIENT_ID" in message
    assert ACCESS not in message
    assert SECRET not in message


async def test_401_with_a_static_token_fails_clearly(
    mock: respx.MockRouter, mocked_client: PlatformClient
) -> None:
    """A static token cannot be refreshed, so the 401 ends in AuthenticationError at once."""
    route = mock.get(CHANNELS).mock(return_value=httpx.Response(401))
    with pytest.raises(AuthenticationError, match="cannot be renewed"):
        await mocked_client.list_channels()
    assert route.call_count == 1


async def test_404_is_not_found_and_not_retried(
    mock: respx.MockRouter, mocked_client: PlatformClient, sleeps: RecordedSleeps
) -> None:
    """A 404 maps to NotFoundError after a single attempt."""
    route = mock.get(f"{API}/api/v2/conversations/calls/nope").mock(
        return_value=genesys_error(404, "Conversation not found", "not.found")
    )
    with pytest.raises(NotFoundError, match="GET /api/v2/conversations/calls/nope failed: 404"):
        await mocked_client.get_call("nope")
    assert route.call_count == 1
    assert sleeps.delays == []


@pytest.mark.parametrize(
    ("status", "error_type"),
    [(400, BadRequestError), (409, PlatformError), (500, ServerError), (501, ServerError)],
)
async def test_statuses_map_to_error_types(
    mock: respx.MockRouter, mocked_client: PlatformClient, status: int, error_type: type[Exception]
) -> None:
    """Each final status becomes its documented exception type, even without an error body."""
    mock.get(CHANNELS).mock(return_value=httpx.Response(status, text=""))
    with pytest.raises(error_type) as info:
        await mocked_client.list_channels()
    assert type(info.value) is error_type
    assert f"failed: {status}" in str(info.value)


async def test_non_json_success_body_is_a_clear_error(
    mock: respx.MockRouter, mocked_client: PlatformClient
) -> None:
    """A 200 with HTML (a proxy's page) raises PlatformError, not JSONDecodeError."""
    mock.get(CHANNELS).mock(
        return_value=httpx.Response(
            200, text="<html>Sign in</html>", headers={"Content-Type": "text/html"}
        )
    )
    with pytest.raises(PlatformError, match=r"not JSON.*text/html") as info:
        await mocked_client.list_channels()
    assert isinstance(info.value.__cause__, ValueError)


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ({"items": []}, None),
        ([1, 2], "'entities' array"),
        ({"entities": "x"}, "'entities' array"),
        ({"entities": [{"id": "x"}]}, "'connectUri' is missing"),
    ],
)
async def test_malformed_listing_bodies(
    mock: respx.MockRouter, mocked_client: PlatformClient, body: object, match: str | None
) -> None:
    """A listing without entities is empty; wrong shapes raise PlatformError naming the request."""
    mock.get(CHANNELS).mock(return_value=httpx.Response(200, json=body))
    if match is None:
        assert await mocked_client.list_channels() == ()
        return
    with pytest.raises(PlatformError, match=match) as info:
        await mocked_client.list_channels()
    assert str(info.value).startswith("GET /api/v2/notifications/channels")


async def test_non_json_error_body_still_maps(
    mock: respx.MockRouter, mocked_client: PlatformClient
) -> None:
    """An error status with a non-JSON body still maps by status, without the body's text."""
    mock.get(CHANNELS).mock(return_value=httpx.Response(403, text="<html>denied</html>"))
    with pytest.raises(PermissionDeniedError) as info:
        await mocked_client.list_channels()
    assert "<html>" not in str(info.value)


async def test_connect_error_is_retried_then_mapped(
    mock: respx.MockRouter, mocked_client: PlatformClient, sleeps: RecordedSleeps
) -> None:
    """Connection failures on GET are retried, then become TransportError chained to httpx's."""
    route = mock.get(CHANNELS).mock(side_effect=httpx.ConnectError("connection refused"))
    with pytest.raises(TransportError) as info:
        await mocked_client.list_channels()
    assert route.call_count == 4
    assert len(sleeps.delays) == 3
    assert isinstance(info.value.__cause__, httpx.ConnectError)
    assert "could not connect" in str(info.value)
    assert "GET /api/v2/notifications/channels" in str(info.value)


async def test_timeout_then_success(
    mock: respx.MockRouter, mocked_client: PlatformClient, sleeps: RecordedSleeps
) -> None:
    """A read timeout on a GET is retried and the next answer is used."""
    mock.get(CHANNELS).mock(
        side_effect=[httpx.ReadTimeout("slow"), httpx.Response(200, json={"entities": []})]
    )
    assert await mocked_client.list_channels() == ()
    assert len(sleeps.delays) == 1


async def test_persistent_timeout_says_timed_out(
    mock: respx.MockRouter, mocked_client: PlatformClient
) -> None:
    """A timeout that persists is reported as a timeout."""
    mock.get(CHANNELS).mock(side_effect=httpx.ConnectTimeout("slow"))
    with pytest.raises(TransportError, match="timed out"):
        await mocked_client.list_channels()


async def test_post_is_not_retried_on_transport_error(
    mock: respx.MockRouter, mocked_client: PlatformClient, sleeps: RecordedSleeps
) -> None:
    """A POST whose fate is unknown is not sent again (it might dial twice)."""
    route = mock.post(f"{API}/api/v2/conversations/calls").mock(
        side_effect=httpx.ReadError("connection reset")
    )
    with pytest.raises(TransportError, match="may already have acted"):
        await mocked_client.place_call("+15551230001")
    assert route.call_count == 1
    assert sleeps.delays == []


async def test_post_is_not_retried_on_504(
    mock: respx.MockRouter, mocked_client: PlatformClient
) -> None:
    """A 504 to a POST may hide a call that was placed: it is reported, not repeated."""
    route = mock.post(f"{API}/api/v2/conversations/calls").mock(return_value=httpx.Response(504))
    with pytest.raises(ServerError):
        await mocked_client.place_call("+15551230001")
    assert route.call_count == 1


async def test_requests_are_logged_without_secrets(
    mock: respx.MockRouter, mocked_client: PlatformClient, caplog: pytest.LogCaptureFixture
) -> None:
    """Each request is logged as method, path, status and duration; no token or body appears."""
    caplog.set_level(logging.DEBUG, logger="crmphone")
    mock.post(CHANNELS).mock(return_value=httpx.Response(200, json=CHANNEL_BODY))
    mock.put(f"{CHANNELS}/ch-1/subscriptions").mock(
        side_effect=[httpx.Response(503), httpx.Response(200, json={"entities": []})]
    )
    await mocked_client.create_channel()
    await mocked_client.put_subscriptions("ch-1", ["v2.users.secret-topic.presence"])
    messages = [record.getMessage() for record in caplog.records]
    assert any(
        m.startswith("POST /api/v2/notifications/channels -> 200 in ") and m.endswith(" ms")
        for m in messages
    )
    assert any("-> 503; retrying" in m for m in messages)
    for message in messages:
        assert ACCESS not in message
        assert "Bearer" not in message
        assert "secret-topic" not in message


async def test_closed_client_refuses_requests(mock: respx.MockRouter, clock: ManualClock) -> None:
    """After aclose() (or leaving the context) requests raise InvalidStateError."""
    client = PlatformClient(api_base=API + "/", tokens=StaticToken(ACCESS), clock=clock)
    assert client.api_base == API
    await client.aclose()
    await client.aclose()  # idempotent
    with pytest.raises(InvalidStateError):
        await client.list_channels()


async def test_a_given_http_client_is_used_and_left_open(mock: respx.MockRouter) -> None:
    """A caller's httpx client is used for requests and not closed by the PlatformClient."""
    mock.get(CHANNELS).mock(return_value=httpx.Response(200, json={"entities": []}))
    async with httpx.AsyncClient(headers={"X-Caller": "yes"}) as http:
        async with PlatformClient(api_base=API, tokens=StaticToken(ACCESS), http=http) as client:
            await client.list_channels()
        assert not http.is_closed
        assert mock.calls.last.request.headers["X-Caller"] == "yes"


@pytest.mark.parametrize("api_base", ["api.mypurecloud.com", "ftp://x", ""])
def test_bad_api_base_is_a_config_error(api_base: str) -> None:
    """An api_base that is not an http(s) URL is refused when the client is built."""
    with pytest.raises(ConfigError, match=r"platform\.api_base"):
        PlatformClient(api_base=api_base, tokens=StaticToken(ACCESS))


async def test_retry_policy_is_configurable(
    mock: respx.MockRouter, clock: ManualClock, sleeps: RecordedSleeps
) -> None:
    """A one-attempt policy reports the first 503 without retrying."""
    route = mock.get(CHANNELS).mock(return_value=httpx.Response(503))
    async with PlatformClient(
        api_base=API,
        tokens=StaticToken(ACCESS),
        retry=RetryPolicy(max_attempts=1),
        clock=clock,
        sleep=sleeps,
        rng=random.Random(0),
    ) as client:
        with pytest.raises(ServerError):
            await client.list_channels()
    assert route.call_count == 1
