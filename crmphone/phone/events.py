"""What the phone tells the world: connection, microphone and call-offer events (frozen values).

A UI shows the "persistent connection active" icon from :class:`PersistentConnectionUp` and
:class:`PersistentConnectionDown`, the microphone indicator from :class:`MicrophoneLive`, and can
follow every state change through :class:`ConnectionStateChanged`.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import ClassVar

import attrs

__all__ = [
    "ConnectionState",
    "ConnectionStateChanged",
    "DownReason",
    "MicrophoneLive",
    "PersistentConnectionDown",
    "PersistentConnectionUp",
    "PhoneEvent",
]


class ConnectionState(enum.StrEnum):
    """The phone's media connection, named as the platform's ``persistentState`` names it.

    ``IDLE``: no connection yet in this session (the platform says ``UNKNOWN``).
    ``ESTABLISHING``: offer/answer, ICE and DTLS under way (or awaited, after a login set-up).
    ``PERSISTED``: connected, no call on it. ``ACTIVE_CALL``: a call rides it.
    ``DISCONNECTED``: ended on purpose (timeout, logout, stop). ``FAILED``: ended by a failure.
    From ``DISCONNECTED`` and ``FAILED`` the next call sets it up again like a first call.
    """

    IDLE = "IDLE"
    ESTABLISHING = "ESTABLISHING"
    PERSISTED = "PERSISTED"
    ACTIVE_CALL = "ACTIVE_CALL"
    DISCONNECTED = "DISCONNECTED"
    FAILED = "FAILED"

    @property
    def is_up(self) -> bool:
        """True when media can flow (``PERSISTED`` or ``ACTIVE_CALL``)."""
        return self in (ConnectionState.PERSISTED, ConnectionState.ACTIVE_CALL)


class DownReason(enum.StrEnum):
    """Why a persistent connection ended."""

    IDLE_TIMEOUT = "idle_timeout"
    """No call for the inactivity timeout (default 600 s)."""
    LOGOUT = "logout"
    """The agent logged out (the softphone closed)."""
    MANUAL = "manual"
    """The agent stopped it (``stop()``; with ``force=True`` during a call, which dropped it)."""
    MEDIA_FAILURE = "media_failure"
    """No media (RTP or RTCP) arrived for the liveness window: the path is dead."""
    SETUP_FAILED = "setup_failed"
    """Offer/answer, ICE or DTLS did not complete, or the login set-up never came."""
    PLATFORM = "platform"
    """The platform ended it (its own timeout, or it reported the connection failed)."""


@attrs.frozen
class PersistentConnectionUp:
    """The persistent connection is up: later calls will ride it with no new set-up.

    ``via`` is ``"login"`` (silent set-up for agents who may take calls off queue) or
    ``"first_call"`` (set up by the call ``conversation_id``).
    """

    name: ClassVar[str] = "phone.persistent_connection_up"
    agent_id: str
    station_id: str | None
    via: str
    conversation_id: str | None
    at: datetime


@attrs.frozen
class PersistentConnectionDown:
    """The persistent connection ended; the next call sets it up again like a first call.

    ``dropped_conversation_id`` names the call a forced stop (or a failure) ended with it.
    """

    name: ClassVar[str] = "phone.persistent_connection_down"
    agent_id: str
    station_id: str | None
    reason: DownReason
    detail: str
    at: datetime
    dropped_conversation_id: str | None = None


@attrs.frozen
class MicrophoneLive:
    """Whether audio from the microphone is being sent right now."""

    name: ClassVar[str] = "phone.microphone_live"
    agent_id: str
    live: bool
    at: datetime


@attrs.frozen
class ConnectionStateChanged:
    """Every change of :class:`ConnectionState`, for UIs that draw the whole state."""

    name: ClassVar[str] = "phone.connection_state"
    agent_id: str
    previous: ConnectionState
    state: ConnectionState
    at: datetime


PhoneEvent = (
    PersistentConnectionUp | PersistentConnectionDown | MicrophoneLive | ConnectionStateChanged
)
"""Any event the phone's connection policy emits."""
