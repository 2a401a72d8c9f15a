"""The agent's phone: a persistent WebRTC connection that later calls ride with no new set-up.

:class:`Softphone` is the public face (an async context bound to one agent);
:class:`~crmphone.phone.session.ConnectionPolicy` is its sans-I/O policy; the events it emits are
in :mod:`crmphone.phone.events`. Audio sources and sinks are in :mod:`crmphone.audio`. Needs the
``phone`` extra (aiortc).
"""

from __future__ import annotations

from crmphone._webrtc import IceServer, IceSettings
from crmphone.events import (
    ConnectionState,
    ConnectionStateChanged,
    DownReason,
    MicrophoneLive,
    PersistentConnectionDown,
    PersistentConnectionUp,
    PhoneEvent,
)

from .session import CallInProgressError, ConnectionPolicy, PolicySettings
from .signalling import JsonSignalling, Signalling
from .softphone import (
    ACCEPT_OFF_QUEUE,
    CallTiming,
    CallUpdate,
    PhoneCall,
    PhoneSettings,
    PhoneStatus,
    Softphone,
)

__all__ = [
    "ACCEPT_OFF_QUEUE",
    "CallInProgressError",
    "CallTiming",
    "CallUpdate",
    "ConnectionPolicy",
    "ConnectionState",
    "ConnectionStateChanged",
    "DownReason",
    "IceServer",
    "IceSettings",
    "JsonSignalling",
    "MicrophoneLive",
    "PersistentConnectionDown",
    "PersistentConnectionUp",
    "PhoneCall",
    "PhoneEvent",
    "PhoneSettings",
    "PhoneStatus",
    "PolicySettings",
    "Signalling",
    "Softphone",
]
