"""One notification-channel WebSocket, without the socket: frames in, values and actions out.

:class:`ChannelProtocol` is the sans-I/O core of a single WebSocket of a notification channel. The
asyncio layer (:mod:`crmphone.notifications.channel`) owns the socket and the timers and drives it:

.. code-block:: python

    proto = ChannelProtocol(ProtocolSettings(), now=clock.monotonic())
    # for every frame the socket delivers:
    message = proto.receive_text(frame, clock.monotonic())   # or receive_bytes(...)
    # whenever clock.monotonic() reaches proto.next_deadline():
    for action in proto.tick(clock.monotonic()):
        match action:
            case SendPing(text=text): await websocket.send(text)
            case Abandon(reason=reason): ...  # close this socket, reconnect

:meth:`ChannelProtocol.receive_text` turns a text frame into exactly one value of
:mod:`crmphone.notifications.messages` and never raises, whatever arrives. Every frame, even a
malformed one, proves the link alive.

Liveness, as a table (``silence`` is the time since the last frame, or since the socket opened when
no frame came yet; ``waited`` the time since our ping):

=====================  ===================================  =============================  ==========
state                  tick(now) when                       action                         next state
=====================  ===================================  =============================  ==========
listening              silence >= heartbeat_timeout         ``SendPing``                   pinging
pinging                any frame arrives                    (none)                         listening
pinging                waited >= pong_timeout               ``Abandon`` (once)             abandoned
abandoned              always                               (none: the socket is done)     abandoned
=====================  ===================================  =============================  ==========

The defaults follow Genesys Cloud: a heartbeat about every 30 s, so 35 s of silence earns a ping,
and a ping unanswered for 5 s means the socket is dead.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any, Final

import attrs

from crmphone.notifications.messages import (
    ChannelMetadata,
    Heartbeat,
    MalformedFrame,
    Message,
    NoLongerSubscribed,
    Pong,
    SocketClosing,
    TokenRevoked,
    TopicEvent,
)

__all__ = [
    "PING_TEXT",
    "Abandon",
    "Action",
    "ChannelProtocol",
    "MalformedReason",
    "ProtocolSettings",
    "ProtocolStats",
    "SendPing",
    "excerpt",
]


def _pick_loads() -> Callable[[str], Any]:
    """Return the fastest JSON decoder available: orjson's when installed, else the stdlib's."""
    try:
        import orjson
    except ImportError:  # pragma: no cover - orjson is a dev dependency here
        return json.loads
    return orjson.loads


# Both decoders raise ValueError subclasses on bad input; the stdlib one raises RecursionError on
# deep nesting (orjson stops at depth 1024 with a ValueError).
_loads: Final = _pick_loads()

PING_TEXT: Final = '{"message":"ping"}'
"""The health check Genesys Cloud answers with ``channel.metadata`` "pong"."""

_METADATA_TOPIC: Final = "channel.metadata"
_SYSTEM_PREFIX: Final = "v2.system."
_SOCKET_CLOSING: Final = "v2.system.socket_closing"
_NO_LONGER_SUBSCRIBED: Final = "v2.system.no_longer_subscribed"
_TOKEN_REVOKED: Final = "v2.system.token_revoked"  # noqa: S105 - a topic name, not a secret
_HEARTBEAT_MESSAGE: Final = "WebSocket Heartbeat"
_PONG_MESSAGE: Final = "pong"
_EXCERPT_CHARS: Final = 120
_MISSING: Final = object()


class MalformedReason:
    """The reason kinds of :class:`MalformedFrame`, and the keys of ``ProtocolStats.malformed``.

    A too-large frame's full reason also carries its size (``"frame too large (N bytes > M)"``);
    the statistics count it under :attr:`TOO_LARGE` so the counter keys stay few.
    """

    NOT_JSON: Final = "not JSON"
    NOT_OBJECT: Final = "not a JSON object"
    NO_TOPIC: Final = "no topicName"
    TOPIC_NOT_STRING: Final = "topicName is not a string"
    NO_EVENT_BODY: Final = "eventBody missing"
    TOO_LARGE: Final = "frame too large"
    BINARY: Final = "binary frame"


def _positive(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    """attrs validator: a finite number greater than zero."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{attribute.name} must be a number, not {type(value).__name__}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{attribute.name} must be a finite number > 0, not {value!r}")


@attrs.frozen
class ProtocolSettings:
    """Timeouts and limits of one channel WebSocket.

    ``heartbeat_timeout``: seconds of silence (no frame at all) before we send a ping; Genesys
    Cloud sends a heartbeat about every 30 s. ``pong_timeout``: seconds a ping may stay
    unanswered (no frame at all) before the socket is abandoned. ``max_frame_size``: the largest
    text frame accepted, in UTF-8 bytes; larger ones become :class:`MalformedFrame`.
    """

    heartbeat_timeout: float = attrs.field(default=35.0, validator=_positive)
    pong_timeout: float = attrs.field(default=5.0, validator=_positive)
    max_frame_size: int = attrs.field(default=1 << 20, validator=_positive)


