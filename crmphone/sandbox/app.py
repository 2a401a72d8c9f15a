"""The sandbox's HTTP face: Genesys Cloud's REST paths, the channel WebSocket, admin routes.

One Starlette application serves login (``/oauth/*``), the API (``/api/v2/*``), the notification
WebSockets (``/channels/{id}``), the signalling WebSockets of softphones (``/stream/channels/{id}``,
see :mod:`~crmphone.sandbox.signalling`) and the sandbox's own controls (``/sandbox/*``, no token
needed; the server binds to loopback). Handlers are thin: they parse, call the
:class:`~crmphone.sandbox.world.World` or the :class:`~crmphone.sandbox.hub.Sandbox`, and shape
JSON. Every ``/api/v2`` answer carries ``ININ-Correlation-Id``; every error body has Genesys's
``message``, ``code``, ``status``, ``contextId``.

``POST /api/v2/analytics/conversations/details/query`` answers the subset of Genesys's conversation
detail query that finds calls after a notification gap: ``interval``, ``order``, ``orderBy``,
``paging`` and dimension predicates in ``segmentFilters``/``conversationFilters`` (see
:meth:`_SandboxApp.query_conversation_details`).

Admin routes:

* ``GET /sandbox/state`` — channels, sockets, tokens (no values), counters, faults, calls.
* ``GET /sandbox/stats`` — the media edge's statistics per station (see
  :meth:`~crmphone.sandbox.edge.MediaEdge.stats`).
* ``POST /sandbox/faults`` — ``{"kind": ..., params}``, see :mod:`crmphone.sandbox.faults`.
* ``POST /sandbox/calls`` — ``{"agentId"?, "ani"?, "dnis"?, "queueId"?, "auto"?, "autoAnswer"?}``
  places an inbound call; answers ``{"conversationId"}``.
* ``POST /sandbox/publish`` — ``{"topic", "body"}`` publishes an event; answers its ledger entry.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Awaitable, Callable, Collection, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import attrs
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crmphone.errors import (
    BadRequestError,
    CrmphoneError,
    NotFoundError,
    PermissionDeniedError,
    PlatformError,
)

from . import wire
from .conversation import CallDirection, Conversation, Participant, Phase
from .hub import Sandbox
from .presence import Publication
from .world import Agent, Channel, IdSource, OAuthError, Token

__all__ = ["create_app"]

ApiHandler = Callable[[Request, Token], Awaitable[Response]]

MAX_PAGE_SIZE = 500
# Genesys caps the ids one GET /api/v2/users may name.
MAX_IDS_PER_REQUEST = 100
"""Largest ``pageSize`` ``GET /api/v2/users`` accepts, as on Genesys Cloud."""

DETAIL_QUERY_MAX_PAGE_SIZE = 100
"""Largest ``paging.pageSize`` the conversation detail query accepts, as on Genesys Cloud."""

DETAIL_QUERY_PERMISSION = "analytics:conversationDetail:view"
"""The permission a user token needs for the conversation detail query (an OAuth client's
client-credentials token is taken to hold it: its role is the integration's to choose)."""

# Genesys's documented interval limits for detail queries: seven days without any filter, 31 with.
_MAX_SPAN_UNFILTERED = timedelta(days=7)
_MAX_SPAN_FILTERED = timedelta(days=31)

_DEFAULT_CODES = {
    400: "bad.request",
    401: "bad.credentials",
    403: "missing.permissions",
    404: "not.found",
    405: "method.not.allowed",
    429: "too.many.requests",
}


def create_app(sandbox: Sandbox) -> Starlette:
    """The ASGI application serving ``sandbox`` (run it with the sandbox's server)."""
    return _SandboxApp(sandbox).build()


class _SandboxApp:
    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.world = sandbox.world

    def build(self) -> Starlette:
        api = self._api
        channel_path = "/api/v2/notifications/channels/{channel_id}"
        call_path = "/api/v2/conversations/calls/{conversation_id}"
        details_path = "/api/v2/analytics/conversations/details/query"
        presence_path = "/api/v2/users/{user_id}/presences/{source}"
        routing_path = "/api/v2/users/{user_id}/routingstatus"
        routes = [
            Route("/oauth/token", self.token, methods=["POST"]),
            Route("/oauth/authorize", self.authorize, methods=["GET"]),
            Route("/api/v2/notifications/channels", api(self.list_channels), methods=["GET"]),
            Route("/api/v2/notifications/channels", api(self.create_channel), methods=["POST"]),
            Route(channel_path, api(self.head_channel), methods=["HEAD"]),
            Route(
                channel_path + "/subscriptions",
                api(self.subscriptions),
                methods=["GET", "POST", "PUT", "DELETE"],
            ),
            Route("/api/v2/users", api(self.users), methods=["GET"]),
            Route("/api/v2/users/me", api(self.me), methods=["GET"]),
            Route("/api/v2/users/{user_id}", api(self.user), methods=["GET"]),
            Route("/api/v2/stations/{station_id}", api(self.station), methods=["GET"]),
            Route("/api/v2/presence/definitions", api(self.presence_definitions), methods=["GET"]),
            # The older path, deprecated by Genesys but still served (older SDKs call it).
            Route("/api/v2/presencedefinitions", api(self.presence_definitions), methods=["GET"]),
            Route(presence_path, api(self.get_presence), methods=["GET"]),
            Route(presence_path, api(self.patch_presence), methods=["PATCH"]),
            Route(routing_path, api(self.get_routing_status), methods=["GET"]),
            Route(routing_path, api(self.put_routing_status), methods=["PUT"]),
            Route("/api/v2/conversations/calls", api(self.place_call), methods=["POST"]),
            Route(call_path, api(self.get_call), methods=["GET"]),
            Route(
                call_path + "/participants/{participant_id}",
                api(self.patch_participant),
                methods=["PATCH"],
            ),
            Route(details_path, api(self.query_conversation_details), methods=["POST"]),
            WebSocketRoute("/channels/{channel_id}", self.sandbox.serve_socket),
            WebSocketRoute("/stream/channels/{channel_id}", self.sandbox.edge.signalling.serve),
            Route("/sandbox/state", self.admin_state, methods=["GET"]),
            Route("/sandbox/stats", self.admin_stats, methods=["GET"]),
            Route("/sandbox/faults", self.admin_fault, methods=["POST"]),
            Route("/sandbox/calls", self.admin_call, methods=["POST"]),
            Route("/sandbox/publish", self.admin_publish, methods=["POST"]),
        ]
        return Starlette(
            routes=routes,
            exception_handlers={HTTPException: self.http_exception},
            middleware=[Middleware(_CorrelationIds, ids=self.world.correlation_ids)],
        )

    # ------------------------------------------------------------------ plumbing

    def _api(self, handler: ApiHandler) -> Callable[[Request], Awaitable[Response]]:
        """Wrap an API handler: bearer token, rate limit, correlation id, error shape."""

        async def endpoint(request: Request) -> Response:
            context_id = self.world.correlation_ids.uuid()
            limit_headers: dict[str, str] = {}
            try:
                token = self.world.authenticate(request.headers.get("authorization"))
                usage = self.world.admit(token)
                if usage.allowed:
                    limit_headers = {
                        "inin-ratelimit-count": str(usage.count),
                        "inin-ratelimit-allowed": str(usage.allowed),
                        "inin-ratelimit-reset": str(usage.reset_after),
                    }
                self.world.counters["api_requests"] += 1
                response = await handler(request, token)
            except PlatformError as exc:
                response = self._error(exc, context_id, head=request.method == "HEAD")
            response.headers["ININ-Correlation-Id"] = context_id
            response.headers.update(limit_headers)
            return response

        return endpoint

    def _error(self, exc: PlatformError, context_id: str, *, head: bool = False) -> Response:
        status = exc.status or 500
        code = exc.code or _DEFAULT_CODES.get(status, "internal.server.error")
        headers = {"ININ-Correlation-Id": context_id}
        if exc.retry_after is not None:
            headers["Retry-After"] = str(math.ceil(exc.retry_after))
        if head:
            return Response(status_code=status, headers=headers)
        return JSONResponse(wire.error_body(status, code, str(exc), context_id), status, headers)

    async def http_exception(self, request: Request, exc: Exception) -> Response:
        """Unknown paths and methods answer in Genesys's error shape too."""
        assert isinstance(exc, HTTPException)
        context_id = self.world.correlation_ids.uuid()
        code = _DEFAULT_CODES.get(exc.status_code, "bad.request")
        message = f"{exc.detail}: {request.method} {request.url.path}"
        error = PlatformError(message, status=exc.status_code, code=code)
        return self._error(error, context_id, head=request.method == "HEAD")

    @staticmethod
    async def _json(request: Request) -> Any:
        raw = await request.body()
        try:
            return json.loads(raw) if raw else None
        except ValueError as exc:
            raise BadRequestError("The request body is not valid JSON.", status=400) from exc

    def _channel_json(self, request: Request, channel: Channel) -> dict[str, Any]:
        # Build the URI from the Host the client used, so it works behind any port or proxy.
        scheme = "wss" if request.url.scheme in ("https", "wss") else "ws"
        host = request.headers.get("host") or request.url.netloc
        return {
            "connectUri": f"{scheme}://{host}{channel.connect_path}",
            "id": channel.id,
            "expires": wire.iso_utc(channel.expires_wall),
        }

    # ------------------------------------------------------------------ OAuth

    async def token(self, request: Request) -> Response:
        """``POST /oauth/token``: client_credentials, authorization_code (PKCE), refresh_token."""
        form = {
            key: values[0]
            for key, values in parse_qs((await request.body()).decode("utf-8", "replace")).items()
        }
        client_id, client_secret = _basic_credentials(request.headers.get("authorization"))
        client_id = client_id or form.get("client_id")
        client_secret = client_secret if client_secret is not None else form.get("client_secret")
        try:
            token = self._grant(form, client_id, client_secret)
        except OAuthError as exc:
            return _oauth_error(exc)
        body: dict[str, Any] = {
            "access_token": token.value,
            "token_type": "bearer",
            "expires_in": _expires_in(self.sandbox.config.token_ttl),
        }
        if token.refresh_token is not None:
            body["refresh_token"] = token.refresh_token
        return JSONResponse(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})

    def _grant(self, form: dict[str, str], client_id: str | None, secret: str | None) -> Token:
        grant_type = form.get("grant_type")
        if grant_type == "client_credentials":
            return self.world.issue_client_credentials(client_id, secret)
        if grant_type == "authorization_code":
            return self.world.exchange_code(
                code=form.get("code"),
                redirect_uri=form.get("redirect_uri"),
                client_id=client_id,
                client_secret=secret,
                code_verifier=form.get("code_verifier"),
            )
        if grant_type == "refresh_token":
            return self.world.refresh(
                refresh_token=form.get("refresh_token"), client_id=client_id, client_secret=secret
            )
        raise OAuthError("unsupported_grant_type", f"Unsupported grant_type {grant_type!r}.")

    async def authorize(self, request: Request) -> Response:
        """``GET /oauth/authorize``: no login page; redirects at once with a code.

        ``sandbox_user=<agent id>`` picks the user (default: the first agent).
        """
        params = request.query_params
        try:
            code = self.world.authorize(
                client_id=params.get("client_id"),
                redirect_uri=params.get("redirect_uri"),
                response_type=params.get("response_type"),
                code_challenge=params.get("code_challenge"),
                code_challenge_method=params.get("code_challenge_method"),
                user_id=params.get("sandbox_user"),
            )
        except OAuthError as exc:
            return _oauth_error(exc)
        redirect_uri = str(params.get("redirect_uri"))
        query = {"code": code}
        if "state" in params:
            query["state"] = params["state"]
        parts = urlsplit(redirect_uri)
        joined = f"{parts.query}&{urlencode(query)}" if parts.query else urlencode(query)
        return RedirectResponse(urlunsplit(parts._replace(query=joined)), status_code=302)

    # ------------------------------------------------------------------ channels

    async def create_channel(self, request: Request, token: Token) -> Response:
        """``POST /api/v2/notifications/channels`` (``?connectionType=streaming``: signalling)."""
        connection_type = request.query_params.get("connectionType")
        if connection_type is not None and connection_type.lower() == "streaming":
            streaming = self.sandbox.edge.signalling.create_channel(token)
            scheme = "wss" if request.url.scheme in ("https", "wss") else "ws"
            host = request.headers.get("host") or request.url.netloc
            return JSONResponse(
                {
                    "connectUri": f"{scheme}://{host}{streaming.connect_path}",
                    "id": streaming.id,
                    "expires": wire.iso_utc(streaming.expires_wall),
                }
            )
        channel, closes = self.world.create_channel(token)
        self.sandbox.apply(closes)
        return JSONResponse(self._channel_json(request, channel))

    async def list_channels(self, request: Request, token: Token) -> Response:
        """``GET /api/v2/notifications/channels`` (``includechannels`` is accepted and ignored)."""
        channels = self.world.channels_of(token)
        return JSONResponse({"entities": [self._channel_json(request, c) for c in channels]})

    async def head_channel(self, request: Request, token: Token) -> Response:
        """``HEAD /api/v2/notifications/channels/{id}``: 200 when alive, else 404."""
        self.world.channel_of(token, request.path_params["channel_id"])
        return Response(status_code=200)

    async def subscriptions(self, request: Request, token: Token) -> Response:
        """``GET/POST/PUT/DELETE …/channels/{id}/subscriptions``."""
        channel_id = request.path_params["channel_id"]
        if request.method == "GET":
            topics = self.world.subscriptions(token, channel_id)
            return JSONResponse({"entities": [{"id": t, "state": "Permitted"} for t in topics]})
        if request.method == "DELETE":
            self.world.unsubscribe_all(token, channel_id)
            return Response(status_code=200)
        entries = _topic_entries(await self._json(request))
        ignore_errors = request.query_params.get("ignoreErrors", "false").lower() == "true"
        replace = request.method == "PUT"
        kept = [] if replace else self.world.subscriptions(token, channel_id)
        verdicts = self.world.subscribe(
            token, channel_id, entries, replace=replace, ignore_errors=ignore_errors
        )
        # The answer lists the channel's topics after the call (POST: the ones it already had
        # first), plus the rejected ones when ignoreErrors let the request through.
        judged = {verdict.topic for verdict in verdicts}
        entities: list[dict[str, object]] = [
            {"id": topic, "state": "Permitted"} for topic in kept if topic not in judged
        ]
        entities += [verdict.to_genesys() for verdict in verdicts]
        return JSONResponse({"entities": entities})

    # ------------------------------------------------------------------ directory

    async def users(self, request: Request, token: Token) -> Response:
        """``GET /api/v2/users``: paged (``pageSize`` default 25, ``pageNumber`` from 1); ``id``
        (comma-separated or repeated, at most 100) keeps those users; ``expand`` may name
        ``presence``, ``routingStatus`` and ``station``."""
        page_size = _int_param(request, "pageSize", 25, 1, MAX_PAGE_SIZE)
        page_number = _int_param(request, "pageNumber", 1, 1, None)
        wanted = _listed(request, "id")
        if len(wanted) > MAX_IDS_PER_REQUEST:
            raise BadRequestError(
                f"At most {MAX_IDS_PER_REQUEST} ids may be requested at once.", status=400
            )
        agents = self.world.agents
        if wanted:
            agents = tuple(agent for agent in agents if agent.id in wanted)
        expand = _listed(request, "expand")
        start = (page_number - 1) * page_size
        page = agents[start : start + page_size]
        return JSONResponse(
            {
                "entities": [self._user_with(agent, expand) for agent in page],
                "pageSize": page_size,
                "pageNumber": page_number,
                "total": len(agents),
                "pageCount": math.ceil(len(agents) / page_size),
            }
        )

    def _user_with(self, agent: Agent, expand: Collection[str]) -> dict[str, Any]:
        body = _user_json(agent, station="station" in expand)
        if "presence" in expand:
            body["presence"] = self.world.presence.presence_json(agent.id)
        if "routingStatus" in expand:
            body["routingStatus"] = self.world.presence.routing_json(agent.id)
        return body

    async def me(self, request: Request, token: Token) -> Response:
        """``GET /api/v2/users/me`` (user tokens only).

        ``expand=station`` adds station ids, ``expand=authorization`` the user's permissions.
        """
        agent = self.world.require_user(token)
        expand = _listed(request, "expand")
        body = self._user_with(agent, expand)
        if "authorization" in expand:
            body["authorization"] = {
                "roles": [],
                "unusedRoles": [],
                "permissions": list(self.world.permissions(agent.id)),
                "permissionPolicies": [],
            }
        return JSONResponse(body)

    async def user(self, request: Request, token: Token) -> Response:
        """``GET /api/v2/users/{id}``."""
        agent = self.world.agent(request.path_params["user_id"])
        return JSONResponse(_user_json(agent))

    async def presence_definitions(self, request: Request, token: Token) -> Response:
        """``GET /api/v2/presence/definitions``: every presence agents can choose, unpaged
        (the deprecated ``/api/v2/presencedefinitions`` answers the same as one page)."""
        legacy = request.url.path.endswith("/presencedefinitions")
        entities = [
            definition.to_json(camel_case=not legacy)
            for definition in self.world.presence.definitions()
        ]
        body: dict[str, Any] = {"entities": entities, "total": len(entities)}
        if legacy:
            body |= {"pageSize": max(len(entities), 25), "pageNumber": 1, "pageCount": 1}
        return JSONResponse(body)

    async def get_presence(self, request: Request, token: Token) -> Response:
        """``GET /api/v2/users/{id}/presences/{source}``."""
        agent = self.world.agent(request.path_params["user_id"])
        self._presence_source(request)
        return JSONResponse(self.world.presence.presence_json(agent.id))

    async def patch_presence(self, request: Request, token: Token) -> Response:
        """``PATCH /api/v2/users/{id}/presences/{source}``: choose a presence; its
        ``presence`` (and any ``routingStatus``) event goes out on the agent's topics."""
        agent = self.world.require_self_or_client(token, request.path_params["user_id"])
        self._presence_source(request)
        body = await self._json(request)
        definition = body.get("presenceDefinition") if isinstance(body, dict) else None
        definition_id = definition.get("id") if isinstance(definition, dict) else None
        if not isinstance(definition_id, str):
            raise BadRequestError("presenceDefinition.id is required.", status=400)
        message = body.get("message") if isinstance(body, dict) else None
        if message is not None and not isinstance(message, str):
            raise BadRequestError("message must be a string.", status=400)
        self._publish_all(
            self.world.presence.set_presence(
                agent.id, definition_id, message, self.sandbox.clock.wall()
            )
        )
        return JSONResponse(self.world.presence.presence_json(agent.id))

    async def get_routing_status(self, request: Request, token: Token) -> Response:
        """``GET /api/v2/users/{id}/routingstatus``."""
        agent = self.world.agent(request.path_params["user_id"])
        return JSONResponse(self.world.presence.routing_json(agent.id))

    async def put_routing_status(self, request: Request, token: Token) -> Response:
        """``PUT /api/v2/users/{id}/routingstatus``: go on queue (``IDLE``) or off it."""
        agent = self.world.require_self_or_client(token, request.path_params["user_id"])
        body = await self._json(request)
        status = body.get("status") if isinstance(body, dict) else None
        if not isinstance(status, str):
            raise BadRequestError("status is required.", status=400)
        self._publish_all(
            self.world.presence.set_routing_status(agent.id, status, self.sandbox.clock.wall())
        )
        return JSONResponse(self.world.presence.routing_json(agent.id))

    @staticmethod
    def _presence_source(request: Request) -> None:
        # Genesys names the platform's own presence source "purecloud"; third-party sources
        # (Teams, Zoom) have ids the sandbox does not have.
        if request.path_params["source"].lower() != "purecloud":
            raise NotFoundError(
                f"Presence source {request.path_params['source']!r} not found.", status=404
            )

    def _publish_all(self, publications: list[Publication]) -> None:
        for publication in publications:
            self.sandbox.publish(publication.topic, publication.body)

    async def station(self, request: Request, token: Token) -> Response:
        """``GET /api/v2/stations/{id}``: a WebRTC station and its persistent-connection setting."""
        station = self.world.station(request.path_params["station_id"])
        return JSONResponse(
            {
                "id": station.id,
                "name": station.name,
                "status": "ASSOCIATED",
                "userId": station.user_id,
                "webRtcUserId": station.user_id,
                "type": station.type,
                "webRtcPersistentEnabled": station.web_rtc_persistent_enabled,
                "webRtcForceTurn": False,
                "webRtcCallAppearances": 100,
                "selfUri": f"/api/v2/stations/{station.id}",
            }
        )

    # ------------------------------------------------------------------ conversations

    async def get_call(self, request: Request, token: Token) -> Response:
        """``GET /api/v2/conversations/calls/{id}``: the body of the latest call event."""
        conversation = self.sandbox.calls.get(request.path_params["conversation_id"])
        body = dict(conversation.snapshot().calls_body)
        body["selfUri"] = f"/api/v2/conversations/calls/{conversation.id}"
        return JSONResponse(body)

    async def patch_participant(self, request: Request, token: Token) -> Response:
        """``PATCH …/participants/{id}``: ``state``, ``muted``, ``held``; 202 with no body."""
        body = await self._json(request)
        if not isinstance(body, dict):
            raise BadRequestError("The body must be a JSON object.", status=400)
        state, muted, held = body.get("state"), body.get("muted"), body.get("held")
        if state is not None and not isinstance(state, str):
            raise BadRequestError("state must be a string.", status=400)
        for name, value in (("muted", muted), ("held", held)):
            if value is not None and not isinstance(value, bool):
                raise BadRequestError(f"{name} must be true or false.", status=400)
        self.sandbox.calls.patch_participant(
            request.path_params["conversation_id"],
            request.path_params["participant_id"],
            state=state,
            muted=muted,
            held=held,
        )
        return Response(status_code=202)

    async def place_call(self, request: Request, token: Token) -> Response:
        """``POST /api/v2/conversations/calls``: the token's user dials ``phoneNumber``."""
        agent = self.world.require_user(token)
        body = await self._json(request)
        if not isinstance(body, dict) or not isinstance(body.get("phoneNumber"), str):
            raise BadRequestError("phoneNumber is required.", status=400)
        queue_id = body.get("callFromQueueId")
        if queue_id is not None and not isinstance(queue_id, str):
            raise BadRequestError("callFromQueueId must be a string.", status=400)
        conversation_id = await self.sandbox.calls.place_outbound(
            agent.id, body["phoneNumber"], queue_id=queue_id
        )
        return JSONResponse(
            {"id": conversation_id, "selfUri": f"/api/v2/conversations/calls/{conversation_id}"}
        )

    async def query_conversation_details(self, request: Request, token: Token) -> Response:
        """``POST /api/v2/analytics/conversations/details/query``: calls active in an interval.

        Selects the calls the sandbox still holds whose ``[start, end or now]`` overlaps
        ``interval`` (Genesys searches only conversations that started on a day the interval
        touches; the sandbox keeps no such day index and does not narrow it further), keeps those
        that satisfy every filter, orders them by ``orderBy`` and answers one page:
        ``{"conversations": [...], "totalHits": n}``, without ``conversations`` when there are
        none, as Genesys does. A malformed body or one the sandbox cannot answer is a 400 naming
        the field; a user token without ``analytics:conversationDetail:view`` a 403.
        """
        if token.user_id is not None and DETAIL_QUERY_PERMISSION not in self.world.permissions(
            token.user_id
        ):
            raise PermissionDeniedError(
                f"Missing permission: {DETAIL_QUERY_PERMISSION} is required to query "
                "conversation details.",
                status=403,
                code="missing.permissions",
            )
        query = _DetailQuery.from_genesys(await self._json(request))
        now = self.sandbox.clock.wall()
        selected = [
            (conversation, _conversation_end(conversation))
            for conversation in self.sandbox.calls.conversations
            if query.selects(conversation, now)
        ]

        def sort_key(item: tuple[Conversation, datetime | None]) -> tuple[datetime, str]:
            conversation, end = item
            if query.order_by == "conversationEnd":
                return (end or now, conversation.id)
            return (_conversation_start(conversation), conversation.id)

        selected.sort(key=sort_key, reverse=query.descending)
        first = (query.page_number - 1) * query.page_size
        page = selected[first : first + query.page_size]
        body: dict[str, Any] = {"totalHits": len(selected)}
        if page:
            body["conversations"] = [_conversation_detail_json(c, end) for c, end in page]
        return JSONResponse(body)

    # ------------------------------------------------------------------ admin

    async def admin_state(self, request: Request) -> Response:
        """``GET /sandbox/state``."""
        return JSONResponse(self.sandbox.state())

    async def admin_stats(self, request: Request) -> Response:
        """``GET /sandbox/stats``: the media edge's statistics."""
        return JSONResponse(self.sandbox.edge.stats())

    async def admin_fault(self, request: Request) -> Response:
        """``POST /sandbox/faults``: apply one fault."""
        return await self._admin(request, self._apply_fault)

    async def admin_call(self, request: Request) -> Response:
        """``POST /sandbox/calls``: place an inbound call."""
        return await self._admin(request, self._place_inbound)

    async def admin_publish(self, request: Request) -> Response:
        """``POST /sandbox/publish``: publish one topic event."""
        return await self._admin(request, self._publish)

    async def _admin(
        self, request: Request, action: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
    ) -> Response:
        context_id = self.world.correlation_ids.uuid()
        try:
            body = await self._json(request)
            if not isinstance(body, dict):
                raise BadRequestError("The body must be a JSON object.", status=400)
            return JSONResponse(await action(body))
        except PlatformError as exc:
            return self._error(exc, context_id)
        except CrmphoneError as exc:  # local misuse, e.g. hanging up a call that has ended
            return self._error(PlatformError(str(exc), status=400), context_id)

    async def _apply_fault(self, body: dict[str, Any]) -> dict[str, Any]:
        return {"applied": self.sandbox.faults.apply(body).to_json()}

    async def _place_inbound(self, body: dict[str, Any]) -> dict[str, Any]:
        agent_id = body.get("agentId") or self.sandbox.agents[0].id
        conversation_id = await self.sandbox.calls.place_inbound(
            str(agent_id),
            ani=body.get("ani"),
            dnis=str(body.get("dnis") or "+18005550100"),
            queue_id=body.get("queueId"),
            auto=bool(body.get("auto", True)),
            auto_answer=bool(body.get("autoAnswer", False)),
        )
        return {"conversationId": conversation_id}

    async def _publish(self, body: dict[str, Any]) -> dict[str, Any]:
        topic = body.get("topic")
        if not isinstance(topic, str) or not topic:
            raise BadRequestError("topic is required.", status=400)
        emitted = self.sandbox.publish(topic, body.get("body"))
        return {"correlationId": emitted.correlation_id, "channelIds": list(emitted.channel_ids)}


