"""The sandbox organisation as a pure model: clients and tokens, agents, channels, sockets.

Nothing here performs I/O or sleeps. Time comes from the injected :class:`~crmphone.clock.Clock`;
methods that end sockets do not close anything themselves, they return :class:`CloseSocket`
actions that the asyncio layer (:mod:`crmphone.sandbox.hub`) carries out. Requests the platform
would refuse raise crmphone's own :class:`~crmphone.errors.PlatformError` subclasses, carrying the
status and Genesys error code the REST layer answers with.

Close codes the sandbox uses (PROTOCOLS.md confirms none of them; clients must record them
verbatim rather than rely on them):

=====================  =====  =================================
cause                  code   reason
=====================  =====  =================================
LRU eviction           1000   ``channel removed``
second socket          4000   ``displaced by a new connection``
channel expiry         1000   ``channel expired``
token expiry           1000   ``token expired``
token revocation       1000   ``token revoked`` (after a ``v2.system.token_revoked.{id}`` frame)
maintenance (fault)    1001   ``server maintenance`` (after ``v2.system.socket_closing``)
server shutdown        1012   (uvicorn's "service restart")
=====================  =====  =================================

A WebSocket handshake for an unknown or expired channel is refused with HTTP 404.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import hmac
import itertools
import math
import random
import secrets
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

import attrs

from crmphone.clock import Clock
from crmphone.errors import (
    AuthenticationError,
    BadRequestError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
)

from . import wire
from .config import SandboxConfig, SecondSocketPolicy
from .presence import PresenceBoard
from .topics import TopicRules, TopicVerdict, expand_topic

__all__ = [
    "ACCEPT_OFF_QUEUE",
    "AGENT_PERMISSIONS",
    "CLOSE_CHANNEL_EXPIRED",
    "CLOSE_CHANNEL_REMOVED",
    "CLOSE_DISPLACED",
    "CLOSE_TOKEN_EXPIRED",
    "CLOSE_TOKEN_REVOKED",
    "Agent",
    "AuthorizationCode",
    "Channel",
    "CloseReason",
    "CloseSocket",
    "IdSource",
    "OAuthError",
    "Queue",
    "RateUsage",
    "Removal",
    "SocketRecord",
    "Station",
    "Token",
    "World",
]

RATE_WINDOW = 60.0
"""Seconds of the sliding rate-limit window."""

AUTHORIZATION_CODE_TTL = 60.0
"""How long an authorization code from ``/oauth/authorize`` may be exchanged."""

ACCEPT_OFF_QUEUE = "routing:conversation:acceptOffQueue"
"""The permission that makes the platform set up an agent's persistent connection at login."""

AGENT_PERMISSIONS = (
    "conversation:call:view",
    "conversation:communication:view",
    "conversation:communication:accept",
    "routing:agent:view",
    "telephony:phone:view",
    "telephony:station:view",
    "directory:user:view",
)
"""Permissions every sandbox agent holds (plausible Genesys names, see topics.py)."""


@attrs.frozen
class CloseReason:
    """A WebSocket close code and reason the sandbox sends for one cause."""

    code: int
    reason: str


CLOSE_CHANNEL_REMOVED = CloseReason(1000, "channel removed")
CLOSE_DISPLACED = CloseReason(4000, "displaced by a new connection")
CLOSE_CHANNEL_EXPIRED = CloseReason(1000, "channel expired")
CLOSE_TOKEN_EXPIRED = CloseReason(1000, "token expired")
CLOSE_TOKEN_REVOKED = CloseReason(1000, "token revoked")


class OAuthError(AuthenticationError):
    """An OAuth request failed; answered as RFC 6749 does: ``{"error", "error_description"}``.

    ``error`` is the OAuth error code (``invalid_client``, ``invalid_grant``, ...).
    """

    def __init__(self, error: str, description: str, *, status: int = 400) -> None:
        super().__init__(description, status=status, code=error)
        self.error = error
        self.description = description


@attrs.define
class IdSource:
    """UUID4-shaped ids drawn from a seeded generator, so a run can be repeated exactly."""

    _rng: random.Random

    def uuid(self) -> str:
        """A new id, e.g. ``"6b0e1c3a-..."``."""
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))


