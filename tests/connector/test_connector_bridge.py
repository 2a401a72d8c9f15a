"""``crmphone run`` with ``[bridge]`` and ``[phone]``: a page on the bridge sees the agent's calls,
who is calling, what was written, and drives the agent's own phone (answer, hang up, dial)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Origin

from crmphone.adapters import CrmRecord, LogStage
from crmphone.config import ConnectorConfig, parse_config
from crmphone.errors import ConfigError
from crmphone.sandbox import SandboxServer
from crmphone.service import Services, run_connector
from crmphone.testing import TEST_CLIENT_ID, TEST_CLIENT_SECRET
from crmphone.testing.recording import RecordingAdapter

ENVIRON = {"CRMPHONE_CLIENT_ID": TEST_CLIENT_ID, "CRMPHONE_CLIENT_SECRET": TEST_CLIENT_SECRET}
CALLER = "+15551230042"
WAIT = 15.0

pytestmark = pytest.mark.timeout(90)


def desk_config(sandbox: SandboxServer, tmp_path: Path, agent: str) -> ConnectorConfig:
    """A connector with the bridge (any free port) and ``agent``'s phone, against ``sandbox``."""
    text = f"""
[platform]
kind = "sandbox"
url = "{sandbox.base_url}"

[outbox]
path = "outbox.sqlite3"
initial_delay = 0.05
max_delay = 0.2

[bridge]
port = 0

[phone]
agent = "{agent}"
"""
    return parse_config(text, base_dir=tmp_path, environ=ENVIRON)


class Page:
    """A CRM page on the bridge's WebSocket, as a browser would hold it (with an allowed origin)."""

    def __init__(self, socket: ClientConnection) -> None:
        self.socket = socket
        self.seen: list[dict[str, Any]] = []
        self._ids = 0

    async def next_where(
        self, accepts: Callable[[dict[str, Any]], bool], within: float = WAIT
    ) -> dict[str, Any]:
        """The first message from now on (or already seen and not yet taken) that ``accepts``."""
        async with asyncio.timeout(within):
            while True:
                message = json.loads(await self.socket.recv())
                self.seen.append(message)
                if accepts(message):
                    return message

    async def event(self, name: str, conversation_id: str | None = None) -> dict[str, Any]:
        """The next ``name`` event (of ``conversation_id``, when given)."""
        return await self.next_where(
            lambda m: (
                m["type"] == "event"
                and m["event"] == name
                and (conversation_id is None or m["data"].get("conversation_id") == conversation_id)
            )
        )

    async def command(self, command: str, **fields: Any) -> dict[str, Any]:
        """Send ``command``; return its result."""
        self._ids += 1
        ident = self._ids
        await self.socket.send(
            json.dumps({"type": "command", "id": ident, "command": command, **fields})
        )
        return await self.next_where(lambda m: m["type"] == "result" and m["id"] == ident)


async def open_page(services: Services, kind: str) -> Page:
    """Connect as a ``kind`` page with the install's token; return it after the welcome."""
    assert services.bridge is not None
    token = services.config.bridge.token_file.read_text().strip()  # type: ignore[union-attr]
    socket = await connect(services.bridge.ws_url, origin=Origin("https://acme.my.salesforce.com"))
    await socket.send(json.dumps({"type": "hello", "token": token, "client": kind}))
    page = Page(socket)
    welcome = await page.next_where(lambda m: m["type"] == "welcome")
    assert welcome["client"] == kind
    return page


async def run_desk(
    config: ConnectorConfig,
    adapter: RecordingAdapter,
    scenario: Callable[[Services], Awaitable[None]],
) -> None:
    """Run the connector of ``config`` with ``adapter`` (instance ``salesforce``, as a Salesforce page expects) while ``scenario``
    plays; stop and drain afterwards."""
    stop = asyncio.Event()

    async def play(services: Services) -> None:
        try:
            await scenario(services)
        finally:
            stop.set()

    async with asyncio.timeout(60):
        await run_connector(config, stop=stop, adapters={"salesforce": adapter}, on_started=play)