class _CorrelationIds:
    """ASGI middleware: every HTTP response carries ``ININ-Correlation-Id`` (API handlers set
    their own, equal to the error body's ``contextId``; OAuth, admin and router answers get one
    here)."""

    def __init__(self, app: ASGIApp, ids: IdSource) -> None:
        self.app = app
        self.ids = ids

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if not any(name.lower() == b"inin-correlation-id" for name, _ in headers):
                    headers.append((b"inin-correlation-id", self.ids.uuid().encode("ascii")))
                    message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_id)


def _basic_credentials(header: str | None) -> tuple[str | None, str | None]:
    scheme, _, encoded = (header or "").partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None, None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None, None
    client_id, sep, secret = decoded.partition(":")
    return (client_id, secret) if sep else (None, None)


def _oauth_error(exc: OAuthError) -> Response:
    body = {
        "error": exc.error,
        "description": exc.description,
        "error_description": exc.description,
    }
    return JSONResponse(body, status_code=exc.status or 400, headers={"Cache-Control": "no-store"})


def _expires_in(ttl: float) -> int | float:
    # Production TTLs are whole seconds and go out as integers; tests' sub-second TTLs stay exact.
    return int(ttl) if float(ttl).is_integer() else round(ttl, 3)


def _topic_entries(body: Any) -> list[str]:
    if not isinstance(body, list):
        raise BadRequestError('The body must be a JSON array of {"id": topic} objects.', status=400)
    entries = []
    for item in body:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            raise BadRequestError(
                'Each subscription must be an object with a string "id".', status=400
            )
        entries.append(item["id"])
    return entries


