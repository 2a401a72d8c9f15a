"""``crmphone demo``: the sandbox platform, the CRM emulators, the connector, agents' softphones
and the bridge on one machine; calls placed, watched live, measured and reported.

What runs, all on loopback:

* the sandbox platform and its media edge, on their own thread (:class:`SandboxThread`), with
  persistent connections on: each agent's first call sets the WebRTC connection up, later calls
  ride it;
* every installed CRM emulator (:mod:`crmphone.demo.crm`: Salesforce and Zendesk ship one), each
  on its own thread, the adapter configured from it exactly as an admin would;
* one headless softphone per agent (auto-answer, persistent connection), signed in with the
  agent's own token as a browser would;
* the connector (:func:`crmphone.service.run_connector`) with every adapter, its outbox, and the
  bridge serving the dashboard and the CRM pages.

Calls go to free agents, one after another, from numbers the CRMs know. At the end every figure
of the report is read from where it happened: answer latency from the phones' own timings, records
and duplicates counted in the CRMs' data, API requests counted by the CRMs, the rest from the
connector's, the outbox's and the bridge's counters.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import importlib.metadata
import itertools
import json
import logging
import os
import platform
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs
import httpx
from rich.console import Console
from rich.live import Live
from rich.logging import RichHandler

from crmphone.adapters import CallLogged, OutboxNotice
from crmphone.config import ConnectorConfig, parse_config
from crmphone.errors import ConfigError, CrmphoneError
from crmphone.events import (
    CallAlerting,
    CallConnected,
    CallEnded,
    CallHeld,
    CallResumed,
    CallWrapup,
    Event,
    PresenceChanged,
)
from crmphone.service import SecretRedactor, Services, run_connector

from .crm import DemoCrm, load_demo_crms
from .model import (
    AgentView,
    CallResult,
    CallView,
    CrmTotals,
    CrmView,
    DemoReport,
    DemoSnapshot,
    RecordView,
)
from .report import write_report
from .view import render, summary

__all__ = ["DemoResult", "DemoSettings", "run_demo"]

logger = logging.getLogger(__name__)

_CLIENT_ID = "demo-client"
_CLIENT_SECRET = "demo-secret"  # noqa: S105 - the sandbox's published demo credential
_CLIENT_ID_ENV = "CRMPHONE_DEMO_CLIENT_ID"
_CLIENT_SECRET_ENV = "CRMPHONE_DEMO_CLIENT_SECRET"  # noqa: S105 - a variable's name
_REFRESH_SECONDS = 0.25
_RECENT_RECORDS = 8
_ENDED_SHOWN_SECONDS = 4.0
# How long a call may take from being placed to its last CRM write before the demo gives up on it.
_CALL_GRACE_SECONDS = 30.0


def _positive(_instance: object, attribute: attrs.Attribute[Any], value: float | None) -> None:
    if value is not None and not value > 0:
        raise ConfigError(f"must be positive, not {value!r}", key=attribute.name)


@attrs.frozen(kw_only=True)
class DemoSettings:
    """What the demo does. ``calls`` and ``duration`` bound it (the first reached ends it;
    neither given: 24 calls). Times in seconds."""

    agents: int = attrs.field(default=4, validator=attrs.validators.in_(range(1, 21)))
    calls: int | None = attrs.field(default=None, validator=_positive)
    duration: float | None = attrs.field(default=None, validator=_positive)
    talk_seconds: float = attrs.field(default=2.0, validator=_positive)
    wrapup_seconds: float = attrs.field(default=0.3, validator=_positive)
    call_gap: float = attrs.field(default=0.3, validator=_positive)
    """Pause between placing two calls."""
    output: Path = attrs.field(default=Path("crmphone-demo"), converter=Path)
    """Where the report is written."""
    bridge_port: int = 0
    """The bridge's port (0: any free one)."""
    crms: tuple[str, ...] | None = None
    """The CRM emulators to run (None: every one installed)."""
    seed: int = 1
    live: bool | None = None
    """Draw the live view (None: when the console is a terminal)."""

    @property
    def planned_calls(self) -> int | None:
        """The number of calls to place (None: as many as fit the duration)."""
        if self.calls is None and self.duration is None:
            return 24
        return self.calls


