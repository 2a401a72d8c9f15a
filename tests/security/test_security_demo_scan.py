"""One whole ``crmphone demo`` run, every output scanned for every secret it handled.

The secrets: the platform's OAuth client secret, every CRM credential the demo's emulators hand
out (``DemoCrm.environ()``), every OAuth token and refresh token issued during the run (by the
sandbox to the connector and each agent's phone, by Salesforce to the adapter) and the bridge's
install token. The outputs: the console, the process's stdout and stderr, every log record of
every library at DEBUG (raw, before any redaction), the report's files, every file the run
writes (its connector.toml, the outbox's SQLite files, the bridge token file), ``/metrics``,
every message the bridge publishes to a page, and the reprs of the running services.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import io
import json
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import websockets
from rich.console import Console
from security_helpers import MIN_SECRET_LENGTH, assert_no_secret, live_objects, live_tokens
from websockets.typing import Origin

from crmphone.bridge import PROTOCOL
from crmphone.demo import DemoSettings, run_demo
from crmphone.events import CallWrapup, Event
from crmphone.phone import Softphone
from crmphone.platform import AuthorizationCode, ClientCredentials, PlatformClient
from crmphone.service import Services, _health

pytestmark = pytest.mark.timeout(180)

CALLS = 4
_PAGE_LOGGER = "crmphone-security-scan-page"

# Every library the demo runs, imported before the log net is cast so their loggers exist.
_LIBRARIES = (
    "crmphone.demo.run",
    "crmphone.phone",
    "crmphone_salesforce",
    "crmphone_zendesk",
    "simple_salesforce",
    "zenpy",
    "requests",
    "urllib3",
    "httpx",
    "httpcore",
    "websockets",
    "uvicorn",
    "starlette",
    "aiortc",
    "aioice",
    "asyncio",
)


class _Records(logging.Handler):
    """Keeps every record formatted whole: message, exception and stack, as a log file would."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.lines: list[str] = []
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        self.lines.append(self.format(record))


@attrs.frozen
class _Net:
    records: _Records
    top_levels: frozenset[str]


@contextlib.contextmanager
def every_log_record_at_debug() -> Iterator[_Net]:
    """Every logger of every library at DEBUG, its records kept raw by one handler.

    The demo replaces the root logger's handlers and sets it to WARNING, so the net hangs from
    each top-level logger instead (and from any logger that does not propagate), with its level
    forced to DEBUG; everything is restored afterwards.
    """
    for name in _LIBRARIES:
        importlib.import_module(name)
    manager = logging.Logger.manager
    loggers = {
        name: value
        for name, value in manager.loggerDict.items()
        if isinstance(value, logging.Logger)
    }
    top_levels = frozenset(name.split(".")[0] for name in [*loggers, *_LIBRARIES])
    for name in top_levels:
        loggers.setdefault(name, logging.getLogger(name))
    saved = {name: (logger.level, logger.disabled) for name, logger in loggers.items()}
    hooked = [
        logger for name, logger in loggers.items() if name in top_levels or not logger.propagate
    ]
    records = _Records()
    for logger in loggers.values():
        logger.setLevel(logging.DEBUG)
        logger.disabled = False
    for logger in hooked:
        logger.addHandler(records)
    try:
        yield _Net(records, top_levels)
    finally:
        for logger in hooked:
            logger.removeHandler(records)
        for name, (level, disabled) in saved.items():
            loggers[name].setLevel(level)
            loggers[name].disabled = disabled


@attrs.define
class _Observed:
    """What the scan collects while the demo runs (in ``on_started``)."""

    secrets: dict[str, str] = attrs.field(factory=dict)
    tokens: set[str] = attrs.field(factory=set)
    bridge_token: str = ""
    files: dict[Path, bytes] = attrs.field(factory=dict)
    modes: dict[str, int] = attrs.field(factory=dict)
    metrics: str = ""
    page_frames: list[str] = attrs.field(factory=list)
    reprs: list[str] = attrs.field(factory=list)
    wrapped_up: int = 0
    platform_clients: int = 0


def _secrets_of(services: Services) -> dict[str, str]:
    """The credentials the demo configured, by where they come from."""
    found: dict[str, str] = {}
    platform = services.config.platform
    if platform.client_secret:
        found[platform.client_secret_env] = platform.client_secret
    for adapter in services.config.adapters:
        for key, name in adapter.options.items():
            # Every credential is named by a *_env option; ids (client_id_env) are not secret.
            if key.endswith("_env") and key != "client_id_env" and name in os.environ:
                found[f"{adapter.instance}.{key} ({name})"] = os.environ[name]
    for name, value in os.environ.items():
        if name.startswith("CRMPHONE_DEMO_") and any(
            word in name for word in ("SECRET", "TOKEN", "PASSWORD", "KEY", "SESSION")
        ):
            found.setdefault(name, value)
    return found


async def _read_page(services: Services, observed: _Observed, done: asyncio.Event) -> None:
    """A dashboard page on the bridge (its own origin, the install token): every frame kept."""
    bridge = services.bridge
    assert bridge is not None
    # This client's own frame log would show the hello it sends, token and all: keep it quiet.
    quiet = logging.getLogger(_PAGE_LOGGER)
    quiet.propagate, quiet.disabled = False, True
    async with websockets.connect(
        bridge.ws_url, origin=Origin(bridge.url), open_timeout=10, logger=quiet
    ) as page:
        hello = {"type": "hello", "token": bridge.token.reveal(), "client": "dashboard"}
        await page.send(json.dumps(hello | {"protocol": PROTOCOL}))
        while not done.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.2):
                    frame = await page.recv()
                    observed.page_frames.append(frame if isinstance(frame, str) else repr(frame))


