"""Click-to-dial end to end: a number clicked in the Open CTI page (real Chromium) → the bridge →
the connector's dial (the agent's own session places the call on the sandbox platform) → the call
is logged in the Salesforce emulator as a Task linked to the clicked record."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from crmphone.bridge import BridgeServer, BridgeSettings, BridgeToken, builtin_pages
from crmphone.config import parse_config
from crmphone.connector import BridgeCommands, Connector
from crmphone.platform import PlatformClient
from crmphone.sandbox import SandboxServer
from crmphone.testing import (
    TEST_CLIENT_ID,
    TEST_CLIENT_SECRET,
    fast_sandbox_config,
    sign_in_sandbox_agent,
)
from crmphone.testing.connector import run_connector_until
from crmphone.testing.pages import chromium
from crmphone_salesforce.emulator import SalesforceEmulator

STANDIN = """
window.__opencti = [];
window.sforce = { opencti: {
  SCREENPOP_TYPE: { SOBJECT: "sobject", SEARCH: "search", NEW_RECORD_MODAL: "newRecord" },
  onClickToDial: function (o) { window.__clickToDial = o.listener; }
}};
["screenPop", "enableClickToDial", "setSoftphonePanelVisibility", "setSoftphoneItemIcon",
 "setSoftphoneItemLabel", "notifyInitializationComplete"].forEach(function (name) {
  window.sforce.opencti[name] = function (o) { if (o && o.callback) o.callback({ success: true }); };
});
"""


@pytest.fixture
async def sandbox() -> AsyncIterator[SandboxServer]:
    """The sandbox platform on loopback, with fast timers."""
    async with SandboxServer(fast_sandbox_config(), host="127.0.0.1", port=0) as server:
        yield server


@pytest.fixture
async def sf(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[SalesforceEmulator]:
    """The Salesforce emulator on loopback; its session id in the environment."""
    async with SalesforceEmulator(seed=0) as emulator:
        monkeypatch.setenv("SF_SESSION_ID", emulator.session_id)
        yield emulator


async def test_a_clicked_number_is_dialled_and_logged_against_the_clicked_record(
    sandbox: SandboxServer, sf: SalesforceEmulator, tmp_path: Path
) -> None:
    """The Task of the dialled call has WhatId = the Account the agent clicked on."""
    agent = sandbox.sandbox.agents[0].id
    owner = sf.model.agent_user_ids[0]
    account = sf.model.records("Account")[0]
    config = parse_config(
        f"""
[platform]
kind = "sandbox"
url = "{sandbox.base_url}"

[agents]
ids = ["{agent}"]
[agents.crm_users]
"{agent}" = "{owner}"

[[adapters]]
name = "salesforce"
instance_url = "{sf.url}"
session_id_env = "SF_SESSION_ID"
ca_file = "{sf.ca_file}"

[outbox]
path = "outbox.sqlite3"
initial_delay = 0.05
max_delay = 0.2
""",
        base_dir=tmp_path,
        environ={
            "CRMPHONE_CLIENT_ID": TEST_CLIENT_ID,
            "CRMPHONE_CLIENT_SECRET": TEST_CLIENT_SECRET,
        },
    )

    async def agents_phone_dials(agent_id: str, number: str) -> str:
        # The agent's own session places the call, as the softphone does (a client-credentials
        # integration cannot dial as an agent).
        tokens = await sign_in_sandbox_agent(sandbox.base_url, agent_id)
        async with PlatformClient(api_base=sandbox.base_url, tokens=tokens) as client:
            return await client.place_call(number)

    token = BridgeToken.generate()
    pages = builtin_pages("salesforce")
    found: list[dict[str, Any]] = []

    async def scenario(connector: Connector, health: Any, _: Any) -> None:
        handler = BridgeCommands(connector, agent_id=agent)
        settings = BridgeSettings(token=token, pages=pages)
        async with BridgeServer(settings, handler) as bridge, chromium() as browser:
            page = await browser.new_page()
            await page.add_init_script(STANDIN)
            await page.goto(f"{bridge.url}/salesforce/softphone.html#token={token.reveal()}")
            await page.wait_for_selector("#connection[data-state=online]", timeout=10_000)
            click = {
                "number": "+15550123456",
                "recordId": account["Id"],
                "recordName": account["Name"],
                "objectType": "Account",
            }
            await page.evaluate(f"window.__clickToDial({json.dumps(click)})")
            async with asyncio.timeout(20):
                while not found:
                    found.extend(
                        task
                        for task in sf.model.records("Task")
                        if task.get("WhatId") == account["Id"] and task.get("Status") == "Completed"
                    )
                    await asyncio.sleep(0.05)

    await run_connector_until(config, scenario, within=60, dialer=agents_phone_dials)
    [task] = found
    assert task["CallType"] == "Outbound"
    assert task["OwnerId"] == owner
    assert task["Subject"] == "Outbound call to +15550123456"
