"""connector.toml: a full file parses into values; every mistake is one message naming the key."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest

from crmphone.adapters.base import AdapterContext
from crmphone.config import (
    ConnectorConfig,
    LogFormat,
    PlatformKind,
    Synchronous,
    load_config,
    parse_config,
)
from crmphone.errors import ConfigError, PluginError

SECRET = "s3cr3t-V4lue-that-must-never-leak"
CLIENT_ID = "8f0e1c2a-client-id"
ENV = {"GC_ID": CLIENT_ID, "GC_SECRET": SECRET}

FULL = """
[platform]
kind = "genesys"
region = "mypurecloud.de"
client_id_env = "GC_ID"
client_secret_env = "GC_SECRET"

[agents]
ids = ["agent-1", "agent-2"]

[agents.crm_users]
agent-1 = "005A"
agent-2 = "005B"

[agents.crm_users.zendesk-eu]
agent-1 = "z-1"

[plugins]
allow = ["salesforce", "zendesk"]

[[adapters]]
name = "salesforce"
threads = 2
timeout = 5
verify = "ca.pem"
domain = "login"
objects = ["Contact", "Lead"]

[[adapters]]
name = "zendesk"
instance = "zendesk-eu"
verify = false
subdomain = "acme"

[outbox]
path = "state/outbox.sqlite3"
synchronous = "normal"
max_attempts = 10
initial_delay = 0.5
max_delay = 60
max_age = 3600
pop_ttl = 15

[log]
level = "debug"
format = "json"
"""


def _parse(text: str, tmp_path: Path, environ: dict[str, str] | None = None) -> ConnectorConfig:
    return parse_config(text, base_dir=tmp_path, environ=ENV if environ is None else environ)


def _error(text: str, tmp_path: Path, environ: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        _parse(text, tmp_path, environ)
    assert SECRET not in str(caught.value)
    return caught.value


def test_full_file_parses_into_values(tmp_path: Path) -> None:
    """Every section of a complete file lands in the typed, frozen values."""
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    config_file = tmp_path / "connector.toml"
    config_file.write_text(FULL)
    config = load_config(config_file, environ=ENV)

    assert config.source == config_file.absolute()
    platform = config.platform
    assert platform.kind is PlatformKind.GENESYS
    assert (platform.api_base, platform.login_base) == (
        "https://api.mypurecloud.de",
        "https://login.mypurecloud.de",
    )
    assert (platform.client_id, platform.client_secret) == (CLIENT_ID, SECRET)
    assert not platform.embedded
    assert config.agents.ids == ("agent-1", "agent-2")
    assert config.plugins_allow == ("salesforce", "zendesk")

    salesforce, zendesk = config.adapters
    assert (salesforce.name, salesforce.instance) == ("salesforce", "salesforce")
    assert (salesforce.threads, salesforce.timeout) == (2, 5.0)
    assert salesforce.verify == str(tmp_path / "ca.pem")
    assert dict(salesforce.options) == {"domain": "login", "objects": ["Contact", "Lead"]}
    assert dict(salesforce.crm_users) == {"agent-1": "005A", "agent-2": "005B"}
    assert (zendesk.name, zendesk.instance, zendesk.verify) == ("zendesk", "zendesk-eu", False)
    assert dict(zendesk.options) == {"subdomain": "acme"}
    # The instance's own table wins over the shared map, agent by agent.
    assert dict(zendesk.crm_users) == {"agent-1": "z-1", "agent-2": "005B"}
    assert config.adapter("zendesk-eu") is zendesk

    outbox = config.outbox
    assert outbox.path == tmp_path / "state" / "outbox.sqlite3"
    assert outbox.synchronous is Synchronous.NORMAL
    assert (outbox.max_attempts, outbox.initial_delay, outbox.max_delay) == (10, 0.5, 60.0)
    assert (outbox.max_age, outbox.pop_ttl) == (3600.0, 15.0)
    assert (config.log.level, config.log.format) == ("DEBUG", LogFormat.JSON)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        config.outbox.max_attempts = 1  # type: ignore[misc]


def test_empty_file_is_the_embedded_sandbox_with_defaults(tmp_path: Path) -> None:
    """No settings at all: embedded sandbox, every agent, documented defaults, demo credentials."""
    config = _parse("", tmp_path, environ={})
    assert config.platform.kind is PlatformKind.SANDBOX
    assert config.platform.embedded
    assert config.platform.client_secret is None
    assert config.agents.all_sandbox_agents
    assert config.adapters == ()
    assert config.plugins_allow is None
    outbox = config.outbox
    assert outbox.path == tmp_path / "crmphone-outbox.sqlite3"
    assert outbox.synchronous is Synchronous.NORMAL
    assert (outbox.max_attempts, outbox.initial_delay, outbox.max_delay) == (50, 1.0, 300.0)
    assert (outbox.max_age, outbox.pop_ttl) == (86400.0, 30.0)
    assert (config.log.level, config.log.format) == ("INFO", LogFormat.TEXT)


def test_adapter_defaults_match_the_adapter_context(tmp_path: Path) -> None:
    """threads, timeout and verify default to what AdapterContext defaults to."""
    (adapter,) = parse_config('[[adapters]]\nname = "webhook"', base_dir=tmp_path).adapters
    context = AdapterContext(name="webhook")
    assert (adapter.threads, adapter.timeout, adapter.verify) == (
        context.threads,
        context.timeout,
        context.verify,
    )
    assert adapter.instance == "webhook"


def test_sandbox_at_a_url_uses_it_for_login_and_api(tmp_path: Path) -> None:
    """A running sandbox's URL serves as both bases; env credentials are taken when set."""
    config = parse_config(
        '[platform]\nkind = "sandbox"\nurl = "http://127.0.0.1:8765/"',
        base_dir=tmp_path,
        environ={"CRMPHONE_CLIENT_ID": "cid", "CRMPHONE_CLIENT_SECRET": SECRET},
    )
    assert config.platform.url == "http://127.0.0.1:8765"
    assert config.platform.api_base == config.platform.login_base == "http://127.0.0.1:8765"
    assert (config.platform.client_id, config.platform.client_secret) == ("cid", SECRET)


