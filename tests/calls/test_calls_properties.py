"""Properties of the call tracker over real call histories, shuffled, repeated and cut short."""

from __future__ import annotations

from collections.abc import Callable

import attrs
from call_scenarios import AGENT, Scenario, names
from hypothesis import given, settings
from hypothesis import strategies as st

from crmphone.calls import CallTracker
from crmphone.clock import ManualClock
from crmphone.events import CallConnected, CallEnded, CallEvent
from crmphone.sandbox.conversation import Move

ORDER = ["call.alerting", "call.connected", "call.transferred", "call.ended", "call.wrapup"]

SCENARIOS: dict[str, Callable[[], Scenario]] = {
    "customer hangs up": lambda: Scenario.inbound().play(
        Move.ANSWER, Move.CUSTOMER_HANGUP, Move.FINISH_WRAPUP
    ),
    "agent hangs up": lambda: Scenario.inbound().play(
        Move.ANSWER, Move.AGENT_HANGUP, Move.FINISH_WRAPUP
    ),
    "direct call": lambda: Scenario.inbound(queue=False).play(
        Move.ANSWER, Move.AGENT_HANGUP, Move.FINISH_WRAPUP
    ),
    "muted": lambda: Scenario.inbound().play(
        Move.ANSWER, Move.MUTE, Move.UNMUTE, Move.AGENT_HANGUP, Move.FINISH_WRAPUP
    ),
    "timed out": lambda: Scenario.inbound().play(Move.ALERT_TIMEOUT),
    "declined": lambda: Scenario.inbound().play(Move.REJECT),
    "abandoned": lambda: Scenario.inbound().play(Move.CUSTOMER_HANGUP),
    "outbound": lambda: Scenario.outbound().play(
        Move.ANSWER, Move.AGENT_HANGUP, Move.FINISH_WRAPUP
    ),
    "outbound unanswered": lambda: Scenario.outbound().play(Move.REJECT),
}


def held_three_times() -> Scenario:
    """A call held three times, resumed twice, ended while held, then wrapped up."""
    return Scenario.inbound().play(
        Move.ANSWER,
        Move.HOLD,
        Move.UNHOLD,
        Move.HOLD,
        Move.UNHOLD,
        Move.HOLD,
        Move.CUSTOMER_HANGUP,
        Move.FINISH_WRAPUP,
    )


def in_order(scenario: Scenario) -> list[CallEvent]:
    """The events of ``scenario`` fed once, in order, on the calls topic."""
    calls = CallTracker({AGENT}, ManualClock())
    return [e for i in range(len(scenario.snapshots)) for e in calls.feed_event(scenario.event(i))]


@st.composite
def deliveries(
    draw: st.DrawFn, make: Callable[[], Scenario]
) -> tuple[Scenario, list[tuple[int, bool]]]:
    """A scenario and a delivery: snapshot indexes in any order, repeated or missing, either topic."""
    scenario = make()
    count = len(scenario.snapshots)
    order = draw(
        st.lists(
            st.tuples(st.integers(0, count - 1), st.booleans()), min_size=1, max_size=3 * count
        )
    )
    return scenario, order


def deliver(
    scenario: Scenario, order: list[tuple[int, bool]]
) -> tuple[CallTracker, list[CallEvent]]:
    """Feed ``order`` (index, generic topic?) through a fresh tracker; return it and the events."""
    calls = CallTracker({AGENT}, ManualClock())
    events: list[CallEvent] = []
    for index, generic in order:
        events.extend(calls.feed_event(scenario.event(index, generic=generic)))
    return calls, events


def check_valid_story(events: list[CallEvent]) -> None:
    """Each event at most once, in the lifecycle's order, and never an answered end unconnected."""
    story = names(events)
    assert len(story) == len(set(story)), story
    positions = [ORDER.index(name) for name in story]
    assert positions == sorted(positions), story
    for index, event in enumerate(events):
        if isinstance(event, CallEnded) and event.answered:
            assert any(isinstance(earlier, CallConnected) for earlier in events[:index]), story
    assert len({event.key for event in events}) == len(events)


@settings(max_examples=300)
@given(
    case=st.sampled_from(sorted(SCENARIOS)).flatmap(lambda name: deliveries(SCENARIOS[name])),
)
def test_any_delivery_tells_a_valid_story_once(
    case: tuple[Scenario, list[tuple[int, bool]]],
) -> None:
    """Shuffled, duplicated, partial, mixed-topic delivery: each event at most once, in order."""
    scenario, order = case
    calls, events = deliver(scenario, order)
    check_valid_story(events)
    assert calls.stats.anomalies == 0
    expected = in_order(scenario)
    if any(index == len(scenario.snapshots) - 1 for index, _ in order):
        # The final state was seen: the whole story is told, with the same facts.
        assert names(events) == names(expected)
        (ended,) = [e for e in events if isinstance(e, CallEnded)]
        (reference,) = [e for e in expected if isinstance(e, CallEnded)]
        assert attrs.evolve(ended, started_at=reference.started_at) == reference


@settings(max_examples=200)
@given(
    case=st.sampled_from(sorted(SCENARIOS)).flatmap(lambda name: deliveries(SCENARIOS[name])),
)
def test_a_resync_after_any_gap_completes_the_story_exactly_once(
    case: tuple[Scenario, list[tuple[int, bool]]],
) -> None:
    """Whatever arrived before the gap, re-reading the final state emits just what was missing."""
    scenario, order = case
    calls, before = deliver(scenario, order)
    after = calls.resync([scenario.calls(-1)])
    check_valid_story(before + after)
    assert names(before + after) == names(in_order(scenario))
    assert calls.resync([scenario.calls(-1)]) == []
    assert calls.live_conversation_ids() == set()


@settings(max_examples=200)
@given(case=deliveries(held_three_times))
def test_holds_alternate_inside_the_call_whatever_the_delivery(
    case: tuple[Scenario, list[tuple[int, bool]]],
) -> None:
    """Hold flips carry no date, so late ones may show, but always held/resumed in turn."""
    scenario, order = case
    _, events = deliver(scenario, order)
    story = names(events)
    others = [event for event in events if event.name not in ("call.held", "call.resumed")]
    check_valid_story(others)
    flips = [name for name in story if name in ("call.held", "call.resumed")]
    assert flips == ["call.held", "call.resumed"] * (len(flips) // 2) + (
        ["call.held"] if len(flips) % 2 else []
    )
    if flips:
        first, last = story.index(flips[0]), len(story) - 1 - story[::-1].index(flips[-1])
        assert "call.connected" in story[:first]
        assert "call.ended" not in story[:last]
    assert len({event.key for event in events}) == len(events)


def test_holds_in_order_are_all_reported() -> None:
    """Delivered in order, every hold and resume of the call is an event."""
    story = names(in_order(held_three_times()))
    assert story.count("call.held") == 3
    assert story.count("call.resumed") == 2
