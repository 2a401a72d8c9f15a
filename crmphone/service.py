"""``crmphone run``: a connector assembled from ``connector.toml`` and run until told to stop.

Builds, in order: the platform (an embedded sandbox, a sandbox at a URL, or Genesys Cloud with
client credentials from the environment), the agents to follow, each ``[[adapters]]`` entry from
its plugin, the outbox, the health server (with ``--health-port``) and the
:class:`~crmphone.connector.Connector`. On stop it drains the writes in flight, then exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

import attrs

from crmphone.adapters import Adapter, AdapterContext, Outbox, OutboxSettings, RetryPolicy
from crmphone.adapters.registry import load_adapter_class
from crmphone.config import ConnectorConfig, LogFormat, PlatformKind
from crmphone.connector import AdapterCommands, Connector, Dialer
from crmphone.health import ConnectorMetrics, HealthServer, Readiness
from crmphone.platform import ClientCredentials, PlatformClient

__all__ = ["build_adapters", "configure_logging", "run_connector"]

logger = logging.getLogger(__name__)

_METRICS_SYNC_SECONDS = 0.5


class _JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (and the exception, if any)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class _Redactor(logging.Filter):
    """Replaces known secret values in log messages, whatever logged them (a last line of defence:
    crmphone never logs credentials, but a third-party library might echo a request)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = tuple(s for s in secrets if s)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if any(secret in message for secret in self.secrets):
            for secret in self.secrets:
                message = message.replace(secret, "[redacted]")
            record.msg, record.args = message, None
        return True


def configure_logging(config: ConnectorConfig, *, stream: Any = None) -> None:
    """Log to stderr in the configured format and level, with the config's secrets redacted."""
    handler = logging.StreamHandler(stream or sys.stderr)
    if config.log.format is LogFormat.JSON:
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_Redactor([config.platform.client_secret or ""]))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(config.log.level.upper())
    # httpx logs every request's full URL at INFO: query strings and paths are not for our logs.
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def build_adapters(
    config: ConnectorConfig,
) -> tuple[dict[str, Adapter], dict[str, AdapterCommands]]:
    """Load and build every configured adapter (raising ConfigError / PluginError on problems)."""
    adapters: dict[str, Adapter] = {}
    commands: dict[str, AdapterCommands] = {}
    for index, entry in enumerate(config.adapters):
        cls = load_adapter_class(
            entry.name, allow=config.plugins_allow, key=f"adapters[{index}].name"
        )
        door = commands[entry.instance] = AdapterCommands(entry.instance)
        context = AdapterContext(
            name=entry.instance,
            agents=dict(entry.crm_users),
            commands=door,
            timeout=entry.timeout,
            verify=entry.verify,
            threads=entry.threads,
        )
        adapters[entry.instance] = cls.from_options(dict(entry.options), context)
    return adapters, commands


@contextlib.asynccontextmanager
async def _platform(config: ConnectorConfig) -> AsyncIterator[tuple[PlatformClient, Any]]:
    """An open platform client (and the embedded sandbox, when the config asks for one)."""
    platform = config.platform
    async with contextlib.AsyncExitStack() as stack:
        sandbox: Any = None
        client_id, client_secret = platform.client_id, platform.client_secret
        if platform.kind is PlatformKind.SANDBOX:
            from crmphone.sandbox import SandboxConfig, SandboxServer

            # No credentials in the environment: the sandbox's own demo client.
            sandbox_config = SandboxConfig()
            sandbox_config = attrs.evolve(
                sandbox_config,
                client_id=client_id or sandbox_config.client_id,
                client_secret=client_secret or sandbox_config.client_secret,
            )
            client_id, client_secret = sandbox_config.client_id, sandbox_config.client_secret
            if platform.embedded:
                sandbox = await stack.enter_async_context(
                    SandboxServer(sandbox_config, host="127.0.0.1", port=0)
                )
                logger.info("service: embedded sandbox platform on %s", sandbox.base_url)
        if sandbox is not None:
            api_base = login_base = sandbox.base_url
        else:
            assert platform.api_base is not None
            assert platform.login_base is not None
            api_base, login_base = platform.api_base, platform.login_base
        assert client_id is not None
        assert client_secret is not None
        tokens = ClientCredentials(
            login_base=login_base, client_id=client_id, client_secret=client_secret
        )
        client = await stack.enter_async_context(PlatformClient(api_base=api_base, tokens=tokens))
        await tokens.token()  # fail fast, with a clear message, on bad credentials
        yield client, sandbox


async def _agent_ids(config: ConnectorConfig, client: PlatformClient) -> tuple[str, ...]:
    if config.agents.ids:
        return config.agents.ids
    users = await client.list_users()
    return tuple(user.id for user in users)


