"""Running the sandbox: in the test's loop, in a thread, forever; and its public names."""

from __future__ import annotations

import asyncio
import logging
import socket

import httpx
import pytest
from sandbox_helpers import CLIENT_SECRET, Api, fast_config, wait_until

import crmphone.sandbox
from crmphone.clock import ManualClock
from crmphone.errors import InvalidStateError, TransportError
from crmphone.sandbox import SandboxServer, SandboxThread, serve

EXPECTED_EXPORTS = {
    "Agent",
    "CallGenerator",
    "CloseReason",
    "Emitted",
    "FaultRecord",
    "Faults",
    "Queue",
    "Sandbox",
    "SandboxConfig",
    "SandboxServer",
    "SandboxThread",
    "SecondSocketPolicy",
    "Station",
    "World",
    "serve",
}


def test_exports_are_pinned_and_documented() -> None:
    """crmphone.sandbox exports exactly these names, each with a docstring."""
    assert set(crmphone.sandbox.__all__) == EXPECTED_EXPORTS
    for name in crmphone.sandbox.__all__:
        assert getattr(crmphone.sandbox, name).__doc__, name


def port_is_closed(port: int) -> bool:
    """True when nothing accepts connections on 127.0.0.1:port."""
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


async def test_server_binds_a_free_port_and_releases_it() -> None:
    """Two servers get distinct ports; after exit the port is closed and properties refuse."""
    async with SandboxServer(fast_config()) as first, SandboxServer(fast_config()) as second:
        assert first.port != second.port
        assert first.base_url == f"http://127.0.0.1:{first.port}"
        port = first.port
        assert not port_is_closed(port)
    assert port_is_closed(port)
    with pytest.raises(InvalidStateError):
        _ = first.port
    with pytest.raises(InvalidStateError):
        _ = SandboxServer().sandbox


async def test_occupied_port_is_a_transport_error() -> None:
    """Binding a port that is in use raises TransportError."""
    async with SandboxServer(fast_config()) as running:
        with pytest.raises(TransportError, match="cannot bind"):
            async with SandboxServer(fast_config(), port=running.port):
                pass


async def test_expiry_follows_an_injected_clock() -> None:
    """With a ManualClock, a channel lives until the clock is advanced past its expiry."""
    clock = ManualClock()
    async with (
        SandboxServer(fast_config(channel_ttl=3600.0), clock=clock) as server,
        httpx.AsyncClient(base_url=server.base_url) as http,
    ):
        api = Api(http, server)
        token = await api.token()
        channel = await api.channel(token)
        assert channel["expires"] == "2026-01-01T01:00:00.000Z"
        await asyncio.sleep(0.1)  # several sweeps pass; the manual clock stands still
        assert await api.channel_exists(token, channel["id"])
        clock.advance(3600.0)
        assert not await api.channel_exists(token, channel["id"])
        await wait_until(lambda: not server.sandbox.world.channels, within=1.0)


def test_thread_serves_synchronous_callers() -> None:
    """SandboxThread answers HTTP from another thread; invoke and run reach its loop."""
    with SandboxThread(fast_config()) as server:
        response = httpx.get(f"{server.base_url}/sandbox/state", timeout=5)
        assert response.status_code == 200
        names = server.invoke(lambda: [agent.name for agent in server.sandbox.agents])
        assert len(names) == 3
        conversation_id = server.run(
            server.sandbox.calls.place_inbound(server.sandbox.agents[0].id)
        )
        assert server.invoke(server.sandbox.calls.get, conversation_id).id == conversation_id
        port = server.port
    assert port_is_closed(port)
    with pytest.raises(InvalidStateError):
        SandboxThread().invoke(lambda: None)


def test_thread_reports_startup_failure() -> None:
    """A sandbox thread that cannot bind raises in the caller's thread."""
    with (
        SandboxThread(fast_config()) as running,
        pytest.raises(TransportError),
        SandboxThread(fast_config(), port=running.port),
    ):
        pass


async def test_serve_runs_until_cancelled() -> None:
    """serve() calls on_ready with the running server and stops cleanly when cancelled."""
    ready: asyncio.Future[SandboxServer] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve(fast_config(), "127.0.0.1", 0, ready.set_result))
    server = await asyncio.wait_for(ready, 5)
    async with httpx.AsyncClient() as http:
        assert (await http.get(f"{server.base_url}/sandbox/state")).status_code == 200
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()


async def test_logs_never_contain_secrets(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    """Token requests, failed logins and API calls log no client secret and no access token."""
    caplog.set_level(logging.DEBUG)
    token = await api.token()
    await api.http.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=("x", "y"))
    await api.http.get("/api/v2/users", headers=api.auth(token))
    await api.http.get("/api/v2/users", headers=api.auth(token + "x"))
    channel = await api.channel(token)
    await api.subscribe(token, channel["id"], ["v2.users.nobody.presence"], ignore_errors=True)
    assert CLIENT_SECRET not in caplog.text
    assert token not in caplog.text
