"""The bridge on a real socket: CRM pages over HTTP, events and commands over one WebSocket.

``async with BridgeServer(settings, handler) as bridge:`` binds (127.0.0.1 unless told otherwise),
serves on the running loop, and on exit closes every page's socket (1001) and stops.

* ``GET /healthz`` — ``{"status": "ok", "protocol", "clients"}``.
* ``GET <page>`` — each file of :attr:`BridgeSettings.pages` at its own URL path, with a strict
  Content-Security-Policy; nothing else is served (no directory listing: a URL never becomes a
  file path, so ``..`` cannot lead anywhere).
* ``/ws`` — the WebSocket of :mod:`crmphone.bridge.protocol`.

A page's WebSocket, as a table:

=================  =======================================  =====================================  ===============
state              what happens                             the bridge                             next state
=================  =======================================  =====================================  ===============
handshake          ``Origin`` not allowed                   HTTP 403                               gone
handshake          ``Origin`` allowed (or absent, if so     accepts                                awaiting hello
                   configured)
awaiting hello     a hello with the token, in time          ``welcome``                            authenticated
awaiting hello     anything else, or nothing in time        close 4401 (reason without the token)  gone
authenticated      a command                                the handler's result, same ``id``      authenticated
authenticated      a malformed frame                        a failed result                        authenticated
authenticated      its send queue overflows (a stalled      close 1013; abort the TCP connection   gone
                   page)                                    if even that does not leave in time
authenticated      :meth:`BridgeServer.stop`                close 1001 behind the queued messages  gone
=================  =======================================  =====================================  ===============

:meth:`BridgeServer.publish` never waits: it queues one encoded frame per authenticated page. Each
page has its own bounded queue and sender, so a page that stops reading costs its own queue and
is then dropped; the others never wait for it. Commands run concurrently (a slow ``dial`` does not
hold up a ``hangup``), at most :attr:`BridgeSettings.max_pending_commands` per page.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Protocol, Self, cast

import attrs
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.http11 import Request as HandshakeRequest

from crmphone._serving import ServedApp, url_host
from crmphone.clock import Clock, SystemClock
from crmphone.errors import ConfigError, CrmphoneError, InvalidStateError, UsageError
from crmphone.events import Event

from .protocol import (
    PROTOCOL,
    Command,
    CommandError,
    CommandRequest,
    ErrorCode,
    Hello,
    encode,
    error_message,
    event_message,
    parse_command,
    result_message,
    welcome_message,
)
from .security import (
    CLOSE_UNAUTHENTICATED,
    DEFAULT_ALLOWED_ORIGINS,
    BridgeToken,
    OriginPattern,
    OriginPolicy,
    UnauthenticatedError,
    authenticate,
    check_script_source,
    content_security_policy,
)

__all__ = [
    "CLOSE_GOING_AWAY",
    "CLOSE_TOO_SLOW",
    "HEALTH_PATH",
    "WEBSOCKET_PATH",
    "BridgeServer",
    "BridgeSettings",
    "BridgeStats",
    "CommandHandler",
    "ConnectedClient",
]

logger = logging.getLogger(__name__)

CLOSE_TOO_SLOW: Final = 1013
"""Close code for a page that fell behind (its send queue overflowed): "try again later"."""

CLOSE_GOING_AWAY: Final = 1001
"""Close code when the bridge stops."""

HEALTH_PATH: Final = "/healthz"
WEBSOCKET_PATH: Final = "/ws"

# Frames above 64 KiB get a `too_large` result and the connection stays up; this hard limit, far
# above it, only keeps a hostile frame from costing unbounded memory (the socket closes with 1009).
_WS_MAX_SIZE: Final = 1024 * 1024
_TRANSPORT_KEY: Final = "crmphone.bridge.transport"
_PAGE_PATH_RE: Final = re.compile(r"(?:/[A-Za-z0-9._~-]+)+")
_MEDIA_TYPES: Final = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".woff2": "font/woff2",
}
_LOOPBACK_NAMES: Final = ("127.0.0.1", "localhost")


# ---------------------------------------------------------------------------------------------
# Values


@attrs.frozen
class ConnectedClient:
    """An authenticated page: the bridge's ``id`` for its session (the welcome's ``session``),
    the ``kind`` its hello named (``salesforce``, ``zendesk``, ``dashboard``…), its ``origin``
    (None for a non-browser client) and when it authenticated."""

    id: str
    kind: str
    origin: str | None
    connected_at: datetime


class CommandHandler(Protocol):
    """What carries out the pages' commands (the connector hands the bridge one).

    :meth:`handle` returns the result's ``data`` (JSON-ready). To refuse, raise
    :class:`~crmphone.bridge.protocol.CommandError` (a code of your own is fine) or any crmphone
    error (see :meth:`~crmphone.bridge.protocol.CommandError.from_refusal`); any other exception is
    logged and answered as ``internal``, and the page's connection stays up.
    """

    async def handle(self, command: Command, client: ConnectedClient) -> Mapping[str, Any]:
        """Carry out ``command`` from ``client``; return the result's data."""
        ...


