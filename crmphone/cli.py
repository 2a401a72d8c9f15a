"""The ``crmphone`` command: thin wrappers that parse options and call the library.

Exit codes: 0 success, 1 a runtime failure (the platform refused, the network failed), 2 bad usage or
configuration (click's own convention), 130 interrupted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import click

from crmphone.errors import AuthenticationError, CrmphoneError, UsageError
from crmphone.notifications import ChannelSettings, CloseDiagnosis, NotificationStream, Resync

if TYPE_CHECKING:
    from crmphone.sandbox import SandboxServer

__all__ = ["main"]

DEMO_CLIENT_ID = "demo-client"
DEMO_CLIENT_SECRET = "demo-secret"  # noqa: S105 - the sandbox's published demo credential


def _configure_logging(verbose: int) -> None:
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(
        level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="crmphone")
def main() -> None:
    """crmphone: platform events and a persistent phone connection, delivered into your CRM."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--heartbeat-interval", default=30.0, show_default=True, type=click.FloatRange(min=0.01)
)
@click.option(
    "--calls-per-minute",
    default=0.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Generate inbound calls at this average rate.",
)
@click.option("--agents", default=5, show_default=True, type=click.IntRange(1, 10_000))
@click.option("-v", "--verbose", count=True, help="More logging on stderr (-v, -vv).")
def sandbox(
    host: str,
    port: int,
    heartbeat_interval: float,
    calls_per_minute: float,
    agents: int,
    verbose: int,
) -> None:
    """Run the local sandbox platform (Genesys Cloud's REST and notification protocol).

    Login and API are served on the one port. Credentials: CRMPHONE_CLIENT_ID and
    CRMPHONE_CLIENT_SECRET when set, otherwise the demo ones (printed).
    """
    from crmphone.sandbox import SandboxConfig, serve

    _configure_logging(verbose)
    client_id = os.environ.get("CRMPHONE_CLIENT_ID") or DEMO_CLIENT_ID
    secret_from_env = bool(os.environ.get("CRMPHONE_CLIENT_SECRET"))
    client_secret = os.environ.get("CRMPHONE_CLIENT_SECRET") or DEMO_CLIENT_SECRET
    config = SandboxConfig(
        client_id=client_id,
        client_secret=client_secret,
        heartbeat_interval=heartbeat_interval,
        calls_per_minute=calls_per_minute,
        agents=agents,
    )

    def on_ready(server: SandboxServer) -> None:
        base_url = server.base_url
        agent_ids = [agent.id for agent in server.sandbox.agents]
        secret_shown = "(from CRMPHONE_CLIENT_SECRET)" if secret_from_env else client_secret
        click.echo(f"crmphone sandbox listening on {base_url}")
        click.echo(f"  login and API base: {base_url}")
        click.echo(f"  client id:          {client_id}")
        click.echo(f"  client secret:      {secret_shown}")
        click.echo(f"  agents:             {', '.join(agent_ids)}")
        first = agent_ids[0] if agent_ids else "<agent-id>"
        click.echo(
            "  try: crmphone events "
            f"--api-base {base_url} --login-base {base_url} "
            f"--topic v2.users.{first}.conversations.calls --explain"
        )
        click.echo("Ctrl-C stops it.")

    try:
        asyncio.run(serve(config, host=host, port=port, on_ready=on_ready))
    except KeyboardInterrupt:
        sys.exit(130)
    except CrmphoneError as exc:
        raise click.ClickException(str(exc)) from exc


def _compact(event_topic: str, event_body: Any) -> str:
    return json.dumps(
        {"topicName": event_topic, "eventBody": event_body},
        separators=(",", ":"),
        ensure_ascii=False,
    )


