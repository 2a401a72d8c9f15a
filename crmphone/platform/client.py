"""The Genesys Cloud REST client: the calls crmphone makes, as async methods returning values.

:class:`PlatformClient` covers notification channels and their subscriptions, call conversations,
the analytics query that finds the calls of a past interval, and the users and stations an agent
needs. Every request goes through one private method that adds
the bearer token, retries what :class:`~crmphone.platform.retry.RetryPolicy` allows, refreshes the
token once on a 401, and maps every failure to a :mod:`crmphone.errors` exception whose message says
which request failed, what the platform said, and what to do about it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from importlib import metadata
from types import TracebackType
from typing import Any, Self, TypeVar
from urllib.parse import quote, urlsplit

import attrs
import httpx

from crmphone.clock import Clock, SystemClock
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
    UsageError,
)

from ._http import Sleep, read_json, send_with_retries
from ._tls import ssl_context
from .auth import TokenProvider
from .models import (
    CallConversation,
    Channel,
    PresenceDefinition,
    Station,
    TopicSubscription,
    User,
    UserPresence,
    UserRoutingStatus,
    parse_genesys_datetime,
)
from .retry import RetryPolicy, parse_retry_after

__all__ = ["PlatformClient"]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

_CHANNELS = "/api/v2/notifications/channels"
# A page of /api/v2/users: Genesys Cloud allows up to 500; 100 keeps responses small.
_USERS_PAGE_SIZE = 100
# A server that ignores pageNumber would otherwise be paged forever.
_MAX_PAGES = 10_000
_DETAILS_QUERY = "/api/v2/analytics/conversations/details/query"
# The largest page the conversation detail query serves.
_DETAILS_MAX_PAGE_SIZE = 100
# User ids per query: each is one predicate, and Genesys caps the predicates of a filter (the
# exact cap is not documented where we could find it; 50 stays well inside any we have seen).
_USER_IDS_PER_QUERY = 50


def _default_user_agent() -> str:
    try:
        version = metadata.version("crmphone")
    except metadata.PackageNotFoundError:
        version = "dev"
    return f"crmphone/{version} (+httpx/{httpx.__version__})"


def _segment(name: str, value: str) -> str:
    """``value`` quoted as one path segment; refuses empty or non-string ids (local misuse)."""
    if not isinstance(value, str) or not value:
        raise UsageError(f"{name} must be a non-empty string, got {value!r}")
    return quote(value, safe="")


def _topic_list(topics: Iterable[str]) -> list[dict[str, str]]:
    if isinstance(topics, str | bytes):
        # A lone string is iterable too; subscribing to its characters is never what was meant.
        raise UsageError("topics must be a collection of topic names, not a single string")
    body = []
    for topic in topics:
        if not isinstance(topic, str) or not topic:
            raise UsageError(f"every topic must be a non-empty string, got {topic!r}")
        body.append({"id": topic})
    return body


class PlatformClient:
    """An async client for the platform's REST API; use one per token (per agent or integration).

    Use it as an async context manager, or call :meth:`aclose` when done. ``api_base`` is the
    region's API URL (see :func:`~crmphone.platform.resolve_region`); ``tokens`` supplies access
    tokens. Pass ``http`` to share an ``httpx.AsyncClient`` (its TLS settings, proxies and limits
    apply and it is not closed here); otherwise the client makes its own. ``verify`` is TLS
    verification for that client and for the WebSockets opened through this one (notification
    channels, the phone's signalling): True (the default) verifies against the default trust
    store, a string is the path of a CA bundle to trust instead, False turns verification off
    (never do that on a network you do not own). ``timeout`` bounds each attempt; ``retry`` says
    how failures are retried; ``sleep``, ``rng`` and ``clock`` are injectable so tests run retries
    instantly and deterministically.
    """

    def __init__(
        self,
        *,
        api_base: str,
        tokens: TokenProvider,
        http: httpx.AsyncClient | None = None,
        retry: RetryPolicy | None = None,
        timeout: float = 10.0,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
        user_agent: str | None = None,
        clock: Clock | None = None,
        verify: bool | str = True,
    ) -> None:
        parts = urlsplit(api_base) if isinstance(api_base, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(
                f"{api_base!r} is not an http(s) URL; use resolve_region() to build it",
                key="platform.api_base",
            )
        if timeout <= 0:
            raise ConfigError(f"must be positive, got {timeout!r}", key="platform.timeout")
        self._api_base = api_base.rstrip("/")
        self._tokens = tokens
        if http is not None and verify is not True:
            raise UsageError(
                "give verify or http, not both: a shared httpx.AsyncClient keeps its own TLS "
                "settings"
            )
        self._verify = verify
        self._ssl_context = ssl_context(verify)
        self._owns_http = http is None
        self._http = (
            http
            if http is not None
            else httpx.AsyncClient(
                verify=self._ssl_context if self._ssl_context is not None else True
            )
        )
        self._retry = retry if retry is not None else RetryPolicy()
        self._timeout = timeout
        self._sleep = sleep
        self._rng = rng if rng is not None else random.Random()
        self._user_agent = user_agent if user_agent is not None else _default_user_agent()
        self._clock = clock if clock is not None else SystemClock()
        self._closed = False

    def __repr__(self) -> str:
        unverified = "" if self._verify is not False else ", verify=False"
        return f"PlatformClient(api_base={self._api_base!r}, tokens={self._tokens!r}{unverified})"

    @property
    def api_base(self) -> str:
        """The API base URL requests go to (no trailing slash)."""
        return self._api_base

    @property
    def tokens(self) -> TokenProvider:
        """The token provider this client authenticates with."""
        return self._tokens

    @property
    def verify(self) -> bool | str:
        """TLS verification as given: True, a CA bundle's path, or False (off)."""
        return self._verify

    @property
    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context for WebSockets opened with this client's token (``wss://`` channel
        and signalling URIs), or None for the libraries' default, which verifies."""
        return self._ssl_context

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP client if this object created it; later requests raise."""
        if self._closed:
            return
        self._closed = True
        if self._owns_http:
            await self._http.aclose()

    # -- notification channels -------------------------------------------------------------

    async def create_channel(self, *, streaming: bool = False) -> Channel:
        """Create a notification channel (``POST /api/v2/notifications/channels``).

        The platform keeps at most 20 channels per user and OAuth client; a 21st evicts the least
        recently used. Open the WebSocket at the returned ``connect_uri`` with no further auth.
        ``streaming=True`` asks for a streaming channel (``?connectionType=streaming``), the one
        a softphone's call signalling travels on; it needs a user's token.
        """
        params = {"connectionType": "streaming"} if streaming else None
        response = await self._request("POST", _CHANNELS, params=params)
        return self._value(response, "POST", _CHANNELS, Channel.from_genesys)

    async def list_channels(self) -> tuple[Channel, ...]:
        """The channels this token's user or OAuth client owns (``GET …/channels``)."""
        response = await self._request("GET", _CHANNELS)
        return self._entities(response, "GET", _CHANNELS, Channel.from_genesys)

    async def channel_exists(self, channel_id: str) -> bool:
        """Whether ``channel_id`` is still alive (``HEAD …/channels/{id}``): 200 True, 404 False.

        A cheap check before reconnecting to a remembered ``connect_uri``.
        """
        path = f"{_CHANNELS}/{_segment('channel_id', channel_id)}"
        try:
            await self._request("HEAD", path)
        except NotFoundError:
            return False
        return True

    async def put_subscriptions(
        self, channel_id: str, topics: Iterable[str], ignore_errors: bool = False
    ) -> tuple[TopicSubscription, ...]:
        """Replace the channel's topics with ``topics`` (``PUT …/subscriptions``).

        Use after every reconnect. With ``ignore_errors`` the platform subscribes what it can and
        reports each topic's state (rejected ones with reason and missing permissions); without
        it, one forbidden topic fails the whole request with
        :class:`~crmphone.errors.PermissionDeniedError`.
        """
        return await self._subscribe("PUT", channel_id, topics, ignore_errors)

    async def add_subscriptions(
        self, channel_id: str, topics: Iterable[str], ignore_errors: bool = False
    ) -> tuple[TopicSubscription, ...]:
        """Add ``topics`` to the channel's subscriptions (``POST …/subscriptions``).

        Returns the channel's whole subscription list as the platform reports it; see
        :meth:`put_subscriptions` for ``ignore_errors``.
        """
        return await self._subscribe("POST", channel_id, topics, ignore_errors)

    async def get_subscriptions(self, channel_id: str) -> tuple[TopicSubscription, ...]:
        """The channel's current topics (``GET …/subscriptions``)."""
        path = f"{_CHANNELS}/{_segment('channel_id', channel_id)}/subscriptions"
        response = await self._request("GET", path)
        return self._entities(response, "GET", path, TopicSubscription.from_genesys)

    async def delete_subscriptions(self, channel_id: str) -> None:
        """Remove every topic from the channel (``DELETE …/subscriptions``)."""
        path = f"{_CHANNELS}/{_segment('channel_id', channel_id)}/subscriptions"
        await self._request("DELETE", path)

    async def _subscribe(
        self, method: str, channel_id: str, topics: Iterable[str], ignore_errors: bool
    ) -> tuple[TopicSubscription, ...]:
        path = f"{_CHANNELS}/{_segment('channel_id', channel_id)}/subscriptions"
        body = _topic_list(topics)
        params = {"ignoreErrors": "true"} if ignore_errors else None
        response = await self._request(method, path, json=body, params=params)
        return self._entities(response, method, path, TopicSubscription.from_genesys)

    # -- conversations ---------------------------------------------------------------------

    async def get_call(self, conversation_id: str) -> CallConversation:
        """The call's current state (``GET /api/v2/conversations/calls/{id}``).

        The way to resynchronise after any gap in the notification stream, which has no replay.
        """
        path = f"/api/v2/conversations/calls/{_segment('conversation_id', conversation_id)}"
        response = await self._request("GET", path)
        return self._value(response, "GET", path, CallConversation.from_genesys)

    async def patch_participant(
        self,
        conversation_id: str,
        participant_id: str,
        *,
        state: str | None = None,
        muted: bool | None = None,
        held: bool | None = None,
    ) -> None:
        """Change a call participant: ``state="connected"`` answers, ``"disconnected"`` hangs up
        or rejects; ``muted`` and ``held`` toggle mute and hold.

        The platform acts asynchronously: the outcome arrives as conversation events.
        """
        body: dict[str, Any] = {}
        if state is not None:
            body["state"] = state
        if muted is not None:
            body["muted"] = muted
        if held is not None:
            body["held"] = held
        if not body:
            raise UsageError("patch_participant needs at least one of state, muted or held")
        path = (
            f"/api/v2/conversations/calls/{_segment('conversation_id', conversation_id)}"
            f"/participants/{_segment('participant_id', participant_id)}"
        )
        await self._request("PATCH", path, json=body)

    async def place_call(self, phone_number: str, *, queue_id: str | None = None) -> str:
        """Dial ``phone_number`` as the token's user, optionally on behalf of ``queue_id``.

        Returns the new conversation's id; its progress arrives as conversation events. A lost
        connection is not retried (the call may already be ringing).
        """
        if not isinstance(phone_number, str) or not phone_number.strip():
            raise UsageError(f"phone_number must be a non-empty string, got {phone_number!r}")
        body: dict[str, Any] = {"phoneNumber": phone_number}
        if queue_id is not None:
            body["callFromQueueId"] = queue_id
        path = "/api/v2/conversations/calls"
        response = await self._request("POST", path, json=body)
        data = read_json(response, f"POST {path}")
        conversation_id = data.get("id") if isinstance(data, dict) else None
        if not isinstance(conversation_id, str) or not conversation_id:
            raise PlatformError(
                f"POST {path}: the platform's answer has no conversation 'id'",
                status=response.status_code,
                correlation_id=response.headers.get("ININ-Correlation-Id"),
            )
        return conversation_id

    async def conversation_ids_between(
        self,
        start: datetime,
        end: datetime,
        *,
        user_ids: Collection[str] = (),
        page_size: int = _DETAILS_MAX_PAGE_SIZE,
    ) -> tuple[str, ...]:
        """The voice conversations active at any moment from ``start`` to ``end``, oldest first.

        Call it after a gap in the notification stream to find the calls that began *and* ended
        unseen (the channel has no replay); then read each with :meth:`get_call`. It follows
        every page of ``POST /api/v2/analytics/conversations/details/query`` (``page_size``
        1 to 100) and returns each conversation id once, ordered by conversation start.
        ``user_ids`` keeps the conversations where one of those users took part (queried in
        batches of 50 ids); empty means every user's.

        ``start`` and ``end`` must be timezone-aware. Mind the platform's rules: the token needs
        ``analytics:conversationDetail:view`` (:class:`~crmphone.errors.PermissionDeniedError`
        otherwise); an interval longer than 31 days is refused
        (:class:`~crmphone.errors.BadRequestError`); only conversations that started on a (UTC)
        day the interval touches are searched; and detail data lags the live calls by seconds to
        minutes, so a call that ended just before the query may be missing — query again a
        little later (or widen the next interval) rather than trusting one answer at once.
        """
        if start.utcoffset() is None or end.utcoffset() is None:
            raise UsageError("start and end must be timezone-aware datetimes")
        if end <= start:
            raise UsageError(f"end ({end.isoformat()}) must be after start ({start.isoformat()})")
        if (
            isinstance(page_size, bool)
            or not isinstance(page_size, int)
            or not 1 <= page_size <= _DETAILS_MAX_PAGE_SIZE
        ):
            raise UsageError(
                f"page_size must be an integer from 1 to {_DETAILS_MAX_PAGE_SIZE}, "
                f"got {page_size!r}"
            )
        if isinstance(user_ids, str | bytes):
            raise UsageError("user_ids must be a collection of user ids, not a single string")
        users = list(dict.fromkeys(user_ids))  # distinct, in the caller's order
        for user_id in users:
            if not isinstance(user_id, str) or not user_id:
                raise UsageError(f"every user id must be a non-empty string, got {user_id!r}")
        interval = f"{_iso_millis(start)}/{_iso_millis(end, round_up=True)}"
        batches = [
            users[i : i + _USER_IDS_PER_QUERY] for i in range(0, len(users), _USER_IDS_PER_QUERY)
        ] or [[]]
        found: dict[str, datetime] = {}
        for batch in batches:
            for hit in await self._details_query(interval, batch, page_size):
                found.setdefault(hit.conversation_id, hit.conversation_start)
        # Batches overlap in time, so their pages interleave: one sort restores the order.
        return tuple(sorted(found, key=found.__getitem__))

    async def _details_query(
        self, interval: str, user_ids: list[str], page_size: int
    ) -> list[_ConversationHit]:
        """Every page of one detail query (voice only, optionally these users')."""
        segment_filters: list[dict[str, Any]] = [
            {"type": "and", "predicates": [_dimension("mediaType", "voice")]}
        ]
        if user_ids:
            predicates = [_dimension("userId", user_id) for user_id in user_ids]
            segment_filters.append({"type": "or", "predicates": predicates})
        hits: list[_ConversationHit] = []
        page_number = 1
        while page_number <= _MAX_PAGES:
            body = {
                "interval": interval,
                "order": "asc",
                "orderBy": "conversationStart",
                "paging": {"pageSize": page_size, "pageNumber": page_number},
                "segmentFilters": segment_filters,
            }
            response = await self._request("POST", _DETAILS_QUERY, json=body)
            data = read_json(response, f"POST {_DETAILS_QUERY}")
            page, total_hits = self._details_page(data, response)
            hits.extend(page)
            if len(page) < page_size or (total_hits is not None and len(hits) >= total_hits):
                break
            page_number += 1
        return hits

    def _details_page(
        self, data: Any, response: httpx.Response
    ) -> tuple[tuple[_ConversationHit, ...], int | None]:
        """The conversations and ``totalHits`` of one answer (no ``conversations`` key: none)."""
        conversations = data.get("conversations", []) if isinstance(data, dict) else None
        if not isinstance(conversations, list):
            raise PlatformError(
                f"POST {_DETAILS_QUERY}: malformed answer from the platform: expected a JSON "
                "object with a 'conversations' array",
                status=response.status_code,
                correlation_id=response.headers.get("ININ-Correlation-Id"),
            )
        total_hits = data.get("totalHits") if isinstance(data, dict) else None
        if isinstance(total_hits, bool) or not isinstance(total_hits, int):
            total_hits = None  # not said: a short page ends the paging
        page = tuple(
            self._parse(response, "POST", _DETAILS_QUERY, _ConversationHit.from_genesys, item)
            for item in conversations
        )
        return page, total_hits

    # -- users and stations ----------------------------------------------------------------

    async def list_users(self, *, page_size: int = _USERS_PAGE_SIZE) -> tuple[User, ...]:
        """Every user of the organisation, following all pages of ``GET /api/v2/users``.

        ``page_size`` (1 to 500) trades requests for response size; the default suits most
        organisations.
        """
        if (
            isinstance(page_size, bool)
            or not isinstance(page_size, int)
            or not 1 <= page_size <= 500
        ):
            raise UsageError(f"page_size must be an integer from 1 to 500, got {page_size!r}")
        path = "/api/v2/users"
        users: list[User] = []
        page_number = 1
        while page_number <= _MAX_PAGES:
            params = {"pageSize": str(page_size), "pageNumber": str(page_number)}
            response = await self._request("GET", path, params=params)
            data = read_json(response, f"GET {path}")
            page = self._entities_of(data, response, "GET", path, User.from_genesys)
            users.extend(page)
            if not page or self._last_page(data, page_number, len(users)):
                break
            page_number += 1
        return tuple(users)

    async def get_users(
        self, user_ids: Collection[str], *, expand: Collection[str] = ()
    ) -> tuple[User, ...]:
        """The users ``user_ids`` (``GET /api/v2/users?id=…``, 100 ids a request), with what
        ``expand`` names (``presence``, ``routingStatus``, ``station``…); unknown ids are left out.

        ``get_users(agents, expand=("presence", "routingStatus"))`` is how to re-read many agents'
        presence after a gap: one request per hundred agents.
        """
        ids = list(dict.fromkeys(_segment("user_id", user_id) for user_id in user_ids))
        path = "/api/v2/users"
        users: list[User] = []
        for start in range(0, len(ids), _USERS_PAGE_SIZE):
            batch = ids[start : start + _USERS_PAGE_SIZE]
            params = {"id": ",".join(batch), "pageSize": str(len(batch)), "pageNumber": "1"}
            if expand:
                params["expand"] = ",".join(expand)
            response = await self._request("GET", path, params=params)
            data = read_json(response, f"GET {path}")
            users.extend(self._entities_of(data, response, "GET", path, User.from_genesys))
        return tuple(users)

    @staticmethod
    def _last_page(data: Mapping[str, Any], page_number: int, collected: int) -> bool:
        page_count = data.get("pageCount")
        if isinstance(page_count, int) and not isinstance(page_count, bool):
            return page_number >= page_count
        total = data.get("total")
        if isinstance(total, int) and not isinstance(total, bool):
            return collected >= total
        return False  # neither said: an empty page will end it

    async def get_me(self) -> User:
        """The token's own user with station and permissions (``GET /api/v2/users/me``).

        Asks for ``expand=station,authorization``: the station calls ring on and the user's
        permissions (a softphone checks ``routing:conversation:acceptOffQueue``).

        Needs a user's token (:class:`~crmphone.platform.AuthorizationCode`); a client-credentials
        token has no user and the platform answers 400.
        """
        path = "/api/v2/users/me"
        try:
            response = await self._request("GET", path, params={"expand": "station,authorization"})
        except BadRequestError as exc:
            raise BadRequestError(
                f"{exc} Note: users/me needs a user's token (Authorization Code grant); a "
                "client-credentials token has no user — use list_users() instead.",
                status=exc.status,
                code=exc.code,
                correlation_id=exc.correlation_id,
            ) from exc
        return self._value(response, "GET", path, User.from_genesys)

    async def get_station(self, station_id: str) -> Station:
        """A station's settings (``GET /api/v2/stations/{id}``), e.g. persistent connection."""
        path = f"/api/v2/stations/{_segment('station_id', station_id)}"
        response = await self._request("GET", path)
        return self._value(response, "GET", path, Station.from_genesys)

    # -- presence ------------------------------------------------------------------------------

    async def presence_definitions(self) -> tuple[PresenceDefinition, ...]:
        """Every presence agents can choose (``GET /api/v2/presence/definitions``).

        Setting a presence takes a definition's id; find it here by ``system_presence``.
        """
        path = "/api/v2/presence/definitions"
        response = await self._request("GET", path)
        data = read_json(response, f"GET {path}")
        entities = data.get("entities") if isinstance(data, dict) else None
        if not isinstance(entities, list):
            raise PlatformError(
                f"GET {path}: the platform's answer has no 'entities' list",
                status=response.status_code,
                correlation_id=response.headers.get("ININ-Correlation-Id"),
            )
        return tuple(PresenceDefinition.from_genesys(entity) for entity in entities)

    async def get_presence(self, user_id: str, *, source: str = "purecloud") -> UserPresence:
        """The user's presence (``GET /api/v2/users/{id}/presences/{source}``)."""
        path = self._presence_path(user_id, source)
        response = await self._request("GET", path)
        return self._value(response, "GET", path, UserPresence.from_genesys)

    async def set_presence(
        self,
        user_id: str,
        presence_id: str,
        *,
        message: str | None = None,
        source: str = "purecloud",
    ) -> UserPresence:
        """Set the user's presence to the definition ``presence_id`` (see
        :meth:`presence_definitions`); ``message`` replaces the status text when given."""
        body: dict[str, Any] = {"presenceDefinition": {"id": _segment("presence_id", presence_id)}}
        if message is not None:
            body["message"] = message
        path = self._presence_path(user_id, source)
        response = await self._request("PATCH", path, json=body)
        return self._value(response, "PATCH", path, UserPresence.from_genesys)

    async def get_routing_status(self, user_id: str) -> UserRoutingStatus:
        """The user's routing status (``GET /api/v2/users/{id}/routingstatus``)."""
        path = f"/api/v2/users/{_segment('user_id', user_id)}/routingstatus"
        response = await self._request("GET", path)
        return self._value(response, "GET", path, UserRoutingStatus.from_genesys)

    async def set_routing_status(self, user_id: str, status: str) -> UserRoutingStatus:
        """Put the user ``OFF_QUEUE`` or back to ``IDLE`` (``PUT …/routingstatus``); the other
        statuses are the platform's to give."""
        path = f"/api/v2/users/{_segment('user_id', user_id)}/routingstatus"
        body = {"userId": user_id, "status": status}
        response = await self._request("PUT", path, json=body)
        return self._value(response, "PUT", path, UserRoutingStatus.from_genesys)

    @staticmethod
    def _presence_path(user_id: str, source: str) -> str:
        return (
            f"/api/v2/users/{_segment('user_id', user_id)}/presences/{_segment('source', source)}"
        )

    # -- the one request path --------------------------------------------------------------

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
    ) -> httpx.Response:
        """Send one API request with auth, retries and one token refresh; return a 2xx response.

        Raises the :mod:`crmphone.errors` exception that fits the final status, or
        :class:`~crmphone.errors.TransportError` when no response arrived.
        """
        if self._closed:
            raise InvalidStateError("this PlatformClient is closed; create a new one")
        url = f"{self._api_base}{path}"
        token = await self._tokens.token()

        async def send() -> httpx.Response:
            headers = {
                "Authorization": token.authorization,
                "Accept": "application/json",
                "User-Agent": self._user_agent,
            }
            return await self._http.request(
                method, url, params=params, json=json, headers=headers, timeout=self._timeout
            )

        response, attempts = await self._send(send, method, path)
        if response.status_code == 401:
            logger.info("%s %s -> 401; refreshing the access token once", method, path)
            await response.aclose()
            token = await self._tokens.refresh()
            response, attempts = await self._send(send, method, path)
        if response.is_success:
            return response
        raise _error_for(response, method, path, attempts)

    async def _send(
        self, send: Callable[[], Awaitable[httpx.Response]], method: str, path: str
    ) -> tuple[httpx.Response, int]:
        return await send_with_retries(
            send,
            method=method,
            path=path,
            host=self._api_base,
            policy=self._retry,
            clock=self._clock,
            sleep=self._sleep,
            rng=self._rng,
        )

    def _value(
        self, response: httpx.Response, method: str, path: str, build: Callable[[Any], _T]
    ) -> _T:
        return self._parse(response, method, path, build, read_json(response, f"{method} {path}"))

    def _entities(
        self, response: httpx.Response, method: str, path: str, build: Callable[[Any], _T]
    ) -> tuple[_T, ...]:
        data = read_json(response, f"{method} {path}")
        return self._entities_of(data, response, method, path, build)

    def _entities_of(
        self,
        data: Any,
        response: httpx.Response,
        method: str,
        path: str,
        build: Callable[[Any], _T],
    ) -> tuple[_T, ...]:
        entities = data.get("entities") if isinstance(data, dict) else None
        if entities is None and isinstance(data, dict):
            entities = []  # an empty listing may come without the key at all
        if not isinstance(entities, list):
            raise PlatformError(
                f"{method} {path}: malformed answer from the platform: expected a JSON object "
                "with an 'entities' array",
                status=response.status_code,
                correlation_id=response.headers.get("ININ-Correlation-Id"),
            )
        return tuple(self._parse(response, method, path, build, item) for item in entities)

    @staticmethod
    def _parse(
        response: httpx.Response, method: str, path: str, build: Callable[[Any], _T], data: Any
    ) -> _T:
        try:
            return build(data)
        except PlatformError as exc:
            raise PlatformError(
                f"{method} {path}: {exc}",
                status=response.status_code,
                correlation_id=response.headers.get("ININ-Correlation-Id"),
            ) from exc


