"""When to try a platform request again, and after how long — a pure decision, no I/O.

Genesys Cloud asks clients to retry 429, 502, 503 and 504 with backoff and to honour
``Retry-After``; 400, 401, 403 and 404 must not be retried blindly (401 is handled by refreshing the
token once, in the client). :class:`RetryPolicy` answers one question per failed attempt — wait this
many seconds, or give up — from the attempt number, the status (``None`` when no response arrived),
the ``Retry-After`` header and the time already spent. The asyncio layer does the waiting.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import attrs

__all__ = ["IDEMPOTENT_METHODS", "RetryPolicy", "parse_retry_after"]

#: Methods whose repetition cannot change the outcome, so a request whose fate is unknown
#: (connection reset, timeout) may be sent again.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})

# Statuses that must never be retried as they stand, whatever retry_statuses says: the request is
# wrong (400), unauthorised (401: the client refreshes the token once instead), forbidden (403) or
# aimed at nothing (404).
_NEVER_RETRY = frozenset({400, 401, 403, 404})


def _statuses(values: Iterable[int]) -> frozenset[int]:
    return frozenset(values)


def _positive(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not value > 0:
        raise ValueError(f"RetryPolicy.{attribute.name} must be > 0, got {value!r}")


def _at_least_one(_instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if value < 1:
        raise ValueError(f"RetryPolicy.{attribute.name} must be >= 1, got {value!r}")


@attrs.frozen
class RetryPolicy:
    """How persistently to retry a failed platform request.

    ``max_attempts`` counts every send, the first included. Each wait is drawn with *full jitter*
    from ``[0, min(max_delay, initial_delay * 2 ** (attempt - 1))]``, unless the platform sent
    ``Retry-After``, which is honoured exactly. A wait that would push the total time past
    ``max_total_delay`` ends the retries instead.

    ``retry_statuses`` are retried for every method. For methods that are not idempotent (POST,
    PATCH) only ``unsafe_retry_statuses`` are: 429 and 503 mean the platform did not act on the
    request, while after a 502/504 or a lost connection a POST such as "place a call" may already
    have happened, and sending it again could dial twice.
    """

    max_attempts: int = attrs.field(default=4, validator=_at_least_one)
    initial_delay: float = attrs.field(default=0.5, validator=_positive)
    max_delay: float = attrs.field(default=30.0, validator=_positive)
    max_total_delay: float = attrs.field(default=60.0, validator=_positive)
    retry_statuses: frozenset[int] = attrs.field(
        default=frozenset({429, 502, 503, 504}), converter=_statuses
    )
    unsafe_retry_statuses: frozenset[int] = attrs.field(
        default=frozenset({429, 503}), converter=_statuses
    )

    def decide(
        self,
        attempt: int,
        status: int | None,
        retry_after_header: str | None,
        elapsed: float,
        *,
        rng: random.Random,
        idempotent: bool = True,
        now: datetime | None = None,
    ) -> float | None:
        """Decide what follows failed attempt number ``attempt`` (1 for the first send).

        ``status`` is the HTTP status, or ``None`` when no response arrived (connect error,
        timeout, reset); ``elapsed`` is the seconds spent since the first send; ``now`` (aware UTC)
        is needed only to interpret a ``Retry-After`` given as an HTTP-date. Returns the seconds to
        wait before the next attempt, or ``None`` to give up and report the failure.
        """
        if attempt >= self.max_attempts:
            return None
        if status is None:
            if not idempotent:
                return None
        else:
            allowed = self.retry_statuses if idempotent else self.unsafe_retry_statuses
            if status in _NEVER_RETRY or status not in allowed:
                return None
        delay = parse_retry_after(retry_after_header, now) if status is not None else None
        if delay is None:
            ceiling = min(self.max_delay, self.initial_delay * 2.0 ** (attempt - 1))
            delay = rng.uniform(0.0, ceiling)
        if elapsed + delay > self.max_total_delay:
            return None
        return delay


def parse_retry_after(header: str | None, now: datetime | None = None) -> float | None:
    """Read a ``Retry-After`` header as seconds to wait; ``None`` when absent or unreadable.

    Accepts delta-seconds (``"120"``, and ``"1.5"`` leniently) and an HTTP-date, which needs
    ``now`` (aware UTC; defaults to the system clock). A date in the past means "now": 0.0.
    """
    if header is None:
        return None
    text = header.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; an obsolete format may parse naive
        when = when.replace(tzinfo=UTC)
    reference = now if now is not None else datetime.now(UTC)
    return max(0.0, (when - reference).total_seconds())
