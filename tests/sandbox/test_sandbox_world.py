"""The sandbox's pure model, driven by a ManualClock: no sockets, no sleeps."""

from __future__ import annotations

import json

import pytest
from sandbox_helpers import CLIENT_ID, CLIENT_SECRET, fast_config, pkce_pair

from crmphone.clock import ManualClock
from crmphone.errors import (
    AuthenticationError,
    BadRequestError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
)
from crmphone.sandbox.world import (
    CLOSE_CHANNEL_EXPIRED,
    CLOSE_CHANNEL_REMOVED,
    CLOSE_DISPLACED,
    CLOSE_TOKEN_EXPIRED,
    CLOSE_TOKEN_REVOKED,
    OAuthError,
    Token,
    World,
)

REDIRECT = "http://127.0.0.1:9/cb"


def make_world(**overrides: object) -> tuple[World, ManualClock]:
    """A world on a manual clock."""
    clock = ManualClock()
    return World(fast_config(**overrides), clock), clock


def client_token(world: World) -> Token:
    """A client-credentials token."""
    return world.issue_client_credentials(CLIENT_ID, CLIENT_SECRET)


def user_token(world: World, agent_index: int = 0) -> Token:
    """A user token for one agent, through the PKCE authorization-code grant."""
    verifier, challenge = pkce_pair()
    code = world.authorize(
        client_id=CLIENT_ID,
        redirect_uri=REDIRECT,
        response_type="code",
        code_challenge=challenge,
        code_challenge_method="S256",
        user_id=world.agents[agent_index].id,
    )
    return world.exchange_code(
        code=code,
        redirect_uri=REDIRECT,
        client_id=CLIENT_ID,
        client_secret=None,
        code_verifier=verifier,
    )


def test_ids_are_reproducible_from_the_seed() -> None:
    """Two worlds with the same seed have the same agents, stations and queues; another differs."""
    first, _ = make_world(seed=7)
    second, _ = make_world(seed=7)
    third, _ = make_world(seed=8)
    assert first.agents == second.agents
    assert first.queues == second.queues
    assert [a.id for a in first.agents] != [a.id for a in third.agents]
    assert all(len(agent.id) == 36 and agent.id[14] == "4" for agent in first.agents)


def test_agents_have_distinct_names_emails_and_stations() -> None:
    """Even a large organisation has unique names, emails and one station per agent."""
    world, _ = make_world(agents=45)
    assert len({a.name for a in world.agents}) == 45
    assert len({a.email for a in world.agents}) == 45
    assert {world.stations[a.station_id].user_id for a in world.agents} == {
        a.id for a in world.agents
    }


def test_client_credentials_and_bad_secret() -> None:
    """The configured client gets a token without user context; a wrong secret is invalid_client."""
    world, _ = make_world()
    token = client_token(world)
    assert token.user_id is None
    assert token.subject == CLIENT_ID
    with pytest.raises(OAuthError) as info:
        world.issue_client_credentials(CLIENT_ID, "wrong")
    assert (info.value.error, info.value.status) == ("invalid_client", 401)


def test_token_repr_hides_the_value() -> None:
    """A token's repr never contains the access token or the refresh token."""
    world, _ = make_world()
    token = user_token(world)
    assert token.refresh_token is not None
    assert token.value not in repr(token)
    assert token.refresh_token not in repr(token)


def test_authenticate_rejects_unknown_and_expired_tokens() -> None:
    """Bearer tokens are checked: missing, unknown and expired are all 401."""
    world, clock = make_world(token_ttl=10.0)
    token = client_token(world)
    assert world.authenticate(f"Bearer {token.value}") is token
    with pytest.raises(AuthenticationError) as missing:
        world.authenticate(None)
    assert missing.value.code == "authentication.required"
    with pytest.raises(AuthenticationError) as unknown:
        world.authenticate("Bearer nope")
    assert (unknown.value.status, unknown.value.code) == (401, "bad.credentials")
    clock.advance(10.0)
    with pytest.raises(AuthenticationError):
        world.authenticate(f"Bearer {token.value}")


