"""The connector's configuration: ``connector.toml`` parsed into frozen, validated values.

:func:`load_config` reads a file; :func:`parse_config` parses text (tests, or a config that does not
live in a file). Both return a :class:`ConnectorConfig`, or raise one
:class:`~crmphone.errors.ConfigError` whose ``key`` is the dotted path of the offending setting
(``outbox.max_attempts``, ``adapters[0].name``) and whose message says what is wrong and what to
write instead. Unknown keys are errors, with a "did you mean" suggestion when one is close: a typo
never passes silently.

.. code-block:: toml

    [platform]
    kind = "genesys"                      # or "sandbox" (the default)
    region = "mypurecloud.de"             # or api_base + login_base; sandbox: url (absent = embedded)
    client_id_env = "CRMPHONE_CLIENT_ID"  # NAMES of environment variables, never the secrets
    client_secret_env = "CRMPHONE_CLIENT_SECRET"
    verify = true                         # TLS: or the path of a CA bundle; false warns loudly

    [agents]
    ids = ["5a1c…", "9b2e…"]              # required for genesys; absent = every sandbox agent
    presence = true                       # follow presence and routing status (default true)
    [agents.crm_users]                    # platform user id -> CRM user id, for every adapter
    "5a1c…" = "0055g00000AbCdE"
    [agents.crm_users.zendesk]            # ... or for one adapter instance only (wins)
    "5a1c…" = "3625178"

    [plugins]
    allow = ["salesforce", "zendesk"]     # optional: only these entry points may load

    [[adapters]]
    name = "salesforce"                   # entry point name in group "crmphone.adapters"
    instance = "salesforce"               # unique label (default: name)
    threads = 4
    timeout = 10.0
    verify = true                         # or the path of a CA bundle
    domain = "login"                      # everything else is the adapter's own options

    [outbox]
    path = "crmphone-outbox.sqlite3"      # relative to this file's directory
    synchronous = "normal"                # or "full": also survive a power cut
    max_attempts = 50
    initial_delay = 1.0
    max_delay = 300.0
    max_age = 86400.0
    pop_ttl = 30.0

    [log]
    level = "info"
    format = "text"                       # or "json"

    [bridge]                              # the local server the CRM pages talk to (absent: off)
    host = "127.0.0.1"
    port = 8765                           # fixed: the Call Center file and the app name it
    token_file = "crmphone-bridge.token"  # made on first start, mode 0600
    tls_cert_file = "localhost.pem"       # HTTPS (Salesforce loads Open CTI pages only over it)
    tls_key_file = "localhost-key.pem"
    pages = ["salesforce", "zendesk", "dashboard"]
    allowed_origins = ["https://*.lightning.force.com", "https://*.my.salesforce.com"]
    script_sources = ["https://*.force.com", "https://static.zdassets.com"]
    [bridge.page_adapters]                # a page's kind -> the adapter instance it belongs to
    salesforce = "salesforce"

    [phone]                               # the agent's softphone in this process (absent: none)
    agent = "5a1c…"                       # the agent's platform user id
    token_env = "CRMPHONE_AGENT_TOKEN"    # genesys: NAME of the variable with the agent's token
    auto_answer = false
    inactivity_timeout = 600.0
    keep_microphone_live = false

Secrets (the OAuth client secret) are read from the environment when the file is loaded; they are
kept out of every repr and every error message. ``attrs.asdict`` of a config *does* contain them:
never log that.

What weakens security is said, never silently accepted: :func:`security_warnings` lists every TLS
opt-out (:func:`tls_warnings`), a bridge reachable from other machines
(:func:`bridge_exposure_warning`) and a configuration file other users can read or change
(:func:`config_file_warning`). :func:`load_config` logs the file's warning; the connector logs the
others at every start; ``crmphone check`` prints them all.
"""

from __future__ import annotations

import difflib
import enum
import ipaddress
import logging
import math
import os
import re
import stat
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, TypeVar
from urllib.parse import urlsplit

import attrs

from crmphone.errors import ConfigError, PluginError
from crmphone.platform.regions import resolve_region

__all__ = [
    "DEFAULT_BRIDGE_PORT",
    "DEFAULT_OUTBOX_FILE",
    "AdapterConfig",
    "AgentsConfig",
    "BridgeConfig",
    "ConnectorConfig",
    "LogConfig",
    "LogFormat",
    "OutboxConfig",
    "PhoneConfig",
    "PlatformConfig",
    "PlatformKind",
    "Synchronous",
    "bridge_exposure_warning",
    "config_file_warning",
    "load_config",
    "log_config_file_warning",
    "parse_config",
    "security_warnings",
    "tls_warnings",
]

logger = logging.getLogger(__name__)

DEFAULT_OUTBOX_FILE: Final = "crmphone-outbox.sqlite3"
DEFAULT_BRIDGE_PORT: Final = 8765
DEFAULT_BRIDGE_TOKEN_FILE: Final = "crmphone-bridge.token"  # noqa: S105 - a file's name
DEFAULT_AGENT_TOKEN_ENV: Final = "CRMPHONE_AGENT_TOKEN"  # noqa: S105 - a variable's name
# Where the pages' CRM libraries come from: Open CTI (opencti_min.js, from the org's own domain)
# and the Zendesk Apps framework SDK.
DEFAULT_SCRIPT_SOURCES: Final = (
    "https://*.force.com",
    "https://*.salesforce.com",
    "https://static.zdassets.com",
)
BUILTIN_PAGE_SETS: Final = ("salesforce", "zendesk", "dashboard")
DEFAULT_CLIENT_ID_ENV: Final = "CRMPHONE_CLIENT_ID"
DEFAULT_CLIENT_SECRET_ENV: Final = "CRMPHONE_CLIENT_SECRET"  # noqa: S105 - a variable's name
_LOG_LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# Entry point names and instance labels end up in metric labels, logger and thread names and
# table keys: keep them to one plain token.
_LABEL_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_ENV_NAME_RE: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Only conventional names are echoed in messages: a "name" that is not one may be a secret pasted
# into the wrong key.
_ECHOABLE_ENV_NAME_RE: Final = re.compile(r"^[A-Z_][A-Z0-9_]{0,63}$")
_E = TypeVar("_E", bound=enum.StrEnum)
_TOML_POSITION_RE: Final = re.compile(
    r"^(?P<what>.*?)\s*\((?:at line (?P<line>\d+), column (?P<col>\d+)|at end of document)\)$"
)


class PlatformKind(enum.StrEnum):
    """Which platform the connector talks to."""

    SANDBOX = "sandbox"
    """The local sandbox: embedded (no ``url``) or one already running at ``url``."""
    GENESYS = "genesys"
    """Genesys Cloud: ``region``, or ``api_base`` and ``login_base``."""


class Synchronous(enum.StrEnum):
    """SQLite's ``PRAGMA synchronous`` for the outbox (always in WAL mode)."""

    NORMAL = "normal"
    """Survives a killed process; a power loss may undo the last commits."""
    FULL = "full"
    """Survives a power loss too, at the cost of an fsync per commit (commits are batched)."""