@attrs.frozen
class Agent:
    """A user of the sandbox organisation with a WebRTC station."""

    id: str
    name: str
    email: str
    station_id: str


@attrs.frozen
class Station:
    """An agent's WebRTC softphone station (``web_rtc_persistent_enabled``: connections persist)."""

    id: str
    name: str
    user_id: str
    type: str = "inin_webrtc_softphone"
    web_rtc_persistent_enabled: bool = True


@attrs.frozen
class Queue:
    """An ACD queue inbound calls arrive through."""

    id: str
    name: str


@attrs.define
class Token:
    """An access token and whom it speaks for.

    ``user_id`` is set for tokens from the authorization-code grant (a user context) and ``None``
    for client credentials. Times are monotonic seconds of the world's clock.
    """

    value: str = attrs.field(repr=False)
    client_id: str
    user_id: str | None
    issued_at: float
    expires_at: float
    refresh_token: str | None = attrs.field(default=None, repr=False)
    requests: collections.deque[float] = attrs.field(factory=collections.deque, repr=False)

    @property
    def subject(self) -> str:
        """The id the token acts as: the user's id, or the OAuth client's id."""
        return self.user_id if self.user_id is not None else self.client_id

    @property
    def owner(self) -> str:
        """The key channel limits are counted under (per user, or per OAuth client)."""
        return f"user:{self.user_id}" if self.user_id is not None else f"client:{self.client_id}"


@attrs.frozen
class AuthorizationCode:
    """A pending authorization code (from ``/oauth/authorize``) and what it was issued for."""

    code: str = attrs.field(repr=False)
    client_id: str
    redirect_uri: str
    user_id: str
    code_challenge: str | None
    expires_at: float


@attrs.frozen
class _RefreshGrant:
    client_id: str
    user_id: str
    public: bool  # issued to a PKCE (secret-less) client


@attrs.define
class Channel:
    """A notification channel: bound to the token that created it, holding its topics.

    ``topics`` is an insertion-ordered set (dict keys). ``last_used`` is a use sequence number, not
    a time, so least-recently-used eviction is deterministic even when the clock stands still.
    """

    id: str
    owner: str
    token: Token
    created_at: float
    expires_at: float
    expires_wall: datetime
    last_used: int
    topics: dict[str, None] = attrs.field(factory=dict)
    socket_ids: list[str] = attrs.field(factory=list)

    @property
    def connect_path(self) -> str:
        """The path of the channel's WebSocket (``/channels/{id}``)."""
        return f"/channels/{self.id}"


@attrs.frozen
class SocketRecord:
    """A live WebSocket on a channel, as the world knows it."""

    id: str
    channel_id: str
    opened_at: float


@attrs.frozen
class CloseSocket:
    """Action: send ``notice`` (if any) on the socket, then close it with ``close``."""

    socket_id: str
    channel_id: str
    close: CloseReason
    notice: str | None = None


@attrs.frozen
class Removal:
    """A channel the world removed, and why (kept for diagnosis in the sandbox state)."""

    channel_id: str
    cause: str
    at: datetime
    had_socket: bool


@attrs.frozen
class RateUsage:
    """Requests counted in the token's current window, the limit, and seconds until one frees."""

    count: int
    allowed: int
    reset_after: int


_FIRST_NAMES = (
    "Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Margaret", "Dennis",
    "Radia", "Tim", "Hedy", "Linus", "Katherine", "John", "Joan", "Niklaus", "Sophie", "Guido",
)  # fmt: skip
_LAST_NAMES = (
    "Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson", "Hamilton",
    "Ritchie", "Perlman", "Berners-Lee", "Lamarr", "Torvalds", "Johnson", "McCarthy", "Clarke",
    "Wirth", "Wilson", "van Rossum",
)  # fmt: skip
_QUEUE_NAMES = ("Support", "Sales", "Billing", "Retention", "Technical", "Priority")


