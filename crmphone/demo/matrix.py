"""The fault matrix: the demo's house on a bad day, measured.

The house is the demo's: the sandbox platform, every installed CRM emulator, and the connector
(:func:`crmphone.service.run_connector`) with every adapter, configured as an admin would. Calls
flow to the agents the whole time. Each fault is injected while they do, one at a time, and then
all together; for each, the run measures from where it happened:

* **events lost** — (call, CRM) pairs whose last stage (the wrap-up) never reached the CRM: the
  outbox holds no finished log for it, or its work is still queued or dead at the end;
* **duplicates** — call records beyond one per call, counted in each CRM's own data;
* **recovery** — seconds from the fault's end until every call that had finished on the platform
  before that moment is fully logged in every CRM (0 when nothing was behind);
* **diagnosis** — the first line the connector logged about the fault, as a user would read it.

Times are accelerated (a "minute" between maintenance closes is a second or two, a long CRM
outage a few seconds) by shortening the platform's and the connector's timers alike; the code
paths are the production ones. A ``SIGKILL`` needs a process to kill: that fault runs
``crmphone run`` as a child process, the others run the connector in this process, where the
disk and the clock can be made to fail under it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sqlite3
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import attrs
import httpx

from crmphone.clock import SystemClock
from crmphone.config import parse_config
from crmphone.notifications import BackoffPolicy, ChannelSettings
from crmphone.service import Services, run_connector

from .crm import CrmFault, DemoCrm, FaultyCrm, load_demo_crms
from .run import (
    _CLIENT_ID,
    _CLIENT_ID_ENV,
    _CLIENT_SECRET,
    _CLIENT_SECRET_ENV,
    _connector_toml,
    _environment,
    _started,
)

__all__ = [
    "COMBINED",
    "FAULTS",
    "FaultOutcome",
    "MatrixSettings",
    "matrix_markdown",
    "run_fault",
    "run_matrix",
]

logger = logging.getLogger(__name__)

COMBINED = "combined"
"""The name of the run with every in-process fault at once."""

_FINAL_STAGE = "wrapped_up"
_POLL_SECONDS = 0.1
_DIAGNOSIS_LIMIT = 240
# The platform's heartbeats and the connector's liveness timers, scaled down together.
_HEARTBEAT_SECONDS = 0.2
_CHANNEL = ChannelSettings(
    heartbeat_timeout=1.0,
    pong_timeout=0.5,
    backoff=BackoffPolicy(initial=0.05, cap=0.5, healthy_after=0.5),
    drain_seconds=0.3,
    dedupe_window=30.0,
    open_timeout=3.0,
    close_timeout=0.5,
    head_check_timeout=1.0,
)
_OUTBOX = {"initial_delay": 0.1, "max_delay": 1.0}


@attrs.frozen(kw_only=True)
class MatrixSettings:
    """How each fault's run goes. Times in seconds."""

    agents: int = 4
    call_gap: float = 0.15
    """Pause between placing two calls."""
    talk_seconds: float = 0.4
    wrapup_seconds: float = 0.1
    lead_in: float = 1.5
    """Calls before the fault starts."""
    tail: float = 2.0
    """Calls after the fault ends."""
    settle_timeout: float = 45.0
    """The longest wait for every call to be logged after the last one ends."""
    crm_outage: float = 6.0
    """How long "CRM down for a long period" lasts (accelerated)."""
    seed: int = 1


@attrs.frozen
class FaultOutcome:
    """One row of the matrix."""

    fault: str
    title: str
    calls: int
    events_lost: int
    duplicates: int
    recovery_s: float | None
    """None: not every call was logged, so the house never recovered."""
    diagnosis: str
    injected: str
    """What was done to the house, in a few words."""
    seconds: float

    @property
    def passed(self) -> bool:
        """Nothing lost, nothing twice, recovered."""
        return self.events_lost == 0 and self.duplicates == 0 and self.recovery_s is not None

    def to_json(self) -> dict[str, Any]:
        """The row for ``bench/results/faults.json``."""
        return {**attrs.asdict(self), "passed": self.passed}


# ---------------------------------------------------------------------------------------------
# The house


class _JumpingClock:
    """The connector's clock: the real one, plus a wall-clock offset the matrix moves."""

    def __init__(self) -> None:
        self.offset = 0.0
        self._system = SystemClock()

    def monotonic(self) -> float:
        return self._system.monotonic()

    def wall(self) -> datetime:
        return self._system.wall() + timedelta(seconds=self.offset)


