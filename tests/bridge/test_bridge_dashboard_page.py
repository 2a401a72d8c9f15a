"""The bridge's dashboard page in real headless Chromium, against a real bridge on loopback.

Everything is real: the page served by the bridge under its CSP, the WebSocket, the hello with the
token from the URL fragment, the messages published by the bridge. The tests read what the page
shows from its DOM (:func:`dashboard_page_helpers.dashboard_state`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from dashboard_page_helpers import (
    agents_roster,
    alerting,
    connected,
    dashboard_state,
    ended,
    held,
    logged,
    open_dashboard,
    png_summary,
    resumed,
    until_shown,
)
from playwright.async_api import Browser

from crmphone.bridge import BridgeServer, BridgeSettings, BridgeToken, builtin_pages
from crmphone.events import (
    ConnectionState,
    ConnectionStateChanged,
    DownReason,
    MicrophoneLive,
    PersistentConnectionDown,
    PersistentConnectionUp,
    PresenceChanged,
    RoutingStatus,
    RoutingStatusChanged,
)
from crmphone.testing.pages import RecordingCommandHandler, chromium

HTML_NAME = "<img src=x onerror=alert(1)> Mallory"
ROSTER = {"a1": "Ada Agent", "a2": "Grace Hopper"}


@pytest.fixture
async def dashboard_bridge() -> AsyncIterator[tuple[BridgeServer, RecordingCommandHandler]]:
    """A bridge on loopback serving the dashboard, with a handler recording any command."""
    handler = RecordingCommandHandler()
    settings = BridgeSettings(token=BridgeToken.generate(), pages=builtin_pages("dashboard"))
    async with BridgeServer(settings, handler) as server:
        yield server, handler


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Debian's Chromium, headless, driven by Playwright."""
    async with chromium() as launched:
        yield launched


def now() -> datetime:
    return datetime.now(UTC)


def connection_state(agent_id: str, state: ConnectionState) -> ConnectionStateChanged:
    return ConnectionStateChanged(
        agent_id=agent_id, previous=ConnectionState.IDLE, state=state, at=now()
    )


def agents_by_id(state: dict[str, object]) -> dict[str, dict[str, str]]:
    agents = state["agents"]
    assert isinstance(agents, list)
    return {agent["id"]: agent for agent in agents}


async def test_the_roster_appears_in_its_order_and_an_agent_seen_first_keeps_a_row(
    dashboard_bridge: tuple[BridgeServer, RecordingCommandHandler], browser: Browser
) -> None:
    """An agent seen in an event before the roster gets a row named by its id; the roster then
    shows its agents by name in its order, and that agent keeps its row after them."""
    bridge, handler = dashboard_bridge
    dashboard = await open_dashboard(browser, bridge)
    assert "token" not in dashboard.page.url

    bridge.publish(MicrophoneLive(agent_id="a9", live=True, at=now()))
    state = await until_shown(dashboard.page, lambda s: len(s["agents"]) == 1)
    assert [(a["id"], a["name"], a["microphone"]) for a in state["agents"]] == [
        ("a9", "a9", "live")
    ]

    bridge.publish(agents_roster(ROSTER))
    state = await until_shown(dashboard.page, lambda s: len(s["agents"]) == 3)
    assert [(a["id"], a["name"]) for a in state["agents"]] == [
        ("a1", "Ada Agent"),
        ("a2", "Grace Hopper"),
        ("a9", "a9"),
    ]
    assert state["stats"]["agents"] == "3"

    # A new roster replaces the last: a2 leaves, a3 arrives, a9 (never in a roster) stays.
    bridge.publish(agents_roster({"a3": "Alan Turing", "a1": "Ada A."}))
    state = await until_shown(dashboard.page, lambda s: s["agents"][0]["id"] == "a3")
    assert [(a["id"], a["name"]) for a in state["agents"]] == [
        ("a3", "Alan Turing"),
        ("a1", "Ada A."),
        ("a9", "a9"),
    ]
    assert dashboard.problems == []
    assert handler.commands == []


