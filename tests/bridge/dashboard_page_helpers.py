"""What tests of the bridge's dashboard page share: reading what the page shows, the bridge's
messages for it, and a look inside a screenshot.

.. code-block:: python

    dashboard = await open_dashboard(browser, bridge)   # waits until it shows "live"
    bridge.publish(agents_roster({"a1": "Ada Agent"}))
    state = await until_shown(dashboard.page, lambda s: len(s["agents"]) == 1)  # polls
    state = await dashboard_state(dashboard.page)       # what it shows now, as plain data
    width, height, colours = png_summary(await dashboard.page.screenshot())
    assert dashboard.problems == []                     # no script error, no CSP refusal
"""

from __future__ import annotations

import asyncio
import collections
import struct
import zlib
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

import attrs

from crmphone.bridge import BridgeServer
from crmphone.events import (
    CallAlerting,
    CallConnected,
    CallDirection,
    CallEnded,
    CallHeld,
    CallResumed,
)

if TYPE_CHECKING:
    from playwright.async_api import Browser, ConsoleMessage, Page

__all__ = [
    "DASHBOARD_PATH",
    "OpenDashboard",
    "agents_roster",
    "alerting",
    "connected",
    "dashboard_state",
    "ended",
    "held",
    "logged",
    "open_dashboard",
    "png_summary",
    "resumed",
    "until_shown",
]

DASHBOARD_PATH: Final = "/dashboard/index.html"
"""Where the bridge serves the dashboard (``builtin_pages("dashboard")``)."""

WAIT: Final = 10.0
"""The longest the page may take to show something: a bound, never a sleep."""

_POLL: Final = 0.02

# Reads the page's DOM into plain data. Runs through the DevTools protocol, which the page's CSP
# does not govern (Playwright's wait_for_function would need eval inside the page, which it does).
_READ_STATE: Final = """() => {
  const text = (root, selector) => {
    const node = root.querySelector(selector);
    return node ? node.textContent : "";
  };
  const all = (selector) => Array.from(document.querySelectorAll(selector));
  return {
    connection: document.getElementById("connection").dataset.state,
    connection_text: document.getElementById("connection").textContent,
    token_form: !document.getElementById("token-form").hidden,
    stats: {
      agents: text(document, "#stat-agents"),
      persistent: text(document, "#stat-persistent"),
      calls: text(document, "#stat-calls"),
      records: text(document, "#stat-records"),
    },
    agents: all("#agents > li").map((card) => ({
      id: card.dataset.agentId,
      name: text(card, ".agent-name"),
      persistent: card.dataset.persistent,
      microphone: card.dataset.microphone,
      presence: card.dataset.presence,
      routing: card.dataset.routing,
      presence_text: text(card, ".presence .chip-label"),
      call: card.dataset.call,
      call_text: text(card, ".agent-call-state") + " " + text(card, ".agent-call-who"),
    })),
    calls: all("#calls > li").map((row) => ({
      call: row.dataset.call,
      agent_id: row.dataset.agentId,
      state: row.dataset.state,
      state_text: text(row, ".call-state-label"),
      caller: text(row, ".caller-name-text"),
      kind: text(row, ".caller-kind"),
      number: text(row, ".caller-number"),
      agent: text(row, ".call-agent-name"),
      duration: text(row, ".call-duration"),
    })),
    records: all("#records > tr").map((row) => ({
      adapter: row.dataset.adapter,
      call: row.dataset.call,
      stage: row.dataset.stage,
      record: text(row, ".record-name"),
      kind: text(row, ".record-kind"),
      caller: text(row, ".cell-caller"),
    })),
  };
}"""


@attrs.define
class OpenDashboard:
    """A dashboard open in a browser tab: the ``page``, and the ``problems`` it has had so far
    (uncaught script errors, console errors such as CSP refusals, dialogs)."""

    page: Page
    problems: list[str] = attrs.Factory(list)


