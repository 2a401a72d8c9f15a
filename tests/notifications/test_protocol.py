"""The sans-I/O channel protocol: frames in, message values and liveness actions out."""

from __future__ import annotations

import json
import math
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crmphone.notifications import protocol as protocol_module
from crmphone.notifications.messages import (
    ChannelMetadata,
    Heartbeat,
    MalformedFrame,
    NoLongerSubscribed,
    Pong,
    SocketClosing,
    TokenRevoked,
    TopicEvent,
)
from crmphone.notifications.protocol import (
    PING_TEXT,
    Abandon,
    ChannelProtocol,
    MalformedReason,
    ProtocolSettings,
    SendPing,
)

USER_TOPIC = "v2.users.6f1c.conversations.calls"
HEARTBEAT = '{"topicName": "channel.metadata", "eventBody": {"message": "WebSocket Heartbeat"}}'
PONG = '{"topicName": "channel.metadata", "eventBody": {"message": "pong"}}'


def frame(**fields: Any) -> str:
    """Serialise a frame the way the platform does."""
    return json.dumps(fields)


def event_frame(
    topic: str = USER_TOPIC,
    body: Any = None,
    *,
    version: Any = "2",
    correlation_id: Any = "c0ffee",
) -> str:
    """A topic event frame with the usual fields."""
    return frame(
        topicName=topic,
        version=version,
        eventBody={"id": "conv-1"} if body is None else body,
        metadata={"CorrelationId": correlation_id},
    )


def new(now: float = 0.0, **overrides: Any) -> ChannelProtocol:
    """A protocol opened at ``now`` with default settings unless overridden."""
    return ChannelProtocol(ProtocolSettings(**overrides), now)


# -- settings ------------------------------------------------------------------------------------


def test_settings_defaults_follow_genesys() -> None:
    """The defaults are 35 s of silence, 5 s for the pong and a 1 MiB frame limit."""
    assert ProtocolSettings() == ProtocolSettings(35.0, 5.0, 1 << 20)


@pytest.mark.parametrize(
    "overrides",
    [
        {"heartbeat_timeout": 0},
        {"heartbeat_timeout": -1.0},
        {"heartbeat_timeout": math.inf},
        {"pong_timeout": math.nan},
        {"pong_timeout": 0.0},
        {"max_frame_size": 0},
    ],
)
def test_settings_reject_non_positive_or_non_finite_values(overrides: dict[str, Any]) -> None:
    """A timeout or size that is zero, negative, infinite or NaN is refused at construction."""
    with pytest.raises(ValueError, match=next(iter(overrides))):
        ProtocolSettings(**overrides)


@pytest.mark.parametrize("value", ["35", True, None])
def test_settings_reject_non_numbers(value: Any) -> None:
    """A setting that is not a number (bools included) is a TypeError."""
    with pytest.raises(TypeError, match="heartbeat_timeout"):
        ProtocolSettings(heartbeat_timeout=value)


def test_settings_and_actions_are_frozen() -> None:
    """Settings and actions are values: assigning to them fails."""
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        ProtocolSettings().pong_timeout = 1.0  # type: ignore[misc]
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        SendPing().text = "x"  # type: ignore[misc]
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        Abandon("r").reason = "x"  # type: ignore[misc]


def test_ping_text_is_the_genesys_health_check() -> None:
    """The ping we send is the JSON object Genesys Cloud answers with a pong."""
    assert json.loads(SendPing().text) == {"message": "ping"}
    assert SendPing().text == PING_TEXT


# -- channel.metadata ----------------------------------------------------------------------------


def test_heartbeat_is_recognised_and_recorded() -> None:
    """The heartbeat becomes Heartbeat and moves last_heartbeat_at and last_frame_at."""
    proto = new()
    assert proto.receive_text(HEARTBEAT, 12.5) == Heartbeat()
    assert proto.stats.heartbeats == 1
    assert proto.stats.last_heartbeat_at == 12.5
    assert proto.stats.last_frame_at == 12.5
    assert proto.stats.events == 0