async def test_persistent_microphone_and_presence_follow_events_for_the_right_agent(
    dashboard_bridge: tuple[BridgeServer, RecordingCommandHandler], browser: Browser
) -> None:
    """Each phone and presence event changes its own agent's icons and status only; unknown
    messages and events change nothing."""
    bridge, _ = dashboard_bridge
    dashboard = await open_dashboard(browser, bridge)
    bridge.publish(agents_roster(ROSTER))
    state = await until_shown(dashboard.page, lambda s: len(s["agents"]) == 2)
    for agent in state["agents"]:
        assert (agent["persistent"], agent["microphone"], agent["presence"]) == (
            "unknown",
            "unknown",
            "",
        )

    bridge.publish(connection_state("a2", ConnectionState.ESTABLISHING))
    state = await until_shown(
        dashboard.page, lambda s: agents_by_id(s)["a2"]["persistent"] == "establishing"
    )
    bridge.publish(connection_state("a2", ConnectionState.PERSISTED))
    bridge.publish(MicrophoneLive(agent_id="a2", live=True, at=now()))
    bridge.publish(
        PresenceChanged(
            agent_id="a1",
            system_presence="ON_QUEUE",
            presence_id=None,
            message="",
            previous="AVAILABLE",
            at=now(),
        )
    )
    bridge.publish(
        RoutingStatusChanged(agent_id="a1", status=RoutingStatus.IDLE, previous=None, at=now())
    )
    state = await until_shown(dashboard.page, lambda s: agents_by_id(s)["a1"]["routing"] != "")
    a1, a2 = agents_by_id(state)["a1"], agents_by_id(state)["a2"]
    assert (a2["persistent"], a2["microphone"], a2["presence"]) == ("on", "live", "")
    assert (a1["persistent"], a1["microphone"]) == ("unknown", "unknown")
    assert (a1["presence"], a1["routing"], a1["presence_text"]) == (
        "ON_QUEUE",
        "IDLE",
        "On queue · Idle",
    )
    assert state["stats"]["persistent"] == "1"

    # Ignored: a message type and an event the page does not know, and one without agent_id.
    bridge.publish({"type": "mystery", "agent_id": "a1"})
    bridge.publish({"type": "event", "event": "phone.teleported", "data": {"agent_id": "a1"}})
    bridge.publish({"type": "event", "event": "phone.microphone_live", "data": {"live": False}})
    bridge.publish(MicrophoneLive(agent_id="a2", live=False, at=now()))
    bridge.publish(
        PersistentConnectionDown(
            agent_id="a2",
            station_id=None,
            reason=DownReason.IDLE_TIMEOUT,
            detail="no call for 600 s",
            at=now(),
        )
    )
    state = await until_shown(
        dashboard.page, lambda s: agents_by_id(s)["a2"]["persistent"] == "off"
    )
    assert agents_by_id(state)["a2"]["microphone"] == "off"
    assert agents_by_id(state)["a1"] == a1
    assert [agent["id"] for agent in state["agents"]] == ["a1", "a2"]

    bridge.publish(
        PersistentConnectionUp(
            agent_id="a1", station_id="st-1", via="login", conversation_id=None, at=now()
        )
    )
    bridge.publish(connection_state("a2", ConnectionState.FAILED))
    state = await until_shown(
        dashboard.page, lambda s: agents_by_id(s)["a2"]["persistent"] == "failed"
    )
    assert agents_by_id(state)["a1"]["persistent"] == "on"
    assert dashboard.problems == []


