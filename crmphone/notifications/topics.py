"""Notification topics: validate them, expand combined ones, and plan them onto channels.

A topic is a dotted name such as ``v2.users.{id}.conversations.calls``. Topics sharing a prefix may
be combined: ``v2.users.{id}?presence&routingStatus`` stands for ``v2.users.{id}.presence`` and
``v2.users.{id}.routingStatus``, and each of those counts toward the 1,000 topics a channel may carry.
System topics (``channel.metadata``, ``v2.system.*``) arrive on every channel without subscribing and
must never be subscribed.

:func:`plan_channels` is what the channel layer calls with the user's configured topics: it validates
them, drops what is already covered, and packs the rest onto as few channels as the limits allow.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from crmphone.errors import ChannelLimitError, ConfigError

__all__ = [
    "MAX_TOPIC_LENGTH",
    "expand_topic",
    "is_system_topic",
    "plan_channels",
    "topic_cost",
    "validate_topic",
]

MAX_TOPIC_LENGTH: Final = 200
"""The longest topic string (combined form included) the platform accepts."""

_METADATA_TOPIC: Final = "channel.metadata"
_SYSTEM_PREFIX: Final = "v2.system."


def is_system_topic(topic: str) -> bool:
    """Return whether ``topic`` is a system topic: it arrives without subscribing."""
    return topic == _METADATA_TOPIC or topic.startswith(_SYSTEM_PREFIX)


def _split(topic: str) -> tuple[str, tuple[str, ...]] | None:
    """Split a combined topic into its prefix and suffixes; None for a plain topic."""
    prefix, mark, rest = topic.partition("?")
    if not mark:
        return None
    return prefix, tuple(rest.split("&"))


def validate_topic(topic: str) -> str:
    """Return ``topic`` unchanged if it can be subscribed; raise ConfigError saying why not.

    Checks: a non-empty string of at most 200 printable characters without whitespace, no empty
    dot-separated part, not a system topic, and for the combined form ``prefix?a&b`` a non-empty
    prefix and non-empty, distinct suffixes. Nothing is stripped: stray spaces are an error.
    """
    if not isinstance(topic, str):
        raise ConfigError(f"a topic must be a string, not {type(topic).__name__}")
    if not topic:
        raise ConfigError("a topic must not be empty")
    if any(ch.isspace() or not ch.isprintable() for ch in topic):
        raise ConfigError(f"topic {topic!r} contains whitespace or control characters")
    if len(topic) > MAX_TOPIC_LENGTH:
        raise ConfigError(
            f"topic {topic[:40]!r}... is {len(topic)} characters long; the platform accepts at "
            f"most {MAX_TOPIC_LENGTH} (split a combined topic into several)"
        )
    split = _split(topic)
    if split is not None:
        prefix, suffixes = split
        if not prefix:
            raise ConfigError(f"combined topic {topic!r} has no prefix before '?'")
        if any(not suffix for suffix in suffixes):
            raise ConfigError(
                f"combined topic {topic!r} has an empty suffix; write 'prefix?a&b' with "
                f"non-empty parts"
            )
        if any("?" in suffix for suffix in suffixes):
            raise ConfigError(f"combined topic {topic!r} has more than one '?'")
        if len(set(suffixes)) != len(suffixes):
            raise ConfigError(f"combined topic {topic!r} repeats a suffix")
        names = (prefix, *(f"{prefix}.{suffix}" for suffix in suffixes))
    else:
        names = (topic,)
    for name in names:
        if is_system_topic(name):
            raise ConfigError(
                f"topic {topic!r} is a system topic; system topics (channel.metadata, "
                f"v2.system.*) arrive on every channel without subscribing: remove it"
            )
        if "" in name.split("."):
            raise ConfigError(f"topic {topic!r} has an empty part between dots")
    return topic


def expand_topic(topic: str) -> tuple[str, ...]:
    """Return the plain topics ``topic`` stands for (itself, unless combined); validates first.

    ``v2.users.X?presence&routingStatus`` → ``("v2.users.X.presence", "v2.users.X.routingStatus")``.
    """
    validate_topic(topic)
    split = _split(topic)
    if split is None:
        return (topic,)
    prefix, suffixes = split
    return tuple(f"{prefix}.{suffix}" for suffix in suffixes)


def topic_cost(topic: str) -> int:
    """Return how many of a channel's topics ``topic`` uses: one per expanded topic."""
    return len(expand_topic(topic))