def test_pong_is_recognised_and_counted() -> None:
    """The answer to our ping becomes Pong and is counted."""
    proto = new()
    assert proto.receive_text(PONG, 1.0) == Pong()
    assert proto.stats.pongs == 1
    assert proto.stats.last_heartbeat_at is None


def test_other_metadata_message_is_kept_verbatim() -> None:
    """An unknown channel.metadata message becomes ChannelMetadata carrying the message."""
    text = frame(topicName="channel.metadata", eventBody={"message": "Something new"})
    assert new().receive_text(text, 0.0) == ChannelMetadata("Something new")


@pytest.mark.parametrize(
    "fields",
    [
        {"topicName": "channel.metadata"},
        {"topicName": "channel.metadata", "eventBody": {}},
        {"topicName": "channel.metadata", "eventBody": None},
        {"topicName": "channel.metadata", "eventBody": ["message"]},
        {"topicName": "channel.metadata", "eventBody": {"message": None}},
    ],
)
def test_metadata_without_a_message_has_an_empty_message(fields: dict[str, Any]) -> None:
    """A channel.metadata frame with no message (or no usable body) is ChannelMetadata("")."""
    assert new().receive_text(json.dumps(fields), 0.0) == ChannelMetadata("")


def test_metadata_with_a_non_string_message_keeps_it_as_json() -> None:
    """A non-string message is kept as JSON text so the log shows what came."""
    text = frame(topicName="channel.metadata", eventBody={"message": {"b": 1, "a": [True]}})
    assert new().receive_text(text, 0.0) == ChannelMetadata('{"a": [true], "b": 1}')


def test_heartbeat_match_is_exact() -> None:
    """Only the exact heartbeat text counts as a heartbeat."""
    text = frame(topicName="channel.metadata", eventBody={"message": "websocket heartbeat"})
    proto = new()
    assert proto.receive_text(text, 0.0) == ChannelMetadata("websocket heartbeat")
    assert proto.stats.heartbeats == 0


# -- system notices ------------------------------------------------------------------------------


def test_socket_closing_carries_its_body() -> None:
    """v2.system.socket_closing becomes SocketClosing with the event body."""
    text = frame(topicName="v2.system.socket_closing", eventBody={"closeIn": 60})
    assert new().receive_text(text, 0.0) == SocketClosing({"closeIn": 60})


@pytest.mark.parametrize("body", [None, [], "soon", 3])
def test_socket_closing_with_an_odd_body_still_counts(body: Any) -> None:
    """A maintenance notice is honoured whatever its body; an odd body becomes {}."""
    text = frame(topicName="v2.system.socket_closing", eventBody=body)
    assert new().receive_text(text, 0.0) == SocketClosing({})


def test_socket_closing_without_a_body_still_counts() -> None:
    """A maintenance notice without eventBody is still a SocketClosing."""
    assert new().receive_text(frame(topicName="v2.system.socket_closing"), 0.0) == SocketClosing({})


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"reason": "another_channel_subscribed"}, "another_channel_subscribed"),
        ({"reason": "user_tokens_revoked", "x": 1}, "user_tokens_revoked"),
        ({"reason": 7}, None),
        ({}, None),
    ],
)
def test_no_longer_subscribed_carries_the_reason(body: dict[str, Any], reason: str | None) -> None:
    """no_longer_subscribed.{id} becomes NoLongerSubscribed with a string reason, else None."""
    topic = "v2.system.no_longer_subscribed.c-42"
    message = new().receive_text(frame(topicName=topic, eventBody=body), 0.0)
    assert message == NoLongerSubscribed(topic, reason, body)


