"""Serving an ASGI app with uvicorn on the running event loop, on a socket bound here.

What the sandbox, the health endpoint, the CRM emulators (and later the bridge) share: uvicorn
without its signal handlers (the embedding program owns Ctrl+C), a shutdown that starts at once
instead of at uvicorn's next 0.1 s poll, and a listener bound before uvicorn starts, so port 0
yields the real port and a busy port is a clear error.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import tempfile
import threading
from collections.abc import Callable, Coroutine, Generator
from pathlib import Path
from typing import Any, Self, TypeVar

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from crmphone.errors import InvalidStateError, TransportError

__all__ = [
    "STARTUP_TIMEOUT",
    "HttpsService",
    "LocalTls",
    "PromptShutdownProtocol",
    "ServedApp",
    "ServedHttps",
    "ServiceThread",
    "bind",
    "url_host",
]

_T = TypeVar("_T")

STARTUP_TIMEOUT = 10.0


class _EmbeddedServer(uvicorn.Server):
    """uvicorn that leaves signals to its host, stops without polling, and reports startup."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.exit_requested = asyncio.Event()
        self.startup_done = asyncio.Event()

    def request_exit(self) -> None:
        """Begin a graceful shutdown now."""
        self.should_exit = True
        self.exit_requested.set()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        self.startup_done.set()

    async def main_loop(self) -> None:
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + 10) % 864000  # on_tick refreshes the Date header every 10 ticks
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self.exit_requested.wait()


def url_host(host: str) -> str:
    """``host`` as it goes in a URL: an IPv6 address in brackets, anything else as it is."""
    return f"[{host}]" if ":" in host else host