def _rejoin(topic: str, kept: tuple[str, ...]) -> str:
    """Rewrite ``topic`` to cover only the expanded topics ``kept`` (a subset of its own)."""
    split = _split(topic)
    if split is None or len(kept) == len(split[1]):
        return topic
    prefix = split[0]
    suffixes = tuple(name[len(prefix) + 1 :] for name in kept)
    if len(suffixes) == 1:
        return kept[0]
    return f"{prefix}?{'&'.join(suffixes)}"


def _first_fit(items: list[tuple[str, int]], capacity: int, limit: int) -> list[list[int]] | None:
    """Pack item indexes into bins by first fit, in the given order; return index lists.

    Returns None as soon as more than ``limit`` bins would be needed (keeps the work bounded
    for absurd inputs).
    """
    bins: list[list[int]] = []
    room: list[int] = []
    for index, (_, cost) in enumerate(items):
        for slot, free in enumerate(room):
            if cost <= free:
                bins[slot].append(index)
                room[slot] -= cost
                break
        else:
            if len(bins) == limit:
                return None
            bins.append([index])
            room.append(capacity - cost)
    return bins


def plan_channels(
    topics: Iterable[str], *, max_topics_per_channel: int = 1000, max_channels: int = 20
) -> tuple[tuple[str, ...], ...]:
    """Return the topics to subscribe on each channel: validated, de-duplicated, packed.

    Every topic is validated (:func:`validate_topic`). A topic whose expanded topics are all
    covered by earlier ones is dropped; one partly covered is narrowed to the rest (so every
    expanded topic is subscribed exactly once). The remaining topics keep their order within
    each channel; a combined topic is never split across channels. Channels are as few as first
    fit finds (in input order, or by decreasing cost when that needs fewer), each costing at
    most ``max_topics_per_channel``. Deterministic: the same input gives the same plan.

    Raises ConfigError for an invalid topic or limit, and ChannelLimitError when the topics need
    more than ``max_channels`` channels.
    """
    if max_topics_per_channel < 1 or max_channels < 1:
        raise ConfigError(
            f"max_topics_per_channel ({max_topics_per_channel}) and max_channels "
            f"({max_channels}) must be at least 1"
        )
    covered: set[str] = set()
    items: list[tuple[str, int]] = []
    for topic in topics:
        expanded = expand_topic(topic)
        kept = tuple(name for name in expanded if name not in covered)
        if not kept:
            continue
        covered.update(kept)
        narrowed = _rejoin(topic, kept)
        if len(kept) > max_topics_per_channel:
            raise ChannelLimitError(
                f"topic {narrowed!r} stands for {len(kept)} topics, more than the "
                f"{max_topics_per_channel} a channel may carry; split it into smaller "
                f"combined topics"
            )
        items.append((narrowed, len(kept)))
    if not items:
        return ()

    candidates = [_first_fit(items, max_topics_per_channel, max_channels)]
    # First fit by decreasing cost packs mixed sizes tighter; the stable sort keeps the input
    # order among topics of equal cost.
    by_cost = sorted(range(len(items)), key=lambda index: -items[index][1])
    packed = _first_fit([items[i] for i in by_cost], max_topics_per_channel, max_channels)
    if packed is not None:
        candidates.append([[by_cost[position] for position in bin_] for bin_ in packed])
    fitting = [bins for bins in candidates if bins is not None]
    if not fitting:
        total = len(covered)
        at_least = max(max_channels + 1, -(-total // max_topics_per_channel))
        raise ChannelLimitError(
            f"{total} topics (after expanding combined topics) need at least {at_least} "
            f"channels of at most {max_topics_per_channel} topics, but only {max_channels} "
            f"channels are allowed per user and OAuth client (capacity "
            f"{max_channels * max_topics_per_channel} topics); subscribe to fewer topics (for "
            f"example a queue topic instead of one per agent) or spread them over several "
            f"OAuth clients"
        )
    bins = min(fitting, key=len)
    plan = [sorted(bin_) for bin_ in bins]
    plan.sort(key=lambda bin_: bin_[0])
    return tuple(tuple(items[index][0] for index in bin_) for bin_ in plan)