@main.command()
@click.option("--api-base", help="Platform API base URL, e.g. https://api.mypurecloud.com.")
@click.option("--login-base", help="Platform login base URL, e.g. https://login.mypurecloud.com.")
@click.option("--region", help="Region shorthand instead of the two bases, e.g. mypurecloud.de.")
@click.option(
    "--client-id", envvar="CRMPHONE_CLIENT_ID", help="OAuth client id [CRMPHONE_CLIENT_ID]."
)
@click.option(
    "--client-secret",
    envvar="CRMPHONE_CLIENT_SECRET",
    help="OAuth client secret [CRMPHONE_CLIENT_SECRET]; prefer the environment variable.",
)
@click.option("--topic", "topics", multiple=True, required=True, help="A topic to follow (repeat).")
@click.option("--heartbeat-timeout", default=35.0, show_default=True, type=click.FloatRange(0.01))
@click.option("--pong-timeout", default=5.0, show_default=True, type=click.FloatRange(0.01))
@click.option("--explain", is_flag=True, help="Print a full diagnosis of every close on stderr.")
@click.option(
    "--duration",
    type=click.FloatRange(min=0),
    help="Stop after this many seconds (default: never).",
)
@click.option("-v", "--verbose", count=True, help="More logging on stderr (-v, -vv).")
def events(
    api_base: str | None,
    login_base: str | None,
    region: str | None,
    client_id: str | None,
    client_secret: str | None,
    topics: tuple[str, ...],
    heartbeat_timeout: float,
    pong_timeout: float,
    explain: bool,
    duration: float | None,
    verbose: int,
) -> None:
    """Print every event of the given topics as one JSON line on stdout (diagnostics on stderr).

    Runs until interrupted (or --duration). Every channel close is explained on stderr: its code
    and reason, the last heartbeat's age, the token's age, and the most likely cause.
    """
    from crmphone.platform import resolve_region

    _configure_logging(verbose)
    if region:
        api_base, login_base = resolve_region(region)
    if not api_base or not login_base:
        raise click.UsageError("give --api-base and --login-base, or --region")
    if not client_id or not client_secret:
        raise click.UsageError(
            "no OAuth client credentials: set CRMPHONE_CLIENT_ID and CRMPHONE_CLIENT_SECRET"
        )
    settings = ChannelSettings(heartbeat_timeout=heartbeat_timeout, pong_timeout=pong_timeout)
    try:
        asyncio.run(
            _follow(
                api_base=api_base,
                login_base=login_base,
                client_id=client_id,
                client_secret=client_secret,
                topics=topics,
                settings=settings,
                explain=explain,
                duration=duration,
            )
        )
    except KeyboardInterrupt:
        sys.exit(130)
    except AuthenticationError as exc:
        click.echo(f"crmphone events: bad credentials: {exc}", err=True)
        sys.exit(1)
    except UsageError as exc:
        click.echo(f"crmphone events: {exc}", err=True)
        sys.exit(2)
    except CrmphoneError as exc:
        click.echo(f"crmphone events: {exc}", err=True)
        sys.exit(1)


async def _follow(
    *,
    api_base: str,
    login_base: str,
    client_id: str,
    client_secret: str,
    topics: Sequence[str],
    settings: ChannelSettings,
    explain: bool,
    duration: float | None,
) -> None:
    from crmphone.platform import ClientCredentials, PlatformClient

    def on_close(diagnosis: CloseDiagnosis) -> None:
        if explain:
            click.echo(diagnosis.render(), err=True)
        else:
            click.echo(f"channel closed: {diagnosis.one_line()}", err=True)

    def on_resync(resync: Resync) -> None:
        gap = resync.gap
        what = f"after a gap of {gap.total_seconds():.1f} s" if gap else "without a gap"
        click.echo(f"channel {resync.channel_id} live again {what}", err=True)

    tokens = ClientCredentials(
        login_base=login_base, client_id=client_id, client_secret=client_secret
    )
    async with PlatformClient(api_base=api_base, tokens=tokens) as client:
        await tokens.token()  # fail fast, with a clear message, on bad credentials
        stream = NotificationStream(
            client, topics, settings=settings, on_close=on_close, on_resync=on_resync
        )
        async with stream:
            click.echo(
                f"following {len(stream.topics)} topic(s) on {len(stream.plan)} channel(s)",
                err=True,
            )
            out = sys.stdout
            deadline = asyncio.timeout(duration)
            try:
                async with deadline:
                    async for event in stream:
                        out.write(_compact(event.topic_name, event.event_body) + "\n")
                        out.flush()
            except TimeoutError:
                if not deadline.expired():
                    raise
        if explain:
            stats = stream.stats
            click.echo(
                f"events {stats.events}, duplicates dropped {stats.duplicates_dropped}, "
                f"malformed {stats.malformed}, reconnects {stats.reconnects}, "
                f"rollovers {stats.rollovers}",
                err=True,
            )