@attrs.frozen
class _ConversationHit:
    """What crmphone reads of one conversation in a detail query's answer."""

    conversation_id: str
    conversation_start: datetime

    @classmethod
    def from_genesys(cls, data: Any) -> _ConversationHit:
        """Read ``conversationId`` and ``conversationStart``; PlatformError when malformed."""
        if not isinstance(data, dict):
            raise PlatformError("malformed conversation from the platform: not a JSON object")
        conversation_id = data.get("conversationId")
        if not isinstance(conversation_id, str) or not conversation_id:
            raise PlatformError(
                "malformed conversation from the platform: field 'conversationId' must be a "
                "non-empty string"
            )
        started = data.get("conversationStart")
        try:
            conversation_start = (
                parse_genesys_datetime(started) if isinstance(started, str) else None
            )
        except ValueError:
            conversation_start = None
        if conversation_start is None:
            raise PlatformError(
                f"malformed conversation {conversation_id} from the platform: field "
                "'conversationStart' must be an ISO-8601 timestamp"
            )
        return cls(conversation_id, conversation_start)


def _dimension(name: str, value: str) -> dict[str, str]:
    return {"type": "dimension", "dimension": name, "operator": "matches", "value": value}


def _iso_millis(moment: datetime, *, round_up: bool = False) -> str:
    """``moment`` as Genesys writes instants (UTC, milliseconds, ``Z``); ``round_up`` so that an
    interval's end keeps the sub-millisecond instant it was given."""
    moment = moment.astimezone(UTC)
    if round_up and moment.microsecond % 1000:
        moment += timedelta(microseconds=1000 - moment.microsecond % 1000)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