class _Logs(logging.Handler):
    """Every crmphone log record of the run, with its monotonic time."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[tuple[float, int, str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith("crmphone") and not record.name.startswith("crmphone.sandbox"):
            self.lines.append((time.monotonic(), record.levelno, record.name, record.getMessage()))

    def child_line(self, line: str) -> None:
        """A line ``crmphone run`` wrote in a child process (its stderr)."""
        level = logging.WARNING if "WARNING" in line or "ERROR" in line else logging.INFO
        self.lines.append((time.monotonic(), level, "crmphone.run", line.strip()))

    def diagnosis(self, since: float, words: Sequence[str]) -> str:
        """The first line after ``since`` naming one of ``words`` (else the first warning)."""
        later = [line for line in self.lines if line[0] >= since]
        for _, _, _, text in later:
            if any(word in text.lower() for word in words):
                return _short(text)
        for _, level, _, text in later:
            if level >= logging.WARNING:
                return _short(text)
        return ""


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _DIAGNOSIS_LIMIT else text[: _DIAGNOSIS_LIMIT - 1] + "…"


@attrs.define
class _House:
    """What one run is made of, and what it has seen."""

    settings: MatrixSettings
    sandbox: Any
    crms: dict[str, DemoCrm]
    work: Path
    config_text: str
    agents: list[str]
    logs: _Logs
    clock: _JumpingClock = attrs.field(factory=_JumpingClock)
    services: Services | None = None
    placed: dict[str, float] = attrs.field(factory=dict)
    closed: dict[str, float] = attrs.field(factory=dict)
    placing: bool = True

    @property
    def faulty(self) -> dict[str, FaultyCrm]:
        return {n: c for n, c in self.crms.items() if isinstance(c, FaultyCrm)}

    def fault(self, name: str, **params: Any) -> None:
        """Apply a platform fault (:mod:`crmphone.sandbox.faults`)."""
        self.sandbox.invoke(lambda: getattr(self.sandbox.sandbox.faults, name)(**params))

    # ---------------------------------------------------------------- calls

    async def place_calls(self) -> None:
        """A call to the next free agent every ``call_gap`` until told to stop."""
        async with httpx.AsyncClient(base_url=self.sandbox.base_url, timeout=10.0) as http:
            turn = 0
            while self.placing:
                busy = {c for c in self.placed if c not in self.closed}
                engaged = self.sandbox.invoke(lambda b=busy: _agents_of(self.sandbox, b))
                free = [a for a in self.agents if a not in engaged]
                if free:
                    agent = free[turn % len(free)]
                    turn += 1
                    response = await http.post(
                        "/sandbox/calls",
                        json={"agentId": agent, "ani": f"+1555020{turn % 10000:04d}"},
                    )
                    response.raise_for_status()
                    self.placed[response.json()["conversationId"]] = time.monotonic()
                await asyncio.sleep(self.settings.call_gap)

    async def watch_calls(self) -> None:
        """Note when each call has finished on the platform (wrap-up included)."""
        while True:
            open_calls = [c for c in self.placed if c not in self.closed]
            if open_calls:
                done = self.sandbox.invoke(lambda o=open_calls: _closed_calls(self.sandbox, o))
                now = time.monotonic()
                for conversation_id in done:
                    self.closed[conversation_id] = now
            await asyncio.sleep(_POLL_SECONDS)

    # ---------------------------------------------------------------- what the CRMs got

    def logged(self) -> dict[str, set[str]]:
        """Per CRM, the conversations whose last stage was written and whose work is done."""
        path = self.work / "outbox.sqlite3"
        if not path.exists():
            return {name: set() for name in self.crms}
        database = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
        try:
            finished: dict[str, set[str]] = {name: set() for name in self.crms}
            for adapter, key, text in database.execute("SELECT adapter, log_key, log FROM logs"):
                if json.loads(text).get("stage") == _FINAL_STAGE and adapter in finished:
                    finished[adapter].add(key)
            for adapter, key in database.execute("SELECT DISTINCT adapter, log_key FROM work"):
                finished.get(adapter, set()).discard(key)
        except sqlite3.OperationalError:
            return {name: set() for name in self.crms}  # being created: nothing yet
        finally:
            database.close()
        return {
            adapter: {key.rpartition(":")[0] for key in keys} for adapter, keys in finished.items()
        }

    def complete(self, calls: Sequence[str]) -> bool:
        logged = self.logged()
        return all(set(calls) <= done for done in logged.values())

    async def recovered_after(self, fault_end: float) -> float | None:
        """Seconds from ``fault_end`` until the calls finished before it are all logged."""
        deadline = time.monotonic() + self.settings.settle_timeout
        while time.monotonic() < deadline:
            behind = [c for c, at in self.closed.items() if at <= fault_end]
            if self.complete(behind):
                return max(0.0, time.monotonic() - fault_end)
            await asyncio.sleep(_POLL_SECONDS)
        return None

    async def settle(self) -> None:
        """Stop placing calls; wait until every call has finished and been logged (bounded)."""
        self.placing = False
        deadline = time.monotonic() + self.settings.settle_timeout
        while time.monotonic() < deadline:
            if len(self.closed) == len(self.placed) and self.complete(list(self.placed)):
                return
            await asyncio.sleep(_POLL_SECONDS)

    def outcome(
        self, spec: _Fault, injected: str, recovery: float | None, since: float, started: float
    ) -> FaultOutcome:
        calls = list(self.placed)
        logged = self.logged()
        lost = sum(len(set(calls) - done) for done in logged.values())
        duplicates = 0
        for crm in self.crms.values():
            counts = crm.call_records(calls)
            lost_in_crm = sum(1 for c in calls if counts.get(c, 0) == 0)
            duplicates += sum(max(0, counts.get(c, 0) - 1) for c in calls)
            lost = max(lost, lost_in_crm)
        return FaultOutcome(
            fault=spec.name,
            title=spec.title,
            calls=len(calls),
            events_lost=lost,
            duplicates=duplicates,
            recovery_s=None if recovery is None or lost else round(recovery, 2),
            diagnosis=self.logs.diagnosis(since, spec.words),
            injected=injected,
            seconds=round(time.monotonic() - started, 1),
        )


def _agents_of(sandbox: Any, conversations: set[str]) -> set[str]:
    calls = sandbox.sandbox.calls
    return {calls.get(c).agent_id for c in conversations}


def _closed_calls(sandbox: Any, conversations: Sequence[str]) -> list[str]:
    from crmphone.sandbox.conversation import Phase

    calls = sandbox.sandbox.calls
    return [c for c in conversations if calls.get(c).phase is Phase.CLOSED]


@contextlib.contextmanager
def _house(settings: MatrixSettings, crm_names: Sequence[str] | None) -> Iterator[_House]:
    from crmphone.sandbox import SandboxConfig, SandboxThread

    crms = load_demo_crms(crm_names)
    sandbox_config = SandboxConfig(
        client_id=_CLIENT_ID,
        client_secret=_CLIENT_SECRET,
        agents=settings.agents,
        seed=settings.seed,
        heartbeat_interval=_HEARTBEAT_SECONDS,
        rate_limit_per_minute=0,
        ring_seconds=0.05,
        talk_seconds=settings.talk_seconds,
        wrapup_seconds=settings.wrapup_seconds,
        persistent_connections=False,
    )
    logs = _Logs()
    root = logging.getLogger()
    level = root.level
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="crmphone-faults-")))
        sandbox = stack.enter_context(SandboxThread(sandbox_config))
        agents: list[str] = sandbox.invoke(lambda: [a.id for a in sandbox.sandbox.agents])
        stack.enter_context(_started(crms, agents, settings.seed))
        secrets = {_CLIENT_ID_ENV: _CLIENT_ID, _CLIENT_SECRET_ENV: _CLIENT_SECRET}
        for crm in crms.values():
            secrets.update(crm.environ())
        stack.enter_context(_environment(secrets))
        accelerated = {
            name: crm.accelerated_options()
            for name, crm in crms.items()
            if isinstance(crm, FaultyCrm)
        }
        text = _connector_toml(
            sandbox.base_url,
            agents,
            crms,
            None,
            outbox=_OUTBOX,
            adapter_options=accelerated,
            log_level="info",
        )
        (work / "connector.toml").write_text(text, encoding="utf-8")
        (work / "connector.toml").chmod(0o600)
        root.addHandler(logs)
        root.setLevel(min(level or logging.WARNING, logging.INFO))
        try:
            yield _House(settings, sandbox, crms, work, text, agents, logs)
        finally:
            root.removeHandler(logs)
            root.setLevel(level)


# ---------------------------------------------------------------------------------------------
# The faults


Inject = Callable[[_House], Awaitable[str]]
"""Injects a fault into a running house; returns what it did, in a few words. The fault's end
is the moment it returns."""


@attrs.frozen
class _Fault:
    name: str
    title: str
    inject: Inject | None
    """None: the fault is killing the connector's process (:func:`_run_killed`)."""
    words: tuple[str, ...]
    """Words that mark the connector's diagnosis of this fault in its log."""

    @property
    def in_process(self) -> bool:
        return self.inject is not None


