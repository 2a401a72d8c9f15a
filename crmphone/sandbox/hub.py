"""The live half of the sandbox: WebSockets, event fan-out, the expiry sweep.

:class:`Sandbox` owns the pure :class:`~crmphone.sandbox.world.World`, the call generator, the
media edge (:mod:`~crmphone.sandbox.edge`, with the softphones' signalling sockets), the fault
controls and one :class:`SocketLink` per open notification WebSocket. It runs on one event loop; call its
methods from that loop (a :class:`~crmphone.sandbox.server.SandboxThread` offers ``invoke`` for
other threads).

Each link has its own unbounded send queue and sender task, so :meth:`Sandbox.publish` never
waits for a slow socket: it enqueues the identical frame text on every subscribed live socket and
returns. Frames leave each socket in the order they were enqueued; a close is queued behind the
frames before it, so nothing published before a (graceful) close is lost.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
from collections.abc import Iterable
from typing import Any

import attrs
from starlette.websockets import WebSocket

from crmphone.clock import Clock, SystemClock
from crmphone.errors import NotFoundError

from . import wire
from .calls import CallGenerator
from .config import SandboxConfig
from .edge import MediaEdge
from .faults import Faults
from .links import QueuedSocket, refuse_unknown_channel
from .world import CLOSE_CHANNEL_REMOVED, Agent, CloseSocket, Queue, World

__all__ = ["TRANSPORT_EXTENSION", "Emitted", "Sandbox", "SocketLink"]

logger = logging.getLogger(__name__)

TRANSPORT_EXTENSION = "crmphone.sandbox.transport"
"""ASGI scope extension under which the sandbox's server exposes a WebSocket's TCP transport."""


@attrs.frozen
class Emitted:
    """One topic event as published: the ledger entry tests compare deliveries against.

    ``channel_ids`` are the channels whose live, non-silenced socket(s) were handed the frame;
    ``text`` is the exact frame text every one of them receives.
    """

    topic_name: str
    correlation_id: str
    event_body: Any
    channel_ids: tuple[str, ...]
    text: str = attrs.field(default="", repr=False, eq=False)
    emitted_at: float = attrs.field(default=0.0, eq=False)


class SocketLink(QueuedSocket):
    """One open notification WebSocket: send queue, heartbeat timer, and the switches faults flip.

    Created by :meth:`Sandbox.serve_socket` when a client connects; gone when it disconnects.
    """

    def __init__(
        self,
        socket_id: str,
        channel_id: str,
        websocket: WebSocket,
        transport: asyncio.Transport | None,
        sandbox: Sandbox,
    ) -> None:
        super().__init__(socket_id, websocket, transport)
        self.channel_id = channel_id
        self.silenced = False
        self.peer_close: tuple[int, str] | None = None
        self._sandbox = sandbox
        self._timers: list[asyncio.TimerHandle] = []

    def start(self) -> None:
        """Start the sender and the heartbeat timer."""
        super().start()
        self._tasks.append(
            asyncio.get_running_loop().create_task(
                self._heartbeat_forever(), name=f"sandbox-{self.id}-heartbeat"
            )
        )

    async def stop(self) -> None:
        """Cancel the sender, heartbeats and pending delayed closes (the socket has ended)."""
        for timer in self._timers:
            timer.cancel()
        await super().stop()

    def close_later(self, delay: float, code: int, reason: str) -> None:
        """Close the socket ``delay`` seconds from now; frames keep flowing until then."""
        loop = asyncio.get_running_loop()
        self._timers.append(loop.call_later(delay, self.close, code, reason))

    def silence(self) -> None:
        """Go dead but stay open: no heartbeats, events or pongs; stop reading the socket.

        Reading stops at the TCP level, so even WebSocket protocol pings go unanswered.
        """
        self.silenced = True
        if self.transport is not None:
            self.transport.pause_reading()

    def unsilence(self) -> None:
        """Undo :meth:`silence`: heartbeats, events and reading resume."""
        self.silenced = False
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    async def _heartbeat_forever(self) -> None:
        interval = self._sandbox.config.heartbeat_interval
        while True:
            await asyncio.sleep(interval)
            if not self.silenced and self.send(wire.HEARTBEAT_FRAME):
                self._sandbox.world.counters["heartbeats_sent"] += 1

    def describe(self) -> dict[str, Any]:
        """JSON-ready facts for the sandbox state."""
        return {
            "id": self.id,
            "channelId": self.channel_id,
            "silenced": self.silenced,
            "closing": self.closing,
            "framesSent": self.frames_sent,
            "queued": self.queued,
            "closeRequested": list(self.close_requested) if self.close_requested else None,
        }


class Sandbox:
    """The sandbox platform's world plus its live machinery and controls.

    ``world`` holds the rules, ``calls`` places and drives calls, ``edge`` is the media edge the
    softphones connect to, ``faults`` breaks things on purpose, ``ledger`` lists the topic events
    published (the latest ``ledger_limit``). Start it with :meth:`start` on a
    running loop (the servers do this) and stop it with :meth:`close`.
    """

    def __init__(self, config: SandboxConfig | None = None, clock: Clock | None = None) -> None:
        self.config = config if config is not None else SandboxConfig()
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.world = World(self.config, self.clock)
        self.ledger: collections.deque[Emitted] = collections.deque(
            maxlen=self.config.ledger_limit or None
        )
        self.calls = CallGenerator(self.world, self.publish, self.config, self.clock)
        self.edge = MediaEdge(
            self.world,
            self.publish,
            self.config,
            self.clock,
            transport_extension=TRANSPORT_EXTENSION,
        )
        self.edge.attach(self.calls)
        self.faults = Faults(self)
        self._links: dict[str, SocketLink] = {}
        self._sweeper: asyncio.Task[None] | None = None

    @property
    def agents(self) -> tuple[Agent, ...]:
        """The organisation's agents (id, name, email, station_id)."""
        return self.world.agents

    @property
    def queues(self) -> tuple[Queue, ...]:
        """The organisation's ACD queues."""
        return self.world.queues

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Start the expiry sweep, the media edge and the background call generator (idempotent)."""
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().create_task(
                self._sweep_forever(), name="sandbox-sweeper"
            )
        await self.edge.start()
        self.calls.start()

    async def close(self) -> None:
        """Stop the sweep, the calls, the media edge (every peer connection and relay) and every
        socket's timers (sockets close with the server)."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        await self.calls.close()
        await self.edge.close()
        await asyncio.gather(*(link.stop() for link in list(self._links.values())))

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.config.sweep_interval)
            try:
                self.apply(self.world.sweep())
            except Exception:
                logger.exception("sandbox expiry sweep failed")

    # ------------------------------------------------------------------ events

    def publish(self, topic: str, body: Any) -> Emitted:
        """Send one topic event to every channel subscribed to ``topic``; returns its ledger entry.

        One correlation id per event; the identical frame text goes to each subscribed channel's
        live, non-silenced socket(s). Never waits for a socket.
        """
        correlation_id = self.world.correlation_ids.uuid()
        text = wire.event_frame(topic, body, correlation_id)
        delivered = []
        for channel_id, socket_ids in self.world.subscribed_sockets(topic):
            handed = False
            for socket_id in socket_ids:
                link = self._links.get(socket_id)
                if link is not None and not link.silenced and link.send(text):
                    handed = True
            if handed:
                delivered.append(channel_id)
        emitted = Emitted(
            topic, correlation_id, body, tuple(delivered), text, self.clock.monotonic()
        )
        self.ledger.append(emitted)
        self.world.counters["events_published"] += 1
        return emitted

    def links(self, channel_id: str | None = None) -> list[SocketLink]:
        """Open WebSocket links (of one channel, or all), oldest first, closing ones excluded."""
        return [
            link
            for link in self._links.values()
            if not link.closing and channel_id in (None, link.channel_id)
        ]

    def apply(self, closes: Iterable[CloseSocket]) -> None:
        """Carry out the world's close actions on the matching links."""
        for action in closes:
            link = self._links.get(action.socket_id)
            if link is not None:
                link.close(action.close.code, action.close.reason, action.notice)

    # ------------------------------------------------------------------ WebSocket endpoint

    async def serve_socket(self, websocket: WebSocket) -> None:
        """Run one channel WebSocket from handshake to disconnect (the ``/channels/{id}`` route).

        Unknown or expired channels are refused with HTTP 404 before the upgrade.
        """
        channel_id = str(websocket.path_params["channel_id"])
        if not self.world.has_channel(channel_id):
            self.world.counters["sockets_refused"] += 1
            await refuse_unknown_channel(websocket, self.world.correlation_ids.uuid(), channel_id)
            return
        await websocket.accept()
        try:
            record, closes = self.world.open_socket(channel_id)
        except NotFoundError:  # removed while the handshake was in flight
            await websocket.close(CLOSE_CHANNEL_REMOVED.code, CLOSE_CHANNEL_REMOVED.reason)
            return
        extensions = websocket.scope.get("extensions") or {}
        transport = extensions.get(TRANSPORT_EXTENSION)
        link = SocketLink(record.id, channel_id, websocket, transport, self)
        self._links[record.id] = link
        link.start()
        self.apply(closes)
        try:
            await self._read(link)
        finally:
            self.world.close_socket(record.id)
            self._links.pop(record.id, None)
            self.world.counters["sockets_closed"] += 1
            await link.stop()

    async def _read(self, link: SocketLink) -> None:
        while True:
            message = await link.websocket.receive()
            if message["type"] == "websocket.disconnect":
                link.peer_close = (int(message.get("code", 1005)), str(message.get("reason") or ""))
                return
            if link.silenced:
                # uvicorn resumes reading after each message; a dead link must stay deaf.
                link.silence()
                continue
            text = message.get("text")
            if text is None:
                self.world.counters["client_frames_ignored"] += 1
                logger.info("socket %s: ignored a binary frame from the client", link.id)
                continue
            self._on_text(link, text)

    def _on_text(self, link: SocketLink, text: str) -> None:
        try:
            payload = json.loads(text)
        except ValueError:
            payload = None
        if isinstance(payload, dict) and payload.get("message") == "ping":
            if link.send(wire.PONG_FRAME):
                self.world.counters["pings_answered"] += 1
            return
        self.world.counters["client_frames_ignored"] += 1
        logger.info("socket %s: ignored a client frame: %.80r", link.id, text)

    # ------------------------------------------------------------------ diagnosis

    def state(self) -> dict[str, Any]:
        """Everything ``GET /sandbox/state`` shows: channels, sockets, counters, faults, calls."""
        state = self.world.snapshot()
        state["liveSockets"] = [link.describe() for link in self._links.values()]
        state["faults"] = [record.to_json() for record in self.faults.records]
        state["ledgerSize"] = len(self.ledger)
        state["signalling"] = self.edge.signalling.describe()
        state["agents"] = [
            {"id": a.id, "name": a.name, "email": a.email, "stationId": a.station_id}
            for a in self.agents
        ]
        state["queues"] = [{"id": q.id, "name": q.name} for q in self.queues]
        state["conversations"] = [
            {
                "id": c.id,
                "agentId": c.agent_id,
                "direction": c.direction.value,
                "phase": c.phase.value,
                "agentState": c.agent.state.value,
            }
            for c in self.calls.conversations
        ]
        return state
