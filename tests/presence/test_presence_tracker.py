"""PresenceTracker: presence and routing-status readings in, exactly the changes out (no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from crmphone.clock import ManualClock
from crmphone.errors import PlatformError
from crmphone.events import PresenceChanged, RoutingStatus, RoutingStatusChanged
from crmphone.notifications import TopicEvent
from crmphone.platform import UserPresence, UserRoutingStatus, normalise_system_presence
from crmphone.presence import PresenceTracker, presence_topics

T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
AGENT = "agent-1"
ON_QUEUE_ID = "e08eaf1b-ee47-4fa9-a231-1200e284798f"


def presence_body(system: str, at: datetime | None, *, message: str = "") -> dict[str, Any]:
    body: dict[str, Any] = {
        "source": "PURECLOUD",
        "presenceDefinition": {"id": f"id-{system}", "systemPresence": system},
        "message": message,
    }
    if at is not None:
        body["modifiedDate"] = at.isoformat().replace("+00:00", "Z")
    return body


def routing_body(status: str, at: datetime | None) -> dict[str, Any]:
    inner: dict[str, Any] = {"status": status}
    if at is not None:
        inner["startTime"] = at.isoformat().replace("+00:00", "Z")
    return {"routingStatus": inner}


def event(kind: str, body: Any, agent: str = AGENT) -> TopicEvent:
    return TopicEvent(topic_name=f"v2.users.{agent}.{kind}", event_body=body)


@pytest.fixture
def tracker() -> PresenceTracker:
    """A tracker following one agent, on a manual clock."""
    return PresenceTracker([AGENT], ManualClock(start_wall=T0))


def test_topics_are_the_platforms_names() -> None:
    """Each agent's presence and routing status have the platform's topic names (case matters)."""
    assert presence_topics("u1") == ("v2.users.u1.presence", "v2.users.u1.routingStatus")


@pytest.mark.parametrize(
    ("written", "normal"),
    [
        ("On Queue", "ON_QUEUE"),
        ("OnQueue", "ON_QUEUE"),
        ("ON_QUEUE", "ON_QUEUE"),
        (" available ", "AVAILABLE"),
        ("Meal", "MEAL"),
    ],
)
def test_system_presences_are_compared_in_one_form(written: str, normal: str) -> None:
    """Display words and analytics' upper snake case name the same presence."""
    assert normalise_system_presence(written) == normal


def test_first_presence_is_reported_then_only_changes(tracker: PresenceTracker) -> None:
    """The first reading is an event with no previous; the same state again is none."""
    first = tracker.feed(event("presence", presence_body("Available", T0)))
    assert first == [
        PresenceChanged(
            agent_id=AGENT,
            system_presence="AVAILABLE",
            presence_id="id-Available",
            message="",
            previous=None,
            at=T0,
        )
    ]
    assert tracker.feed(event("presence", presence_body("Available", T0 + timedelta(1)))) == []
    changed = tracker.feed(event("presence", presence_body("On Queue", T0 + timedelta(2))))
    assert len(changed) == 1
    assert isinstance(changed[0], PresenceChanged)
    assert (changed[0].previous, changed[0].system_presence, changed[0].on_queue) == (
        "AVAILABLE",
        "ON_QUEUE",
        True,
    )


def test_a_new_status_message_is_a_change(tracker: PresenceTracker) -> None:
    """The agent's status text is part of the presence: a new message is reported."""
    tracker.feed(event("presence", presence_body("Busy", T0)))
    changed = tracker.feed(event("presence", presence_body("Busy", T0, message="In a meeting")))
    assert [c.message for c in changed if isinstance(c, PresenceChanged)] == ["In a meeting"]


def test_a_stale_presence_never_rolls_the_state_back(tracker: PresenceTracker) -> None:
    """A reading older than the one applied (out-of-order delivery) is dropped."""
    tracker.feed(event("presence", presence_body("Busy", T0 + timedelta(minutes=5))))
    assert tracker.feed(event("presence", presence_body("Available", T0))) == []
    presence = tracker.presence_of(AGENT)
    assert presence is not None
    assert presence.system_presence == "BUSY"


def test_routing_status_changes_are_reported_once_in_order(tracker: PresenceTracker) -> None:
    """IDLE → INTERACTING → IDLE, with repeats and a stale reading dropped."""
    readings = [
        ("IDLE", T0),
        ("IDLE", T0),
        ("INTERACTING", T0 + timedelta(seconds=10)),
        ("OFF_QUEUE", T0 + timedelta(seconds=5)),  # older than INTERACTING: stale
        ("IDLE", T0 + timedelta(seconds=70)),
    ]
    changes = [
        change
        for status, at in readings
        for change in tracker.feed(event("routingStatus", routing_body(status, at)))
    ]
    assert [(c.previous, c.status) for c in changes if isinstance(c, RoutingStatusChanged)] == [
        (None, RoutingStatus.IDLE),
        (RoutingStatus.IDLE, RoutingStatus.INTERACTING),
        (RoutingStatus.INTERACTING, RoutingStatus.IDLE),
    ]
    assert tracker.routing_status_of(AGENT) is RoutingStatus.IDLE


def test_rest_and_event_shapes_of_a_routing_status_read_alike() -> None:
    """``GET …/routingstatus`` answers the status flat; the event nests it: both parse."""
    flat = UserRoutingStatus.from_genesys({"userId": AGENT, "status": "idle"})
    nested = UserRoutingStatus.from_genesys(routing_body("IDLE", None))
    assert flat == nested == UserRoutingStatus(status="IDLE")


def test_an_undated_reading_uses_the_clock(tracker: PresenceTracker) -> None:
    """Without the platform's timestamp, the event is stamped with the tracker's clock."""
    [changed] = tracker.feed(event("presence", presence_body("Away", None)))
    assert changed.at == T0


@pytest.mark.parametrize(
    ("kind", "body"),
    [
        ("presence", {"source": "PURECLOUD"}),
        ("presence", {"presenceDefinition": {"id": "x", "systemPresence": 7}}),
        ("presence", "not an object"),
        ("presence", presence_body("Busy", None) | {"modifiedDate": "yesterday"}),
        ("routingStatus", {"routingStatus": {"startTime": "2026-01-01T00:00:00Z"}}),
        ("routingStatus", routing_body("DANCING", None)),
    ],
)
def test_malformed_bodies_are_counted_and_skipped(
    tracker: PresenceTracker, kind: str, body: Any
) -> None:
    """A body that cannot be read makes no event, keeps what is known, and is counted."""
    tracker.feed(event("presence", presence_body("Available", T0)))
    assert tracker.feed(event(kind, body)) == []
    assert tracker.malformed == 1
    presence = tracker.presence_of(AGENT)
    assert presence is not None
    assert presence.system_presence == "AVAILABLE"


def test_other_agents_and_other_topics_are_ignored(tracker: PresenceTracker) -> None:
    """Only followed agents' presence topics make events."""
    assert tracker.feed(event("presence", presence_body("Busy", T0), agent="stranger")) == []
    assert tracker.feed(event("station", {"id": "s"})) == []
    assert tracker.feed(TopicEvent(topic_name="channel.metadata", event_body={})) == []
    assert tracker.presence_of("stranger") is None
    assert tracker.malformed == 0


def test_a_malformed_presence_is_a_platform_error_naming_the_field() -> None:
    """The model names what is wrong instead of raising KeyError."""
    with pytest.raises(PlatformError, match="presenceDefinition"):
        UserPresence.from_genesys({"message": ""})
