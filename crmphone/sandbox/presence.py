"""The sandbox's presence and routing status: what an agent chose, and whether queue calls may
be offered to them. Sans-I/O: methods change the state and return the notifications to publish.

Rules modelled on Genesys Cloud:

* presence definitions are the platform's system presences, with the ids every organisation has
  (an organisation may add its own; the sandbox has only the system ones);
* every agent starts ``Offline`` and ``OFF_QUEUE``;
* choosing ``On Queue`` puts an ``OFF_QUEUE`` agent ``IDLE``; choosing anything else puts them
  ``OFF_QUEUE``. Setting the routing status to ``IDLE`` is going on queue (presence ``On Queue``),
  to ``OFF_QUEUE`` going off it (presence ``Available``); the other statuses are the platform's;
* a change that changes nothing publishes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import attrs

from crmphone.errors import BadRequestError, NotFoundError

from . import wire

__all__ = ["SYSTEM_PRESENCES", "PresenceBoard", "PresenceDefinition", "Publication"]


@attrs.frozen
class PresenceDefinition:
    """A presence an agent can choose."""

    id: str
    system_presence: str  # as the platform writes it in definitions: "On Queue", "Available"

    def to_json(self, *, camel_case: bool = True) -> dict[str, Any]:
        """The ``GET /api/v2/presence/definitions`` entity; ``camel_case=False`` gives the
        deprecated ``/api/v2/presencedefinitions`` form (``"On Queue"`` rather than ``"OnQueue"``)."""
        system = self.system_presence.replace(" ", "") if camel_case else self.system_presence
        return {
            "id": self.id,
            "type": "System",
            "languageLabels": {"en_US": self.system_presence},
            "systemPresence": system,
            "deactivated": False,
            "primary": True,
            "selfUri": f"/api/v2/presencedefinitions/{self.id}",
        }


# The system presences and the ids Genesys Cloud gives them in every organisation.
SYSTEM_PRESENCES: tuple[PresenceDefinition, ...] = (
    PresenceDefinition("6a3af858-942f-489d-9700-5f9bcdcdae9b", "Available"),
    PresenceDefinition("5e5c5c66-ea97-4e7f-ac41-6424784829f2", "Away"),
    PresenceDefinition("31fe3bac-dea6-44b7-bed7-47f91660a1a0", "Busy"),
    PresenceDefinition("ccf3c10a-aa2c-4845-8e8d-f59fa48c58e5", "Offline"),
    PresenceDefinition("7ffa01cd-7866-4ad7-8faa-31e11b42f51f", "Idle"),
    PresenceDefinition("e08eaf1b-ee47-4fa9-a231-1200e284798f", "On Queue"),
    PresenceDefinition("3fd96123-badb-4f69-bc03-1b1ccc6d8014", "Meal"),
    PresenceDefinition("d2390a99-8546-bad9-8f0a-219548e8aeb0", "Training"),
    PresenceDefinition("bbdff279-7ae1-48ea-bade-7831d7234c64", "Meeting"),
    PresenceDefinition("227b37e2-f1d0-4dd0-8f50-badd7cf6d158", "Break"),
)
_BY_ID = {definition.id: definition for definition in SYSTEM_PRESENCES}
_BY_NAME = {definition.system_presence: definition for definition in SYSTEM_PRESENCES}
_SETTABLE_STATUSES = ("OFF_QUEUE", "IDLE")


@attrs.frozen
class Publication:
    """A notification the change makes: publish ``body`` on ``topic``."""

    topic: str
    body: dict[str, Any]


@attrs.define
class _AgentPresence:
    definition: PresenceDefinition
    message: str
    modified: datetime
    routing: str
    routing_since: datetime


class PresenceBoard:
    """Every agent's presence and routing status."""

    def __init__(self, agent_ids: Iterable[str], now: datetime) -> None:
        offline = _BY_NAME["Offline"]
        self._agents = {
            agent_id: _AgentPresence(offline, "", now, "OFF_QUEUE", now) for agent_id in agent_ids
        }

    @staticmethod
    def definitions() -> tuple[PresenceDefinition, ...]:
        """The presences agents can choose."""
        return SYSTEM_PRESENCES

    def presence_json(self, agent_id: str) -> dict[str, Any]:
        """The ``GET /api/v2/users/{id}/presences/purecloud`` body (and the event body)."""
        state = self._state(agent_id)
        return {
            "source": "PURECLOUD",
            "primary": True,
            "presenceDefinition": {
                "id": state.definition.id,
                "systemPresence": state.definition.system_presence,
                "selfUri": f"/api/v2/presencedefinitions/{state.definition.id}",
            },
            "message": state.message,
            "modifiedDate": wire.iso_utc(state.modified),
        }

    def routing_json(self, agent_id: str) -> dict[str, Any]:
        """The ``GET /api/v2/users/{id}/routingstatus`` body."""
        state = self._state(agent_id)
        return {
            "userId": agent_id,
            "status": state.routing,
            "startTime": wire.iso_utc(state.routing_since),
        }

    def set_presence(
        self, agent_id: str, definition_id: str, message: str | None, now: datetime
    ) -> list[Publication]:
        """Choose a presence (and with it the routing status); the notifications to publish."""
        state = self._state(agent_id)
        definition = _BY_ID.get(definition_id)
        if definition is None:
            raise BadRequestError(
                f"Presence definition {definition_id!r} does not exist.", status=400
            )
        published: list[Publication] = []
        new_message = state.message if message is None else message
        if (definition, new_message) != (state.definition, state.message):
            state.definition, state.message, state.modified = definition, new_message, now
            published.append(self._presence_publication(agent_id))
        on_queue = definition.system_presence == "On Queue"
        if on_queue and state.routing == "OFF_QUEUE":
            published.append(self._route(agent_id, state, "IDLE", now))
        elif not on_queue and state.routing != "OFF_QUEUE":
            published.append(self._route(agent_id, state, "OFF_QUEUE", now))
        return published

    def set_routing_status(self, agent_id: str, status: str, now: datetime) -> list[Publication]:
        """Go on queue (``IDLE``) or off it (``OFF_QUEUE``); the notifications to publish."""
        state = self._state(agent_id)
        if status not in _SETTABLE_STATUSES:
            raise BadRequestError(
                f"Routing status {status!r} cannot be set; use one of "
                f"{', '.join(_SETTABLE_STATUSES)}.",
                status=400,
            )
        if status == state.routing or (status == "IDLE" and state.routing != "OFF_QUEUE"):
            return []  # already there, or already on queue (busy counts as on queue)
        presence = "On Queue" if status == "IDLE" else "Available"
        return self.set_presence(agent_id, _BY_NAME[presence].id, None, now)

    def _route(
        self, agent_id: str, state: _AgentPresence, status: str, now: datetime
    ) -> Publication:
        state.routing, state.routing_since = status, now
        return Publication(
            f"v2.users.{agent_id}.routingStatus",
            {"routingStatus": {"status": status, "startTime": wire.iso_utc(now)}},
        )

    def _presence_publication(self, agent_id: str) -> Publication:
        return Publication(f"v2.users.{agent_id}.presence", self.presence_json(agent_id))

    def _state(self, agent_id: str) -> _AgentPresence:
        state = self._agents.get(agent_id)
        if state is None:
            raise NotFoundError(f"User {agent_id} not found.", status=404)
        return state