async def open_dashboard(
    browser: Browser,
    bridge: BridgeServer,
    *,
    token: str | None = None,
    viewport: tuple[int, int] = (1280, 800),
    live: bool = True,
) -> OpenDashboard:
    """Open the dashboard of ``bridge`` in a new tab with ``token`` in its URL fragment (by
    default the bridge's own) and, when ``live``, wait until it shows the connection live."""
    width, height = viewport
    page = await browser.new_page(viewport={"width": width, "height": height})
    opened = OpenDashboard(page)

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            opened.problems.append(f"console: {message.text}")

    page.on("pageerror", lambda error: opened.problems.append(f"error: {error}"))
    page.on("console", on_console)
    page.on("dialog", lambda dialog: opened.problems.append(f"dialog: {dialog.message}"))
    secret = token if token is not None else bridge.token.reveal()
    await page.goto(f"{bridge.url}{DASHBOARD_PATH}#token={secret}")
    if live:
        await until_shown(page, lambda state: state["connection"] == "online")
    return opened


async def dashboard_state(page: Page) -> dict[str, Any]:
    """What the dashboard shows now, read from its DOM.

    ``connection`` (``connecting``, ``online``, ``offline``, ``token``), ``token_form`` (shown or
    not), ``stats`` (the header's counters, as text), ``agents`` (in the page's order: id, name,
    persistent ``on``/``off``/``establishing``/``failed``/``unknown``, microphone
    ``live``/``off``/``unknown``, presence, routing, the conversation they are on or ``""``),
    ``calls`` (newest first: call, agent_id, state ``ringing``/``connected``/``held``/
    ``transferred``, caller, number, agent, duration) and ``records`` (newest first: adapter, call,
    stage, record, kind, caller).
    """
    state: dict[str, Any] = await page.evaluate(_READ_STATE)
    return state


async def until_shown(
    page: Page, check: Callable[[dict[str, Any]], bool], within: float = WAIT
) -> dict[str, Any]:
    """The page's :func:`dashboard_state` once ``check`` accepts it, polled for up to ``within``
    seconds; AssertionError with the last state seen otherwise."""
    state = await dashboard_state(page)
    try:
        async with asyncio.timeout(within):
            while not check(state):
                await asyncio.sleep(_POLL)
                state = await dashboard_state(page)
    except TimeoutError:
        raise AssertionError(f"the dashboard never showed it; it shows {state!r}") from None
    return state


# ---------------------------------------------------------------------------------------------
# The bridge's messages


def agents_roster(agents: Mapping[str, str]) -> dict[str, Any]:
    """The ``agents`` message: agent id → name, in this order."""
    return {"type": "agents", "agents": [{"id": id_, "name": name} for id_, name in agents.items()]}


def logged(
    adapter: str,
    call: str,
    stage: str,
    *,
    agent_id: str = "a1",
    record: Mapping[str, Any] | None = None,
    caller_name: str | None = None,
    number: str | None = "+15550100001",
    at: datetime | None = None,
) -> dict[str, Any]:
    """The ``logged`` message: ``adapter`` wrote ``stage`` of ``call`` into its CRM."""
    written = at if at is not None else datetime.now(UTC)
    return {
        "type": "logged",
        "adapter": adapter,
        "call": call,
        "agent_id": agent_id,
        "stage": stage,
        "direction": "inbound",
        "number": number,
        "caller_name": caller_name,
        "record": None if record is None else dict(record),
        "at": written.isoformat().replace("+00:00", "Z"),
    }


def _now(ago: float) -> datetime:
    return datetime.now(UTC) - timedelta(seconds=ago)


def alerting(
    call: str,
    agent_id: str,
    *,
    caller_name: str | None = None,
    number: str = "+15550100001",
    queue_name: str | None = "Support",
    ago: float = 0.0,
) -> CallAlerting:
    """An inbound call ``call`` ringing for ``agent_id`` since ``ago`` seconds."""
    return CallAlerting(
        conversation_id=call,
        agent_id=agent_id,
        participant_id=f"{call}-agent",
        at=_now(ago),
        direction=CallDirection.INBOUND,
        ani=f"tel:{number}",
        dnis="tel:+18005550100",
        queue_name=queue_name,
        caller_name=caller_name,
    )


def connected(call: str, agent_id: str, *, ago: float = 0.0) -> CallConnected:
    """``call`` connected for ``agent_id`` ``ago`` seconds ago."""
    at = _now(ago)
    return CallConnected(
        conversation_id=call,
        agent_id=agent_id,
        participant_id=f"{call}-agent",
        at=at,
        connected_at=at,
    )


