"""What every sandbox WebSocket shares: its own send queue, an orderly close, a refusal.

Notification sockets (:class:`~crmphone.sandbox.hub.SocketLink`) and signalling sockets
(:class:`~crmphone.sandbox.signalling.SignallingLink`) both send through a :class:`QueuedSocket`:
an unbounded queue drained by one sender task, so whoever publishes never waits for a slow socket,
frames leave in the order they were queued, and a close waits behind the frames before it.
"""

from __future__ import annotations

import asyncio
import logging

import attrs
from starlette.responses import JSONResponse
from starlette.websockets import WebSocket, WebSocketDisconnect

from . import wire
from .world import CLOSE_CHANNEL_REMOVED

__all__ = ["QueuedSocket", "refuse_unknown_channel"]

logger = logging.getLogger(__name__)


@attrs.frozen
class _Close:
    code: int
    reason: str


class QueuedSocket:
    """One accepted WebSocket's sending side: queue, sender task, close and abort.

    Subclasses add their own background tasks to ``_tasks`` (all cancelled by :meth:`stop`).
    """

    def __init__(
        self, socket_id: str, websocket: WebSocket, transport: asyncio.Transport | None
    ) -> None:
        self.id = socket_id
        self.websocket = websocket
        self.transport = transport
        self.closing = False
        self.frames_sent = 0
        self.close_requested: tuple[int, str] | None = None
        self._queue: asyncio.Queue[str | bytes | _Close] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        """Start the sender task."""
        self._tasks.append(
            asyncio.get_running_loop().create_task(
                self._send_forever(), name=f"sandbox-{self.id}-sender"
            )
        )

    async def stop(self) -> None:
        """Cancel the sender and every other task of this socket (the socket has ended)."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    @property
    def queued(self) -> int:
        """Frames waiting in the send queue."""
        return self._queue.qsize()

    def send(self, frame: str | bytes) -> bool:
        """Queue a frame; False (nothing queued) once the socket is closing."""
        if self.closing:
            return False
        self._queue.put_nowait(frame)
        return True

    def close(self, code: int, reason: str, notice: str | None = None) -> None:
        """Queue ``notice`` (if any) and a close frame behind everything already queued."""
        if self.closing:
            return
        if notice is not None:
            self._queue.put_nowait(notice)
        self._queue.put_nowait(_Close(code, reason))
        self.closing = True
        self.close_requested = (code, reason)

    def abort(self) -> None:
        """Drop the TCP connection at once, without a close frame (a dead link, a vanished peer)."""
        if self.transport is None:
            raise NotImplementedError("this server does not expose WebSocket transports")
        self.closing = True
        self.transport.abort()

    async def _send_forever(self) -> None:
        while True:
            frame = await self._queue.get()
            try:
                if isinstance(frame, _Close):
                    await self.websocket.close(frame.code, frame.reason)
                    return
                if isinstance(frame, str):
                    await self.websocket.send_text(frame)
                else:
                    await self.websocket.send_bytes(frame)
            except (WebSocketDisconnect, OSError, RuntimeError) as exc:
                logger.debug("socket %s: send failed (%s); the reader cleans up", self.id, exc)
                return
            self.frames_sent += 1


async def refuse_unknown_channel(websocket: WebSocket, context_id: str, channel_id: str) -> None:
    """Refuse a handshake for a channel that does not exist: HTTP 404 with Genesys's error body.

    Servers without the ASGI denial-response extension can only close (the client sees 403).
    """
    if "websocket.http.response" in (websocket.scope.get("extensions") or {}):
        body = wire.error_body(404, "not.found", f"Channel {channel_id} not found.", context_id)
        response = JSONResponse(body, status_code=404, headers={"ININ-Correlation-Id": context_id})
        await websocket.send_denial_response(response)
    else:
        await websocket.close(CLOSE_CHANNEL_REMOVED.code, CLOSE_CHANNEL_REMOVED.reason)