class LogFormat(enum.StrEnum):
    """How log records are written."""

    TEXT = "text"
    """One human-readable line per record."""
    JSON = "json"
    """One JSON object per line, for log collectors."""


def _frozen_map(value: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(value))


def _frozen_nested_map(value: Mapping[str, Mapping[str, str]]) -> Mapping[str, Mapping[str, str]]:
    return MappingProxyType({key: MappingProxyType(dict(inner)) for key, inner in value.items()})


@attrs.frozen(kw_only=True)
class PlatformConfig:
    """``[platform]``: where the platform is and how the connector signs in.

    ``api_base`` and ``login_base`` are set for every platform but the embedded sandbox (for a
    sandbox at ``url`` both are that URL). ``client_id`` and ``client_secret`` were read from the
    environment variables named by ``client_id_env`` and ``client_secret_env``; for a sandbox they
    may be None, meaning the sandbox's demo credential (as ``crmphone sandbox`` does).
    """

    kind: PlatformKind = PlatformKind.SANDBOX
    """Which platform: the local sandbox, or Genesys Cloud."""
    url: str | None = None
    """The URL of a running ``crmphone sandbox`` (``http://127.0.0.1:8765``); absent, the
    connector starts a sandbox of its own.
    """
    api_base: str | None = None
    """The REST base URL (``https://api.mypurecloud.de``), given together with ``login_base``
    instead of ``region``: a proxy, say. Plain ``http`` only on loopback.
    """
    login_base: str | None = None
    """The OAuth base URL (``https://login.mypurecloud.de``) that goes with ``api_base``."""
    client_id_env: str = DEFAULT_CLIENT_ID_ENV
    """The *name* of the environment variable that holds the OAuth client's id (Client
    Credentials grant); required with Genesys Cloud, optional with a sandbox (its demo client).
    """
    client_secret_env: str = DEFAULT_CLIENT_SECRET_ENV
    """The *name* of the environment variable that holds the OAuth client's secret. The secret
    itself never goes in this file.
    """
    client_id: str | None = None
    """The client id read from ``client_id_env`` (None: the sandbox's demo client)."""
    client_secret: str | None = attrs.field(default=None, repr=False)
    """The client secret read from ``client_secret_env``; never shown."""
    verify: bool | str = True
    """TLS verification of every connection to the platform (REST, sign-in, notification
    channels, the phone's signalling): ``true``, or the path of a CA bundle to trust instead of
    the default store (a TLS-inspecting proxy's or a private CA). ``false`` accepts any
    certificate, so anyone on the network path can read the client secret and tokens: the
    connector then logs a warning at every start, and ``crmphone check`` shows it.
    """

    @property
    def embedded(self) -> bool:
        """True when the connector starts its own sandbox (kind sandbox, no ``url``)."""
        return self.kind is PlatformKind.SANDBOX and self.url is None


@attrs.frozen(kw_only=True)
class AgentsConfig:
    """``[agents]``: whose calls to follow, and who each agent is in each CRM.

    ``ids`` empty means every agent of the sandbox (only allowed for kind sandbox).
    ``presence`` follows their presence and routing status too (the OAuth client then needs
    ``directory:user:view`` and ``routing:agent:view``).
    ``crm_users`` is the map for every adapter; ``crm_users_by_adapter`` holds the per-instance
    tables as written. Adapters get the merged map as :attr:`AdapterConfig.crm_users`.
    """

    ids: tuple[str, ...] = ()
    """The platform user ids of the agents whose calls to follow. Required with Genesys Cloud;
    with a sandbox, absent means every agent it has.
    """
    presence: bool = True
    """Also follow the agents' presence and routing status (adapters' ``on_presence_event``, the
    pages); ``false`` leaves those topics, and their permissions, out.
    """
    crm_users: Mapping[str, str] = attrs.field(factory=dict, converter=_frozen_map)
    """Who each agent is in the CRMs: ``"<platform user id>" = "<CRM user id>"``, for every
    adapter, which sees it as ``CallLog.crm_user_id``. A sub-table
    ``[agents.crm_users.<instance>]`` maps agents for one adapter instance, and its entries win.
    """
    crm_users_by_adapter: Mapping[str, Mapping[str, str]] = attrs.field(
        factory=dict, converter=_frozen_nested_map
    )
    """The ``[agents.crm_users.<instance>]`` sub-tables, as written."""

    @property
    def all_sandbox_agents(self) -> bool:
        """True when no ids were configured: follow every agent the sandbox has."""
        return not self.ids

    def crm_users_for(self, instance: str) -> Mapping[str, str]:
        """The agent map of one adapter instance: the shared map, overridden by its own table."""
        return MappingProxyType({**self.crm_users, **self.crm_users_by_adapter.get(instance, {})})


@attrs.frozen(kw_only=True)
class AdapterConfig:
    """``[[adapters]]``: one CRM adapter per table; ``name`` is the plugin, every other key but
    ``instance``, ``threads``, ``timeout`` and ``verify`` is the adapter's own.

    ``name`` is the entry point to load; ``instance`` the unique label that names this adapter in
    logs, metrics, the outbox and ``crm_users`` tables. ``threads``, ``timeout`` and ``verify`` go
    to :class:`~crmphone.adapters.base.AdapterContext` (``verify`` is True, False, or the absolute
    path of a CA bundle). ``options`` is everything else in the table, for the adapter's
    ``from_options``. ``crm_users`` is this instance's agent map (platform id → CRM user id).
    """

    name: str
    """The plugin: an entry point name in group ``crmphone.adapters`` (``crmphone plugins``
    lists the installed ones).
    """
    instance: str
    """A unique label for this adapter: it names it in logs, metrics, the outbox and
    ``[agents.crm_users.<instance>]``. Two adapters may use one plugin with different labels.
    """
    threads: int = 4  # the defaults of AdapterContext (a test pins them)
    """Worker threads for the adapter's synchronous client library
    (``AdapterContext.run_sync``).
    """
    timeout: float = 10.0
    """Seconds a single CRM request may take."""
    verify: bool | str = True
    """TLS verification for the adapter's CRM connections: ``true``, or the path of a CA bundle
    (a proxy's or a private CA). ``false`` turns it off: the connector then logs a warning naming
    the adapter at every start, and ``crmphone check`` shows it. It reaches the plugin as
    ``AdapterContext.verify``; a plugin may have a TLS option of its own too (see its README).
    """
    # Not in the repr: an adapter's options may hold a literal credential.
    options: Mapping[str, Any] = attrs.field(factory=dict, converter=_frozen_map, repr=False)
    """Everything else in the table, sub-tables too: the adapter's own options, for its
    ``from_options`` (its README lists them).
    """
    crm_users: Mapping[str, str] = attrs.field(factory=dict, converter=_frozen_map)
    """This instance's agent map (platform user id → CRM user id), merged from ``[agents]``."""