def test_pkce_code_exchange_checks_the_verifier_and_is_single_use() -> None:
    """A wrong verifier, a reused code and an expired code are all invalid_grant."""
    world, clock = make_world()
    verifier, challenge = pkce_pair()

    def new_code() -> str:
        return world.authorize(
            client_id=CLIENT_ID,
            redirect_uri=REDIRECT,
            response_type="code",
            code_challenge=challenge,
            code_challenge_method="S256",
            user_id=None,
        )

    def exchange(code: str, code_verifier: str) -> Token:
        return world.exchange_code(
            code=code,
            redirect_uri=REDIRECT,
            client_id=CLIENT_ID,
            client_secret=None,
            code_verifier=code_verifier,
        )

    with pytest.raises(OAuthError, match="code_verifier"):
        exchange(new_code(), "not-the-verifier-" * 3)
    code = new_code()
    token = exchange(code, verifier)
    assert token.user_id == world.agents[0].id
    with pytest.raises(OAuthError) as reused:
        exchange(code, verifier)
    assert reused.value.error == "invalid_grant"
    stale = new_code()
    clock.advance(61)
    with pytest.raises(OAuthError):
        exchange(stale, verifier)


def test_confidential_code_exchange_needs_the_secret() -> None:
    """Without PKCE the code exchange authenticates the client with its secret."""
    world, _ = make_world()

    def code() -> str:
        return world.authorize(
            client_id=CLIENT_ID,
            redirect_uri=REDIRECT,
            response_type="code",
            code_challenge=None,
            code_challenge_method=None,
            user_id=world.agents[2].id,
        )

    with pytest.raises(OAuthError) as info:
        world.exchange_code(
            code=code(),
            redirect_uri=REDIRECT,
            client_id=CLIENT_ID,
            client_secret="wrong",
            code_verifier=None,
        )
    assert info.value.error == "invalid_client"
    token = world.exchange_code(
        code=code(),
        redirect_uri=REDIRECT,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        code_verifier=None,
    )
    assert token.user_id == world.agents[2].id


def test_authorize_refuses_bad_requests() -> None:
    """Unknown clients, users, response types and plain PKCE are refused."""
    world, _ = make_world()
    base = {
        "client_id": CLIENT_ID,
        "redirect_uri": REDIRECT,
        "response_type": "code",
        "code_challenge": None,
        "code_challenge_method": None,
        "user_id": None,
    }
    for change, error in [
        ({"client_id": "other"}, "invalid_client"),
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"user_id": "nobody"}, "invalid_request"),
        ({"code_challenge": "abc", "code_challenge_method": "plain"}, "invalid_request"),
        ({"redirect_uri": None}, "invalid_request"),
    ]:
        with pytest.raises(OAuthError) as info:
            world.authorize(**{**base, **change})  # type: ignore[arg-type]
        assert info.value.error == error, change


def test_refresh_grant_keeps_the_user_and_dies_with_revocation() -> None:
    """A refresh gives a new token for the same user until the user's tokens are revoked."""
    world, _ = make_world()
    first = user_token(world, 1)
    assert first.refresh_token is not None
    second = world.refresh(
        refresh_token=first.refresh_token, client_id=CLIENT_ID, client_secret=None
    )
    assert second.value != first.value
    assert second.user_id == world.agents[1].id
    world.revoke(second.subject)
    with pytest.raises(OAuthError):
        world.refresh(refresh_token=first.refresh_token, client_id=CLIENT_ID, client_secret=None)


def test_users_me_needs_a_user_context() -> None:
    """require_user answers the agent for user tokens and Genesys's 400 for client credentials."""
    world, _ = make_world()
    assert world.require_user(user_token(world, 2)) == world.agents[2]
    with pytest.raises(BadRequestError, match="requires a user context"):
        world.require_user(client_token(world))


