"""The sandbox's ledger of published events is bounded, so a sandbox running for hours does not
grow without end; the background call generator places calls only on idle agents."""

from __future__ import annotations

import pytest

from crmphone.errors import ConfigError
from crmphone.sandbox import SandboxConfig, SandboxServer


async def test_the_ledger_keeps_the_latest_events_up_to_its_limit() -> None:
    """Beyond ledger_limit the oldest entries go; the latest stay, in order."""
    async with SandboxServer(SandboxConfig(ledger_limit=3), host="127.0.0.1", port=0) as server:
        for seq in range(5):
            server.sandbox.publish("v2.test.topic", {"seq": seq})
        assert [e.event_body["seq"] for e in server.sandbox.ledger] == [2, 3, 4]


async def test_a_zero_limit_keeps_every_event() -> None:
    """ledger_limit = 0 keeps everything (for a test that compares a long stream)."""
    async with SandboxServer(SandboxConfig(ledger_limit=0), host="127.0.0.1", port=0) as server:
        for seq in range(300):
            server.sandbox.publish("v2.test.topic", {"seq": seq})
        assert len(server.sandbox.ledger) == 300


def test_a_negative_limit_is_a_config_error() -> None:
    """A negative ledger_limit is refused with the key named."""
    with pytest.raises(ConfigError, match="ledger_limit"):
        SandboxConfig(ledger_limit=-1)