def test_no_longer_subscribed_without_an_id_is_recognised() -> None:
    """The bare no_longer_subscribed topic is recognised too."""
    topic = "v2.system.no_longer_subscribed"
    message = new().receive_text(frame(topicName=topic, eventBody={"reason": "r"}), 0.0)
    assert message == NoLongerSubscribed(topic, "r", {"reason": "r"})


def test_token_revoked_is_recognised() -> None:
    """v2.system.token_revoked.{id} becomes TokenRevoked with topic and body."""
    topic = "v2.system.token_revoked.c-42"
    message = new().receive_text(frame(topicName=topic, eventBody={"a": 1}), 0.0)
    assert message == TokenRevoked(topic, {"a": 1})


@pytest.mark.parametrize(
    "topic",
    ["v2.system.something_new", "v2.system.socket_closingX", "v2.system.token_revokedness"],
)
def test_unknown_system_topics_are_delivered_as_events(topic: str) -> None:
    """A v2.system topic we do not know (or one merely sharing a prefix) is a TopicEvent."""
    message = new().receive_text(event_frame(topic), 0.0)
    assert isinstance(message, TopicEvent)
    assert message.topic_name == topic


# -- topic events --------------------------------------------------------------------------------


def test_topic_event_carries_every_field_and_the_frame_text() -> None:
    """A subscribed topic's frame becomes TopicEvent with topic, body, version, id and text."""
    body = {"id": "conv-1", "participants": [{"id": "p1", "state": "alerting"}]}
    text = event_frame(body=body)
    proto = new()
    message = proto.receive_text(text, 3.0)
    assert message == TopicEvent(USER_TOPIC, body, "2", "c0ffee")
    assert isinstance(message, TopicEvent)
    assert message.text == text
    assert proto.stats.events == 1
    assert proto.stats.frames == 1


@pytest.mark.parametrize(
    ("version", "expected"),
    [("2", "2"), (2, "2"), (2.5, "2.5"), (None, None), (True, None), ({"v": 2}, None)],
)
def test_version_is_text_or_none(version: Any, expected: str | None) -> None:
    """The version is kept as text; numbers are converted, anything else becomes None."""
    message = new().receive_text(event_frame(version=version), 0.0)
    assert isinstance(message, TopicEvent)
    assert message.version == expected


def test_missing_version_is_none() -> None:
    """An event without a version has version None."""
    text = frame(topicName=USER_TOPIC, eventBody={})
    assert new().receive_text(text, 0.0) == TopicEvent(USER_TOPIC, {}, None, None)


@pytest.mark.parametrize("metadata", [None, "CorrelationId", [], {}, {"CorrelationId": 5}])
def test_correlation_id_needs_a_string_in_a_metadata_object(metadata: Any) -> None:
    """Without a string metadata.CorrelationId the correlation id is None."""
    text = frame(topicName=USER_TOPIC, eventBody={}, metadata=metadata)
    message = new().receive_text(text, 0.0)
    assert isinstance(message, TopicEvent)
    assert message.correlation_id is None


@pytest.mark.parametrize("body", [None, [], "text", 0, {"deep": {"er": [1, 2]}}])
def test_any_present_event_body_is_kept(body: Any) -> None:
    """eventBody is passed on unchanged whatever its JSON type, null included."""
    text = frame(topicName=USER_TOPIC, eventBody=body)
    message = new().receive_text(text, 0.0)
    assert isinstance(message, TopicEvent)
    assert message.event_body == body


def test_extra_fields_are_ignored() -> None:
    """Fields the protocol does not know do not disturb parsing."""
    text = frame(topicName=USER_TOPIC, eventBody={}, extra={"x": 1}, version="2")
    assert new().receive_text(text, 0.0) == TopicEvent(USER_TOPIC, {}, "2", None)


def test_non_ascii_event_round_trips() -> None:
    """Non-ASCII text in a frame arrives intact."""
    body = {"name": "Zoë 😀", "ani": "tel:+4930"}
    text = json.dumps({"topicName": USER_TOPIC, "eventBody": body}, ensure_ascii=False)
    message = new().receive_text(text, 0.0)
    assert isinstance(message, TopicEvent)
    assert message.event_body == body


