"""Reconnect backoff: exponential, full jitter, Retry-After, reset only after a healthy connection."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crmphone.notifications.backoff import Backoff, BackoffPolicy


class Highest(random.Random):
    """A random source whose uniform() always picks the upper bound."""

    def uniform(self, a: float, b: float) -> float:
        """Return the upper bound."""
        return b


class Lowest(random.Random):
    """A random source whose uniform() always picks the lower bound."""

    def uniform(self, a: float, b: float) -> float:
        """Return the lower bound."""
        return a


def test_policy_defaults_follow_the_genesys_client() -> None:
    """2 s doubling to a 90 s cap, healthy after 60 s, Retry-After honoured up to an hour."""
    assert BackoffPolicy() == BackoffPolicy(2.0, 2.0, 90.0, 60.0, 3600.0)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"initial": 0.0}, "initial"),
        ({"initial": -1.0}, "initial"),
        ({"initial": math.nan}, "initial"),
        ({"multiplier": 0.5}, "multiplier"),
        ({"cap": math.inf}, "cap"),
        ({"cap": 1.0}, "cap"),
        ({"healthy_after": -1.0}, "healthy_after"),
        ({"max_retry_after": 0.0}, "max_retry_after"),
    ],
)
def test_policy_rejects_invalid_values(overrides: dict[str, Any], match: str) -> None:
    """Non-positive, non-finite or inconsistent schedule values are refused, naming the field."""
    with pytest.raises(ValueError, match=match):
        BackoffPolicy(**overrides)


def test_policy_rejects_non_numbers() -> None:
    """A schedule value that is not a number (bools included) is a TypeError."""
    with pytest.raises(TypeError, match="initial"):
        BackoffPolicy(initial="2")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="cap"):
        BackoffPolicy(cap=True)


def test_ceilings_double_up_to_the_cap() -> None:
    """The jitter's ceiling goes 2, 4, 8, … and stays at 90 s."""
    policy = BackoffPolicy()
    assert [policy.ceiling(n) for n in range(9)] == [2, 4, 8, 16, 32, 64, 90, 90, 90]


def test_ceiling_survives_absurd_attempt_counts() -> None:
    """After enough failures the exponent would overflow; the cap applies instead."""
    assert BackoffPolicy().ceiling(10_000) == 90.0


def test_multiplier_one_keeps_a_constant_ceiling() -> None:
    """A multiplier of 1 gives a constant (jittered) delay."""
    policy = BackoffPolicy(initial=5.0, multiplier=1.0, cap=5.0)
    assert {policy.ceiling(n) for n in range(50)} == {5.0}


