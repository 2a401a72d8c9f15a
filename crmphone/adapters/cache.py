"""A short-lived cache of caller lookups, so a caller who rings again soon costs no CRM search.

Keyed by what the adapter searched (the number's search digits); entries live ``ttl`` seconds
(0: nothing is kept), and past ``size`` entries the oldest goes. Not thread-safe: adapters use it
on the event loop, around their ``run_sync`` lookups.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from crmphone.adapters.base import CrmRecord

__all__ = ["LookupCache"]


class LookupCache:
    """Recent lookups' records by search key, for ``ttl`` seconds, at most ``size`` of them."""

    def __init__(
        self, ttl: float, *, size: int = 10_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self.size = size
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, tuple[CrmRecord, ...]]] = OrderedDict()

    def get(self, key: str) -> tuple[CrmRecord, ...] | None:
        """The records found for ``key`` less than ``ttl`` ago, or None."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= self._clock():
            del self._entries[key]
            return None
        return entry[1]

    def put(self, key: str, records: tuple[CrmRecord, ...]) -> None:
        """Keep what a lookup of ``key`` found."""
        if self.ttl <= 0:
            return
        self._entries[key] = (self._clock() + self.ttl, records)
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)