def _int_param(request: Request, name: str, default: int, low: int, high: int | None) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequestError(f"{name} must be an integer.", status=400) from None
    if value < low or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise BadRequestError(f"{name} must be {bounds}.", status=400)
    return value


def _listed(request: Request, name: str) -> dict[str, None]:
    """A query parameter given comma-separated, repeated, or both, as an ordered set."""
    return {
        item.strip(): None
        for value in request.query_params.getlist(name)
        for item in value.split(",")
        if item.strip()
    }


def _user_json(agent: Agent, *, station: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": agent.id,
        "name": agent.name,
        "email": agent.email,
        "username": agent.email,
        "state": "active",
        "version": 1,
        "selfUri": f"/api/v2/users/{agent.id}",
    }
    if station:
        ref = {"id": agent.station_id, "associatedUser": {"id": agent.id}}
        body["station"] = {
            "associatedStation": ref,
            "effectiveStation": ref,
            "defaultStation": ref,
            "lastAssociatedStation": ref,
        }
    return body


# ---------------------------------------------------------------------- conversation detail query

# The dimensions the sandbox can filter on, and where each one's value comes from.
_SEGMENT_DIMENSIONS = ("direction", "mediaType", "purpose", "queueId", "sessionId", "userId")
_CONVERSATION_DIMENSIONS = ("conversationId", "originatingDirection")
_OPERATORS = ("matches", "exists", "notExists")
_UNSUPPORTED_PARTS = ("aggregations", "evaluationFilters", "surveyFilters", "resolutionFilters")


