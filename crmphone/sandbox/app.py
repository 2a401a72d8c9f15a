"""The sandbox's HTTP face: Genesys Cloud's REST paths, the channel WebSocket, admin routes.

One Starlette application serves login (``/oauth/*``), the API (``/api/v2/*``), the notification
WebSockets (``/channels/{id}``), the signalling WebSockets of softphones (``/stream/channels/{id}``,
see :mod:`~crmphone.sandbox.signalling`) and the sandbox's own controls (``/sandbox/*``, no token
needed; the server binds to loopback). Handlers are thin: they parse, call the
:class:`~crmphone.sandbox.world.World` or the :class:`~crmphone.sandbox.hub.Sandbox`, and shape
JSON. Every ``/api/v2`` answer carries ``ININ-Correlation-Id``; every error body has Genesys's
``message``, ``code``, ``status``, ``contextId``.

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
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crmphone.errors import BadRequestError, CrmphoneError, PlatformError

from . import wire
from .hub import Sandbox
from .world import Agent, Channel, IdSource, OAuthError, Token

__all__ = ["create_app"]

ApiHandler = Callable[[Request, Token], Awaitable[Response]]

MAX_PAGE_SIZE = 500
"""Largest ``pageSize`` ``GET /api/v2/users`` accepts, as on Genesys Cloud."""

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
            Route("/api/v2/conversations/calls", api(self.place_call), methods=["POST"]),
            Route(call_path, api(self.get_call), methods=["GET"]),
            Route(
                call_path + "/participants/{participant_id}",
                api(self.patch_participant),
                methods=["PATCH"],
            ),
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
        """``GET /api/v2/users``: paged (``pageSize`` default 25, ``pageNumber`` from 1)."""
        page_size = _int_param(request, "pageSize", 25, 1, MAX_PAGE_SIZE)
        page_number = _int_param(request, "pageNumber", 1, 1, None)
        agents = self.world.agents
        start = (page_number - 1) * page_size
        page = agents[start : start + page_size]
        return JSONResponse(
            {
                "entities": [_user_json(agent) for agent in page],
                "pageSize": page_size,
                "pageNumber": page_number,
                "total": len(agents),
                "pageCount": math.ceil(len(agents) / page_size),
            }
        )

    async def me(self, request: Request, token: Token) -> Response:
        """``GET /api/v2/users/me`` (user tokens only).

        ``expand=station`` adds station ids, ``expand=authorization`` the user's permissions.
        """
        agent = self.world.require_user(token)
        expand = {
            item.strip()
            for value in request.query_params.getlist("expand")
            for item in value.split(",")
        }
        body = _user_json(agent, station="station" in expand)
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