@attrs.frozen
class BridgeStats:
    """What the bridge has seen since it started (a snapshot).

    ``sockets``: open WebSockets, authenticated or not; ``clients``: authenticated pages;
    ``refused_origins``: handshakes refused for their ``Origin``; ``refused_hellos``: sockets
    closed with 4401; ``dropped_slow``: pages closed with 1013; ``commands``: commands handed to
    the handler; ``failed_results``: failed results sent (malformed frames included);
    ``internal_errors``: handler failures that were not crmphone errors (bugs);
    ``published``: frames queued for pages by :meth:`BridgeServer.publish` (one per page);
    ``connected``: pages that authenticated since the bridge started.
    """

    sockets: int
    clients: int
    refused_origins: int
    refused_hellos: int
    dropped_slow: int
    commands: int
    failed_results: int
    internal_errors: int
    published: int = 0
    connected: int = 0


def _pages(
    value: Mapping[str, str | Path] | Iterable[tuple[str, str | Path]],
) -> tuple[tuple[str, Path], ...]:
    items = value.items() if isinstance(value, Mapping) else value
    pages: dict[str, Path] = {}
    for url_path, file in items:
        segments = url_path.split("/")[1:]
        if (
            not _PAGE_PATH_RE.fullmatch(url_path)
            or any(segment in (".", "..") for segment in segments)
            or url_path in (HEALTH_PATH, WEBSOCKET_PATH)
        ):
            raise ConfigError(
                f"{url_path!r} cannot be a page's URL path: write /name/file.html with letters, "
                f"digits and . _ ~ - (not . or .. segments, not {HEALTH_PATH} or {WEBSOCKET_PATH})",
                key="bridge.pages",
            )
        if url_path in pages:
            raise ConfigError(f"{url_path!r} is given twice", key="bridge.pages")
        pages[url_path] = Path(file)
    return tuple(sorted(pages.items()))


def _origins(values: Iterable[str | OriginPattern]) -> tuple[OriginPattern, ...]:
    return OriginPolicy(patterns=values).patterns


def _script_sources(values: Iterable[str]) -> tuple[str, ...]:
    if isinstance(values, str):
        raise ConfigError("a list of sources, not one string", key="bridge.csp_script_sources")
    return tuple(check_script_source(value) for value in values)


