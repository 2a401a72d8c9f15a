"""``crmphone run``: a connector assembled from ``connector.toml`` and run until told to stop.

Builds, in order: the platform (an embedded sandbox, a sandbox at a URL, or Genesys Cloud with
client credentials from the environment), the agents to follow, each ``[[adapters]]`` entry from
its plugin, the agent's phone (``[phone]``: signed in with the agent's own token, which is what
may dial), the outbox, the :class:`~crmphone.connector.Connector`, the health server (with
``--health-port``) and the bridge (``[bridge]``: the CRM pages, fed by a
:class:`~crmphone.bridging.BridgeFeed`, their commands carried out by
:class:`~crmphone.connector.BridgeCommands` on the phone). On stop it drains the writes in flight,
logs the phone out, then exits.
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
from crmphone.bridge import (
    DEFAULT_ALLOWED_ORIGINS,
    BridgeServer,
    BridgeSettings,
    builtin_pages,
)
from crmphone.bridging import BridgeFeed
from crmphone.clock import Clock, SystemClock
from crmphone.config import ConnectorConfig, LogFormat, PlatformKind, security_warnings
from crmphone.connector import AdapterCommands, BridgeCommands, Connector, Dialer, PhoneControls
from crmphone.errors import InvalidStateError, PlatformError
from crmphone.health import ConnectorMetrics, HealthServer, Readiness
from crmphone.notifications import ChannelSettings
from crmphone.platform import ClientCredentials, PlatformClient, StaticToken, TokenProvider

__all__ = ["SecretRedactor", "Services", "build_adapters", "configure_logging", "run_connector"]

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


class SecretRedactor(logging.Filter):
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
    handler.addFilter(SecretRedactor([config.platform.client_secret or ""]))
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


@attrs.frozen
class _Platform:
    client: PlatformClient
    sandbox: Any
    api_base: str
    client_id: str
    verify: bool | str = True


@attrs.define
class Services:
    """What a running connector is made of (``run_connector``'s ``on_started`` gets it)."""

    config: ConnectorConfig
    connector: Connector
    outbox: Outbox
    sandbox: Any = None
    """The embedded :class:`~crmphone.sandbox.SandboxServer`, if any."""
    health: HealthServer | None = None
    bridge: BridgeServer | None = None
    feed: BridgeFeed | None = None
    phone: Any = None
    """The agent's :class:`~crmphone.phone.Softphone` (``[phone]``), if any."""


@contextlib.asynccontextmanager
async def _platform(config: ConnectorConfig) -> AsyncIterator[_Platform]:
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
            login_base=login_base,
            client_id=client_id,
            client_secret=client_secret,
            verify=platform.verify,
        )
        client = await stack.enter_async_context(
            PlatformClient(api_base=api_base, tokens=tokens, verify=platform.verify)
        )
        await tokens.token()  # fail fast, with a clear message, on bad credentials
        yield _Platform(
            client=client,
            sandbox=sandbox,
            api_base=api_base,
            client_id=client_id,
            verify=platform.verify,
        )


@contextlib.asynccontextmanager
async def _agent_phone(config: ConnectorConfig, platform: _Platform) -> AsyncIterator[Any]:
    """The ``[phone]`` agent's softphone, logged in (and out again at the end)."""
    from crmphone._webrtc import LOOPBACK_ICE, IceSettings
    from crmphone.phone import PhoneSettings, Softphone

    phone_config = config.phone
    assert phone_config is not None
    tokens: TokenProvider
    if config.platform.kind is PlatformKind.SANDBOX:
        from crmphone.platform import sign_in_sandbox_agent

        # The sandbox signs its agents in as a browser would (Authorization Code + PKCE).
        tokens = await sign_in_sandbox_agent(
            platform.api_base,
            phone_config.agent,
            client_id=platform.client_id,
            verify=platform.verify,
        )
        ice = LOOPBACK_ICE
    else:
        assert phone_config.token is not None  # the config insists on it for Genesys Cloud
        tokens = StaticToken(phone_config.token)
        ice = IceSettings()
    settings = PhoneSettings(
        auto_answer=phone_config.auto_answer,
        keep_microphone_live=phone_config.keep_microphone_live,
        inactivity_timeout=phone_config.inactivity_timeout,
        ice=ice,
    )
    async with (
        PlatformClient(api_base=platform.api_base, tokens=tokens, verify=platform.verify) as client,
        Softphone(client, settings=settings) as phone,
    ):
        if phone.agent_id != phone_config.agent:
            raise InvalidStateError(
                f"the agent's token belongs to user {phone.agent_id}, not phone.agent "
                f"({phone_config.agent}): use that agent's own token"
            )
        logger.info("service: %s's phone is logged in", phone.agent_id)
        yield phone
    logger.info("service: %s's phone is logged out", phone_config.agent)