async def _maintenance(house: _House) -> str:
    # Genesys warns a minute ahead and then closes; accelerated, every 1.5 s, three times.
    for _ in range(3):
        house.fault("socket_closing", close_after=0.5)
        await asyncio.sleep(1.5)
    return "3 closing warnings, each followed by close 1001, 1.5 s apart"


async def _silent_drop(house: _House) -> str:
    house.fault("silence")
    await asyncio.sleep(2.5)  # past the heartbeat and pong timeouts: the connector moves on
    return "every socket silenced: no heartbeats, no pongs, no close"


async def _token_revoked(house: _House) -> str:
    house.fault("revoke_token")
    return "the client's tokens revoked (401 and token_revoked)"


async def _evicted(house: _House) -> str:
    import websockets

    from crmphone.platform import ClientCredentials, PlatformClient

    credentials = ClientCredentials(
        login_base=house.sandbox.base_url, client_id=_CLIENT_ID, client_secret=_CLIENT_SECRET
    )
    async with (
        PlatformClient(api_base=house.sandbox.base_url, tokens=credentials) as other,
        contextlib.AsyncExitStack() as sockets,
    ):
        # The same OAuth client elsewhere opens 20 channels and connects to each (a channel with
        # a live socket is evicted last): ours is then the oldest of 21.
        for _ in range(20):
            channel = await other.create_channel()
            await sockets.enter_async_context(
                websockets.connect(channel.connect_uri, ping_interval=None, close_timeout=0.5)
            )
        await asyncio.sleep(2.0)
    return "20 more channels of the same client, each with a live socket (the limit is 20)"


