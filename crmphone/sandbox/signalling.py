"""The streaming (signalling) socket, server side: channels, frames, one socket per agent.

Genesys Cloud sets up a softphone's first call with XMPP/Jingle over a *streaming* channel. The
sandbox speaks a JSON equivalent with the same steps and round trips (the team brief's
"signalling wire protocol"):

* ``POST /api/v2/notifications/channels?connectionType=streaming`` (user tokens only) creates a
  :class:`StreamingChannel`; its ``connectUri`` is ``ws://{host}/stream/channels/{id}``.
* The socket there belongs to the token's user. One live socket per agent: a new one displaces the
  old (close ``4000 displaced by a new connection``). A handshake for an unknown or expired channel
  is refused with HTTP 404, like the notification sockets.
* Every frame is a JSON text frame with ``"type"``. The server sends ``propose``, ``offer``,
  ``terminate``, ``error`` and ``pong``; the client sends ``proceed``, ``reject``, ``answer``,
  ``terminate`` and ``ping``.

This module owns the wire (frame builders, :func:`parse_client_frame` turning client frames into
frozen :data:`ClientMessage` values or a :class:`FrameError`) and the sockets
(:class:`SignallingServer`). What a message *means* is the business of its
:class:`SignallingHandler`, the media edge. Answering ``ping`` and rejecting malformed frames with
an ``error`` frame happen here; nothing else does.

.. code-block:: text

    client                                   sandbox
      │  proceed / reject / answer / terminate  │
      │ ──────────────────────────────────────▶ │ parse_client_frame → handler.signalling_received
      │  propose / offer / terminate / error    │
      │ ◀────────────────────────────────────── │ SignallingServer.send(agent_id, frame)
"""

from __future__ import annotations

import asyncio
import collections
import enum
import json
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Protocol

import attrs
from starlette.websockets import WebSocket

from crmphone.errors import BadRequestError

from . import wire
from .links import QueuedSocket, refuse_unknown_channel
from .world import CLOSE_DISPLACED, Token, World

__all__ = [
    "CLIENT_TERMINATE_REASONS",
    "Answer",
    "ClientMessage",
    "FrameError",
    "Ping",
    "Proceed",
    "Reject",
    "SignallingHandler",
    "SignallingLink",
    "SignallingServer",
    "StreamingChannel",
    "Terminate",
    "TerminateReason",
    "error_frame",
    "offer_frame",
    "parse_client_frame",
    "pong_frame",
    "propose_frame",
    "terminate_frame",
]

logger = logging.getLogger(__name__)


class TerminateReason(enum.StrEnum):
    """Why a signalling session ended, as the ``reason`` of a ``terminate`` frame."""

    MANUAL = "manual"
    """The agent stopped the persistent connection (client)."""
    LOGOUT = "logout"
    """The agent logged out (client)."""
    MEDIA_FAILURE = "media_failure"
    """The media path died (client or edge)."""
    IDLE_TIMEOUT = "idle_timeout"
    """No call for the station's persistent-connection timeout (client or edge)."""
    CALL_ENDED = "call_ended"
    """The call ended on a station without persistent connections, or before the set-up finished
    (edge)."""


CLIENT_TERMINATE_REASONS = frozenset(
    {
        TerminateReason.MANUAL,
        TerminateReason.LOGOUT,
        TerminateReason.MEDIA_FAILURE,
        TerminateReason.IDLE_TIMEOUT,
    }
)
"""The reasons a client may give in its ``terminate`` frame."""


class FrameError(BadRequestError):
    """A client frame the server cannot accept; answered with an ``error`` frame.

    ``code`` is the frame's error code (``bad.request``, ``session.not.found``,
    ``invalid.state``, ``sdp.rejected``); ``session_id`` the session it concerned, when known.
    """

    def __init__(self, message: str, *, code: str = "bad.request", session_id: str | None = None):
        super().__init__(message, status=400, code=code)
        self.session_id = session_id


# ---------------------------------------------------------------------- client messages


@attrs.frozen
class Proceed:
    """The client accepts a ``propose``: the edge creates its peer connection and offers."""

    session_id: str


@attrs.frozen
class Reject:
    """The client declines a ``propose`` (for a call: the agent rejects it)."""

    session_id: str


