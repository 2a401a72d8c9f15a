"""The demo's values: what the live view draws and what the report says.

The orchestration (:mod:`crmphone.demo.run`) measures; these classes only hold what it measured and
compute summaries from it. Nothing here is assumed or estimated: a latency summary is computed from
the calls whose latency was measured, a CRM's record count is what the CRM itself holds, and a figure
that was not measured is ``None`` (shown as "—"), never zero.

* :class:`DemoSnapshot` — one refresh of the live view: :class:`AgentView`, :class:`CallView`,
  :class:`RecordView` and :class:`CrmView` rows and a few counters.
* :class:`DemoReport` — the end of the run: one :class:`CallResult` per call placed, one
  :class:`CrmTotals` per adapter, and :meth:`DemoReport.latency` / :attr:`DemoReport.speedup` /
  :attr:`DemoReport.lost` / :meth:`DemoReport.to_json` computed from them.

Percentiles use the **nearest-rank** method: the p-th percentile of ``n`` sorted values is the value
at rank ``ceil(p / 100 * n)`` (1-based; rank 1 at least). It is always one of the measured values,
never an interpolation between two.

Values are validated when made: counts are not negative, durations and latencies are finite and not
negative, states are the names listed here, datetimes are aware (normalised to UTC). So a report can
always be written as strict JSON (no ``NaN``, no ``Infinity``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

import attrs

from crmphone.events import ConnectionState

__all__ = [
    "AGENT_CALL_STATES",
    "CALL_STATES",
    "PERCENTILE_METHOD",
    "AgentView",
    "CallResult",
    "CallView",
    "CrmTotals",
    "CrmView",
    "DemoReport",
    "DemoSnapshot",
    "LatencySummary",
    "RecordView",
    "percentile",
]

AGENT_CALL_STATES = ("ringing", "connected", "on hold")
"""What :attr:`AgentView.call_state` may say (or ``None``: no call)."""

CALL_STATES = (*AGENT_CALL_STATES, "ended")
"""What :attr:`CallView.state` may say."""

PERCENTILE_METHOD = "nearest-rank"
"""How :func:`percentile` picks a value (written into the JSON report beside the figures)."""

_CONNECTION_STATES = frozenset(state.value for state in ConnectionState)


# Validators and converters --------------------------------------------------------------------


def _aware_utc(value: datetime) -> datetime:
    """An aware datetime in UTC; a naive one is refused (its zone would be a guess)."""
    if not isinstance(value, datetime):
        raise TypeError(f"expected a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"demo times must be timezone-aware, got naive {value.isoformat()}")
    return value.astimezone(UTC)


def _count(_instance: object, attribute: attrs.Attribute[Any], value: int) -> None:
    # bool is an int, but True calls is a bug, not a count.
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{attribute.name} must be an int, got {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{attribute.name} must not be negative, got {value}")


def _optional_count(instance: object, attribute: attrs.Attribute[Any], value: int | None) -> None:
    if value is not None:
        _count(instance, attribute, value)


def _amount(_instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    # A NaN or an infinity here would make the JSON report invalid, so it is refused at the door.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{attribute.name} must be a number, got {type(value).__name__}")
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{attribute.name} must be finite and not negative, got {value!r}")


def _optional_amount(
    instance: object, attribute: attrs.Attribute[Any], value: float | None
) -> None:
    if value is not None:
        _amount(instance, attribute, value)


def _optional_positive_count(
    instance: object, attribute: attrs.Attribute[Any], value: int | None
) -> None:
    _optional_count(instance, attribute, value)
    if value == 0:
        raise ValueError(f"{attribute.name} must be positive when given (None: not planned)")


def _optional_positive_amount(
    instance: object, attribute: attrs.Attribute[Any], value: float | None
) -> None:
    _optional_amount(instance, attribute, value)
    if value == 0:
        raise ValueError(f"{attribute.name} must be positive when given (None: not planned)")


def _connection_state(value: str) -> str:
    # A ConnectionState member is a str whose str() is its value: keep the plain value.
    text = str(value)
    if text not in _CONNECTION_STATES:
        raise ValueError(f"connection must be one of {sorted(_CONNECTION_STATES)}, got {text!r}")
    return text


# One converter per element type: ``converter=tuple`` would leave mypy with an untyped parameter.


def _names(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(values)


def _agent_views(values: Iterable[AgentView]) -> tuple[AgentView, ...]:
    return tuple(values)


def _call_views(values: Iterable[CallView]) -> tuple[CallView, ...]:
    return tuple(values)


def _record_views(values: Iterable[RecordView]) -> tuple[RecordView, ...]:
    return tuple(values)


def _crm_views(values: Iterable[CrmView]) -> tuple[CrmView, ...]:
    return tuple(values)


def _call_results(values: Iterable[CallResult]) -> tuple[CallResult, ...]:
    return tuple(values)


def _crm_totals(values: Iterable[CrmTotals]) -> tuple[CrmTotals, ...]:
    return tuple(values)


def _frozen_mapping(values: Mapping[str, str]) -> Mapping[str, str]:
    # Sorted so the JSON report's key order does not depend on how the caller built the mapping.
    return MappingProxyType({str(key): str(values[key]) for key in sorted(values)})


def _iso_z(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


# Percentiles ---------------------------------------------------------------------------------


def percentile(values: Iterable[float], p: float) -> float:
    """The ``p``-th percentile (0 < ``p`` ≤ 100) of ``values`` by the nearest-rank method.

    The value at 1-based rank ``ceil(p / 100 * n)`` of the sorted values: always one of them.
    Raises :class:`ValueError` when there are no values or ``p`` is out of range.
    """
    ordered = sorted(values)
    if not ordered:
        raise ValueError("a percentile of no values is undefined")
    if not 0 < p <= 100:
        raise ValueError(f"p must be in (0, 100], got {p!r}")
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


@attrs.frozen(kw_only=True)
class LatencySummary:
    """Answer latency of one kind of call, in milliseconds, over the ``n`` measured calls.

    Made by :meth:`from_values` (or :meth:`DemoReport.latency`); percentiles are nearest-rank.
    """

    n: int = attrs.field(validator=_count)
    p50: float = attrs.field(validator=_amount)
    p90: float = attrs.field(validator=_amount)
    p99: float = attrs.field(validator=_amount)
    max: float = attrs.field(validator=_amount)
    mean: float = attrs.field(validator=_amount)

    @classmethod
    def from_values(cls, values: Iterable[float]) -> LatencySummary | None:
        """The summary of ``values`` (milliseconds), or ``None`` when there are none."""
        measured = sorted(values)
        if not measured:
            return None
        return cls(
            n=len(measured),
            p50=percentile(measured, 50),
            p90=percentile(measured, 90),
            p99=percentile(measured, 99),
            max=measured[-1],
            mean=math.fsum(measured) / len(measured),
        )

    def to_json(self) -> dict[str, Any]:
        """The summary as a JSON-ready dict (keys in declaration order)."""
        return {
            "n": self.n,
            "p50": self.p50,
            "p90": self.p90,
            "p99": self.p99,
            "max": self.max,
            "mean": self.mean,
        }


# The live view -------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class AgentView:
    """One agent's softphone as the live view shows it.

    ``connection`` is a :class:`~crmphone.events.ConnectionState` value (the member is accepted and
    kept as its value). ``call_state`` is one of :data:`AGENT_CALL_STATES`, or ``None``: no call.
    """

    id: str
    name: str
    connection: str = attrs.field(converter=_connection_state)
    persistent_active: bool
    microphone_live: bool
    presence: str | None = None
    call_state: str | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.in_(AGENT_CALL_STATES))
    )
    calls_answered: int = attrs.field(default=0, validator=_count)


@attrs.frozen(kw_only=True)
class CallView:
    """One call in the live view; ``seconds`` counts from when it started ringing.

    ``caller_name`` and ``number`` are user data: the view prints them literally.
    """

    conversation_id: str
    agent_name: str
    number: str | None
    caller_name: str | None
    state: str = attrs.field(validator=attrs.validators.in_(CALL_STATES))
    seconds: float = attrs.field(validator=_amount)


@attrs.frozen(kw_only=True)
class RecordView:
    """A CRM write the view lists under "records just written".

    ``stage`` says which write it was (e.g. ``"call.connected"``); ``record`` names what the CRM
    matched or made (``"Contact Ada Lovelace"``), or ``None`` when it names nothing.
    """

    adapter: str
    conversation_id: str
    stage: str
    record: str | None
    at: datetime = attrs.field(converter=_aware_utc)


@attrs.frozen(kw_only=True)
class CrmView:
    """One adapter's counters in the live view; ``requests`` is ``None`` when not measured."""

    adapter: str
    writes_done: int = attrs.field(validator=_count)
    requests: int | None = attrs.field(validator=_optional_count)
    dead_letters: int = attrs.field(validator=_count)
    outbox_depth: int = attrs.field(validator=_count)
    retries: int = attrs.field(validator=_count)