@main.command()
@click.argument("names", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def plugins(names: tuple[str, ...], as_json: bool) -> None:
    """List the installed adapter plugins (entry point group crmphone.adapters).

    Shows each plugin's name, the distribution and version that provide it, where its code is,
    whether it loads (each one is imported to find out) and its description. NAMES limits the
    list to those plugins.
    """
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from crmphone.adapters.registry import installed_plugins

    found = installed_plugins(load=True, names=names or None)
    if as_json:
        click.echo(json.dumps([plugin.to_json() for plugin in found], indent=2))
        return
    if not found:
        what = f"named {', '.join(names)} " if names else ""
        click.echo(f"no adapter plugin {what}is installed (pip install crmphone-<name>)")
        return
    table = Table("name", "distribution", "location", "status", "description")
    table.columns[2].overflow = "fold"  # a path is only useful whole
    for plugin in found:
        # Text cells: messages and paths are shown as they are, never read as rich markup.
        status = (
            Text("ok", "green")
            if plugin.ok
            else Text.assemble(("error: ", "red"), str(plugin.error))
        )
        table.add_row(
            Text(plugin.name),
            Text(plugin.source),
            Text(plugin.location or "?"),
            status,
            Text(plugin.description or ""),
        )
    Console(soft_wrap=False).print(table)


@main.command()
@click.option(
    "--sandbox",
    "sandbox_url",
    help="Base URL of a running `crmphone sandbox`; default: start one in this process.",
)
@click.option("--agent", help="Sandbox agent to sign in as (user id; default: the first agent).")
@click.option("--api-base", help="Genesys Cloud API base URL (or --region).")
@click.option("--region", help="Region shorthand instead of the two bases, e.g. mypurecloud.de.")
@click.option("--auto-answer", is_flag=True, help="Answer every call at once.")
@click.option("--keep-mic-live", is_flag=True, help="Send microphone audio between calls too.")
@click.option(
    "--timeout",
    "inactivity_timeout",
    default=600.0,
    show_default=True,
    type=click.FloatRange(min=0.1),
    help="Close the persistent connection after this many seconds without a call.",
)
@click.option(
    "--tone",
    default=440.0,
    show_default=True,
    type=click.FloatRange(20, 20000),
    help="Send this tone as the microphone (Hz).",
)
@click.option(
    "--audio-file", type=click.Path(dir_okay=False), help="Send this file instead of a tone."
)
@click.option(
    "--ice-host",
    "ice_hosts",
    multiple=True,
    help="Local address ICE may use (repeat; default: all interfaces, 127.0.0.1 for a sandbox).",
)
@click.option(
    "--call-every",
    default=8.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Embedded sandbox only: place a call to the agent this often (0: never).",
)
@click.option("--duration", type=click.FloatRange(min=0.1), help="Quit after this many seconds.")
@click.option("-v", "--verbose", count=True, help="More logging on stderr (-v, -vv).")
def softphone(verbose: int, **options: Any) -> None:
    """A terminal softphone for one agent, with a persistent WebRTC connection.

    Against the sandbox by default (started in this process, calling the agent every
    --call-every seconds), a running sandbox with --sandbox, or Genesys Cloud with --api-base and
    an agent's access token in CRMPHONE_AGENT_TOKEN. Keys: a answer, h hang up, m mute, o hold,
    d dial, s stop the persistent connection (S forces it during a call), q quit.
    """
    _configure_logging(verbose)
    try:
        code = asyncio.run(_softphone(_SoftphoneOptions(**options)))
    except KeyboardInterrupt:
        click.echo("interrupted: logged out", err=True)
        sys.exit(0)
    except CrmphoneError as exc:
        raise click.ClickException(str(exc)) from exc
    sys.exit(code)


@attrs.frozen
class _SoftphoneOptions:
    """The options of `crmphone softphone`, as click parsed them."""

    sandbox_url: str | None
    agent: str | None
    api_base: str | None
    region: str | None
    auto_answer: bool
    keep_mic_live: bool
    inactivity_timeout: float
    tone: float
    audio_file: str | None
    ice_hosts: tuple[str, ...]
    call_every: float
    duration: float | None


async def _softphone(options: _SoftphoneOptions) -> int:
    from crmphone.sandbox import SandboxConfig, SandboxServer

    if options.api_base or options.region:
        return await _run_softphone(options, api_base=None, agent_id=None)
    if options.sandbox_url:
        return await _run_softphone(options, api_base=options.sandbox_url, agent_id=options.agent)
    config = SandboxConfig(
        client_id=DEMO_CLIENT_ID, client_secret=DEMO_CLIENT_SECRET, agents=1, heartbeat_interval=5
    )
    async with SandboxServer(config, host="127.0.0.1", port=0) as server:
        agent_id = options.agent or server.sandbox.agents[0].id
        click.echo(f"sandbox platform on {server.base_url}; agent {agent_id}", err=True)
        calling = (
            asyncio.create_task(_call_repeatedly(server, agent_id, options.call_every))
            if options.call_every > 0
            else None
        )
        try:
            return await _run_softphone(options, api_base=server.base_url, agent_id=agent_id)
        finally:
            if calling is not None:
                calling.cancel()
                await asyncio.gather(calling, return_exceptions=True)


async def _call_repeatedly(server: SandboxServer, agent_id: str, every: float) -> None:
    while True:
        await asyncio.sleep(every)
        with contextlib.suppress(CrmphoneError):
            await server.sandbox.calls.place_inbound(agent_id, auto=True)


async def _run_softphone(
    options: _SoftphoneOptions, *, api_base: str | None, agent_id: str | None
) -> int:
    from crmphone._webrtc import IceSettings
    from crmphone.audio import AudioFile, AudioSource, Tone
    from crmphone.phone import PhoneSettings, Softphone
    from crmphone.phone.terminal import TerminalSoftphone
    from crmphone.platform import PlatformClient, StaticToken, TokenProvider, resolve_region

    tokens: TokenProvider
    hosts: tuple[str, ...]
    if api_base is not None:  # a sandbox: sign in as one of its agents, media on loopback
        from crmphone.platform import sign_in_sandbox_agent

        chosen = agent_id or await _first_sandbox_agent(api_base)
        tokens = await sign_in_sandbox_agent(api_base, chosen, client_id=DEMO_CLIENT_ID)
        hosts = options.ice_hosts or ("127.0.0.1",)
    else:
        access_token = os.environ.get("CRMPHONE_AGENT_TOKEN")
        if not access_token:
            raise UsageError("Set CRMPHONE_AGENT_TOKEN to the agent's access token.")
        if options.region:
            api_base, _ = resolve_region(options.region)
        else:
            api_base = str(options.api_base)
        tokens = StaticToken(access_token)
        hosts = options.ice_hosts or ()
    source: AudioSource = (
        AudioFile(options.audio_file) if options.audio_file else Tone(options.tone)
    )
    settings = PhoneSettings(
        auto_answer=options.auto_answer,
        keep_microphone_live=options.keep_mic_live,
        inactivity_timeout=options.inactivity_timeout,
        ice=IceSettings(host_addresses=hosts or None),
    )
    async with PlatformClient(api_base=api_base, tokens=tokens) as client:
        async with Softphone(client, settings=settings, source=source) as phone:
            click.echo(f"logged in as {phone.agent_id}", err=True)
            await TerminalSoftphone(phone).run(duration=options.duration)
        click.echo("logged out", err=True)
    return 0


async def _first_sandbox_agent(base_url: str) -> str:
    import httpx

    async with httpx.AsyncClient() as http:
        response = await http.get(f"{base_url.rstrip('/')}/sandbox/state")
        response.raise_for_status()
        agents = response.json().get("agents") or []
    if not agents:
        raise UsageError(f"{base_url} reports no sandbox agents; pass --agent.")
    return str(agents[0]["id"])


@main.command()
@click.option("--calls", type=click.IntRange(min=1), help="Place this many calls (default 24).")
@click.option("--duration", type=click.FloatRange(min=1), help="Place calls for this many seconds.")
@click.option("--agents", default=4, show_default=True, type=click.IntRange(1, 20))
@click.option(
    "--talk-seconds",
    default=2.0,
    show_default=True,
    type=click.FloatRange(min=0.1),
    help="How long each caller talks before hanging up.",
)
@click.option(
    "--output",
    default="crmphone-demo",
    show_default=True,
    type=click.Path(file_okay=False, path_type=str),
    help="Where the report (JSON and HTML) is written.",
)
@click.option(
    "--bridge-port",
    default=0,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="The bridge's port for the dashboard (0: any free port).",
)
@click.option(
    "--crm",
    "crms",
    multiple=True,
    help="Only this CRM emulator (repeat; default: every one installed).",
)
@click.option("--live/--no-live", default=None, help="The live view (default: on a terminal).")
def demo(
    calls: int | None,
    duration: float | None,
    agents: int,
    talk_seconds: float,
    output: str,
    bridge_port: int,
    crms: tuple[str, ...],
    live: bool | None,
) -> None:
    """The whole system on this machine, with no accounts: a sandbox platform, the CRM
    emulators, the connector, agents' softphones (persistent connection, auto-answer) and the
    bridge's dashboard. Places calls, shows them live, stops by itself and writes a report.

    Exit codes: 0 every call answered and logged once in every CRM, 1 otherwise, 2 bad usage.
    """
    from crmphone.demo import DemoSettings, run_demo

    settings = DemoSettings(
        agents=agents,
        calls=calls,
        duration=duration,
        talk_seconds=talk_seconds,
        output=Path(output),
        bridge_port=bridge_port,
        crms=crms or None,
        live=live,
    )
    try:
        result = asyncio.run(run_demo(settings))
    except KeyboardInterrupt:
        sys.exit(130)
    except UsageError as exc:
        click.echo(f"crmphone demo: {exc}", err=True)
        sys.exit(2)
    except CrmphoneError as exc:
        click.echo(f"crmphone demo: {exc}", err=True)
        sys.exit(1)
    sys.exit(0 if result.ok else 1)


# ---------------------------------------------------------------------------------------------
# The connector and its outbox


@main.command()
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=str),
    help="The connector's TOML file.",
)
@click.option(
    "--health-port",
    type=click.IntRange(0, 65535),
    help="Serve /livez, /readyz and /metrics on 127.0.0.1 at this port (0: any free port).",
)
def run(config_path: str, health_port: int | None) -> None:
    """Run a connector: platform events → call logs and screen pops in the configured CRMs.

    Stops on SIGTERM or Ctrl-C after the CRM writes in flight finish (what is left stays in the
    outbox for the next start). Exit codes: 0 stopped, 1 runtime failure, 2 bad configuration.
    """
    from crmphone.config import load_config, log_config_file_warning
    from crmphone.service import build_adapters, configure_logging

    try:
        # The file's own warning waits for the configured logging (its format, its redaction).
        config = load_config(config_path, warn=False)
        # Plugins and their options are configuration too: a problem is exit code 2, at once.
        adapters, commands = build_adapters(config)
    except UsageError as exc:
        click.echo(f"crmphone run: {exc}", err=True)
        sys.exit(2)
    configure_logging(config)
    log_config_file_warning(config)
    try:
        asyncio.run(_run_connector(config, health_port, adapters, commands))
    except UsageError as exc:
        click.echo(f"crmphone run: {exc}", err=True)
        sys.exit(2)
    except CrmphoneError as exc:
        click.echo(f"crmphone run: {exc}", err=True)
        sys.exit(1)
    sys.exit(0)