@attrs.frozen
class Answer:
    """The client's SDP answer to the edge's offer (Jingle's session-accept)."""

    session_id: str
    sdp: str = attrs.field(repr=False)


@attrs.frozen
class Terminate:
    """The client ends a session (one of :data:`CLIENT_TERMINATE_REASONS`)."""

    session_id: str
    reason: TerminateReason


@attrs.frozen
class Ping:
    """A liveness check; answered with ``pong`` carrying the same ``id``."""

    id: str | int


ClientMessage = Proceed | Reject | Answer | Terminate | Ping
"""Everything a client may send on the signalling socket."""


def parse_client_frame(text: str) -> ClientMessage:
    """The message in one client text frame; :class:`FrameError` when it is not one."""
    try:
        frame = json.loads(text)
    except ValueError:
        raise FrameError("The frame is not valid JSON.") from None
    if not isinstance(frame, dict):
        raise FrameError("The frame must be a JSON object.")
    kind = frame.get("type")
    if kind == "ping":
        ping_id = frame.get("id")
        if isinstance(ping_id, bool) or not isinstance(ping_id, str | int):
            raise FrameError('A ping needs an "id" (a string or an integer).')
        return Ping(ping_id)
    if kind not in ("proceed", "reject", "answer", "terminate"):
        raise FrameError(
            f"Unknown frame type {kind!r}; a client sends proceed, reject, answer, terminate "
            "or ping."
        )
    session_id = frame.get("sessionId")
    if not isinstance(session_id, str) or not session_id:
        raise FrameError(f'A {kind} frame needs a "sessionId" string.')
    if kind == "proceed":
        return Proceed(session_id)
    if kind == "reject":
        return Reject(session_id)
    if kind == "answer":
        sdp = frame.get("sdp")
        if not isinstance(sdp, str) or not sdp.startswith("v=0"):
            raise FrameError('An answer needs an "sdp" string (v=0...).', session_id=session_id)
        return Answer(session_id, sdp)
    reason = frame.get("reason")
    if reason not in CLIENT_TERMINATE_REASONS:
        allowed = ", ".join(sorted(CLIENT_TERMINATE_REASONS))
        raise FrameError(
            f"A terminate needs a reason among {allowed}; got {reason!r}.", session_id=session_id
        )
    return Terminate(session_id, TerminateReason(reason))


# ---------------------------------------------------------------------- server frames


def propose_frame(
    *,
    session_id: str,
    conversation_id: str,
    purpose: str,
    auto_answer: bool,
    persistent_connection: bool,
    station_id: str,
) -> str:
    """``propose``: a session for a call (``purpose="call"``) or a silent ``persistent-setup``."""
    return wire.dumps(
        {
            "type": "propose",
            "sessionId": session_id,
            "conversationId": conversation_id,
            "purpose": purpose,
            "autoAnswer": auto_answer,
            "persistentConnection": persistent_connection,
            "stationId": station_id,
        }
    )


def offer_frame(session_id: str, sdp: str) -> str:
    """``offer``: the edge's SDP (sent after ``proceed``; the edge is the offerer)."""
    return wire.dumps({"type": "offer", "sessionId": session_id, "sdp": sdp})


def terminate_frame(session_id: str, reason: str) -> str:
    """``terminate``: the edge closed the session."""
    return wire.dumps({"type": "terminate", "sessionId": session_id, "reason": reason})


def error_frame(code: str, message: str, session_id: str | None = None) -> str:
    """``error``: a client frame was refused (``sessionId`` only when one was concerned)."""
    frame: dict[str, Any] = {"type": "error", "code": code, "message": message}
    if session_id is not None:
        frame["sessionId"] = session_id
    return wire.dumps(frame)


def pong_frame(ping_id: str | int) -> str:
    """``pong``: the answer to a ``ping``."""
    return wire.dumps({"type": "pong", "id": ping_id})


# ---------------------------------------------------------------------- channels and sockets


