"""Nothing delivered twice while two sockets overlap.

During a make-before-break rollover the old and the new socket of a channel are both live, and the
platform sends every event to both: the same event (same topic, ``CorrelationId`` and body) arrives
twice, in either order, possibly a little apart. :class:`Deduplicator` lets the first copy through
and drops the copy from the other socket.

The rule is a multiset match across sources. For each event key it remembers how many copies each
source delivered and how many were admitted. A copy from source ``S`` is admitted iff ``S`` has now
delivered more copies of that key than were admitted so far; otherwise another source already
delivered it and it is a duplicate. Consequences:

* with two sockets each delivering an event once, it is admitted once, whichever comes first;
* repeats from the *same* source are admitted (the platform itself sends a state more than once;
  the call layer handles that), and each repeat's twin from the other socket is dropped;
* with three overlapping sockets an event still comes through once.

Memory is bounded twice: a key is forgotten ``window`` seconds after its first copy (the overlap of
two sockets is far shorter), and at most ``max_keys`` keys are kept (the oldest go first).
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Hashable
from typing import Any, Final, TypeAlias, cast

import attrs

from crmphone.notifications.messages import TopicEvent

__all__ = ["Deduplicator", "event_key"]


def _pick_canonical_dumps() -> Callable[[Any], bytes | str]:
    """Return a serialiser to compact JSON with sorted keys: orjson's when installed."""
    try:
        import orjson
    except ImportError:  # pragma: no cover - orjson is a dev dependency here
        return _stdlib_canonical
    option = orjson.OPT_SORT_KEYS

    def dumps(value: Any) -> bytes | str:
        return orjson.dumps(value, option=option)

    return dumps


def _stdlib_canonical(value: Any) -> str:
    """Serialise ``value`` to compact JSON with sorted keys using the stdlib."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


_canonical: Final = _pick_canonical_dumps()


def event_key(event: TopicEvent) -> Hashable:
    """Return the identity of ``event`` across sockets: ``(topic, correlation id, body)``.

    The body is serialised canonically (sorted keys, compact), so two sockets that serialise the
    same event with a different key order still match, and distinct events sharing a correlation
    id do not. A body that cannot be serialised canonically (nested deeper than orjson allows,
    integers beyond 64 bits) falls back to the frame's text.
    """
    try:
        body: Hashable = _canonical(event.event_body)
    except (TypeError, ValueError):
        try:
            body = _stdlib_canonical(event.event_body)
        except (TypeError, ValueError, RecursionError):
            body = ("text", event.text)
    return (event.topic_name, event.correlation_id, body)


# What is remembered per key: (admitted, seen), where ``seen`` is a flat tuple
# (source, count, source, count, ...). Tuples of plain values are untracked by the garbage
# collector, so a window holding 100,000 keys adds no work to every collection, and there are
# rarely more than two sources to scan.
_Entry: TypeAlias = tuple[int, tuple[Hashable, ...]]


def _count_copy(seen: tuple[Hashable, ...], source: Hashable) -> tuple[int, tuple[Hashable, ...]]:
    """Add one copy from ``source`` to ``seen``; return the source's new count and the tuple."""
    for index in range(0, len(seen), 2):
        if seen[index] == source:
            count = cast(int, seen[index + 1]) + 1
            return count, (*seen[: index + 1], count, *seen[index + 2 :])
    return 1, (*seen, source, 1)


@attrs.define
class Deduplicator:
    """Admits each event once across overlapping sockets (see the module docs for the rule).

    Call :meth:`admit` for every :class:`TopicEvent` with the socket it came from as ``source``
    (any hashable: a socket number will do) and :func:`event_key` as ``key``; deliver the event
    iff it returns True. Call :meth:`forget_source` when a socket is gone for good. ``now`` is
    monotonic seconds and must not go backwards.
    """

    window: float = attrs.field(default=30.0)
    max_keys: int = attrs.field(default=100_000)
    admitted: int = attrs.field(default=0, init=False)
    """How many copies :meth:`admit` let through."""
    duplicates: int = attrs.field(default=0, init=False)
    """How many copies :meth:`admit` dropped as duplicates."""
    _entries: dict[Hashable, _Entry] = attrs.field(factory=dict, init=False, repr=False)
    # (first seen, key) per remembered key, oldest first: keys leave in the order they came.
    _order: deque[tuple[float, Hashable]] = attrs.field(factory=deque, init=False, repr=False)

    @window.validator
    def _check_window(self, attribute: attrs.Attribute[float], value: float) -> None:
        if not value > 0:
            raise ValueError(f"window must be > 0 seconds, not {value!r}")

    @max_keys.validator
    def _check_max_keys(self, attribute: attrs.Attribute[int], value: int) -> None:
        if value < 1:
            raise ValueError(f"max_keys must be >= 1, not {value!r}")

    def __len__(self) -> int:
        """Return how many keys are remembered."""
        return len(self._entries)

    def admit(self, source: Hashable, key: Hashable, now: float) -> bool:
        """Record a copy of ``key`` from ``source`` at ``now``; True to deliver it, False to drop.

        False means another source already delivered this copy within ``window`` seconds.
        O(1) amortised.
        """
        entries = self._entries
        order = self._order
        horizon = now - self.window
        while order and order[0][0] <= horizon:
            del entries[order.popleft()[1]]

        entry = entries.get(key)
        if entry is None:
            if len(entries) >= self.max_keys:
                del entries[order.popleft()[1]]
            entries[key] = (1, (source, 1))
            order.append((now, key))
            self.admitted += 1
            return True
        admitted, seen = entry
        count, seen = _count_copy(seen, source)
        if count > admitted:
            entries[key] = (count, seen)
            self.admitted += 1
            return True
        entries[key] = (admitted, seen)
        self.duplicates += 1
        return False

    def forget_source(self, source: Hashable) -> None:
        """Forget what ``source`` delivered, once that socket is closed for good.

        What was admitted stays remembered, so late copies from the remaining sockets of events
        the closed one delivered are still dropped. Frees memory and lets the source's name be
        reused. Takes time proportional to the number of remembered keys (call it once per
        socket, not per event).
        """
        entries = self._entries
        for key, (admitted, seen) in entries.items():
            for index in range(0, len(seen), 2):
                if seen[index] == source:
                    entries[key] = (admitted, seen[:index] + seen[index + 2 :])
                    break