async def _run_connector(
    config: Any, health_port: int | None, adapters: Any, commands: Any
) -> None:
    import signal

    from crmphone.service import run_connector

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    def announce(services: Any) -> None:
        health, sandbox, bridge = services.health, services.sandbox, services.bridge
        where = f"; health on {health.url}" if health is not None else ""
        platform = f" (embedded sandbox {sandbox.base_url})" if sandbox is not None else ""
        click.echo(
            f"crmphone run: following {len(services.connector.agent_ids)} agent(s)"
            f"{platform}{where}",
            err=True,
        )
        if services.phone is not None:
            click.echo(f"crmphone run: {services.phone.agent_id}'s phone is logged in", err=True)
        if bridge is not None:
            pages = ", ".join(f"{bridge.url}/{name}/" for name in services.config.bridge.pages)
            click.echo(
                f"crmphone run: bridge pages at {pages} (token in "
                f"{services.config.bridge.token_file})",
                err=True,
            )

    await run_connector(
        config,
        stop=stop,
        health_port=health_port,
        adapters=adapters,
        commands=commands,
        on_started=announce,
    )
    click.echo("crmphone run: stopped", err=True)


@main.command()
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=str),
    help="The connector's TOML file.",
)
@click.option("--strict", is_flag=True, help="Exit with 1 when there is any warning.")
def check(config_path: str, strict: bool) -> None:
    """Check a connector's configuration without connecting anywhere.

    Reads the file and the secrets its variables name, loads the adapter plugins with their
    options, and prints what the connector would run with and every warning it would log at start:
    TLS verification turned off, a bridge other machines can reach, a configuration file other
    users can read or change. Exit codes: 0 usable (warnings included), 1 warnings with --strict,
    2 bad configuration.
    """
    from crmphone.config import load_config, security_warnings
    from crmphone.platform._tls import ssl_context
    from crmphone.service import build_adapters

    try:
        # Its warning is printed below with the others, not logged as well.
        config = load_config(config_path, warn=False)
        ssl_context(config.platform.verify)  # a CA bundle that is no PEM fails here, not at start
        build_adapters(config)
    except UsageError as exc:
        click.echo(f"crmphone check: {exc}", err=True)
        sys.exit(2)
    platform = config.platform
    where = (
        "embedded sandbox"
        if platform.embedded
        else f"{platform.kind.value} at {platform.api_base or platform.url}"
    )
    click.echo(f"platform: {where} (TLS: {_tls_state(platform.verify)})")
    for adapter in config.adapters:
        tls = _tls_state(adapter.verify)
        click.echo(f"adapter {adapter.instance} (plugin {adapter.name}; TLS: {tls})")
    warnings = security_warnings(config)
    for message in warnings:
        click.echo(f"warning: {message}")
    click.echo(
        f"crmphone check: {config_path} is usable"
        + (f", with {len(warnings)} warning(s)" if warnings else "")
    )
    sys.exit(1 if strict and warnings else 0)


