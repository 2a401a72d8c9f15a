"""Counters: every request by route, a bounded log of requests, and the daily API allowance.

:class:`Stats` is what tests and benchmarks read (``model.stats.requests["composite"]``,
``model.stats.total``, ``model.stats.log``). :class:`ApiUsage` is what Salesforce itself counts
and reports in ``Sforce-Limit-Info: api-usage=N/MAX``: authenticated REST requests in a rolling
24 hours (an sObject Collections request of 200 records is one), refused with 403
``REQUEST_LIMIT_EXCEEDED`` once ``MAX`` is spent.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable

import attrs

from .faults import RouteKind

__all__ = ["DAY", "DEFAULT_API_LIMIT", "LOG_SIZE", "ApiUsage", "RequestRecord", "Stats"]

DEFAULT_API_LIMIT = 15_000
"""The emulated org's daily API request allowance unless configured otherwise."""

DAY = 86_400.0
"""The allowance's window, in clock seconds."""

LOG_SIZE = 1_000
"""How many requests :attr:`Stats.log` keeps (the oldest go first)."""


@attrs.frozen
class RequestRecord:
    """One request as answered: method, path, route kind, status, and when (clock seconds)."""

    method: str
    path: str
    route: RouteKind
    status: int
    at: float


class Stats:
    """Requests counted by route kind, with a bounded log of the latest ones."""

    def __init__(self, *, log_size: int = LOG_SIZE) -> None:
        self.requests: Counter[str] = Counter()
        """Requests per route kind (keys are :class:`RouteKind` values)."""
        self.statuses: Counter[int] = Counter()
        """Answers per HTTP status."""
        self.log: deque[RequestRecord] = deque(maxlen=log_size)
        """The latest requests, oldest first."""

    @property
    def total(self) -> int:
        """Every request counted so far."""
        return sum(self.requests.values())

    def record(self, entry: RequestRecord) -> None:
        """Count and log one answered request."""
        self.requests[entry.route.value] += 1
        self.statuses[entry.status] += 1
        self.log.append(entry)

    def reset(self) -> None:
        """Forget every count and log entry (e.g. between benchmark phases)."""
        self.requests.clear()
        self.statuses.clear()
        self.log.clear()


class ApiUsage:
    """The daily API allowance: ``used`` of ``limit`` in the current 24-hour window.

    Simplified from Salesforce's rolling 24 hours to a window that starts at the first counted
    request and restarts a day later.
    """

    def __init__(self, clock: Callable[[], float], limit: int = DEFAULT_API_LIMIT) -> None:
        if limit < 0:
            raise ValueError("the API limit must not be negative")
        self._clock = clock
        self.limit = limit
        self._used = 0
        self._window_start: float | None = None

    @property
    def used(self) -> int:
        """Requests counted in the current window."""
        self._roll()
        return self._used

    def try_count(self) -> bool:
        """Count one request; False (nothing counted) when the allowance is spent."""
        self._roll()
        if self._used >= self.limit:
            return False
        if self._window_start is None:
            self._window_start = self._clock()
        self._used += 1
        return True

    def header(self) -> str:
        """The ``Sforce-Limit-Info`` value: ``api-usage=N/MAX``."""
        return f"api-usage={self.used}/{self.limit}"

    def set_used(self, used: int) -> None:
        """Pretend ``used`` requests were made today (to test behaviour near the limit)."""
        if used < 0:
            raise ValueError("used must not be negative")
        self._roll()
        if self._window_start is None:
            self._window_start = self._clock()
        self._used = used

    def reset(self) -> None:
        """Start a fresh day."""
        self._used = 0
        self._window_start = None

    def _roll(self) -> None:
        if self._window_start is not None and self._clock() - self._window_start >= DAY:
            self.reset()