def _announce_security(config: ConnectorConfig) -> None:
    """Say, at every start, what weakens security (WARNING: TLS turned off, a bridge others can
    reach) and which CA bundles are trusted (INFO)."""
    # Repeated at each start on purpose: an opt-out made once for a test must not be forgotten.
    # The file's own warning is load_config's (a config may come from no file at all).
    for message in security_warnings(config, file=False):
        logger.warning("service: %s", message)
    trusted = [("platform.verify", config.platform.verify)] + [
        (f"adapters[{index}].verify", adapter.verify)
        for index, adapter in enumerate(config.adapters)
    ]
    for key, verify in trusted:
        if isinstance(verify, str):
            logger.info("service: %s: TLS verified against the CA bundle %s only", key, verify)


def _phone_dialer(phones: Mapping[str, Any]) -> Dialer:
    """Click-to-dial on the agent's own phone (only an agent's token may dial as them)."""

    async def dial(agent_id: str, number: str) -> str:
        phone = phones.get(agent_id)
        if phone is None:
            raise InvalidStateError(
                f"{agent_id}'s phone does not run here; they dial from their own crmphone"
            )
        conversation_id: str = await phone.dial(number)
        return conversation_id

    return dial


async def _agent_names(client: PlatformClient, agent_ids: tuple[str, ...]) -> dict[str, str]:
    """Display names for the pages (the ids themselves when the platform cannot say)."""
    try:
        users = {user.id: user for user in await client.get_users(agent_ids)}
    except PlatformError as exc:
        logger.warning("service: cannot read the agents' names (%s); showing their ids", exc)
        users = {}
    found = {agent: users.get(agent) for agent in agent_ids}
    return {agent: (user.name if user and user.name else agent) for agent, user in found.items()}


async def _start_bridge(
    stack: contextlib.AsyncExitStack,
    services: Services,
    client: PlatformClient,
    phones: Mapping[str, PhoneControls],
    desk: str | None,
) -> None:
    """Start the ``[bridge]``: the pages, their feed, their commands on the phone(s).

    ``desk`` is the ``[phone]`` agent: CRM pages show that agent's calls (all, without one).
    """
    bridge_config = services.config.bridge
    assert bridge_config is not None
    connector = services.connector
    # The feed publishes through the bridge and the bridge replays through the feed: the bridge
    # is bound below, before either can call the other (pages connect only once it listens).
    feed = BridgeFeed(
        lambda message, to: bridge.publish(message, to=to),
        agents=await _agent_names(client, connector.agent_ids),
        desk_agents=None if desk is None else (desk,),
        page_adapters=bridge_config.page_adapters,
    )
    settings = BridgeSettings(
        host=bridge_config.host,
        port=bridge_config.port,
        token_path=bridge_config.token_file,
        tls_cert_file=bridge_config.tls_cert_file,
        tls_key_file=bridge_config.tls_key_file,
        allowed_origins=bridge_config.allowed_origins or DEFAULT_ALLOWED_ORIGINS,
        csp_script_sources=bridge_config.script_sources,
        pages=builtin_pages(*bridge_config.pages),
    )
    handler = BridgeCommands(
        connector,
        agent_id=desk or connector.agent_ids[0],
        adapters=bridge_config.page_adapters,
        phones=phones,
    )
    bridge = await stack.enter_async_context(BridgeServer(settings, handler, replay=feed.replay))
    stack.callback(connector.watch(feed.on_event))
    stack.callback(services.outbox.watch(feed.on_notice))
    services.bridge, services.feed = bridge, feed
    if not settings.tls and "salesforce" in bridge_config.pages:
        logger.warning(
            "service: the bridge serves HTTP; Salesforce loads Open CTI pages only over HTTPS "
            "(set bridge.tls_cert_file and bridge.tls_key_file)"
        )
    logger.info(
        "service: bridge pages on %s (%s); the token is in %s",
        bridge.url,
        ", ".join(f"/{name}/" for name in bridge_config.pages),
        bridge_config.token_file,
    )


