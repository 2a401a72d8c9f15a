"""The bridge over real loopback sockets, with the real websockets and httpx clients."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import socket
import stat
import sys
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from bridge_helpers import (
    PAGE_ORIGIN,
    WAIT,
    RecordingHandler,
    command,
    fast_settings,
    open_page,
    open_socket,
    recv_json,
    send_json,
    wait_until,
)
from websockets.exceptions import ConnectionClosed, InvalidStatus

from crmphone.adapters import CallerMatch, CrmRecord
from crmphone.bridge import (
    CLOSE_GOING_AWAY,
    CLOSE_TOO_SLOW,
    CLOSE_UNAUTHENTICATED,
    BridgeServer,
    BridgeSettings,
    BridgeToken,
    Command,
    CommandError,
    ConnectedClient,
    Dial,
    Hangup,
    event_message,
    pop_message,
)
from crmphone.errors import ConfigError, InvalidStateError, UsageError
from crmphone.events import CallAlerting, CallDirection, MicrophoneLive

AT = datetime(2026, 1, 2, 9, 30, tzinfo=UTC)


def alerting(conversation_id: str = "conv-1") -> CallAlerting:
    """An inbound call ringing for agent-1, the caller's name holding HTML."""
    return CallAlerting(
        conversation_id=conversation_id,
        agent_id="agent-1",
        participant_id="part-1",
        at=AT,
        direction=CallDirection.INBOUND,
        ani="+15551230001",
        caller_name="<script>alert(1)</script>",
    )


async def closed_with(ws: Any) -> tuple[int | None, str]:
    """Read until the bridge closes the socket; the close code and reason it sent."""
    async with asyncio.timeout(WAIT):
        try:
            while True:
                await ws.recv()
        except ConnectionClosed as exc:
            received = exc.rcvd
    return (None, "") if received is None else (received.code, received.reason)


# ---------------------------------------------------------------------------------------------
# Listening


async def test_binds_loopback_by_default_and_answers_health(
    bridge: BridgeServer, token: BridgeToken
) -> None:
    """127.0.0.1 is the default; /healthz says ok with the protocol and the client count."""
    assert BridgeSettings(token=token).host == "127.0.0.1"
    assert bridge.url == f"http://127.0.0.1:{bridge.port}"
    assert bridge.ws_url == f"ws://127.0.0.1:{bridge.port}/ws"
    page = await open_page(bridge, token)
    async with httpx.AsyncClient(base_url=bridge.url, timeout=WAIT) as http:
        health = await http.get("/healthz")
    assert health.status_code == 200
    assert health.json() == {"status": "ok", "protocol": "crmphone.bridge.v1", "clients": 1}
    await page.close()


@pytest.mark.skipif(sys.platform != "linux", reason="all of 127/8 is loopback only on Linux")
async def test_the_default_listener_is_not_on_other_addresses(bridge: BridgeServer) -> None:
    """Bound to 127.0.0.1 only: the same port on 127.0.0.2 refuses connections."""
    with socket.create_connection(("127.0.0.1", bridge.port), timeout=WAIT):
        pass
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.2", bridge.port), timeout=WAIT).close()


async def test_properties_need_a_running_bridge(token: BridgeToken) -> None:
    """port, url and ws_url raise InvalidStateError before start and after stop."""
    server = BridgeServer(fast_settings(token), RecordingHandler())
    with pytest.raises(InvalidStateError):
        _ = server.url
    async with server:
        assert server.port > 0
    with pytest.raises(InvalidStateError):
        _ = server.ws_url


# ---------------------------------------------------------------------------------------------
# Authentication


async def test_no_hello_in_time_is_closed_4401(token: BridgeToken) -> None:
    """A page that says nothing is closed with 4401 once the hello timeout passes."""
    async with BridgeServer(fast_settings(token, hello_timeout=0.2), RecordingHandler()) as bridge:
        ws = await open_socket(bridge)
        started = time.monotonic()
        assert await closed_with(ws) == (CLOSE_UNAUTHENTICATED, "authentication timeout")
        assert time.monotonic() - started < 2
        assert bridge.stats.refused_hellos == 1


