"""LookupCache: recent caller lookups kept for their time, bounded, on an injected clock."""

from __future__ import annotations

from crmphone.adapters import CrmRecord
from crmphone.adapters.cache import LookupCache

ALICE = (CrmRecord("Contact", "003A", "Alice"),)


class Clock:
    """Seconds that move only when the test says."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_an_entry_lives_its_ttl_then_is_gone() -> None:
    """Fresh within the TTL, absent from its end on."""
    clock = Clock()
    cache = LookupCache(60.0, clock=clock)
    cache.put("5550100001", ALICE)
    clock.now = 59.9
    assert cache.get("5550100001") == ALICE
    clock.now = 60.0
    assert cache.get("5550100001") is None


def test_no_matches_are_cached_too() -> None:
    """An empty result is remembered (a second ring costs no search either)."""
    cache = LookupCache(60.0, clock=Clock())
    cache.put("5550199999", ())
    assert cache.get("5550199999") == ()


def test_a_ttl_of_zero_keeps_nothing() -> None:
    """lookup_cache_seconds = 0 turns the cache off."""
    cache = LookupCache(0.0, clock=Clock())
    cache.put("5550100001", ALICE)
    assert cache.get("5550100001") is None


def test_past_its_size_the_oldest_entry_goes() -> None:
    """The cache never grows past ``size``; the least recently stored goes first."""
    cache = LookupCache(60.0, size=2, clock=Clock())
    for key in ("a", "b", "c"):
        cache.put(key, ALICE)
    assert [cache.get(key) for key in ("a", "b", "c")] == [None, ALICE, ALICE]