@attrs.frozen(kw_only=True)
class DemoSnapshot:
    """Everything the live view draws at one refresh.

    The run is planned by call count (``planned_calls``), by time (``planned_seconds``), or both;
    :attr:`progress` follows the count when there is one.
    """

    elapsed: float = attrs.field(validator=_amount)
    planned_calls: int | None = attrs.field(validator=_optional_positive_count)
    planned_seconds: float | None = attrs.field(validator=_optional_positive_amount)
    placed: int = attrs.field(validator=_count)
    finished: int = attrs.field(validator=_count)
    agents: tuple[AgentView, ...] = attrs.field(converter=_agent_views)
    calls: tuple[CallView, ...] = attrs.field(converter=_call_views)
    records: tuple[RecordView, ...] = attrs.field(converter=_record_views)
    crm: tuple[CrmView, ...] = attrs.field(converter=_crm_views)
    channel_reconnects: int = attrs.field(validator=_count)
    notifications: int = attrs.field(validator=_count)
    bridge_url: str | None = None
    bridge_clients: int = attrs.field(default=0, validator=_count)

    @property
    def progress(self) -> float:
        """How far the run is, in [0, 1]: ``finished / planned_calls`` when calls are planned,
        else ``elapsed / planned_seconds``, else 0."""
        if self.planned_calls is not None:
            fraction = self.finished / self.planned_calls
        elif self.planned_seconds is not None:
            fraction = self.elapsed / self.planned_seconds
        else:
            return 0.0
        return min(1.0, max(0.0, fraction))