async def test_a_call_rings_connects_holds_and_leaves_the_live_list_when_it_ends(
    dashboard_bridge: tuple[BridgeServer, RecordingCommandHandler], browser: Browser
) -> None:
    """A call shows ringing with its caller, number, agent and time, takes the CRM record's name
    from a single-match pop, follows connected and on hold, and is gone once it ends."""
    bridge, _ = dashboard_bridge
    dashboard = await open_dashboard(browser, bridge)
    bridge.publish(agents_roster(ROSTER))
    bridge.publish(alerting("conv-1", "a2", caller_name="Caller ID Name", ago=65))
    state = await until_shown(dashboard.page, lambda s: len(s["calls"]) == 1)
    [call] = state["calls"]
    assert {key: call[key] for key in ("call", "agent_id", "state", "caller", "number")} == {
        "call": "conv-1",
        "agent_id": "a2",
        "state": "ringing",
        "caller": "Caller ID Name",
        "number": "+15550100001",
    }
    assert call["agent"] == "Grace Hopper"
    assert call["duration"].startswith("1:0")  # rang 65 s ago by the event's own clock
    rang_for = call["duration"]
    await until_shown(dashboard.page, lambda s: s["calls"][0]["duration"] != rang_for)
    a2 = agents_by_id(state)["a2"]
    assert a2["call"] == "conv-1"
    assert a2["call_text"] == "Ringing Caller ID Name"
    assert agents_by_id(state)["a1"]["call"] == ""
    assert state["stats"]["calls"] == "1"

    bridge.publish(
        {
            "type": "pop",
            "call": "conv-1",
            "agent_id": "a2",
            "outcome": "one",
            "records": [{"kind": "Contact", "id": "003000000000001AAA", "name": "Ada Lovelace"}],
            "number": "+15550100001",
        }
    )
    state = await until_shown(dashboard.page, lambda s: s["calls"][0]["caller"] == "Ada Lovelace")
    assert state["calls"][0]["kind"] == "Contact"

    bridge.publish(connected("conv-1", "a2"))
    state = await until_shown(dashboard.page, lambda s: s["calls"][0]["state"] == "connected")
    assert state["calls"][0]["duration"] in ("0:00", "0:01")
    assert agents_by_id(state)["a2"]["call_text"] == "Connected Ada Lovelace"

    bridge.publish(held("conv-1", "a2"))
    await until_shown(dashboard.page, lambda s: s["calls"][0]["state"] == "held")
    bridge.publish(resumed("conv-1", "a2"))
    await until_shown(dashboard.page, lambda s: s["calls"][0]["state"] == "connected")

    bridge.publish(ended("conv-1", "a2"))
    state = await until_shown(dashboard.page, lambda s: s["calls"] == [])
    assert agents_by_id(state)["a2"]["call"] == ""
    assert state["stats"]["calls"] == "0"

    # A late event of the ended call does not bring it back; a new call shows.
    bridge.publish(resumed("conv-1", "a2"))
    bridge.publish(alerting("conv-2", "a1", caller_name="Second Caller"))
    state = await until_shown(dashboard.page, lambda s: len(s["calls"]) == 1)
    assert [(c["call"], c["agent"]) for c in state["calls"]] == [("conv-2", "Ada Agent")]
    assert dashboard.problems == []


async def test_logged_records_are_one_row_per_call_newest_first_and_at_most_20(
    dashboard_bridge: tuple[BridgeServer, RecordingCommandHandler], browser: Browser
) -> None:
    """Each (adapter, call) is one row updated in place with its latest stage (never an earlier
    one), the newest row first, and only the 20 newest stay."""
    bridge, _ = dashboard_bridge
    dashboard = await open_dashboard(browser, bridge)
    contact = {"kind": "Contact", "id": "003000000000001AAA", "name": "Ada Lovelace"}
    bridge.publish(logged("salesforce", "conv-1", "connected", record=contact))
    bridge.publish(logged("zendesk", "conv-1", "connected"))
    bridge.publish(logged("salesforce", "conv-2", "connected"))
    state = await until_shown(dashboard.page, lambda s: len(s["records"]) == 3)
    assert [(r["adapter"], r["call"], r["stage"]) for r in state["records"]] == [
        ("salesforce", "conv-2", "connected"),
        ("zendesk", "conv-1", "connected"),
        ("salesforce", "conv-1", "connected"),
    ]
    assert state["records"][2]["record"] == "Ada Lovelace"
    assert state["records"][1]["record"] == "No record linked"

    bridge.publish(logged("salesforce", "conv-1", "wrapped_up"))
    bridge.publish(logged("salesforce", "conv-1", "ended"))  # a late retry of an earlier stage
    bridge.publish(logged("zendesk", "conv-1", "ended", record={"kind": "user", "id": "42"}))
    state = await until_shown(dashboard.page, lambda s: s["records"][1]["stage"] == "ended")
    assert [(r["adapter"], r["call"], r["stage"]) for r in state["records"]] == [
        ("salesforce", "conv-2", "connected"),
        ("zendesk", "conv-1", "ended"),
        ("salesforce", "conv-1", "wrapped_up"),
    ]
    assert state["records"][2]["record"] == "Ada Lovelace"  # kept: the later write named none
    assert (state["records"][1]["record"], state["records"][1]["kind"]) == ("42", "user")

    for number in range(3, 28):
        bridge.publish(logged("salesforce", f"conv-{number}", "connected"))
    state = await until_shown(dashboard.page, lambda s: s["records"][0]["call"] == "conv-27")
    assert [r["call"] for r in state["records"]] == [f"conv-{n}" for n in range(27, 7, -1)]
    assert state["stats"]["records"] == "28"
    assert dashboard.problems == []