def _outbox_settings(config: ConnectorConfig) -> OutboxSettings:
    box = config.outbox
    return OutboxSettings(
        path=box.path,
        synchronous=box.synchronous.value,
        retry=RetryPolicy(
            max_attempts=box.max_attempts,
            initial_delay=box.initial_delay,
            max_delay=box.max_delay,
            max_age=box.max_age,
        ),
        pop_ttl=box.pop_ttl,
    )


async def _sync_metrics(metrics: ConnectorMetrics, connector: Connector, outbox: Outbox) -> None:
    """Copy the connector's and the outbox's counters into the metrics, as deltas."""
    last: dict[tuple[str, str], float] = {}

    def advance(series: Any, key: tuple[str, str], value: float) -> None:
        delta = value - last.get(key, 0.0)
        if delta > 0:
            series.inc(delta)
            last[key] = value

    while True:
        stats = outbox.stats
        advance(metrics.events_in, ("events", ""), connector.stats.call_events)
        advance(metrics.duplicates_dropped, ("duplicates", ""), stats.duplicates)
        stream = connector.stream
        if stream is not None:
            advance(metrics.channel_reconnects, ("reconnects", ""), stream.stats.reconnects)
        for name in outbox.adapters:
            advance(
                metrics.writes_done.labels(adapter=name), ("done", name), stats.writes_done[name]
            )
            advance(
                metrics.write_retries.labels(adapter=name), ("retry", name), stats.retries[name]
            )
            advance(
                metrics.dead_letters.labels(adapter=name), ("dead", name), stats.dead_letters[name]
            )
        await asyncio.sleep(_METRICS_SYNC_SECONDS)


@contextlib.asynccontextmanager
async def _health(connector: Connector, outbox: Outbox, port: int) -> AsyncIterator[HealthServer]:
    """The health server, and the tasks that keep its metrics current (only while it serves)."""
    metrics = ConnectorMetrics()
    for name in outbox.adapters:
        metrics.add_adapter(name)
    depths: dict[str | tuple[str, ...], float] = {}

    async def refresh_depths() -> None:
        while True:
            depths.update(await outbox.depths())
            await asyncio.sleep(_METRICS_SYNC_SECONDS)

    metrics.outbox_depth.set_labelled_function(lambda: dict(depths))

    def adapter_gauges() -> dict[str | tuple[str, ...], float]:
        return {
            (instance, name): float(value)
            for instance, adapter in outbox.adapters.items()
            for name, value in adapter.gauges().items()
        }

    metrics.adapter_gauges.set_labelled_function(adapter_gauges)

    def readiness() -> Readiness:
        if connector.ready.is_set():
            return Readiness.yes()
        return Readiness.no("not following the platform's events yet")

    helpers = [
        asyncio.create_task(_sync_metrics(metrics, connector, outbox)),
        asyncio.create_task(refresh_depths()),
    ]
    try:
        async with HealthServer(metrics, ready=readiness, port=port) as server:
            logger.info("service: health and metrics on %s", server.url)
            yield server
    finally:
        for task in helpers:
            task.cancel()
        await asyncio.gather(*helpers, return_exceptions=True)


async def run_connector(
    config: ConnectorConfig,
    *,
    stop: asyncio.Event,
    health_port: int | None = None,
    dialer: Dialer | None = None,
    adapters: Mapping[str, Adapter] | None = None,
    commands: Mapping[str, AdapterCommands] | None = None,
    on_ready: Any = None,
) -> None:
    """Run the connector of ``config`` until ``stop`` is set, then drain and close.

    ``adapters`` are the adapters to drive, with the ``commands`` doors they were built with (as
    :func:`build_adapters` returns them); by default they are built from ``config``.
    ``on_ready(connector, health_server, sandbox)`` is called once everything is up.
    """
    if adapters is None:
        adapters, commands = build_adapters(config)
    async with _platform(config) as (client, sandbox):
        agent_ids = await _agent_ids(config, client)
        async with Outbox(_outbox_settings(config), adapters) as outbox:
            connector = Connector(
                client,
                outbox,
                agent_ids=agent_ids,
                dialer=dialer,
                follow_presence=config.agents.presence,
            )
            for door in (commands or {}).values():
                door.connector = connector
            async with contextlib.AsyncExitStack() as stack:
                health = None
                if health_port is not None:
                    health = await stack.enter_async_context(
                        _health(connector, outbox, health_port)
                    )
                running = asyncio.create_task(connector.run(stop))
                try:
                    if on_ready is not None:
                        await connector.ready.wait()
                        result = on_ready(connector, health, sandbox)
                        if asyncio.iscoroutine(result):
                            await result
                    await running
                finally:
                    stop.set()
                    await asyncio.gather(running, return_exceptions=True)
                    logger.info("service: stopping; draining the writes in flight")