@attrs.frozen
class DemoResult:
    """What a demo run produced: the report and where it was written."""

    report: DemoReport
    json_path: Path
    html_path: Path

    @property
    def ok(self) -> bool:
        """Every call answered, logged in every CRM, none twice."""
        report = self.report
        return (
            bool(report.calls)
            and report.answered == len(report.calls)
            and report.lost == 0
            and report.duplicates == 0
        )


# ---------------------------------------------------------------------------------------------
# What the live view and the report are built from


@attrs.define
class _Call:
    conversation_id: str
    agent_id: str
    number: str | None
    placed_at: float
    state: str = "ringing"
    caller_name: str | None = None
    answered: bool = False
    ended_at: float | None = None
    wrapped_up: bool = False


class _Watch:
    """Everything the demo sees happen: calls from the connector, records from the outbox."""

    def __init__(self, agents: Mapping[str, str]) -> None:
        self.agents = dict(agents)
        self.calls: dict[str, _Call] = {}
        self.order: list[str] = []
        self.presence: dict[str, str] = {}
        self.answered: collections.Counter[str] = collections.Counter()
        self.records: collections.deque[RecordView] = collections.deque(maxlen=_RECENT_RECORDS)
        self.changed = asyncio.Event()

    def placed(self, conversation_id: str, agent_id: str, number: str) -> None:
        self.order.append(conversation_id)
        self.calls.setdefault(
            conversation_id, _Call(conversation_id, agent_id, number, time.monotonic())
        )

    def on_event(self, event: Event) -> None:
        if isinstance(event, PresenceChanged):
            self.presence[event.agent_id] = event.system_presence
            return
        conversation_id = getattr(event, "conversation_id", None)
        if conversation_id is None:
            return
        call = self.calls.get(conversation_id)
        if call is None:
            call = self.calls[conversation_id] = _Call(
                conversation_id, event.agent_id, None, time.monotonic()
            )
        match event:
            case CallAlerting():
                call.number = call.number or event.customer_number
                call.caller_name = event.caller_name
            case CallConnected():
                call.state, call.answered = "connected", True
                self.answered[call.agent_id] += 1
            case CallHeld():
                call.state = "on hold"
            case CallResumed():
                call.state = "connected"
            case CallEnded():
                call.state, call.ended_at = "ended", time.monotonic()
            case CallWrapup():
                call.wrapped_up = True
        self.changed.set()

    def on_notice(self, notice: OutboxNotice) -> None:
        if isinstance(notice, CallLogged):
            record = notice.log.record
            self.records.appendleft(
                RecordView(
                    adapter=notice.adapter,
                    conversation_id=notice.log.conversation_id,
                    stage=notice.log.stage.name.lower(),
                    record=None if record is None else f"{record.kind} {record.name or record.id}",
                    at=datetime.now(UTC),
                )
            )

    def ended(self, conversation_id: str) -> bool:
        call = self.calls.get(conversation_id)
        return call is not None and call.ended_at is not None

    def settled(self, conversation_id: str) -> bool:
        """Ended, and wrapped up when it was answered: no more events will come."""
        call = self.calls.get(conversation_id)
        return (
            call is not None
            and call.ended_at is not None
            and (call.wrapped_up or not call.answered)
        )

    def call_views(self) -> tuple[CallView, ...]:
        now = time.monotonic()
        shown = [
            call
            for call in self.calls.values()
            if call.ended_at is None or now - call.ended_at < _ENDED_SHOWN_SECONDS
        ]
        return tuple(
            CallView(
                conversation_id=call.conversation_id,
                agent_name=self.agents.get(call.agent_id, call.agent_id),
                number=call.number,
                caller_name=call.caller_name,
                state=call.state,
                seconds=max(0.0, (call.ended_at or now) - call.placed_at),
            )
            for call in shown
        )


# ---------------------------------------------------------------------------------------------
# Setting the house up


