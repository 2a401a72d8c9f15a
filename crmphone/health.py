"""Health and metrics over HTTP: liveness, readiness, and Prometheus metrics for ``crmphone run``.

* :class:`Metrics` — a small registry of counters and gauges, rendered in the Prometheus text
  exposition format 0.0.4. Gauges may read their value from a function at scrape time (the outbox
  depth). :class:`ConnectorMetrics` pre-defines the connector's series.
* :class:`HealthServer` — ``async with HealthServer(metrics, ready=check) as server`` serves, on the
  running loop, until the block ends:

  ============  ===============================================================================
  ``/livez``    200 whenever the event loop answers (a blocked loop cannot: the probe times out)
  ``/readyz``   200 when ``ready()`` says so, else 503 with ``{"status": "not ready", "reason"}``
  ``/metrics``  the registry, ``Content-Type: text/plain; version=0.0.4; charset=utf-8``
  ============  ===============================================================================

:class:`ConnectorMetrics` also carries the process's own figures, read at scrape time: the
standard Prometheus ``process_resident_memory_bytes``, ``process_cpu_seconds_total`` and
``process_open_fds`` (from ``/proc/self``, so Linux only: elsewhere they are left out), plus
``crmphone_open_sockets`` and ``crmphone_asyncio_tasks``, which show a leak of sockets or tasks
long before it hurts.

It binds 127.0.0.1 unless told otherwise: metrics name adapters and agents' CRM activity, which is
nobody else's business. Port 0 picks a free port; :attr:`HealthServer.port` says which.

Everything here runs on the event loop and must stay quick: gauge functions and the readiness check
are called on every scrape or probe, so they read state the connector already has (no I/O beyond
a fast local query).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import os
import re
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Final, Self, TypeVar

import attrs
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from crmphone._serving import ServedApp, url_host
from crmphone.errors import InvalidStateError

__all__ = [
    "CONTENT_TYPE",
    "PROC_SELF",
    "ConnectorMetrics",
    "Counter",
    "CounterSeries",
    "Gauge",
    "GaugeSeries",
    "HealthServer",
    "Metrics",
    "Readiness",
    "ReadinessCheck",
    "create_health_app",
]

logger = logging.getLogger(__name__)

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
"""The media type of the Prometheus text exposition format that ``/metrics`` serves."""

SHUTDOWN_TIMEOUT: Final = 2

_METRIC_NAME_RE: Final = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_NAME_RE: Final = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")

LabelValues = tuple[str, ...]
_F = TypeVar("_F", bound="_Family")


# ---------------------------------------------------------------------------------------------
# The registry


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _escape_label_value(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    # Whole numbers print as integers (counters read naturally); 2**53 keeps the conversion exact.
    if value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(value)


class _Family:
    """One metric: a name, its help, its label names, and one value per label combination."""

    kind: str = ""

    def __init__(self, name: str, help: str, labels: Iterable[str]) -> None:
        if not _METRIC_NAME_RE.match(name):
            raise ValueError(f"{name!r} is not a valid Prometheus metric name")
        label_names = tuple(labels)
        for label in label_names:
            if not _LABEL_NAME_RE.match(label) or label.startswith("__"):
                raise ValueError(f"{label!r} is not a valid Prometheus label name")
        if len(set(label_names)) != len(label_names):
            raise ValueError(f"{name}: a label name is repeated in {label_names!r}")
        self.name = name
        self.help = help
        self.label_names = label_names
        # Metrics are fed from the loop, but run_sync threads may count too: one lock per family.
        self._lock = threading.Lock()
        self._values: dict[LabelValues, float] = {}

    def _key(self, labels: Mapping[str, object]) -> LabelValues:
        if set(labels) != set(self.label_names):
            raise ValueError(
                f"{self.name} takes labels {list(self.label_names)}, got {sorted(labels)}"
            )
        return tuple(str(labels[name]) for name in self.label_names)

    def _unlabelled(self) -> LabelValues:
        if self.label_names:
            raise ValueError(
                f"{self.name} has labels {list(self.label_names)}: use .labels(...) first"
            )
        return ()

    def _add(self, key: LabelValues, amount: float) -> None:
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def _get(self, key: LabelValues) -> float:
        with self._lock:
            return self._values.get(key, 0.0)

    def _samples(self) -> list[tuple[LabelValues, float]]:
        with self._lock:
            return sorted(self._values.items())

    def render(self) -> list[str]:
        """The family's lines in the text format: HELP, TYPE, then one line per series."""
        lines = [f"# HELP {self.name} {_escape_help(self.help)}", f"# TYPE {self.name} {self.kind}"]
        for key, value in self._samples():
            if key:
                pairs = ",".join(
                    f'{name}="{_escape_label_value(v)}"'
                    for name, v in zip(self.label_names, key, strict=True)
                )
                lines.append(f"{self.name}{{{pairs}}} {_format_value(value)}")
            else:
                lines.append(f"{self.name} {_format_value(value)}")
        return lines