# -- malformed frames ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", MalformedReason.NOT_JSON),
        ("{", MalformedReason.NOT_JSON),
        ("hello", MalformedReason.NOT_JSON),
        ('{"topicName": "x"} trailing', MalformedReason.NOT_JSON),
        ("[]", MalformedReason.NOT_OBJECT),
        ("1", MalformedReason.NOT_OBJECT),
        ('"topicName"', MalformedReason.NOT_OBJECT),
        ("null", MalformedReason.NOT_OBJECT),
        ("{}", MalformedReason.NO_TOPIC),
        ('{"topicName": null, "eventBody": {}}', MalformedReason.NO_TOPIC),
        ('{"topicName": "", "eventBody": {}}', MalformedReason.NO_TOPIC),
        ('{"eventBody": {"message": "pong"}}', MalformedReason.NO_TOPIC),
        ('{"topicName": 1, "eventBody": {}}', MalformedReason.TOPIC_NOT_STRING),
        ('{"topicName": ["a"], "eventBody": {}}', MalformedReason.TOPIC_NOT_STRING),
        ('{"topicName": "v2.users.x.presence"}', MalformedReason.NO_EVENT_BODY),
        ('{"topicName": "v2.system.other"}', MalformedReason.NO_EVENT_BODY),
    ],
)
def test_malformed_frames_are_classified(text: str, reason: str) -> None:
    """Each kind of bad frame becomes MalformedFrame with its reason, counted by kind."""
    proto = new()
    message = proto.receive_text(text, 0.0)
    assert message == MalformedFrame(reason, text, len(text.encode()))
    assert proto.stats.malformed == {reason: 1}
    assert proto.stats.frames == 1
    assert proto.stats.events == 0


def test_malformed_counts_accumulate_per_kind() -> None:
    """The malformed counter keeps one count per reason kind."""
    proto = new()
    for text in ["x", "y", "[]", "{}"]:
        proto.receive_text(text, 0.0)
    proto.receive_bytes(b"\x00", 0.0)
    assert proto.stats.malformed == {
        MalformedReason.NOT_JSON: 2,
        MalformedReason.NOT_OBJECT: 1,
        MalformedReason.NO_TOPIC: 1,
        MalformedReason.BINARY: 1,
    }
    assert proto.stats.frames == 5


def test_excerpt_is_short_and_printable() -> None:
    """The excerpt keeps 120 characters and escapes control characters and lone surrogates."""
    text = "\x00bad\nframe\ud800" + "é" * 500
    message = new().receive_text(text, 0.0)
    assert isinstance(message, MalformedFrame)
    assert message.reason == MalformedReason.NOT_JSON
    assert message.excerpt.startswith("\\x00bad\\nframe\\ud800é")
    assert message.excerpt.isprintable()
    assert message.excerpt.count("é") == 120 - len("\x00bad\nframe\ud800")
    assert message.size == len(text.encode("utf-8", "surrogatepass"))


def test_frame_over_the_limit_is_refused_with_its_size() -> None:
    """A frame larger than max_frame_size (in UTF-8 bytes) is malformed, naming both sizes."""
    proto = new(max_frame_size=100)
    text = event_frame(body={"pad": "x" * 200})
    size = len(text.encode())
    message = proto.receive_text(text, 0.0)
    assert message == MalformedFrame(f"frame too large ({size} bytes > 100)", text[:120], size)
    assert proto.stats.malformed == {MalformedReason.TOO_LARGE: 1}