def _bad_query(message: str) -> BadRequestError:
    return BadRequestError(message, status=400, code="bad.request")


@attrs.frozen
class _Predicate:
    """One ``{"type": "dimension", "dimension", "operator", "value"}`` of a detail query."""

    dimension: str
    operator: str
    value: str | None

    @classmethod
    def from_genesys(cls, data: Any, where: str, dimensions: tuple[str, ...]) -> _Predicate:
        if not isinstance(data, dict):
            raise _bad_query(f"{where} must be an object.")
        kind = data.get("type", "dimension")
        if kind != "dimension":
            raise _bad_query(
                f'{where}.type {kind!r} is not supported by the sandbox; use "dimension".'
            )
        dimension = data.get("dimension")
        if dimension not in dimensions:
            raise _bad_query(
                f"{where}.dimension {dimension!r} is not supported here by the sandbox; "
                f"use one of {', '.join(dimensions)}."
            )
        operator = data.get("operator", "matches")
        if operator not in _OPERATORS:
            raise _bad_query(f"{where}.operator must be one of {', '.join(_OPERATORS)}.")
        value = data.get("value")
        if operator == "matches" and (not isinstance(value, str) or not value):
            raise _bad_query(f"{where}.value must be a non-empty string for operator matches.")
        return cls(dimension, operator, value if operator == "matches" else None)

    def holds(self, fields: Mapping[str, str | None]) -> bool:
        """Whether the values in ``fields`` satisfy the predicate (ids and enums ignore case)."""
        actual = fields.get(self.dimension)
        if self.operator == "exists":
            return actual is not None
        if self.operator == "notExists":
            return actual is None
        return (
            actual is not None
            and self.value is not None
            and (actual.casefold() == self.value.casefold())
        )


