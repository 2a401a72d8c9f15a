"""The Zendesk emulator as a server: real TLS, loopback only, a clean stop, plain ``requests``
against its headers and idempotency, and ``python -m crmphone_zendesk.emulator``."""

from __future__ import annotations

import asyncio
import os
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests

import crmphone_zendesk.emulator
from crmphone.errors import InvalidStateError, TransportError
from crmphone_zendesk.emulator import ZendeskEmulator

EXPECTED_EXPORTS = {
    "HTML_NAME",
    "HTML_NAME_NUMBER",
    "NO_MATCH_NUMBER",
    "ONE_MATCH_NUMBER",
    "SHARED_NUMBER",
    "ApiAnswer",
    "ApiRequest",
    "Call",
    "Comment",
    "Credentials",
    "DisplayRequest",
    "Fault",
    "FaultKind",
    "FaultRecord",
    "Faults",
    "RecordInvalidError",
    "RequestRecord",
    "Stats",
    "Ticket",
    "User",
    "Via",
    "ZendeskApi",
    "ZendeskEmulator",
    "ZendeskModel",
}


async def fetch(session: requests.Session, method: str, url: str, **kwargs: Any) -> Any:
    """One blocking request, off the event loop the emulator serves on."""
    return await asyncio.to_thread(session.request, method, url, timeout=10, **kwargs)


def test_exports_are_pinned_and_documented() -> None:
    """The emulator package exports exactly these names, each with a docstring."""
    assert set(crmphone_zendesk.emulator.__all__) == EXPECTED_EXPORTS
    for name in crmphone_zendesk.emulator.__all__:
        value = getattr(crmphone_zendesk.emulator, name)
        if isinstance(value, str):
            continue
        assert (value.__doc__ or "").strip(), name


async def test_tls_is_real(zendesk_emulator: ZendeskEmulator) -> None:
    """A client trusting its own CA store fails; plain HTTP gets no answer; the CA works."""
    url = f"{zendesk_emulator.url}/api/v2/users/me.json"
    with requests.Session() as untrusting:
        untrusting.trust_env = False
        with pytest.raises(requests.exceptions.SSLError):
            await fetch(untrusting, "GET", url)
        with pytest.raises(requests.exceptions.ConnectionError):
            await fetch(untrusting, "GET", url.replace("https://", "http://"))
    with requests.Session() as trusting:
        trusting.verify = str(zendesk_emulator.ca_file)
        trusting.trust_env = False
        answer = await fetch(trusting, "GET", url)
    assert answer.status_code == 401


async def test_binds_loopback_only(zendesk_emulator: ZendeskEmulator) -> None:
    """The default host is 127.0.0.1 and nothing listens on another loopback address."""
    assert zendesk_emulator.host == "127.0.0.1"
    assert zendesk_emulator.url == f"https://127.0.0.1:{zendesk_emulator.port}"
    assert (zendesk_emulator.subdomain, zendesk_emulator.domain) == (
        "127",
        f"0.0.1:{zendesk_emulator.port}",
    )
    with pytest.raises(ConnectionRefusedError):
        await asyncio.to_thread(
            socket.create_connection, ("127.0.0.2", zendesk_emulator.port), timeout=2
        )


async def test_stop_leaves_nothing_running() -> None:
    """After stop the port refuses, the certificate files are gone and no task is left."""
    emulator = ZendeskEmulator()
    await emulator.start()
    port, ca_file = emulator.port, emulator.ca_file
    with requests.Session() as session:
        session.verify = str(ca_file)
        session.trust_env = False
        await fetch(session, "GET", f"{emulator.url}/api/v2/users/me.json")
        started = time.monotonic()
        await emulator.stop()  # with the client's keep-alive connection still open
    assert time.monotonic() - started < 2.0
    assert not emulator.running
    assert not ca_file.exists()
    with pytest.raises(ConnectionRefusedError):
        await asyncio.to_thread(socket.create_connection, ("127.0.0.1", port), timeout=2)
    assert [t for t in asyncio.all_tasks() if t.get_name() == "zendesk-emulator"] == []
    with pytest.raises(InvalidStateError):
        _ = emulator.url
    await emulator.stop()  # a second stop is a no-op
    assert repr(emulator) == "<ZendeskEmulator stopped>"