async def _scan_while_running(services: Services, observed: _Observed) -> None:
    """Collect secrets and outputs once every call is wrapped up and written."""

    def on_event(event: Event) -> None:
        if isinstance(event, CallWrapup):
            observed.wrapped_up += 1

    stop_watching = services.connector.watch(on_event)
    done = asyncio.Event()
    page = asyncio.create_task(_read_page(services, observed, done))
    try:
        observed.secrets = _secrets_of(services)
        assert services.bridge is not None
        observed.bridge_token = services.bridge.token.reveal()
        async with asyncio.timeout(90):
            while observed.wrapped_up < CALLS or any((await services.outbox.depths()).values()):
                await asyncio.sleep(0.1)
        # /metrics as `crmphone run --health-port` serves it for this very connector.
        async with (
            _health(services.config, services.connector, services.outbox, 0) as health,
            httpx.AsyncClient() as http,
        ):
            observed.metrics = (await http.get(f"{health.url}/metrics")).text
        work = services.config.outbox.path.parent
        for path in sorted(work.rglob("*")):
            if path.is_file():
                observed.files[path] = path.read_bytes()
                observed.modes[path.name] = stat.S_IMODE(path.stat().st_mode)
        connector, outbox = services.connector, services.outbox
        parts: list[Any] = [services, connector, connector.client, connector.client.tokens]
        parts += [outbox, services.config, services.bridge, services.feed, services.health]
        for adapter in outbox.adapters.values():
            parts += [adapter, adapter.context, *vars(adapter).values()]
        # Every platform client and its tokens: the connector's, and each agent's phone's.
        clients = live_objects(PlatformClient, ClientCredentials, AuthorizationCode, Softphone)
        observed.platform_clients = sum(isinstance(c, PlatformClient) for c in clients)
        parts += clients
        observed.reprs = [f"{part!r}\n{part}" for part in parts]
        observed.tokens = live_tokens()
    finally:
        stop_watching()
        done.set()
        await page


async def test_one_demo_run_shows_no_secret_anywhere(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """Four calls through both CRMs with the whole log net at DEBUG: no secret or token in any
    output, the connector.toml and the token file private, the token file holding the token
    alone."""
    observed = _Observed()
    console = io.StringIO()
    settings = DemoSettings(
        agents=2, calls=CALLS, talk_seconds=0.5, output=tmp_path / "report", live=False
    )

    async def scan(services: Services) -> None:
        await _scan_while_running(services, observed)

    with every_log_record_at_debug() as net:
        result = await run_demo(settings, console=Console(file=console, width=120), on_started=scan)
        late_tokens = live_tokens()
    captured = capfd.readouterr()

    # The run did what it should, so the scan saw a real one.
    assert result.ok, console.getvalue()[-3000:]
    assert observed.wrapped_up >= CALLS
    assert net.records.count > 100  # DEBUG records of many libraries, not a silent net
    unnetted = sorted(
        name
        for name, value in logging.Logger.manager.loggerDict.items()
        if isinstance(value, logging.Logger)
        and name.split(".")[0] not in net.top_levels
        and name != _PAGE_LOGGER
    )
    assert unnetted == [], f"loggers created during the run escaped the net: {unnetted}"

    # What must never show.
    named = {name: value for name, value in observed.secrets.items() if value}
    assert len(named) >= 3, sorted(named)  # the platform's and both CRMs'
    tokens = {t for t in observed.tokens | late_tokens if len(t) >= MIN_SECRET_LENGTH}
    assert observed.bridge_token in tokens
    assert len(tokens) >= 4  # the connector's, each phone's, Salesforce's, the bridge's
    everything = {*named.values(), *tokens}
    assert all(len(s) >= MIN_SECRET_LENGTH for s in named.values()), "a secret too short to scan"

    # Where it must not show.
    assert_no_secret(everything, console.getvalue(), "the console")
    assert_no_secret(everything, captured.out + captured.err, "stdout/stderr")
    assert_no_secret(everything, "\n".join(net.records.lines), "a log record at DEBUG")
    for path in sorted(result.json_path.parent.rglob("*")):
        if path.is_file():
            assert_no_secret(everything, path.read_bytes(), f"the report file {path.name}")
    assert observed.metrics.startswith("#")
    assert_no_secret(everything, observed.metrics, "/metrics")
    assert observed.page_frames
    assert_no_secret(everything, "\n".join(observed.page_frames), "a message to a page")
    assert observed.platform_clients >= 3  # the connector's and each phone's were looked at
    assert_no_secret(everything, "\n".join(observed.reprs), "a repr of the running services")

    by_name = {path.name: content for path, content in observed.files.items()}
    assert {"connector.toml", "outbox.sqlite3"} <= set(by_name), sorted(by_name)
    token_files = [name for name in by_name if name.endswith(".token")]
    assert len(token_files) == 1, sorted(by_name)
    for name, content in by_name.items():
        if name in token_files:
            assert content.decode() == observed.bridge_token + "\n"
            assert_no_secret(everything - {observed.bridge_token}, content, name)
        else:
            assert_no_secret(everything, content, f"the file {name} the run wrote")
    assert observed.modes["connector.toml"] == 0o600
    assert observed.modes[token_files[0]] == 0o600
