"""De-duplication across overlapping sockets: every event once, repeats from one socket kept."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crmphone.notifications.dedupe import Deduplicator, event_key
from crmphone.notifications.messages import TopicEvent
from crmphone.notifications.protocol import ChannelProtocol, ProtocolSettings

TOPIC = "v2.users.u1.conversations.calls"


def parse(text: str) -> TopicEvent:
    """Parse a frame as a socket would."""
    message = ChannelProtocol(ProtocolSettings(), 0.0).receive_text(text, 0.0)
    assert isinstance(message, TopicEvent)
    return message


def nested(depth: int) -> Any:
    """A list nested ``depth`` levels deep."""
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


# -- event_key -----------------------------------------------------------------------------------


def test_same_event_serialised_differently_has_one_key() -> None:
    """Two sockets serialising the same event with another key order and spacing still match."""
    one = parse(
        '{"topicName": "' + TOPIC + '", "eventBody": {"id": "c1", "state": "alerting"}, '
        '"metadata": {"CorrelationId": "k"}}'
    )
    two = parse(
        '{"metadata":{"CorrelationId":"k"},"eventBody":{"state":"alerting","id":"c1"},'
        '"topicName":"' + TOPIC + '"}'
    )
    assert one.text != two.text
    assert event_key(one) == event_key(two)


def test_distinct_bodies_sharing_a_correlation_id_differ() -> None:
    """Two events with one correlation id but different bodies are different events."""
    one = TopicEvent(TOPIC, {"state": "alerting"}, "2", "k")
    two = TopicEvent(TOPIC, {"state": "connected"}, "2", "k")
    assert event_key(one) != event_key(two)


def test_topic_and_correlation_id_are_part_of_the_key() -> None:
    """The same body on another topic, or with another correlation id, is another event."""
    base = TopicEvent(TOPIC, {"a": 1}, "2", "k")
    assert event_key(base) != event_key(TopicEvent(TOPIC + ".x", {"a": 1}, "2", "k"))
    assert event_key(base) != event_key(TopicEvent(TOPIC, {"a": 1}, "2", "other"))
    assert event_key(base) != event_key(TopicEvent(TOPIC, {"a": 1}, "2", None))


def test_version_and_text_are_not_part_of_the_key() -> None:
    """The raw text and version do not split one event into two."""
    one = TopicEvent(TOPIC, {"a": 1}, "2", "k", text="x")
    two = TopicEvent(TOPIC, {"a": 1}, None, "k", text="y")
    assert event_key(one) == event_key(two)


def test_key_is_hashable_for_any_json_body() -> None:
    """Keys of bodies of every JSON type can be stored in a dict."""
    for body in [None, 1, 1.5, "s", [1, {"a": None}], {"b": [True, False]}]:
        hash(event_key(TopicEvent(TOPIC, body)))


def test_deeply_nested_body_falls_back_to_the_standard_library() -> None:
    """A body nested deeper than orjson serialises still gets a canonical key."""
    one = TopicEvent(TOPIC, {"b": 1, "a": nested(400)}, text="one")
    two = TopicEvent(TOPIC, {"a": nested(400), "b": 1}, text="two")
    assert event_key(one) == event_key(two)


def test_huge_integers_fall_back_to_the_standard_library() -> None:
    """An integer beyond 64 bits (possible with the stdlib decoder) still gets a canonical key."""
    one = TopicEvent(TOPIC, {"n": 2**80, "m": 1})
    two = TopicEvent(TOPIC, {"m": 1, "n": 2**80})
    assert event_key(one) == event_key(two)
    assert event_key(one) != event_key(TopicEvent(TOPIC, {"n": 2**80 + 1, "m": 1}))


def test_unserialisable_body_falls_back_to_the_frame_text() -> None:
    """A body no serialiser accepts is keyed by the frame's text."""
    body = {"x": object()}
    assert event_key(TopicEvent(TOPIC, body, text="a")) != event_key(
        TopicEvent(TOPIC, body, text="b")
    )
    assert event_key(TopicEvent(TOPIC, body, text="a")) == event_key(
        TopicEvent(TOPIC, {"x": object()}, text="a")
    )


# -- admit ---------------------------------------------------------------------------------------


def test_validation_of_window_and_max_keys() -> None:
    """A window that is not positive, or room for no key, is refused."""
    with pytest.raises(ValueError, match="window"):
        Deduplicator(window=0)
    with pytest.raises(ValueError, match="max_keys"):
        Deduplicator(max_keys=0)


@pytest.mark.parametrize(("first", "second"), [("old", "new"), ("new", "old")])
def test_copy_from_the_other_socket_is_dropped(first: str, second: str) -> None:
    """Whichever socket delivers first wins; the other socket's copy is a duplicate."""
    dedupe = Deduplicator()
    assert dedupe.admit(first, "k", 0.0)
    assert not dedupe.admit(second, "k", 0.5)
    assert (dedupe.admitted, dedupe.duplicates) == (1, 1)


def test_repeats_from_the_same_socket_are_admitted() -> None:
    """The platform repeating a state on one socket is not ours to drop."""
    dedupe = Deduplicator()
    assert [dedupe.admit("a", "k", 0.0) for _ in range(3)] == [True, True, True]


def test_repeats_are_matched_one_to_one() -> None:
    """Two copies on each socket come through twice: each repeat's twin is dropped."""
    dedupe = Deduplicator()
    arrivals = [("a", True), ("a", True), ("b", False), ("b", False), ("b", True), ("a", False)]
    assert [dedupe.admit(src, "k", 0.0) for src, _ in arrivals] == [ok for _, ok in arrivals]


