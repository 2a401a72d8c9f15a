"""The sandbox's media edge: one aiortc peer per agent station, kept up between calls.

The edge plays the platform's side of a WebRTC softphone (PROTOCOLS.md §1, "Persistent
connection"), with the first-call signalling of :mod:`~crmphone.sandbox.signalling`:

* **First call.** A call alerts an agent whose station has no connection while the agent's
  signalling socket is open: the alerting events go out as always *and* the socket gets
  ``propose(purpose="call")``. ``proceed`` → the edge creates its peer connection (one ``sendrecv``
  audio transceiver, ICE host candidates on ``media_host`` only) and sends ``offer``; ``answer`` →
  ICE and DTLS; when the connection is ``connected`` the edge answers the call for the agent and
  puts the caller's voice (a tone, distinct per call) on its sender. ``reject`` rejects the call.
* **Later calls** while the connection is up send nothing on the socket: the softphone answers
  with the REST ``PATCH``, and inside that request the edge switches the caller's tone onto the
  existing sender (``replaceTrack``) and starts recording what the agent sends. When the call ends
  the sender goes back to a silent track that produces no RTP, the agent's audio is analysed
  (its dominant frequency) and the idle timer restarts. A station without persistent connections
  gets ``terminate(reason="call_ended")`` and loses its connection after every call.
* **Set-up at login.** When an agent with ``routing:conversation:acceptOffQueue`` on a persistent
  station opens its signalling socket, the edge proposes a silent ``persistent-setup``.
* **Idle timeout.** While a connection is ``PERSISTED`` (up, no call) a timer of the station's
  timeout runs; it restarts at every call's start and end. On expiry the edge sends
  ``terminate(reason="idle_timeout")`` and closes; the next call is a first call again.
* **Stale connections.** A signalling socket that closes without ``terminate`` leaves the edge
  believing the connection is up until the timeout, even when its ICE dies: calls are delivered
  "over the existing connection" (alerting only) and fail for want of an answer. This is the
  failure real platforms have; :meth:`MediaEdge.stale_client` provokes it.

Every change of a persistent station's connection is published on
``v2.users.{id}.persistentconnection``:

.. code-block:: text

    (none) ──first call connected──▶ ACTIVE_CALL ──call ends──▶ PERSISTED ──call answered──▶ ACTIVE_CALL
    (none) ──persistent-setup connected──▶ PERSISTED
    PERSISTED ──idle timeout / client terminate (manual, logout, idle_timeout)──▶ DISCONNECTED
    any ──client terminate (media_failure) / edge peer connection failed or closed──▶ FAILED

Stations without persistent connections publish nothing. The edge keeps statistics per station
(:meth:`MediaEdge.stats`, ``GET /sandbox/stats``): peer connections created, DTLS handshakes, calls
over an existing connection or with a new one, and per call the caller's tone, the alerting,
connected and first-agent-RTP times, the answer latency and the agent's tone.

With ``media_relay`` (or any ``media_delay``) each peer connection's media crosses a
:class:`~crmphone.sandbox.relay.UdpRelay`: the offer's candidates are rewritten to the relay's
client-facing address and the answer's to its edge-facing one.

Timers run on the event loop (like the call generator's); ``alertingAt`` and ``connectedAt`` come
from the sandbox clock's wall time and ``firstAgentRtpAt`` from the real arrival of the packet, so
latencies are meaningful with the default system clock only. aiortc is imported when the first
peer connection is made: a sandbox without the ``phone`` extra serves everything else.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import logging
import random
from collections.abc import Coroutine
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import attrs

from crmphone.clock import Clock
from crmphone.errors import BadRequestError, NotFoundError

from . import wire
from .calls import CallGenerator, Publisher
from .config import SandboxConfig
from .conversation import CallDirection, Conversation, Move, Phase
from .relay import UdpRelay
from .signalling import (
    Answer,
    FrameError,
    Proceed,
    Reject,
    SignallingServer,
    Terminate,
    TerminateReason,
    error_frame,
    offer_frame,
    propose_frame,
    terminate_frame,
)
from .world import ACCEPT_OFF_QUEUE, Agent, IdSource, World

if TYPE_CHECKING:
    from crmphone.audio import AudioCapture

__all__ = ["CALL_HISTORY", "TONE_FREQUENCIES", "MediaEdge", "PersistentState"]

logger = logging.getLogger(__name__)

CALL_HISTORY = 200
"""Calls kept per station in the statistics."""

TONE_FREQUENCIES = tuple(range(300, 3001, 100))
"""The callers' tones (Hz). A station never hears the same one twice within ten calls, and two
calls in a row differ by at least a fifth, so an analysis cannot mistake one for the other."""

_DISTINCT_TONES = 10
_TONE_STEP = 1.2
_RECENTLY_CLOSED = 64
_CLOSE_GRACE = 0.2
_FIRST_RTP_WATCH_LIMIT = 86400.0  # cancelled when the call ends; the limit only bounds a leak


class PersistentState(enum.StrEnum):
    """A station's connection as the platform reports it in ``persistentState``."""

    UNKNOWN = "UNKNOWN"
    """No connection yet."""
    PERSISTED = "PERSISTED"
    """Up, no call on it."""
    ACTIVE_CALL = "ACTIVE_CALL"
    """A call rides it."""
    DISCONNECTED = "DISCONNECTED"
    """Ended on purpose: idle timeout, the client's manual stop or logout."""
    FAILED = "FAILED"
    """Ended by a media failure (reported by the client, or the edge's peer connection died)."""


