"""Fault injection: the ways a Zendesk account goes wrong, on demand (sans-I/O).

Faults queue up in :class:`Faults` (``emulator.model.faults``) and are consumed **one per API
request**, first in, first out: each request takes the first pending fault whose ``route`` scope
matches it (no scope: any API route; ``"voice"`` matches ``voice.display_user`` and every other
``voice.*`` route; an exact name matches only that route). What each kind puts on the wire:

``rate_limited``
    429 with ``Retry-After: retry_after`` and a plain-text body; ``rate_limited(burst=N)``
    answers the next N matching requests so.
``unavailable``
    503 (or ``status``) with a ``text/plain`` body, as a proxy in front of Zendesk sends it: no
    JSON, no rate-limit headers.
``slow``
    The request is handled normally, but the answer leaves ``delay`` seconds later (the work is
    done before the wait, as on a slow server whose client times out).
``expired_credentials``
    401 ``{"error": "Couldn't authenticate you"}`` although the credentials are good.
``rejected``
    422 ``{"error": "RecordInvalid", …}`` before anything is stored, as an account's business
    rule refuses a record: a failure that retrying cannot fix.

Search-index lag is a setting, not a consumable fault: :meth:`Faults.search_lag` (or
``model.search_lag``) makes records created less than that many seconds ago invisible to search.
"""

from __future__ import annotations

import enum
from collections.abc import Callable

import attrs

__all__ = ["Fault", "FaultKind", "FaultRecord", "Faults"]


class FaultKind(enum.StrEnum):
    """The consumable fault kinds (see the module docstring)."""

    RATE_LIMITED = "rate_limited"
    UNAVAILABLE = "unavailable"
    SLOW = "slow"
    EXPIRED_CREDENTIALS = "expired_credentials"
    REJECTED = "rejected"


@attrs.frozen
class Fault:
    """One pending fault: what it does, to which routes, with its parameters."""

    kind: FaultKind
    route: str | None = None
    retry_after: int = 1
    delay: float = 0.0
    status: int = 503

    def applies_to(self, route: str) -> bool:
        """Whether a request of route kind ``route`` takes this fault."""
        return self.route is None or route == self.route or route.startswith(self.route + ".")


@attrs.frozen
class FaultRecord:
    """A fault as consumed: when (monotonic), by which route kind."""

    at: float
    route: str
    fault: Fault


class Faults:
    """The fault queue of one emulated account; see the module docstring."""

    def __init__(self, *, set_search_lag: Callable[[float], None]) -> None:
        self._pending: list[Fault] = []
        self._set_search_lag = set_search_lag
        self.consumed: list[FaultRecord] = []
        """Every fault taken by a request, in order."""

    @property
    def pending(self) -> tuple[Fault, ...]:
        """The faults not consumed yet, in the order requests will take them."""
        return tuple(self._pending)

    def fail_next(
        self,
        kind: FaultKind | str,
        count: int = 1,
        *,
        route: str | None = None,
        retry_after: int = 1,
        delay: float = 1.0,
        status: int = 503,
    ) -> None:
        """Make the next ``count`` matching API requests fail with ``kind``.

        ``route`` scopes the fault to a route kind or a family (``"tickets"``, ``"voice"``);
        ``retry_after`` is for ``rate_limited`` (whole seconds, at least 1 so that zenpy's
        ``ratelimit_budget`` applies), ``delay`` for ``slow``, ``status`` for ``unavailable``.
        ValueError for an unknown kind or out-of-range parameters.
        """
        fault_kind = FaultKind(kind)
        if count < 1:
            raise ValueError(f"count must be at least 1, got {count}")
        if retry_after < 1:
            raise ValueError(f"retry_after must be at least 1 second, got {retry_after}")
        if delay < 0:
            raise ValueError(f"delay must not be negative, got {delay}")
        if not 500 <= status <= 599:
            raise ValueError(f"status must be a 5xx code, got {status}")
        fault = Fault(fault_kind, route, int(retry_after), float(delay), int(status))
        self._pending.extend([fault] * count)

    def rate_limited(
        self, burst: int = 1, *, retry_after: int = 1, route: str | None = None
    ) -> None:
        """Answer the next ``burst`` matching requests with 429 and ``Retry-After``."""
        self.fail_next(FaultKind.RATE_LIMITED, burst, route=route, retry_after=retry_after)

    def unavailable(self, count: int = 1, *, status: int = 503, route: str | None = None) -> None:
        """Answer the next ``count`` matching requests with a plain-text 5xx."""
        self.fail_next(FaultKind.UNAVAILABLE, count, route=route, status=status)

    def slow(self, delay: float, count: int = 1, *, route: str | None = None) -> None:
        """Delay the answers to the next ``count`` matching requests by ``delay`` seconds."""
        self.fail_next(FaultKind.SLOW, count, route=route, delay=delay)

    def expired_credentials(self, count: int = 1, *, route: str | None = None) -> None:
        """Answer the next ``count`` matching requests with 401 as if the token had expired."""
        self.fail_next(FaultKind.EXPIRED_CREDENTIALS, count, route=route)

    def rejected(self, count: int = 1, *, route: str | None = None) -> None:
        """Answer the next ``count`` matching requests with 422 RecordInvalid."""
        self.fail_next(FaultKind.REJECTED, count, route=route)

    def search_lag(self, seconds: float) -> None:
        """From now on, records younger than ``seconds`` are invisible to search."""
        if seconds < 0:
            raise ValueError(f"search lag must not be negative, got {seconds}")
        self._set_search_lag(float(seconds))

    def clear(self) -> None:
        """Drop every pending fault (the search lag setting stays)."""
        self._pending.clear()

    def take(self, route: str, now: float) -> Fault | None:
        """Consume and return the first pending fault that applies to ``route``, if any."""
        for index, fault in enumerate(self._pending):
            if fault.applies_to(route):
                del self._pending[index]
                self.consumed.append(FaultRecord(now, route, fault))
                return fault
        return None