@attrs.frozen(kw_only=True)
class OutboxConfig:
    """``[outbox]``: where the durable outbox lives and how it retries (times in seconds).

    A write is retried with exponential backoff from ``initial_delay`` up to ``max_delay`` (and at
    least as long as the CRM's Retry-After) until ``max_attempts`` attempts or ``max_age`` seconds
    since it was queued, then it goes to the dead letters. A screen pop older than ``pop_ttl`` is
    dropped instead: popping a record after the call is pointless.
    """

    path: Path
    """The outbox's SQLite file (WAL mode): queued CRM work, dead letters, each call's log, and
    when the platform was last heard from.
    """
    synchronous: Synchronous = Synchronous.NORMAL
    """``"normal"`` survives a killed process; ``"full"`` also a power cut, at the cost of an
    fsync per (shared) commit.
    """
    max_attempts: int = 50
    """Failed attempts after which a write becomes a dead letter."""
    initial_delay: float = 1.0
    """The first backoff ceiling, in seconds; it doubles after each failure (each wait is half
    to all of it).
    """
    max_delay: float = 300.0
    """The largest backoff ceiling, in seconds."""
    max_age: float = 86400.0
    """Seconds after its event past which a write that still fails becomes a dead letter."""
    pop_ttl: float = 30.0
    """Seconds after the call rang past which a screen pop is skipped (the lookup still runs)."""


@attrs.frozen(kw_only=True)
class LogConfig:
    """``[log]``: how much the connector logs on stderr, and in which form.

    ``level`` is a :mod:`logging` level name (``"INFO"``), ``format`` text or JSON.
    """

    level: str = "INFO"
    """``debug``, ``info``, ``warning``, ``error`` or ``critical`` (any case)."""
    format: LogFormat = LogFormat.TEXT
    """``"text"``: one line per record; ``"json"``: one object per line, with ``time``,
    ``level``, ``logger``, ``message`` (and ``exception``).
    """


@attrs.frozen(kw_only=True)
class BridgeConfig:
    """``[bridge]``: the local server the CRM pages (Open CTI, the Zendesk app, the dashboard)
    talk to. Off unless the table is present (``enabled = false`` turns a present one off)."""

    enabled: bool = False
    """The table's presence turns the bridge on; ``false`` turns a present one off."""
    host: str = "127.0.0.1"
    """The address it listens on. Keep loopback: the pages run in the agent's own browser, on
    this machine.
    """
    port: int = DEFAULT_BRIDGE_PORT
    """Its TCP port, fixed because the CRM's settings name it (the Call Center file, the Zendesk
    app's ``bridge_url``); 0 picks a free one.
    """
    token_file: Path
    """The file that keeps the install's bridge token, made on first start with mode 0600; a
    file others can read is refused. Pages get the token once, in the address fragment
    (``#token=…``).
    """
    tls_cert_file: Path | None = None
    """A PEM certificate chain: with ``tls_key_file``, the bridge serves HTTPS and WSS
    (Salesforce loads Open CTI pages only over HTTPS).
    """
    tls_key_file: Path | None = None
    """The PEM private key of ``tls_cert_file``; give both or neither."""
    pages: tuple[str, ...] = BUILTIN_PAGE_SETS
    """The page sets to serve, under ``/<name>/``: ``salesforce`` (the Open CTI softphone),
    ``zendesk`` (the app's page), ``dashboard``.
    """
    allowed_origins: tuple[str, ...] | None = None
    """Origin patterns whose pages may connect and frame the pages
    (``https://*.my.salesforce.com``: ``*.`` is one or more whole DNS labels). Absent: the
    Salesforce Lightning and Zendesk origins. The bridge's own origin always may.
    """
    script_sources: tuple[str, ...] = DEFAULT_SCRIPT_SOURCES
    """Extra script hosts in the pages' Content-Security-Policy, for the CRM's own library (Open
    CTI's ``opencti_min.js``, Zendesk's ZAF SDK): hosts or ``'sha256-…'`` hashes, never
    ``'unsafe-inline'`` or ``*``.
    """
    page_adapters: Mapping[str, str] = attrs.field(factory=dict, converter=_frozen_map)
    """A page's kind (its hello's ``client``: ``salesforce``, ``zendesk``) → the
    ``[[adapters]]`` instance whose pops and writes it shows and whose log its click-to-dial
    links to. Default: the instance of the same name.
    """


@attrs.frozen(kw_only=True)
class PhoneConfig:
    """``[phone]``: the agent's softphone, run in this process, that the pages' commands drive
    and click-to-dial dials with. ``token`` is the agent's user token, read from the variable
    ``token_env`` (Genesys Cloud; the sandbox signs the agent in itself)."""

    agent: str
    """The platform user id of the agent whose phone this is."""
    token_env: str = DEFAULT_AGENT_TOKEN_ENV
    """Genesys Cloud: the *name* of the environment variable that holds the agent's access token
    (the phone acts as the agent). The sandbox signs the agent in itself.
    """
    token: str | None = attrs.field(default=None, repr=False)
    """The agent's token read from ``token_env`` (None with a sandbox); never shown."""
    auto_answer: bool = False
    """Answer every offered call at once."""
    inactivity_timeout: float = 600.0
    """Seconds without a call after which the persistent connection closes; keep it equal to the
    platform's persistent connection timeout.
    """
    keep_microphone_live: bool = False
    """Send microphone audio between calls too; ``false`` sends nothing between calls."""


@attrs.frozen(kw_only=True)
class ConnectorConfig:
    """The whole ``connector.toml``. Build it with :func:`load_config` or :func:`parse_config`.

    ``plugins_allow`` is the ``[plugins] allow`` list, or None when absent (then exactly the
    plugins the adapters name may load). ``source`` is the file it came from, if any.
    """

    platform: PlatformConfig = attrs.field(factory=PlatformConfig)
    """``[platform]``."""
    agents: AgentsConfig = attrs.field(factory=AgentsConfig)
    """``[agents]``."""
    adapters: tuple[AdapterConfig, ...] = ()
    """Every ``[[adapters]]`` table, in order."""
    plugins_allow: tuple[str, ...] | None = None
    """``[plugins] allow``: the only adapter plugins (entry point names) that may load. Absent:
    exactly the plugins the adapters name.
    """
    outbox: OutboxConfig
    """``[outbox]``."""
    log: LogConfig = attrs.field(factory=LogConfig)
    """``[log]``."""
    bridge: BridgeConfig | None = None
    """``[bridge]``, or None when absent (no bridge)."""
    phone: PhoneConfig | None = None
    """``[phone]``, or None when absent (no phone in this process)."""
    source: Path | None = None
    """The file it was read from, if any."""

    def adapter(self, instance: str) -> AdapterConfig:
        """The adapter with instance label ``instance``; KeyError when there is none."""
        for adapter in self.adapters:
            if adapter.instance == instance:
                return adapter
        raise KeyError(instance)


# ---------------------------------------------------------------------------------------------
# Entry points