async def test_html_in_names_is_shown_as_text(
    dashboard_bridge: tuple[BridgeServer, RecordingCommandHandler], browser: Browser
) -> None:
    """Markup in an agent's, a caller's or a record's name shows as those characters and never
    becomes an element (nor runs)."""
    bridge, _ = dashboard_bridge
    dashboard = await open_dashboard(browser, bridge)
    bridge.publish(agents_roster({"a1": HTML_NAME}))
    bridge.publish(alerting("conv-1", "a1", caller_name=HTML_NAME))
    bridge.publish(
        logged(
            "salesforce",
            "conv-1",
            "connected",
            caller_name=HTML_NAME,
            record={"kind": "Contact", "id": "003000000000001AAA", "name": HTML_NAME},
        )
    )
    state = await until_shown(
        dashboard.page, lambda s: len(s["records"]) == 1 and len(s["calls"]) == 1
    )
    assert state["agents"][0]["name"] == HTML_NAME
    assert state["calls"][0]["caller"] == HTML_NAME
    assert state["calls"][0]["agent"] == HTML_NAME
    assert state["records"][0]["record"] == HTML_NAME
    assert state["records"][0]["caller"].startswith(HTML_NAME)
    assert await dashboard.page.query_selector("img") is None
    assert dashboard.problems == []


async def test_a_wrong_token_brings_up_the_token_form_and_the_right_one_connects(
    dashboard_bridge: tuple[BridgeServer, RecordingCommandHandler], browser: Browser
) -> None:
    """The bridge refuses a wrong token: the page asks for one, and the pasted right one brings
    it live."""
    bridge, _ = dashboard_bridge
    dashboard = await open_dashboard(browser, bridge, token="not-the-token", live=False)
    state = await until_shown(dashboard.page, lambda s: s["token_form"])
    assert state["connection"] == "token"
    assert bridge.clients == 0

    await dashboard.page.fill("#token", bridge.token.reveal())
    await dashboard.page.click("#token-form button[type=submit]")
    state = await until_shown(dashboard.page, lambda s: s["connection"] == "online")
    assert not state["token_form"]
    assert bridge.clients == 1
    assert dashboard.problems == []


async def test_a_screenshot_is_a_png_of_the_page_size_that_is_not_blank(
    dashboard_bridge: tuple[BridgeServer, RecordingCommandHandler], browser: Browser
) -> None:
    """A screenshot of a dashboard with agents, calls and records is a PNG of the viewport's
    size with many colours, none covering most of it."""
    bridge, _ = dashboard_bridge
    dashboard = await open_dashboard(browser, bridge, viewport=(1024, 640))
    bridge.publish(agents_roster(ROSTER))
    bridge.publish(connection_state("a1", ConnectionState.ACTIVE_CALL))
    bridge.publish(MicrophoneLive(agent_id="a1", live=True, at=now()))
    bridge.publish(alerting("conv-1", "a1", caller_name="Marie Curie", ago=30))
    bridge.publish(connected("conv-1", "a1", ago=25))
    bridge.publish(alerting("conv-2", "a2", caller_name="Pierre Curie"))
    bridge.publish(logged("salesforce", "conv-0", "wrapped_up", caller_name="Ada Lovelace"))
    await until_shown(dashboard.page, lambda s: len(s["calls"]) == 2 and len(s["records"]) == 1)

    width, height, colours = png_summary(await dashboard.page.screenshot())
    assert (width, height) == (1024, 640)
    sampled = sum(colours.values())
    assert len(colours) > 50
    assert colours.most_common(1)[0][1] < 0.7 * sampled
    assert (await dashboard_state(dashboard.page))["connection"] == "online"
    assert dashboard.problems == []