@attrs.frozen
class StreamingChannel:
    """A streaming channel: whose signalling socket connects at :attr:`connect_path`, and until when.

    ``expires_at`` is monotonic seconds of the world's clock.
    """

    id: str
    user_id: str
    expires_at: float
    expires_wall: datetime

    @property
    def connect_path(self) -> str:
        """The path of the channel's WebSocket (``/stream/channels/{id}``)."""
        return f"/stream/channels/{self.id}"


class SignallingHandler(Protocol):
    """Who acts on signalling: the media edge. Called on the sandbox's loop, never awaited."""

    def signalling_opened(self, agent_id: str) -> None:
        """The agent's signalling socket opened (a displaced predecessor no longer counts)."""

    def signalling_closed(self, agent_id: str) -> None:
        """The agent's current signalling socket ended (closed, aborted, or the server stopped)."""

    def signalling_received(
        self, agent_id: str, message: Proceed | Reject | Answer | Terminate
    ) -> None:
        """A valid session frame arrived on the agent's current socket.

        Raise :class:`FrameError` to refuse it: the client gets an ``error`` frame.
        """


class SignallingLink(QueuedSocket):
    """One open signalling socket: its send queue and the TCP transport the faults abort.

    Created by :meth:`SignallingServer.serve` for each accepted socket.
    """

    def __init__(
        self,
        socket_id: str,
        agent_id: str,
        channel_id: str,
        websocket: WebSocket,
        transport: asyncio.Transport | None,
    ) -> None:
        super().__init__(socket_id, websocket, transport)
        self.agent_id = agent_id
        self.channel_id = channel_id
        self.frames_received = 0

    def describe(self) -> dict[str, Any]:
        """JSON-ready facts for the sandbox state."""
        return {
            "id": self.id,
            "agentId": self.agent_id,
            "channelId": self.channel_id,
            "closing": self.closing,
            "framesSent": self.frames_sent,
            "framesReceived": self.frames_received,
        }