async def _crm_down(house: _House) -> str:
    answers = [crm.inject(CrmFault.UNAVAILABLE, 1_000_000) for crm in house.faulty.values()]
    await asyncio.sleep(house.settings.crm_outage)
    for crm in house.faulty.values():
        crm.heal()
    return f"every CRM down for {house.settings.crm_outage:g} s: " + "; ".join(answers)


async def _rate_limits(house: _House) -> str:
    # The platform's 429s matter when the connector calls its API: on a reconnect (new channel,
    # subscriptions, the resync's queries). So the socket is closed as the burst starts.
    house.fault("rate_limit_burst", count=10, retry_after=1)
    house.fault("close", code=1011, reason="internal error")
    answers = [crm.inject(CrmFault.RATE_LIMITED, 30) for crm in house.faulty.values()]
    await asyncio.sleep(3.0)
    return (
        "platform: socket closed (1011) and its next 10 requests 429 (Retry-After: 1); "
        "CRMs: next 30 requests " + "; ".join(answers)
    )


async def _expired_sessions(house: _House) -> str:
    answers = [crm.inject(CrmFault.EXPIRED_SESSION, 6) for crm in house.faulty.values()]
    await asyncio.sleep(1.0)
    return "next 6 requests of every CRM: " + "; ".join(answers)


async def _read_only_disk(house: _House) -> str:
    from crmphone.testing.disk import set_outbox_read_only

    assert house.services is not None
    await set_outbox_read_only(house.services.outbox, True)
    await asyncio.sleep(3.0)
    await set_outbox_read_only(house.services.outbox, False)
    return "the outbox's file refused every write for 3 s"


async def _clock_jump(house: _House) -> str:
    # Retries queued while the CRMs are down when the clock goes back two hours: were their
    # times not moved with it, they would wait two hours and the house would never recover.
    for crm in house.faulty.values():
        crm.inject(CrmFault.UNAVAILABLE, 1_000_000)
    await asyncio.sleep(0.7)
    house.clock.offset = -2 * 3600.0
    await asyncio.sleep(1.3)
    for crm in house.faulty.values():
        crm.heal()
    await asyncio.sleep(1.5)
    house.clock.offset = 0.0
    return "the wall clock jumped 2 h back with CRM retries queued, then 2 h forward"