def test_three_sockets_deliver_once() -> None:
    """With three overlapping sockets an event still comes through once."""
    dedupe = Deduplicator()
    assert [dedupe.admit(src, "k", 0.0) for src in "abc"] == [True, False, False]


def test_different_keys_are_independent() -> None:
    """Each key is matched on its own."""
    dedupe = Deduplicator()
    assert dedupe.admit("a", "k1", 0.0)
    assert dedupe.admit("b", "k2", 0.0)
    assert not dedupe.admit("b", "k1", 0.0)
    assert not dedupe.admit("a", "k2", 0.0)
    assert len(dedupe) == 2


def test_copies_after_the_window_are_new() -> None:
    """A key is forgotten window seconds after its first copy."""
    dedupe = Deduplicator(window=30.0)
    assert dedupe.admit("a", "k", 0.0)
    assert not dedupe.admit("b", "k", 29.999)
    assert dedupe.admit("a", "k2", 29.999)
    assert dedupe.admit("b", "k", 30.0)
    assert len(dedupe) == 2


def test_expiry_goes_in_time_order() -> None:
    """Old keys expire while younger ones are still matched."""
    dedupe = Deduplicator(window=10.0)
    for second in range(10):
        dedupe.admit("a", second, float(second))
    assert not dedupe.admit("b", 9, 15.0)
    assert len(dedupe) == 4
    assert dedupe.admit("b", 5, 15.0)


def test_max_keys_evicts_the_oldest() -> None:
    """Past max_keys the oldest key is forgotten first."""
    dedupe = Deduplicator(max_keys=2)
    for key in ("k1", "k2", "k3"):
        assert dedupe.admit("a", key, 0.0)
    assert len(dedupe) == 2
    assert dedupe.admit("b", "k1", 0.0)
    assert not dedupe.admit("b", "k3", 0.0)


def test_memory_stays_bounded_over_a_long_run() -> None:
    """A day of events keeps at most a window's worth of keys."""
    dedupe = Deduplicator(window=30.0)
    for n in range(86_400):
        dedupe.admit("a", n, float(n))
    assert len(dedupe) == 30


def test_forget_source_keeps_what_was_delivered() -> None:
    """After the old socket is forgotten, late copies of its events from the new one are dropped."""
    dedupe = Deduplicator()
    assert dedupe.admit("old", "k", 0.0)
    dedupe.forget_source("old")
    assert not dedupe.admit("new", "k", 1.0)


def test_forget_source_lets_a_name_be_reused() -> None:
    """A reused source name starts from nothing: its first copy of a known event is a twin."""
    dedupe = Deduplicator()
    assert dedupe.admit("s", "k", 0.0)
    assert dedupe.admit("s", "k", 0.0)
    dedupe.forget_source("s")
    assert not dedupe.admit("s", "k", 1.0)
    assert not dedupe.admit("s", "k", 1.0)
    assert dedupe.admit("s", "k", 1.0)


def test_forget_unknown_source_is_harmless() -> None:
    """Forgetting a source that delivered nothing changes nothing."""
    dedupe = Deduplicator()
    dedupe.admit("a", "k", 0.0)
    dedupe.forget_source("never")
    assert not dedupe.admit("b", "k", 0.0)


def test_rollover_of_parsed_frames() -> None:
    """Frames from two sockets, one reordering keys, yield each event once."""
    events = [
        {
            "topicName": TOPIC,
            "eventBody": {"id": "c1", "state": s},
            "metadata": {"CorrelationId": c},
        }
        for s, c in [("alerting", "1"), ("connected", "2"), ("disconnected", "3")]
    ]
    old = [json.dumps(e) for e in events]
    new = [json.dumps(e, sort_keys=True, separators=(",", ":")) for e in events]
    dedupe = Deduplicator()
    delivered = []
    arrivals = [
        ("old", old[0]),
        ("new", new[0]),
        ("new", new[1]),
        ("old", old[1]),
        ("old", old[2]),
        ("new", new[2]),
    ]
    for t, (source, text) in enumerate(arrivals):
        event = parse(text)
        if dedupe.admit(source, event_key(event), float(t)):
            delivered.append(event.event_body["state"])
    assert delivered == ["alerting", "connected", "disconnected"]


@st.composite
def overlapping_deliveries(draw: st.DrawFn) -> tuple[list[int], list[tuple[float, int, int]]]:
    """Events (with repeats), and their arrival on 2-4 sources in any order within the window."""
    events = draw(st.lists(st.integers(min_value=0, max_value=8), min_size=0, max_size=30))
    sources = draw(st.integers(min_value=2, max_value=4))
    arrivals: list[tuple[float, int, int]] = []
    for source in range(sources):
        order = draw(st.permutations(events))
        times = draw(
            st.lists(
                st.floats(min_value=0.0, max_value=29.0), min_size=len(order), max_size=len(order)
            )
        )
        arrivals.extend((t, source, key) for t, key in zip(times, order, strict=True))
    arrivals.sort()
    return events, arrivals


@given(overlapping_deliveries())
def test_any_interleaving_delivers_each_event_exactly_once(
    case: tuple[list[int], list[tuple[float, int, int]]],
) -> None:
    """For any order and timing of the sources' copies, the admitted multiset is the events."""
    events, arrivals = case
    dedupe = Deduplicator(window=30.0)
    admitted = Counter(key for t, source, key in arrivals if dedupe.admit(source, key, t))
    assert admitted == Counter(events)
    assert dedupe.duplicates == len(arrivals) - len(events)
