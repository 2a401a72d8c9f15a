"""Topics: validation, expansion of combined topics, and planning them onto channels."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crmphone.errors import ChannelLimitError, ConfigError
from crmphone.notifications.topics import (
    MAX_TOPIC_LENGTH,
    expand_topic,
    is_system_topic,
    plan_channels,
    topic_cost,
    validate_topic,
)


def user(n: int, *suffixes: str) -> str:
    """A user topic: combined when given several suffixes."""
    if len(suffixes) == 1:
        return f"v2.users.u{n}.{suffixes[0]}"
    return f"v2.users.u{n}?{'&'.join(suffixes)}"


def combined(n: int, cost: int) -> str:
    """A combined topic standing for ``cost`` topics."""
    return f"v2.users.u{n}?{'&'.join(f's{i}' for i in range(cost))}"


def cost_of(channel: tuple[str, ...]) -> int:
    """How many topics a planned channel carries."""
    return sum(topic_cost(topic) for topic in channel)


# -- system topics and validation ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("topic", "system"),
    [
        ("channel.metadata", True),
        ("v2.system.socket_closing", True),
        ("v2.system.no_longer_subscribed.abc", True),
        ("v2.system.token_revoked.abc", True),
        ("v2.users.u1.presence", False),
        ("v2.systemic", False),
        ("channel.metadata2", False),
    ],
)
def test_system_topics_are_recognised(topic: str, system: bool) -> None:
    """channel.metadata and the v2.system. family are system topics; lookalikes are not."""
    assert is_system_topic(topic) is system


@pytest.mark.parametrize(
    "topic",
    [
        "v2.users.6f1c.conversations.calls",
        "v2.routing.queues.q1.conversations.calls",
        "v2.users.u1?presence&routingStatus",
        "v2.users.u1?conversations.calls&presence",
        "x",
        "a" * MAX_TOPIC_LENGTH,
    ],
)
def test_valid_topics_pass_unchanged(topic: str) -> None:
    """A valid topic is returned as given."""
    assert validate_topic(topic) is topic


@pytest.mark.parametrize(
    ("topic", "match"),
    [
        ("", "empty"),
        (" v2.users.u1.presence", "whitespace"),
        ("v2.users.u1.presence\n", "whitespace"),
        ("v2.users.u1 .presence", "whitespace"),
        ("v2.users.\x00.presence", "control"),
        ("a" * (MAX_TOPIC_LENGTH + 1), "201 characters"),
        ("channel.metadata", "without subscribing"),
        ("v2.system.socket_closing", "without subscribing"),
        ("v2.system.token_revoked.x", "without subscribing"),
        ("v2.system?socket_closing&token_revoked", "without subscribing"),
        ("channel?metadata", "without subscribing"),
        ("?presence", "no prefix"),
        ("v2.users.u1?", "empty suffix"),
        ("v2.users.u1?presence&", "empty suffix"),
        ("v2.users.u1?presence&&routingStatus", "empty suffix"),
        ("v2.users.u1?presence?routingStatus", "more than one"),
        ("v2.users.u1?presence&presence", "repeats"),
        ("v2..users", "empty part"),
        (".v2.users", "empty part"),
        ("v2.users.", "empty part"),
        ("v2.users.u1.?presence", "empty part"),
        ("v2.users.u1?.presence", "empty part"),
    ],
)
def test_invalid_topics_are_refused_with_the_reason(topic: str, match: str) -> None:
    """Each invalid topic raises ConfigError saying what is wrong."""
    with pytest.raises(ConfigError, match=match):
        validate_topic(topic)


def test_error_names_the_topic() -> None:
    """The message quotes the offending topic."""
    with pytest.raises(ConfigError, match=r"'v2\.system\.socket_closing'"):
        validate_topic("v2.system.socket_closing")


@pytest.mark.parametrize("value", [None, 5, b"v2.users.u1.presence"])
def test_non_strings_are_refused(value: Any) -> None:
    """A topic that is not a str is a ConfigError, not a crash."""
    with pytest.raises(ConfigError, match="string"):
        validate_topic(value)


# -- expansion -----------------------------------------------------------------------------------


def test_combined_topic_expands_per_suffix() -> None:
    """A combined topic stands for prefix.suffix for each suffix, in order."""
    assert expand_topic("v2.users.X?presence&routingStatus") == (
        "v2.users.X.presence",
        "v2.users.X.routingStatus",
    )
    assert topic_cost("v2.users.X?presence&routingStatus") == 2


def test_plain_topic_expands_to_itself() -> None:
    """A plain topic stands for itself and costs one."""
    assert expand_topic("v2.users.X.presence") == ("v2.users.X.presence",)
    assert topic_cost("v2.users.X.presence") == 1


def test_expansion_validates() -> None:
    """Expanding an invalid topic raises the validation error."""
    with pytest.raises(ConfigError):
        expand_topic("channel.metadata")


# -- planning ------------------------------------------------------------------------------------


def test_no_topics_no_channels() -> None:
    """Nothing to follow needs no channel."""
    assert plan_channels([]) == ()


def test_small_sets_fit_one_channel_in_order() -> None:
    """Topics that fit one channel stay together in their given order."""
    topics = [user(3, "presence"), user(1, "conversations.calls"), user(2, "presence", "station")]
    assert plan_channels(topics) == (tuple(topics),)


def test_exact_duplicates_are_dropped() -> None:
    """A topic given twice is subscribed once, where it first appeared."""
    a, b = user(1, "presence"), user(2, "presence")
    assert plan_channels([a, b, a, b, a]) == ((a, b),)


def test_plain_topic_covered_by_a_combined_one_is_dropped() -> None:
    """A plain topic already covered by an earlier combined topic adds nothing."""
    both = user(1, "presence", "routingStatus")
    assert plan_channels([both, user(1, "presence")]) == ((both,),)


def test_combined_topic_fully_covered_is_dropped() -> None:
    """A combined topic whose parts were all given before adds nothing."""
    topics = [user(1, "presence"), user(1, "routingStatus"), user(1, "presence", "routingStatus")]
    assert plan_channels(topics) == (tuple(topics[:2]),)


def test_partly_covered_combined_topic_is_narrowed() -> None:
    """A combined topic overlapping earlier ones keeps only its new parts."""
    topics = [user(1, "presence"), user(1, "presence", "routingStatus", "station")]
    assert plan_channels(topics) == ((user(1, "presence"), user(1, "routingStatus", "station")),)


def test_narrowed_to_one_part_becomes_plain() -> None:
    """A combined topic left with one new part becomes that plain topic."""
    topics = [user(1, "presence"), user(1, "presence", "routingStatus")]
    assert plan_channels(topics) == ((user(1, "presence"), user(1, "routingStatus")),)


def test_topics_are_packed_and_combined_topics_not_split() -> None:
    """With a small per-channel limit the topics spread over channels, combined ones whole."""
    topics = [combined(1, 3), combined(2, 3), user(3, "presence"), combined(4, 2)]
    plan = plan_channels(topics, max_topics_per_channel=4)
    assert plan == ((combined(1, 3), user(3, "presence")), (combined(2, 3),), (combined(4, 2),))
    assert all(cost_of(channel) <= 4 for channel in plan)


def test_decreasing_fit_is_used_when_it_needs_fewer_channels() -> None:
    """When packing big topics first needs fewer channels, that packing is chosen."""
    costs = [2, 5, 4, 7, 1, 3, 8]
    topics = [combined(n, cost) for n, cost in enumerate(costs)]
    plan = plan_channels(topics, max_topics_per_channel=10)
    assert len(plan) == 3
    assert all(cost_of(channel) <= 10 for channel in plan)
    assert sorted(topic for channel in plan for topic in channel) == sorted(topics)
    for channel in plan:
        assert list(channel) == sorted(channel, key=topics.index)


def test_a_thousand_topics_per_channel_by_default() -> None:
    """2,500 plain topics need three channels of at most 1,000."""
    topics = [f"v2.users.u{n}.presence" for n in range(2500)]
    plan = plan_channels(topics)
    assert [len(channel) for channel in plan] == [1000, 1000, 500]
    assert [topic for channel in plan for topic in channel] == topics


def test_too_many_topics_raise_with_the_numbers() -> None:
    """More topics than 20 channels carry raise ChannelLimitError with counts and advice."""
    topics = [f"v2.users.u{n}.presence" for n in range(20_001)]
    with pytest.raises(ChannelLimitError) as caught:
        plan_channels(topics)
    message = str(caught.value)
    assert "20001 topics" in message
    assert "at least 21 channels" in message
    assert "only 20 channels" in message
    assert "capacity 20000 topics" in message
    assert "fewer topics" in message


def test_exactly_at_capacity_fits() -> None:
    """20 full channels are allowed."""
    topics = [f"v2.users.u{n}.presence" for n in range(20_000)]
    assert len(plan_channels(topics)) == 20


def test_combined_topic_larger_than_a_channel_raises() -> None:
    """A combined topic standing for more topics than a channel carries cannot be planned."""
    with pytest.raises(ChannelLimitError, match="stands for 3 topics, more than the 2"):
        plan_channels([combined(1, 3)], max_topics_per_channel=2)


def test_invalid_topic_in_the_plan_raises() -> None:
    """One invalid topic fails the plan with ConfigError naming it."""
    with pytest.raises(ConfigError, match=r"'v2\.system\.token_revoked'"):
        plan_channels([user(1, "presence"), "v2.system.token_revoked"])


@pytest.mark.parametrize("limits", [{"max_topics_per_channel": 0}, {"max_channels": 0}])
def test_invalid_limits_raise(limits: dict[str, int]) -> None:
    """Limits below one are a ConfigError."""
    with pytest.raises(ConfigError, match="at least 1"):
        plan_channels([user(1, "presence")], **limits)


def test_any_iterable_is_accepted_and_the_plan_is_deterministic() -> None:
    """A generator works, and the same input always gives the same plan."""
    topics = [combined(n, 1 + n % 4) for n in range(40)]
    first = plan_channels(iter(topics), max_topics_per_channel=7, max_channels=40)
    second = plan_channels(tuple(topics), max_topics_per_channel=7, max_channels=40)
    assert first == second


topic_strategy = st.builds(
    lambda user_id, parts: (
        f"v2.users.{user_id}.{parts[0]}"
        if len(parts) == 1
        else f"v2.users.{user_id}?{'&'.join(parts)}"
    ),
    st.sampled_from(["a", "b", "c"]),
    st.lists(
        st.sampled_from(["presence", "routingStatus", "station", "conversations.calls"]),
        min_size=1,
        max_size=4,
        unique=True,
    ),
)


@given(
    st.lists(topic_strategy, max_size=40),
    st.integers(min_value=4, max_value=12),
    st.integers(min_value=1, max_value=6),
)
def test_plan_covers_every_topic_exactly_once(
    topics: list[str], per_channel: int, channels: int
) -> None:
    """Every input topic's expansion is subscribed exactly once, within each channel's limit."""
    wanted = {name for topic in topics for name in expand_topic(topic)}
    try:
        plan = plan_channels(topics, max_topics_per_channel=per_channel, max_channels=channels)
    except ChannelLimitError:
        # First fit leaves at most one channel half empty or less, so it only gives up when
        # the channels would be more than half full on average.
        assert len(wanted) > (channels - 1) * per_channel / 2
        return
    planned = Counter(name for channel in plan for topic in channel for name in expand_topic(topic))
    assert set(planned) == wanted
    assert all(count == 1 for count in planned.values())
    assert all(0 < cost_of(channel) <= per_channel for channel in plan)
    assert len(plan) <= channels
    assert len(plan) >= -(-len(wanted) // per_channel)
    stream = [name for topic in topics for name in expand_topic(topic)]
    first_seen = {name: stream.index(name) for name in wanted}
    for channel in plan:
        order = [min(first_seen[name] for name in expand_topic(topic)) for topic in channel]
        assert order == sorted(order)
