"""Time as a parameter.

Sans-I/O cores take plain ``now`` floats (seconds, monotonic) in their methods. The I/O layers that
drive them take a :class:`Clock`, so tests can substitute :class:`ManualClock` and run a 24-hour
channel expiry in microseconds.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Protocol

import attrs

__all__ = ["Clock", "ClockJumpDetector", "ManualClock", "SystemClock"]


class Clock(Protocol):
    """A source of time: monotonic seconds for timers, aware UTC datetimes for the wall."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards (for timeouts and ages)."""
        ...

    def wall(self) -> datetime:
        """The current wall-clock time, timezone-aware UTC (for comparing with platform dates)."""
        ...


class SystemClock:
    """The real clock."""

    def monotonic(self) -> float:
        """See :meth:`Clock.monotonic`."""
        return time.monotonic()

    def wall(self) -> datetime:
        """See :meth:`Clock.wall`."""
        return datetime.now(UTC)


@attrs.define
class ManualClock:
    """A clock that moves only when told to; monotonic and wall time advance together."""

    mono: float = 1000.0
    start_wall: datetime = attrs.field(factory=lambda: datetime(2026, 1, 1, tzinfo=UTC))
    _elapsed: float = 0.0

    def monotonic(self) -> float:
        """See :meth:`Clock.monotonic`."""
        return self.mono + self._elapsed

    def wall(self) -> datetime:
        """See :meth:`Clock.wall`."""
        return self.start_wall + timedelta(seconds=self._elapsed)

    def advance(self, seconds: float) -> None:
        """Move both clocks forward by ``seconds`` (never backwards)."""
        if seconds < 0:
            raise ValueError("a ManualClock only moves forward")
        self._elapsed += seconds


@attrs.define
class ClockJumpDetector:
    """Notices the wall clock jumping (NTP stepping it, an admin setting it, a VM resumed).

    Feed it readings of both clocks (:meth:`observe`); it answers how far the wall clock moved
    beyond what the monotonic clock says passed, when that is more than ``threshold`` seconds
    (either way). Slewing (NTP's gradual correction) never reaches the threshold, so only real
    steps are reported. Sans-I/O: the caller reads the clocks.
    """

    threshold: float = 5.0
    _last: tuple[float, float] | None = None

    def observe(self, monotonic: float, wall: float) -> float | None:
        """Record a reading (monotonic seconds, wall epoch seconds); return the jump since the
        previous one (positive: forward) when beyond the threshold, else None."""
        last, self._last = self._last, (monotonic, wall)
        if last is None:
            return None
        jump = (wall - last[1]) - (monotonic - last[0])
        return jump if abs(jump) > self.threshold else None
