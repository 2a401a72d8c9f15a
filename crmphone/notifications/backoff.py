"""How long to wait before reconnecting a notification channel: exponential backoff, full jitter.

The schedule follows Genesys Cloud's own streaming client (2 s, doubling, capped at 90 s, honouring
``Retry-After``) and adds full jitter, so a fleet of clients cut off together does not come back in
lockstep. Unlike websockets' reconnect iterator, which forgets its backoff after every successful
open, :class:`Backoff` forgets it only after a connection stayed up for ``healthy_after`` seconds: a
server that accepts and then closes at once meets growing delays, not a reconnect storm.

Usage by the I/O layer:

.. code-block:: python

    backoff = Backoff(BackoffPolicy(), random.Random())
    while True:
        try:
            websocket = await connect(...)
        except RateLimited as exc:
            await asyncio.sleep(backoff.next_delay(exc.retry_after)); continue
        except OSError:
            await asyncio.sleep(backoff.next_delay()); continue
        backoff.opened(clock.monotonic())
        ...  # until the socket closes
        backoff.closed(clock.monotonic())
        await asyncio.sleep(backoff.next_delay())

Tests make the jitter deterministic by injecting the random source: ``random.Random(seed)`` for a
reproducible sequence, or a ``random.Random`` subclass whose ``uniform(a, b)`` returns ``b`` to
get the ceiling of each step exactly.
"""

from __future__ import annotations

import math
import random
from typing import Any

import attrs

__all__ = ["Backoff", "BackoffPolicy"]


def _finite_at_least(minimum: float, *, strict: bool) -> Any:
    """Return an attrs validator: a finite number ``> minimum`` (strict) or ``>= minimum``."""

    def check(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"{attribute.name} must be a number, not {type(value).__name__}")
        ok = value > minimum if strict else value >= minimum
        if not (math.isfinite(value) and ok):
            relation = ">" if strict else ">="
            raise ValueError(
                f"{attribute.name} must be a finite number {relation} {minimum}, not {value!r}"
            )

    return check


@attrs.frozen
class BackoffPolicy:
    """The reconnect schedule, in seconds.

    Before retry ``n`` (counting from 0) the delay is drawn uniformly from
    ``[0, min(cap, initial * multiplier**n)]``. ``healthy_after``: how long a connection must stay
    open for the next failure to start again from ``initial``. ``max_retry_after``: the longest
    server-requested wait (``Retry-After``) we honour, so a bogus header cannot park the channel
    for days.
    """

    initial: float = attrs.field(default=2.0, validator=_finite_at_least(0.0, strict=True))
    multiplier: float = attrs.field(default=2.0, validator=_finite_at_least(1.0, strict=False))
    cap: float = attrs.field(default=90.0, validator=_finite_at_least(0.0, strict=True))
    healthy_after: float = attrs.field(default=60.0, validator=_finite_at_least(0.0, strict=False))
    max_retry_after: float = attrs.field(
        default=3600.0, validator=_finite_at_least(0.0, strict=True)
    )

    def __attrs_post_init__(self) -> None:
        """Check the fields against each other."""
        if self.cap < self.initial:
            raise ValueError(f"cap ({self.cap}) must be >= initial ({self.initial})")

    def ceiling(self, attempts: int) -> float:
        """Return the largest delay the jitter may pick before retry number ``attempts``."""
        try:
            grown = self.initial * self.multiplier**attempts
        except OverflowError:
            # After enough failures the exponent overflows a float; the cap applies long before.
            return self.cap
        return min(self.cap, grown)


@attrs.define
class Backoff:
    """The reconnect state of one channel: how many attempts failed since it was last healthy.

    ``rng`` supplies the jitter; inject ``random.Random(seed)`` (or a stub) in tests.
    """

    policy: BackoffPolicy
    rng: random.Random = attrs.field(repr=False)
    _attempts: int = attrs.field(default=0, init=False)
    _opened_at: float | None = attrs.field(default=None, init=False)

    @property
    def attempts(self) -> int:
        """How many delays were handed out since the last healthy connection (or the start)."""
        return self._attempts

    def next_delay(self, retry_after: float | None = None) -> float:
        """Return how long to wait before the next connection attempt, and count the attempt.

        ``retry_after`` is the server's ``Retry-After`` in seconds, when it sent one: the delay
        is then at least that long (up to ``policy.max_retry_after``).
        """
        delay = self.rng.uniform(0.0, self.policy.ceiling(self._attempts))
        if retry_after is not None and retry_after == retry_after:  # NaN means "not given"
            delay = max(delay, min(max(retry_after, 0.0), self.policy.max_retry_after))
        self._attempts += 1
        return delay

    def opened(self, now: float) -> None:
        """Record that a connection opened at ``now`` (monotonic seconds)."""
        self._opened_at = now

    def closed(self, now: float) -> None:
        """Record that the connection closed at ``now``; a healthy one resets the backoff.

        Healthy means it stayed open at least ``policy.healthy_after`` seconds. A connection
        that closed sooner keeps the count, so the next delay keeps growing.
        """
        opened_at, self._opened_at = self._opened_at, None
        if opened_at is not None and now - opened_at >= self.policy.healthy_after:
            self._attempts = 0

    def reset(self) -> None:
        """Start the schedule over (for example after the user asked to reconnect now)."""
        self._attempts = 0
        self._opened_at = None