class CounterSeries:
    """One labelled series of a :class:`Counter` (from :meth:`Counter.labels`)."""

    def __init__(self, family: Counter, key: LabelValues) -> None:
        self._family = family
        self._key = key

    def inc(self, amount: float = 1.0) -> None:
        """Add ``amount`` (>= 0) to the series."""
        self._family._inc(self._key, amount)

    @property
    def value(self) -> float:
        """The current count."""
        return self._family._get(self._key)


class Counter(_Family):
    """A value that only goes up (events in, writes done). Its name ends in ``_total``.

    Unlabelled: ``counter.inc()``. Labelled: ``counter.labels(adapter="webhook").inc()``. A series
    appears in the output once it was first touched (``.labels(...)`` alone creates it at 0).
    """

    kind = "counter"

    def __init__(self, name: str, help: str, labels: Iterable[str] = ()) -> None:
        if not name.endswith("_total"):
            raise ValueError(f"counter {name!r} must end in _total")
        super().__init__(name, help, labels)
        if not self.label_names:
            self._values[()] = 0.0  # an unlabelled counter is exposed from the start

    def labels(self, **labels: object) -> CounterSeries:
        """The series for these label values (every label, by name)."""
        key = self._key(labels)
        with self._lock:
            self._values.setdefault(key, 0.0)
        return CounterSeries(self, key)

    def inc(self, amount: float = 1.0) -> None:
        """Add ``amount`` (>= 0) to an unlabelled counter."""
        self._inc(self._unlabelled(), amount)

    @property
    def value(self) -> float:
        """The current count of an unlabelled counter."""
        return self._get(self._unlabelled())

    def _inc(self, key: LabelValues, amount: float) -> None:
        if not amount >= 0:
            raise ValueError(f"{self.name}: a counter cannot decrease (got {amount!r})")
        self._add(key, amount)


GaugeFunction = Callable[[], float | None]
LabelledGaugeFunction = Callable[[], Mapping[str | LabelValues, float]]


class GaugeSeries:
    """One labelled series of a :class:`Gauge` (from :meth:`Gauge.labels`)."""

    def __init__(self, family: Gauge, key: LabelValues) -> None:
        self._family = family
        self._key = key

    def set(self, value: float) -> None:
        """Set the series to ``value``."""
        self._family._set(self._key, value)

    def inc(self, amount: float = 1.0) -> None:
        """Add ``amount`` to the series."""
        self._family._add(self._key, amount)

    def dec(self, amount: float = 1.0) -> None:
        """Subtract ``amount`` from the series."""
        self._family._add(self._key, -amount)

    def set_function(self, function: GaugeFunction) -> None:
        """Read the series from ``function()`` at every scrape instead (quick, no I/O; None
        leaves the sample out of that scrape)."""
        self._family._set_function(self._key, function)

    @property
    def value(self) -> float:
        """The current value (a function's, when one is set)."""
        return self._family._read(self._key)