def test_frame_size_counts_utf8_bytes_not_characters() -> None:
    """Multi-byte characters count by their encoded size."""
    body = {"n": "é" * 40}
    text = json.dumps({"topicName": "t.x", "eventBody": body}, ensure_ascii=False)
    chars, size = len(text), len(text.encode())
    assert size > chars
    assert isinstance(new(max_frame_size=size).receive_text(text, 0), TopicEvent)
    message = new(max_frame_size=size - 1).receive_text(text, 0)
    assert isinstance(message, MalformedFrame)
    assert message.reason == f"frame too large ({size} bytes > {size - 1})"


def test_frame_that_could_be_large_but_is_not_is_parsed() -> None:
    """A frame whose character count times four exceeds the limit but whose bytes fit is parsed."""
    text = frame(topicName="t.x", eventBody={})
    assert len(text) * 4 > len(text) + 10
    assert isinstance(new(max_frame_size=len(text) + 10).receive_text(text, 0), TopicEvent)


def test_deep_nesting_is_malformed_not_an_error() -> None:
    """JSON nested deeper than the decoder allows becomes MalformedFrame."""
    text = '{"topicName": "t.x", "eventBody": ' + "[" * 100_000 + "]" * 100_000 + "}"
    message = new().receive_text(text, 0.0)
    assert isinstance(message, MalformedFrame)
    assert message.reason == MalformedReason.NOT_JSON


def test_stdlib_decoder_fallback_turns_recursion_into_malformed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without orjson, the stdlib decoder's RecursionError is caught too."""
    monkeypatch.setattr(protocol_module, "_loads", json.loads)
    proto = new()
    deep = "[" * 100_000 + "]" * 100_000
    message = proto.receive_text(deep, 0.0)
    assert isinstance(message, MalformedFrame)
    assert message.reason == MalformedReason.NOT_JSON
    assert proto.receive_text(event_frame(), 0.0) == TopicEvent(
        USER_TOPIC, {"id": "conv-1"}, "2", "c0ffee"
    )


def test_binary_frames_are_malformed_but_alive() -> None:
    """A binary frame is MalformedFrame("binary frame") with its size, and counts as a sign of life."""
    proto = new()
    proto.tick(35.0)
    assert proto.ping_outstanding
    message = proto.receive_bytes(b"\x00\x01binary" * 100, 36.0)
    assert message.reason == MalformedReason.BINARY
    assert message.size == 800
    assert message.excerpt.isprintable()
    assert len(message.excerpt) <= 120
    assert proto.stats.last_frame_at == 36.0
    assert not proto.ping_outstanding


# Lone surrogates are left out: orjson refuses them, so they would make "not JSON", not a value.
json_text = st.text(st.characters(exclude_categories=("Cs",)))
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | json_text,
    lambda children: st.lists(children) | st.dictionaries(json_text, children),
    max_leaves=30,
)
interesting_topics = st.sampled_from(
    [
        "channel.metadata",
        "v2.system.socket_closing",
        "v2.system.no_longer_subscribed.x",
        "v2.system.token_revoked.y",
        "v2.system.other",
        USER_TOPIC,
        "",
    ]
)
frame_dicts = st.fixed_dictionaries(
    {},
    optional={
        "topicName": interesting_topics | json_values,
        "eventBody": json_values
        | st.fixed_dictionaries({"message": st.sampled_from(["pong", "WebSocket Heartbeat"])}),
        "version": json_values,
        "metadata": json_values | st.fixed_dictionaries({"CorrelationId": json_values}),
    },
)


@given(st.text())
def test_arbitrary_text_never_raises(text: str) -> None:
    """Whatever text arrives, receive_text returns a message and counts the frame."""
    proto = new()
    message = proto.receive_text(text, 1.0)
    assert message is not None
    assert proto.stats.frames == 1
    assert proto.stats.last_frame_at == 1.0


@given(json_values)
def test_arbitrary_json_never_raises(value: Any) -> None:
    """Whatever JSON value arrives, receive_text returns a message."""
    message = new().receive_text(json.dumps(value), 0.0)
    if not isinstance(value, dict):
        assert message == MalformedFrame(MalformedReason.NOT_OBJECT, *_excerpt_size(value))


