"""The Zendesk app (top bar) in real headless Chromium, against a real bridge on loopback.

The ZAF client is a recording stand-in (injected before the app's scripts run), giving the app
its settings (the bridge's URL and token) and recording every ``invoke``; everything else is real:
the app's files served by the bridge under its CSP, the WebSocket, the hello, the commands.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page

from crmphone.adapters import CallerMatch, CrmRecord
from crmphone.bridge import (
    Answer,
    BridgeServer,
    BridgeSettings,
    BridgeToken,
    Dial,
)
from crmphone.bridge.protocol import event_message, pop_message
from crmphone.events import (
    CallAlerting,
    CallDirection,
    MicrophoneLive,
    PersistentConnectionUp,
)
from crmphone.testing.pages import RecordingCommandHandler, chromium

APP = Path(__file__).resolve().parents[1] / "app"
HTML_NAME = "<img src=x onerror=alert(1)> Mallory"


def zaf_standin(settings: Mapping[str, str]) -> str:
    """A ZAF client that answers metadata() with ``settings`` and records every invoke()."""
    return f"""
window.__zaf = [];
window.ZAFClient = {{ init: function () {{ return {{
  metadata: function () {{ return Promise.resolve({{ settings: {json.dumps(dict(settings))} }}); }},
  invoke: function () {{
    window.__zaf.push(Array.prototype.slice.call(arguments));
    return Promise.resolve({{}});
  }},
  on: function () {{}}
}}; }} }};
"""


@pytest.fixture
async def bridge() -> AsyncIterator[tuple[BridgeServer, RecordingCommandHandler, BridgeToken]]:
    """A bridge on loopback serving the app's files (links resolved, as a package would)."""
    token = BridgeToken.generate()
    handler = RecordingCommandHandler()
    assets = APP / "assets"
    pages = {f"/zendesk/{p.name}": p.resolve() for p in assets.iterdir()}
    async with BridgeServer(BridgeSettings(token=token, pages=pages), handler) as server:
        yield server, handler, token


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Debian's Chromium, headless, driven by Playwright."""
    async with chromium() as launched:
        yield launched


async def open_app(browser: Browser, server: BridgeServer, token: str) -> tuple[Page, list[str]]:
    page = await browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("dialog", lambda dialog: errors.append(f"dialog: {dialog.message}"))
    await page.add_init_script(zaf_standin({"bridge_url": server.ws_url, "bridge_token": token}))
    await page.goto(f"{server.url}/zendesk/iframe.html")
    await page.wait_for_selector("#connection[data-state=online]", timeout=10_000)
    return page, errors


async def invoked(page: Page) -> list[list[Any]]:
    calls: list[list[Any]] = await page.evaluate("window.__zaf")
    return calls


async def until_invoked(page: Page, count: int) -> list[list[Any]]:
    async with asyncio.timeout(10):
        while len(calls := await invoked(page)) < count:
            await asyncio.sleep(0.02)
    return calls


def test_the_manifest_names_a_top_bar_location_and_the_bridge_settings() -> None:
    """The app is a top-bar app whose iframe is the tested page, with the bridge settings."""
    manifest = json.loads((APP / "manifest.json").read_text())
    assert manifest["location"]["support"]["top_bar"]["url"] == "assets/iframe.html"
    assert {p["name"] for p in manifest["parameters"]} == {"bridge_url", "bridge_token"}
    assert (APP / "assets" / "iframe.html").is_file()
    assert json.loads((APP / "translations" / "en.json").read_text())["app"]["name"]


async def test_a_ringing_call_opens_the_popover_and_routes_to_the_caller(
    bridge: tuple[BridgeServer, RecordingCommandHandler, BridgeToken], browser: Browser
) -> None:
    """Ring → the popover shows, the one matching user is routed to, the name shown as text."""
    server, handler, token = bridge
    page, errors = await open_app(browser, server, token.reveal())
    server.publish(
        event_message(
            CallAlerting(
                conversation_id="conv-1",
                agent_id="agent-1",
                participant_id="part-1",
                at=datetime.now(UTC),
                direction=CallDirection.INBOUND,
                ani="tel:+15550100013",
                caller_name=HTML_NAME,
            )
        )
    )
    server.publish(
        pop_message(
            "conv-1",
            CallerMatch(number="+15550100013", records=(CrmRecord("user", "9001", HTML_NAME),)),
        )
    )
    calls = await until_invoked(page, 2)
    assert ["popover", "show"] in calls
    assert ["routeTo", "user", "9001"] in calls
    assert await page.text_content("#caller-name") == HTML_NAME
    assert await page.query_selector("img") is None
    assert errors == []
    await page.click("#answer")
    assert await handler.next() == Answer("conv-1")


async def test_several_matches_route_nowhere_and_a_ticket_pop_routes_to_the_ticket(
    bridge: tuple[BridgeServer, RecordingCommandHandler, BridgeToken], browser: Browser
) -> None:
    """An ambiguous pop routes nowhere; a ticket pop opens the ticket."""
    server, _, token = bridge
    page, _ = await open_app(browser, server, token.reveal())
    two = CallerMatch(
        number="+15550100049", records=(CrmRecord("user", "1"), CrmRecord("user", "2"))
    )
    server.publish(pop_message("conv-2", two))
    server.publish(
        pop_message("conv-2", CallerMatch(number=None, records=(CrmRecord("ticket", "77"),)))
    )
    calls = await until_invoked(page, 1)
    assert calls == [["routeTo", "ticket", "77"]]


async def test_the_phone_shows_the_persistent_connection_and_microphone_and_dials(
    bridge: tuple[BridgeServer, RecordingCommandHandler, BridgeToken], browser: Browser
) -> None:
    """Connection up and microphone live show in the panel; the dial form sends a dial."""
    server, handler, token = bridge
    page, _ = await open_app(browser, server, token.reveal())
    now = datetime.now(UTC)
    server.publish(
        event_message(
            PersistentConnectionUp(
                agent_id="agent-1", station_id="st-1", via="login", conversation_id=None, at=now
            )
        )
    )
    server.publish(event_message(MicrophoneLive(agent_id="agent-1", live=True, at=now)))
    await page.wait_for_selector("#persistent[data-state=on]", timeout=10_000)
    await page.wait_for_selector("#microphone[data-state=on]", timeout=10_000)
    await page.fill("#dial-number", "+1 555 010 0002")
    await page.click("#dial")
    dial = await handler.next()
    assert isinstance(dial, Dial)
    assert dial.number == "+15550100002"
    assert dial.record is None


async def test_without_a_token_the_agent_is_asked_for_one(
    bridge: tuple[BridgeServer, RecordingCommandHandler, BridgeToken], browser: Browser
) -> None:
    """No token in the settings: the token form shows; pasting the right one connects."""
    server, _, token = bridge
    page = await browser.new_page()
    await page.add_init_script(zaf_standin({"bridge_url": server.ws_url}))
    await page.goto(f"{server.url}/zendesk/iframe.html")
    await page.wait_for_selector("#token-form:not([hidden])", timeout=10_000)
    await page.fill("#token", token.reveal())
    await page.click("#token-form button")
    await page.wait_for_selector("#connection[data-state=online]", timeout=10_000)
