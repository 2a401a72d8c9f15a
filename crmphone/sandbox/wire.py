"""The exact bytes the sandbox puts on the wire: frames, error bodies, timestamps.

Kept in one place so the shapes can be compared with PROTOCOLS.md §1 at a glance. Everything here is
pure: values in, ``str``/``dict`` out.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "HEARTBEAT_FRAME",
    "PONG_FRAME",
    "dumps",
    "error_body",
    "event_frame",
    "iso_utc",
    "system_frame",
]


def dumps(value: Any) -> str:
    """Serialise ``value`` as compact JSON, the way the platform sends it."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def iso_utc(moment: datetime) -> str:
    """Format an aware datetime as Genesys does: ISO-8601 UTC, milliseconds, ``Z`` suffix."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def system_frame(topic_name: str, event_body: Mapping[str, Any]) -> str:
    """A frame the platform sends without a subscription (``channel.metadata``, ``v2.system.*``)."""
    return dumps({"topicName": topic_name, "eventBody": dict(event_body)})


def event_frame(topic_name: str, event_body: Any, correlation_id: str) -> str:
    """A topic event frame: ``topicName``, ``version`` "2", ``eventBody``, ``metadata``."""
    return dumps(
        {
            "topicName": topic_name,
            "version": "2",
            "eventBody": event_body,
            "metadata": {"CorrelationId": correlation_id},
        }
    )


HEARTBEAT_FRAME = system_frame("channel.metadata", {"message": "WebSocket Heartbeat"})
"""Sent on every socket each ``heartbeat_interval``."""

PONG_FRAME = system_frame("channel.metadata", {"message": "pong"})
"""The answer to a client's ``{"message": "ping"}``."""


def error_body(status: int, code: str, message: str, context_id: str) -> dict[str, Any]:
    """A Genesys-shaped API error body (``message``, ``code``, ``status``, ``contextId``)."""
    return {
        "message": message,
        "code": code,
        "status": status,
        "messageParams": {},
        "contextId": context_id,
        "details": [],
        "errors": [],
    }
