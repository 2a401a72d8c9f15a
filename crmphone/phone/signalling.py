"""First-call signalling: the platform proposes, we proceed, it offers, we answer.

Genesys Cloud carries these steps as XMPP/Jingle over a streaming WebSocket. The sandbox speaks a
JSON equivalent with the same steps and round trips (``propose`` → ``proceed`` → ``offer`` →
``answer``, and ``terminate`` either way). The phone talks to a :class:`Signalling` — the interface
— so a Jingle provider can be added without touching the connection policy or the media layer.
:class:`JsonSignalling` is the JSON provider; parsing is sans-I/O (:func:`parse_signal`).

Later calls on a persistent connection send nothing here: they are answered with a REST PATCH.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import AsyncIterator
from typing import Any, Literal, Protocol

import attrs
import websockets
from websockets.asyncio.client import ClientConnection

from crmphone.errors import CrmphoneError, TransportError
from crmphone.notifications.backoff import Backoff, BackoffPolicy
from crmphone.platform import PlatformClient
from crmphone.platform._tls import TLS_ADVICE, certificate_problem, websocket_tls

__all__ = [
    "JsonSignalling",
    "MalformedSignal",
    "Offer",
    "Propose",
    "Signal",
    "Signalling",
    "SignallingClosed",
    "SignallingError",
    "Terminate",
    "parse_signal",
]

logger = logging.getLogger(__name__)


@attrs.frozen
class Propose:
    """The platform proposes a media session for a call, or the silent login set-up."""

    session_id: str
    conversation_id: str | None
    purpose: Literal["call", "persistent-setup"]
    auto_answer: bool
    persistent: bool
    station_id: str | None = None


@attrs.frozen
class Offer:
    """The platform's SDP offer for a session we proceeded with."""

    session_id: str
    sdp: str = attrs.field(repr=False)


@attrs.frozen
class Terminate:
    """The platform ended a session (``reason`` as sent, e.g. ``idle_timeout``, ``call_ended``)."""

    session_id: str | None
    reason: str


@attrs.frozen
class SignallingError:
    """The platform refused something we sent."""

    code: str
    message: str
    session_id: str | None = None


@attrs.frozen
class SignallingClosed:
    """The signalling socket closed (the provider reconnects by itself; this is for the record)."""

    code: int | None
    reason: str


@attrs.frozen
class MalformedSignal:
    """A frame that is not a signalling message we know (logged, counted, never fatal)."""

    problem: str
    text: str = attrs.field(repr=False)


Signal = Propose | Offer | Terminate | SignallingError | SignallingClosed | MalformedSignal
"""Anything a :class:`Signalling` provider yields."""

_PURPOSES = ("call", "persistent-setup")