@attrs.frozen
class _Filter:
    """A filter (or one of its clauses): predicates and clauses combined with "and" or "or"."""

    type: str
    predicates: tuple[_Predicate, ...]
    clauses: tuple[_Filter, ...]

    @classmethod
    def from_genesys(
        cls, data: Any, where: str, dimensions: tuple[str, ...], *, nested: bool = False
    ) -> _Filter:
        if not isinstance(data, dict):
            raise _bad_query(f"{where} must be an object.")
        kind = data.get("type")
        if kind not in ("and", "or"):
            raise _bad_query(f'{where}.type must be "and" or "or".')
        predicates = _list_of(data, "predicates", where)
        clauses = [] if nested else _list_of(data, "clauses", where)
        if not predicates and not clauses:
            raise _bad_query(f"{where} needs at least one predicate.")
        return cls(
            kind,
            tuple(
                _Predicate.from_genesys(item, f"{where}.predicates[{i}]", dimensions)
                for i, item in enumerate(predicates)
            ),
            tuple(
                cls.from_genesys(item, f"{where}.clauses[{i}]", dimensions, nested=True)
                for i, item in enumerate(clauses)
            ),
        )

    def holds(self, fields: Mapping[str, str | None]) -> bool:
        """Whether ``fields`` satisfy the filter."""
        results = [p.holds(fields) for p in self.predicates]
        results += [c.holds(fields) for c in self.clauses]
        return all(results) if self.type == "and" else any(results)