class _Phase(enum.Enum):
    PROPOSED = "proposed"  # propose sent; waiting for proceed or reject
    OFFERING = "offering"  # proceed received; building the peer connection and the offer
    OFFERED = "offered"  # offer sent; waiting for the answer
    CONNECTING = "connecting"  # answer applied; ICE and DTLS under way
    CONNECTED = "connected"
    CLOSED = "closed"


_NEGOTIATING = (_Phase.PROPOSED, _Phase.OFFERING, _Phase.OFFERED)


@attrs.define(eq=False)
class _Session:
    """One signalling session and, from ``proceed`` on, its peer connection."""

    id: str
    purpose: str
    conversation_id: str
    phase: _Phase = _Phase.PROPOSED
    pc: Any = None
    sender: Any = None
    receiver: Any = None
    capture: AudioCapture | None = None
    relay: UdpRelay | None = None
    edge_address: tuple[str, int] | None = None
    media_dropped: bool = False
    connection_state: str = "new"
    proposal: str = attrs.field(default="", repr=False)
    exits: contextlib.AsyncExitStack = attrs.field(factory=contextlib.AsyncExitStack)
    tasks: set[asyncio.Task[Any]] = attrs.field(factory=set)

    def describe(self) -> dict[str, Any]:
        relay = None
        if self.relay is not None:
            stats = self.relay.stats()
            relay = {
                "oneWayDelay": self.relay.one_way_delay,
                "blackhole": self.relay.blackhole,
                "toEdge": _camel_keys(attrs.asdict(stats.to_edge)),
                "toClient": _camel_keys(attrs.asdict(stats.to_client)),
            }
        return {
            "sessionId": self.id,
            "purpose": self.purpose,
            "phase": self.phase.value,
            "peerConnectionState": self.connection_state,
            "mediaDropped": self.media_dropped,
            "relay": relay,
        }


@attrs.define(eq=False)
class _CallMedia:
    """The media record of one call delivered to a station."""

    conversation_id: str
    over_existing: bool
    caller_tone_hz: int
    alerting_at: datetime
    session: _Session | None = attrs.field(default=None, repr=False)
    connected_at: datetime | None = None
    first_agent_rtp_at: datetime | None = None
    agent_tone_hz: float | None = None
    playing: bool = False
    analysed: bool = False
    ended: bool = False
    watcher: asyncio.Task[None] | None = attrs.field(default=None, repr=False)

    @property
    def answer_latency_ms(self) -> float | None:
        """Alerting to two-way audio: ``max(connected, first agent RTP) - alerting``."""
        if self.connected_at is None or self.first_agent_rtp_at is None:
            return None
        done = max(self.connected_at, self.first_agent_rtp_at)
        return round((done - self.alerting_at).total_seconds() * 1000, 3)

    def to_json(self) -> dict[str, Any]:
        return {
            "conversationId": self.conversation_id,
            "overExistingConnection": self.over_existing,
            "callerToneHz": self.caller_tone_hz,
            "alertingAt": _iso(self.alerting_at),
            "connectedAt": _iso(self.connected_at),
            "firstAgentRtpAt": _iso(self.first_agent_rtp_at),
            "answerLatencyMs": self.answer_latency_ms,
            "agentToneHz": self.agent_tone_hz,
        }


@attrs.define(eq=False)
class _Station:
    agent: Agent
    timeout: float
    state: PersistentState = PersistentState.UNKNOWN
    session: _Session | None = None
    active: _CallMedia | None = None
    calls: collections.deque[_CallMedia] = attrs.field(
        factory=lambda: collections.deque(maxlen=CALL_HISTORY)
    )
    recent_tones: collections.deque[int] = attrs.field(
        factory=lambda: collections.deque(maxlen=_DISTINCT_TONES)
    )
    idle_timer: asyncio.TimerHandle | None = None
    blackhole: bool = False
    peer_connections_created: int = 0
    dtls_handshakes: int = 0
    calls_over_existing: int = 0
    calls_with_new: int = 0

    def record(self, conversation_id: str) -> _CallMedia | None:
        for record in reversed(self.calls):
            if record.conversation_id == conversation_id:
                return record
        return None


