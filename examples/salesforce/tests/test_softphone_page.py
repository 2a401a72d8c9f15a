"""The Open CTI softphone page in real headless Chromium, against a real bridge on loopback.

``sforce.opencti`` is a recording stand-in (injected before the page's scripts run), so the test
sees every Open CTI call the page makes; everything else is real: the page served by the bridge
with its CSP, the WebSocket, the hello with the token from the URL fragment, the commands.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
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
    builtin_pages,
)
from crmphone.bridge.protocol import event_message, pop_message
from crmphone.events import CallAlerting, CallDirection, ConnectionState, ConnectionStateChanged
from crmphone.testing.pages import RecordingCommandHandler, chromium

HTML_NAME = "<img src=x onerror=alert(1)> Mallory"

# A stand-in for sforce.opencti: records each call, answers each callback with success, and
# keeps the click-to-dial listener so the test can click a number as Salesforce would.
OPENCTI_STANDIN = """
window.__opencti = [];
window.sforce = { opencti: {
  SCREENPOP_TYPE: { SOBJECT: "sobject", SEARCH: "search", NEW_RECORD_MODAL: "newRecord" },
  onClickToDial: function (o) { window.__clickToDial = o.listener; window.__opencti.push(["onClickToDial", {}]); }
}};
["screenPop", "enableClickToDial", "setSoftphonePanelVisibility", "setSoftphoneItemIcon",
 "setSoftphoneItemLabel", "notifyInitializationComplete"].forEach(function (name) {
  window.sforce.opencti[name] = function (options) {
    var copy = JSON.parse(JSON.stringify(options || {}));
    window.__opencti.push([name, copy]);
    if (options && options.callback) { options.callback({ success: true, returnValue: null }); }
  };
});
"""


@pytest.fixture
async def bridge() -> AsyncIterator[tuple[BridgeServer, RecordingCommandHandler, BridgeToken]]:
    """A bridge on loopback serving the softphone page."""
    token = BridgeToken.generate()
    handler = RecordingCommandHandler()
    pages = builtin_pages("salesforce")
    settings = BridgeSettings(token=token, pages=pages)
    async with BridgeServer(settings, handler) as server:
        yield server, handler, token


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Debian's Chromium, headless, driven by Playwright."""
    async with chromium() as launched:
        yield launched


async def open_page(browser: Browser, url: str) -> Page:
    page = await browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("dialog", lambda dialog: errors.append(f"dialog: {dialog.message}"))
    await page.add_init_script(OPENCTI_STANDIN)
    await page.goto(url)
    page.__dict__["errors"] = errors
    return page


async def opencti_calls(page: Page, name: str) -> list[dict[str, Any]]:
    calls = await page.evaluate("window.__opencti")
    return [options for called, options in calls if called == name]


async def until_called(page: Page, name: str, count: int) -> None:
    """Wait until the page made ``count`` calls of Open CTI's ``name`` (the page's CSP forbids
    eval, so Playwright's wait_for_function cannot run there: poll from outside)."""
    async with asyncio.timeout(10):
        while len(await opencti_calls(page, name)) < count:
            await asyncio.sleep(0.02)


def alerting(conversation_id: str, caller_name: str) -> CallAlerting:
    return CallAlerting(
        conversation_id=conversation_id,
        agent_id="agent-1",
        participant_id="part-1",
        at=datetime.now(UTC),
        direction=CallDirection.INBOUND,
        ani="tel:+15550100001",
        dnis="tel:+18005550100",
        caller_name=caller_name,
    )


async def test_a_ringing_call_opens_the_panel_pops_the_record_and_shows_names_as_text(
    bridge: tuple[BridgeServer, RecordingCommandHandler, BridgeToken], browser: Browser
) -> None:
    """Ring → panel visible, the one matching record popped, the caller's name shown as text
    (the HTML in it never becomes markup); the token leaves the address bar."""
    server, handler, token = bridge
    page = await open_page(
        browser, f"{server.url}/salesforce/softphone.html#token={token.reveal()}"
    )
    await page.wait_for_selector("#connection[data-state=online]", timeout=10_000)
    assert "token" not in page.url
    assert await opencti_calls(page, "notifyInitializationComplete")
    assert await opencti_calls(page, "enableClickToDial")

    server.publish(event_message(alerting("conv-1", HTML_NAME)))
    match = CallerMatch(
        number="+15550100001", records=(CrmRecord("Contact", "003000000000001AAA", HTML_NAME),)
    )
    server.publish(pop_message("conv-1", match, agent_id="agent-1"))
    await until_called(page, "screenPop", 1)

    assert {"visible": True} in await opencti_calls(page, "setSoftphonePanelVisibility")
    [pop] = await opencti_calls(page, "screenPop")
    assert pop["type"] == "sobject"
    assert pop["params"] == {"recordId": "003000000000001AAA"}
    assert await page.text_content("#caller-name") == HTML_NAME
    assert await page.query_selector("img") is None
    assert page.__dict__["errors"] == []

    await page.click("#answer")
    answered = await handler.next()
    assert answered == Answer("conv-1")