class Gauge(_Family):
    """A value that goes up and down (outbox depth), set directly or read at scrape time.

    ``gauge.set(3)``, ``gauge.labels(adapter="webhook").set_function(lambda: depth)``, or for all
    label values at once :meth:`set_labelled_function`.
    """

    kind = "gauge"

    def __init__(self, name: str, help: str, labels: Iterable[str] = ()) -> None:
        super().__init__(name, help, labels)
        self._functions: dict[LabelValues, GaugeFunction] = {}
        self._labelled_function: LabelledGaugeFunction | None = None
        if not self.label_names:
            self._values[()] = 0.0

    def labels(self, **labels: object) -> GaugeSeries:
        """The series for these label values (every label, by name)."""
        key = self._key(labels)
        with self._lock:
            self._values.setdefault(key, 0.0)
        return GaugeSeries(self, key)

    def set(self, value: float) -> None:
        """Set an unlabelled gauge to ``value``."""
        self._set(self._unlabelled(), value)

    def inc(self, amount: float = 1.0) -> None:
        """Add ``amount`` to an unlabelled gauge."""
        self._add(self._unlabelled(), amount)

    def dec(self, amount: float = 1.0) -> None:
        """Subtract ``amount`` from an unlabelled gauge."""
        self._add(self._unlabelled(), -amount)

    def set_function(self, function: GaugeFunction) -> None:
        """Read an unlabelled gauge from ``function()`` at every scrape (quick, no I/O; None
        leaves the sample out of that scrape)."""
        self._set_function(self._unlabelled(), function)

    def set_labelled_function(self, function: LabelledGaugeFunction) -> None:
        """Read every series from one ``function()`` at each scrape: it returns a mapping from
        label values (a string for a one-label gauge, else a tuple in label order) to values.

        Its series replace the ones set directly; one query serves all adapters' outbox depths.
        """
        if not self.label_names:
            raise ValueError(f"{self.name} has no labels: use set_function")
        self._labelled_function = function

    @property
    def value(self) -> float:
        """The current value of an unlabelled gauge."""
        return self._read(self._unlabelled())

    def _set(self, key: LabelValues, value: float) -> None:
        with self._lock:
            self._values[key] = float(value)

    def _set_function(self, key: LabelValues, function: GaugeFunction) -> None:
        with self._lock:
            self._values.setdefault(key, 0.0)
            self._functions[key] = function

    def _read(self, key: LabelValues) -> float:
        return dict(self._samples()).get(key, 0.0)

    def _samples(self) -> list[tuple[LabelValues, float]]:
        with self._lock:
            values = dict(self._values)
            functions = dict(self._functions)
            labelled = self._labelled_function
        for key, function in functions.items():
            value = self._call(function)
            if value is None:
                values.pop(key, None)  # no sample beats a wrong one
            else:
                values[key] = value
        if labelled is not None:
            values = self._labelled_samples(labelled)
        return sorted(values.items())

    def _labelled_samples(self, function: LabelledGaugeFunction) -> dict[LabelValues, float]:
        result = self._call_mapping(function)
        samples: dict[LabelValues, float] = {}
        for raw_key, raw_value in result.items():
            key = (raw_key,) if isinstance(raw_key, str) else tuple(str(v) for v in raw_key)
            if len(key) != len(self.label_names):
                logger.warning(
                    "gauge %s: function gave %d label values for labels %s; skipped",
                    self.name,
                    len(key),
                    list(self.label_names),
                )
                continue
            value = _as_number(raw_value)
            if value is not None:
                samples[key] = value
        return samples

    def _call(self, function: GaugeFunction) -> float | None:
        try:
            return _as_number(function())
        except Exception:  # one broken gauge must not break the whole scrape
            logger.warning(
                "gauge %s: its function failed; sample left out", self.name, exc_info=True
            )
            return None

    def _call_mapping(self, function: LabelledGaugeFunction) -> Mapping[str | LabelValues, float]:
        try:
            return function()
        except Exception:  # one broken gauge must not break the whole scrape
            logger.warning(
                "gauge %s: its function failed; samples left out", self.name, exc_info=True
            )
            return {}


def _as_number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


class _ScrapedCounter(Counter):
    """An unlabelled counter kept by someone else (the kernel's CPU time), read at each scrape."""

    def __init__(self, name: str, help: str, function: GaugeFunction) -> None:
        super().__init__(name, help)
        self._function = function

    def _inc(self, key: LabelValues, amount: float) -> None:
        raise InvalidStateError(f"{self.name} is read at scrape time; it cannot be incremented")

    def _get(self, key: LabelValues) -> float:
        return dict(self._samples()).get(key, 0.0)

    def _samples(self) -> list[tuple[LabelValues, float]]:
        try:
            value = _as_number(self._function())
        except Exception:  # one broken series must not break the whole scrape
            logger.warning(
                "counter %s: its function failed; sample left out", self.name, exc_info=True
            )
            value = None
        return [] if value is None else [((), value)]