def _toml(value: Any) -> str:
    """``value`` as a TOML value (JSON's string escapes are TOML's too)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value))
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    raise ConfigError(f"cannot write {type(value).__name__} into connector.toml", key="demo")


_DEMO_OUTBOX = {"initial_delay": 0.2, "max_delay": 5.0}


def _connector_toml(
    sandbox_url: str,
    agent_ids: Sequence[str],
    crms: Mapping[str, DemoCrm],
    bridge_port: int | None,
    *,
    outbox: Mapping[str, Any] = _DEMO_OUTBOX,
    adapter_options: Mapping[str, Mapping[str, Any]] | None = None,
    log_level: str = "warning",
) -> str:
    """The connector's configuration, as an admin would write it for these emulators.

    ``bridge_port`` None leaves the bridge off; ``outbox`` holds ``[outbox]`` settings besides the
    path; ``adapter_options`` adds options per CRM (the fault matrix's accelerated waits).
    """
    lines = [
        "[platform]",
        'kind = "sandbox"',
        f"url = {_toml(sandbox_url)}",
        f"client_id_env = {_toml(_CLIENT_ID_ENV)}",
        f"client_secret_env = {_toml(_CLIENT_SECRET_ENV)}",
        "",
        "[agents]",
        f"ids = {_toml(list(agent_ids))}",
    ]
    for name, crm in crms.items():
        lines += ["", f"[agents.crm_users.{name}]"]
        lines += [f"{_toml(agent)} = {_toml(user)}" for agent, user in crm.crm_users().items()]
    for name, crm in crms.items():
        options = {**crm.adapter_options(), **(adapter_options or {}).get(name, {})}
        lines += ["", "[[adapters]]", f"name = {_toml(name)}", "timeout = 20.0"]
        lines += [f"{key} = {_toml(value)}" for key, value in options.items()]
    lines += ["", "[outbox]", 'path = "outbox.sqlite3"']
    lines += [f"{key} = {_toml(value)}" for key, value in outbox.items()]
    if bridge_port is not None:
        lines += [
            "",
            "[bridge]",
            f"port = {bridge_port}",
            # The Open CTI page needs HTTPS with a certificate the browser trusts: not a demo's.
            'pages = ["dashboard", "zendesk"]',
        ]
    lines += ["", "[log]", f"level = {_toml(log_level)}"]
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    """Set ``values`` in this process's environment for the run (adapters read their secrets
    there, as in production), restoring what was there before."""
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def _started(crms: Mapping[str, DemoCrm], agents: Sequence[str], seed: int) -> Iterator[None]:
    started: list[DemoCrm] = []
    try:
        for crm in crms.values():
            crm.start(agents=agents, seed=seed)
            started.append(crm)
        yield
    finally:
        for crm in reversed(started):
            crm.stop()


@contextlib.contextmanager
def _quiet_logging(console: Console, secrets: Sequence[str]) -> Iterator[None]:
    """Warnings and errors above the live view (never through it), with secrets redacted."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    handler = RichHandler(console=console, show_path=False, markup=False)
    handler.addFilter(SecretRedactor(secrets))
    for existing in saved[0]:
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    try:
        yield
    finally:
        root.removeHandler(handler)
        for existing in saved[0]:
            root.addHandler(existing)
        root.setLevel(saved[1])


@contextlib.asynccontextmanager
async def _phones(base_url: str, agent_ids: Sequence[str]) -> AsyncIterator[dict[str, Any]]:
    """One signed-in headless softphone per agent: auto-answer, persistent connection."""
    from crmphone._webrtc import LOOPBACK_ICE
    from crmphone.audio import Discard, Tone
    from crmphone.phone import PhoneSettings, Softphone
    from crmphone.platform import PlatformClient, sign_in_sandbox_agent

    settings = PhoneSettings(auto_answer=True, ice=LOOPBACK_ICE)
    async with contextlib.AsyncExitStack() as stack:
        phones: dict[str, Any] = {}
        for index, agent in enumerate(agent_ids):
            tokens = await sign_in_sandbox_agent(base_url, agent, client_id=_CLIENT_ID)
            client = await stack.enter_async_context(
                PlatformClient(api_base=base_url, tokens=tokens)
            )
            # Each agent "speaks" a tone of their own: the media path is real audio.
            source = Tone(440.0 + 110.0 * index)
            phones[agent] = await stack.enter_async_context(
                Softphone(client, settings=settings, source=source, sink=Discard())
            )
        yield phones