class World:
    """The sandbox organisation's state; every platform rule that needs no socket lives here.

    Create one per sandbox; ids derive from ``config.seed``. The asyncio layer calls these methods
    on its event loop (never from several threads) and applies the :class:`CloseSocket` actions
    they return.
    """

    def __init__(self, config: SandboxConfig, clock: Clock) -> None:
        self.config = config
        self.clock = clock
        self.ids = IdSource(random.Random(config.seed))
        # A separate stream for correlation ids keeps entity ids independent of request counts.
        self.correlation_ids = IdSource(random.Random(config.seed + 0x5EED))
        # Conversation and participant ids are never reused, across restarts too, as on the real
        # platform: a connector's outbox remembers event keys built from them for days, and would
        # refuse a restarted sandbox's calls as copies. Users, queues and stations stay seeded.
        self.conversation_ids = IdSource(random.Random())
        self.rng = random.Random(config.seed + 1)
        self.agents: tuple[Agent, ...] = tuple(self._make_agents(config.agents))
        self.stations: dict[str, Station] = {
            agent.station_id: Station(
                agent.station_id,
                f"WebRTC - {agent.name}",
                agent.id,
                web_rtc_persistent_enabled=config.persistent_connections,
            )
            for agent in self.agents
        }
        extra = (ACCEPT_OFF_QUEUE,) if config.accept_off_queue else ()
        self._permissions: dict[str, tuple[str, ...]] = {
            agent.id: AGENT_PERMISSIONS + extra for agent in self.agents
        }
        self.queues: tuple[Queue, ...] = tuple(
            Queue(self.ids.uuid(), _QUEUE_NAMES[i % len(_QUEUE_NAMES)] + ("" if i < 6 else f" {i}"))
            for i in range(config.queues)
        )
        self.topic_rules = TopicRules(
            user_ids=frozenset(agent.id for agent in self.agents),
            queue_ids=frozenset(queue.id for queue in self.queues),
        )
        self.presence = PresenceBoard((agent.id for agent in self.agents), clock.wall())
        self.counters: collections.Counter[str] = collections.Counter()
        self.removals: collections.deque[Removal] = collections.deque(maxlen=200)
        self._agents_by_id = {agent.id: agent for agent in self.agents}
        self._tokens: dict[str, Token] = {}
        self._refresh_grants: dict[str, _RefreshGrant] = {}
        self._codes: dict[str, AuthorizationCode] = {}
        self._channels: dict[str, Channel] = {}
        self._sockets: dict[str, SocketRecord] = {}
        self._topic_index: dict[str, dict[str, None]] = {}
        self._use_sequence = itertools.count(1)
        self._socket_sequence = itertools.count(1)
        self._burst_remaining = 0
        self._burst_retry_after = 1

    # ------------------------------------------------------------------ directory

    def _make_agents(self, count: int) -> Iterable[Agent]:
        for index in range(count):
            first = _FIRST_NAMES[index % len(_FIRST_NAMES)]
            last = _LAST_NAMES[(index // len(_FIRST_NAMES) + index) % len(_LAST_NAMES)]
            lap = index // len(_FIRST_NAMES)
            name = f"{first} {last}" + (f" {lap + 1}" if lap else "")
            email = f"{first}.{last}".lower().replace(" ", "").replace("-", "")
            email += f"{lap + 1 if lap else ''}@sandbox.example"
            yield Agent(id=self.ids.uuid(), name=name, email=email, station_id=self.ids.uuid())

    def agent(self, agent_id: str) -> Agent:
        """The agent with ``agent_id``; NotFoundError (404) when there is none."""
        try:
            return self._agents_by_id[agent_id]
        except KeyError:
            raise _not_found(f"User {agent_id} not found.") from None

    def station(self, station_id: str) -> Station:
        """The station with ``station_id``; NotFoundError (404) when there is none."""
        try:
            return self.stations[station_id]
        except KeyError:
            raise _not_found(f"Station {station_id} not found.") from None

    def station_of(self, agent_id: str) -> Station:
        """The agent's station; NotFoundError (404) for an unknown agent."""
        return self.stations[self.agent(agent_id).station_id]

    def set_station_persistent(self, station_id: str, enabled: bool) -> Station:
        """Turn the station's persistent connection setting on or off; returns the new station."""
        station = attrs.evolve(self.station(station_id), web_rtc_persistent_enabled=enabled)
        self.stations[station_id] = station
        return station

    def permissions(self, agent_id: str) -> tuple[str, ...]:
        """The permissions the agent holds; NotFoundError (404) for an unknown agent."""
        return self._permissions[self.agent(agent_id).id]

    def set_permission(self, agent_id: str, permission: str, granted: bool) -> None:
        """Grant (``granted``) or revoke one permission of the agent."""
        held = tuple(p for p in self.permissions(agent_id) if p != permission)
        self._permissions[agent_id] = (*held, permission) if granted else held

    def queue(self, queue_id: str) -> Queue:
        """The queue with ``queue_id``; NotFoundError (404) when there is none."""
        for queue in self.queues:
            if queue.id == queue_id:
                return queue
        raise _not_found(f"Queue {queue_id} not found.")

    # ------------------------------------------------------------------ OAuth

    def issue_client_credentials(self, client_id: str | None, client_secret: str | None) -> Token:
        """Grant ``client_credentials``: a token without a user context, or OAuthError 401."""
        self._check_client(client_id, client_secret)
        assert client_id is not None
        return self._issue(client_id, None)

    def authorize(
        self,
        *,
        client_id: str | None,
        redirect_uri: str | None,
        response_type: str | None,
        code_challenge: str | None,
        code_challenge_method: str | None,
        user_id: str | None,
    ) -> str:
        """``/oauth/authorize`` without a login page: a code for ``user_id`` (default: first agent).

        The code is exchanged with :meth:`exchange_code`. PKCE challenges must use S256.
        """
        if client_id != self.config.client_id:
            raise OAuthError("invalid_client", "Unknown client_id.")
        if not redirect_uri:
            raise OAuthError("invalid_request", "redirect_uri is required.")
        if response_type != "code":
            raise OAuthError(
                "unsupported_response_type", "The sandbox supports response_type=code only."
            )
        if code_challenge and (code_challenge_method or "plain") != "S256":
            raise OAuthError("invalid_request", "code_challenge_method must be S256.")
        if user_id is None:
            user_id = self.agents[0].id
        elif user_id not in self._agents_by_id:
            raise OAuthError("invalid_request", f"sandbox_user {user_id!r} is not a sandbox agent.")
        code = secrets.token_urlsafe(24)
        self._codes[code] = AuthorizationCode(
            code=code,
            client_id=client_id,
            redirect_uri=redirect_uri,
            user_id=user_id,
            code_challenge=code_challenge or None,
            expires_at=self.clock.monotonic() + AUTHORIZATION_CODE_TTL,
        )
        return code

    def exchange_code(
        self,
        *,
        code: str | None,
        redirect_uri: str | None,
        client_id: str | None,
        client_secret: str | None,
        code_verifier: str | None,
    ) -> Token:
        """Grant ``authorization_code`` (PKCE or confidential): a user token with a refresh token."""
        grant = self._codes.pop(code or "", None)
        if grant is None or self.clock.monotonic() >= grant.expires_at:
            raise OAuthError("invalid_grant", "The authorization code is invalid or expired.")
        if client_id != grant.client_id or redirect_uri != grant.redirect_uri:
            raise OAuthError("invalid_grant", "client_id or redirect_uri does not match the code.")
        public = grant.code_challenge is not None
        if public:
            if not code_verifier or not hmac.compare_digest(
                _s256(code_verifier), grant.code_challenge or ""
            ):
                raise OAuthError("invalid_grant", "PKCE code_verifier does not match.")
        else:
            self._check_client(client_id, client_secret)
        refresh = secrets.token_urlsafe(32)
        self._refresh_grants[refresh] = _RefreshGrant(grant.client_id, grant.user_id, public)
        return self._issue(grant.client_id, grant.user_id, refresh_token=refresh)

    def refresh(
        self, *, refresh_token: str | None, client_id: str | None, client_secret: str | None
    ) -> Token:
        """Grant ``refresh_token``: a fresh user token; the refresh token stays valid."""
        grant = self._refresh_grants.get(refresh_token or "")
        if grant is None:
            raise OAuthError("invalid_grant", "The refresh token is invalid or revoked.")
        if client_id != grant.client_id:
            raise OAuthError("invalid_client", "client_id does not match the refresh token.")
        if not (grant.public and client_secret is None):
            self._check_client(client_id, client_secret)
        assert refresh_token is not None
        return self._issue(grant.client_id, grant.user_id, refresh_token=refresh_token)

    def _check_client(self, client_id: str | None, client_secret: str | None) -> None:
        valid = client_id == self.config.client_id and hmac.compare_digest(
            (client_secret or "").encode(), self.config.client_secret.encode()
        )
        if not valid:
            self.counters["oauth_failures"] += 1
            raise OAuthError("invalid_client", "Client authentication failed.", status=401)

    def _issue(
        self, client_id: str, user_id: str | None, *, refresh_token: str | None = None
    ) -> Token:
        now = self.clock.monotonic()
        token = Token(
            value=secrets.token_urlsafe(32),
            client_id=client_id,
            user_id=user_id,
            issued_at=now,
            expires_at=now + self.config.token_ttl,
            refresh_token=refresh_token,
        )
        self._tokens[token.value] = token
        self.counters["tokens_issued"] += 1
        return token

    @property
    def tokens(self) -> tuple[Token, ...]:
        """The tokens currently valid (not expired in a sweep, not revoked)."""
        return tuple(self._tokens.values())

    def authenticate(self, authorization: str | None) -> Token:
        """The token behind an ``Authorization: Bearer`` header, or AuthenticationError (401)."""
        scheme, _, value = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise AuthenticationError(
                "No authentication bearer token specified in authorization header.",
                status=401,
                code="authentication.required",
            )
        token = self._tokens.get(value.strip())
        if token is None or self.clock.monotonic() >= token.expires_at:
            self.counters["unauthorized"] += 1
            raise AuthenticationError(
                "Invalid login credentials.", status=401, code="bad.credentials"
            )
        return token

    def require_user(self, token: Token) -> Agent:
        """The user behind a user token; BadRequestError (400) for client credentials."""
        if token.user_id is None:
            raise BadRequestError(
                "This request requires a user context. "
                "Client credentials cannot be used for requests to this resource.",
                status=400,
                code="bad.request",
            )
        return self.agent(token.user_id)

    def require_self_or_client(self, token: Token, user_id: str) -> Agent:
        """The user ``user_id`` when ``token`` may act for them: their own user token, or client
        credentials (an integration acts for any user); PermissionDeniedError (403) otherwise."""
        agent = self.agent(user_id)
        if token.user_id is not None and token.user_id != agent.id:
            raise PermissionDeniedError(
                "You are not authorized to change another user's presence or routing status.",
                status=403,
                code="missing.any.permissions",
            )
        return agent

    # ------------------------------------------------------------------ rate limit

    def admit(self, token: Token) -> RateUsage:
        """Count one API request of ``token``; RateLimitedError (429) when over the limit.

        A forced burst (:meth:`force_rate_limit`) refuses requests before the window is consulted.
        Refused requests do not count in the window.
        """
        limit = self.config.rate_limit_per_minute
        if self._burst_remaining > 0:
            self._burst_remaining -= 1
            self.counters["rate_limited"] += 1
            raise _rate_limited(limit, self._burst_retry_after)
        if limit == 0:
            return RateUsage(0, 0, 0)
        now = self.clock.monotonic()
        window = token.requests
        while window and window[0] <= now - RATE_WINDOW:
            window.popleft()
        if len(window) >= limit:
            self.counters["rate_limited"] += 1
            raise _rate_limited(limit, max(1, math.ceil(window[0] + RATE_WINDOW - now)))
        window.append(now)
        return RateUsage(len(window), limit, max(1, math.ceil(window[0] + RATE_WINDOW - now)))

    def force_rate_limit(self, count: int, retry_after: int) -> None:
        """Refuse the next ``count`` API requests with 429 and ``Retry-After: retry_after``."""
        self._burst_remaining = count
        self._burst_retry_after = retry_after

    # ------------------------------------------------------------------ channels

    def create_channel(self, token: Token) -> tuple[Channel, list[CloseSocket]]:
        """Create a channel bound to ``token``, evicting the owner's LRU channel when full.

        Eviction picks a channel without a live socket first, then the least recently used; the
        returned actions close the evicted channel's sockets.
        """
        now = self.clock.monotonic()
        closes: list[CloseSocket] = []
        mine = [channel for channel in self._channels.values() if channel.owner == token.owner]
        while len(mine) >= self.config.max_channels_per_client:
            victim = min(mine, key=lambda channel: (bool(channel.socket_ids), channel.last_used))
            closes += self._remove_channel(victim, CLOSE_CHANNEL_REMOVED, cause="evicted")
            mine.remove(victim)
        channel = Channel(
            id=self.ids.uuid(),
            owner=token.owner,
            token=token,
            created_at=now,
            expires_at=now + self.config.channel_ttl,
            expires_wall=self.clock.wall() + timedelta(seconds=self.config.channel_ttl),
            last_used=next(self._use_sequence),
        )
        self._channels[channel.id] = channel
        self.counters["channels_created"] += 1
        return channel, closes

    @property
    def channels(self) -> tuple[Channel, ...]:
        """Every live channel, oldest first."""
        return tuple(self._channels.values())

    def channels_of(self, token: Token) -> list[Channel]:
        """The live channels of the token's owner (OAuth client or user), oldest first."""
        now = self.clock.monotonic()
        return [c for c in self._channels.values() if c.owner == token.owner and now < c.expires_at]

    def channel_of(self, token: Token, channel_id: str) -> Channel:
        """The owner's live channel ``channel_id``; NotFoundError (404) otherwise."""
        channel = self._channels.get(channel_id)
        if channel is None or channel.owner != token.owner:
            raise _not_found(f"Channel {channel_id} not found.")
        if self.clock.monotonic() >= channel.expires_at:
            raise _not_found(f"Channel {channel_id} has expired.")
        return channel

    def subscribe(
        self,
        token: Token,
        channel_id: str,
        entries: Sequence[str],
        *,
        replace: bool,
        ignore_errors: bool,
    ) -> list[TopicVerdict]:
        """PUT (``replace``) or POST topics on a channel; returns one verdict per expanded topic.

        BadRequestError (400) for system, malformed or too long topics and for more topics than
        the channel may hold; PermissionDeniedError (403) when a topic is rejected and
        ``ignore_errors`` is false (nothing changes then). With ``ignore_errors`` only the
        permitted topics are subscribed. Resubscribing extends ``expires`` when configured.
        """
        channel = self.channel_of(token, channel_id)
        requested: dict[str, None] = {}
        for entry in entries:
            for topic in expand_topic(entry, max_length=self.config.max_topic_length):
                requested[topic] = None
        total = len(requested) if replace else len(channel.topics | requested)
        limit = self.config.max_topics_per_channel
        if total > limit:
            raise BadRequestError(
                f"A channel may subscribe to at most {limit} topics; this request would make "
                f"{total}. Spread the topics over more channels.",
                status=400,
                code="bad.request",
            )
        verdicts = [self.topic_rules.judge(topic) for topic in requested]
        rejected = [verdict for verdict in verdicts if not verdict.permitted]
        if rejected and not ignore_errors:
            listed = ", ".join(verdict.topic for verdict in rejected[:5])
            more = f" and {len(rejected) - 5} more" if len(rejected) > 5 else ""
            raise PermissionDeniedError(
                f"Not permitted to subscribe to {listed}{more}. "
                "Use ignoreErrors=true to subscribe to the permitted topics only.",
                status=403,
                code="missing.permissions",
            )
        permitted = dict.fromkeys(verdict.topic for verdict in verdicts if verdict.permitted)
        self._set_topics(channel, permitted if replace else channel.topics | permitted)
        if self.config.resubscribe_extends:
            self._extend(channel)
        self.counters["subscription_requests"] += 1
        return verdicts

    def subscriptions(self, token: Token, channel_id: str) -> list[str]:
        """The channel's topics, in subscription order."""
        return list(self.channel_of(token, channel_id).topics)

    def unsubscribe_all(self, token: Token, channel_id: str) -> None:
        """DELETE subscriptions: the channel keeps living, with no topics."""
        channel = self.channel_of(token, channel_id)
        self._set_topics(channel, {})

    def drop_subscriptions(self, channel_id: str) -> tuple[str, ...]:
        """Forget a channel's topics (the ``no_longer_subscribed`` fault); returns what it had."""
        channel = self._channels.get(channel_id)
        if channel is None:
            return ()
        dropped = tuple(channel.topics)
        self._set_topics(channel, {})
        return dropped

    def _set_topics(self, channel: Channel, topics: dict[str, None]) -> None:
        for topic in channel.topics:
            if topic not in topics:
                subscribers = self._topic_index.get(topic)
                if subscribers is not None:
                    subscribers.pop(channel.id, None)
                    if not subscribers:
                        del self._topic_index[topic]
        for topic in topics:
            self._topic_index.setdefault(topic, {})[channel.id] = None
        channel.topics = dict(topics)
        self._touch(channel)

    def _extend(self, channel: Channel) -> None:
        channel.expires_at = self.clock.monotonic() + self.config.channel_ttl
        channel.expires_wall = self.clock.wall() + timedelta(seconds=self.config.channel_ttl)

    def _touch(self, channel: Channel) -> None:
        channel.last_used = next(self._use_sequence)

    def _remove_channel(
        self, channel: Channel, close: CloseReason, *, cause: str, notice: str | None = None
    ) -> list[CloseSocket]:
        self._set_topics(channel, {})
        del self._channels[channel.id]
        closes = []
        for socket_id in channel.socket_ids:
            self._sockets.pop(socket_id, None)
            closes.append(CloseSocket(socket_id, channel.id, close, notice))
        self.removals.append(
            Removal(channel.id, cause, self.clock.wall(), bool(channel.socket_ids))
        )
        channel.socket_ids = []
        self.counters[f"channels_{cause}"] += 1
        return closes

    # ------------------------------------------------------------------ sockets

    def has_channel(self, channel_id: str) -> bool:
        """True when a WebSocket may connect to ``channel_id`` now."""
        channel = self._channels.get(channel_id)
        return channel is not None and self.clock.monotonic() < channel.expires_at

    def open_socket(self, channel_id: str) -> tuple[SocketRecord, list[CloseSocket]]:
        """Register a new WebSocket on a channel; NotFoundError when the channel is gone.

        Under the ``displace`` policy the returned actions close the channel's older sockets.
        """
        if not self.has_channel(channel_id):
            raise _not_found(f"Channel {channel_id} not found.")
        channel = self._channels[channel_id]
        closes = []
        if self.config.second_socket is SecondSocketPolicy.DISPLACE:
            for old in channel.socket_ids:
                self._sockets.pop(old, None)
                closes.append(CloseSocket(old, channel_id, CLOSE_DISPLACED))
                self.counters["sockets_displaced"] += 1
            channel.socket_ids = []
        record = SocketRecord(
            f"socket-{next(self._socket_sequence)}", channel_id, self.clock.monotonic()
        )
        self._sockets[record.id] = record
        channel.socket_ids.append(record.id)
        self._touch(channel)
        self.counters["sockets_opened"] += 1
        return record, closes

    def close_socket(self, socket_id: str) -> None:
        """Forget a socket that ended (whoever ended it); harmless when already forgotten."""
        record = self._sockets.pop(socket_id, None)
        if record is None:
            return
        channel = self._channels.get(record.channel_id)
        if channel is not None and socket_id in channel.socket_ids:
            channel.socket_ids.remove(socket_id)
            self._touch(channel)

    @property
    def sockets(self) -> tuple[SocketRecord, ...]:
        """Every live socket the world knows, oldest first."""
        return tuple(self._sockets.values())

    def sockets_of(self, channel_id: str | None) -> list[SocketRecord]:
        """The live sockets of one channel, or of every channel when ``channel_id`` is None."""
        return [s for s in self._sockets.values() if channel_id in (None, s.channel_id)]

    def subscribed_sockets(self, topic: str) -> list[tuple[str, tuple[str, ...]]]:
        """For each channel subscribed to ``topic``: its id and its live socket ids."""
        return [
            (channel_id, tuple(self._channels[channel_id].socket_ids))
            for channel_id in self._topic_index.get(topic, {})
        ]

    def subject_of(self, channel_id: str) -> str | None:
        """Whom the channel's token speaks for (user or client id); None for an unknown channel."""
        channel = self._channels.get(channel_id)
        return channel.token.subject if channel is not None else None

    # ------------------------------------------------------------------ time and revocation

    def sweep(self) -> list[CloseSocket]:
        """Remove what has expired by now: tokens (with their channels), channels, codes."""
        now = self.clock.monotonic()
        closes: list[CloseSocket] = []
        for token in [t for t in self._tokens.values() if now >= t.expires_at]:
            del self._tokens[token.value]
            for channel in [c for c in self._channels.values() if c.token is token]:
                closes += self._remove_channel(channel, CLOSE_TOKEN_EXPIRED, cause="token_expired")
        for channel in [c for c in self._channels.values() if now >= c.expires_at]:
            closes += self._remove_channel(channel, CLOSE_CHANNEL_EXPIRED, cause="expired")
        for code in [c for c in self._codes.values() if now >= c.expires_at]:
            del self._codes[code.code]
        return closes

    def revoke(self, subject: str | None = None) -> list[CloseSocket]:
        """Revoke the tokens of ``subject`` (user or client id; None: every token).

        Their channels are removed; each live socket first gets a
        ``v2.system.token_revoked.{subject}`` frame, then closes with ``token revoked``. Refresh
        tokens of the subject are revoked too.
        """
        closes: list[CloseSocket] = []
        for token in [t for t in self._tokens.values() if subject in (None, t.subject)]:
            del self._tokens[token.value]
            self.counters["tokens_revoked"] += 1
            notice = wire.system_frame(
                f"v2.system.token_revoked.{token.subject}",
                {"message": "The access token this channel was created with has been revoked."},
            )
            for channel in [c for c in self._channels.values() if c.token is token]:
                closes += self._remove_channel(
                    channel, CLOSE_TOKEN_REVOKED, cause="revoked", notice=notice
                )
        for refresh, grant in list(self._refresh_grants.items()):
            if subject in (None, grant.user_id, grant.client_id):
                del self._refresh_grants[refresh]
        return closes

    def deny_topic_prefix(
        self, prefix: str, *, missing: str | tuple[str, ...], reason: str | None = None
    ) -> None:
        """Reject topics starting with ``prefix`` from now on, reporting ``missing`` permissions."""
        self.topic_rules.deny_prefix(prefix, missing=missing, reason=reason)

    def allow_topic_prefix(self, prefix: str) -> None:
        """Undo :meth:`deny_topic_prefix`."""
        self.topic_rules.allow_prefix(prefix)

    # ------------------------------------------------------------------ diagnosis

    def snapshot(self) -> dict[str, Any]:
        """A JSON-ready picture of channels, sockets, tokens and counters (no secrets)."""
        now = self.clock.monotonic()
        return {
            "channels": [
                {
                    "id": channel.id,
                    "owner": channel.owner,
                    "expires": wire.iso_utc(channel.expires_wall),
                    "expiresIn": round(channel.expires_at - now, 3),
                    "topics": list(channel.topics),
                    "sockets": list(channel.socket_ids),
                }
                for channel in self._channels.values()
            ],
            "sockets": [
                {"id": s.id, "channelId": s.channel_id, "age": round(now - s.opened_at, 3)}
                for s in self._sockets.values()
            ],
            "tokens": [
                {
                    "subject": token.subject,
                    "userContext": token.user_id is not None,
                    "expiresIn": round(token.expires_at - now, 3),
                }
                for token in self._tokens.values()
            ],
            "removals": [
                {
                    "channelId": removal.channel_id,
                    "cause": removal.cause,
                    "at": wire.iso_utc(removal.at),
                    "hadSocket": removal.had_socket,
                }
                for removal in self.removals
            ],
            "deniedTopicPrefixes": {
                prefix: list(missing)
                for prefix, missing in self.topic_rules.denied_prefixes.items()
            },
            "counters": dict(self.counters),
        }


def _s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii", errors="replace")).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def _not_found(message: str) -> NotFoundError:
    return NotFoundError(message, status=404, code="not.found")


def _rate_limited(limit: int, retry_after: int) -> RateLimitedError:
    return RateLimitedError(
        f"Rate limit exceeded the maximum. [{limit}] requests for [{int(RATE_WINDOW)}] seconds.",
        status=429,
        code="too.many.requests",
        retry_after=retry_after,
    )
