"""A real webhook receiver for tests: starlette on uvicorn, on a loopback port, in this process.

It behaves as a careful receiver should: it honours ``Idempotency-Key`` (a repeated key gets the
stored response and makes no second record; a key still being processed gets 409), and records
every delivery attempt with its key. Tests can make it fail or stall:

* :meth:`WebhookReceiver.fail_next` — the next requests answer a status (429 with
  ``Retry-After``, 503, 400, …) before any processing, as a rate limiter or proxy in front would;
* :meth:`WebhookReceiver.slow_next` — the next requests wait before answering (released early
  when the receiver stops, so nothing outlives a test).

``async with WebhookReceiver() as receiver:`` serves on ``receiver.url`` (port 0 picks a free
port); ``tls=`` serves HTTPS with a certificate and key from a PEM file.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections import deque
from collections.abc import Generator
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import attrs
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

__all__ = ["Attempt", "StoredResponse", "WebhookReceiver"]

STARTUP_TIMEOUT = 10.0


@attrs.frozen
class StoredResponse:
    """The response a receiver keeps per ``Idempotency-Key`` and repeats for that key."""

    status: int
    body: dict[str, Any]


@attrs.frozen
class Attempt:
    """One delivery attempt as the receiver saw it, and what it answered.

    ``replayed`` is True when the answer was a stored response (the key was seen before).
    """

    key: str | None
    body: Any
    headers: dict[str, str]
    status: int
    replayed: bool = False


@attrs.frozen
class _Failure:
    status: int
    retry_after: str | None


class _Server(uvicorn.Server):
    """uvicorn, leaving signals to the test runner and stopping without its 0.1 s polling."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._exit_requested = asyncio.Event()

    def request_exit(self) -> None:
        """Begin a graceful shutdown now."""
        self.should_exit = True
        self._exit_requested.set()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield

    async def main_loop(self) -> None:
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + 10) % 864000  # on_tick refreshes the Date header every 10 ticks
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self._exit_requested.wait()


class WebhookReceiver:
    """A webhook endpoint at ``path`` that stores one record per ``Idempotency-Key``.

    ``records`` maps each key to the JSON body stored for it; ``attempts`` lists every request in
    arrival order, failed and repeated ones included.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        path: str = "/hook",
        tls: Path | None = None,
    ) -> None:
        self.host = host
        self.path = path
        self.records: dict[str, Any] = {}
        self.attempts: list[Attempt] = []
        self._requested_port = port
        self._tls = tls
        self._responses: dict[str, StoredResponse] = {}
        self._in_flight: set[str] = set()
        self._failures: deque[_Failure] = deque()
        self._delays: deque[float] = deque()
        self._released = asyncio.Event()
        self._arrivals = 0
        self._arrived = asyncio.Condition()
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None
        self._port: int | None = None

    # ------------------------------------------------------------------ what tests call

    @property
    def port(self) -> int:
        """The bound TCP port."""
        if self._port is None:
            raise RuntimeError("the receiver is not running (use `async with`)")
        return self._port

    @property
    def url(self) -> str:
        """The endpoint's URL."""
        scheme = "https" if self._tls is not None else "http"
        return f"{scheme}://{self.host}:{self.port}{self.path}"

    def fail_next(self, count: int = 1, *, status: int, retry_after: str | None = None) -> None:
        """Answer the next ``count`` requests with ``status`` (and ``Retry-After``), storing
        nothing: as a rate limiter or an unavailable backend would."""
        self._failures.extend(_Failure(status, retry_after) for _ in range(count))

    def slow_next(self, count: int = 1, *, seconds: float) -> None:
        """Make the next ``count`` requests wait ``seconds`` before they are processed (or
        until the receiver stops). The key counts as in progress meanwhile."""
        self._delays.extend(seconds for _ in range(count))

    async def wait_for_requests(self, count: int, *, within: float = 5.0) -> None:
        """Return once ``count`` requests have arrived in total (answered or not); raise
        TimeoutError after ``within`` seconds."""
        async with asyncio.timeout(within), self._arrived:
            await self._arrived.wait_for(lambda: self._arrivals >= count)

    # ------------------------------------------------------------------ serving

    async def __aenter__(self) -> Self:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self._requested_port))
        port = int(listener.getsockname()[1])
        tls = str(self._tls) if self._tls is not None else None
        config = uvicorn.Config(
            Starlette(routes=[Route(self.path, self._receive, methods=["POST"])]),
            host=self.host,
            port=port,
            lifespan="off",
            log_config=None,
            access_log=False,
            ssl_certfile=tls,
            ssl_keyfile=tls,
            timeout_graceful_shutdown=2,
        )
        server = _Server(config)
        task = asyncio.create_task(server.serve(sockets=[listener]), name="webhook-receiver")
        async with asyncio.timeout(STARTUP_TIMEOUT):
            while not server.started:
                if task.done():
                    listener.close()
                    await task  # raises what stopped it
                    raise RuntimeError("the webhook receiver stopped while starting")
                await asyncio.sleep(0.005)
        self._server, self._task, self._port = server, task, port
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._released.set()  # stalled requests answer now, so shutdown need not wait for them
        server, task = self._server, self._task
        if server is None or task is None:
            return
        server.request_exit()
        await task
        self._server = self._task = None
        self._port = None

    # ------------------------------------------------------------------ the endpoint

    async def _receive(self, request: Request) -> Response:
        raw = await request.body()
        key = request.headers.get("idempotency-key")
        headers = {name.lower(): value for name, value in request.headers.items()}
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = None
        async with self._arrived:
            self._arrivals += 1
            self._arrived.notify_all()

        def answer(status: int, content: dict[str, Any], *, replayed: bool = False) -> Response:
            self.attempts.append(Attempt(key, body, headers, status, replayed))
            extra = {"Idempotency-Replayed": "true"} if replayed else {}
            return JSONResponse(content, status_code=status, headers=extra)

        if self._failures:
            failure = self._failures.popleft()
            response = answer(failure.status, {"error": f"injected {failure.status}"})
            if failure.retry_after is not None:
                response.headers["Retry-After"] = failure.retry_after
            return response
        if not key:
            return answer(400, {"error": "an Idempotency-Key header is required"})
        if key in self._responses:
            stored = self._responses[key]
            return answer(stored.status, stored.body, replayed=True)
        if key in self._in_flight:
            return answer(409, {"error": "a request with this Idempotency-Key is in progress"})
        if not isinstance(body, dict) or body.get("event") != "call.log":
            return answer(400, {"error": 'the body must be JSON with "event": "call.log"'})
        self._in_flight.add(key)
        try:
            if self._delays:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._delays.popleft()):
                        await self._released.wait()
            self.records[key] = body
            stored = StoredResponse(201, {"id": len(self.records), "key": key})
            self._responses[key] = stored
        finally:
            self._in_flight.discard(key)
        return answer(stored.status, stored.body)
