"""Fault injection: the ways a Salesforce org lets a connector down, on demand.

``model.faults.fail_next(kind, count=1, route=None, ...)`` queues ``count`` faults; each API
request takes (and consumes) the first queued fault that applies to its route, so every fault hits
exactly one request. A fault without ``route`` applies to any authenticated REST route
(everything under ``/services/data/vNN.0/``); one with a route applies to that kind of request only
(see :class:`RouteKind`; ``oauth`` and ``versions`` must be named explicitly).

What each kind answers:

``expired_session``
    401 ``[{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]``, as if
    the token had expired (the token stays valid for the next request).
``request_limit``
    403 ``[{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]``
    (Salesforce sends no Retry-After with it).
``unavailable``
    503 with an HTML page, as Salesforce answers during maintenance or an instance outage (its
    load balancers answer HTML, not the REST error array: clients must not assume JSON). With
    ``retry_after`` the answer carries ``Retry-After``.
``rejected``
    400 ``[{"message": "…", "errorCode": "FIELD_CUSTOM_VALIDATION_EXCEPTION"}]`` before anything is
    applied, as an org's validation rule refuses a record: a failure that retrying cannot fix.
``slow``
    The request is carried out at once, and its answer leaves ``delay`` seconds later — the write
    happened even if the client gave up waiting, as with a real answer lost to a client timeout.

Search-index lag is not a queued fault but a setting: ``model.search_lag`` seconds.
"""

from __future__ import annotations

import enum
from collections import Counter, deque

import attrs

from crmphone.errors import ConfigError

__all__ = ["DATA_ROUTES", "Fault", "FaultKind", "Faults", "RouteKind"]


class FaultKind(enum.StrEnum):
    """What an injected fault does (see the module docstring)."""

    EXPIRED_SESSION = "expired_session"
    REQUEST_LIMIT = "request_limit"
    UNAVAILABLE = "unavailable"
    REJECTED = "rejected"
    SLOW = "slow"


class RouteKind(enum.StrEnum):
    """The kinds of request the emulator counts and can scope faults to."""

    VERSIONS = "versions"
    """``GET /services/data/``: the API versions (no token needed)."""
    OAUTH = "oauth"
    """``POST /services/oauth2/token``."""
    RESOURCES = "resources"
    """``GET /services/data/vNN.0/``."""
    SOBJECT = "sobject"
    """Create, get, update, delete one record (and get by external id)."""
    UPSERT = "upsert"
    """``PATCH /sobjects/{T}/{Field}/{value}``."""
    DESCRIBE = "describe"
    """Global and per-object describe."""
    QUERY = "query"
    """``GET /query``."""
    SEARCH = "search"
    """``GET /search``."""
    COMPOSITE = "composite"
    """sObject Collections (``/composite/sobjects``)."""
    LIMITS = "limits"
    """``GET /limits``."""
    OTHER = "other"
    """Any other path under ``/services/data/vNN.0/`` (answered 404)."""


DATA_ROUTES = frozenset(RouteKind) - {RouteKind.VERSIONS, RouteKind.OAUTH}
"""The routes an unscoped fault applies to: the authenticated REST API."""

_SESSIONLESS = frozenset({RouteKind.VERSIONS, RouteKind.OAUTH})


@attrs.frozen
class Fault:
    """One queued fault: its kind, the route it is scoped to (None: any REST route), and its
    parameters (``delay`` seconds for ``slow``; ``retry_after`` seconds for ``unavailable``)."""

    kind: FaultKind
    route: RouteKind | None = None
    delay: float = 0.0
    retry_after: int | None = None

    def applies_to(self, route: RouteKind) -> bool:
        """Whether a request of ``route`` takes this fault."""
        if self.route is None:
            return route in DATA_ROUTES
        return self.route is route


class Faults:
    """The queue of injected faults of one emulated org."""

    def __init__(self) -> None:
        self._queue: deque[Fault] = deque()
        self.applied: Counter[FaultKind] = Counter()
        """How many faults of each kind requests have taken so far."""

    def fail_next(
        self,
        kind: FaultKind | str,
        count: int = 1,
        *,
        route: RouteKind | str | None = None,
        delay: float = 1.0,
        retry_after: int | None = None,
    ) -> None:
        """Make the next ``count`` requests (of ``route``, or of any REST route) fail with ``kind``.

        ConfigError for an unknown kind or route, a negative count or delay, or a session fault
        scoped to a route without a session (``oauth``, ``versions``).
        """
        try:
            fault_kind = FaultKind(kind)
        except ValueError as exc:
            known = ", ".join(k.value for k in FaultKind)
            raise ConfigError(f"unknown fault kind {kind!r}; known: {known}") from exc
        try:
            route_kind = RouteKind(route) if route is not None else None
        except ValueError as exc:
            known = ", ".join(r.value for r in RouteKind)
            raise ConfigError(f"unknown route kind {route!r}; known: {known}") from exc
        if count < 0 or delay < 0 or (retry_after is not None and retry_after < 0):
            raise ConfigError("count, delay and retry_after must not be negative")
        if route_kind in _SESSIONLESS and fault_kind in (
            FaultKind.EXPIRED_SESSION,
            FaultKind.REQUEST_LIMIT,
        ):
            raise ConfigError(f"{fault_kind.value} cannot apply to {route_kind.value} requests")
        fault = Fault(
            fault_kind,
            route_kind,
            delay=delay if fault_kind is FaultKind.SLOW else 0.0,
            retry_after=retry_after if fault_kind is FaultKind.UNAVAILABLE else None,
        )
        self._queue.extend([fault] * count)

    def take(self, route: RouteKind) -> Fault | None:
        """Consume and return the first queued fault that applies to a ``route`` request."""
        for index, fault in enumerate(self._queue):
            if fault.applies_to(route):
                del self._queue[index]
                self.applied[fault.kind] += 1
                return fault
        return None

    @property
    def pending(self) -> tuple[Fault, ...]:
        """The faults still queued, in order."""
        return tuple(self._queue)

    def clear(self) -> None:
        """Drop every queued fault."""
        self._queue.clear()