# ---------------------------------------------------------------------------------------------
# The process's own figures


PROC_SELF: Final = Path("/proc/self")
"""Where :class:`ConnectorMetrics` reads the process's memory, CPU time and descriptors (Linux)."""


def _clock_ticks() -> int:
    sysconf = getattr(os, "sysconf", None)
    try:
        return int(sysconf("SC_CLK_TCK")) if sysconf is not None else 100
    except (ValueError, OSError):
        return 100  # what every Linux build uses


def _page_size() -> int:
    sysconf = getattr(os, "sysconf", None)
    try:
        return int(sysconf("SC_PAGE_SIZE")) if sysconf is not None else 4096
    except (ValueError, OSError):
        return 4096


class _ProcessFigures:
    """One process's figures from its ``/proc/<pid>`` directory, read afresh at every call.

    Each reader answers None when the file cannot be read or parsed, which leaves the sample out
    of that scrape (a process may lose access to /proc, say in a sandboxed container).
    """

    def __init__(self, proc: Path) -> None:
        self.proc = proc
        self._page_size = _page_size()
        self._clock_ticks = _clock_ticks()

    @staticmethod
    def available(proc: Path) -> bool:
        """Whether ``proc`` looks like a readable /proc process directory."""
        try:
            return (proc / "stat").is_file() and (proc / "fd").is_dir()
        except OSError:
            return False

    def resident_bytes(self) -> float | None:
        """Resident set size in bytes (``statm``'s second field is in pages)."""
        try:
            fields = (self.proc / "statm").read_text().split()
            return float(int(fields[1]) * self._page_size)
        except (OSError, IndexError, ValueError):
            return None

    def cpu_seconds(self) -> float | None:
        """User plus system CPU time of every thread, in seconds."""
        try:
            text = (self.proc / "stat").read_text()
            # The command name (field 2) is in parentheses and may hold spaces or ')': the
            # fields that follow start after the last ')', at field 3 (the state).
            fields = text[text.rindex(")") + 2 :].split()
            utime, stime = int(fields[14 - 3]), int(fields[15 - 3])
        except (OSError, IndexError, ValueError):
            return None
        return (utime + stime) / self._clock_ticks

    def open_fds(self) -> float | None:
        """Open file descriptors (the listing's own descriptor included)."""
        try:
            return float(len(os.listdir(self.proc / "fd")))
        except OSError:
            return None

    def open_sockets(self) -> float | None:
        """Open descriptors that are sockets (their link reads ``socket:[inode]``)."""
        directory = self.proc / "fd"
        try:
            names = os.listdir(directory)
        except OSError:
            return None
        sockets = 0
        for name in names:
            try:
                target = os.readlink(directory / name)
            except OSError:  # closed between the listing and the look
                continue
            sockets += target.startswith("socket:")
        return float(sockets)


def _asyncio_tasks() -> float | None:
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # rendered off the event loop (a test calling render()): no sample
        return None
    return float(len(asyncio.all_tasks(loop)))


class Metrics:
    """A registry of counters and gauges, rendered by :meth:`render` for ``/metrics``.

    Define each metric once, at start-up, with :meth:`counter` or :meth:`gauge`; feed it from
    anywhere (increments are thread-safe). Families render in the order they were defined.
    """

    def __init__(self) -> None:
        self._families: dict[str, _Family] = {}

    def counter(self, name: str, help: str, labels: Iterable[str] = ()) -> Counter:
        """Define a counter (``name`` ends in ``_total``); a name can be defined only once."""
        return self._register(Counter(name, help, labels))

    def gauge(self, name: str, help: str, labels: Iterable[str] = ()) -> Gauge:
        """Define a gauge; a name can be defined only once."""
        return self._register(Gauge(name, help, labels))

    def __getitem__(self, name: str) -> Counter | Gauge:
        """The metric called ``name`` (KeyError if none)."""
        family = self._families[name]
        assert isinstance(family, Counter | Gauge)
        return family

    def __contains__(self, name: object) -> bool:
        return name in self._families

    def render(self) -> str:
        """Every metric in the Prometheus text exposition format 0.0.4 (see :data:`CONTENT_TYPE`)."""
        lines: list[str] = []
        for family in list(self._families.values()):
            lines.extend(family.render())
        return "\n".join(lines) + "\n" if lines else ""

    def _register(self, family: _F) -> _F:
        if family.name in self._families:
            raise ValueError(f"metric {family.name!r} is already defined")
        self._families[family.name] = family
        return family