# The report ----------------------------------------------------------------------------------


def _latency_needs_kind(
    instance: CallResult, attribute: attrs.Attribute[Any], value: float | None
) -> None:
    _optional_amount(instance, attribute, value)
    if value is not None and instance.over_persistent is None:
        # Every measured latency belongs to one of the two kinds the report compares.
        raise ValueError("answer_ms needs over_persistent (a first call, or over a persistent one)")
    if value is not None and not instance.answered:
        raise ValueError("answer_ms is only measured for an answered call")


@attrs.frozen(kw_only=True)
class CallResult:
    """One call the demo placed, as measured.

    ``answer_ms``: from the alerting seen at the agent's phone to the first audio packet received,
    or ``None`` when not measured. ``over_persistent``: whether the call rode an already persistent
    connection (``False``: a first call, which set the connection up), or ``None`` when unknown.
    ``logged_in``: the adapters whose CRM holds this call's record, as counted in that CRM.
    """

    conversation_id: str
    agent_id: str
    agent_name: str
    number: str | None
    answered: bool
    over_persistent: bool | None
    answer_ms: float | None = attrs.field(validator=_latency_needs_kind)
    logged_in: tuple[str, ...] = attrs.field(converter=_names)

    @property
    def measured(self) -> bool:
        """True when this call's answer latency was measured (and its kind is known)."""
        return self.answer_ms is not None and self.over_persistent is not None

    @property
    def kind(self) -> str:
        """``"persistent"``, ``"first call"``, or ``"unknown"`` (for tables and the JSON)."""
        if self.over_persistent is None:
            return "unknown"
        return "persistent" if self.over_persistent else "first call"

    def to_json(self) -> dict[str, Any]:
        """This call as a JSON-ready dict."""
        return {
            "conversation_id": self.conversation_id,
            "agent_id": self.agent_id,
            "agent_name": self.agent_name,
            "number": self.number,
            "answered": self.answered,
            "over_persistent": self.over_persistent,
            "answer_ms": self.answer_ms,
            "logged_in": list(self.logged_in),
        }


@attrs.frozen(kw_only=True)
class CrmTotals:
    """One adapter's totals at the end, counted in the CRM itself where the name says so.

    ``records``: calls with a record in the CRM. ``duplicates``: extra records for a call that
    already had one. ``requests``: API requests the CRM saw, or ``None`` when not measured.
    """

    adapter: str
    records: int = attrs.field(validator=_count)
    duplicates: int = attrs.field(validator=_count)
    writes_done: int = attrs.field(validator=_count)
    retries: int = attrs.field(validator=_count)
    dead_letters: int = attrs.field(validator=_count)
    requests: int | None = attrs.field(validator=_optional_count)

    @property
    def requests_per_call(self) -> float | None:
        """API requests per call logged in this CRM (``requests / records``), or ``None`` when
        requests were not measured or no call was logged."""
        if self.requests is None or self.records == 0:
            return None
        return self.requests / self.records

    def to_json(self) -> dict[str, Any]:
        """These totals as a JSON-ready dict, with :attr:`requests_per_call`."""
        return {
            "adapter": self.adapter,
            "records": self.records,
            "duplicates": self.duplicates,
            "writes_done": self.writes_done,
            "retries": self.retries,
            "dead_letters": self.dead_letters,
            "requests": self.requests,
            "requests_per_call": self.requests_per_call,
        }