@attrs.frozen
class SendPing:
    """Action: send ``text`` as a text frame now; the server should answer with a pong."""

    text: str = PING_TEXT


@attrs.frozen
class Abandon:
    """Action: this socket is dead (``reason`` says how long it was silent); close it, reconnect.

    Emitted once per :class:`ChannelProtocol`; afterwards :meth:`ChannelProtocol.tick` returns
    nothing.
    """

    reason: str


Action = SendPing | Abandon


@attrs.define
class ProtocolStats:
    """Counters of one socket, and when it last showed signs of life (monotonic seconds).

    ``frames`` counts every frame received (malformed ones too); ``events`` the
    :class:`TopicEvent` values among them; ``malformed`` maps a :class:`MalformedReason` kind to
    its count.
    """

    opened_at: float
    frames: int = 0
    events: int = 0
    heartbeats: int = 0
    pongs: int = 0
    pings_sent: int = 0
    malformed: dict[str, int] = attrs.field(factory=dict)
    last_frame_at: float | None = None
    last_heartbeat_at: float | None = None


def excerpt(text: str) -> str:
    """Return the first 120 characters of ``text`` with non-printable characters escaped."""
    head = text[:_EXCERPT_CHARS]
    if head.isprintable():
        return head
    # ascii() escapes one character as Python would ('\n', '\x00', '\ud800'); strip its quotes.
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in head)


def _utf8_size(text: str) -> int:
    """Return the size of ``text`` in UTF-8; lone surrogates count as the 3 bytes they would take."""
    return len(text.encode("utf-8", "surrogatepass"))


def _message_text(value: object) -> str:
    """Return a ``channel.metadata`` message as text: strings verbatim, anything else as JSON."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    try:
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    except (ValueError, TypeError, RecursionError):
        return type(value).__name__


def _version_text(value: object) -> str | None:
    """Return the frame's ``version`` as text: strings verbatim, numbers converted, else None."""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def _is_topic_family(topic: str, base: str) -> bool:
    """Return whether ``topic`` is ``base`` or ``base.<something>`` (for the system topics)."""
    return topic == base or (topic.startswith(base) and topic[len(base)] == ".")


