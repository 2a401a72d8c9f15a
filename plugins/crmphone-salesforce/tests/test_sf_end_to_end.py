"""End to end: sandbox calls → the connector (`crmphone run`'s code) → Salesforce emulator Tasks.

Real parts only: the sandbox platform and the Salesforce emulator on loopback sockets, the
connector loading the plugin through its entry point from a TOML configuration, the durable
outbox on disk, simple-salesforce over HTTPS.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from crmphone.config import ConnectorConfig, parse_config
from crmphone.connector import Connector
from crmphone.sandbox import SandboxServer
from crmphone.testing import TEST_CLIENT_ID, TEST_CLIENT_SECRET, fast_sandbox_config
from crmphone.testing.connector import run_connector_until
from crmphone_salesforce.emulator import (
    MANY_MATCH_NUMBERS,
    NO_MATCH_NUMBERS,
    ONE_MATCH_NUMBER,
    SalesforceEmulator,
)


def config_for(sandbox: SandboxServer, sf: SalesforceEmulator, tmp_path: Path) -> ConnectorConfig:
    agents = [agent.id for agent in sandbox.sandbox.agents]
    owners = "\n".join(
        f'"{agent}" = "{owner}"'
        for agent, owner in zip(agents, sf.model.agent_user_ids, strict=False)
    )
    text = f"""
[platform]
kind = "sandbox"
url = "{sandbox.base_url}"

[agents.crm_users]
{owners}

[[adapters]]
name = "salesforce"
instance_url = "{sf.url}"
auth = "client_credentials"
login_url = "{sf.url}"
client_id_env = "SF_CLIENT_ID"
client_secret_env = "SF_CLIENT_SECRET"
ca_file = "{sf.ca_file}"
request_limit_wait = 0.05

[outbox]
path = "outbox.sqlite3"
initial_delay = 0.05
max_delay = 0.2
"""
    environ = {"CRMPHONE_CLIENT_ID": TEST_CLIENT_ID, "CRMPHONE_CLIENT_SECRET": TEST_CLIENT_SECRET}
    return parse_config(text, base_dir=tmp_path, environ=environ)


async def completed(
    sf: SalesforceEmulator, conversation_ids: list[str], within: float = 20.0
) -> None:
    """Wait until each conversation has a Task with its disposition (logged to the end)."""
    async with asyncio.timeout(within):
        while True:
            done = [
                task
                for task in sf.model.records("Task")
                if task.get("CallObject") in conversation_ids and task.get("CallDisposition")
            ]
            if len({task["CallObject"] for task in done}) == len(conversation_ids):
                return
            await asyncio.sleep(0.05)


@pytest.fixture
async def sandbox() -> Any:
    """The sandbox platform on loopback, with fast timers."""
    async with SandboxServer(fast_sandbox_config(), host="127.0.0.1", port=0) as server:
        yield server


@pytest.fixture
async def sf(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The Salesforce emulator on loopback; its connected app's credentials in the environment
    (where the adapter reads them, as in production)."""
    async with SalesforceEmulator(seed=0) as emulator:
        monkeypatch.setenv("SF_CLIENT_ID", emulator.client_id)
        monkeypatch.setenv("SF_CLIENT_SECRET", emulator.client_secret)
        yield emulator


async def test_each_call_is_one_completed_task_across_faults_and_a_restart(
    sandbox: SandboxServer, sf: SalesforceEmulator, tmp_path: Path
) -> None:
    """401, 403 REQUEST_LIMIT_EXCEEDED and 503 on the way, then calls made while the connector
    was down: every call ends as exactly one completed Task with the right fields."""
    platform = sandbox.sandbox
    agents = [agent.id for agent in platform.agents]
    owner_of = dict(zip(agents, sf.model.agent_user_ids, strict=False))
    config = config_for(sandbox, sf, tmp_path)
    numbers = [ONE_MATCH_NUMBER, MANY_MATCH_NUMBERS[0], NO_MATCH_NUMBERS[0]]
    placed: dict[str, tuple[str, str]] = {}

    async def with_faults(connector: Connector, health: Any, _: Any) -> None:
        sf.model.faults.fail_next("expired_session", route="composite")
        sf.model.faults.fail_next("request_limit", route="composite")
        sf.model.faults.fail_next("unavailable", route="composite", retry_after=0)
        sf.model.faults.fail_next("expired_session", route="search")
        for agent, number in zip(agents, numbers, strict=True):
            conversation = await platform.calls.place_inbound(agent, ani=number)
            placed[conversation] = (agent, number)
        await completed(sf, list(placed))

    await run_connector_until(config, with_faults, health_port=0)
    assert sf.model.faults.pending == ()  # every injected fault hit a request
    assert sum(sf.model.faults.applied.values()) == 4

    # The connector is down; two calls come and go.
    missed = {}
    for agent, number in zip(agents[:2], numbers[:2], strict=True):
        conversation = await platform.calls.place_inbound(agent, ani=number)
        missed[conversation] = (agent, number)
    for conversation in missed:
        await platform.calls.wait_closed(conversation)
    placed.update(missed)

    async def catch_up(connector: Connector, health: Any, _: Any) -> None:
        await completed(sf, list(placed))
        async with httpx.AsyncClient(base_url=health.url) as http:
            metrics = (await http.get("/metrics")).text
        used = re.search(
            r'crmphone_adapter_gauge\{adapter="salesforce",name="api_requests_used"\} (\d+)',
            metrics,
        )
        assert used is not None, metrics
        assert int(used.group(1)) == sf.model.usage.used

    await run_connector_until(config, catch_up, health_port=0)

    for conversation, (agent, number) in placed.items():
        tasks = [t for t in sf.model.records("Task") if t.get("CallObject") == conversation]
        assert len(tasks) == 1, f"{conversation}: {len(tasks)} Tasks"
        task = tasks[0]
        assert task["Status"] == "Completed"
        assert task["CallType"] == "Inbound"
        assert isinstance(task["CallDurationInSeconds"], int)
        assert task["OwnerId"] == owner_of[agent]
        assert task["CTI_Call_Id__c"].startswith(f"{conversation}:")
        if number == ONE_MATCH_NUMBER:
            assert task.get("WhoId") or task.get("WhatId")
        if number == NO_MATCH_NUMBERS[0]:
            assert not task.get("WhoId")
    assert len(placed) == 5