def test_rate_limit_is_a_sliding_window_per_token() -> None:
    """The limit counts requests in the last 60 s per token; Retry-After says when one frees up."""
    world, clock = make_world(rate_limit_per_minute=3)
    token, other = client_token(world), client_token(world)
    for _ in range(3):
        world.admit(token)
        clock.advance(10)
    with pytest.raises(RateLimitedError) as info:
        world.admit(token)
    assert info.value.status == 429
    assert info.value.retry_after == 30  # the first request leaves the window at t=60
    world.admit(other)  # another token has its own window
    clock.advance(30)
    usage = world.admit(token)
    assert (usage.count, usage.allowed) == (3, 3)


def test_rate_limit_zero_disables_and_bursts_override() -> None:
    """With no limit every request passes, except the ones a forced burst refuses."""
    world, _ = make_world(rate_limit_per_minute=0)
    token = client_token(world)
    for _ in range(1000):
        world.admit(token)
    world.force_rate_limit(2, retry_after=7)
    for _ in range(2):
        with pytest.raises(RateLimitedError) as info:
            world.admit(token)
        assert info.value.retry_after == 7
    world.admit(token)


def test_lru_eviction_prefers_channels_without_a_socket() -> None:
    """A channel beyond the limit evicts the least recently used socket-less channel first."""
    world, _ = make_world(max_channels_per_client=3)
    token = client_token(world)
    channels = [world.create_channel(token)[0] for _ in range(3)]
    record, _ = world.open_socket(channels[0].id)  # oldest, but connected
    new, closes = world.create_channel(token)
    assert closes == []  # channels[1] had no socket: nothing to close
    assert [c.id for c in world.channels_of(token)] == [channels[0].id, channels[2].id, new.id]
    world.open_socket(channels[2].id)
    world.open_socket(new.id)
    _, closes = world.create_channel(token)
    assert [(c.socket_id, c.close) for c in closes] == [(record.id, CLOSE_CHANNEL_REMOVED)]
    assert world.removals[-1].cause == "evicted"
    assert world.removals[-1].had_socket


def test_channel_limit_is_per_user_for_user_tokens() -> None:
    """Client credentials and each user count their channels separately."""
    world, _ = make_world(max_channels_per_client=1)
    client, alice, bob = client_token(world), user_token(world, 0), user_token(world, 1)
    channels = [world.create_channel(token)[0] for token in (client, alice, bob)]
    assert len(world.channels) == 3
    assert world.channels_of(alice) == [channels[1]]
    with pytest.raises(NotFoundError):
        world.channel_of(bob, channels[1].id)  # not Bob's channel


def test_subscriptions_expand_combined_topics_and_extend_expiry() -> None:
    """A combined topic becomes one topic per suffix; resubscribing pushes expires out."""
    world, clock = make_world(channel_ttl=100.0)
    token = client_token(world)
    channel, _ = world.create_channel(token)
    agent = world.agents[0].id
    clock.advance(50)
    verdicts = world.subscribe(
        token,
        channel.id,
        [f"v2.users.{agent}?presence&routingStatus"],
        replace=True,
        ignore_errors=False,
    )
    assert [v.topic for v in verdicts] == [
        f"v2.users.{agent}.presence",
        f"v2.users.{agent}.routingStatus",
    ]
    assert channel.expires_at == pytest.approx(clock.monotonic() + 100.0)
    assert world.subscribed_sockets(f"v2.users.{agent}.presence") == [(channel.id, ())]


def test_resubscribe_does_not_extend_when_disabled() -> None:
    """With resubscribe_extends off the channel still dies channel_ttl after creation."""
    world, clock = make_world(channel_ttl=100.0, resubscribe_extends=False)
    token = client_token(world)
    channel, _ = world.create_channel(token)
    clock.advance(50)
    world.subscribe(
        token,
        channel.id,
        [f"v2.users.{world.agents[0].id}.presence"],
        replace=True,
        ignore_errors=False,
    )
    assert channel.expires_at == pytest.approx(clock.monotonic() + 50.0)