@attrs.define(init=False)
class ChannelProtocol:
    """The state of one channel WebSocket: parses its frames and watches its liveness.

    Create one per socket, right after the WebSocket opened, with ``now`` = monotonic seconds.
    Feed every received frame to :meth:`receive_text` / :meth:`receive_bytes`; call :meth:`tick`
    whenever the monotonic clock reaches :meth:`next_deadline` and carry out the actions it
    returns. Nothing here blocks, sleeps or raises on remote input.
    """

    settings: ProtocolSettings
    stats: ProtocolStats
    _alive_at: float
    _ping_sent_at: float | None
    _abandoned: bool

    def __init__(self, settings: ProtocolSettings, now: float) -> None:
        """Start watching a socket that opened at ``now`` (monotonic seconds)."""
        self.settings = settings
        self.stats = ProtocolStats(opened_at=now)
        # When the link last proved alive: the last frame, or the opening before any frame.
        self._alive_at = now
        self._ping_sent_at = None
        self._abandoned = False

    @property
    def abandoned(self) -> bool:
        """True once :meth:`tick` returned :class:`Abandon`: the socket is to be closed."""
        return self._abandoned

    @property
    def ping_outstanding(self) -> bool:
        """True while a ping we sent has seen no frame since."""
        return self._ping_sent_at is not None

    # -- frames ------------------------------------------------------------------------------

    def receive_text(self, text: str, now: float) -> Message:
        """Parse one text frame received at ``now`` into exactly one message value.

        Topic events become :class:`TopicEvent`; heartbeats, pongs, other ``channel.metadata``
        and the ``v2.system.*`` notices become their own values; anything not understood becomes
        :class:`MalformedFrame` (counted in :attr:`stats`). Never raises. Any frame counts as a
        sign of life and clears an outstanding ping.
        """
        stats = self.stats
        stats.frames += 1
        stats.last_frame_at = now
        self._alive_at = now
        self._ping_sent_at = None

        limit = self.settings.max_frame_size
        # A character takes at most 4 UTF-8 bytes: encode only when the frame could be too big.
        if len(text) * 4 > limit:
            size = _utf8_size(text)
            if size > limit:
                return self._malformed(
                    MalformedReason.TOO_LARGE,
                    f"frame too large ({size} bytes > {limit})",
                    text,
                    size,
                )
        try:
            frame = _loads(text)
        except (ValueError, RecursionError):
            return self._malformed(MalformedReason.NOT_JSON, None, text)
        if type(frame) is not dict:
            return self._malformed(MalformedReason.NOT_OBJECT, None, text)

        topic = frame.get("topicName")
        if type(topic) is not str:
            if topic is None:
                return self._malformed(MalformedReason.NO_TOPIC, None, text)
            return self._malformed(MalformedReason.TOPIC_NOT_STRING, None, text)
        if topic == _METADATA_TOPIC:
            return self._metadata(frame.get("eventBody"), now)
        if topic.startswith(_SYSTEM_PREFIX):
            system = self._system(topic, frame.get("eventBody"))
            if system is not None:
                return system
        elif not topic:
            return self._malformed(MalformedReason.NO_TOPIC, None, text)

        # The hot path: a subscribed topic's event. Type checks only, one allocation.
        body = frame.get("eventBody", _MISSING)
        if body is _MISSING:
            return self._malformed(MalformedReason.NO_EVENT_BODY, None, text)
        version = frame.get("version")
        if version is not None and type(version) is not str:
            version = _version_text(version)
        correlation_id = None
        metadata = frame.get("metadata")
        if type(metadata) is dict:
            correlation_id = metadata.get("CorrelationId")
            if type(correlation_id) is not str:
                correlation_id = None
        stats.events += 1
        return TopicEvent(topic, body, version, correlation_id, text)

    def receive_bytes(self, data: bytes, now: float) -> MalformedFrame:
        """Account for a binary frame received at ``now``: not part of the protocol, but alive."""
        stats = self.stats
        stats.frames += 1
        stats.last_frame_at = now
        self._alive_at = now
        self._ping_sent_at = None
        head = data[:_EXCERPT_CHARS]
        return self._count(
            MalformedReason.BINARY,
            MalformedFrame(MalformedReason.BINARY, excerpt(repr(head)), len(data)),
        )

    def _metadata(self, body: object, now: float) -> Heartbeat | Pong | ChannelMetadata:
        """Classify a ``channel.metadata`` frame by its ``eventBody.message``."""
        message = body.get("message") if type(body) is dict else None
        if message == _HEARTBEAT_MESSAGE:
            self.stats.heartbeats += 1
            self.stats.last_heartbeat_at = now
            return Heartbeat()
        if message == _PONG_MESSAGE:
            self.stats.pongs += 1
            return Pong()
        return ChannelMetadata(_message_text(message))

    def _system(
        self, topic: str, body: object
    ) -> SocketClosing | NoLongerSubscribed | TokenRevoked | None:
        """Classify a ``v2.system.*`` notice; None for system topics we do not know."""
        # The notices matter whatever their body looks like, so an odd body becomes {}.
        mapping: dict[str, Any] = body if type(body) is dict else {}
        if _is_topic_family(topic, _SOCKET_CLOSING):
            return SocketClosing(mapping)
        if _is_topic_family(topic, _NO_LONGER_SUBSCRIBED):
            reason = mapping.get("reason")
            return NoLongerSubscribed(topic, reason if isinstance(reason, str) else None, mapping)
        if _is_topic_family(topic, _TOKEN_REVOKED):
            return TokenRevoked(topic, mapping)
        return None

    def _malformed(
        self, kind: str, reason: str | None, text: str, size: int | None = None
    ) -> MalformedFrame:
        """Build and count a :class:`MalformedFrame` for ``text``."""
        frame = MalformedFrame(
            reason or kind, excerpt(text), _utf8_size(text) if size is None else size
        )
        return self._count(kind, frame)

    def _count(self, kind: str, frame: MalformedFrame) -> MalformedFrame:
        """Count a malformed frame under its reason kind and return it."""
        malformed = self.stats.malformed
        malformed[kind] = malformed.get(kind, 0) + 1
        return frame

    # -- liveness ----------------------------------------------------------------------------

    def tick(self, now: float) -> list[Action]:
        """Decide, at ``now``, whether the link needs a ping or is dead; return the actions.

        Returns ``[SendPing]`` after ``heartbeat_timeout`` of silence (the ping counts as sent
        at ``now``: send it right away), ``[Abandon]`` once when that ping saw no frame within
        ``pong_timeout``, and ``[]`` otherwise (always, after the abandon). Calling it early or
        often is harmless.
        """
        if self._abandoned:
            return []
        settings = self.settings
        ping_sent_at = self._ping_sent_at
        if ping_sent_at is None:
            if now >= self._alive_at + settings.heartbeat_timeout:
                self._ping_sent_at = now
                self.stats.pings_sent += 1
                return [SendPing()]
            return []
        if now >= ping_sent_at + settings.pong_timeout:
            self._abandoned = True
            return [Abandon(self._silence_report(now, ping_sent_at))]
        return []

    def next_deadline(self) -> float:
        """Return the monotonic time at which :meth:`tick` next has something to decide.

        The I/O layer sleeps until then (or until a frame arrives, which moves it later).
        ``math.inf`` once the socket is abandoned.
        """
        if self._abandoned:
            return math.inf
        if self._ping_sent_at is not None:
            return self._ping_sent_at + self.settings.pong_timeout
        return self._alive_at + self.settings.heartbeat_timeout

    def _silence_report(self, now: float, ping_sent_at: float) -> str:
        """Describe the measured silence for :class:`Abandon` and the logs."""
        waited = now - ping_sent_at
        if self.stats.last_frame_at is None:
            silence = now - self.stats.opened_at
            return (
                f"no frame since the socket opened {silence:.1f} s ago; "
                f"ping unanswered for {waited:.1f} s"
            )
        silence = now - self.stats.last_frame_at
        return f"no frame for {silence:.1f} s; ping unanswered for {waited:.1f} s"