class SignallingServer:
    """Streaming channels and the signalling sockets of every agent; one per sandbox.

    ``transport_extension`` is the ASGI scope extension under which the server exposes a
    socket's TCP transport (needed by :meth:`abort`). Use it on the sandbox's event loop.
    """

    def __init__(
        self, world: World, handler: SignallingHandler, *, transport_extension: str
    ) -> None:
        self._world = world
        self._handler = handler
        self._transport_extension = transport_extension
        self._channels: dict[str, StreamingChannel] = {}
        self._links: dict[str, SignallingLink] = {}
        self._serving: set[SignallingLink] = set()
        self._sequence = 0
        self.counters: collections.Counter[str] = collections.Counter()

    # ------------------------------------------------------------------ channels

    def create_channel(self, token: Token) -> StreamingChannel:
        """A new streaming channel for the token's user; BadRequestError (400) for client tokens.

        Each user keeps at most ``max_channels_per_client`` streaming channels; one more forgets
        the oldest (its socket, if any, stays open).
        """
        agent = self._world.require_user(token)
        config, clock = self._world.config, self._world.clock
        mine = [c for c in self._channels.values() if c.user_id == agent.id]
        for victim in mine[: max(0, len(mine) - config.max_channels_per_client + 1)]:
            del self._channels[victim.id]
        channel = StreamingChannel(
            id=self._world.ids.uuid(),
            user_id=agent.id,
            expires_at=clock.monotonic() + config.channel_ttl,
            expires_wall=clock.wall() + timedelta(seconds=config.channel_ttl),
        )
        self._channels[channel.id] = channel
        self.counters["streaming_channels_created"] += 1
        return channel

    def channel(self, channel_id: str) -> StreamingChannel | None:
        """The live streaming channel ``channel_id``, or None (unknown or expired)."""
        channel = self._channels.get(channel_id)
        if channel is None or self._world.clock.monotonic() >= channel.expires_at:
            return None
        return channel

    # ------------------------------------------------------------------ sockets

    def link(self, agent_id: str) -> SignallingLink | None:
        """The agent's current signalling socket, or None."""
        link = self._links.get(agent_id)
        return link if link is not None and not link.closing else None

    def is_online(self, agent_id: str) -> bool:
        """True while the agent has an open signalling socket."""
        return self.link(agent_id) is not None

    def send(self, agent_id: str, frame: str) -> bool:
        """Queue ``frame`` on the agent's socket; False when the agent has none."""
        link = self.link(agent_id)
        if link is None:
            self.counters["frames_undeliverable"] += 1
            return False
        return link.send(frame)

    def abort(self, agent_id: str) -> bool:
        """Abort the agent's socket without a close frame; False when it has none."""
        link = self.link(agent_id)
        if link is None:
            return False
        link.abort()
        return True

    def links(self) -> list[SignallingLink]:
        """Every agent's current socket."""
        return [link for link in self._links.values() if not link.closing]

    async def close(self) -> None:
        """Close every socket (1001) and stop their senders; for sandboxes without a server."""
        for link in list(self._serving):
            link.close(1001, "sandbox stopping")
        for link in list(self._serving):
            await link.stop()

    async def serve(self, websocket: WebSocket) -> None:
        """Run one signalling socket from handshake to disconnect (``/stream/channels/{id}``)."""
        channel = self.channel(str(websocket.path_params["channel_id"]))
        if channel is None:
            self.counters["signalling_refused"] += 1
            await refuse_unknown_channel(
                websocket,
                self._world.correlation_ids.uuid(),
                str(websocket.path_params["channel_id"]),
            )
            return
        await websocket.accept()
        self._sequence += 1
        extensions = websocket.scope.get("extensions") or {}
        link = SignallingLink(
            f"signalling-{self._sequence}",
            channel.user_id,
            channel.id,
            websocket,
            extensions.get(self._transport_extension),
        )
        old = self._links.get(channel.user_id)
        self._links[channel.user_id] = link
        self._serving.add(link)
        link.start()
        self.counters["signalling_opened"] += 1
        if old is not None and not old.closing:
            old.close(CLOSE_DISPLACED.code, CLOSE_DISPLACED.reason)
            self.counters["signalling_displaced"] += 1
        self._notify(self._handler.signalling_opened, channel.user_id)
        try:
            await self._read(link)
        finally:
            self._serving.discard(link)
            await link.stop()
            if self._links.get(channel.user_id) is link:
                del self._links[channel.user_id]
                self._notify(self._handler.signalling_closed, channel.user_id)
            self.counters["signalling_closed"] += 1

    async def _read(self, link: SignallingLink) -> None:
        while True:
            try:
                message = await link.websocket.receive()
            except (OSError, RuntimeError):  # the transport was aborted under us
                return
            if message["type"] == "websocket.disconnect":
                return
            link.frames_received += 1
            if self._links.get(link.agent_id) is not link:
                continue  # displaced: whatever it still says no longer counts
            text = message.get("text")
            if text is None:
                link.send(error_frame("bad.request", "Binary frames are not part of the protocol."))
                continue
            self._on_text(link, text)

    def _on_text(self, link: SignallingLink, text: str) -> None:
        try:
            message = parse_client_frame(text)
        except FrameError as exc:
            self.counters["frames_refused"] += 1
            link.send(error_frame(exc.code or "bad.request", str(exc), exc.session_id))
            return
        if isinstance(message, Ping):
            link.send(pong_frame(message.id))
            return
        self.counters[f"received_{type(message).__name__.lower()}"] += 1
        try:
            self._handler.signalling_received(link.agent_id, message)
        except FrameError as exc:
            self.counters["frames_refused"] += 1
            link.send(error_frame(exc.code or "bad.request", str(exc), exc.session_id))
        except Exception:
            logger.exception("signalling handler failed on %r", message)
            link.send(error_frame("internal.error", "The sandbox failed to handle the frame."))

    def _notify(self, callback: Callable[[str], None], agent_id: str) -> None:
        try:
            callback(agent_id)
        except Exception:
            logger.exception("signalling handler failed for agent %s", agent_id)

    def describe(self) -> dict[str, Any]:
        """JSON-ready facts for the sandbox state: channels and sockets."""
        now = self._world.clock.monotonic()
        return {
            "channels": [
                {
                    "id": c.id,
                    "userId": c.user_id,
                    "expires": wire.iso_utc(c.expires_wall),
                    "expiresIn": round(c.expires_at - now, 3),
                }
                for c in self._channels.values()
            ],
            "sockets": [link.describe() for link in self._serving],
            "counters": dict(self.counters),
        }