async def test_a_wrong_token_is_closed_4401_and_no_token_is_logged(
    bridge: BridgeServer, token: BridgeToken, caplog: pytest.LogCaptureFixture
) -> None:
    """A hello with another token gets 4401; neither token appears in the reason or the log."""
    caplog.set_level(logging.DEBUG, logger="crmphone")
    wrong = BridgeToken.generate().reveal()
    ws = await open_socket(bridge)
    await send_json(ws, {"type": "hello", "token": wrong, "client": "salesforce"})
    code, reason = await closed_with(ws)
    assert (code, reason) == (CLOSE_UNAUTHENTICATED, "authentication failed")
    assert bridge.clients == 0
    for secret in (wrong, token.reveal()):
        assert secret not in caplog.text
        assert secret not in reason


@pytest.mark.parametrize(
    ("first", "reason"),
    [
        (
            {"type": "command", "id": 1, "command": "answer", "conversation_id": "c"},
            "expected a hello first",
        ),
        ({"type": "hello", "client": "salesforce"}, "malformed hello"),
        (b"\x00binary", "expected a hello first"),
        ("not json", "expected a hello first"),
    ],
)
async def test_anything_but_a_hello_first_is_closed_4401(
    bridge: BridgeServer, handler: RecordingHandler, first: object, reason: str
) -> None:
    """A command, a malformed hello, a binary or a non-JSON frame first: 4401, nothing handled."""
    ws = await open_socket(bridge)
    if isinstance(first, dict):
        await send_json(ws, first)
    else:
        assert isinstance(first, str | bytes)
        await ws.send(first)
    assert await closed_with(ws) == (CLOSE_UNAUTHENTICATED, reason)
    assert handler.received == []