async def _follow_phone(phone: Any, outbox: Outbox, feed: BridgeFeed | None) -> None:
    """The phone's connection and microphone events → the adapters and the pages."""
    from crmphone.phone import CallUpdate

    async for update in phone.updates():
        if isinstance(update, CallUpdate):
            continue  # the connector reports calls, from the platform's side
        outbox.publish_status(update)
        if feed is not None:
            feed.on_event(update)


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
async def _health(
    config: ConnectorConfig, connector: Connector, outbox: Outbox, port: int
) -> AsyncIterator[HealthServer]:
    """The health server, and the tasks that keep its metrics current (only while it serves)."""
    metrics = ConnectorMetrics()
    for name in outbox.adapters:
        metrics.add_adapter(name)
    # An alert can watch for this as well as the start-up WARNING a person may never read.
    unverified: dict[str | tuple[str, ...], float] = {
        target: 1.0
        for target, verify in [
            ("platform", config.platform.verify),
            *((each.instance, each.verify) for each in config.adapters),
        ]
        if verify is False
    }
    metrics.tls_unverified.set_labelled_function(lambda: dict(unverified))

    def pending() -> float:
        stream = connector.stream
        return 0.0 if stream is None else float(stream.pending())

    metrics.notifications_pending.set_function(pending)
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
        if outbox.storage_error is not None:
            return Readiness.no(f"the outbox cannot write to its file: {outbox.storage_error}")
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
    on_started: Any = None,
    phones: Mapping[str, Any] | None = None,
    channel_settings: ChannelSettings | None = None,
    clock: Clock | None = None,
) -> None:
    """Run the connector of ``config`` until ``stop`` is set, then drain and close.

    ``adapters`` are the adapters to drive, with the ``commands`` doors they were built with (as
    :func:`build_adapters` returns them); by default they are built from ``config``. ``dialer``
    places click-to-dial calls (default: the phone of the agent it is for). ``phones`` are agents'
    phones the caller runs (agent id → :class:`~crmphone.phone.Softphone`), besides the
    ``[phone]``: their events reach the adapters and the pages, and the pages' commands reach them.
    ``on_ready(connector, health_server, sandbox)`` and ``on_started(services)`` (a
    :class:`Services`) are called once everything is up and following the platform. Every TLS
    verification the config turns off, and a bridge other machines can reach, is logged as a
    WARNING first (:func:`~crmphone.config.security_warnings`).
    ``channel_settings`` replace the notification channel's timings (tests and the fault matrix
    shorten them) and ``clock`` the connector's and the outbox's clock.
    """
    _announce_security(config)
    if adapters is None:
        adapters, commands = build_adapters(config)
    async with _platform(config) as platform, contextlib.AsyncExitStack() as outer:
        client = platform.client
        agent_ids = await _agent_ids(config, client)
        all_phones: dict[str, Any] = dict(phones or {})
        phone = None
        if config.phone is not None:
            phone = await outer.enter_async_context(_agent_phone(config, platform))
            all_phones[phone.agent_id] = phone
        if dialer is None and all_phones:
            dialer = _phone_dialer(all_phones)
        times = clock or SystemClock()
        async with Outbox(
            _outbox_settings(config),
            adapters,
            clock=lambda: times.wall().timestamp(),
            monotonic=times.monotonic,
        ) as outbox:
            connector = Connector(
                client,
                outbox,
                agent_ids=agent_ids,
                dialer=dialer,
                follow_presence=config.agents.presence,
                channel_settings=channel_settings,
                clock=times,
            )
            services = Services(
                config=config,
                connector=connector,
                outbox=outbox,
                sandbox=platform.sandbox,
                phone=phone,
            )
            for door in (commands or {}).values():
                door.connector = connector
            async with contextlib.AsyncExitStack() as stack:
                if health_port is not None:
                    services.health = await stack.enter_async_context(
                        _health(config, connector, outbox, health_port)
                    )
                if config.bridge is not None and config.bridge.enabled:
                    desk = None if phone is None else phone.agent_id
                    await _start_bridge(stack, services, client, all_phones, desk)
                helpers = [
                    asyncio.create_task(_follow_phone(each, outbox, services.feed))
                    for each in all_phones.values()
                ]
                running = asyncio.create_task(connector.run(stop))
                try:
                    if on_ready is not None or on_started is not None:
                        await connector.ready.wait()
                    if on_ready is not None:
                        result = on_ready(connector, services.health, platform.sandbox)
                        if asyncio.iscoroutine(result):
                            await result
                    if on_started is not None:
                        result = on_started(services)
                        if asyncio.iscoroutine(result):
                            await result
                    await running
                finally:
                    stop.set()
                    await asyncio.gather(running, return_exceptions=True)
                    for task in helpers:
                        task.cancel()
                    await asyncio.gather(*helpers, return_exceptions=True)
                    logger.info("service: stopping; draining the writes in flight")
