"""What a notification channel frame can mean, as frozen values.

The sans-I/O protocol (:mod:`crmphone.notifications.protocol`) turns each received frame into exactly
one of these. Only :class:`TopicEvent` is delivered to applications; the others steer the channel.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

__all__ = [
    "ChannelMetadata",
    "Heartbeat",
    "MalformedFrame",
    "Message",
    "NoLongerSubscribed",
    "Pong",
    "SocketClosing",
    "TokenRevoked",
    "TopicEvent",
]


@attrs.frozen
class Heartbeat:
    """``channel.metadata`` "WebSocket Heartbeat": the server is alive (about every 30 s)."""


@attrs.frozen
class Pong:
    """``channel.metadata`` "pong": the answer to our ``{"message": "ping"}`` health check."""


@attrs.frozen
class ChannelMetadata:
    """Any other ``channel.metadata`` message; kept verbatim for diagnosis."""

    message: str


@attrs.frozen
class SocketClosing:
    """``v2.system.socket_closing``: the server will close this socket soon (maintenance).

    The channel should move to a replacement socket at once (make-before-break).
    """

    event_body: Mapping[str, Any]


@attrs.frozen
class NoLongerSubscribed:
    """``v2.system.no_longer_subscribed.{id}``: this channel no longer receives its topics.

    ``reason`` is the platform's reason when it gave one (``another_channel_subscribed``,
    ``user_tokens_revoked``); the channel must get a fresh token and channel, then resubscribe.
    """

    topic_name: str
    reason: str | None
    event_body: Mapping[str, Any]


@attrs.frozen
class TokenRevoked:
    """``v2.system.token_revoked.{id}``: the token behind this channel is no longer valid."""

    topic_name: str
    event_body: Mapping[str, Any]


@attrs.frozen
class TopicEvent:
    """An event on a subscribed topic: what applications receive.

    ``event_body`` is the platform's ``eventBody`` unchanged; ``correlation_id`` comes from
    ``metadata.CorrelationId`` when present. ``text`` is the frame as received, for re-emitting
    it verbatim and for de-duplication.
    """

    topic_name: str
    event_body: Any
    version: str | None = None
    correlation_id: str | None = None
    text: str = attrs.field(default="", repr=False, eq=False)


@attrs.frozen
class MalformedFrame:
    """A frame that could not be understood; counted and logged, never fatal.

    ``reason`` says what was wrong (not JSON, binary, too large, unknown shape); ``excerpt`` is a
    short, printable prefix of the frame for the log.
    """

    reason: str
    excerpt: str
    size: int


Message = (
    Heartbeat
    | Pong
    | ChannelMetadata
    | SocketClosing
    | NoLongerSubscribed
    | TokenRevoked
    | TopicEvent
    | MalformedFrame
)