async def test_a_page_answers_and_hangs_up_the_agents_call_and_sees_it_logged(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    """The page sees the call ring and who it is, answers it on the agent's phone, mutes and holds
    it, hangs it up, and sees the CRM write; a dashboard opened mid-call catches up on the call from the replay."""
    agent = sandbox.sandbox.agents[0].id
    ada = CrmRecord(kind="Contact", id="003A", name="Ada <b>Lovelace</b>")
    adapter = RecordingAdapter(records={CALLER: [ada]})

    async def scenario(services: Services) -> None:
        page = await open_page(services, "salesforce")
        roster = await page.next_where(lambda m: m["type"] == "agents")
        assert {entry["id"] for entry in roster["agents"]} == {a.id for a in sandbox.sandbox.agents}
        calls = sandbox.sandbox.calls
        conversation = await calls.place_inbound(agent, ani=CALLER, auto=False)
        alerting = await page.event("call.alerting", conversation)
        assert alerting["data"]["customer_number"] == CALLER
        pop = await page.next_where(lambda m: m["type"] == "pop" and m["call"] == conversation)
        assert pop["adapter"] == "salesforce"
        assert pop["records"] == [ada.to_json()]

        dashboard = await open_page(services, "dashboard")
        caught_up = await dashboard.event("call.alerting", conversation)
        assert caught_up["data"]["agent_id"] == agent

        answered = await page.command("answer", conversation_id=conversation)
        assert answered["ok"], answered
        await page.event("call.connected", conversation)
        logged = await page.next_where(
            lambda m: m["type"] == "logged" and m["stage"] == "connected"
        )
        assert logged["record"] == ada.to_json()
        assert logged["adapter"] == "salesforce"

        for command, fields in (("mute", {"muted": True}), ("hold", {"held": True})):
            done = await page.command(command, conversation_id=conversation, **fields)
            assert done["ok"], done
        await page.event("call.held", conversation)
        resumed = await page.command("hold", conversation_id=conversation, held=False)
        assert resumed["ok"], resumed
        await page.event("call.resumed", conversation)
        status = services.phone.status if services.phone else None
        assert status is not None
        assert status.call is not None
        assert status.call.muted
        hung_up = await page.command("hangup", conversation_id=conversation)
        assert hung_up["ok"], hung_up
        await page.event("call.ended", conversation)
        await dashboard.event("call.ended", conversation)
        unknown = await page.command("answer", conversation_id=conversation)
        assert not unknown["ok"]
        assert unknown["error"]["code"] == "invalid_state"
        await page.socket.close()
        await dashboard.socket.close()

    await run_desk(desk_config(sandbox, tmp_path, agent), adapter, scenario)
    (log,) = adapter.logs.values()
    assert log.stage >= LogStage.ENDED
    assert log.answered
    assert log.record == ada


async def test_a_pages_dial_is_placed_by_the_agents_phone_and_logged_against_its_record(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    """Click-to-dial from a page: the agent's own phone places the call, and its log links to the
    record the page sent."""
    agent = sandbox.sandbox.agents[1].id
    adapter = RecordingAdapter()
    acme = CrmRecord(kind="Account", id="001B", name="Acme")

    async def scenario(services: Services) -> None:
        page = await open_page(services, "salesforce")
        result = await page.command("dial", number="+1 (555) 010-0100", record=acme.to_json())
        assert result["ok"], result
        conversation = result["data"]["conversation_id"]
        await page.event("call.connected", conversation)
        hung_up = await page.command("hangup", conversation_id=conversation)
        assert hung_up["ok"], hung_up
        await page.next_where(lambda m: m["type"] == "logged" and m["stage"] == "ended")
        stopped = await page.command("stop_persistent")
        assert stopped["ok"], stopped
        await page.socket.close()

    await run_desk(desk_config(sandbox, tmp_path, agent), adapter, scenario)
    (log,) = adapter.logs.values()
    assert log.linked_record == acme
    assert log.customer_number == "+15550100100"


async def test_pages_see_only_the_desk_agents_calls_but_the_dashboard_sees_all(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    """A CRM page shows its own agent's calls; another agent's call reaches the dashboard only."""
    desk, other = (a.id for a in sandbox.sandbox.agents[:2])
    adapter = RecordingAdapter()

    async def scenario(services: Services) -> None:
        page = await open_page(services, "salesforce")
        dashboard = await open_page(services, "dashboard")
        theirs = await sandbox.sandbox.calls.place_inbound(other, auto=False)
        await dashboard.event("call.alerting", theirs)
        ours = await sandbox.sandbox.calls.place_inbound(desk, auto=False)
        await page.event("call.alerting", ours)
        assert not [
            m for m in page.seen if m["type"] == "event" and m["data"].get("agent_id") == other
        ]
        await page.socket.close()
        await dashboard.socket.close()

    await run_desk(desk_config(sandbox, tmp_path, desk), adapter, scenario)


def test_bridge_and_phone_settings_are_checked_with_the_key_named(tmp_path: Path) -> None:
    """Bad [bridge]/[phone] settings are ConfigErrors naming the key; Genesys needs the agent's
    token from the environment, and the token never appears in the config's repr."""
    base = '[outbox]\npath = "o.sqlite3"\n'
    cases = {
        "[bridge]\nport = 70000\n": "bridge.port",
        '[bridge]\npages = ["salesforce", "zendesk", "dashbord"]\n': "bridge.pages[2]",
        '[bridge]\ntls_cert_file = "c.pem"\n': "bridge.tls_key_file",
        '[bridge]\ntoken = "abc"\n': "bridge.token",
        '[bridge.page_adapters]\nsalesforce = "nope"\n': "bridge.page_adapters.salesforce",
        '[phone]\nauto_answer = "yes"\nagent = "a"\n': "phone.auto_answer",
        "[phone]\nauto_answer = true\n": "phone.agent",
    }
    for text, key in cases.items():
        with pytest.raises(ConfigError) as caught:
            parse_config(base + text, base_dir=tmp_path, environ=ENVIRON)
        assert caught.value.key == key, (text, caught.value)
    genesys = """
[platform]
kind = "genesys"
region = "mypurecloud.de"
[agents]
ids = ["a"]
[phone]
agent = "a"
"""
    with pytest.raises(ConfigError) as caught:
        parse_config(base + genesys, base_dir=tmp_path, environ=ENVIRON)
    assert caught.value.key == "phone.token_env"
    secret = "agent-token-that-must-not-show"
    config = parse_config(
        base + genesys, base_dir=tmp_path, environ={**ENVIRON, "CRMPHONE_AGENT_TOKEN": secret}
    )
    assert config.phone is not None
    assert config.phone.token == secret
    assert secret not in repr(config)
    bridge = parse_config(base + "[bridge]\n", base_dir=tmp_path, environ=ENVIRON).bridge
    assert bridge is not None
    assert bridge.enabled
    assert bridge.port == 8765
    assert bridge.host == "127.0.0.1"
    assert bridge.token_file == tmp_path / "crmphone-bridge.token"