async def test_start_twice_and_busy_port() -> None:
    """Starting a running emulator is InvalidStateError; a taken port is TransportError."""
    async with ZendeskEmulator() as first:
        with pytest.raises(InvalidStateError):
            await first.start()
        second = ZendeskEmulator()
        with pytest.raises(TransportError, match="Zendesk emulator"):
            await second.start(port=first.port)
        assert not second.running


async def test_headers_and_errors_with_plain_requests(
    zendesk_emulator: ZendeskEmulator, zendesk_session: requests.Session
) -> None:
    """Rate-limit headers on answers, 404 RecordNotFound JSON, and the 401 body."""
    base = f"{zendesk_emulator.url}/api/v2"
    auth = (f"{zendesk_emulator.email}/token", zendesk_emulator.api_token)
    answer = await fetch(zendesk_session, "GET", f"{base}/tickets/12345.json", auth=auth)
    assert answer.status_code == 404
    assert answer.json() == {"error": "RecordNotFound", "description": "Not found"}
    assert answer.headers["X-Rate-Limit"] == "700"
    assert int(answer.headers["X-Rate-Limit-Remaining"]) == 699
    denied = await fetch(zendesk_session, "GET", f"{base}/users/me.json")
    assert (denied.status_code, denied.json()) == (401, {"error": "Couldn't authenticate you"})
    bearer = {"Authorization": f"Bearer {zendesk_emulator.oauth_token}"}
    me = await fetch(zendesk_session, "GET", f"{base}/users/me", headers=bearer)
    assert me.json()["user"]["id"] == zendesk_emulator.model.admin.id
    assert me.headers["Content-Type"] == "application/json; charset=utf-8"


async def test_idempotency_key_with_plain_requests(
    zendesk_emulator: ZendeskEmulator, zendesk_session: requests.Session
) -> None:
    """The voice ticket endpoint honours Idempotency-Key: miss, hit, then 400 on a change."""
    model = zendesk_emulator.model
    url = f"{zendesk_emulator.url}/api/v2/channels/voice/tickets.json"
    auth = (f"{zendesk_emulator.email}/token", zendesk_emulator.api_token)
    body = {
        "display_to_agent": model.agents[0].id,
        "ticket": {
            "requester_id": model.customers[0].id,
            "via_id": 45,
            "external_id": "conv-3",
            "voice_comment": {"from": "+15550100001", "to": "+15550000000", "call_duration": 9},
        },
    }
    headers = {"Idempotency-Key": "conv-3:voice-ticket"}
    first = await fetch(zendesk_session, "POST", url, json=body, headers=headers, auth=auth)
    again = await fetch(zendesk_session, "POST", url, json=body, headers=headers, auth=auth)
    assert (first.status_code, first.headers["x-idempotency-lookup"]) == (201, "miss")
    assert (again.status_code, again.headers["x-idempotency-lookup"]) == (201, "hit")
    assert first.json() == again.json()
    body["ticket"]["external_id"] = "conv-4"
    changed = await fetch(zendesk_session, "POST", url, json=body, headers=headers, auth=auth)
    assert (changed.status_code, changed.json()["error"]) == (400, "IdempotentRequestError")
    assert len(model.tickets) == 1
    assert len(model.displays) == 1


def _banner(process: subprocess.Popen[str], timeout: float) -> list[str]:
    """The lines the child prints at start (one write), failing after ``timeout`` s of silence."""
    assert process.stdout is not None
    readable, _, _ = select.select([process.stdout], [], [], timeout)
    assert readable, "the emulator printed nothing in time"
    lines = [process.stdout.readline()]
    while not lines[-1].startswith("Press Ctrl+C") and lines[-1]:
        lines.append(process.stdout.readline())
    return lines


def test_main_runs_until_interrupted(tmp_path: Path) -> None:
    """python -m crmphone_zendesk.emulator prints its URL and CA file, and stops on Ctrl+C."""
    source = Path(crmphone_zendesk.emulator.__file__).resolve().parents[2]
    path = os.pathsep.join(filter(None, [str(source), os.environ.get("PYTHONPATH")]))
    process = subprocess.Popen(
        [sys.executable, "-m", "crmphone_zendesk.emulator", "--port", "0", "--seed", "3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": path},
        cwd=tmp_path,
    )
    try:
        banner = _banner(process, 20)
        assert banner[0].startswith("Zendesk emulator listening on https://127.0.0.1:")
        assert banner[1].strip().startswith("trust CA:")
        assert banner[-1].startswith("Press Ctrl+C")
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