def load_config(
    path: str | os.PathLike[str],
    *,
    environ: Mapping[str, str] = os.environ,
    warn: bool = True,
) -> ConnectorConfig:
    """Read and validate the configuration file at ``path``; call once at start-up.

    Relative paths in the file (the outbox, CA bundles) are relative to the file's directory.
    Secrets are read from ``environ`` now. Raises :class:`~crmphone.errors.ConfigError` for an
    unreadable file, a TOML syntax error, or any bad setting. A file other users can read or
    change is loaded, with a WARNING logged (:func:`config_file_warning`); ``warn=False`` leaves
    that to the caller (``crmphone check`` prints :func:`security_warnings` instead).
    """
    file = Path(path)
    try:
        # One open for the mode and the bytes: the file checked is the file read.
        with file.open("rb") as handle:
            mode_warning = _mode_warning(file, os.fstat(handle.fileno()))
            data = handle.read()
    except FileNotFoundError:
        raise ConfigError(
            f"no configuration file at {str(file)!r}; create it (see the quick start) or pass "
            "the right path with --config"
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"cannot read the configuration file {str(file)!r}: {exc.strerror}"
        ) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{str(file)!r} is not UTF-8 text (bad byte at offset {exc.start}); save it as UTF-8"
        ) from None
    config = parse_config(text, base_dir=file.parent, environ=environ, source_name=str(file))
    if warn and mode_warning is not None:
        _log_file_warning(mode_warning)
    return attrs.evolve(config, source=file.absolute())


def log_config_file_warning(config: ConnectorConfig) -> None:
    """Log the WARNING of :func:`config_file_warning` for the file ``config`` came from, if any.

    For a program that loads with ``load_config(..., warn=False)`` because its logging is set up
    from the configuration (``crmphone run``): the warning then comes out in the configured format
    and destination, not as a bare line before logging exists.
    """
    if config.source is not None and (warning := config_file_warning(config.source)):
        _log_file_warning(warning)


def _log_file_warning(warning: str) -> None:
    logger.warning("config: %s", warning)


def config_file_warning(path: str | os.PathLike[str]) -> str | None:
    """What is wrong with who may read or change the configuration file at ``path``, or None.

    The file names where the platform is, which CA to trust, which plugins may load, where the
    outbox and the bridge token live, and any adapter option (a third-party adapter may take a
    literal credential). So it is for its owner only: a file readable or writable by its group or
    by everyone is reported with its mode and the ``chmod 600`` that fixes it. Group access counts
    too: on shared hosts a group (``users``, ``staff``) often spans every account, and the bridge
    refuses its token file on the same terms. A file owned by another account than this one and
    root is reported as well: that account can change what this connector trusts.
    """
    file = Path(path)
    try:
        info = file.stat()
    except OSError:
        return None  # reading it says what is wrong, in load_config's own words
    return _mode_warning(file, info)


def _mode_warning(file: Path, info: os.stat_result) -> str | None:
    if os.name != "posix":  # pragma: no cover - modes mean nothing on Windows
        return None
    mode = stat.S_IMODE(info.st_mode)
    shown = str(file.absolute())
    problems = []
    # Group read or write counts as much as everyone's: on shared hosts a group (users, staff)
    # often spans every account, and the bridge refuses its token file on the same terms.
    # Execute bits alone give nothing away: only reading and writing count.
    if mode & 0o066:
        who = " and ".join(
            name for name, bits in (("its group", 0o060), ("all users", 0o006)) if mode & bits
        )
        can = " and ".join(
            verb for verb, bits in (("read", 0o044), ("changed", 0o022)) if mode & bits
        )
        problems.append(f"can be {can} by {who} (mode {mode:04o})")
    if info.st_uid not in (os.geteuid(), 0):
        problems.append(f"belongs to another account (uid {info.st_uid}), which can change it")
    if not problems:
        return None
    return (
        f"the configuration file {shown} {' and '.join(problems)}; it says what the connector "
        f"trusts and where its secrets live: run `chmod 600 {shown}` as its owner, the account "
        "that runs the connector"
    )


def tls_warnings(config: ConnectorConfig) -> tuple[str, ...]:
    """One message per TLS verification turned off: the platform's, then each adapter's.

    Each names the setting, what is exposed and the hosts concerned, and says what to do. The
    connector logs them as WARNINGs at every start; ``crmphone check`` prints them.
    """
    messages: list[str] = []
    platform = config.platform
    if platform.verify is False:
        if platform.embedded:
            where = "the embedded sandbox (plain HTTP on loopback: no effect now)"
        else:
            hosts = _hosts([platform.api_base, platform.login_base])
            where = ", ".join(hosts) or f"{platform.api_base} (plain HTTP: no effect now)"
        messages.append(
            "platform.verify = false: TLS certificates are NOT verified for the platform "
            f"({where}: REST and sign-in, notification channels, the phone's signalling); "
            "anyone on the network path can read the OAuth client secret and every token, and "
            f"forge calls and events. {_TLS_FIX}"
        )
    for index, adapter in enumerate(config.adapters):
        if adapter.verify is not False:
            continue
        hosts = _hosts(_option_strings(adapter.options))
        where = ", ".join(hosts) if hosts else "every host its plugin connects to"
        messages.append(
            f"adapters[{index}].verify = false: TLS certificates are NOT verified for adapter "
            f"{adapter.instance!r} ({where}); anyone on the network path can read its CRM "
            f"credentials and the call data it sends. {_TLS_FIX}"
        )
    return tuple(messages)


def bridge_exposure_warning(config: ConnectorConfig) -> str | None:
    """What is exposed when the ``[bridge]`` listens beyond this machine, or None.

    The pages run in the agent's browser on this machine, so the bridge binds loopback by
    default; any other address lets other machines reach its pages and its WebSocket, which then
    only the token guards (and, without TLS, the token crosses the network in clear text).
    """
    bridge = config.bridge
    if bridge is None or not bridge.enabled or _is_loopback(bridge.host):
        return None
    clear = (
        ""
        if bridge.tls_cert_file is not None
        else " over plain HTTP, so the token and every call cross the network unencrypted"
    )
    return (
        f"bridge.host = {bridge.host!r}: the bridge's pages and commands are reachable from "
        f'other machines{clear}; keep host = "127.0.0.1" unless the CRM pages run elsewhere '
        "(then serve HTTPS with tls_cert_file and tls_key_file, and firewall the port)"
    )


def security_warnings(config: ConnectorConfig, *, file: bool = True) -> tuple[str, ...]:
    """Everything in ``config`` that weakens security: the file's access
    (:func:`config_file_warning`, when it came from a file and ``file`` is true),
    :func:`tls_warnings` and :func:`bridge_exposure_warning`. The connector logs all but the
    file's at every start (:func:`load_config` logs that one)."""
    found = [config_file_warning(config.source)] if file and config.source is not None else []
    found += [*tls_warnings(config), bridge_exposure_warning(config)]
    return tuple(message for message in found if message)


