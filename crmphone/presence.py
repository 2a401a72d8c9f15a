"""Presence: the platform's ``presence`` and ``routingStatus`` topics → presence events.

Sans-I/O. :class:`PresenceTracker` keeps each agent's last known presence and routing status and
turns readings — notification bodies from ``v2.users.{id}.presence`` and
``v2.users.{id}.routingStatus``, or the same values read over REST after a gap — into
:class:`~crmphone.events.PresenceChanged` and :class:`~crmphone.events.RoutingStatusChanged`.

Rules, each tested:

* the same state twice is one event (a reconnect's re-read reports nothing that did not change);
* a reading older than the one already applied (by the platform's ``modifiedDate`` /
  ``startTime``) is stale: dropped, so out-of-order delivery never rolls the state back;
* a malformed body is counted and skipped with a log line naming the field; it never stops the
  stream, and never erases what is known.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from datetime import datetime

import attrs

from crmphone.clock import Clock
from crmphone.errors import PlatformError
from crmphone.events import PresenceChanged, PresenceEvent, RoutingStatus, RoutingStatusChanged
from crmphone.notifications import TopicEvent
from crmphone.platform import UserPresence, UserRoutingStatus

__all__ = ["PresenceTracker", "presence_topics"]

logger = logging.getLogger(__name__)

_PRESENCE = "presence"
_ROUTING_STATUS = "routingStatus"


def presence_topics(agent_id: str) -> tuple[str, str]:
    """The two topics that carry ``agent_id``'s presence and routing status."""
    return f"v2.users.{agent_id}.{_PRESENCE}", f"v2.users.{agent_id}.{_ROUTING_STATUS}"


@attrs.define
class _Known:
    presence: UserPresence | None = None
    routing: RoutingStatus | None = None
    routing_since: datetime | None = None


class PresenceTracker:
    """Each followed agent's presence and routing status; readings in, changes out."""

    def __init__(self, agent_ids: Collection[str], clock: Clock) -> None:
        self._known = {agent_id: _Known() for agent_id in agent_ids}
        self._clock = clock
        self.malformed = 0
        """Bodies skipped because they could not be read."""

    def feed(self, notification: TopicEvent) -> list[PresenceEvent]:
        """The events a ``presence`` or ``routingStatus`` notification makes (none when it
        repeats what is known, is stale, is malformed, or is for an agent not followed)."""
        parts = notification.topic_name.split(".")
        if len(parts) != 4 or parts[0] != "v2" or parts[1] != "users":
            return []
        agent_id, kind = parts[2], parts[3]
        event: PresenceEvent | None
        try:
            if kind == _PRESENCE:
                event = self.observe_presence(
                    agent_id, UserPresence.from_genesys(notification.event_body)
                )
            elif kind == _ROUTING_STATUS:
                event = self.observe_routing_status(
                    agent_id, UserRoutingStatus.from_genesys(notification.event_body)
                )
            else:
                return []
        except PlatformError as exc:
            self.malformed += 1
            logger.warning("presence: skipped a %s event for %s: %s", kind, agent_id, exc)
            return []
        return [] if event is None else [event]

    def observe_presence(self, agent_id: str, reading: UserPresence) -> PresenceChanged | None:
        """Apply a presence reading; the event when it changed what was known."""
        known = self._known.get(agent_id)
        if known is None:
            return None
        before = known.presence
        if before is not None and _older(reading.modified_at, before.modified_at):
            return None
        known.presence = reading
        if before is not None and (
            before.system_presence,
            before.presence_id,
            before.message,
        ) == (reading.system_presence, reading.presence_id, reading.message):
            return None
        return PresenceChanged(
            agent_id=agent_id,
            system_presence=reading.system_presence,
            presence_id=reading.presence_id,
            message=reading.message,
            previous=None if before is None else before.system_presence,
            at=reading.modified_at or self._clock.wall(),
        )

    def observe_routing_status(
        self, agent_id: str, reading: UserRoutingStatus
    ) -> RoutingStatusChanged | None:
        """Apply a routing-status reading; the event when it changed what was known."""
        known = self._known.get(agent_id)
        if known is None:
            return None
        try:
            status = RoutingStatus(reading.status)
        except ValueError:
            self.malformed += 1
            logger.warning(
                "presence: skipped unknown routing status %r for %s", reading.status[:40], agent_id
            )
            return None
        if known.routing is not None and _older(reading.started_at, known.routing_since):
            return None
        before = known.routing
        known.routing, known.routing_since = status, reading.started_at
        if before is status:
            return None
        return RoutingStatusChanged(
            agent_id=agent_id,
            status=status,
            previous=before,
            at=reading.started_at or self._clock.wall(),
        )

    def presence_of(self, agent_id: str) -> UserPresence | None:
        """The last presence known for ``agent_id``."""
        known = self._known.get(agent_id)
        return None if known is None else known.presence

    def routing_status_of(self, agent_id: str) -> RoutingStatus | None:
        """The last routing status known for ``agent_id``."""
        known = self._known.get(agent_id)
        return None if known is None else known.routing


def _older(candidate: datetime | None, applied: datetime | None) -> bool:
    """True when ``candidate`` is known to predate ``applied`` (an undated reading is current)."""
    return candidate is not None and applied is not None and candidate < applied