class ConnectorMetrics(Metrics):
    """The connector's metrics, defined up front so they appear (at 0) before anything happens.

    Feed ``events_in.inc()``, ``writes_done.labels(adapter=instance).inc()`` and so on; give
    ``outbox_depth`` a scrape-time function with :meth:`Gauge.set_labelled_function`.

    The process series read themselves at every scrape: ``asyncio_tasks`` counts the tasks of
    the loop that serves the scrape, and the others read ``proc`` (:data:`PROC_SELF`). Where
    ``proc`` is None or not a readable /proc directory (not Linux), ``resident_memory``,
    ``cpu_seconds``, ``open_fds`` and ``open_sockets`` are None and absent from ``/metrics``.
    """

    def __init__(self, *, proc: Path | None = PROC_SELF) -> None:
        super().__init__()
        self.events_in = self.counter(
            "crmphone_events_in_total", "Call events made from the platform's notifications."
        )
        self.writes_done = self.counter(
            "crmphone_writes_done_total", "CRM writes an adapter completed.", ["adapter"]
        )
        self.write_retries = self.counter(
            "crmphone_write_retries_total",
            "CRM writes that failed and were scheduled again.",
            ["adapter"],
        )
        self.dead_letters = self.counter(
            "crmphone_dead_letters_total",
            "CRM writes given up on and moved to the dead letters.",
            ["adapter"],
        )
        self.outbox_depth = self.gauge(
            "crmphone_outbox_depth", "CRM writes waiting in the outbox.", ["adapter"]
        )
        self.channel_reconnects = self.counter(
            "crmphone_channel_reconnects_total", "Notification channel reconnects."
        )
        self.duplicates_dropped = self.counter(
            "crmphone_duplicates_dropped_total",
            "Copies of call events the outbox refused (counted per adapter).",
        )
        self.notifications_pending = self.gauge(
            "crmphone_notifications_pending",
            "Notifications received from the platform and not yet stored (grows while the "
            "connector falls behind).",
        )
        self.tls_unverified = self.gauge(
            "crmphone_tls_verification_disabled",
            "1 for each connection configured with verify = false (TLS certificates not checked).",
            ["target"],
        )
        self.adapter_gauges = self.gauge(
            "crmphone_adapter_gauge",
            "Figures an adapter reports about its CRM (such as the API allowance used today).",
            ["adapter", "name"],
        )

        self.asyncio_tasks = self.gauge(
            "crmphone_asyncio_tasks",
            "Tasks on the connector's event loop (the scrape's own included).",
        )
        self.asyncio_tasks.set_function(_asyncio_tasks)
        self.resident_memory: Gauge | None = None
        self.cpu_seconds: Counter | None = None
        self.open_fds: Gauge | None = None
        self.open_sockets: Gauge | None = None
        if proc is not None and _ProcessFigures.available(proc):
            self._add_process_series(_ProcessFigures(proc))

    def _add_process_series(self, figures: _ProcessFigures) -> None:
        # The names and meanings of the Prometheus client libraries' standard process series,
        # so existing dashboards and alerts work unchanged.
        self.resident_memory = self.gauge(
            "process_resident_memory_bytes", "Resident memory size in bytes."
        )
        self.resident_memory.set_function(figures.resident_bytes)
        self.cpu_seconds = self._register(
            _ScrapedCounter(
                "process_cpu_seconds_total",
                "Total user and system CPU time spent in seconds.",
                figures.cpu_seconds,
            )
        )
        self.open_fds = self.gauge("process_open_fds", "Number of open file descriptors.")
        self.open_fds.set_function(figures.open_fds)
        self.open_sockets = self.gauge(
            "crmphone_open_sockets", "Open file descriptors that are sockets."
        )
        self.open_sockets.set_function(figures.open_sockets)

    def add_adapter(self, instance: str) -> None:
        """Expose the per-adapter counters of ``instance`` at 0 before its first write."""
        for family in (self.writes_done, self.write_retries, self.dead_letters):
            family.labels(adapter=instance)