def test_topic_limit_counts_expanded_topics() -> None:
    """1,000 topics fit; one more (by PUT, or by POST on top of existing ones) is a 400."""
    world, _ = make_world(agents=250)
    token = client_token(world)
    channel, _ = world.create_channel(token)
    topics = [f"v2.users.{a.id}?presence&routingStatus&station&conversations" for a in world.agents]
    verdicts = world.subscribe(token, channel.id, topics, replace=True, ignore_errors=False)
    assert len(verdicts) == 1000
    assert all(v.permitted for v in verdicts)
    extra = f"v2.users.{world.agents[0].id}.activity"
    with pytest.raises(BadRequestError, match="at most 1000 topics"):
        world.subscribe(token, channel.id, [extra], replace=False, ignore_errors=False)
    with pytest.raises(BadRequestError, match="1001"):
        world.subscribe(token, channel.id, [*topics, extra], replace=True, ignore_errors=False)
    assert len(world.subscriptions(token, channel.id)) == 1000


@pytest.mark.parametrize(
    "topic",
    [
        "channel.metadata",
        "v2.system.socket_closing",
        "v2.system.token_revoked.x",
        "v2.users.x?presence&",
        "?presence",
        "",
        " v2.users.x.presence",
        "v2.users." + "x" * 200,
    ],
)
def test_malformed_and_system_topics_are_refused(topic: str) -> None:
    """System topics, broken combined topics, blanks and over-long topics fail the request."""
    world, _ = make_world()
    token = client_token(world)
    channel, _ = world.create_channel(token)
    with pytest.raises(BadRequestError):
        world.subscribe(token, channel.id, [topic], replace=True, ignore_errors=True)


def test_rejections_with_and_without_ignore_errors() -> None:
    """Unknown users, unknown topics and denied prefixes are rejected; without ignoreErrors, 403."""
    world, _ = make_world()
    token = client_token(world)
    channel, _ = world.create_channel(token)
    agent = world.agents[0].id
    queue = world.queues[0].id
    world.deny_topic_prefix("v2.routing.queues", missing="routing:queue:view")
    topics = [
        f"v2.users.{agent}.conversations.calls",
        "v2.users.nobody.presence",
        "v2.weather.today",
        f"v2.routing.queues.{queue}.conversations.calls",
    ]
    with pytest.raises(PermissionDeniedError) as info:
        world.subscribe(token, channel.id, topics, replace=True, ignore_errors=False)
    assert info.value.status == 403
    assert world.subscriptions(token, channel.id) == []
    verdicts = world.subscribe(token, channel.id, topics, replace=True, ignore_errors=True)
    states = {v.topic: (v.state.value, v.missing_permissions) for v in verdicts}
    assert states == {
        topics[0]: ("Permitted", ()),
        topics[1]: ("Rejected", ("directory:user:view",)),
        topics[2]: ("Rejected", ()),
        topics[3]: ("Rejected", ("routing:queue:view",)),
    }
    assert all(v.rejection_reason for v in verdicts if not v.permitted)
    assert world.subscriptions(token, channel.id) == [topics[0]]
    world.allow_topic_prefix("v2.routing.queues")
    world.subscribe(token, channel.id, [topics[3]], replace=False, ignore_errors=False)
    assert world.subscriptions(token, channel.id) == [topics[0], topics[3]]


def test_second_socket_displaces_or_coexists() -> None:
    """Under displace the older socket is closed with 4000; under allow both stay."""
    world, _ = make_world(second_socket="displace")
    channel, _ = world.create_channel(client_token(world))
    first, _ = world.open_socket(channel.id)
    second, closes = world.open_socket(channel.id)
    assert [(c.socket_id, c.close) for c in closes] == [(first.id, CLOSE_DISPLACED)]
    assert CLOSE_DISPLACED.code == 4000
    assert [s.id for s in world.sockets] == [second.id]

    world, _ = make_world(second_socket="allow")
    channel, _ = world.create_channel(client_token(world))
    world.open_socket(channel.id)
    _, closes = world.open_socket(channel.id)
    assert closes == []
    assert len(world.sockets_of(channel.id)) == 2


