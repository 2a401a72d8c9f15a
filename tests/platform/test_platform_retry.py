"""RetryPolicy.decide and parse_retry_after: the pure retry decisions."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crmphone.platform import RetryPolicy, parse_retry_after

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


class CeilingRandom(random.Random):
    """A Random whose uniform() returns the upper bound, to expose the jitter ceiling."""

    def uniform(self, a: float, b: float) -> float:
        return b


def decide(policy: RetryPolicy, attempt: int, status: int | None, **kwargs: object) -> float | None:
    """Call decide with no Retry-After, no elapsed time and the ceiling rng unless overridden."""
    header = kwargs.pop("header", None)
    elapsed = kwargs.pop("elapsed", 0.0)
    return policy.decide(
        attempt,
        status,
        header,  # type: ignore[arg-type]
        elapsed,  # type: ignore[arg-type]
        rng=kwargs.pop("rng", CeilingRandom()),  # type: ignore[arg-type]
        now=NOW,
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("status", [400, 401, 403, 404])
def test_never_retries_client_errors_even_if_listed(status: int) -> None:
    """400/401/403/404 are final even when a policy lists them as retryable."""
    policy = RetryPolicy(retry_statuses=frozenset({status, 503}))
    assert decide(policy, 1, status) is None


@pytest.mark.parametrize("status", [429, 502, 503, 504])
def test_retries_the_documented_statuses(status: int) -> None:
    """429, 502, 503 and 504 get a wait on the first failure."""
    assert decide(RetryPolicy(), 1, status) == 0.5


@pytest.mark.parametrize("status", [409, 500, 501])
def test_other_statuses_are_final(status: int) -> None:
    """A status outside retry_statuses is not retried."""
    assert decide(RetryPolicy(), 1, status) is None


def test_backoff_doubles_up_to_max_delay() -> None:
    """The jitter ceiling doubles per attempt and stops at max_delay."""
    policy = RetryPolicy(max_attempts=10, initial_delay=1.0, max_delay=5.0, max_total_delay=1e9)
    ceilings = [decide(policy, attempt, 503) for attempt in range(1, 6)]
    assert ceilings == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_jitter_is_drawn_from_the_injected_rng() -> None:
    """The same seed gives the same waits; the waits stay within the ceiling."""
    policy = RetryPolicy(max_attempts=10, max_total_delay=1e9)
    first = [decide(policy, a, 503, rng=random.Random(5)) for a in range(1, 8)]
    second = [decide(policy, a, 503, rng=random.Random(5)) for a in range(1, 8)]
    assert first == second
    for attempt, delay in enumerate(first, start=1):
        assert delay is not None
        assert 0.0 <= delay <= min(30.0, 0.5 * 2 ** (attempt - 1))


def test_gives_up_after_max_attempts() -> None:
    """The attempt that reaches max_attempts is the last."""
    policy = RetryPolicy(max_attempts=3)
    assert decide(policy, 2, 503) is not None
    assert decide(policy, 3, 503) is None


def test_retry_after_seconds_is_honoured_exactly() -> None:
    """A Retry-After in seconds replaces the jittered backoff."""
    assert decide(RetryPolicy(), 1, 429, header="7") == 7.0


def test_retry_after_http_date_is_honoured() -> None:
    """A Retry-After HTTP-date is the time from now until then."""
    header = format_datetime(NOW + timedelta(seconds=12), usegmt=True)
    assert decide(RetryPolicy(), 1, 503, header=header) == 12.0


def test_retry_after_beyond_the_budget_gives_up() -> None:
    """A requested wait that would exceed max_total_delay ends the retries at once."""
    assert decide(RetryPolicy(max_total_delay=60.0), 1, 429, header="120") is None


def test_budget_counts_time_already_spent() -> None:
    """The elapsed time plus the next wait must fit in max_total_delay."""
    policy = RetryPolicy(max_total_delay=10.0)
    assert decide(policy, 1, 503, header="3", elapsed=7.0) == 3.0
    assert decide(policy, 1, 503, header="3", elapsed=7.5) is None


def test_transport_errors_retry_only_idempotent_methods() -> None:
    """No response: retried for GET-like methods, never for POST/PATCH (it may have happened)."""
    assert decide(RetryPolicy(), 1, None, idempotent=True) == 0.5
    assert decide(RetryPolicy(), 1, None, idempotent=False) is None


def test_non_idempotent_methods_retry_only_unprocessed_statuses() -> None:
    """POST is retried on 429/503 (not acted on) but not on 502/504 (it may have been)."""
    policy = RetryPolicy()
    assert decide(policy, 1, 429, idempotent=False) == 0.5
    assert decide(policy, 1, 503, idempotent=False) == 0.5
    assert decide(policy, 1, 502, idempotent=False) is None
    assert decide(policy, 1, 504, idempotent=False) is None


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_attempts", 0),
        ("initial_delay", 0.0),
        ("max_delay", -1.0),
        ("max_total_delay", 0.0),
    ],
)
def test_policy_validates_its_settings(field: str, value: float) -> None:
    """Nonsensical settings are refused when the policy is built."""
    with pytest.raises(ValueError, match=field):
        RetryPolicy(**{field: value})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("0", 0.0),
        (" 30 ", 30.0),
        ("1.5", 1.5),
        ("-1", None),
        ("nan", None),
        ("inf", None),
        ("soon", None),
        ("Thu, 01 Jan 2026 12:00:30 GMT", 30.0),
        ("Thu, 01 Jan 2026 11:00:00 GMT", 0.0),
    ],
)
def test_parse_retry_after(header: str | None, expected: float | None) -> None:
    """Seconds, HTTP-dates (past ones meaning now) and junk are read as documented."""
    assert parse_retry_after(header, NOW) == expected


@given(
    attempt=st.integers(min_value=1, max_value=20),
    status=st.one_of(st.none(), st.sampled_from([200, 400, 401, 429, 500, 502, 503, 504])),
    header=st.one_of(st.none(), st.integers(min_value=0, max_value=200).map(str), st.text()),
    elapsed=st.floats(min_value=0.0, max_value=100.0),
    seed=st.integers(),
    idempotent=st.booleans(),
)
def test_any_decision_respects_the_budget(
    attempt: int,
    status: int | None,
    header: str | None,
    elapsed: float,
    seed: int,
    idempotent: bool,
) -> None:
    """Whatever the inputs, a wait is non-negative and never overruns attempts or total time."""
    policy = RetryPolicy()
    delay = policy.decide(
        attempt, status, header, elapsed, rng=random.Random(seed), idempotent=idempotent, now=NOW
    )
    if delay is None:
        return
    assert attempt < policy.max_attempts
    assert delay >= 0.0
    assert elapsed + delay <= policy.max_total_delay
    assert status not in {400, 401, 403, 404}