@attrs.frozen
class _DetailQuery:
    """The body of a conversation detail query, validated."""

    start: datetime
    end: datetime
    descending: bool
    order_by: str
    page_size: int
    page_number: int
    conversation_filters: tuple[_Filter, ...]
    segment_filters: tuple[_Filter, ...]

    @classmethod
    def from_genesys(cls, body: Any) -> _DetailQuery:
        """Validate ``body``; BadRequestError (400) naming the first field that is wrong."""
        if not isinstance(body, dict):
            raise _bad_query("The body must be a JSON object.")
        for part in _UNSUPPORTED_PARTS:
            if body.get(part):
                raise _bad_query(f"{part} is not supported by the sandbox.")
        conversation_filters = tuple(
            _Filter.from_genesys(item, f"conversationFilters[{i}]", _CONVERSATION_DIMENSIONS)
            for i, item in enumerate(_list_of(body, "conversationFilters", "the query"))
        )
        segment_filters = tuple(
            _Filter.from_genesys(item, f"segmentFilters[{i}]", _SEGMENT_DIMENSIONS)
            for i, item in enumerate(_list_of(body, "segmentFilters", "the query"))
        )
        start, end = _interval(body.get("interval"))
        limit = (
            _MAX_SPAN_FILTERED if conversation_filters or segment_filters else _MAX_SPAN_UNFILTERED
        )
        if end - start > limit:
            raise _bad_query(
                f"interval spans {(end - start) / timedelta(days=1):.1f} days; a detail query "
                "may span at most 7 days without filters and 31 days with them."
            )
        order = body.get("order", "asc")
        if order not in ("asc", "desc", "unordered"):
            raise _bad_query('order must be "asc", "desc" or "unordered".')
        order_by = body.get("orderBy", "conversationStart")
        if order_by not in ("conversationStart", "conversationEnd"):
            raise _bad_query(
                f"orderBy {order_by!r} is not supported by the sandbox; use conversationStart "
                "or conversationEnd."
            )
        paging = body.get("paging")
        if paging is None:
            paging = {}
        if not isinstance(paging, dict):
            raise _bad_query("paging must be an object with pageSize and pageNumber.")
        return cls(
            start=start,
            end=end,
            descending=order == "desc",
            order_by=order_by,
            page_size=_paging_int(paging, "pageSize", 25, DETAIL_QUERY_MAX_PAGE_SIZE),
            page_number=_paging_int(paging, "pageNumber", 1, None),
            conversation_filters=conversation_filters,
            segment_filters=segment_filters,
        )

    def selects(self, conversation: Conversation, now: datetime) -> bool:
        """Whether ``conversation`` was active during the interval and passes every filter."""
        start = _conversation_start(conversation)
        end = _conversation_end(conversation) or now
        if not (start < self.end and end >= self.start):
            return False
        fields: dict[str, str | None] = {
            "conversationId": conversation.id,
            "originatingDirection": conversation.direction.value,
        }
        if not all(f.holds(fields) for f in self.conversation_filters):
            return False
        # A segment filter holds when one leg satisfies it (the sandbox's legs have one
        # voice session each, so a leg stands for its segments).
        legs = [_segment_fields(p) for p in conversation.participants]
        return all(any(f.holds(leg) for leg in legs) for f in self.segment_filters)