def bind(host: str, port: int, *, what: str, hint: str = "") -> socket.socket:
    """A TCP listener on ``host:port`` (0: any free port); TransportError naming ``what``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio only disables Nagle on accepted sockets whose proto says TCP,
    # and a listener made with proto 0 would cost every response a 40 ms delayed-ACK stall.
    listener = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
    except OSError as exc:
        listener.close()
        advice = f"; {hint}" if hint else ""
        raise TransportError(
            f"cannot bind {what} to {host}:{port}: {exc.strerror}{advice}"
        ) from exc
    return listener


class ServedApp:
    """An ASGI app served on the running loop: :meth:`start` it, read :attr:`port`, :meth:`stop`."""

    def __init__(
        self, server: _EmbeddedServer, task: asyncio.Task[None], port: int, shutdown: float
    ) -> None:
        self._server = server
        self._task = task
        self.port = port
        self._shutdown = shutdown

    @classmethod
    async def start(
        cls,
        app: Any,
        *,
        host: str,
        port: int,
        name: str,
        what: str,
        hint: str = "",
        shutdown_timeout: int = 5,
        **options: Any,
    ) -> Self:
        """Bind and serve ``app``; return once it accepts connections.

        ``options`` go to :class:`uvicorn.Config`. Raises TransportError (naming ``what``) when
        the address cannot be bound or the server does not start.
        """
        listener = bind(host, port, what=what, hint=hint)
        config = uvicorn.Config(
            app,
            host=host,
            port=listener.getsockname()[1],
            lifespan="off",
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=shutdown_timeout,
            **options,
        )
        server = _EmbeddedServer(config)
        task = asyncio.get_running_loop().create_task(server.serve(sockets=[listener]), name=name)
        started = asyncio.ensure_future(server.startup_done.wait())
        await asyncio.wait({task, started}, timeout=STARTUP_TIMEOUT, return_when="FIRST_COMPLETED")
        started.cancel()
        if not server.startup_done.is_set():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, SystemExit, Exception):
                await task
            listener.close()
            raise TransportError(f"{what} could not start on {host}")
        return cls(server, task, int(listener.getsockname()[1]), float(shutdown_timeout))

    async def stop(self) -> None:
        """Shut down gracefully (open connections get their close), forcing it if it drags."""
        self._server.request_exit()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), self._shutdown + 1)
        except TimeoutError:
            self._server.force_exit = True
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class LocalTls:
    """A private certificate authority and a server certificate for ``127.0.0.1`` and
    ``localhost``, written as PEM files to a private temporary directory.

    What the CRM emulators serve HTTPS with: clients trust :attr:`ca_file` (never the system
    store, never a disabled check). :meth:`uvicorn_options` goes to :meth:`ServedApp.start`;
    :meth:`close` deletes the files (the key never outlives the server). Needs ``trustme``.
    """

    def __init__(self, *, hosts: tuple[str, ...] = ("127.0.0.1", "localhost")) -> None:
        try:
            import trustme  # only what serves TLS pays for it
        except ImportError as exc:  # pragma: no cover - a packaging error, named for the user
            raise TransportError("serving local HTTPS needs the 'trustme' package") from exc
        self._directory = tempfile.TemporaryDirectory(prefix="crmphone-tls-")
        folder = Path(self._directory.name)
        authority = trustme.CA(organization_name="crmphone local emulator CA")
        leaf = authority.issue_cert(*hosts)
        self.ca_file = folder / "ca.pem"
        """The CA certificate (PEM) a client trusts to talk to the server."""
        authority.cert_pem.write_to_path(str(self.ca_file))
        self._cert_file = folder / "server.pem"
        self._key_file = folder / "server.key"
        leaf.cert_chain_pems[0].write_to_path(str(self._cert_file))
        for extra in leaf.cert_chain_pems[1:]:
            extra.write_to_path(str(self._cert_file), append=True)
        leaf.private_key_pem.write_to_path(str(self._key_file))
        self._key_file.chmod(0o600)

    def uvicorn_options(self) -> dict[str, str]:
        """The ``ssl_certfile``/``ssl_keyfile`` options that make uvicorn serve this certificate."""
        return {"ssl_certfile": str(self._cert_file), "ssl_keyfile": str(self._key_file)}

    def close(self) -> None:
        """Delete the certificate files."""
        self._directory.cleanup()


class PromptShutdownProtocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, dropping idle connections at once when the server stops.

    A TLS close waits for the client's ``close_notify``, which a client idling in a connection
    pool (requests keeps connections alive) never sends; uvicorn's graceful shutdown would then
    wait out its whole timeout for connections that have nothing left to say.
    """

    _stopping = False

    def shutdown(self) -> None:
        """Begin the graceful shutdown; an idle connection is aborted instead of closed."""
        self._stopping = True
        idle = self.cycle is None or self.cycle.response_complete
        super().shutdown()
        if idle:
            self.transport.abort()

    def on_response_complete(self) -> None:
        """After the last answer of a stopping server, drop the connection the same way."""
        super().on_response_complete()
        if self._stopping and self.transport.is_closing():
            # The answer went out with the close; waiting for the client's goodbye adds nothing.
            self.transport.abort()


class ServedHttps:
    """An ASGI app served over HTTPS with its own private CA (:class:`LocalTls`), stopping
    promptly even while clients keep connections alive: what the CRM emulators are served by.

    :meth:`start` it, read :attr:`url` and :attr:`ca_file`, :meth:`stop` it (which deletes the
    certificate files). ``what`` names the server in errors ("the Salesforce emulator").
    """

    def __init__(self, what: str, name: str) -> None:
        self.what = what
        self.name = name
        self._tls: LocalTls | None = None
        self._served: ServedApp | None = None
        self._host = "127.0.0.1"

    async def start(self, app: Any, *, host: str = "127.0.0.1", port: int = 0) -> None:
        """Serve ``app`` on ``host:port`` (port 0: any free one); return once it accepts.

        TransportError when the address cannot be bound; InvalidStateError when running.
        """
        if self._served is not None:
            raise InvalidStateError(f"{self.what} is already running")
        tls = LocalTls()
        try:
            self._served = await ServedApp.start(
                app,
                host=host,
                port=port,
                name=self.name,
                what=self.what,
                hint="pick another port, or 0 for any free one",
                shutdown_timeout=2,
                http=PromptShutdownProtocol,
                **tls.uvicorn_options(),
            )
        except BaseException:
            tls.close()
            raise
        self._tls, self._host = tls, host

    async def stop(self) -> None:
        """Stop serving and delete the certificate files; a no-op when not running."""
        served, tls = self._served, self._tls
        self._served = self._tls = None
        try:
            if served is not None:
                await served.stop()
        finally:
            if tls is not None:
                tls.close()

    @property
    def running(self) -> bool:
        """Whether it is serving."""
        return self._served is not None

    @property
    def host(self) -> str:
        """The address served on."""
        return self._host

    @property
    def port(self) -> int:
        """The bound TCP port."""
        if self._served is None:
            raise InvalidStateError(f"{self.what} is not running (call start())")
        return self._served.port

    @property
    def url(self) -> str:
        """``https://host:port``."""
        return f"https://{url_host(self._host)}:{self.port}"

    @property
    def ca_file(self) -> Path:
        """The PEM CA certificate a client must trust (deleted by :meth:`stop`)."""
        if self._tls is None:
            raise InvalidStateError(f"{self.what} is not running (call start())")
        return self._tls.ca_file