def _positive(_instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not value > 0:
        raise ConfigError(f"must be positive, not {value!r}", key=f"bridge.{attribute.name}")


def _port(_instance: object, _attribute: attrs.Attribute[Any], value: int) -> None:
    if not 0 <= value <= 65535:
        raise ConfigError(f"must be 0 (any free port) to 65535, not {value!r}", key="bridge.port")


def _optional_path(value: str | Path | None) -> Path | None:
    return None if value is None else Path(value)


@attrs.frozen(kw_only=True)
class BridgeSettings:
    """How the bridge listens and whom it lets in.

    ``host``/``port``: where it listens (127.0.0.1 by default: the pages run in the agent's own
    browser; port 0 picks a free one). ``token_path``: the file keeping the install's token (made
    on first start, mode 0600), or ``token`` itself: exactly one of the two. ``allowed_origins``:
    origin patterns whose pages may connect and frame the pages (the bridge's own origin always
    may). ``allow_missing_origin``: let in WebSocket handshakes without ``Origin`` (tools, tests;
    never browsers). ``hello_timeout``: seconds a page has for its hello. ``csp_script_sources``:
    extra script hosts for the pages (the Open CTI or ZAF library). ``pages``: URL path → file.
    ``send_queue``: messages that may wait for one page before it counts as stalled and is
    dropped. ``close_timeout``: seconds a close may take before the connection is cut.
    ``max_pending_commands``: commands of one page running at once (more are answered ``busy``).
    ``tls_cert_file``/``tls_key_file``: serve HTTPS and WSS with this certificate chain and key
    (PEM; both or neither). Salesforce loads an Open CTI page only over HTTPS.

    Invalid values raise :class:`~crmphone.errors.ConfigError` naming ``bridge.<setting>``.
    """

    host: str = "127.0.0.1"
    port: int = attrs.field(default=0, validator=_port)
    token: BridgeToken | None = None
    token_path: Path | None = attrs.field(default=None, converter=_optional_path)
    allowed_origins: tuple[OriginPattern, ...] = attrs.field(
        default=DEFAULT_ALLOWED_ORIGINS, converter=_origins
    )
    allow_missing_origin: bool = False
    hello_timeout: float = attrs.field(default=5.0, validator=_positive)
    csp_script_sources: tuple[str, ...] = attrs.field(default=(), converter=_script_sources)
    pages: tuple[tuple[str, Path], ...] = attrs.field(default=(), converter=_pages)
    send_queue: int = attrs.field(default=256, validator=_positive)
    close_timeout: float = attrs.field(default=2.0, validator=_positive)
    max_pending_commands: int = attrs.field(default=16, validator=_positive)
    tls_cert_file: Path | None = attrs.field(default=None, converter=_optional_path)
    tls_key_file: Path | None = attrs.field(default=None, converter=_optional_path)

    def __attrs_post_init__(self) -> None:
        if (self.token is None) == (self.token_path is None):
            raise ConfigError(
                "give exactly one of token_path (a file the bridge keeps its token in) and token",
                key="bridge.token_path",
            )
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ConfigError(
                "give both tls_cert_file and tls_key_file (HTTPS), or neither (HTTP)",
                key="bridge.tls_cert_file",
            )

    @property
    def tls(self) -> bool:
        """Whether the bridge serves HTTPS/WSS."""
        return self.tls_cert_file is not None


# ---------------------------------------------------------------------------------------------
# One page's socket


class _Protocol(WebSocketsSansIOProtocol):
    """uvicorn's WebSocket protocol, lending its transport to the app: the one way to cut a
    stalled page's TCP connection when not even a close frame can leave."""

    def handle_connect(self, event: HandshakeRequest) -> None:
        super().handle_connect(event)
        scope = cast(dict[str, Any] | None, getattr(self, "scope", None))
        if scope is not None:
            # The app's task was created but has not run yet: it will find the transport.
            scope.setdefault("extensions", {})[_TRANSPORT_KEY] = self.transport


def _cut(websocket: WebSocket) -> None:
    """Drop the TCP connection at once, without a close frame."""
    transport = (websocket.scope.get("extensions") or {}).get(_TRANSPORT_KEY)
    if transport is not None:
        transport.abort()


async def _close(websocket: WebSocket, code: int, reason: str, grace: float) -> None:
    """Close with ``code``; cut the connection if the close frame cannot leave within ``grace``."""
    try:
        async with asyncio.timeout(grace):
            await websocket.close(code, reason)
    except TimeoutError:
        _cut(websocket)
    except (WebSocketDisconnect, OSError, RuntimeError):
        pass  # already gone, or already closing


@attrs.frozen
class _Close:
    code: int
    reason: str


class _Link:
    """An authenticated page's sending side: its bounded queue, its sender, its close."""

    def __init__(
        self, websocket: WebSocket, client: ConnectedClient, settings: BridgeSettings
    ) -> None:
        self.websocket = websocket
        self.client = client
        self.closing = False
        self.dropped = False
        self.pending: set[asyncio.Task[None]] = set()
        self._limit = settings.send_queue
        self._close_timeout = settings.close_timeout
        # Unbounded as a container; offer() enforces the bound so a close can always queue.
        self._queue: asyncio.Queue[str | _Close] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        """Start the sender."""
        self._tasks.append(
            asyncio.get_running_loop().create_task(
                self._send_forever(), name=f"bridge-{self.client.id}-sender"
            )
        )

    def offer(self, frame: str) -> bool:
        """Queue ``frame``; False when the page is closing, or has just been dropped as stalled."""
        if self.closing:
            return False
        if self._queue.qsize() >= self._limit:
            self._drop()
            return False
        self._queue.put_nowait(frame)
        return True

    def close(self, code: int, reason: str) -> None:
        """Close after the frames already queued."""
        if not self.closing:
            self.closing = True
            self._queue.put_nowait(_Close(code, reason))

    def _drop(self) -> None:
        self.closing = self.dropped = True
        # The sender is stuck behind a socket that does not drain; what it holds is discarded.
        for task in self._tasks:
            task.cancel()
        self._tasks.append(
            asyncio.get_running_loop().create_task(
                _close(self.websocket, CLOSE_TOO_SLOW, "client too slow", self._close_timeout),
                name=f"bridge-{self.client.id}-drop",
            )
        )

    async def _send_forever(self) -> None:
        while True:
            item = await self._queue.get()
            if isinstance(item, _Close):
                await _close(self.websocket, item.code, item.reason, self._close_timeout)
                return
            try:
                await self.websocket.send_text(item)
            except (WebSocketDisconnect, OSError, RuntimeError):
                return  # the page went away; the reader sees the disconnect and cleans up

    async def finish(self) -> None:
        """Stop everything of this page (it has disconnected)."""
        tasks = [*self._tasks, *self.pending]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class _SecurityHeaders:
    """Adds the security headers to every HTTP response (pages, health, errors alike)."""

    def __init__(self, app: ASGIApp, headers: Callable[[], list[tuple[bytes, bytes]]]) -> None:
        self._app = app
        self._headers = headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return

        headers = self._headers()
        if not headers:  # between binding and knowing the port: nothing is served half-secured
            await PlainTextResponse("starting", status_code=503)(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *headers]}
            await send(message)

        await self._app(scope, receive, send_with_headers)


