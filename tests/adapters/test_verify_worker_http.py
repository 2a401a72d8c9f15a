"""WorkerSessions' ``verify`` over real loopback HTTPS (a private CA), and resolve_verify: how a
plugin's own ``ca_file`` combines with the ``[[adapters]]`` table's ``verify``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import requests
import trustme
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from urllib3.exceptions import InsecureRequestWarning

from crmphone._serving import ServedHttps
from crmphone.adapters.worker_http import WorkerSessions, resolve_verify
from crmphone.errors import ConfigError

KEY = "adapters.acme.ca_file"


def write_ca(path: Path) -> str:
    """A fresh CA certificate written to ``path``; its path as a string."""
    trustme.CA().cert_pem.write_to_path(str(path))
    return str(path)


async def _hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse("hello")


@pytest.fixture
async def server() -> AsyncIterator[ServedHttps]:
    """An HTTPS server on 127.0.0.1 whose certificate only its private CA signed."""
    served = ServedHttps("the verify test server", "verify-test")
    await served.start(Starlette(routes=[Route("/", _hello)]))
    try:
        yield served
    finally:
        await served.stop()


async def fetch(sessions: WorkerSessions, url: str) -> str:
    """GET ``url`` with a worker thread's session (the server runs on this loop)."""

    def get() -> str:
        response = sessions.session().get(url)
        response.raise_for_status()
        return response.text

    try:
        return await asyncio.to_thread(get)
    finally:
        sessions.close()


def test_without_ca_file_the_tables_verify_is_used(tmp_path: Path) -> None:
    """No ca_file: True, False and a CA bundle's path pass through unchanged."""
    bundle = write_ca(tmp_path / "ca.pem")
    assert resolve_verify(True, None, key=KEY) is True
    assert resolve_verify(False, None, key=KEY) is False
    assert resolve_verify(bundle, None, key=KEY) == bundle


def test_ca_file_with_verify_true_or_the_same_bundle_is_the_ca_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ca_file wins over the default, and agrees with verify naming the same file spelt another
    way (relative, through a symbolic link)."""
    bundle = write_ca(tmp_path / "ca.pem")
    link = tmp_path / "link.pem"
    link.symlink_to(bundle)
    monkeypatch.chdir(tmp_path)
    assert resolve_verify(True, bundle, key=KEY) == bundle
    assert resolve_verify(bundle, "ca.pem", key=KEY) == "ca.pem"
    assert resolve_verify(str(link), bundle, key=KEY) == bundle


def test_ca_file_with_verify_false_is_a_config_error_on_ca_file(tmp_path: Path) -> None:
    """ca_file (verify against this CA) and verify = false (verify nothing) contradict."""
    bundle = write_ca(tmp_path / "ca.pem")
    with pytest.raises(ConfigError, match="contradict") as raised:
        resolve_verify(False, bundle, key=KEY)
    assert raised.value.key == KEY
    assert "remove verify = false" in str(raised.value)
    assert "remove ca_file" in str(raised.value)


def test_ca_file_and_another_bundle_in_verify_is_a_config_error(tmp_path: Path) -> None:
    """Two different CA bundles are refused: the message names both and says to keep one."""
    one, other = write_ca(tmp_path / "one.pem"), write_ca(tmp_path / "other.pem")
    with pytest.raises(ConfigError, match="use one") as raised:
        resolve_verify(other, one, key=KEY)
    assert raised.value.key == KEY
    assert one in str(raised.value)
    assert other in str(raised.value)


def test_an_empty_verify_never_turns_checks_off() -> None:
    """An empty path is refused rather than read by requests as verification off."""
    with pytest.raises(ConfigError, match="CA bundle"):
        WorkerSessions(timeout=1.0, verify="")


async def test_sessions_trust_the_ca_bundle_they_are_given(server: ServedHttps) -> None:
    """verify = the server's CA: the request is answered."""
    sessions = WorkerSessions(timeout=5.0, verify=str(server.ca_file))
    assert await fetch(sessions, server.url) == "hello"


async def test_sessions_verify_against_the_system_store_by_default(
    server: ServedHttps, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default refuses a private CA even when REQUESTS_CA_BUNDLE names it."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(server.ca_file))
    sessions = WorkerSessions(timeout=5.0)
    with pytest.raises(requests.exceptions.SSLError):
        await fetch(sessions, server.url)


async def test_sessions_with_verify_false_accept_any_certificate(server: ServedHttps) -> None:
    """verify = false: answered without any CA, and urllib3 warns about the host."""
    sessions = WorkerSessions(timeout=5.0, verify=False)
    with pytest.warns(InsecureRequestWarning):
        assert await fetch(sessions, server.url) == "hello"