def parse_signal(text: str) -> Signal | None:
    """One frame → a message; None for frames with nothing to act on (a ``pong``)."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):  # deep nesting exhausts the decoder's stack
        return MalformedSignal("not JSON", text[:200])
    if not isinstance(data, dict):
        return MalformedSignal("not a JSON object", text[:200])
    kind = data.get("type")
    session = data.get("sessionId")
    session_id = session if isinstance(session, str) and session else None
    match kind:
        case "propose":
            purpose = data.get("purpose", "call")
            conversation = data.get("conversationId")
            if session_id is None or purpose not in _PURPOSES:
                return MalformedSignal("propose needs a sessionId and a known purpose", text[:200])
            return Propose(
                session_id=session_id,
                conversation_id=conversation if isinstance(conversation, str) else None,
                purpose=purpose,
                auto_answer=data.get("autoAnswer") is True,
                persistent=data.get("persistentConnection") is True,
                station_id=_optional_text(data.get("stationId")),
            )
        case "offer":
            sdp = data.get("sdp")
            if session_id is None or not isinstance(sdp, str) or not sdp.startswith("v=0"):
                return MalformedSignal("offer needs a sessionId and an SDP", text[:200])
            return Offer(session_id, sdp)
        case "terminate":
            return Terminate(session_id, str(data.get("reason") or "unknown"))
        case "error":
            return SignallingError(
                code=str(data.get("code") or "error"),
                message=str(data.get("message") or ""),
                session_id=session_id,
            )
        case "pong":
            return None
    return MalformedSignal(f"unknown type {kind!r}", text[:200])


def _optional_text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


class Signalling(Protocol):
    """What the phone needs from a first-call signalling provider."""

    async def start(self) -> None:
        """Connect (and keep reconnecting until :meth:`aclose`)."""

    def messages(self) -> AsyncIterator[Signal]:
        """Everything the platform sends, in order."""

    async def proceed(self, session_id: str) -> None:
        """Accept a proposal."""

    async def reject(self, session_id: str) -> None:
        """Decline a proposal."""

    async def answer(self, session_id: str, sdp: str) -> None:
        """Send our SDP answer (Jingle's session-accept)."""

    async def terminate(self, session_id: str | None, reason: str) -> None:
        """End a session; ``None`` means whatever connection the platform holds for our station."""

    async def aclose(self) -> None:
        """Disconnect for good."""


class JsonSignalling:
    """The sandbox's JSON signalling over a streaming channel's WebSocket.

    Creates a streaming channel with the user's token, connects, and reconnects with jittered
    backoff when the socket drops (a new channel when the old one is gone). Sends made while
    disconnected wait for the next connection, up to ``send_timeout`` seconds.
    """

    def __init__(
        self,
        client: PlatformClient,
        *,
        backoff: BackoffPolicy | None = None,
        send_timeout: float = 10.0,
        rng: random.Random | None = None,
    ) -> None:
        self._client = client
        self._backoff = Backoff(
            backoff or BackoffPolicy(initial=0.2, cap=10.0, healthy_after=10.0),
            rng=rng or random.Random(),
        )
        self._send_timeout = send_timeout
        self._queue: asyncio.Queue[Signal] = asyncio.Queue()
        self._socket: ClientConnection | None = None
        self._connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.malformed = 0
        """Frames that were not signalling messages."""

    async def start(self) -> None:
        """Create the streaming channel and connect; returns once the first socket is open."""
        self._task = asyncio.create_task(self._run(), name="crmphone-signalling")
        waiter = asyncio.ensure_future(self._connected.wait())
        done, _ = await asyncio.wait({waiter, self._task}, return_when=asyncio.FIRST_COMPLETED)
        if self._task in done:
            waiter.cancel()
            self._task.result()  # raises why it could not connect

    async def messages(self) -> AsyncIterator[Signal]:
        """Every message the platform sends, in order, until :meth:`aclose`."""
        while not (self._closed and self._queue.empty()):
            message = await self._queue.get()
            yield message

    async def proceed(self, session_id: str) -> None:
        """See :meth:`Signalling.proceed`."""
        await self._send({"type": "proceed", "sessionId": session_id})

    async def reject(self, session_id: str) -> None:
        """See :meth:`Signalling.reject`."""
        await self._send({"type": "reject", "sessionId": session_id})

    async def answer(self, session_id: str, sdp: str) -> None:
        """See :meth:`Signalling.answer`."""
        await self._send({"type": "answer", "sessionId": session_id, "sdp": sdp})

    async def terminate(self, session_id: str | None, reason: str) -> None:
        """See :meth:`Signalling.terminate`."""
        await self._send({"type": "terminate", "sessionId": session_id, "reason": reason})

    async def aclose(self) -> None:
        """Close the socket and stop reconnecting."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._socket is not None:
            with contextlib.suppress(Exception):
                await self._socket.close()
        self._queue.put_nowait(SignallingClosed(None, "closed by us"))

    async def _send(self, message: dict[str, Any]) -> None:
        try:
            async with asyncio.timeout(self._send_timeout):
                while True:
                    await self._connected.wait()
                    socket = self._socket
                    if socket is None:
                        continue
                    try:
                        await socket.send(json.dumps(message))
                    except websockets.ConnectionClosed:
                        self._connected.clear()
                        continue
                    return
        except TimeoutError:
            raise TransportError(
                f"signalling: could not send {message['type']!r} within "
                f"{self._send_timeout:g} s (socket down)"
            ) from None

    async def _run(self) -> None:
        first = True
        while True:  # until aclose() cancels this task
            try:
                channel = await self._client.create_channel(streaming=True)
                async with websockets.connect(
                    channel.connect_uri,
                    open_timeout=10,
                    max_size=2**20,
                    compression=None,
                    # The socket trusts exactly what the REST client trusts ([platform] verify).
                    **websocket_tls(channel.connect_uri, self._client.ssl_context),
                ) as socket:
                    self._socket = socket
                    self._connected.set()
                    first = False
                    loop = asyncio.get_running_loop()
                    self._backoff.opened(loop.time())
                    await self._read(socket)
                    self._backoff.closed(loop.time())
                    code, reason = socket.close_code, socket.close_reason or ""
            except CrmphoneError:
                if first:
                    raise
                logger.warning("signalling: could not open a streaming channel", exc_info=True)
                code, reason = None, "could not open a streaming channel"
            except (OSError, websockets.WebSocketException) as exc:
                problem = certificate_problem(exc)
                failure = f"TLS verification failed ({problem}). {TLS_ADVICE}" if problem else exc
                if first:
                    raise TransportError(f"signalling: cannot connect: {failure}") from exc
                code, reason = None, f"connection failed: {failure}"
            finally:
                self._connected.clear()
                self._socket = None
            self._queue.put_nowait(SignallingClosed(code, reason))
            await asyncio.sleep(self._backoff.next_delay())

    async def _read(self, socket: ClientConnection) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for frame in socket:
                if isinstance(frame, bytes):
                    self.malformed += 1
                    continue
                message = parse_signal(frame)
                if isinstance(message, MalformedSignal):
                    self.malformed += 1
                    logger.warning("signalling: ignored a malformed frame: %s", message.problem)
                    continue
                if message is not None:
                    self._queue.put_nowait(message)
