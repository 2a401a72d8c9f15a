"""End to end: sandbox calls → the connector (`crmphone run`'s code) → Zendesk emulator.

Real parts only: the sandbox platform and the Zendesk emulator on loopback sockets, the connector
loading the plugin through its entry point from a TOML configuration, the durable outbox on disk,
zenpy over HTTPS.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from crmphone.config import ConnectorConfig, parse_config
from crmphone.connector import Connector
from crmphone.sandbox import SandboxServer
from crmphone.testing import TEST_CLIENT_ID, TEST_CLIENT_SECRET, fast_sandbox_config
from crmphone.testing.connector import run_connector_until
from crmphone_zendesk.emulator import ZendeskEmulator
from crmphone_zendesk.emulator.model import NO_MATCH_NUMBER, ONE_MATCH_NUMBER, SHARED_NUMBER


def config_for(sandbox: SandboxServer, zd: ZendeskEmulator, tmp_path: Path) -> ConnectorConfig:
    agents = [agent.id for agent in sandbox.sandbox.agents]
    owners = "\n".join(
        f'"{agent}" = "{zd_agent.id}"'
        for agent, zd_agent in zip(agents, zd.model.agents, strict=False)
    )
    text = f"""
[platform]
kind = "sandbox"
url = "{sandbox.base_url}"

[agents.crm_users]
{owners}

[[adapters]]
name = "zendesk"
base_url = "{zd.url}"
email = "{zd.email}"
token_env = "ZD_API_TOKEN"
ca_file = "{zd.ca_file}"

[outbox]
path = "outbox.sqlite3"
initial_delay = 0.05
max_delay = 0.2
"""
    environ = {"CRMPHONE_CLIENT_ID": TEST_CLIENT_ID, "CRMPHONE_CLIENT_SECRET": TEST_CLIENT_SECRET}
    return parse_config(text, base_dir=tmp_path, environ=environ)


def calls_of(zd: ZendeskEmulator, conversation: str) -> list[Any]:
    return [
        call
        for call in zd.model.calls.values()
        if str(call.fields.get("external_id") or "").startswith(f"{conversation}:")
    ]


async def completed(zd: ZendeskEmulator, conversations: list[str], within: float = 25.0) -> None:
    """Wait until each conversation's call record has its disposition (logged to the end)."""
    async with asyncio.timeout(within):
        while not all(
            any(call.fields.get("call_disposition") for call in calls_of(zd, conversation))
            for conversation in conversations
        ):
            await asyncio.sleep(0.05)


@pytest.fixture
async def sandbox() -> AsyncIterator[SandboxServer]:
    """The sandbox platform on loopback, with fast timers."""
    async with SandboxServer(fast_sandbox_config(), host="127.0.0.1", port=0) as server:
        yield server


@pytest.fixture
async def zd(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[ZendeskEmulator]:
    """The Zendesk emulator on loopback; its API token in the environment."""
    async with ZendeskEmulator(seed=0) as emulator:
        monkeypatch.setenv("ZD_API_TOKEN", emulator.api_token)
        yield emulator


async def test_each_call_is_one_ticket_and_one_call_record_across_faults_and_a_restart(
    sandbox: SandboxServer, zd: ZendeskEmulator, tmp_path: Path
) -> None:
    """429 bursts and 503s on the way, then calls made while the connector was down: every call
    ends as one ticket and one completed call record, and the ringing agent got a pop."""
    platform = sandbox.sandbox
    agents = [agent.id for agent in platform.agents]
    zd_agent = {agent: zd_user.id for agent, zd_user in zip(agents, zd.model.agents, strict=False)}
    config = config_for(sandbox, zd, tmp_path)
    numbers = [ONE_MATCH_NUMBER, SHARED_NUMBER, NO_MATCH_NUMBER]
    placed: dict[str, tuple[str, str]] = {}

    async def with_faults(connector: Connector, health: Any, _: Any) -> None:
        zd.model.faults.rate_limited(3, retry_after=1, route="voice")
        zd.model.faults.unavailable(2, route="calls")
        for agent, number in zip(agents, numbers, strict=True):
            conversation = await platform.calls.place_inbound(agent, ani=number)
            placed[conversation] = (agent, number)
        await completed(zd, list(placed))

    await run_connector_until(config, with_faults)
    assert zd.model.faults.pending == ()  # every injected fault hit a request

    missed: dict[str, tuple[str, str]] = {}
    for agent, number in zip(agents[:2], numbers[:2], strict=True):
        missed[await platform.calls.place_inbound(agent, ani=number)] = (agent, number)
    for conversation in missed:
        await platform.calls.wait_closed(conversation)
    placed.update(missed)

    async def catch_up(connector: Connector, health: Any, _: Any) -> None:
        await completed(zd, list(placed))

    await run_connector_until(config, catch_up)

    for conversation, (agent, _number) in placed.items():
        [call] = calls_of(zd, conversation)
        key = str(call.fields["external_id"])
        tickets = zd.model.tickets_by_external_id(key)
        assert len(tickets) == 1, f"{conversation}: {len(tickets)} tickets"
        assert call.fields["ticket_id"] == tickets[0].id
        assert call.fields["agent_id"] == zd_agent[agent]
        assert isinstance(call.fields["duration"], int)
    # The live, single-match call popped its caller to its agent as it rang.
    one_agent = next(a for c, (a, n) in placed.items() if n == ONE_MATCH_NUMBER and c not in missed)
    user_pops = [d for d in zd.model.displays if d.kind == "user"]
    assert any(d.agent_id == zd_agent[one_agent] for d in user_pops)
    assert len(placed) == 5