def _frame(message: Event | Mapping[str, Any]) -> str:
    if isinstance(message, Mapping):
        if not isinstance(message.get("type"), str):
            raise UsageError("a bridge message needs a string 'type' (event, pop, …)")
        return encode(message)
    return encode(event_message(message))


def _media_type(file: Path) -> str:
    return _MEDIA_TYPES.get(file.suffix.lower(), "application/octet-stream")


def _page(file: Path) -> Callable[[Request], Awaitable[Response]]:
    async def page(request: Request) -> Response:
        if not await asyncio.to_thread(file.is_file):
            return PlainTextResponse("Not Found", status_code=404)
        return FileResponse(file, media_type=_media_type(file))

    return page


# ---------------------------------------------------------------------------------------------
# The server


class BridgeServer:
    """The bridge: serves the CRM pages, tells them about events, takes their commands.

    ``await start()`` / ``await stop()``, or ``async with``. :meth:`publish` sends an event or a
    message to every authenticated page. ``replay(client)``, when given, returns what a page that
    just authenticated sees first (the current state, as the same messages), right after the
    welcome and before anything published later. Raises :class:`~crmphone.errors.ConfigError` at start for
    a bad token file or a missing page file, :class:`~crmphone.errors.TransportError` when the
    address cannot be bound.
    """

    def __init__(
        self,
        settings: BridgeSettings,
        handler: CommandHandler,
        *,
        clock: Clock | None = None,
        replay: Callable[[ConnectedClient], Iterable[Event | Mapping[str, Any]]] | None = None,
    ) -> None:
        self.settings = settings
        self._handler = handler
        self._replay = replay
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._token: BridgeToken | None = settings.token
        self._served: ServedApp | None = None
        self._policy: OriginPolicy | None = None
        self._headers: list[tuple[bytes, bytes]] = []
        self._links: dict[str, _Link] = {}
        self._awaiting_hello: set[WebSocket] = set()
        self._ids = itertools.count(1)
        self._sockets = 0
        self._no_sockets = asyncio.Event()
        self._no_sockets.set()
        self._counts = dict.fromkeys(
            (
                "refused_origins",
                "refused_hellos",
                "dropped_slow",
                "commands",
                "failed_results",
                "internal_errors",
                "published",
                "connected",
            ),
            0,
        )

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Load (or make) the token, bind, and serve; return once pages can connect."""
        if self._served is not None:
            raise InvalidStateError("the bridge is already running")
        settings = self.settings
        if self._token is None:
            assert settings.token_path is not None  # BridgeSettings insists on one of the two
            self._token = BridgeToken.load_or_create(settings.token_path)
        for url_path, file in settings.pages:
            if not await asyncio.to_thread(file.is_file):
                raise ConfigError(f"{url_path}: no such file {file}", key="bridge.pages")
        tls: dict[str, Any] = {}
        if settings.tls_cert_file is not None and settings.tls_key_file is not None:
            for key, file in (
                ("tls_cert_file", settings.tls_cert_file),
                ("tls_key_file", settings.tls_key_file),
            ):
                if not await asyncio.to_thread(file.is_file):
                    raise ConfigError(f"no such file {file}", key=f"bridge.{key}")
            tls = {
                "ssl_certfile": str(settings.tls_cert_file),
                "ssl_keyfile": str(settings.tls_key_file),
            }
        served = await ServedApp.start(
            self._app(),
            host=settings.host,
            port=settings.port,
            name="crmphone-bridge",
            what="the bridge",
            hint="choose another port (bridge.port) or stop what listens there",
            shutdown_timeout=max(1, round(settings.close_timeout)),
            ws=_Protocol,
            ws_max_size=_WS_MAX_SIZE,
            # Frames are small; and with nothing compressed there is no compression oracle.
            ws_per_message_deflate=False,
            **tls,
        )
        try:
            self._configure(served.port)
        except BaseException:
            await served.stop()
            raise
        self._served = served
        logger.info("bridge: listening on %s (pages connect to %s)", self.url, self.ws_url)

    def _configure(self, port: int) -> None:
        """What depends on the bound port: the bridge's own origins, the CSP."""
        hosts = [url_host(self.settings.host)]
        if self.settings.host in _LOOPBACK_NAMES or self.settings.host == "::1":
            hosts += [name for name in _LOOPBACK_NAMES if name not in hosts]
        scheme, ws_scheme = ("https", "wss") if self.settings.tls else ("http", "ws")
        own = [OriginPattern.parse(f"{scheme}://{host}:{port}") for host in hosts]
        self._policy = OriginPolicy(
            (*self.settings.allowed_origins, *own),
            allow_missing=self.settings.allow_missing_origin,
        )
        csp = content_security_policy(
            websocket_origins=[f"{ws_scheme}://{host}:{port}" for host in hosts],
            frame_ancestors=self.settings.allowed_origins,
            script_sources=self.settings.csp_script_sources,
        )
        self._headers = [
            (b"content-security-policy", csp.encode("latin-1")),
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"no-referrer"),
            (b"cache-control", b"no-cache"),
        ]

    async def stop(self) -> None:
        """Close every page's socket (1001, after what is queued for it) and stop serving."""
        served, self._served = self._served, None
        if served is None:
            return
        for link in list(self._links.values()):
            link.close(CLOSE_GOING_AWAY, "bridge stopping")
        closes = [
            _close(websocket, CLOSE_GOING_AWAY, "bridge stopping", self.settings.close_timeout)
            for websocket in self._awaiting_hello
        ]
        await asyncio.gather(*closes)
        try:
            async with asyncio.timeout(self.settings.close_timeout + 0.5):
                await self._no_sockets.wait()
        except TimeoutError:
            # Pages so stalled that their queue never reached the close: cut them.
            for link in list(self._links.values()):
                _cut(link.websocket)
        await served.stop()
        self._policy = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    # ------------------------------------------------------------------ what callers read

    @property
    def port(self) -> int:
        """The bound TCP port."""
        if self._served is None:
            raise InvalidStateError("the bridge is not running (use `async with` or start())")
        return self._served.port

    @property
    def url(self) -> str:
        """``http://host:port`` (``https`` with TLS), where the pages and ``/healthz`` are."""
        scheme = "https" if self.settings.tls else "http"
        return f"{scheme}://{url_host(self.settings.host)}:{self.port}"

    @property
    def ws_url(self) -> str:
        """``ws://host:port/ws`` (``wss`` with TLS), the WebSocket pages connect to."""
        scheme = "wss" if self.settings.tls else "ws"
        return f"{scheme}://{url_host(self.settings.host)}:{self.port}{WEBSOCKET_PATH}"

    @property
    def token(self) -> BridgeToken:
        """The install's token (loaded at start when kept in a file)."""
        if self._token is None:
            raise InvalidStateError("the token is loaded at start")
        return self._token

    @property
    def clients(self) -> int:
        """Authenticated pages connected now (not counting ones being closed)."""
        return sum(not link.closing for link in self._links.values())

    @property
    def stats(self) -> BridgeStats:
        """A snapshot of the bridge's counters."""
        return BridgeStats(sockets=self._sockets, clients=self.clients, **self._counts)

    def publish(
        self,
        message: Event | Mapping[str, Any],
        *,
        to: Callable[[ConnectedClient], bool] | None = None,
    ) -> int:
        """Send ``message`` to every authenticated page (those ``to`` accepts, when given);
        return how many it was queued for.

        ``message`` is a crmphone event (sent as :func:`~crmphone.bridge.protocol.event_message`
        makes it) or a ready message such as :func:`~crmphone.bridge.protocol.pop_message`'s.
        Never waits: a page whose queue is full is dropped (1013) instead. Raises
        :class:`~crmphone.errors.UsageError` for a message without a string ``type`` or holding
        what JSON cannot say, ValueError for an event with a naive time.
        """
        frame = _frame(message)
        queued = 0
        for link in list(self._links.values()):
            if to is not None and not to(link.client):
                continue
            if link.offer(frame):
                queued += 1
            elif link.dropped and link.closing:
                self._note_dropped(link)
        self._counts["published"] += queued
        return queued

    # ------------------------------------------------------------------ HTTP

    def _app(self) -> ASGIApp:
        routes: list[BaseRoute] = [
            Route(HEALTH_PATH, self._health, methods=["GET"]),
            WebSocketRoute(WEBSOCKET_PATH, self._serve_socket),
        ]
        routes += [
            Route(url_path, _page(file), methods=["GET"]) for url_path, file in self.settings.pages
        ]
        app = Starlette(routes=routes)
        # Exact paths only: /healthz/ is not /healthz, and no redirect leads anywhere.
        app.router.redirect_slashes = False
        return _SecurityHeaders(app, lambda: self._headers)

    async def _health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "protocol": PROTOCOL, "clients": self.clients})

    # ------------------------------------------------------------------ WebSocket

    async def _serve_socket(self, websocket: WebSocket) -> None:
        origins = [
            value.decode("latin-1") for key, value in websocket.scope["headers"] if key == b"origin"
        ]
        origin = origins[0] if len(origins) == 1 else None
        policy = self._policy
        if policy is None or len(origins) > 1 or not policy.allows(origin):
            self._counts["refused_origins"] += 1
            if len(origins) == 1:
                logger.warning("bridge: refused a WebSocket from origin %r", origin)
            else:  # none (not a browser page) or several (a forged request): say which
                logger.warning(
                    "bridge: refused a WebSocket with %d Origin headers %s",
                    len(origins),
                    ", ".join(map(repr, origins)) or "(none)",
                )
            # A close before accept is an HTTP 403. (uvicorn's denial-response path would log an
            # ERROR per refusal, letting any web page flood the log.)
            await websocket.close()
            return
        await websocket.accept()
        self._sockets += 1
        self._no_sockets.clear()
        try:
            hello = await self._await_hello(websocket, origin)
            if hello is not None:
                await self._serve_client(websocket, hello.client, origin)
        finally:
            self._sockets -= 1
            if not self._sockets:
                self._no_sockets.set()

    async def _await_hello(self, websocket: WebSocket, origin: str | None) -> Hello | None:
        """The page's hello, or None once the socket is closed (refused, or gone)."""
        self._awaiting_hello.add(websocket)
        try:
            outcome = await self._receive_hello(websocket)
        finally:
            self._awaiting_hello.discard(websocket)
        if not isinstance(outcome, UnauthenticatedError):
            return outcome
        self._counts["refused_hellos"] += 1
        logger.warning("bridge: refused a page from origin %r: %s", origin, outcome.detail)
        await _close(websocket, CLOSE_UNAUTHENTICATED, outcome.reason, self.settings.close_timeout)
        return None

    async def _receive_hello(self, websocket: WebSocket) -> Hello | UnauthenticatedError | None:
        assert self._token is not None
        try:
            async with asyncio.timeout(self.settings.hello_timeout):
                message = await websocket.receive()
        except TimeoutError:
            return UnauthenticatedError(
                "authentication timeout", f"no hello within {self.settings.hello_timeout} s"
            )
        if message["type"] == "websocket.disconnect":
            return None
        text = message.get("text")
        if text is None:
            return UnauthenticatedError("expected a hello first", "a binary frame came first")
        try:
            return authenticate(text, self._token)
        except UnauthenticatedError as exc:
            return exc

    async def _serve_client(self, websocket: WebSocket, kind: str, origin: str | None) -> None:
        client = ConnectedClient(
            id=f"c{next(self._ids)}", kind=kind, origin=origin, connected_at=self._clock.wall()
        )
        link = _Link(websocket, client, self.settings)
        # The welcome is queued before the page joins the broadcast: it is always the first frame,
        # followed by the replay of the current state, then whatever is published from now on.
        link.offer(encode(welcome_message(client.kind, client.id)))
        if self._replay is not None:
            try:
                frames = [_frame(message) for message in self._replay(client)]
            except Exception:
                logger.exception("bridge: the replay for %s failed (a bug)", client.id)
                frames = []
            for frame in frames:
                link.offer(frame)
        link.start()
        self._links[client.id] = link
        self._counts["connected"] += 1
        logger.info("bridge: %s page connected as %s (origin %r)", kind, client.id, origin)
        try:
            await self._read_commands(link)
        finally:
            self._links.pop(client.id, None)
            await link.finish()
            logger.info("bridge: %s page %s disconnected", kind, client.id)

    async def _read_commands(self, link: _Link) -> None:
        loop = asyncio.get_running_loop()
        while True:
            message = await link.websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            if link.closing:
                continue  # no new work for a page on its way out
            text = message.get("text")
            if text is None:
                self._fail(
                    link, CommandError(ErrorCode.BAD_FRAME, "frames must be JSON text, not binary")
                )
                continue
            try:
                request = parse_command(text)
            except CommandError as exc:
                self._fail(link, exc)
                continue
            if len(link.pending) >= self.settings.max_pending_commands:
                self._fail(
                    link,
                    CommandError(
                        ErrorCode.BUSY,
                        f"{self.settings.max_pending_commands} commands are still running: "
                        "wait for a result",
                        command_id=request.id,
                    ),
                )
                continue
            task = loop.create_task(
                self._run(link, request), name=f"bridge-{link.client.id}-{request.command.name}"
            )
            link.pending.add(task)
            task.add_done_callback(link.pending.discard)

    async def _run(self, link: _Link, request: CommandRequest) -> None:
        self._counts["commands"] += 1
        command, client = request.command, link.client
        try:
            data = await self._handler.handle(command, client)
        except CrmphoneError as exc:
            error = CommandError.from_refusal(exc, request.id)
            logger.info("bridge: %s from %s refused: %s", command.name, client.id, error.message)
            self._fail(link, error)
            return
        except Exception:
            logger.exception("bridge: %s from %s failed (a bug)", command.name, client.id)
            self._fail_internally(link, request)
            return
        try:
            frame = encode(result_message(request.id, data))
        except Exception:
            logger.exception(
                "bridge: the handler's result for %s is not JSON data (a bug)", command.name
            )
            self._fail_internally(link, request)
            return
        self._offer(link, frame)

    def _fail_internally(self, link: _Link, request: CommandRequest) -> None:
        self._counts["internal_errors"] += 1
        self._fail(
            link,
            CommandError(
                ErrorCode.INTERNAL,
                f"{request.command.name} failed inside crmphone (see its log)",
                command_id=request.id,
            ),
        )

    def _fail(self, link: _Link, error: CommandError) -> None:
        self._counts["failed_results"] += 1
        self._offer(link, encode(error_message(error.command_id, error)))

    def _offer(self, link: _Link, frame: str) -> None:
        if not link.offer(frame) and link.dropped:
            self._note_dropped(link)

    def _note_dropped(self, link: _Link) -> None:
        # Counted once: a dropped page is out of the broadcast from the moment it is dropped.
        if self._links.pop(link.client.id, None) is not None:
            self._counts["dropped_slow"] += 1
            logger.warning(
                "bridge: %s page %s fell %d messages behind; closed it (1013)",
                link.client.kind,
                link.client.id,
                self.settings.send_queue,
            )