class MediaEdge:
    """The media edge of one sandbox: stations, their connections, signalling and statistics.

    The sandbox builds it, wires it to the call generator with :meth:`attach`, serves
    :attr:`signalling` on ``/stream/channels/{id}`` and closes it with :meth:`close`. Call every
    method on the sandbox's event loop.
    """

    def __init__(
        self,
        world: World,
        publish: Publisher,
        config: SandboxConfig,
        clock: Clock,
        *,
        transport_extension: str,
    ) -> None:
        self._world = world
        self._publish = publish
        self._config = config
        self._clock = clock
        self.signalling = SignallingServer(world, self, transport_extension=transport_extension)
        """The streaming channels and signalling sockets."""
        self._calls: CallGenerator | None = None
        self._ids = IdSource(random.Random(config.seed + 0xED6E))
        self._tones = random.Random(config.seed + 0x70E5)
        self._stations = {
            agent.id: _Station(agent, config.persistent_timeout) for agent in world.agents
        }
        self._recently_closed: collections.deque[str] = collections.deque(maxlen=_RECENTLY_CLOSED)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closers: set[asyncio.Task[None]] = set()
        self._closed = False

    def attach(self, calls: CallGenerator) -> None:
        """Follow ``calls`` (become its observer) and steer its calls from the softphone's side."""
        self._calls = calls
        calls.observer = self

    # ------------------------------------------------------------------ settings

    def configure(
        self,
        agent_id: str,
        *,
        persistent: bool | None = None,
        timeout: float | None = None,
        accept_off_queue: bool | None = None,
    ) -> None:
        """Change one agent's station at runtime; None leaves a setting as it is.

        ``persistent`` is the station's ``webRtcPersistentEnabled`` (``GET /api/v2/stations/{id}``
        shows it; it takes effect at the next call end or connection set-up), ``timeout`` its idle
        timeout in seconds (a running timer restarts with it), ``accept_off_queue`` whether the
        agent holds ``routing:conversation:acceptOffQueue`` (set-up at the next socket open).
        NotFoundError for an unknown agent, BadRequestError for a bad value.
        """
        station = self._station(agent_id)
        if timeout is not None:
            if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
                raise _bad_request(f"timeout must be a positive number, got {timeout!r}.")
            station.timeout = float(timeout)
            if station.idle_timer is not None:
                self._restart_idle(station)
        if persistent is not None:
            self._world.set_station_persistent(station.agent.station_id, bool(persistent))
        if accept_off_queue is not None:
            self._world.set_permission(agent_id, ACCEPT_OFF_QUEUE, bool(accept_off_queue))

    def persistent_enabled(self, agent_id: str) -> bool:
        """Whether the agent's station keeps its connection between calls."""
        return self._persistent(self._station(agent_id))

    def persistent_state(self, agent_id: str) -> PersistentState:
        """What the platform believes about the agent's connection now."""
        return self._station(agent_id).state

    def agent_tone_hz(self, agent_id: str) -> float | None:
        """The dominant frequency of what the agent has sent since its current call was answered.

        None without a call on the connection, when the agent is silent, or when no single tone
        dominates. At the call's end the same analysis lands in the call's ``agentToneHz``.
        """
        station = self._station(agent_id)
        record = station.active
        if record is None or not record.playing:
            return None
        return self._tone_of(record.session)

    # ------------------------------------------------------------------ statistics

    def stats(self) -> dict[str, Any]:
        """JSON-ready statistics: ``{"stations": [...]}``, one entry per agent station.

        Each has ``stationId``, ``userId``, ``persistentState``, ``persistentEnabled``,
        ``timeoutSeconds``, ``peerConnectionsCreated``, ``dtlsHandshakes``,
        ``callsOverExistingConnection``, ``callsWithNewConnection`` and the last
        :data:`CALL_HISTORY` ``calls`` (``conversationId``, ``overExistingConnection``,
        ``callerToneHz``, ``alertingAt``, ``connectedAt``, ``firstAgentRtpAt``,
        ``answerLatencyMs``, ``agentToneHz``), plus the live ``connection`` (or null).
        """
        return {"stations": [self._station_json(s) for s in self._stations.values()]}

    def station_stats(self, agent_id: str) -> dict[str, Any]:
        """The :meth:`stats` entry of one agent's station."""
        return self._station_json(self._station(agent_id))

    def _station_json(self, station: _Station) -> dict[str, Any]:
        agent = station.agent
        return {
            "stationId": agent.station_id,
            "userId": agent.id,
            "persistentState": station.state.value,
            "persistentEnabled": self._persistent(station),
            "timeoutSeconds": station.timeout,
            "acceptOffQueue": ACCEPT_OFF_QUEUE in self._world.permissions(agent.id),
            "signallingConnected": self.signalling.is_online(agent.id),
            "connection": station.session.describe() if station.session is not None else None,
            "peerConnectionsCreated": station.peer_connections_created,
            "dtlsHandshakes": station.dtls_handshakes,
            "callsOverExistingConnection": station.calls_over_existing,
            "callsWithNewConnection": station.calls_with_new,
            "calls": [record.to_json() for record in station.calls],
        }

    # ------------------------------------------------------------------ faults

    def stale_client(self, agent_id: str) -> tuple[str, ...]:
        """The softphone vanishes without telling: its socket is aborted, its media dropped.

        The edge keeps believing the connection is up until the idle timeout. With a relay the
        station's media path is blackholed; without one the edge stops sending (its sender stays on
        the silent track, even for later calls) and ignores what it receives. Returns what was hit
        (socket id, session id). BadRequestError when the agent has neither a socket nor a
        connection.
        """
        station = self._station(agent_id)
        link = self.signalling.link(agent_id)
        session = station.session
        if link is None and session is None:
            raise _bad_request(
                f"Agent {agent_id} has no softphone: no signalling socket and no connection."
            )
        targets = []
        if link is not None:
            targets.append(link.id)
            link.abort()
        if session is not None:
            targets.append(session.id)
            if session.relay is not None:
                session.relay.blackhole = True
            session.media_dropped = True
            self._silence(session)
        return tuple(targets)

    def media_blackhole(self, agent_id: str, on: bool = True) -> tuple[str, ...]:
        """Lose every datagram both ways on the station's media path (now and for new sessions).

        Needs ``media_relay`` (or a ``media_delay``): BadRequestError otherwise. Returns the
        session hit, if any.
        """
        if not self._config.uses_relay:
            raise _bad_request(
                "media_blackhole needs the media relay: start the sandbox with media_relay=true "
                "(or a media_delay)."
            )
        station = self._station(agent_id)
        station.blackhole = on
        session = station.session
        if session is not None and session.relay is not None:
            session.relay.blackhole = on
            return (session.id,)
        return ()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Nothing runs until a softphone connects; kept for symmetry with :meth:`close`."""
        self._closed = False

    async def close(self) -> None:
        """Close every peer connection, relay and signalling socket; cancel every task."""
        self._closed = True  # from here on nothing new is spawned
        closing = []
        for station in self._stations.values():
            self._cancel_idle(station)
            session, station.session = station.session, None
            if session is not None:
                session.phase = _Phase.CLOSED
                closing.append(self._close_session(session))
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # Sessions already closing finish closing: their peer connections must not leak.
        await asyncio.gather(*closing, *self._closers, return_exceptions=True)
        await self.signalling.close()

    # ------------------------------------------------------------------ the call observer

    def softphone_online(self, agent_id: str) -> bool:
        """True while the agent has a signalling socket or (as the platform believes) a connection."""
        station = self._stations.get(agent_id)
        return self.signalling.is_online(agent_id) or (
            station is not None and station.session is not None
        )

    def call_placed(self, conversation: Conversation, *, auto_answer: bool) -> None:
        """Deliver a new call: over the existing connection, with a ``propose``, or not at all."""
        station = self._stations.get(conversation.agent_id)
        if station is None or self._closed:
            return
        session = station.session
        online = self.signalling.is_online(station.agent.id)
        if session is None and not online:
            return  # plain ringing: no softphone to carry the media
        record = _CallMedia(
            conversation_id=conversation.id,
            over_existing=session is not None,
            caller_tone_hz=self._next_tone(station),
            alerting_at=self._clock.wall(),
        )
        station.calls.append(record)
        if session is not None:
            station.calls_over_existing += 1
            record.session = session
            self._watch_first_rtp(record)
            if conversation.direction is CallDirection.OUTBOUND:
                self._bind(station, record)  # the agent's own call: its leg is live at once
            return
        station.calls_with_new += 1
        session = self._new_session(station, "call", conversation.id)
        record.session = session
        self._propose(station, session, auto_answer=auto_answer)

    def call_moved(self, conversation: Conversation, move: Move) -> None:
        """Bind the call's media when it is answered; release it when the call ends."""
        station = self._stations.get(conversation.agent_id)
        if station is None:
            return
        record = station.record(conversation.id)
        if record is None or record.ended:
            return
        if move is Move.ANSWER:
            self._bind(station, record)
        elif conversation.phase in (Phase.WRAPUP, Phase.CLOSED):
            self._call_ended(station, record)

    # ------------------------------------------------------------------ the signalling handler

    def signalling_opened(self, agent_id: str) -> None:
        """Propose the silent set-up to agents who may take calls off queue.

        A proposal still unanswered (made to a socket this one displaced) is made again here.
        """
        station = self._stations.get(agent_id)
        if station is None or self._closed:
            return
        if station.session is not None:
            if station.session.phase is _Phase.PROPOSED:
                self.signalling.send(agent_id, station.session.proposal)
            return
        if not self._persistent(station) or ACCEPT_OFF_QUEUE not in self._world.permissions(
            agent_id
        ):
            return
        session = self._new_session(station, "persistent-setup", self._ids.uuid())
        self._propose(station, session, auto_answer=True)

    def signalling_closed(self, agent_id: str) -> None:
        """Drop a set-up that can no longer finish; an established connection stays (stale)."""
        station = self._stations.get(agent_id)
        if station is None or station.session is None:
            return
        if station.session.phase in _NEGOTIATING:
            self._end_session(station, station.session)

    def signalling_received(
        self, agent_id: str, message: Proceed | Reject | Answer | Terminate
    ) -> None:
        """Act on ``proceed``, ``reject``, ``answer`` and ``terminate``; FrameError refuses."""
        station = self._station(agent_id)
        session = station.session
        if session is None or session.id != message.session_id:
            if isinstance(message, Terminate) and message.session_id in self._recently_closed:
                return  # both sides ended it at once
            raise FrameError(
                f"No session {message.session_id} for this agent.",
                code="session.not.found",
                session_id=message.session_id,
            )
        if isinstance(message, Terminate):
            self._client_terminated(station, session, message.reason)
            return
        expected = {Proceed: _Phase.PROPOSED, Reject: _Phase.PROPOSED, Answer: _Phase.OFFERED}
        if session.phase is not expected[type(message)]:
            raise FrameError(
                f"Session {session.id} is {session.phase.value}: "
                f"{type(message).__name__.lower()} is not expected now.",
                code="invalid.state",
                session_id=session.id,
            )
        if isinstance(message, Proceed):
            session.phase = _Phase.OFFERING
            self._session_task(session, self._negotiate(station, session), "negotiate")
        elif isinstance(message, Answer):
            session.phase = _Phase.CONNECTING
            self._session_task(session, self._accept(station, session, message.sdp), "accept")
        else:
            self._end_session(station, session)
            if session.purpose == "call":
                self._steer(session.conversation_id, Phase.RINGING, "agent_rejects")

    # ------------------------------------------------------------------ sessions

    def _new_session(self, station: _Station, purpose: str, conversation_id: str) -> _Session:
        session = _Session(self._ids.uuid(), purpose, conversation_id)
        station.session = session
        return session

    def _propose(self, station: _Station, session: _Session, *, auto_answer: bool) -> None:
        setup = session.purpose == "persistent-setup"
        session.proposal = propose_frame(
            session_id=session.id,
            conversation_id=session.conversation_id,
            purpose=session.purpose,
            auto_answer=auto_answer,
            persistent_connection=True if setup else self._persistent(station),
            station_id=station.agent.station_id,
        )
        self.signalling.send(station.agent.id, session.proposal)

    async def _negotiate(self, station: _Station, session: _Session) -> None:
        # aiortc (the ``phone`` extra) is imported only once a softphone needs media.
        from crmphone import _webrtc
        from crmphone.audio import AudioCapture

        try:
            ice = _webrtc.IceSettings(host_addresses=(self._config.media_host,))
            pc = _webrtc.create_peer_connection(ice)
            session.pc = pc
            session.capture = AudioCapture()
            station.peer_connections_created += 1
            pc.on("connectionstatechange", lambda: self._on_connection_state(station, session))
            pc.on("track", lambda track: self._on_track(session, track))
            transceiver = pc.addTransceiver("audio", direction="sendrecv")
            session.sender, session.receiver = transceiver.sender, transceiver.receiver
            self._silence(session)
            dtls = transceiver.sender.transport

            def dtls_changed() -> None:
                if dtls.state == "connected":
                    station.dtls_handshakes += 1

            dtls.on("statechange", dtls_changed)
            for record in station.calls:
                if record.session is session and not record.ended:
                    self._watch_first_rtp(record)
            offer = await pc.createOffer()
            await _webrtc.set_local_description(pc, offer, ice)
            sdp = pc.localDescription.sdp
            if self._config.uses_relay:
                relay = await session.exits.enter_async_context(
                    UdpRelay(
                        one_way_delay=self._config.media_delay,
                        seed=self._config.seed,
                        host=self._config.media_host,
                    )
                )
                relay.blackhole = station.blackhole or session.media_dropped
                session.relay = relay
                session.edge_address = _webrtc.sdp_candidates(sdp)[0]
                # Known now, before the offer leaves: the client's first ICE check may reach
                # the relay before its answer reaches us, and must not be dropped (a dropped
                # check costs aioice's 500 ms retransmission).
                relay.connect(edge=session.edge_address)
                sdp = _webrtc.replace_candidates(sdp, *relay.client_facing)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("media edge: cannot build the offer of session %s", session.id)
            self._fail(station, session, "The media edge could not create its offer.")
            return
        session.phase = _Phase.OFFERED
        self.signalling.send(station.agent.id, offer_frame(session.id, sdp))

    async def _accept(self, station: _Station, session: _Session, sdp: str) -> None:
        from aiortc import RTCSessionDescription

        from crmphone import _webrtc

        if session.relay is not None and session.edge_address is not None:
            candidates = _webrtc.sdp_candidates(sdp)
            if candidates and session.relay.stats().to_edge.datagrams == 0:
                # the client has not spoken yet: until it does, replies go to its candidate
                session.relay.connect(edge=session.edge_address, client=candidates[0])
            sdp = _webrtc.replace_candidates(sdp, *session.relay.edge_facing)
        try:
            await session.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - any refusal of the client's SDP is its error
            logger.info("media edge: session %s: answer refused (%s)", session.id, exc)
            self.signalling.send(
                station.agent.id,
                error_frame("sdp.rejected", f"The answer was not accepted: {exc}", session.id),
            )
            self._fail(station, session, "The softphone's answer was not accepted.")

    def _on_track(self, session: _Session, track: Any) -> None:
        # Every remote track is consumed from the moment it arrives: an unread one grows memory.
        if session.capture is not None and session.phase is not _Phase.CLOSED:
            self._session_task(session, session.capture._consume(track), "capture")

    def _on_connection_state(self, station: _Station, session: _Session) -> None:
        state = str(session.pc.connectionState)
        session.connection_state = state
        if session.phase is _Phase.CLOSED:
            return
        try:
            if state == "connected" and session.phase is _Phase.CONNECTING:
                session.phase = _Phase.CONNECTED
                self._connected(station, session)
            elif state in ("failed", "closed"):
                self._media_failed(station, session, state)
        except Exception:
            logger.exception("media edge: session %s: state %s mishandled", session.id, state)

    def _connected(self, station: _Station, session: _Session) -> None:
        if session.purpose == "call":
            conversation = self._conversation(session.conversation_id)
            if (
                conversation is not None
                and conversation.phase is Phase.RINGING
                and conversation.direction is CallDirection.INBOUND
            ):
                # The softphone took the proposed call: the agent is connected, and the ANSWER
                # move binds the media (call_moved -> _bind).
                self._steer(session.conversation_id, Phase.RINGING, "agent_answers")
                return
            record = station.record(session.conversation_id)
            if (
                conversation is not None
                and conversation.direction is CallDirection.OUTBOUND
                and conversation.phase in (Phase.RINGING, Phase.TALKING)
                and record is not None
            ):
                self._bind(station, record)  # the agent's own call: its leg is live at once
                return
        if station.active is not None and station.active.session is session:
            # Answered while the connection was coming up (a PATCH, an outbound call's customer).
            self._bind(station, station.active)
        elif self._persistent(station):
            self._set_state(station, PersistentState.PERSISTED)
            self._restart_idle(station)
        elif session.purpose != "call":
            # A set-up for a station that stopped persisting meanwhile: nothing will ride it.
            self._end_session(station, session, reason=TerminateReason.CALL_ENDED)

    def _media_failed(self, station: _Station, session: _Session, state: str) -> None:
        if session.media_dropped or not self.signalling.is_online(station.agent.id):
            # The client vanished: like the real platform, the edge goes on believing in the
            # connection until the idle timeout.
            logger.info("media edge: stale session %s went %s; belief kept", session.id, state)
            return
        if state == "closed" and not self._closed:
            # The far end closed DTLS in good order; a terminate it sent just before travels on
            # another socket and may land a moment later. Give it that moment.
            asyncio.get_running_loop().call_later(
                _CLOSE_GRACE, self._closed_without_terminate, station, session
            )
            return
        self._fail(station, session, f"The media edge's peer connection is {state}.")

    def _closed_without_terminate(self, station: _Station, session: _Session) -> None:
        if session.phase is not _Phase.CLOSED:
            self._fail(station, session, "The softphone closed the peer connection unannounced.")

    def _fail(self, station: _Station, session: _Session, message: str) -> None:
        record = station.active if station.active and station.active.session is session else None
        self._end_session(
            station,
            session,
            reason=TerminateReason.MEDIA_FAILURE,
            state=PersistentState.FAILED,
            error={"code": "media_failure", "message": message},
        )
        if record is not None:
            self._steer(record.conversation_id, Phase.TALKING, "agent_hangs_up")

    def _client_terminated(
        self, station: _Station, session: _Session, reason: TerminateReason
    ) -> None:
        established = session.phase is _Phase.CONNECTED
        record = station.active if station.active and station.active.session is session else None
        if reason is TerminateReason.MEDIA_FAILURE:
            state: PersistentState | None = PersistentState.FAILED
            error: dict[str, str] | None = {
                "code": "media_failure",
                "message": "The softphone reported that its media path failed.",
            }
        else:
            state = PersistentState.DISCONNECTED if established else None
            error = None
        self._end_session(station, session, state=state, error=error)
        if record is not None:
            self._steer(record.conversation_id, Phase.TALKING, "agent_hangs_up")
        elif session.purpose == "call":
            self._steer(session.conversation_id, Phase.RINGING, "agent_rejects")

    def _end_session(
        self,
        station: _Station,
        session: _Session,
        *,
        reason: TerminateReason | None = None,
        state: PersistentState | None = None,
        error: dict[str, str] | None = None,
    ) -> None:
        """Close ``session`` now: tell the client (``reason``), publish ``state``, free the media."""
        if session.phase is _Phase.CLOSED:
            return
        session.phase = _Phase.CLOSED
        self._recently_closed.append(session.id)
        if station.session is session:
            station.session = None
            self._cancel_idle(station)
        if station.active is not None and station.active.session is session:
            # The call loses its media; its record keeps what was heard (analysed at its end).
            station.active = None
        if reason is not None:
            self.signalling.send(station.agent.id, terminate_frame(session.id, reason.value))
        if state is not None:
            self._set_state(station, state, error)
        closer = asyncio.get_running_loop().create_task(
            self._close_session(session), name=f"sandbox-edge-close-{session.id}"
        )
        self._closers.add(closer)
        closer.add_done_callback(self._closers.discard)

    async def _close_session(self, session: _Session) -> None:
        tasks = list(session.tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        try:
            if session.pc is not None:
                await session.pc.close()
        except Exception:
            logger.exception("media edge: closing session %s failed", session.id)
        await session.exits.aclose()

    # ------------------------------------------------------------------ calls on a connection

    def _bind(self, station: _Station, record: _CallMedia) -> None:
        """Make ``record`` the call riding the station's connection; play it once connected."""
        session = station.session
        if session is None or session.phase is _Phase.CLOSED:
            return
        if record.connected_at is None:
            record.connected_at = self._clock.wall()
        record.session = session
        previous = station.active
        if previous is not None and previous is not record:
            self._analyse(previous)
        station.active = record
        self._cancel_idle(station)
        if session.phase is not _Phase.CONNECTED or record.playing:
            return
        record.playing = True
        self._play(session, record.caller_tone_hz)
        self._set_state(station, PersistentState.ACTIVE_CALL)

    def _call_ended(self, station: _Station, record: _CallMedia) -> None:
        record.ended = True
        self._stop_watching(record)
        session = record.session
        if record.playing:
            self._analyse(record)
        if station.active is record:
            station.active = None
            if session is not None and session.phase is not _Phase.CLOSED:
                self._silence(session)
        if session is None or session.phase is _Phase.CLOSED or station.session is not session:
            return
        if session.phase is not _Phase.CONNECTED:
            if session.purpose == "call" and session.conversation_id == record.conversation_id:
                # The call ended before its connection came up: withdraw the proposal.
                self._end_session(station, session, reason=TerminateReason.CALL_ENDED)
            return
        if station.active is not None:
            return
        if self._persistent(station):
            self._set_state(station, PersistentState.PERSISTED)
            self._restart_idle(station)
        else:
            self._end_session(
                station,
                session,
                reason=TerminateReason.CALL_ENDED,
                state=PersistentState.DISCONNECTED,
            )

    def _analyse(self, record: _CallMedia) -> None:
        """Fix the call's ``agentToneHz`` (once: the capture moves on to the next call)."""
        if not record.analysed:
            record.analysed = True
            record.agent_tone_hz = self._tone_of(record.session)

    @staticmethod
    def _tone_of(session: _Session | None) -> float | None:
        if session is None or session.capture is None or session.media_dropped:
            return None
        frequency = session.capture.dominant_frequency()
        return None if frequency is None else round(float(frequency), 1)

    def _play(self, session: _Session, frequency: int) -> None:
        from crmphone.audio import Tone, _switch_track

        if session.media_dropped or session.sender is None:
            return
        _switch_track(session.sender, Tone(frequency)._open_track())
        if session.capture is not None:
            session.capture.reset()

    def _silence(self, session: _Session) -> None:
        """Between calls the sender carries a track that produces no RTP at all."""
        from crmphone.audio import _idle_track, _switch_track

        if session.sender is not None:
            _switch_track(session.sender, _idle_track())

    def _watch_first_rtp(self, record: _CallMedia) -> None:
        session = record.session
        if record.watcher is not None or session is None or session.receiver is None:
            return

        async def watch(receiver: Any) -> None:
            from crmphone import _webrtc

            arrived = await _webrtc.first_rtp_at(
                receiver, after=record.alerting_at, within=_FIRST_RTP_WATCH_LIMIT
            )
            if arrived is not None:
                record.first_agent_rtp_at = arrived

        record.watcher = self._session_task(
            session, watch(session.receiver), f"first-rtp-{record.conversation_id}"
        )

    def _stop_watching(self, record: _CallMedia) -> None:
        if record.watcher is not None and not record.watcher.done():
            record.watcher.cancel()

    # ------------------------------------------------------------------ state and timers

    def _set_state(
        self, station: _Station, state: PersistentState, error: dict[str, str] | None = None
    ) -> None:
        if state is station.state and error is None:
            return
        station.state = state
        if not self._persistent(station):
            return
        agent = station.agent
        self._publish(
            f"v2.users.{agent.id}.persistentconnection",
            {
                "userId": agent.id,
                "stationId": agent.station_id,
                "persistentState": state.value,
                "errorInfo": error,
                "eventTime": wire.iso_utc(self._clock.wall()),
            },
        )

    def _restart_idle(self, station: _Station) -> None:
        self._cancel_idle(station)
        session = station.session
        if session is None or self._closed:
            return
        station.idle_timer = asyncio.get_running_loop().call_later(
            station.timeout, self._idle_expired, station, session
        )

    def _cancel_idle(self, station: _Station) -> None:
        if station.idle_timer is not None:
            station.idle_timer.cancel()
            station.idle_timer = None

    def _idle_expired(self, station: _Station, session: _Session) -> None:
        station.idle_timer = None
        if station.session is not session or station.active is not None:
            return
        self._end_session(
            station,
            session,
            reason=TerminateReason.IDLE_TIMEOUT,
            state=PersistentState.DISCONNECTED,
        )

    # ------------------------------------------------------------------ helpers

    def _station(self, agent_id: str) -> _Station:
        station = self._stations.get(agent_id)
        if station is None:
            raise NotFoundError(f"User {agent_id} not found.", status=404, code="not.found")
        return station

    def _persistent(self, station: _Station) -> bool:
        return self._world.station(station.agent.station_id).web_rtc_persistent_enabled

    def _next_tone(self, station: _Station) -> int:
        fresh = [f for f in TONE_FREQUENCIES if f not in station.recent_tones]
        if station.recent_tones:
            last = station.recent_tones[-1]
            fresh = [f for f in fresh if max(f, last) >= _TONE_STEP * min(f, last)]
        tone = self._tones.choice(fresh)
        station.recent_tones.append(tone)
        return tone

    def _conversation(self, conversation_id: str) -> Conversation | None:
        if self._calls is None:
            return None
        try:
            return self._calls.get(conversation_id)
        except NotFoundError:
            return None

    def _steer(self, conversation_id: str, phase: Phase, action: str) -> None:
        """Apply the agent's ``action`` to the call if it is still in ``phase``."""
        conversation = self._conversation(conversation_id)
        if self._calls is None or conversation is None or conversation.phase is not phase:
            return
        getattr(self._calls, action)(conversation_id)

    def _session_task(
        self, session: _Session, coroutine: Coroutine[Any, Any, Any], name: str
    ) -> asyncio.Task[Any] | None:
        task = self._spawn(coroutine, f"sandbox-edge-{session.id}-{name}")
        if task is not None:
            session.tasks.add(task)
            task.add_done_callback(session.tasks.discard)
        return task

    def _spawn(self, coroutine: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any] | None:
        if self._closed:
            coroutine.close()
            return None
        task = asyncio.get_running_loop().create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("media edge task %s failed", task.get_name(), exc_info=task.exception())


def _camel_keys(values: dict[str, Any]) -> dict[str, Any]:
    def camel(name: str) -> str:
        head, *rest = name.split("_")
        return head + "".join(part.title() for part in rest)

    return {camel(key): value for key, value in values.items()}


def _bad_request(message: str) -> BadRequestError:
    return BadRequestError(message, status=400, code="bad.request")


def _iso(moment: datetime | None) -> str | None:
    # Media times are compared at sub-millisecond scale: keep the microseconds (UTC, "Z").
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