def _versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in ("crmphone", "aiortc", "websockets", "httpx", "simple-salesforce", "zenpy"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            found[name] = importlib.metadata.version(name)
    return found


# ---------------------------------------------------------------------------------------------
# The run


class _Demo:
    """One run: places the calls, keeps the view current, measures, reports."""

    def __init__(
        self,
        settings: DemoSettings,
        console: Console,
        crms: Mapping[str, DemoCrm],
        agents: Mapping[str, str],
        phones: Mapping[str, Any],
        sandbox_url: str,
    ) -> None:
        self.settings = settings
        self.console = console
        self.crms = crms
        self.agents = dict(agents)
        self.phones = phones
        self.sandbox_url = sandbox_url
        self.watch = _Watch(agents)
        self.started = time.monotonic()
        self.started_at = datetime.now(UTC)
        self.services: Services | None = None
        self.depths: dict[str, int] = {}
        self.max_depth = 0
        self.report: DemoReport | None = None

    # --------------------------------------------------------------- view

    def snapshot(self) -> DemoSnapshot:
        services = self.services
        connector = services.connector if services else None
        outbox = services.outbox if services else None
        bridge = services.bridge if services else None
        stream = connector.stream if connector else None
        agents = []
        for agent_id, phone in self.phones.items():
            status = phone.status
            call_state = None
            if status.call is not None:
                call_state = "on hold" if status.call.held else "connected"
            elif status.ringing:
                call_state = "ringing"
            agents.append(
                AgentView(
                    id=agent_id,
                    name=self.agents.get(agent_id, agent_id),
                    connection=status.connection.value,
                    persistent_active=status.persistent_active,
                    microphone_live=status.microphone_live,
                    presence=self.watch.presence.get(agent_id),
                    call_state=call_state,
                    calls_answered=self.watch.answered[agent_id],
                )
            )
        crm_views = []
        for name, crm in self.crms.items():
            stats = outbox.stats if outbox else None
            crm_views.append(
                CrmView(
                    adapter=name,
                    writes_done=stats.writes_done[name] if stats else 0,
                    requests=crm.requests(),
                    dead_letters=stats.dead_letters[name] if stats else 0,
                    outbox_depth=self.depths.get(name, 0),
                    retries=stats.retries[name] if stats else 0,
                )
            )
        finished = sum(self.watch.ended(c) for c in self.watch.order)
        return DemoSnapshot(
            elapsed=time.monotonic() - self.started,
            planned_calls=self.settings.planned_calls,
            planned_seconds=self.settings.duration,
            placed=len(self.watch.order),
            finished=finished,
            agents=agents,
            calls=self.watch.call_views(),
            records=tuple(self.watch.records),
            crm=crm_views,
            channel_reconnects=stream.stats.reconnects if stream else 0,
            notifications=connector.stats.notifications if connector else 0,
            bridge_url=bridge.url if bridge else None,
            bridge_clients=bridge.clients if bridge else 0,
        )

    async def _sample_depths(self) -> None:
        while True:
            if self.services is not None:
                self.depths = await self.services.outbox.depths()
                self.max_depth = max(self.max_depth, *self.depths.values(), 0)
            await asyncio.sleep(0.5)

    async def _show(self) -> None:
        """The live view (a terminal), or a progress line every few seconds (anything else)."""
        live = self.settings.live if self.settings.live is not None else self.console.is_terminal
        if live:
            with Live(render(self.snapshot()), console=self.console, refresh_per_second=4) as view:
                while True:
                    await asyncio.sleep(_REFRESH_SECONDS)
                    view.update(render(self.snapshot()))
        while True:
            await asyncio.sleep(2.0)
            snap = self.snapshot()
            self.console.print(
                f"crmphone demo: {snap.elapsed:5.1f} s, calls placed {snap.placed}, "
                f"ended {snap.finished}, CRM writes "
                + ", ".join(f"{c.adapter} {c.writes_done}" for c in snap.crm),
                markup=False,
                highlight=False,
            )

    # --------------------------------------------------------------- calls

    async def _free_agent(self, turn: Iterator[str]) -> str:
        """The next agent in turn whose phone has no call (waiting for one to come free)."""
        while True:
            for _ in range(len(self.phones)):
                agent = next(turn)
                status = self.phones[agent].status
                busy = any(
                    call.agent_id == agent and call.ended_at is None
                    for call in self.watch.calls.values()
                )
                if status.call is None and not status.ringing and not busy:
                    return agent
            await asyncio.sleep(0.05)

    async def place_calls(self) -> None:
        settings = self.settings
        numbers = _interleave([list(crm.known_callers()) for crm in self.crms.values()])
        if not numbers:
            numbers = [f"+1555010{index:04d}" for index in range(20)]
        callers = itertools.cycle(numbers)
        turn = itertools.cycle(list(self.phones))
        deadline = None if settings.duration is None else self.started + settings.duration
        async with httpx.AsyncClient(base_url=self.sandbox_url, timeout=10.0) as http:
            for _ in (
                itertools.count()
                if settings.planned_calls is None
                else range(settings.planned_calls)
            ):
                if deadline is not None and time.monotonic() >= deadline:
                    break
                agent = await self._free_agent(turn)
                number = next(callers)
                response = await http.post(
                    "/sandbox/calls", json={"agentId": agent, "ani": number, "auto": True}
                )
                response.raise_for_status()
                self.watch.placed(response.json()["conversationId"], agent, number)
                await asyncio.sleep(settings.call_gap)

    async def wait_for_calls(self) -> None:
        """Until every placed call has ended and been wrapped up, and its CRM work is done
        (bounded: what does not settle in time is reported as it stands)."""
        grace = self.settings.talk_seconds + _CALL_GRACE_SECONDS
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                while not all(self.watch.settled(c) for c in self.watch.order):
                    self.watch.changed.clear()
                    await self.watch.changed.wait()
        if self.services is not None:
            await self.services.outbox.wait_idle(_CALL_GRACE_SECONDS)

    # --------------------------------------------------------------- measuring

    def _result(self, conversation_id: str, logged: Mapping[str, Mapping[str, int]]) -> CallResult:
        call = self.watch.calls[conversation_id]
        phone = self.phones.get(call.agent_id)
        timing = phone.timing(conversation_id) if phone is not None else None
        answer_ms = None
        over_persistent = None
        if timing is not None and call.answered:
            seen = [t for t in (timing.alerting_seen_at, timing.answered_at) if t is not None]
            if seen and timing.first_rtp_at is not None:
                answer_ms = round((timing.first_rtp_at - min(seen)).total_seconds() * 1000, 2)
                over_persistent = timing.over_existing_connection
        return CallResult(
            conversation_id=conversation_id,
            agent_id=call.agent_id,
            agent_name=self.agents.get(call.agent_id, call.agent_id),
            number=call.number,
            answered=call.answered,
            over_persistent=over_persistent,
            answer_ms=answer_ms,
            logged_in=tuple(
                name for name, counts in logged.items() if counts.get(conversation_id, 0) > 0
            ),
        )

    def measure(self) -> DemoReport:
        services = self.services
        assert services is not None
        order = self.watch.order
        logged = {name: dict(crm.call_records(order)) for name, crm in self.crms.items()}
        stats = services.outbox.stats
        stream = services.connector.stream
        totals = [
            CrmTotals(
                adapter=name,
                records=sum(1 for c in order if counts.get(c, 0) > 0),
                duplicates=sum(max(0, counts.get(c, 0) - 1) for c in order),
                writes_done=stats.writes_done[name],
                retries=stats.retries[name],
                dead_letters=stats.dead_letters[name],
                requests=self.crms[name].requests(),
            )
            for name, counts in logged.items()
        ]
        bridge = services.bridge
        return DemoReport(
            started_at=self.started_at,
            seconds=round(time.monotonic() - self.started, 2),
            agents=len(self.phones),
            planned_calls=self.settings.planned_calls,
            planned_seconds=self.settings.duration,
            calls=[self._result(c, logged) for c in order],
            crm=totals,
            channel_reconnects=stream.stats.reconnects if stream else 0,
            notifications=services.connector.stats.notifications,
            outbox_max_depth=self.max_depth,
            bridge_messages=bridge.stats.published if bridge else 0,
            bridge_clients=bridge.stats.connected if bridge else 0,
            versions=_versions(),
        )

    async def play(
        self, services: Services, on_started: Callable[[Services], Awaitable[None]] | None
    ) -> None:
        """The scenario run inside the connector: calls, the view, the measurement."""
        self.services = services
        services.connector.watch(self.watch.on_event)
        services.outbox.watch(self.watch.on_notice)
        helpers = [
            asyncio.create_task(self._show(), name="crmphone-demo-view"),
            asyncio.create_task(self._sample_depths(), name="crmphone-demo-depths"),
        ]
        extra: asyncio.Future[None] | None = None
        try:
            if on_started is not None:
                extra = asyncio.ensure_future(on_started(services))
            await self.place_calls()
            await self.wait_for_calls()
            if extra is not None:
                await extra
            self.report = self.measure()
        finally:
            for task in helpers:
                task.cancel()
            if extra is not None and not extra.done():
                extra.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)