def _excerpt_size(value: Any) -> tuple[str, int]:
    text = json.dumps(value)
    return protocol_module.excerpt(text), len(text.encode())


@given(frame_dicts)
def test_arbitrary_frame_shapes_never_raise(fields: dict[str, Any]) -> None:
    """Frames mixing valid and invalid fields always give exactly one message value."""
    proto = new()
    message = proto.receive_text(json.dumps(fields), 0.0)
    topic = fields.get("topicName")
    if isinstance(message, TopicEvent):
        assert message.topic_name == topic
        assert "eventBody" in fields
        assert message.version is None or isinstance(message.version, str)
        assert message.correlation_id is None or isinstance(message.correlation_id, str)
    if not isinstance(topic, str) or not topic:
        assert isinstance(message, MalformedFrame)


@settings(max_examples=25)
@given(st.integers(min_value=1, max_value=5000), st.sampled_from("[{"))
def test_any_nesting_depth_never_raises(depth: int, opener: str) -> None:
    """Nesting of any depth, closed or not, gives a message rather than an exception."""
    inner = ("[" * depth + "]" * depth) if opener == "[" else ('{"a":' * depth + "1" + "}" * depth)
    text = '{"topicName": "t.x", "eventBody": ' + inner + "}"
    message = new().receive_text(text, 0.0)
    assert isinstance(message, TopicEvent | MalformedFrame)


# -- liveness ------------------------------------------------------------------------------------


def test_first_deadline_is_one_heartbeat_timeout_after_opening() -> None:
    """A new socket is first checked heartbeat_timeout after it opened."""
    proto = new(100.0)
    assert proto.next_deadline() == 135.0
    assert proto.stats.opened_at == 100.0
    assert proto.stats.last_frame_at is None


def test_no_action_before_the_deadline() -> None:
    """Ticking before the deadline does nothing, however often."""
    proto = new()
    for now in (0.0, 1.0, 34.999):
        assert proto.tick(now) == []
    assert proto.stats.pings_sent == 0


def test_silence_earns_one_ping_at_the_deadline() -> None:
    """At heartbeat_timeout of silence tick returns SendPing once and waits for pong_timeout."""
    proto = new()
    assert proto.tick(35.0) == [SendPing(PING_TEXT)]
    assert proto.stats.pings_sent == 1
    assert proto.ping_outstanding
    assert proto.next_deadline() == 40.0
    assert proto.tick(36.0) == []
    assert proto.tick(39.99) == []
    assert proto.stats.pings_sent == 1


def test_pong_clears_the_ping() -> None:
    """A pong ends the wait, and silence is measured from the pong."""
    proto = new()
    proto.tick(35.0)
    proto.receive_text(PONG, 36.0)
    assert not proto.ping_outstanding
    assert proto.next_deadline() == 71.0
    assert proto.tick(45.0) == []


@pytest.mark.parametrize("text", [HEARTBEAT, event_frame(), "not json", "{}"])
def test_any_frame_after_the_ping_proves_the_link_alive(text: str) -> None:
    """Not only a pong: any frame, even a malformed one, clears the outstanding ping."""
    proto = new()
    proto.tick(35.0)
    proto.receive_text(text, 37.0)
    assert not proto.ping_outstanding
    assert proto.tick(40.0) == []
    assert proto.next_deadline() == 72.0


def test_unanswered_ping_abandons_once_with_the_measured_silence() -> None:
    """No frame within pong_timeout of the ping gives one Abandon that states the silence."""
    proto = new()
    proto.receive_text(HEARTBEAT, 0.0)
    assert proto.tick(35.0) == [SendPing()]
    assert proto.tick(40.0) == [Abandon("no frame for 40.0 s; ping unanswered for 5.0 s")]
    assert proto.abandoned
    assert proto.tick(41.0) == []
    assert proto.tick(1000.0) == []
    assert proto.next_deadline() == math.inf
    assert proto.stats.pings_sent == 1