def _list_of(data: Mapping[str, Any], key: str, where: str) -> list[Any]:
    value = data.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise _bad_query(f"{key} of {where} must be an array.")
    return value


def _interval(value: Any) -> tuple[datetime, datetime]:
    example = "2026-01-01T00:00:00.000Z/2026-01-02T00:00:00.000Z"
    if not isinstance(value, str) or value.count("/") != 1:
        raise _bad_query(f'interval is required: "start/end" in ISO-8601, e.g. "{example}".')
    moments = []
    for text in value.split("/"):
        try:
            moment = datetime.fromisoformat(text.strip())
        except ValueError:
            raise _bad_query(
                f'interval {value!r} is not "start/end" in ISO-8601, e.g. "{example}".'
            ) from None
        moments.append(moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment)
    start, end = moments
    if end <= start:
        raise _bad_query(f"interval {value!r} must end after it starts.")
    return start, end


def _paging_int(paging: Mapping[str, Any], name: str, default: int, high: int | None) -> int:
    value = paging.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        bounds = f"from 1 to {high}" if high is not None else "of at least 1"
        raise _bad_query(f"paging.{name} must be an integer {bounds}.")
    if high is not None and value > high:
        raise _bad_query(f"paging.{name} must be an integer from 1 to {high}.")
    return value