def held(call: str, agent_id: str) -> CallHeld:
    """The customer of ``call`` put on hold."""
    return CallHeld(
        conversation_id=call, agent_id=agent_id, participant_id=f"{call}-agent", at=_now(0)
    )


def resumed(call: str, agent_id: str) -> CallResumed:
    """The customer of ``call`` taken off hold."""
    return CallResumed(
        conversation_id=call, agent_id=agent_id, participant_id=f"{call}-agent", at=_now(0)
    )


def ended(call: str, agent_id: str) -> CallEnded:
    """``call`` ended for ``agent_id``."""
    at = _now(0)
    return CallEnded(
        conversation_id=call,
        agent_id=agent_id,
        participant_id=f"{call}-agent",
        at=at,
        direction=CallDirection.INBOUND,
        ended_at=at,
        answered=True,
    )


# ---------------------------------------------------------------------------------------------
# Screenshots

_PNG_SIGNATURE: Final = b"\x89PNG\r\n\x1a\n"
# Colour type → bytes per pixel, for 8-bit samples: greyscale, RGB, grey + alpha, RGBA.
_BYTES_PER_PIXEL: Final = {0: 1, 2: 3, 4: 2, 6: 4}


def _paeth(left: int, up: int, up_left: int) -> int:
    estimate = left + up - up_left
    to_left, to_up, to_up_left = abs(estimate - left), abs(estimate - up), abs(estimate - up_left)
    if to_left <= to_up and to_left <= to_up_left:
        return left
    return up if to_up <= to_up_left else up_left


def _unfilter(kind: int, line: bytearray, previous: bytes, bpp: int) -> None:
    """Undo one scanline's PNG filter in place (filters: none, sub, up, average, Paeth)."""
    if kind == 0:
        return
    if kind == 2:
        for i, up in enumerate(previous):
            line[i] = (line[i] + up) & 0xFF
        return
    for i in range(len(line)):
        left = line[i - bpp] if i >= bpp else 0
        up = previous[i]
        if kind == 1:
            line[i] = (line[i] + left) & 0xFF
        elif kind == 3:
            line[i] = (line[i] + (left + up) // 2) & 0xFF
        elif kind == 4:
            up_left = previous[i - bpp] if i >= bpp else 0
            line[i] = (line[i] + _paeth(left, up, up_left)) & 0xFF
        else:
            raise ValueError(f"unknown PNG filter type {kind}")


def png_summary(data: bytes, *, step: int = 4) -> tuple[int, int, collections.Counter[bytes]]:
    """The width and height of the PNG ``data`` and how often each colour occurs among every
    ``step``-th pixel of every ``step``-th row (enough to tell a drawn page from a blank one).

    Reads the 8-bit, non-interlaced PNGs browsers write; ValueError for anything else.
    """
    if not data.startswith(_PNG_SIGNATURE):
        raise ValueError("not a PNG")
    offset = len(_PNG_SIGNATURE)
    header: tuple[int, ...] | None = None
    compressed = bytearray()
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        body = data[offset + 8 : offset + 8 + length]
        offset += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            compressed += body
        elif kind == b"IEND":
            break
    if header is None:
        raise ValueError("a PNG without IHDR")
    width, height, depth, colour_type, _, _, interlace = header
    if depth != 8 or colour_type not in _BYTES_PER_PIXEL or interlace:
        raise ValueError(f"unsupported PNG: depth {depth}, colour type {colour_type}, interlace")
    bpp = _BYTES_PER_PIXEL[colour_type]
    stride = width * bpp
    raw = zlib.decompress(bytes(compressed))
    colours: collections.Counter[bytes] = collections.Counter()
    previous = bytes(stride)
    for row in range(height):
        start = row * (stride + 1)
        line = bytearray(raw[start + 1 : start + 1 + stride])
        _unfilter(raw[start], line, previous, bpp)
        if row % step == 0:
            for x in range(0, width, step):
                colours[bytes(line[x * bpp : x * bpp + bpp])] += 1
        previous = bytes(line)
    return width, height, colours