def _tls_state(verify: bool | str) -> str:
    if verify is True:
        return "verified"
    if verify is False:
        return "NOT VERIFIED"
    return f"verified against {verify} only"


@main.group()
def outbox() -> None:
    """Look at and replay the connector's outbox: queued CRM writes and dead letters."""


def _outbox_store(config_path: str | None, path: str | None) -> Any:
    from crmphone.adapters import OutboxStore
    from crmphone.config import load_config

    if (config_path is None) == (path is None):
        raise click.UsageError("give either --config or --path")
    try:
        target = load_config(config_path).outbox.path if config_path else path
    except UsageError as exc:
        click.echo(f"crmphone outbox: {exc}", err=True)
        sys.exit(2)
    assert target is not None
    if not os.path.exists(target):
        click.echo(f"crmphone outbox: no outbox at {target}", err=True)
        sys.exit(2)
    return OutboxStore(target)


_OUTBOX_OPTIONS = [
    click.option("--config", "config_path", help="The connector's TOML file (its [outbox] path)."),
    click.option("--path", help="The outbox file itself."),
    click.option("--adapter", help="Only this adapter instance."),
]


def _outbox_options(function: Any) -> Any:
    for option in reversed(_OUTBOX_OPTIONS):
        function = option(function)
    return function


@outbox.command("list")
@_outbox_options
@click.option("--dead", "state", flag_value="dead", help="Only dead letters.")
@click.option("--pending", "state", flag_value="pending", help="Only queued work.")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1))
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines instead of a table.")
def outbox_list(
    config_path: str | None,
    path: str | None,
    adapter: str | None,
    state: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """Show queued CRM writes and dead letters, oldest first, with their last error."""
    from datetime import UTC, datetime

    store = _outbox_store(config_path, path)
    try:
        items = store.items(state=state, adapter=adapter, limit=limit)
        counts = store.counts()
    finally:
        store.close()
    if as_json:
        for item in items:
            click.echo(json.dumps(item.to_json()))
        return
    summary = ", ".join(f"{a}: {n} {s}" for (a, s), n in sorted(counts.items())) or "empty"
    click.echo(f"outbox: {summary}")
    for item in items:
        when = datetime.fromtimestamp(item.next_at, UTC).strftime("%Y-%m-%d %H:%M:%S")
        click.echo(
            f"#{item.id} {item.state:<7} {item.adapter} {item.kind.value} {item.log_key} "
            f"attempts={item.attempts} next={when}Z {item.last_error or ''}".rstrip()
        )


@outbox.command("retry")
@_outbox_options
@click.argument("ids", nargs=-1, type=int)
def outbox_retry(
    config_path: str | None, path: str | None, adapter: str | None, ids: tuple[int, ...]
) -> None:
    """Make dead letters (all, or IDS) pending again; a running connector delivers them."""
    store = _outbox_store(config_path, path)
    try:
        count = store.retry(ids=ids, adapter=adapter)
    finally:
        store.close()
    click.echo(f"{count} dead letter(s) queued again")


@outbox.command("purge")
@_outbox_options
@click.argument("ids", nargs=-1, type=int)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def outbox_purge(
    config_path: str | None,
    path: str | None,
    adapter: str | None,
    ids: tuple[int, ...],
    yes: bool,
) -> None:
    """Delete dead letters (all, or IDS). Queued work is never purged from here."""
    if not yes and not ids:
        click.confirm("Delete every dead letter?", abort=True)
    store = _outbox_store(config_path, path)
    try:
        count = store.purge(ids=ids, adapter=adapter)
    finally:
        store.close()
    click.echo(f"{count} dead letter(s) deleted")