def test_abandon_on_a_socket_that_never_spoke_says_so() -> None:
    """When no frame ever came, the reason measures the silence from the opening."""
    proto = new(10.0)
    proto.tick(45.0)
    [action] = proto.tick(50.5)
    assert action == Abandon(
        "no frame since the socket opened 40.5 s ago; ping unanswered for 5.5 s"
    )


def test_frames_after_abandon_are_still_parsed_but_change_nothing() -> None:
    """Once abandoned, frames still parse (the buffer may hold some) but no action follows."""
    proto = new()
    proto.tick(35.0)
    proto.tick(40.0)
    assert proto.receive_text(HEARTBEAT, 41.0) == Heartbeat()
    assert proto.tick(100.0) == []
    assert proto.next_deadline() == math.inf


def test_heartbeats_keep_the_socket_quiet() -> None:
    """Heartbeats every 30 s mean no ping is ever sent."""
    proto = new()
    for beat in range(1, 100):
        now = beat * 30.0
        assert proto.tick(now - 0.001) == []
        proto.receive_text(HEARTBEAT, now)
    assert proto.stats.pings_sent == 0
    assert proto.stats.heartbeats == 99


def test_a_late_tick_pings_before_it_abandons() -> None:
    """After a long stall of our own loop the first tick pings; it never abandons unasked."""
    proto = new()
    assert proto.tick(500.0) == [SendPing()]
    assert proto.next_deadline() == 505.0


def test_driving_loop_that_sleeps_until_each_deadline() -> None:
    """An I/O loop that sleeps exactly to next_deadline pings at 35 s and abandons at 40 s of silence."""
    proto = new()
    frames = {30.0: HEARTBEAT, 60.0: HEARTBEAT}
    now, log = 0.0, []
    for _ in range(10):
        deadline = proto.next_deadline()
        due = [at for at in sorted(frames) if now < at < deadline]
        if due:
            now = due[0]
            proto.receive_text(frames.pop(now), now)
            continue
        if deadline == math.inf:
            break
        now = deadline
        log.extend((now, action) for action in proto.tick(now))
    assert log == [
        (95.0, SendPing()),
        (100.0, Abandon("no frame for 40.0 s; ping unanswered for 5.0 s")),
    ]


ops = st.lists(
    st.tuples(
        st.floats(min_value=0.0, max_value=20.0, allow_nan=False),
        st.sampled_from(["tick", "heartbeat", "pong", "event", "junk", "bytes"]),
    ),
    max_size=60,
)


@given(ops)
def test_liveness_invariants_hold_for_any_history(history: list[tuple[float, str]]) -> None:
    """For any timing of frames and ticks: pings only after silence, one abandon, only when due."""
    heartbeat_timeout, pong_timeout = 10.0, 3.0
    proto = new(heartbeat_timeout=heartbeat_timeout, pong_timeout=pong_timeout)
    now, alive_at, ping_at, abandons = 0.0, 0.0, None, 0
    texts = {"heartbeat": HEARTBEAT, "pong": PONG, "event": event_frame(), "junk": "]"}
    for step, op in history:
        now += step
        if op == "bytes":
            proto.receive_bytes(b"x", now)
        elif op != "tick":
            proto.receive_text(texts[op], now)
        if op != "tick":
            alive_at, ping_at = now, None
            continue
        for action in proto.tick(now):
            if isinstance(action, SendPing):
                assert ping_at is None
                assert now >= alive_at + heartbeat_timeout
                ping_at = now
            else:
                assert ping_at is not None
                assert now >= ping_at + pong_timeout
                assert now - alive_at >= heartbeat_timeout + pong_timeout - 1e-9
                abandons += 1
        assert abandons <= 1
        assert proto.next_deadline() > now
    assert proto.stats.frames == sum(op != "tick" for _, op in history)