def _is_loopback(host: str) -> bool:
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


_TLS_FIX: Final = (
    "Remove the setting to verify again, or trust a private or proxy CA with "
    'verify = "<path of its PEM CA bundle>"'
)


def _hosts(urls: Iterable[str | None]) -> list[str]:
    """The distinct host[:port]s of the https URLs among ``urls``, in order."""
    hosts: list[str] = []
    for url in urls:
        if not url or "://" not in url:
            continue
        try:
            parts = urlsplit(url.strip())
            port = parts.port
        except ValueError:  # an option that only looks like a URL ("https://[::1", ":port")
            continue
        if parts.scheme.lower() not in ("https", "wss") or not parts.hostname:
            continue
        # Only host and port: a URL may carry user:password, which no message may repeat.
        host = parts.hostname + (f":{port}" if port else "")
        if host not in hosts:
            hosts.append(host)
    return hosts


def _option_strings(options: Mapping[str, Any]) -> list[str]:
    """Every string among an adapter's options, sub-tables and arrays included."""
    found: list[str] = []
    stack: list[object] = [options]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            found.append(value)
        elif isinstance(value, Mapping):
            stack.extend(reversed(list(value.values())))
        elif isinstance(value, list | tuple):
            stack.extend(reversed(value))
    return found


def parse_config(
    text: str,
    *,
    base_dir: str | os.PathLike[str],
    environ: Mapping[str, str] = os.environ,
    source_name: str = "connector.toml",
) -> ConnectorConfig:
    """Parse configuration ``text`` as if it were a file in ``base_dir``.

    ``source_name`` only names the text in syntax error messages. See :func:`load_config`.
    """
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _syntax_error(exc, source_name) from None
    return _Parser(Path(base_dir).absolute(), environ).config(document)


def _syntax_error(exc: tomllib.TOMLDecodeError, source_name: str) -> ConfigError:
    # tomllib (3.11) reports the position only inside its message: "... (at line 3, column 7)".
    message = str(exc)
    match = _TOML_POSITION_RE.match(message)
    if match is None:
        return ConfigError(f"{source_name}: invalid TOML: {message}; fix the syntax")
    what = match["what"][:1].lower() + match["what"][1:]
    where = (
        f"line {match['line']}, column {match['col']}" if match["line"] else "the end of the file"
    )
    return ConfigError(
        f"{source_name}, {where}: invalid TOML: {what}; fix the syntax there (strings need "
        "quotes, tables [brackets], one key = value per line)"
    )


# ---------------------------------------------------------------------------------------------
# The parser


def _type_name(value: object) -> str:
    match value:
        case bool():
            return "a boolean"
        case int():
            return "an integer"
        case float():
            return "a float"
        case str():
            return "a string"
        case list():
            return "an array"
        case dict():
            return "a table"
        case _:
            return "a date/time"


def _got(value: object) -> str:
    # Strings are not echoed: a misplaced secret must not reach a log through an error message.
    if isinstance(value, bool | int | float):
        return f"got {_type_name(value)} ({str(value).lower()})"
    if isinstance(value, str) and _looks_numeric(value):
        return "got a number in quotes (remove the quotes)"
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return "got true or false in quotes (remove the quotes)"
    return f"got {_type_name(value)}"


def _looks_numeric(text: str) -> bool:
    try:
        float(text.replace("_", ""))
    except ValueError:
        return False
    return True


