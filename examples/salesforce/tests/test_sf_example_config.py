"""The example's connector.toml is a working configuration: it loads, and the Salesforce plugin
accepts its adapter options."""

from __future__ import annotations

from pathlib import Path

import pytest

from crmphone.config import load_config
from crmphone.service import build_adapters

EXAMPLE = Path(__file__).resolve().parents[1] / "connector.toml"
SECRETS = {
    "CRMPHONE_CLIENT_ID": "client-id",
    "CRMPHONE_CLIENT_SECRET": "client-secret",
    "SF_CLIENT_ID": "sf-client-id",
    "SF_CLIENT_SECRET": "sf-client-secret",
    "CRMPHONE_AGENT_TOKEN": "agent-token",
}


def test_the_salesforce_example_configuration_loads_and_builds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With its secrets in the environment, the file gives a connector, a desk and an adapter."""
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    config = load_config(EXAMPLE, environ=SECRETS)
    assert config.bridge is not None
    assert config.bridge.port == 8765
    assert config.bridge.tls_cert_file == EXAMPLE.parent / "localhost.pem"
    assert config.phone is not None
    assert config.phone.agent in config.agents.ids
    adapters, _ = build_adapters(config)
    assert set(adapters) == {"salesforce"}
    for adapter in adapters.values():
        adapter.context.close()
