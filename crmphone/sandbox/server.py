"""Running the sandbox on a real socket: in your event loop, in a thread, or forever.

* :class:`SandboxServer` — ``async with SandboxServer(config) as server:`` binds (port 0 picks a
  free port), serves on the current loop, exposes ``base_url``/``port``/``sandbox``.
* :class:`SandboxThread` — the same in a background thread with its own loop, for synchronous
  callers (the official Genesys SDK, benchmarks). ``invoke``/``run`` reach into that loop.
* :func:`serve` — for the CLI: serve until cancelled.

The server is uvicorn with one addition: its WebSocket protocol exposes each connection's TCP
transport in the ASGI scope (:data:`~crmphone.sandbox.hub.TRANSPORT_EXTENSION`), which the
``drop_tcp`` and ``silence`` faults need. uvicorn never installs signal handlers here; the
embedding program owns Ctrl+C. Server-initiated WebSocket protocol pings are off: liveness is the
platform's JSON heartbeat, as on Genesys Cloud.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from types import TracebackType
from typing import Any, Self, TypeVar, cast

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.http11 import Request as HandshakeRequest

from crmphone._serving import ServedApp, ServiceThread, url_host
from crmphone.clock import Clock
from crmphone.errors import InvalidStateError

from .app import create_app
from .config import SandboxConfig
from .hub import TRANSPORT_EXTENSION, Sandbox

__all__ = ["SandboxServer", "SandboxThread", "serve"]

T = TypeVar("T")

SHUTDOWN_TIMEOUT = 5


class _TransportExposingProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O WebSocket protocol, publishing its transport in the ASGI scope."""

    def handle_connect(self, event: HandshakeRequest) -> None:
        super().handle_connect(event)
        scope = cast(dict[str, Any] | None, getattr(self, "scope", None))
        if scope is not None:
            # The ASGI task was created but has not run yet: it will see the extension.
            extensions = scope.setdefault("extensions", {})
            extensions[TRANSPORT_EXTENSION] = self.transport


class SandboxServer:
    """The sandbox platform on a real loopback socket, served on the running event loop.

    ``async with SandboxServer(config, host="127.0.0.1", port=0) as server`` binds, starts the
    sandbox and the server, and on exit stops both (open WebSockets get close code 1012).
    """

    def __init__(
        self,
        config: SandboxConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Clock | None = None,
    ) -> None:
        self.config = config if config is not None else SandboxConfig()
        self.host = host
        self._requested_port = port
        self._clock = clock
        self._sandbox: Sandbox | None = None
        self._served: ServedApp | None = None
        self._port: int | None = None

    @property
    def sandbox(self) -> Sandbox:
        """The running sandbox (world, calls, faults, ledger)."""
        if self._sandbox is None:
            raise InvalidStateError("the sandbox server is not running (use `async with`)")
        return self._sandbox

    @property
    def port(self) -> int:
        """The bound TCP port."""
        if self._port is None:
            raise InvalidStateError("the sandbox server is not running (use `async with`)")
        return self._port

    @property
    def base_url(self) -> str:
        """``http://host:port``: login and API base alike."""
        return f"http://{url_host(self.host)}:{self.port}"

    async def __aenter__(self) -> Self:
        sandbox = Sandbox(self.config, self._clock)
        await sandbox.start()
        try:
            served = await ServedApp.start(
                create_app(sandbox),
                host=self.host,
                port=self._requested_port,
                name="sandbox-server",
                what="the sandbox",
                shutdown_timeout=SHUTDOWN_TIMEOUT,
                ws=_TransportExposingProtocol,
                ws_ping_interval=None,
            )
        except BaseException:
            await sandbox.close()
            raise
        self._sandbox, self._served, self._port = sandbox, served, served.port
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        served, sandbox = self._served, self._sandbox
        if served is None or sandbox is None:
            return
        try:
            await served.stop()
        finally:
            await sandbox.close()
            self._served = None
            self._port = None


class SandboxThread:
    """A :class:`SandboxServer` running in a background thread with its own event loop.

    ``with SandboxThread(config) as server:`` returns once the server listens. The sandbox lives on
    the background loop: reach it with :meth:`invoke` (a plain function) or :meth:`run` (a
    coroutine), never by calling its methods directly from your thread.
    """

    def __init__(
        self,
        config: SandboxConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Clock | None = None,
    ) -> None:
        self._server = SandboxServer(config, host=host, port=port, clock=clock)
        self._thread = ServiceThread(
            self._server,
            name="crmphone-sandbox",
            what="the sandbox",
            join_timeout=SHUTDOWN_TIMEOUT + 1,
        )

    @property
    def config(self) -> SandboxConfig:
        """The sandbox's settings."""
        return self._server.config

    @property
    def sandbox(self) -> Sandbox:
        """The sandbox (touch it only through :meth:`invoke` / :meth:`run`)."""
        return self._server.sandbox

    @property
    def port(self) -> int:
        """The bound TCP port."""
        return self._server.port

    @property
    def base_url(self) -> str:
        """``http://host:port``: login and API base alike."""
        return self._server.base_url

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._thread.close()

    def invoke(self, function: Callable[..., T], *args: Any, timeout: float = 10.0) -> T:
        """Call ``function(*args)`` on the sandbox's loop and return its result."""
        return self._thread.invoke(function, *args, timeout=timeout)

    def run(self, coroutine: Coroutine[Any, Any, T], *, timeout: float = 10.0) -> T:
        """Run ``coroutine`` on the sandbox's loop and return its result."""
        return self._thread.run(coroutine, timeout=timeout)


async def serve(
    config: SandboxConfig | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    on_ready: Callable[[SandboxServer], Awaitable[None] | None] | None = None,
    *,
    clock: Clock | None = None,
) -> None:
    """Serve the sandbox until cancelled (Ctrl+C in ``asyncio.run`` cancels it cleanly).

    ``on_ready(server)`` is called once the socket listens, e.g. to print ``server.base_url``.
    """
    async with SandboxServer(config, host=host, port=port, clock=clock) as server:
        if on_ready is not None:
            result = on_ready(server)
            if result is not None:
                await result
        await asyncio.Event().wait()