FAULTS: tuple[_Fault, ...] = (
    _Fault("maintenance", "Maintenance closes every minute", _maintenance, ("closing",)),
    _Fault("silent_drop", "Silent network drop", _silent_drop, ("heartbeat", "pong", "silent")),
    _Fault("token_revoked", "Token revoked", _token_revoked, ("revoked",)),
    _Fault("channel_evicted", "A 21st channel evicts ours", _evicted, ("evict", "21st", "limit")),
    _Fault("crm_down", "CRM down (503) for a long period", _crm_down, ("503", "unavailable")),
    _Fault("rate_limits", "429 storms", _rate_limits, ("429", "rate", "limit")),
    _Fault("crm_session", "Expired CRM sessions", _expired_sessions, ("401", "session", "auth")),
    _Fault("sigkill", "SIGKILL of the connector", None, ("resync", "missed")),
    _Fault("read_only_disk", "The outbox's disk turns read-only", _read_only_disk, ("read-only",)),
    _Fault("clock_jump", "Wall-clock jump", _clock_jump, ("clock jumped",)),
)
"""Every fault of the matrix, in the order the issue lists them."""


async def _combined(house: _House) -> str:
    """Every in-process fault at once, staggered so that they overlap."""
    singles = [f for f in FAULTS if f.in_process]
    started = [
        asyncio.create_task(_after(0.4 * index, fault.inject(house)))
        for index, fault in enumerate(singles)
        if fault.inject is not None
    ]
    await asyncio.gather(*started)
    return f"{len(singles)} faults overlapping: " + ", ".join(f.name for f in singles)


async def _after(delay: float, work: Awaitable[str]) -> str:
    await asyncio.sleep(delay)
    return await work


_COMBINED = _Fault(
    COMBINED,
    "All of the above at once (SIGKILL aside)",
    _combined,
    ("closing", "revoked", "read-only", "clock jumped", "503"),
)


# ---------------------------------------------------------------------------------------------
# Running


async def _run_in_process(house: _House, spec: _Fault) -> FaultOutcome:
    started = time.monotonic()
    config = parse_config(
        house.config_text, base_dir=house.work, environ=os.environ, source_name="connector.toml"
    )
    stop = asyncio.Event()
    result: list[FaultOutcome] = []

    async def scenario(services: Services) -> None:
        house.services = services
        helpers = [
            asyncio.create_task(house.place_calls()),
            asyncio.create_task(house.watch_calls()),
        ]
        try:
            await asyncio.sleep(house.settings.lead_in)
            since = time.monotonic()
            assert spec.inject is not None
            injected = await spec.inject(house)
            fault_end = time.monotonic()
            recovering = asyncio.create_task(house.recovered_after(fault_end))
            await asyncio.sleep(house.settings.tail)
            await house.settle()
            recovery = await recovering
            result.append(house.outcome(spec, injected, recovery, since, started))
        finally:
            house.placing = False
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            stop.set()

    await run_connector(
        config, stop=stop, on_started=scenario, channel_settings=_CHANNEL, clock=house.clock
    )
    return result[0]


async def _run_killed(house: _House, spec: _Fault) -> FaultOutcome:
    """``crmphone run`` as a child process, killed with SIGKILL mid-stream and restarted."""
    from crmphone.testing.connector import connector_process

    started = time.monotonic()
    config = house.work / "connector.toml"
    helpers = [asyncio.create_task(house.place_calls()), asyncio.create_task(house.watch_calls())]
    try:
        async with connector_process(config, on_line=house.logs.child_line) as first:
            await asyncio.sleep(house.settings.lead_in)
            since = time.monotonic()
            first.process.send_signal(signal.SIGKILL)
            await first.process.wait()
        await asyncio.sleep(1.5)  # calls go on while nothing follows them
        async with connector_process(config, on_line=house.logs.child_line):
            fault_end = time.monotonic()
            recovering = asyncio.create_task(house.recovered_after(fault_end))
            await asyncio.sleep(house.settings.tail)
            await house.settle()
            recovery = await recovering
        injected = "SIGKILL with writes in flight; restarted 1.5 s later"
        return house.outcome(spec, injected, recovery, since, started)
    finally:
        house.placing = False
        for task in helpers:
            task.cancel()
        await asyncio.gather(*helpers, return_exceptions=True)