async def test_many_or_no_matches_pop_a_search_or_a_new_contact(
    bridge: tuple[BridgeServer, RecordingCommandHandler, BridgeToken], browser: Browser
) -> None:
    """Several records → a search page for the number; none → a new Contact with Phone filled."""
    server, _, token = bridge
    page = await open_page(
        browser, f"{server.url}/salesforce/softphone.html#token={token.reveal()}"
    )
    await page.wait_for_selector("#connection[data-state=online]", timeout=10_000)
    two = CallerMatch(
        number="+15550100090",
        records=(CrmRecord("Contact", "003A"), CrmRecord("Lead", "00QB")),
    )
    server.publish(pop_message("conv-2", two))
    server.publish(pop_message("conv-3", CallerMatch(number="+15550199999")))
    await until_called(page, "screenPop", 2)
    search, new = await opencti_calls(page, "screenPop")
    assert search == {"type": "search", "params": {"searchString": "+15550100090"}}
    assert new["type"] == "newRecord"
    assert new["params"]["defaultFieldValues"] == {"Phone": "+15550199999"}


async def test_click_to_dial_sends_the_number_and_the_record_it_came_from(
    bridge: tuple[BridgeServer, RecordingCommandHandler, BridgeToken], browser: Browser
) -> None:
    """A number clicked on an Account dials with that Account, so the call's log links to it."""
    server, handler, token = bridge
    page = await open_page(
        browser, f"{server.url}/salesforce/softphone.html#token={token.reveal()}"
    )
    await page.wait_for_selector("#connection[data-state=online]", timeout=10_000)
    payload = {
        "number": "(555) 010-0001",
        "recordId": "001000000000001AAA",
        "recordName": "Acme <Corp>",
        "objectType": "Account",
    }
    await page.evaluate(f"window.__clickToDial({json.dumps(payload)})")
    dial = await handler.next()
    assert isinstance(dial, Dial)
    assert dial.number == "5550100001"
    assert dial.record == CrmRecord("Account", "001000000000001AAA", "Acme <Corp>")


async def test_the_persistent_connection_indicator_follows_the_phone(
    bridge: tuple[BridgeServer, RecordingCommandHandler, BridgeToken], browser: Browser
) -> None:
    """PERSISTED → the utility bar's icon and the page's badge say the connection is active."""
    server, _, token = bridge
    page = await open_page(
        browser, f"{server.url}/salesforce/softphone.html#token={token.reveal()}"
    )
    await page.wait_for_selector("#connection[data-state=online]", timeout=10_000)
    server.publish(
        event_message(
            ConnectionStateChanged(
                agent_id="agent-1",
                previous=ConnectionState.ESTABLISHING,
                state=ConnectionState.PERSISTED,
                at=datetime.now(UTC),
            )
        )
    )
    await page.wait_for_selector("#persistent[data-state=on]", timeout=10_000)
    assert {"key": "call"} in await opencti_calls(page, "setSoftphoneItemIcon")


async def test_a_wrong_token_asks_for_the_right_one(
    bridge: tuple[BridgeServer, RecordingCommandHandler, BridgeToken], browser: Browser
) -> None:
    """The bridge refuses a wrong token; the page says so and shows the token form."""
    server, _, _ = bridge
    page = await open_page(browser, f"{server.url}/salesforce/softphone.html#token=not-the-token")
    await page.wait_for_selector("#token-form:not([hidden])", timeout=10_000)
    assert "refused" in (await page.text_content("#error") or "")
    assert await page.get_attribute("#connection", "data-state") == "offline"
