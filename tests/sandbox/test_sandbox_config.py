"""SandboxConfig: the documented defaults, validation that names the key, no secret leaks."""

from __future__ import annotations

import attrs
import pytest

from crmphone.errors import ConfigError
from crmphone.sandbox import SandboxConfig, SecondSocketPolicy


def test_defaults_are_genesys_production_values() -> None:
    """Every default matches the fixed interface (and Genesys Cloud where it has a value)."""
    config = SandboxConfig()
    expected = {
        "client_id": "demo-client",
        "client_secret": "demo-secret",
        "heartbeat_interval": 30.0,
        "token_ttl": 86400.0,
        "channel_ttl": 86400.0,
        "max_channels_per_client": 20,
        "max_topics_per_channel": 1000,
        "rate_limit_per_minute": 300,
        "second_socket": "displace",
        "resubscribe_extends": True,
        "agents": 5,
        "seed": 1,
        "calls_per_minute": 0.0,
        "ring_seconds": 2.0,
        "talk_seconds": 5.0,
        "wrapup_seconds": 0.5,
    }
    assert {key: getattr(config, key) for key in expected} == expected
    assert config.second_socket is SecondSocketPolicy.DISPLACE


def test_second_socket_takes_strings() -> None:
    """second_socket accepts the interface's strings and converts them to the enum."""
    assert SandboxConfig(second_socket="allow").second_socket is SecondSocketPolicy.ALLOW


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("heartbeat_interval", 0),
        ("heartbeat_interval", float("nan")),
        ("token_ttl", -1.0),
        ("channel_ttl", "long"),
        ("max_channels_per_client", 0),
        ("max_topics_per_channel", 2.5),
        ("rate_limit_per_minute", -1),
        ("agents", True),
        ("calls_per_minute", -0.1),
        ("ring_seconds", float("inf")),
        ("second_socket", "both"),
        ("client_id", ""),
        ("client_id", " padded "),
    ],
)
def test_invalid_values_name_their_key(field: str, value: object) -> None:
    """A bad value raises ConfigError whose key is sandbox.<field>."""
    with pytest.raises(ConfigError) as info:
        SandboxConfig(**{field: value})  # type: ignore[arg-type]
    assert info.value.key == f"sandbox.{field}"


def test_the_secret_never_shows() -> None:
    """The client secret is absent from repr and from the message about a bad secret."""
    secret = "s3cret-value-9f2"
    assert secret not in repr(SandboxConfig(client_secret=secret))
    with pytest.raises(ConfigError) as info:
        SandboxConfig(client_secret=f" {secret} ")
    assert secret not in str(info.value)


def test_from_mapping() -> None:
    """A parsed table becomes a config; unknown keys are named in a ConfigError."""
    config = SandboxConfig.from_mapping({"agents": 7, "second_socket": "allow"})
    assert (config.agents, config.second_socket) == (7, SecondSocketPolicy.ALLOW)
    with pytest.raises(ConfigError, match="heartbeat"):
        SandboxConfig.from_mapping({"heartbeat": 1})


def test_config_is_frozen() -> None:
    """A config cannot be changed after creation."""
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        SandboxConfig().agents = 2  # type: ignore[misc]
