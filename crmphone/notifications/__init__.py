"""The platform's notification channel, followed so that no event is lost or delivered twice.

Start with :class:`NotificationStream`. The pure pieces it is built from (frame parser and liveness
watchdog, backoff, de-duplication, topic planning, close diagnosis, reconnect policy) live in the
modules beside this one and can be used on their own.
"""

from crmphone.notifications.backoff import BackoffPolicy
from crmphone.notifications.channel import ChannelSettings, NotificationStream, Resync, StreamStats
from crmphone.notifications.diagnosis import CloseDiagnosis, CloseFacts, LikelyCause, diagnose
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
from crmphone.notifications.protocol import ProtocolSettings

__all__ = [
    "BackoffPolicy",
    "ChannelMetadata",
    "ChannelSettings",
    "CloseDiagnosis",
    "CloseFacts",
    "Heartbeat",
    "LikelyCause",
    "MalformedFrame",
    "Message",
    "NoLongerSubscribed",
    "NotificationStream",
    "Pong",
    "ProtocolSettings",
    "Resync",
    "SocketClosing",
    "StreamStats",
    "TokenRevoked",
    "TopicEvent",
    "diagnose",
]