@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.example",
        "https://acme.zendesk.com.evil.example",
        "http://acme.zendesk.com",
        "https://zendesk.com",
        "null",
        None,
    ],
)
async def test_a_handshake_from_a_foreign_origin_is_refused_with_403(
    bridge: BridgeServer, origin: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    """Foreign, look-alike, wrong-scheme, opaque and (unless configured) missing origins get
    HTTP 403 before any WebSocket message, and the WARNING names the origin (or its absence)."""
    with (
        caplog.at_level(logging.WARNING, logger="crmphone.bridge"),
        pytest.raises(InvalidStatus) as info,
    ):
        await open_socket(bridge, origin=origin)
    assert info.value.response.status_code == 403
    assert bridge.stats.refused_origins == 1
    assert bridge.stats.sockets == 0
    (refusal,) = [r.getMessage() for r in caplog.records if "refused a WebSocket" in r.getMessage()]
    expected = "with 0 Origin headers (none)" if origin is None else f"from origin {origin!r}"
    assert refusal.endswith(expected)


async def test_allowed_and_own_origins_connect(bridge: BridgeServer, token: BridgeToken) -> None:
    """Salesforce and Zendesk pages, and the bridge's own pages (127.0.0.1 or localhost), get in."""
    origins = [
        "https://acme.lightning.force.com",
        "https://acme.zendesk.com",
        "https://1234.apps.zdusercontent.com",
        f"http://127.0.0.1:{bridge.port}",
        f"http://localhost:{bridge.port}",
    ]
    pages = [await open_page(bridge, token, origin=origin) for origin in origins]
    assert bridge.clients == len(origins)
    for page in pages:
        await page.close()


async def test_a_missing_origin_is_allowed_when_configured(token: BridgeToken) -> None:
    """With allow_missing_origin, a non-browser client without Origin authenticates."""
    settings = fast_settings(token, allow_missing_origin=True)
    async with BridgeServer(settings, RecordingHandler()) as bridge:
        ws = await open_page(bridge, token, origin=None)
        await ws.close()


# ---------------------------------------------------------------------------------------------
# Commands


async def test_a_valid_command_reaches_the_handler_and_its_result_comes_back(
    bridge: BridgeServer, token: BridgeToken, handler: RecordingHandler
) -> None:
    """A click-to-dial reaches the handler as a Dial value with the page's identity, and the
    result carries the same id."""
    ws = await open_page(bridge, token, client="salesforce")
    result = await command(
        ws,
        "dial-1",
        "dial",
        number="+1 (555) 123-0001",
        record={"kind": "Contact", "id": "003A", "name": "Ada"},
    )
    assert result == {"type": "result", "id": "dial-1", "ok": True, "data": {"handled": "dial"}}
    [(received, client)] = handler.received
    assert received == Dial("+15551230001", record=CrmRecord("Contact", "003A", "Ada"))
    assert (client.kind, client.origin) == ("salesforce", PAGE_ORIGIN)
    assert bridge.stats.commands == 1


async def test_malformed_commands_get_error_results_and_the_connection_stays_usable(
    bridge: BridgeServer, token: BridgeToken, handler: RecordingHandler
) -> None:
    """Garbage, unknown commands, bad fields, binary and oversized frames each get a failed
    result (id null when unreadable); a valid command works afterwards."""
    ws = await open_page(bridge, token)
    cases: list[tuple[str | bytes, object, str]] = [
        ("{oops", None, "bad_json"),
        ("[1]", None, "not_object"),
        (json.dumps({"type": "command", "id": 5, "command": "explode"}), 5, "unknown_command"),
        (json.dumps({"type": "command", "id": 6, "command": "answer"}), 6, "missing_field"),
        (
            json.dumps({"type": "command", "id": 7, "command": "dial", "number": "x"}),
            7,
            "bad_field",
        ),
        (
            json.dumps(
                {"type": "command", "id": 8, "command": "hangup", "conversation_id": "c", "x": 1}
            ),
            8,
            "unknown_field",
        ),
        (
            json.dumps({"type": "hello", "token": token.reveal(), "client": "again"}),
            None,
            "unknown_type",
        ),
        (b"\x01\x02", None, "bad_frame"),
        (json.dumps({"type": "command", "id": 9, "pad": "p" * 70_000}), None, "too_large"),
    ]
    for frame, command_id, code in cases:
        await ws.send(frame)
        result = await recv_json(ws)
        assert result["type"] == "result"
        assert (result["id"], result["ok"], result["error"]["code"]) == (command_id, False, code)
        assert result["error"]["message"]
    assert handler.received == []
    ok = await command(ws, 10, "hangup", conversation_id="conv-1")
    assert (ok["id"], ok["ok"]) == (10, True)
    assert bridge.stats.failed_results == len(cases)


async def test_handler_refusals_and_bugs_become_failed_results(token: BridgeToken) -> None:
    """A CommandError keeps its code, a crmphone error maps to its code, a bug is ``internal``
    and logged; the connection stays up throughout."""

    async def respond(command: Command, client: ConnectedClient) -> Mapping[str, Any]:
        assert isinstance(command, Hangup)
        match command.conversation_id:
            case "unknown":
                raise CommandError("unknown_conversation", "no call conv unknown here")
            case "ringing":
                raise InvalidStateError("the call is still ringing: answer it first")
            case "bug":
                raise ZeroDivisionError("oops")
            case "not-json":
                return {"when": object()}
        return {"conversation_id": command.conversation_id}

    async with BridgeServer(fast_settings(token), RecordingHandler(respond)) as bridge:
        ws = await open_page(bridge, token)
        expected = {
            "unknown": "unknown_conversation",
            "ringing": "invalid_state",
            "bug": "internal",
            "not-json": "internal",
        }
        for number, (conversation, code) in enumerate(expected.items()):
            result = await command(ws, number, "hangup", conversation_id=conversation)
            assert (result["id"], result["ok"], result["error"]["code"]) == (number, False, code)
        assert "oops" not in json.dumps(result)
        ok = await command(ws, 99, "hangup", conversation_id="conv-2")
        assert ok["data"] == {"conversation_id": "conv-2"}
        assert bridge.stats.internal_errors == 2


async def test_commands_run_concurrently_up_to_the_limit(token: BridgeToken) -> None:
    """A slow dial does not hold up a hangup; beyond max_pending_commands a command is ``busy``."""
    release = asyncio.Event()

    async def respond(command: Command, client: ConnectedClient) -> Mapping[str, Any]:
        if isinstance(command, Dial):
            await release.wait()
        return {"command": command.name}

    settings = fast_settings(token, max_pending_commands=2)
    async with BridgeServer(settings, RecordingHandler(respond)) as bridge:
        ws = await open_page(bridge, token)
        await send_json(ws, {"type": "command", "id": 1, "command": "dial", "number": "5550100"})
        hangup = await command(ws, 2, "hangup", conversation_id="c")
        assert (hangup["id"], hangup["ok"]) == (2, True)
        await send_json(ws, {"type": "command", "id": 3, "command": "dial", "number": "5550101"})
        busy = await command(ws, 4, "dial", number="5550102")
        assert (busy["id"], busy["error"]["code"]) == (4, "busy")
        release.set()
        results = {(await recv_json(ws))["id"] for _ in range(2)}
        assert results == {1, 3}


# ---------------------------------------------------------------------------------------------
# Events out


async def test_published_events_reach_every_authenticated_page_and_no_other(
    token: BridgeToken,
) -> None:
    """Three authenticated pages get each event; a socket that has not said hello gets none,
    and after its hello its first frame is the welcome, then only later events."""
    settings = fast_settings(token, hello_timeout=WAIT)
    async with BridgeServer(settings, RecordingHandler()) as bridge:
        pages = [await open_page(bridge, token, client=f"p{i}") for i in range(3)]
        waiting = await open_socket(bridge)
        await wait_until(lambda: bridge.stats.sockets == 4)
        event = alerting()
        assert bridge.publish(event) == 3
        for page in pages:
            assert await recv_json(page) == event_message(event)
        await send_json(waiting, {"type": "hello", "token": token.reveal(), "client": "late"})
        assert (await recv_json(waiting))["type"] == "welcome"
        later = MicrophoneLive("agent-1", True, AT)
        assert bridge.publish(later) == 4
        assert await recv_json(waiting) == event_message(later)
        for page in pages:
            received = await recv_json(page)
            assert received["event"] == "phone.microphone_live"
        assert event_message(event)["data"]["caller_name"] == "<script>alert(1)</script>"


async def test_screen_pops_are_published_as_they_are(
    bridge: BridgeServer, token: BridgeToken
) -> None:
    """A pop message built by pop_message reaches the page unchanged."""
    page = await open_page(bridge, token)
    match = CallerMatch(number="+15551230001", records=(CrmRecord("Contact", "003A", "Ada"),))
    message = pop_message("conv-1", match, agent_id="agent-1")
    assert bridge.publish(message) == 1
    assert await recv_json(page) == message


def padding_message(index: int) -> dict[str, Any]:
    """A 64 KiB message that does not compress, so socket buffers fill quickly."""
    pad = base64.b64encode(os.urandom(48 * 1024)).decode()
    return {"type": "event", "event": "test.padding", "data": {"i": index, "pad": pad}}


async def stall_one_page(bridge: BridgeServer, token: BridgeToken) -> Any:
    """Open a fast page and a page that never reads; publish until the stalled one is dropped,
    checking that the fast page receives every message promptly. Returns the stalled socket."""
    fast = await open_page(bridge, token, client="fast")
    # max_queue=1: the client stops reading from TCP at once, so the bridge's buffers fill.
    stalled = await open_page(bridge, token, client="stalled", max_queue=1)
    for index in range(2000):
        started = time.monotonic()
        bridge.publish(padding_message(index))
        received = await recv_json(fast)
        assert received["data"]["i"] == index
        assert time.monotonic() - started < 1.0, "the fast page was held up"
        if bridge.stats.dropped_slow:
            break
    assert bridge.stats.dropped_slow == 1
    assert bridge.clients == 1
    assert bridge.publish(padding_message(-1)) == 1
    assert (await recv_json(fast))["data"]["i"] == -1
    await fast.close()
    return stalled


async def test_a_stalled_page_is_dropped_without_delaying_the_others(token: BridgeToken) -> None:
    """A page that stops reading is dropped after its queue fills; the fast page keeps getting
    every message, and the stalled connection is cut when not even a close can leave."""
    settings = fast_settings(token, send_queue=4, close_timeout=0.2)
    async with BridgeServer(settings, RecordingHandler()) as bridge:
        stalled = await stall_one_page(bridge, token)
        await wait_until(lambda: bridge.stats.sockets == 0)
        code, _ = await closed_with(stalled)
        assert code != CLOSE_TOO_SLOW  # cut, not closed: the 1013 frame could never leave


async def test_a_stalled_page_that_reads_again_sees_1013(token: BridgeToken) -> None:
    """A dropped page that drains its socket within the close timeout gets close code 1013."""
    settings = fast_settings(token, send_queue=4, close_timeout=WAIT)
    async with BridgeServer(settings, RecordingHandler()) as bridge:
        stalled = await stall_one_page(bridge, token)
        assert await closed_with(stalled) == (CLOSE_TOO_SLOW, "client too slow")
        await wait_until(lambda: bridge.stats.sockets == 0)


async def test_stop_closes_pages_with_1001(token: BridgeToken) -> None:
    """Stopping the bridge closes authenticated and waiting pages with 1001."""
    settings = fast_settings(token, hello_timeout=WAIT)
    async with BridgeServer(settings, RecordingHandler()) as bridge:
        page = await open_page(bridge, token)
        waiting = await open_socket(bridge)
        await wait_until(lambda: bridge.stats.sockets == 2)
    assert await closed_with(page) == (CLOSE_GOING_AWAY, "bridge stopping")
    assert (await closed_with(waiting))[0] == CLOSE_GOING_AWAY


async def test_stop_cuts_a_page_too_stalled_to_take_its_close(token: BridgeToken) -> None:
    """A page whose socket never drains cannot hold up stop: after the close timeout it is cut."""
    settings = fast_settings(token, send_queue=10_000, close_timeout=0.2)
    bridge = BridgeServer(settings, RecordingHandler())
    await bridge.start()
    stalled = await open_page(bridge, token, max_queue=1)
    for index in range(150):  # ~10 MB: far more than the socket buffers hold
        assert bridge.publish(padding_message(index)) == 1
    started = time.monotonic()
    await bridge.stop()
    assert time.monotonic() - started < 3
    assert (await closed_with(stalled))[0] != CLOSE_GOING_AWAY


async def test_publish_refuses_messages_without_a_type(bridge: BridgeServer) -> None:
    """A mapping without a string type is a caller's bug, refused before anything is sent."""
    with pytest.raises(UsageError, match="type"):
        bridge.publish({"event": "x"})
    with pytest.raises(UsageError):
        bridge.publish({"type": "event", "data": {1, 2}})


async def test_a_frame_beyond_the_hard_limit_closes_the_socket(
    bridge: BridgeServer, token: BridgeToken
) -> None:
    """Above 64 KiB a frame gets a result; above 1 MiB the socket closes with 1009."""
    page = await open_page(bridge, token)
    await page.send("x" * (2 * 1024 * 1024))
    assert (await closed_with(page))[0] == 1009


# ---------------------------------------------------------------------------------------------
# Pages


@pytest.fixture
def pages(tmp_path: Path) -> dict[str, Path]:
    """A softphone page and its script, and a secret next to them that must never be served."""
    site = tmp_path / "site"
    (site / "salesforce").mkdir(parents=True)
    (site / "salesforce" / "softphone.html").write_text("<!doctype html><title>softphone</title>")
    (site / "salesforce" / "softphone.js").write_text("console.log('hi')")
    (site / "secret.txt").write_text("do not serve me")
    return {
        "/salesforce/softphone.html": site / "salesforce" / "softphone.html",
        "/salesforce/softphone.js": site / "salesforce" / "softphone.js",
    }


async def test_pages_are_served_with_the_strict_csp(
    token: BridgeToken, pages: dict[str, Path]
) -> None:
    """Each page has its type, the CSP (own WebSocket, CRMs as frame ancestors, extra script
    hosts), nosniff and no-referrer; /healthz carries the same headers."""
    settings = fast_settings(token, pages=pages, csp_script_sources=["https://static.zdassets.com"])
    async with (
        BridgeServer(settings, RecordingHandler()) as bridge,
        httpx.AsyncClient(base_url=bridge.url, timeout=WAIT) as http,
    ):
        html = await http.get("/salesforce/softphone.html")
        script = await http.get("/salesforce/softphone.js")
        head = await http.head("/salesforce/softphone.html")
        health = await http.get("/healthz")
        port = bridge.port
    assert html.status_code == script.status_code == head.status_code == 200
    assert html.text == "<!doctype html><title>softphone</title>"
    assert html.headers["content-type"] == "text/html; charset=utf-8"
    assert script.headers["content-type"] == "text/javascript; charset=utf-8"
    expected_csp = (
        "default-src 'none'; script-src 'self' https://static.zdassets.com; style-src 'self'; "
        f"img-src 'self' data:; connect-src 'self' ws://127.0.0.1:{port} ws://localhost:{port}; "
        "frame-ancestors 'self' https://*.lightning.force.com https://*.my.salesforce.com "
        "https://*.zendesk.com https://*.zdusercontent.com; base-uri 'none'; form-action 'none'"
    )
    for response in (html, script, head, health):
        assert response.headers["content-security-policy"] == expected_csp
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"


@pytest.mark.parametrize(
    "target",
    [
        b"/salesforce/../secret.txt",
        b"/salesforce/%2e%2e/secret.txt",
        b"/salesforce/..%2fsecret.txt",
        b"/salesforce/%2e%2e%2fsecret.txt",
        b"/%2e%2e/%2e%2e/etc/passwd",
        b"/../../etc/passwd",
        b"//etc/passwd",
        b"/secret.txt",
        b"/salesforce/",
        b"/salesforce",
        b"/",
        b"/salesforce/softphone.html/",
        b"/salesforce/softphone.html%00",
        b"/salesforce/./softphone.html",
        b"/SALESFORCE/softphone.html",
        b"/healthz/",
    ],
)
async def test_traversal_and_unlisted_paths_are_404(
    token: BridgeToken, pages: dict[str, Path], target: bytes
) -> None:
    """Only the exact registered paths exist: dot segments, encodings, directories, trailing
    slashes and neighbouring files are 404, with the security headers."""
    async with (
        BridgeServer(fast_settings(token, pages=pages), RecordingHandler()) as bridge,
        httpx.AsyncClient(base_url=bridge.url, timeout=WAIT) as http,
    ):
        # The raw request target, exactly as given (httpx would tidy dot segments away).
        response = await http.get("/", extensions={"target": target})
    assert response.status_code == 404
    assert "do not serve me" not in response.text
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_pages_take_only_get_and_head(token: BridgeToken, pages: dict[str, Path]) -> None:
    """Posting to a page is 405."""
    async with (
        BridgeServer(fast_settings(token, pages=pages), RecordingHandler()) as bridge,
        httpx.AsyncClient(base_url=bridge.url, timeout=WAIT) as http,
    ):
        assert (await http.post("/salesforce/softphone.html")).status_code == 405


@pytest.mark.parametrize(
    "url_path",
    [
        "softphone.html",
        "/a/../b.html",
        "/a/./b.html",
        "/a//b.html",
        "/a/{b}.html",
        "/healthz",
        "/ws",
        "/a b.html",
        "/a/",
    ],
)
def test_page_paths_must_be_plain_exact_paths(url_path: str, tmp_path: Path) -> None:
    """A page path with dot segments, braces, spaces, a trailing slash or a reserved name is a
    configuration error."""
    with pytest.raises(ConfigError) as info:
        fast_settings(BridgeToken.generate(), pages={url_path: tmp_path / "x.html"})
    assert info.value.key == "bridge.pages"


async def test_a_missing_page_file_fails_at_start(token: BridgeToken, tmp_path: Path) -> None:
    """A page whose file does not exist stops the bridge from starting, naming the page."""
    settings = fast_settings(token, pages={"/app.html": tmp_path / "missing.html"})
    with pytest.raises(ConfigError, match=r"/app\.html"):
        await BridgeServer(settings, RecordingHandler()).start()


@pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")
async def test_the_token_file_is_made_at_first_start_and_works(tmp_path: Path) -> None:
    """With token_path, the first start makes a 0600 token file whose token authenticates."""
    path = tmp_path / "state" / "bridge.token"
    settings = BridgeSettings(token_path=path, hello_timeout=2.0, close_timeout=1.0)
    async with BridgeServer(settings, RecordingHandler()) as bridge:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert bridge.token.path == path
        page = await open_page(bridge, BridgeToken.load_or_create(path))
        await page.close()