def _interleave(lists: Sequence[Sequence[str]]) -> list[str]:
    """The first of each list, then the second of each...: callers from every CRM in turn."""
    merged: list[str] = []
    for group in itertools.zip_longest(*lists):
        merged.extend(number for number in group if number is not None)
    return list(dict.fromkeys(merged))


async def run_demo(
    settings: DemoSettings,
    *,
    console: Console | None = None,
    on_started: Callable[[Services], Awaitable[None]] | None = None,
) -> DemoResult:
    """Run the demo of ``settings``; draw it on ``console``; write and return its report.

    ``on_started(services)`` runs beside the calls once everything is up (tests use it to open
    the dashboard). Raises :class:`~crmphone.errors.CrmphoneError` when something cannot start.
    """
    from crmphone.sandbox import SandboxConfig, SandboxThread

    console = console or Console()
    crms = load_demo_crms(settings.crms)
    sandbox_config = SandboxConfig(
        client_id=_CLIENT_ID,
        client_secret=_CLIENT_SECRET,
        agents=settings.agents,
        seed=settings.seed,
        talk_seconds=settings.talk_seconds,
        wrapup_seconds=settings.wrapup_seconds,
        persistent_connections=True,
        accept_off_queue=False,
    )
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="crmphone-demo-")))
        sandbox = stack.enter_context(SandboxThread(sandbox_config))
        roster: list[tuple[str, str]] = sandbox.invoke(
            lambda: [(agent.id, agent.name) for agent in sandbox.sandbox.agents]
        )
        agents = dict(roster)
        stack.enter_context(_started(crms, list(agents), settings.seed))
        secrets = {_CLIENT_ID_ENV: _CLIENT_ID, _CLIENT_SECRET_ENV: _CLIENT_SECRET}
        for crm in crms.values():
            secrets.update(crm.environ())
        stack.enter_context(_environment(secrets))
        stack.enter_context(_quiet_logging(console, list(secrets.values())))
        text = _connector_toml(sandbox.base_url, list(agents), crms, settings.bridge_port)
        # Private (0600) before it holds anything, as load_config asks of a connector's file.
        (work / "connector.toml").touch(mode=0o600)
        (work / "connector.toml").write_text(text, encoding="utf-8")
        config: ConnectorConfig = parse_config(
            text, base_dir=work, environ=os.environ, source_name="connector.toml"
        )
        console.print(
            f"crmphone demo: sandbox platform on {sandbox.base_url}, {len(agents)} agents, "
            f"CRMs: {', '.join(crms) or 'none installed'}",
            markup=False,
            highlight=False,
        )
        async with _phones(sandbox.base_url, list(agents)) as phones:
            demo = _Demo(settings, console, crms, agents, phones, sandbox.base_url)
            stop = asyncio.Event()

            async def scenario(services: Services) -> None:
                try:
                    bridge = services.bridge
                    if bridge is not None:
                        console.print(
                            f"crmphone demo: dashboard at {bridge.url}/dashboard/index.html "
                            f"(the token is in {config.bridge.token_file})",  # type: ignore[union-attr]
                            markup=False,
                            highlight=False,
                        )
                    await demo.play(services, on_started)
                finally:
                    stop.set()

            await run_connector(config, stop=stop, on_started=scenario, phones=phones)
        if demo.report is None:
            raise CrmphoneError("the demo ended before its calls were measured")
        json_path, html_path = write_report(demo.report, settings.output)
    console.print(summary(demo.report))
    console.print(f"report: {html_path}\n        {json_path}", markup=False, highlight=False)
    return DemoResult(demo.report, json_path, html_path)