def test_genesys_with_explicit_base_urls(tmp_path: Path) -> None:
    """api_base and login_base are taken as written (normalised), not re-derived."""
    config = parse_config(
        '[platform]\nkind = "genesys"\napi_base = "https://genesys-proxy.corp.example:8443/"\n'
        'login_base = "https://login.mypurecloud.ie"\n[agents]\nids = ["a"]',
        base_dir=tmp_path,
        environ={"CRMPHONE_CLIENT_ID": "cid", "CRMPHONE_CLIENT_SECRET": SECRET},
    )
    assert config.platform.api_base == "https://genesys-proxy.corp.example:8443"
    assert config.platform.login_base == "https://login.mypurecloud.ie"


def test_secrets_never_in_repr_or_str(tmp_path: Path) -> None:
    """The client secret is in the value but not in its repr or str, at any level."""
    (tmp_path / "ca.pem").write_text("x")
    config = _parse(FULL, tmp_path)
    assert config.platform.client_secret == SECRET
    for text in (repr(config), str(config), repr(config.platform), str(config.platform)):
        assert SECRET not in text
    assert CLIENT_ID in repr(config.platform)


GENESYS_HEAD = '[platform]\nkind = "genesys"\nregion = "mypurecloud.com"\n'


@pytest.mark.parametrize(
    ("text", "key", "fragments"),
    [
        pytest.param(
            "[outbox]\nmax_attempts = 2.5",
            "outbox.max_attempts",
            ["whole number of at least 1", "got a float (2.5)", "max_attempts = 50"],
            id="wrong-type",
        ),
        pytest.param(
            '[outbox]\nmax_attempts = "50"',
            "outbox.max_attempts",
            ["whole number", "remove the quotes"],
            id="number-in-quotes",
        ),
        pytest.param(
            "[outbox]\nmax_atempts = 5",
            "outbox.max_atempts",
            ["unknown key", "did you mean 'max_attempts'?"],
            id="unknown-key-with-suggestion",
        ),
        pytest.param(
            "[platfrom]\nkind = 'sandbox'",
            "platfrom",
            ["unknown", "did you mean 'platform'?"],
            id="unknown-section-with-suggestion",
        ),
        pytest.param(
            "[log]\ncolour = true",
            "log.colour",
            ["unknown key", "level, format"],
            id="unknown-key-lists-allowed",
        ),
        pytest.param(
            '[platform]\nkind = "genesis"',
            "platform.kind",
            ["'sandbox', 'genesys'", "did you mean 'genesys'?"],
            id="bad-kind",
        ),
        pytest.param(
            '[[adapters]]\nname = "webhook"\n[[adapters]]\nname = "webhook"',
            "adapters[1].instance",
            ["'webhook' is already the instance label of adapters[0]", "instance ="],
            id="duplicate-instance",
        ),
        pytest.param(
            '[[adapters]]\nname = "a"\ninstance = "x"\n[[adapters]]\nname = "b"\ninstance = "x"',
            "adapters[1].instance",
            ["already the instance label"],
            id="duplicate-explicit-instance",
        ),
        pytest.param(
            "[[adapters]]\nthreads = 2",
            "adapters[0].name",
            ["is missing", "entry point name"],
            id="adapter-without-name",
        ),
        pytest.param(
            '[[adapters]]\nname = "webhook"\nthreads = 0',
            "adapters[0].threads",
            ["at least 1"],
            id="adapter-threads",
        ),
        pytest.param(
            '[[adapters]]\nname = "webhook"\nverify = "missing.pem"',
            "adapters[0].verify",
            ["does not exist", "verify = true"],
            id="adapter-ca-missing",
        ),
        pytest.param(
            '[[adapters]]\nname = "webhook"\nverify = "false"',
            "adapters[0].verify",
            ["without quotes"],
            id="adapter-verify-quoted",
        ),
        pytest.param(
            '[adapters]\nname = "webhook"',
            "adapters",
            ["[[adapters]] (double brackets)"],
            id="adapters-single-brackets",
        ),
        pytest.param(
            '[plugins]\nallow = ["salesforce"]\n[[adapters]]\nname = "webhook"',
            "adapters[0].name",
            ["not in plugins.allow", "add it there"],
            id="not-allowed",
        ),
        pytest.param(
            '[platform]\nkind = "genesys"\n[agents]\nids = ["a"]',
            "platform.region",
            ["set region", "api_base and login_base"],
            id="genesys-without-location",
        ),
        pytest.param(
            '[platform]\nkind = "genesys"\napi_base = "https://api.mypurecloud.de"\n'
            '[agents]\nids = ["a"]',
            "platform.login_base",
            ["is required with api_base"],
            id="genesys-half-urls",
        ),
        pytest.param(
            '[platform]\nkind = "genesys"\napi_base = "http://api.example.com"\n'
            'login_base = "https://login.example.com"\n[agents]\nids = ["a"]',
            "platform.api_base",
            ["plain http is only allowed for a loopback sandbox"],
            id="genesys-plain-http",
        ),
        pytest.param(
            GENESYS_HEAD + "[agents]",
            "agents.ids",
            ["platform user ids"],
            id="genesys-without-agents",
        ),
        pytest.param(
            '[platform]\nurl = "https://x.example"\nregion = "mypurecloud.com"',
            "platform.region",
            ["only applies to kind = 'genesys'"],
            id="key-of-the-other-kind",
        ),
        pytest.param(
            '[agents]\nids = ["a", "a"]',
            "agents.ids[1]",
            ["repeats 'a'"],
            id="repeated-agent",
        ),
        pytest.param(
            '[[adapters]]\nname = "salesforce"\n[agents.crm_users.salesfroce]\na = "1"',
            "agents.crm_users.salesfroce",
            ["names no adapter instance", "did you mean 'salesforce'?"],
            id="crm-users-unknown-adapter",
        ),
        pytest.param(
            "[agents.crm_users]\nagent-1 = 42",
            "agents.crm_users.agent-1",
            ["CRM user id as a string", "got an integer (42)"],
            id="crm-user-not-a-string",
        ),
        pytest.param(
            "[outbox]\ninitial_delay = 10\nmax_delay = 5",
            "outbox.max_delay",
            ["shorter than initial_delay"],
            id="max-delay-below-initial",
        ),
        pytest.param(
            "[outbox]\nmax_age = inf",
            "outbox.max_age",
            ["positive number of seconds"],
            id="infinite-age",
        ),
        pytest.param(
            '[outbox]\nsynchronous = "ful"',
            "outbox.synchronous",
            ["'normal', 'full'", "did you mean 'full'?"],
            id="synchronous",
        ),
        pytest.param(
            '[log]\nlevel = "verbose"',
            "log.level",
            ["'debug', 'info', 'warning', 'error', 'critical'"],
            id="log-level",
        ),
        pytest.param(
            "log = 3",
            "log",
            ["must be a table", "[log]"],
            id="section-not-a-table",
        ),
    ],
)
def test_each_mistake_names_its_key_and_the_fix(
    tmp_path: Path, text: str, key: str, fragments: list[str]
) -> None:
    """A bad setting raises one ConfigError whose key is the setting and whose text says the fix."""
    error = _error(
        text, tmp_path, environ={"CRMPHONE_CLIENT_ID": "c", "CRMPHONE_CLIENT_SECRET": SECRET}
    )
    assert error.key == key
    assert str(error).startswith(f"{key}: ")
    for fragment in fragments:
        assert fragment in str(error)