async def run_fault(
    name: str, settings: MatrixSettings | None = None, *, crms: Sequence[str] | None = None
) -> FaultOutcome:
    """Run the house under the fault ``name`` (one of :data:`FAULTS`, or :data:`COMBINED`)."""
    settings = settings or MatrixSettings()
    specs = {f.name: f for f in (*FAULTS, _COMBINED)}
    spec = specs[name]
    with _house(settings, crms) as house:
        if spec.in_process:
            return await _run_in_process(house, spec)
        return await _run_killed(house, spec)


async def run_matrix(
    settings: MatrixSettings | None = None,
    *,
    names: Sequence[str] | None = None,
    on_outcome: Callable[[FaultOutcome], None] | None = None,
) -> list[FaultOutcome]:
    """Every fault one at a time, then combined (or only ``names``), each in a fresh house."""
    outcomes = []
    for name in names or [*(f.name for f in FAULTS), COMBINED]:
        outcome = await run_fault(name, settings)
        outcomes.append(outcome)
        if on_outcome is not None:
            on_outcome(outcome)
    return outcomes


def describe_faults() -> Mapping[str, str]:
    """Fault name → title, in the matrix's order."""
    return {f.name: f.title for f in (*FAULTS, _COMBINED)}


def matrix_markdown(rows: Sequence[Mapping[str, Any]], *, measured: str, command: str) -> str:
    """The matrix as the Markdown page ``docs/reference/fault-matrix.md`` (``rows`` as in
    ``bench/results/faults.json``; ``measured`` says when and where)."""

    def cell(text: object) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    lines = [
        "# The fault matrix",
        "",
        (
            "<!-- Generated by `make bench` (bench/faults.py) from bench/results/faults.json: "
            "do not edit. -->"
        ),
        "",
        (
            "The connector with both adapters, against the sandbox platform and the Salesforce and "
            "Zendesk emulators, while calls flow. Each fault is injected on its own, then all "
            "together. **Events lost** counts (call, CRM) pairs whose last stage never reached the "
            "CRM; **duplicates** counts call records beyond one per call, in each CRM's own data; "
            "**recovery** is the time from the fault's end until every call that had finished "
            "before then is logged in every CRM. Times are accelerated: the platform's and the "
            "connector's timers are shortened together (a minute between maintenance closes is "
            "1.5 s), the code paths are the production ones."
        ),
        "",
        f"Measured {measured}. Reproduce with `{command}`.",
        "",
        (
            "| Fault | What was done | Calls | Events lost | Duplicates | Recovery | "
            "What the user is shown |"
        ),
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        recovery = row.get("recovery_s")
        shown = "never" if recovery is None else f"{recovery:.2f} s"
        lines.append(
            f"| {cell(row['title'])} | {cell(row['injected'])} | {row['calls']} | "
            f"{row['events_lost']} | {row['duplicates']} | {shown} | "
            f"{cell(row['diagnosis']) or '(nothing logged)'} |"
        )
    lines += [
        "",
        (
            "A SIGKILL needs a process to kill, so that row runs `crmphone run` as a child process "
            "and the combined row leaves it out; the read-only disk is the outbox's SQLite "
            "connection switched to `query_only` (a remount is refused while the file is open), "
            "which fails writes exactly as a read-only file does. Salesforce has no 429: its rate "
            "limit is 403 `REQUEST_LIMIT_EXCEEDED`, which is what its emulator sends in the 429 row."
        ),
        "",
        (
            "One duplicate the connector cannot rule out: Zendesk's Talk Partner Edition call "
            "records have neither an idempotency key nor a lookup. A SIGKILL that falls in the "
            "milliseconds between Zendesk making a call record and the outbox committing its id "
            "leaves that call with two records: 3 times in 168 repetitions of the SIGKILL row. "
            "The next attempt then logs a WARNING naming the call (`an earlier attempt to make the "
            "call record of … got no answer`). Tickets (`Idempotency-Key`, then `external_id`), "
            "callers (a unique `external_id`) and everything in Salesforce (upserts by external "
            "id) are not exposed to it."
        ),
        "",
    ]
    return "\n".join(lines)