def test_delays_are_full_jitter_below_each_ceiling() -> None:
    """Each delay lies in [0, ceiling] for its attempt and the attempts are counted."""
    backoff = Backoff(BackoffPolicy(), random.Random(7))
    delays = [backoff.next_delay() for _ in range(12)]
    ceilings = [BackoffPolicy().ceiling(n) for n in range(12)]
    assert all(0.0 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert backoff.attempts == 12
    assert len(set(delays)) == 12


def test_highest_jitter_gives_the_exact_schedule() -> None:
    """With a stub that picks the top of the range, the delays are the ceilings themselves."""
    backoff = Backoff(BackoffPolicy(), Highest())
    assert [backoff.next_delay() for _ in range(8)] == [2, 4, 8, 16, 32, 64, 90, 90]


def test_lowest_jitter_can_reconnect_at_once() -> None:
    """Full jitter can pick zero: nothing is added below the drawn value."""
    backoff = Backoff(BackoffPolicy(), Lowest())
    assert backoff.next_delay() == 0.0


def test_same_seed_same_delays() -> None:
    """An injected seeded random source makes the schedule reproducible."""
    first = Backoff(BackoffPolicy(), random.Random(42))
    second = Backoff(BackoffPolicy(), random.Random(42))
    assert [first.next_delay() for _ in range(10)] == [second.next_delay() for _ in range(10)]


def test_retry_after_wins_when_longer() -> None:
    """A server's Retry-After longer than the jittered delay is waited in full."""
    backoff = Backoff(BackoffPolicy(), Highest())
    assert backoff.next_delay(retry_after=30.0) == 30.0
    assert backoff.attempts == 1


def test_jitter_wins_when_retry_after_is_shorter() -> None:
    """A short Retry-After does not shorten the backoff."""
    backoff = Backoff(BackoffPolicy(), Highest())
    for _ in range(3):
        backoff.next_delay()
    assert backoff.next_delay(retry_after=1.0) == 16.0


def test_retry_after_is_capped() -> None:
    """A bogus Retry-After of a day is cut to max_retry_after."""
    backoff = Backoff(BackoffPolicy(max_retry_after=600.0), Lowest())
    assert backoff.next_delay(retry_after=86_400.0) == 600.0


@pytest.mark.parametrize("retry_after", [-5.0, math.nan])
def test_nonsense_retry_after_is_ignored(retry_after: float) -> None:
    """A negative or NaN Retry-After adds nothing to the jittered delay."""
    backoff = Backoff(BackoffPolicy(), Lowest())
    assert backoff.next_delay(retry_after=retry_after) == 0.0


def test_healthy_connection_resets_the_schedule() -> None:
    """A connection that stayed open healthy_after seconds starts the schedule over."""
    backoff = Backoff(BackoffPolicy(), Highest())
    for _ in range(5):
        backoff.next_delay()
    backoff.opened(100.0)
    backoff.closed(160.0)
    assert backoff.attempts == 0
    assert backoff.next_delay() == 2.0


def test_accept_then_close_does_not_reset() -> None:
    """A server that accepts and closes at once meets growing delays, not a reconnect storm."""
    backoff = Backoff(BackoffPolicy(), Highest())
    now, delays = 0.0, []
    for _ in range(8):
        delay = backoff.next_delay()
        delays.append(delay)
        now += delay
        backoff.opened(now)
        now += 0.01
        backoff.closed(now)
    assert delays == [2, 4, 8, 16, 32, 64, 90, 90]


def test_closed_just_short_of_healthy_keeps_counting() -> None:
    """A connection closed a moment before healthy_after does not reset the count."""
    backoff = Backoff(BackoffPolicy(), Highest())
    backoff.next_delay()
    backoff.opened(0.0)
    backoff.closed(59.999)
    assert backoff.attempts == 1


def test_closed_without_opened_changes_nothing() -> None:
    """closed() with no open connection recorded leaves the count alone."""
    backoff = Backoff(BackoffPolicy(), Highest())
    backoff.next_delay()
    backoff.closed(1e9)
    assert backoff.attempts == 1


def test_each_open_is_judged_on_its_own() -> None:
    """An earlier long-lived connection does not make a later short one count as healthy."""
    backoff = Backoff(BackoffPolicy(), Highest())
    backoff.opened(0.0)
    backoff.closed(100.0)
    backoff.next_delay()
    backoff.closed(200.0)
    assert backoff.attempts == 1


def test_reset_starts_over() -> None:
    """reset() forgets failures and any open connection."""
    backoff = Backoff(BackoffPolicy(), Highest())
    backoff.next_delay()
    backoff.opened(0.0)
    backoff.reset()
    backoff.closed(1000.0)
    assert backoff.attempts == 0


@given(
    st.lists(st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)), max_size=40),
    st.integers(min_value=0, max_value=2**32),
)
def test_delays_stay_within_bounds(retry_afters: list[float | None], seed: int) -> None:
    """Every delay is finite, at least zero, and at most the larger of ceiling and capped Retry-After."""
    policy = BackoffPolicy()
    backoff = Backoff(policy, random.Random(seed))
    for attempt, retry_after in enumerate(retry_afters):
        delay = backoff.next_delay(retry_after)
        bound = policy.ceiling(attempt)
        if retry_after is not None and not math.isnan(retry_after):
            bound = max(bound, min(max(retry_after, 0.0), policy.max_retry_after))
        assert 0.0 <= delay <= bound
        assert math.isfinite(delay)