@attrs.frozen(kw_only=True)
class DemoReport:
    """The end of a demo run: settings, every call placed, every CRM's totals, and counters.

    :attr:`calls` come in the order the calls were placed (the report's chart plots them so).

    Every summary (:meth:`latency`, :attr:`speedup`, :attr:`lost`, :attr:`answered`) is computed
    from :attr:`calls` and :attr:`crm` when asked; none is stored, so none can disagree with them.
    """

    started_at: datetime = attrs.field(converter=_aware_utc)
    seconds: float = attrs.field(validator=_amount)
    agents: int = attrs.field(validator=_count)
    planned_calls: int | None = attrs.field(validator=_optional_positive_count)
    planned_seconds: float | None = attrs.field(validator=_optional_positive_amount)
    calls: tuple[CallResult, ...] = attrs.field(converter=_call_results)
    crm: tuple[CrmTotals, ...] = attrs.field(converter=_crm_totals)
    channel_reconnects: int = attrs.field(validator=_count)
    notifications: int = attrs.field(validator=_count)
    outbox_max_depth: int = attrs.field(validator=_count)
    bridge_messages: int = attrs.field(validator=_count)
    bridge_clients: int = attrs.field(validator=_count)
    versions: Mapping[str, str] = attrs.field(converter=_frozen_mapping, factory=dict)

    @property
    def answered(self) -> int:
        """How many calls an agent answered."""
        return sum(1 for call in self.calls if call.answered)

    @property
    def duplicates(self) -> int:
        """Extra records for the same call, summed over every CRM."""
        return sum(totals.duplicates for totals in self.crm)

    def measured(self, over_persistent: bool) -> tuple[CallResult, ...]:
        """The calls of one kind whose latency was measured, in the order they were placed."""
        return tuple(
            call for call in self.calls if call.measured and call.over_persistent is over_persistent
        )

    def latency(self, over_persistent: bool) -> LatencySummary | None:
        """Answer latency of first calls (``False``) or calls over a persistent connection
        (``True``), or ``None`` when no call of that kind was measured."""
        return LatencySummary.from_values(
            call.answer_ms for call in self.measured(over_persistent) if call.answer_ms is not None
        )

    @property
    def speedup(self) -> float | None:
        """First-call p50 / persistent p50, or ``None`` unless both kinds were measured (and the
        persistent p50 is above zero)."""
        first, persistent = self.latency(over_persistent=False), self.latency(over_persistent=True)
        if first is None or persistent is None or persistent.p50 <= 0:
            return None
        return first.p50 / persistent.p50

    @property
    def lost(self) -> int:
        """Answered calls that at least one adapter's CRM has no record of."""
        adapters = {totals.adapter for totals in self.crm}
        return sum(
            1 for call in self.calls if call.answered and not adapters <= set(call.logged_in)
        )

    def to_json(self) -> dict[str, Any]:
        """Everything in the report plus its summaries, as a JSON-ready dict.

        Keys come in a fixed order; datetimes are ISO-8601 with ``Z``; every number is finite, so
        ``json.dumps(report.to_json(), allow_nan=False)`` always succeeds.
        """
        first, persistent = self.latency(over_persistent=False), self.latency(over_persistent=True)
        return {
            "started_at": _iso_z(self.started_at),
            "seconds": self.seconds,
            "agents": self.agents,
            "planned_calls": self.planned_calls,
            "planned_seconds": self.planned_seconds,
            "channel_reconnects": self.channel_reconnects,
            "notifications": self.notifications,
            "outbox_max_depth": self.outbox_max_depth,
            "bridge_messages": self.bridge_messages,
            "bridge_clients": self.bridge_clients,
            "versions": dict(self.versions),
            "summary": {
                "calls": len(self.calls),
                "answered": self.answered,
                "measured": len(self.measured(False)) + len(self.measured(True)),
                "lost": self.lost,
                "duplicates": self.duplicates,
                "speedup": self.speedup,
            },
            "latency_ms": {
                "method": PERCENTILE_METHOD,
                "first_call": None if first is None else first.to_json(),
                "persistent": None if persistent is None else persistent.to_json(),
            },
            "crm": [totals.to_json() for totals in self.crm],
            "calls": [call.to_json() for call in self.calls],
        }