# What to do, per status, appended to every error message.
_ADVICE = {
    400: "The platform rejected the request as invalid; fix it rather than retrying it unchanged.",
    401: "The access token was refused even after a refresh. Check that the OAuth client is "
    "active, that CRMPHONE_CLIENT_ID/CRMPHONE_CLIENT_SECRET are right, and that the API and login "
    "hosts belong to the same region; a signed-in agent may need to sign in again.",
    403: "The OAuth client (or the signed-in user) lacks a permission for this request. Grant "
    "the permission the platform names by giving the OAuth client (Admin > Integrations > OAuth > "
    "Roles) or the user a role that has it; for subscriptions, ignore_errors=True shows which "
    "topics are refused and why.",
    404: "It does not exist (any more): check the id; channels expire after 24 h and "
    "conversations end.",
    429: "The platform's rate limit (300 requests/min per token) held after retrying; slow down "
    "and wait the Retry-After interval before trying again.",
}
_SERVER_ADVICE = (
    "The platform kept failing after retrying; try again later, and quote the correlation id to "
    "the platform's support if it persists."
)

_ERROR_TYPES: dict[int, type[PlatformError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    429: RateLimitedError,
}


def _error_for(response: httpx.Response, method: str, path: str, attempts: int) -> PlatformError:
    """The crmphone error for a final non-2xx ``response`` to ``method path``."""
    status = response.status_code
    message, code, context_id = _genesys_error_body(response)
    correlation_id = response.headers.get("ININ-Correlation-Id") or context_id
    error_type = _ERROR_TYPES.get(status)
    if error_type is None:
        error_type = ServerError if status >= 500 else PlatformError
    advice = _ADVICE.get(status, _SERVER_ADVICE if status >= 500 else "")
    reason = response.reason_phrase or "error"
    said = f": {message}" if message else ""
    details = ", ".join(
        part
        for part in (
            f"code {code}" if code else "",
            f"correlation id {correlation_id}" if correlation_id else "",
            f"after {attempts} attempts" if attempts > 1 else "",
        )
        if part
    )
    text = f"{method} {path} failed: {status} {reason}{said}"
    if details:
        text += f" ({details})"
    text += "."
    if advice:
        text += f" {advice}"
    retry_after = (
        parse_retry_after(response.headers.get("Retry-After")) if status in (429, 503) else None
    )
    return error_type(
        text, status=status, code=code, correlation_id=correlation_id, retry_after=retry_after
    )


def _genesys_error_body(response: httpx.Response) -> tuple[str | None, str | None, str | None]:
    """``message``, ``code`` and ``contextId`` of a Genesys error body, when there is one."""
    try:
        body = response.json()
    except ValueError:
        return None, None, None
    if not isinstance(body, dict):
        return None, None, None

    def text(key: str, limit: int) -> str | None:
        value = body.get(key)
        return value[:limit] if isinstance(value, str) and value else None

    return text("message", 500), text("code", 100), text("contextId", 100)