class HttpsService:
    """Base of a local HTTPS service (the CRM emulators): :meth:`start` / :meth:`stop` or
    ``async with``, then :attr:`url` and :attr:`ca_file`. A subclass sets ``self._https`` (a
    :class:`ServedHttps`) and implements :meth:`_app`."""

    _https: ServedHttps

    def _app(self) -> Any:
        """The ASGI app to serve (made at each start)."""
        raise NotImplementedError

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> Self:
        """Serve on ``host:port`` (port 0: any free one); return once it accepts connections.

        TransportError when the address cannot be bound; InvalidStateError when already running.
        """
        await self._https.start(self._app(), host=host, port=port)
        return self

    async def stop(self) -> None:
        """Stop serving and delete the certificate files; a no-op when not running."""
        await self._https.stop()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def running(self) -> bool:
        """Whether it is serving."""
        return self._https.running

    @property
    def host(self) -> str:
        """The address served on."""
        return self._https.host

    @property
    def port(self) -> int:
        """The bound TCP port."""
        return self._https.port

    @property
    def url(self) -> str:
        """``https://host:port``: the base URL clients use."""
        return self._https.url

    @property
    def ca_file(self) -> Path:
        """The PEM CA certificate a client must trust (deleted by :meth:`stop`)."""
        return self._https.ca_file


class ServiceThread:
    """A service (any async context manager: the sandbox, an emulator) run in a background
    thread on its own event loop, for synchronous callers (the official SDK, blocking clients).

    :meth:`start` returns once the service is entered (raising what its start raised);
    :meth:`close` leaves it and joins the thread within ``join_timeout`` seconds. The service
    lives on the background loop: reach it with :meth:`invoke` (a plain function) or :meth:`run`
    (a coroutine), never by calling its methods directly from another thread.
    """

    def __init__(self, service: Any, *, name: str, what: str, join_timeout: float) -> None:
        self.service = service
        self.name = name
        self.what = what
        self.join_timeout = join_timeout
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def start(self) -> None:
        """Start the thread and enter the service there; return once it is up."""
        self._thread = threading.Thread(target=self._main, name=self.name, daemon=True)
        self._thread.start()
        if not self._ready.wait(STARTUP_TIMEOUT + 1):
            raise TransportError(f"{self.what} thread did not start in time")
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        """Leave the service and join the thread."""
        loop, stop = self._loop, self._stop
        self._loop = self._stop = None
        if loop is not None and stop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stop.set)
        if self._thread is not None:
            self._thread.join(self.join_timeout)

    @property
    def alive(self) -> bool:
        """Whether the background thread is still running."""
        return self._thread is not None and self._thread.is_alive()

    def invoke(self, function: Callable[..., _T], *args: Any, timeout: float = 10.0) -> _T:
        """Call ``function(*args)`` on the service's loop and return its result."""

        async def call() -> _T:
            return function(*args)

        return self.run(call(), timeout=timeout)

    def run(self, coroutine: Coroutine[Any, Any, _T], *, timeout: float = 10.0) -> _T:
        """Run ``coroutine`` on the service's loop and return its result."""
        if self._loop is None:
            coroutine.close()
            raise InvalidStateError(f"{self.what} thread is not running (use `with`)")
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # noqa: BLE001 - reported to the thread waiting in start()
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with self.service:
            self._ready.set()
            await self._stop.wait()