def test_sweep_expires_channels_and_tokens() -> None:
    """The sweep closes expired channels and the channels of expired tokens, with their reasons."""
    world, clock = make_world(token_ttl=100.0, channel_ttl=50.0)
    token = client_token(world)
    short, _ = world.create_channel(token)
    socket_short, _ = world.open_socket(short.id)
    clock.advance(40)
    late, _ = world.create_channel(token)
    socket_late, _ = world.open_socket(late.id)
    assert world.sweep() == []
    clock.advance(10)
    closes = world.sweep()
    assert [(c.socket_id, c.close) for c in closes] == [(socket_short.id, CLOSE_CHANNEL_EXPIRED)]
    assert not world.has_channel(short.id)
    clock.advance(50)  # t=100: the token dies before the late channel would
    closes = world.sweep()
    assert [(c.socket_id, c.close) for c in closes] == [(socket_late.id, CLOSE_TOKEN_EXPIRED)]
    assert world.channels == ()
    assert world.tokens == ()
    assert world.counters["channels_expired"] == 1
    assert world.counters["channels_token_expired"] == 1


def test_open_socket_on_a_gone_channel_is_not_found() -> None:
    """An expired or unknown channel cannot take a WebSocket."""
    world, clock = make_world(channel_ttl=5.0)
    channel, _ = world.create_channel(client_token(world))
    clock.advance(5.0)
    assert not world.has_channel(channel.id)
    with pytest.raises(NotFoundError):
        world.open_socket(channel.id)
    with pytest.raises(NotFoundError):
        world.open_socket("unknown")


def test_revoke_sends_token_revoked_then_closes() -> None:
    """Revocation closes each socket of the token's channels after a token_revoked frame."""
    world, _ = make_world()
    client = client_token(world)
    user = user_token(world, 1)
    client_channel, _ = world.create_channel(client)
    user_channel, _ = world.create_channel(user)
    client_socket, _ = world.open_socket(client_channel.id)
    world.open_socket(user_channel.id)
    closes = world.revoke(CLIENT_ID)
    assert [c.socket_id for c in closes] == [client_socket.id]
    assert closes[0].close == CLOSE_TOKEN_REVOKED
    assert closes[0].notice is not None
    notice = json.loads(closes[0].notice)
    assert notice["topicName"] == f"v2.system.token_revoked.{CLIENT_ID}"
    with pytest.raises(AuthenticationError):
        world.authenticate(f"Bearer {client.value}")
    assert world.authenticate(f"Bearer {user.value}") is user
    assert [c.id for c in world.channels] == [user_channel.id]


def test_close_socket_is_idempotent_and_touches_the_channel() -> None:
    """Forgetting a socket twice is harmless; the channel becomes socket-less."""
    world, _ = make_world()
    channel, _ = world.create_channel(client_token(world))
    record, _ = world.open_socket(channel.id)
    world.close_socket(record.id)
    world.close_socket(record.id)
    assert channel.socket_ids == []
    assert world.subject_of(channel.id) == CLIENT_ID
    assert world.subject_of("unknown") is None


def test_snapshot_is_json_and_free_of_secrets() -> None:
    """The diagnosis snapshot serialises and never contains token values or the secret."""
    world, _ = make_world()
    token = user_token(world)
    channel, _ = world.create_channel(token)
    world.subscribe(
        token,
        channel.id,
        [f"v2.users.{world.agents[0].id}.presence"],
        replace=True,
        ignore_errors=False,
    )
    text = json.dumps(world.snapshot())
    assert token.value not in text
    assert CLIENT_SECRET not in text
    assert channel.id in text