def _suggest(name: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


class _Parser:
    """One pass over the parsed TOML document; every check knows its dotted key."""

    def __init__(self, base_dir: Path, environ: Mapping[str, str]) -> None:
        self._base_dir = base_dir
        self._environ = environ

    def config(self, document: Mapping[str, Any]) -> ConnectorConfig:
        _check_keys(
            document,
            "",
            ("platform", "agents", "adapters", "plugins", "outbox", "log", "bridge", "phone"),
            what="top-level name",
        )
        platform = self._platform(_table(document, "platform", "platform"))
        allow = self._plugins(_table(document, "plugins", "plugins"))
        adapter_tables = self._adapter_tables(document.get("adapters"))
        instances = self._instances(adapter_tables)
        agents = self._agents(_table(document, "agents", "agents"), platform, instances)
        adapters = tuple(
            self._adapter(table, index, instances[index], agents, allow)
            for index, table in enumerate(adapter_tables)
        )
        return ConnectorConfig(
            platform=platform,
            agents=agents,
            adapters=adapters,
            plugins_allow=allow,
            outbox=self._outbox(_table(document, "outbox", "outbox")),
            log=self._log(_table(document, "log", "log")),
            bridge=self._bridge(document, instances),
            phone=self._phone(document, platform),
        )

    # ------------------------------------------------------------------ [platform]

    def _platform(self, table: Mapping[str, Any]) -> PlatformConfig:
        common = ("kind", "client_id_env", "client_secret_env", "verify")
        only = {
            PlatformKind.SANDBOX: ("url",),
            PlatformKind.GENESYS: ("api_base", "login_base", "region"),
        }
        kind = _choice(table, "platform.kind", PlatformKind, PlatformKind.SANDBOX)
        allowed = (*common, *only[kind])
        for key in table:
            if key not in allowed:
                other = next((k for k, keys in only.items() if key in keys), None)
                if other is not None:
                    raise ConfigError(
                        f"only applies to kind = {other.value!r}, and this platform is "
                        f"{kind.value!r}; remove it or set kind = {other.value!r}",
                        key=f"platform.{key}",
                    )
        _check_keys(table, "platform", allowed, hint=_SECRET_HINT)
        id_env = _env_name(table, "platform.client_id_env", DEFAULT_CLIENT_ID_ENV)
        secret_env = _env_name(table, "platform.client_secret_env", DEFAULT_CLIENT_SECRET_ENV)
        verify = self._verify(table.get("verify", True), "platform.verify")
        if kind is PlatformKind.SANDBOX:
            url = _optional_string(table, "platform.url")
            if url is not None:
                url = _base_url(url, "platform.url")
            # Like `crmphone sandbox`: each credential falls back to the sandbox's demo value
            # unless the file names its variable explicitly.
            return PlatformConfig(
                kind=kind,
                url=url,
                api_base=url,
                login_base=url,
                client_id_env=id_env,
                client_secret_env=secret_env,
                client_id=self._secret("platform.client_id_env", id_env, "client_id_env" in table),
                client_secret=self._secret(
                    "platform.client_secret_env", secret_env, "client_secret_env" in table
                ),
                verify=verify,
            )
        api_base, login_base = self._genesys_urls(table)
        client_id = self._secret("platform.client_id_env", id_env, required=True)
        client_secret = self._secret("platform.client_secret_env", secret_env, required=True)
        return PlatformConfig(
            kind=kind,
            api_base=api_base,
            login_base=login_base,
            client_id_env=id_env,
            client_secret_env=secret_env,
            client_id=client_id,
            client_secret=client_secret,
            verify=verify,
        )

    @staticmethod
    def _genesys_urls(table: Mapping[str, Any]) -> tuple[str, str]:
        region = _optional_string(table, "platform.region")
        api_base = _optional_string(table, "platform.api_base")
        login_base = _optional_string(table, "platform.login_base")
        if region is not None:
            if api_base is not None or login_base is not None:
                extra = "api_base" if api_base is not None else "login_base"
                raise ConfigError(
                    "give either region, or api_base and login_base, not both; remove region "
                    "or the base URLs",
                    key=f"platform.{extra}",
                )
            return resolve_region(region)
        if api_base is None and login_base is None:
            raise ConfigError(
                "Genesys Cloud needs its location: set region (such as 'mypurecloud.de'), or "
                "api_base and login_base (such as 'https://api.mypurecloud.de' and "
                "'https://login.mypurecloud.de')",
                key="platform.region",
            )
        if api_base is None or login_base is None:
            missing = "api_base" if api_base is None else "login_base"
            raise ConfigError(
                "is required with "
                f"{'login_base' if missing == 'api_base' else 'api_base'}; set it, or use region",
                key=f"platform.{missing}",
            )
        return _base_url(api_base, "platform.api_base"), _base_url(
            login_base, "platform.login_base"
        )

    def _secret(
        self, key: str, variable: str, required: bool, *, what: str | None = None
    ) -> str | None:
        value = self._environ.get(variable)
        if value:
            return value
        if not required:
            return None
        shown = (
            f"environment variable {variable}"
            if _ECHOABLE_ENV_NAME_RE.match(variable)
            else "the environment variable this key names"
        )
        state = "is empty" if value is not None else "is not set"
        default_what = f"the OAuth client's {'secret' if 'secret' in key else 'id'}"
        raise ConfigError(
            f"{shown} {state}; export it with {what or default_what}, or set "
            f"{key.split('.')[-1]} to the name "
            "of the variable that holds it",
            key=key,
        )

    # ------------------------------------------------------------------ [plugins]

    @staticmethod
    def _plugins(table: Mapping[str, Any]) -> tuple[str, ...] | None:
        _check_keys(table, "plugins", ("allow",))
        if "allow" not in table:
            return None
        return _string_list(table["allow"], "plugins.allow", label=True)

    # ------------------------------------------------------------------ [[adapters]]

    @staticmethod
    def _adapter_tables(value: object) -> list[Mapping[str, Any]]:
        if value is None:
            return []
        if isinstance(value, dict):
            raise ConfigError(
                "must be an array of tables: write [[adapters]] (double brackets) above each "
                "adapter's settings",
                key="adapters",
            )
        if not isinstance(value, list):
            raise ConfigError(
                f"must be an array of tables, {_got(value)}; write [[adapters]] above each "
                "adapter's settings",
                key="adapters",
            )
        for index, item in enumerate(value):
            if not isinstance(item, dict):
                raise ConfigError(
                    f"must be a table, {_got(item)}; write [[adapters]] above each adapter's "
                    "settings",
                    key=f"adapters[{index}]",
                )
        return value

    @staticmethod
    def _instances(tables: list[Mapping[str, Any]]) -> list[str]:
        instances: list[str] = []
        for index, table in enumerate(tables):
            if "name" not in table:
                raise ConfigError(
                    "is missing; set name to the adapter's entry point name, such as "
                    "'salesforce' (`crmphone plugins` lists what is installed)",
                    key=f"adapters[{index}].name",
                )
            name = _label(table["name"], f"adapters[{index}].name")
            instance = (
                _label(table["instance"], f"adapters[{index}].instance")
                if "instance" in table
                else name
            )
            if instance in instances:
                first = instances.index(instance)
                raise ConfigError(
                    f"{instance!r} is already the instance label of adapters[{first}]; give each "
                    'adapter its own label with instance = "..." (it names the adapter in '
                    "logs, metrics and the outbox)",
                    key=f"adapters[{index}].instance",
                )
            instances.append(instance)
        return instances

    def _adapter(
        self,
        table: Mapping[str, Any],
        index: int,
        instance: str,
        agents: AgentsConfig,
        allow: tuple[str, ...] | None,
    ) -> AdapterConfig:
        prefix = f"adapters[{index}]"
        name = str(table["name"])
        if allow is not None and name not in allow:
            raise PluginError(
                f"{name!r} is not in plugins.allow; add it there, or remove this adapter",
                plugin=name,
                key=f"{prefix}.name",
            )
        reserved = ("name", "instance", "threads", "timeout", "verify")
        return AdapterConfig(
            name=name,
            instance=instance,
            threads=_integer(table, f"{prefix}.threads", 4, minimum=1),
            timeout=_seconds(table, f"{prefix}.timeout", 10.0),
            verify=self._verify(table.get("verify", True), f"{prefix}.verify"),
            options={key: value for key, value in table.items() if key not in reserved},
            crm_users=agents.crm_users_for(instance),
        )

    def _verify(self, value: object, key: str) -> bool | str:
        """A ``verify`` key, the platform's or an adapter's: a flag, or an existing CA bundle."""
        if isinstance(value, bool):
            return value
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(
                f"must be true, false, or the path of a CA bundle, {_got(value)}", key=key
            )
        if value.strip().lower() in ("true", "false"):
            raise ConfigError(
                f"must be true or false without quotes (verify = {value.strip().lower()}), or "
                "the path of a CA bundle",
                key=key,
            )
        path = self._path(value, key)
        if not path.exists():
            raise ConfigError(
                f"the CA bundle {str(path)!r} does not exist; give the path of a PEM file "
                "(relative to the configuration file), or verify = true",
                key=key,
            )
        return str(path)

    # ------------------------------------------------------------------ [agents]

    @staticmethod
    def _agents(
        table: Mapping[str, Any], platform: PlatformConfig, instances: list[str]
    ) -> AgentsConfig:
        _check_keys(table, "agents", ("ids", "presence", "crm_users"))
        ids = _string_list(table["ids"], "agents.ids") if "ids" in table else ()
        presence = table.get("presence", True)
        if not isinstance(presence, bool):
            raise ConfigError(
                f"must be true or false, {_got(presence)}; write presence = false to stop "
                "following presence and routing status",
                key="agents.presence",
            )
        if not ids and platform.kind is PlatformKind.GENESYS:
            raise ConfigError(
                "Genesys Cloud needs the platform user ids of the agents to follow; set "
                'ids = ["<user id>", ...] (the ids are in the admin UI or GET /api/v2/users)',
                key="agents.ids",
            )
        raw = table.get("crm_users", {})
        if not isinstance(raw, dict):
            raise ConfigError(
                f"must be a table of platform user id = CRM user id, {_got(raw)}; write "
                "[agents.crm_users] and one line per agent",
                key="agents.crm_users",
            )
        shared: dict[str, str] = {}
        by_adapter: dict[str, dict[str, str]] = {}
        for key, value in raw.items():
            if isinstance(value, dict):
                if key not in instances:
                    known = ", ".join(repr(i) for i in instances) or "none configured"
                    raise ConfigError(
                        f"names no adapter instance (instances: {known}){_suggest(key, instances)} "
                        "A table here maps agents for one adapter; a per-agent entry is "
                        '"<platform user id>" = "<CRM user id>"',
                        key=f"agents.crm_users.{key}",
                    )
                by_adapter[key] = {
                    agent: _crm_user(crm, f"agents.crm_users.{key}.{agent}")
                    for agent, crm in value.items()
                }
            else:
                shared[key] = _crm_user(value, f"agents.crm_users.{key}")
        return AgentsConfig(
            ids=ids, presence=presence, crm_users=shared, crm_users_by_adapter=by_adapter
        )

    # ------------------------------------------------------------------ [outbox], [log]

    def _outbox(self, table: Mapping[str, Any]) -> OutboxConfig:
        _check_keys(
            table,
            "outbox",
            (
                "path",
                "synchronous",
                "max_attempts",
                "initial_delay",
                "max_delay",
                "max_age",
                "pop_ttl",
            ),
        )
        raw_path = table.get("path", DEFAULT_OUTBOX_FILE)
        if not isinstance(raw_path, str) or not raw_path.strip():
            raise ConfigError(
                f"must be the path of the outbox's SQLite file, {_got(raw_path)}; such as "
                f'path = "{DEFAULT_OUTBOX_FILE}"',
                key="outbox.path",
            )
        initial_delay = _seconds(table, "outbox.initial_delay", 1.0)
        max_delay = _seconds(table, "outbox.max_delay", 300.0)
        if max_delay < initial_delay:
            raise ConfigError(
                f"({max_delay:g} s) is shorter than initial_delay ({initial_delay:g} s); make it "
                "at least as long",
                key="outbox.max_delay",
            )
        return OutboxConfig(
            path=self._path(raw_path, "outbox.path"),
            synchronous=_choice(table, "outbox.synchronous", Synchronous, Synchronous.NORMAL),
            max_attempts=_integer(table, "outbox.max_attempts", 50, minimum=1),
            initial_delay=initial_delay,
            max_delay=max_delay,
            max_age=_seconds(table, "outbox.max_age", 86400.0),
            pop_ttl=_seconds(table, "outbox.pop_ttl", 30.0),
        )

    @staticmethod
    def _log(table: Mapping[str, Any]) -> LogConfig:
        _check_keys(table, "log", ("level", "format"))
        level = table.get("level", "INFO")
        if not isinstance(level, str) or level.strip().upper() not in _LOG_LEVELS:
            shown = repr(level) if isinstance(level, str) and len(level) <= 20 else _got(level)
            raise ConfigError(
                f"must be one of {', '.join(repr(v.lower()) for v in _LOG_LEVELS)}, not {shown}",
                key="log.level",
            )
        return LogConfig(
            level=level.strip().upper(),
            format=_choice(table, "log.format", LogFormat, LogFormat.TEXT),
        )

    # ------------------------------------------------------------------ [bridge], [phone]

    def _bridge(self, document: Mapping[str, Any], instances: list[str]) -> BridgeConfig | None:
        if "bridge" not in document:
            return None
        table = _table(document, "bridge", "bridge")
        _check_keys(
            table,
            "bridge",
            (
                "enabled",
                "host",
                "port",
                "token_file",
                "tls_cert_file",
                "tls_key_file",
                "pages",
                "allowed_origins",
                "script_sources",
                "page_adapters",
            ),
            hint={"token": "the token is never written here: the bridge keeps it in token_file"},
        )
        host = _optional_string(table, "bridge.host") or "127.0.0.1"
        port = table.get("port", DEFAULT_BRIDGE_PORT)
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ConfigError(
                f"must be a TCP port from 1 to 65535 (0: any free one), {_got(port)}; such as "
                f"port = {DEFAULT_BRIDGE_PORT} (CRM pages are configured with a fixed address)",
                key="bridge.port",
            )
        cert = _optional_string(table, "bridge.tls_cert_file")
        key = _optional_string(table, "bridge.tls_key_file")
        if (cert is None) != (key is None):
            raise ConfigError(
                "give both tls_cert_file and tls_key_file (HTTPS), or neither (HTTP)",
                key="bridge.tls_key_file" if key is None else "bridge.tls_cert_file",
            )
        pages: tuple[str, ...] = BUILTIN_PAGE_SETS
        if "pages" in table:
            pages = _string_list(table["pages"], "bridge.pages")
            for index, name in enumerate(pages):
                if name not in BUILTIN_PAGE_SETS:
                    raise ConfigError(
                        f"{name!r} is not a page set crmphone ships; choose from "
                        f"{', '.join(BUILTIN_PAGE_SETS)}" + _suggest(name, BUILTIN_PAGE_SETS),
                        key=f"bridge.pages[{index}]",
                    )
        origins = None
        if "allowed_origins" in table:
            origins = _string_list(table["allowed_origins"], "bridge.allowed_origins")
        sources: tuple[str, ...] = DEFAULT_SCRIPT_SOURCES
        if "script_sources" in table:
            sources = _string_list(table["script_sources"], "bridge.script_sources")
        page_adapters = table.get("page_adapters", {})
        if not isinstance(page_adapters, Mapping):
            raise ConfigError(
                f'must be a table of page kind = "adapter instance", {_got(page_adapters)}',
                key="bridge.page_adapters",
            )
        for kind, instance in page_adapters.items():
            _label(kind, f"bridge.page_adapters.{kind}")
            if instance not in instances:
                named = (
                    f"names no [[adapters]] instance: {instance!r}"
                    if isinstance(instance, str) and len(instance) <= 40
                    else f"must name an [[adapters]] instance, {_got(instance)}"
                )
                raise ConfigError(
                    f"{named}; there are {', '.join(instances) or 'none'}",
                    key=f"bridge.page_adapters.{kind}",
                )
        return BridgeConfig(
            enabled=_flag(table, "bridge.enabled", default=True),
            host=host,
            port=port,
            token_file=self._path(
                _optional_string(table, "bridge.token_file") or DEFAULT_BRIDGE_TOKEN_FILE,
                "bridge.token_file",
            ),
            tls_cert_file=None if cert is None else self._path(cert, "bridge.tls_cert_file"),
            tls_key_file=None if key is None else self._path(key, "bridge.tls_key_file"),
            pages=pages,
            allowed_origins=origins,
            script_sources=sources,
            page_adapters=dict(page_adapters),
        )

    def _phone(self, document: Mapping[str, Any], platform: PlatformConfig) -> PhoneConfig | None:
        if "phone" not in document:
            return None
        table = _table(document, "phone", "phone")
        _check_keys(
            table,
            "phone",
            ("agent", "token_env", "auto_answer", "inactivity_timeout", "keep_microphone_live"),
            hint={
                "token": "the agent's token never goes in this file: set token_env to the NAME "
                "of the environment variable that holds it"
            },
        )
        agent = _optional_string(table, "phone.agent")
        if agent is None:
            raise ConfigError(
                "is required: the platform user id of the agent whose phone this is",
                key="phone.agent",
            )
        token_env = _env_name(table, "phone.token_env", DEFAULT_AGENT_TOKEN_ENV)
        token = None
        if platform.kind is PlatformKind.GENESYS:
            token = self._secret(
                "phone.token_env", token_env, required=True, what="the agent's access token"
            )
        return PhoneConfig(
            agent=agent,
            token_env=token_env,
            token=token,
            auto_answer=_flag(table, "phone.auto_answer", default=False),
            keep_microphone_live=_flag(table, "phone.keep_microphone_live", default=False),
            inactivity_timeout=_seconds(table, "phone.inactivity_timeout", 600.0),
        )

    def _path(self, value: str, key: str) -> Path:
        if "\0" in value:
            # No file system takes it; refused here rather than failing later, mid-start.
            raise ConfigError("must be a path, and a path cannot hold a NUL character", key=key)
        try:
            path = Path(value.strip()).expanduser()
        except RuntimeError:  # "~user/…" naming no account (or no home directory at all)
            raise ConfigError(
                "starts with ~ but names no home directory here; write the full path",
                key=key,
            ) from None
        return path if path.is_absolute() else self._base_dir / path


_SECRET_HINT: Final = {
    "client_secret": "secrets never go in this file: set client_secret_env to the NAME of the "
    "environment variable that holds the secret",
    "client_id": "credentials come from the environment: set client_id_env to the NAME of the "
    "environment variable that holds the client id",
}


# ---------------------------------------------------------------------------------------------
# Checks shared by the sections


def _table(document: Mapping[str, Any], name: str, key: str) -> Mapping[str, Any]:
    value = document.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(
            f"must be a table, {_got(value)}; write [{name}] on its own line above its settings",
            key=key,
        )
    return value


def _check_keys(
    table: Mapping[str, Any],
    prefix: str,
    allowed: Iterable[str],
    *,
    what: str = "key",
    hint: Mapping[str, str] | None = None,
) -> None:
    allowed = tuple(allowed)
    for key in table:
        if key in allowed:
            continue
        extra = (hint or {}).get(key)
        if extra is not None:
            message = f"unknown {what}: {extra}"
        else:
            message = (
                f"unknown {what}{_suggest(key, allowed)} "
                f"({'sections' if what == 'top-level name' else 'keys'} allowed here: "
                f"{', '.join(allowed)})"
            )
        raise ConfigError(message, key=f"{prefix}.{key}" if prefix else key)


def _choice(table: Mapping[str, Any], key: str, kind: type[_E], default: _E) -> _E:
    name = key.rsplit(".", 1)[-1]
    value = table.get(name, default.value)
    allowed = ", ".join(repr(member.value) for member in kind)
    if isinstance(value, str):
        try:
            return kind(value.strip().lower())
        except ValueError:
            shown = repr(value) if len(value) <= 20 else "that value"
            raise ConfigError(
                f"must be one of {allowed}, not {shown}{_suggest(value, [m.value for m in kind])}",
                key=key,
            ) from None
    raise ConfigError(f"must be one of {allowed} (a string), {_got(value)}", key=key)


def _integer(table: Mapping[str, Any], key: str, default: int, *, minimum: int) -> int:
    value = table.get(key.rsplit(".", 1)[-1], default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(
            f"must be a whole number of at least {minimum}, {_got(value)}; such as "
            f"{key.rsplit('.', 1)[-1]} = {default}",
            key=key,
        )
    return value


def _seconds(table: Mapping[str, Any], key: str, default: float) -> float:
    value = table.get(key.rsplit(".", 1)[-1], default)
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ConfigError(
            f"must be a positive number of seconds, {_got(value)}; such as "
            f"{key.rsplit('.', 1)[-1]} = {default:g}",
            key=key,
        )
    return float(value)


def _flag(table: Mapping[str, Any], key: str, *, default: bool) -> bool:
    value = table.get(key.rsplit(".", 1)[-1], default)
    if not isinstance(value, bool):
        raise ConfigError(f"must be true or false, {_got(value)}", key=key)
    return value


def _optional_string(table: Mapping[str, Any], key: str) -> str | None:
    name = key.rsplit(".", 1)[-1]
    if name not in table:
        return None
    value = table[name]
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"must be a non-empty string, {_got(value)}", key=key)
    return value.strip()


def _env_name(table: Mapping[str, Any], key: str, default: str) -> str:
    value = table.get(key.rsplit(".", 1)[-1], default)
    if not isinstance(value, str) or not _ENV_NAME_RE.match(value):
        # Never echo the value: a secret pasted here by mistake must not reach a log.
        raise ConfigError(
            "must be the NAME of an environment variable (letters, digits and underscores), "
            f"such as {default!r}; put the credential itself in that variable, never in this file",
            key=key,
        )
    return value


def _label(value: object, key: str) -> str:
    if not isinstance(value, str) or not _LABEL_RE.match(value):
        raise ConfigError(
            f"must be a name of letters, digits, '.', '_' or '-' (no spaces), {_got(value)}"
            + (f" ({value!r})" if isinstance(value, str) and len(value) <= 40 else ""),
            key=key,
        )
    return value


def _string_list(value: object, key: str, *, label: bool = False) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ConfigError(
            f'must be an array of strings, {_got(value)}; such as ["a", "b"]', key=key
        )
    items: list[str] = []
    for index, item in enumerate(value):
        item_key = f"{key}[{index}]"
        if label:
            item = _label(item, item_key)
        elif not isinstance(item, str) or not item.strip():
            raise ConfigError(f"must be a non-empty string, {_got(item)}", key=item_key)
        item = item.strip()
        if item in items:
            raise ConfigError(f"repeats {item!r}; list each once", key=item_key)
        items.append(item)
    return tuple(items)


def _crm_user(value: object, key: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(
            f"must be the agent's CRM user id as a string, {_got(value)}; such as "
            '"<platform user id>" = "0055g00000AbCdE"',
            key=key,
        )
    return value.strip()


def _base_url(value: str, key: str) -> str:
    """A validated platform base URL (https, or http on loopback), normalised."""
    if "://" not in value:
        raise ConfigError(
            "must be a full URL such as 'https://api.mypurecloud.de' (or 'http://127.0.0.1:8080' "
            "for a sandbox); for a region domain use platform.region",
            key=key,
        )
    try:
        urls = resolve_region(value)
    except ConfigError as exc:
        # resolve_region speaks of platform.region; say which key the URL came from.
        message = str(exc).removeprefix(f"{exc.key}: ") if exc.key else str(exc)
        raise ConfigError(message, key=key) from None
    # resolve_region derives the sibling host of api./login. URLs; keep the one the user wrote.
    host = (urlsplit(value.strip()).hostname or "").lower()
    return next(url for url in urls if (urlsplit(url).hostname or "").lower() == host)