def test_not_allowed_plugin_is_a_plugin_error(tmp_path: Path) -> None:
    """An adapter outside plugins.allow is reported as a PluginError naming the plugin."""
    error = _error('[plugins]\nallow = []\n[[adapters]]\nname = "webhook"', tmp_path)
    assert isinstance(error, PluginError)
    assert error.plugin == "webhook"


@pytest.mark.parametrize(
    ("environ", "key", "state"),
    [
        ({"GC_ID": CLIENT_ID}, "platform.client_secret_env", "GC_SECRET is not set"),
        ({"GC_ID": CLIENT_ID, "GC_SECRET": ""}, "platform.client_secret_env", "GC_SECRET is empty"),
        ({"GC_SECRET": SECRET}, "platform.client_id_env", "GC_ID is not set"),
    ],
)
def test_missing_environment_variable_names_key_and_variable(
    tmp_path: Path, environ: dict[str, str], key: str, state: str
) -> None:
    """A credential variable that is not set names both the key and the variable, not the secret."""
    text = GENESYS_HEAD + 'client_id_env = "GC_ID"\nclient_secret_env = "GC_SECRET"\n'
    error = _error(text + '[agents]\nids = ["a"]', tmp_path, environ)
    assert error.key == key
    assert f"environment variable {state}" in str(error)
    assert SECRET not in str(error)