def _conversation_start(conversation: Conversation) -> datetime:
    return min(p.start_time for p in conversation.participants)


def _conversation_end(conversation: Conversation) -> datetime | None:
    """When the call ended, wrap-up included (None while any part of it goes on)."""
    if conversation.phase is not Phase.CLOSED:
        return None
    ends = [p.end_time for p in conversation.participants if p.end_time is not None]
    ends += [p.wrapup.end_time for p in conversation.participants if p.wrapup is not None]
    return max(ends, default=_conversation_start(conversation))


def _segment_fields(participant: Participant) -> dict[str, str | None]:
    return {
        "direction": participant.direction.value,
        "mediaType": "voice",
        "purpose": participant.purpose,
        "queueId": participant.queue_id,
        "sessionId": participant.call_id,
        "userId": participant.user_id,
    }


def _conversation_detail_json(conversation: Conversation, end: datetime | None) -> dict[str, Any]:
    """One conversation as the detail query lists it (fields that would be null left out)."""
    body: dict[str, Any] = {
        "conversationId": conversation.id,
        "conversationStart": wire.iso_utc(_conversation_start(conversation)),
        "originatingDirection": conversation.direction.value,
        "participants": [_participant_detail_json(p) for p in conversation.participants],
    }
    if end is not None:
        body["conversationEnd"] = wire.iso_utc(end)
    return body


def _participant_detail_json(participant: Participant) -> dict[str, Any]:
    session: dict[str, Any] = {
        "mediaType": "voice",
        "sessionId": participant.call_id,
        "direction": participant.direction.value,
        "ani": participant.ani,
        "dnis": participant.dnis,
        "provider": "Edge",
        "segments": _segments(participant),
    }
    if participant.peer_call_id is not None:
        session["peerId"] = participant.peer_call_id
    body: dict[str, Any] = {
        "participantId": participant.id,
        "participantName": participant.name,
        "purpose": participant.purpose,
        "sessions": [session],
    }
    if participant.user_id is not None:
        body["userId"] = participant.user_id
    return body


def _segments(participant: Participant) -> list[dict[str, Any]]:
    """A leg's timeline as analytics segments: ringing, talking, after-call work."""
    spans: list[tuple[str, datetime, datetime | None]] = []
    if participant.user_id is not None:
        ringing = "alert" if participant.direction is CallDirection.INBOUND else "dialing"
        answered = participant.connected_time
        spans.append((ringing, participant.start_time, answered or participant.end_time))
        if answered is not None:
            spans.append(("interact", answered, participant.end_time))
    else:
        spans.append(("interact", participant.start_time, participant.end_time))
    segments = []
    for segment_type, start, end in spans:
        segment: dict[str, Any] = {"segmentStart": wire.iso_utc(start), "segmentType": segment_type}
        if end is not None:
            segment["segmentEnd"] = wire.iso_utc(end)
        if participant.queue_id is not None:
            segment["queueId"] = participant.queue_id
        segments.append(segment)
    if participant.end_time is not None and participant.disconnect_type is not None:
        segments[-1]["disconnectType"] = participant.disconnect_type
    if participant.wrapup is not None and participant.end_time is not None:
        segments.append(
            {
                "segmentStart": wire.iso_utc(participant.end_time),
                "segmentEnd": wire.iso_utc(participant.wrapup.end_time),
                "segmentType": "wrapup",
                "wrapUpCode": participant.wrapup.code,
                "wrapUpNote": participant.wrapup.notes,
            }
        )
    return segments