# ---------------------------------------------------------------------------------------------
# The HTTP side


@attrs.frozen
class Readiness:
    """What a readiness check answers: ready, or not and why (the reason goes to the prober)."""

    ready: bool
    reason: str | None = None

    @classmethod
    def yes(cls) -> Self:
        """Ready."""
        return cls(ready=True)

    @classmethod
    def no(cls, reason: str) -> Self:
        """Not ready, because ``reason`` (such as ``"notification channel not connected"``)."""
        return cls(ready=False, reason=reason)


ReadinessCheck = Callable[[], Readiness | bool | Awaitable[Readiness | bool]]
"""Called on every ``/readyz``: a :class:`Readiness`, a bool, or an awaitable of either."""


def _always_ready() -> Readiness:
    return Readiness.yes()


def create_health_app(metrics: Metrics, ready: ReadinessCheck | None = None) -> Starlette:
    """The ASGI app behind :class:`HealthServer` (for in-process tests with httpx.ASGITransport)."""
    check = ready if ready is not None else _always_ready
    no_store = {"Cache-Control": "no-store"}

    async def livez(request: Request) -> Response:
        return JSONResponse({"status": "live"}, headers=no_store)

    async def readyz(request: Request) -> Response:
        readiness = await _evaluate(check)
        if readiness.ready:
            return JSONResponse({"status": "ready"}, headers=no_store)
        body = {"status": "not ready", "reason": readiness.reason or "not ready"}
        return JSONResponse(body, status_code=503, headers=no_store)

    async def metrics_endpoint(request: Request) -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE, headers=no_store)

    return Starlette(
        routes=[
            Route("/livez", livez, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/metrics", metrics_endpoint, methods=["GET"]),
        ]
    )


async def _evaluate(check: ReadinessCheck) -> Readiness:
    try:
        result = check()
        if inspect.isawaitable(result):
            result = await result
    except Exception as exc:  # a failing check means "not ready", said plainly
        logger.warning("readiness check failed", exc_info=True)
        # The type only: an exception's text may carry anything, secrets included.
        return Readiness.no(f"readiness check failed ({type(exc).__name__})")
    if isinstance(result, Readiness):
        return result
    return Readiness.yes() if result else Readiness.no("not ready")


class HealthServer:
    """``/livez``, ``/readyz`` and ``/metrics`` on a real socket, served on the running loop.

    ``async with HealthServer(metrics, ready=check, port=0) as server`` binds, serves, and on exit
    stops. :attr:`port` is the bound port (useful with port 0), :attr:`url` the base URL.
    Raises :class:`~crmphone.errors.TransportError` when the address cannot be bound.
    """

    def __init__(
        self,
        metrics: Metrics,
        *,
        ready: ReadinessCheck | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.metrics = metrics
        self.host = host
        self._ready = ready
        self._requested_port = port
        self._served: ServedApp | None = None
        self._port: int | None = None

    @property
    def port(self) -> int:
        """The bound TCP port."""
        if self._port is None:
            raise InvalidStateError("the health server is not running (use `async with`)")
        return self._port

    @property
    def url(self) -> str:
        """``http://host:port``."""
        return f"http://{url_host(self.host)}:{self.port}"

    async def __aenter__(self) -> Self:
        self._served = await ServedApp.start(
            create_health_app(self.metrics, self._ready),
            host=self.host,
            port=self._requested_port,
            name="crmphone-health-server",
            what="the health endpoint",
            hint="choose another port (--health-port) or stop what listens there",
            shutdown_timeout=SHUTDOWN_TIMEOUT,
        )
        self._port = self._served.port
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        served, self._served = self._served, None
        self._port = None
        if served is not None:
            await served.stop()