def test_sandbox_explicit_variable_must_be_set(tmp_path: Path) -> None:
    """For a sandbox the variables are optional, unless the file names one explicitly."""
    error = _error('[platform]\nclient_secret_env = "SANDBOX_SECRET"', tmp_path, environ={})
    assert error.key == "platform.client_secret_env"
    assert "SANDBOX_SECRET is not set" in str(error)


def test_a_secret_pasted_into_the_file_is_never_echoed(tmp_path: Path) -> None:
    """A secret written as a value (in the wrong key or as a variable name) is not repeated."""
    pasted_key = _error(f'[platform]\nclient_secret = "{SECRET}"', tmp_path)
    assert pasted_key.key == "platform.client_secret"
    assert "client_secret_env" in str(pasted_key)
    pasted_name = _error(f'[platform]\nclient_secret_env = "{SECRET}"', tmp_path)
    assert pasted_name.key == "platform.client_secret_env"
    assert "NAME of an environment variable" in str(pasted_name)
    # A plausible variable name that is not conventional is not echoed either.
    lookalike = "Ab9xQ2mZr7Tt0pLw5vKe3nYh8cUd1sGf"
    error = _error(
        GENESYS_HEAD + f'client_secret_env = "{lookalike}"\n[agents]\nids = ["a"]',
        tmp_path,
        environ={"CRMPHONE_CLIENT_ID": "c"},
    )
    assert error.key == "platform.client_secret_env"
    assert lookalike not in str(error)


@pytest.mark.parametrize(
    ("text", "position"),
    [
        ("[platform\nkind = 'sandbox'", "line 1, column 10"),
        ("[outbox]\nmax_attempts = 5\nmax_attempts = 6\n", "line 3, column 17"),
        ("[log]\nlevel = ", "the end of the file"),
    ],
)
def test_syntax_error_gives_line_and_column(tmp_path: Path, text: str, position: str) -> None:
    """A TOML syntax error is a ConfigError with the file name and the position."""
    path = tmp_path / "connector.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    message = str(caught.value)
    assert message.startswith(f"{path}, {position}: invalid TOML: ")
    assert "fix the syntax" in message


def test_missing_file_says_where_it_looked(tmp_path: Path) -> None:
    """A config path that does not exist is a ConfigError naming the path and --config."""
    with pytest.raises(ConfigError, match=r"no configuration file at .*--config"):
        load_config(tmp_path / "nope.toml", environ={})


def test_relative_paths_follow_the_config_file(tmp_path: Path) -> None:
    """The outbox path is relative to the file's directory; absolute and ~ paths are kept."""
    (tmp_path / "etc").mkdir()
    path = tmp_path / "etc" / "connector.toml"
    path.write_text("")
    assert load_config(path, environ={}).outbox.path == tmp_path / "etc" / "crmphone-outbox.sqlite3"
    absolute = tmp_path / "elsewhere.sqlite3"
    path.write_text(f"[outbox]\npath = '{absolute}'")
    assert load_config(path, environ={}).outbox.path == absolute
    path.write_text("[outbox]\npath = '~/outbox.sqlite3'")
    assert load_config(path, environ={}).outbox.path == Path.home() / "outbox.sqlite3"
