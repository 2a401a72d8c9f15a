"""TLS is verified by default on every connection, and turning it off is loud.

Against real loopback HTTPS servers whose certificates come from a private CA nobody trusts by
default: the sandbox platform served over HTTPS (REST, sign-in and the ``wss://`` notification
channel) and a webhook receiver. The default refuses with an error naming TLS verification; a CA
bundle makes it work; ``verify = false`` works too and is announced as a WARNING at every start
and by ``crmphone check``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import websockets
from click.testing import CliRunner
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from websockets.protocol import State

from crmphone._serving import LocalTls, ServedApp, ServedHttps
from crmphone.adapters import AdapterContext
from crmphone.cli import main
from crmphone.config import ConnectorConfig, parse_config, tls_warnings
from crmphone.errors import ConfigError, CrmRetryableError, TransportError, UsageError
from crmphone.platform import ClientCredentials, PlatformClient
from crmphone.platform._tls import certificate_problem, ssl_context, websocket_tls
from crmphone.sandbox.app import create_app
from crmphone.sandbox.hub import Sandbox
from crmphone.service import Services, run_connector
from crmphone.testing import TEST_CLIENT_ID, TEST_CLIENT_SECRET, fast_sandbox_config
from crmphone.testing.recording import fake_call_logs
from crmphone_webhook import WebhookAdapter

pytestmark = pytest.mark.timeout(60)

CREDENTIALS = {"CRMPHONE_CLIENT_ID": TEST_CLIENT_ID, "CRMPHONE_CLIENT_SECRET": TEST_CLIENT_SECRET}


@attrs.frozen
class HttpsSandbox:
    """The sandbox platform served over HTTPS with a certificate from a private CA."""

    url: str
    ca_file: Path
    sandbox: Sandbox

    @property
    def host(self) -> str:
        """``127.0.0.1:<port>``, as warnings name it."""
        return self.url.removeprefix("https://")


@contextlib.asynccontextmanager
async def https_sandbox() -> AsyncIterator[HttpsSandbox]:
    """A sandbox whose REST, sign-in and notification sockets are all behind TLS."""
    sandbox = Sandbox(fast_sandbox_config(agents=1))
    await sandbox.start()
    tls = LocalTls()
    certificate: dict[str, Any] = dict(tls.uvicorn_options())
    try:
        served = await ServedApp.start(
            create_app(sandbox),
            host="127.0.0.1",
            port=0,
            name="https-sandbox",
            what="the HTTPS sandbox",
            ws_ping_interval=None,
            **certificate,
        )
        try:
            yield HttpsSandbox(f"https://127.0.0.1:{served.port}", tls.ca_file, sandbox)
        finally:
            await served.stop()
    finally:
        await sandbox.close()
        tls.close()


class Receiver:
    """A webhook receiver over HTTPS (private CA) that counts what it was sent."""

    def __init__(self) -> None:
        self.posts = 0
        self.https = ServedHttps("the test webhook receiver", "tls-receiver")

    async def _post(self, request: Request) -> Response:
        await request.body()
        self.posts += 1
        return JSONResponse({"ok": True})

    async def __aenter__(self) -> Receiver:
        await self.https.start(Starlette(routes=[Route("/hook", self._post, methods=["POST"])]))
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.https.stop()

    @property
    def url(self) -> str:
        """Where call logs are posted."""
        return f"{self.https.url}/hook"


def sandbox_config(
    tmp_path: Path, url: str, verify: str = "", adapters: str = ""
) -> ConnectorConfig:
    """A connector config for the sandbox at ``url``, with ``verify`` as TOML (or absent)."""
    text = f'[platform]\nkind = "sandbox"\nurl = "{url}"\n'
    text += f"verify = {verify}\n" if verify else ""
    text += f'[outbox]\npath = "{tmp_path / "outbox.sqlite3"}"\n' + adapters
    return parse_config(text, base_dir=tmp_path, environ=CREDENTIALS)


async def follow_once(config: ConnectorConfig) -> tuple[Services, int]:
    """Run the connector until it follows the platform's events, then stop; return its services
    and how many notification sockets it had opened by then."""
    started: list[tuple[Services, int]] = []

    async def on_started(services: Services) -> None:
        stream = services.connector.stream
        started.append((services, 0 if stream is None else stream.stats.sockets_opened))
        stop.set()

    stop = asyncio.Event()
    async with asyncio.timeout(30):
        await run_connector(config, stop=stop, on_started=on_started)
    (result,) = started
    return result


def warnings_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The WARNING messages the connector's service logged."""
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == "crmphone.service" and record.levelno == logging.WARNING
    ]


# ---------------------------------------------------------------------------------------------
# The platform


async def test_the_platform_client_refuses_an_untrusted_certificate_at_once() -> None:
    """By default the token request to an HTTPS platform with a private CA fails at once, naming
    TLS verification, the host and the fix, without retrying."""
    sleeps: list[float] = []

    async def sleep(delay: float) -> None:
        sleeps.append(delay)

    async with https_sandbox() as platform:
        tokens = ClientCredentials(
            login_base=platform.url,
            client_id=TEST_CLIENT_ID,
            client_secret=TEST_CLIENT_SECRET,
            sleep=sleep,
        )
        with pytest.raises(TransportError) as caught:
            await tokens.token()
        async with PlatformClient(api_base=platform.url, tokens=tokens, sleep=sleep) as client:
            with pytest.raises(TransportError) as listed:
                await client.list_users()
    for error in (caught.value, listed.value):
        message = str(error)
        assert "TLS verification failed" in message
        assert platform.url in message
        assert 'verify = "' in message  # what to do: trust the CA, not switch checks off
        assert certificate_problem(error) is not None  # the ssl error is chained
    assert sleeps == []  # a certificate does not heal in seconds: nothing was retried


async def test_the_connector_refuses_an_untrusted_platform_by_default(tmp_path: Path) -> None:
    """``crmphone run``'s connector stops at start with the TLS error when [platform] has no
    verify and the platform's certificate is not trusted."""
    async with https_sandbox() as platform:
        config = sandbox_config(tmp_path, platform.url)
        assert config.platform.verify is True
        assert tls_warnings(config) == ()
        with pytest.raises(TransportError, match="TLS verification failed"):
            async with asyncio.timeout(20):
                await run_connector(config, stop=asyncio.Event())


async def test_a_ca_bundle_verifies_rest_and_the_notification_socket(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """With verify = the CA bundle, the connector signs in, reads the agents and follows their
    events over wss://, trusting that CA only, and says so without any warning."""
    caplog.set_level(logging.INFO, logger="crmphone.service")
    async with https_sandbox() as platform:
        config = sandbox_config(tmp_path, platform.url, verify=f'"{platform.ca_file}"')
        services, sockets = await follow_once(config)
        assert platform.sandbox.world.tokens  # a token was issued over HTTPS
    assert services.connector.client.verify == str(platform.ca_file)
    assert sockets >= 1  # the channel's socket: wss://, as the platform is https://
    assert warnings_logged(caplog) == []
    assert any(
        "platform.verify: TLS verified against the CA bundle" in record.getMessage()
        for record in caplog.records
    )


async def test_the_phone_signs_in_and_signals_over_tls_with_the_bundle(tmp_path: Path) -> None:
    """A [phone] signs its agent in and opens its wss:// signalling socket trusting the bundle."""
    async with https_sandbox() as platform:
        agent = platform.sandbox.agents[0].id
        phone = f'[phone]\nagent = "{agent}"\n'
        config = sandbox_config(tmp_path, platform.url, f'"{platform.ca_file}"', adapters=phone)
        services, _ = await follow_once(config)
    assert services.phone is not None
    assert services.phone.agent_id == agent


async def test_verify_false_connects_and_warns_naming_the_platform_and_its_host(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """verify = false accepts the untrusted certificate (REST and wss://) and the connector logs
    a WARNING naming platform.verify, the host and what is exposed, at every start."""
    caplog.set_level(logging.INFO)
    async with https_sandbox() as platform:
        config = sandbox_config(tmp_path, platform.url, verify="false")
        _, sockets = await follow_once(config)
        first = warnings_logged(caplog)
        caplog.clear()
        await follow_once(config)
        second = warnings_logged(caplog)
    assert sockets >= 1
    assert first == second  # repeated at each start, never only once
    (warning,) = first
    assert "platform.verify = false" in warning
    assert "NOT verified" in warning
    assert platform.host in warning
    assert "client secret" in warning
    assert TEST_CLIENT_SECRET not in warning


async def test_the_notification_socket_trusts_what_the_client_trusts() -> None:
    """The wss:// channel opens with the client's TLS context (the CA bundle) and is refused
    with the libraries' default one, which does not know the private CA."""
    async with https_sandbox() as platform:
        trusted = ClientCredentials(
            login_base=platform.url,
            client_id=TEST_CLIENT_ID,
            client_secret=TEST_CLIENT_SECRET,
            verify=str(platform.ca_file),
        )
        async with PlatformClient(
            api_base=platform.url, tokens=trusted, verify=str(platform.ca_file)
        ) as client:
            channel = await client.create_channel()
            uri = channel.connect_uri
            assert uri.startswith("wss://")
            async with websockets.connect(uri, **websocket_tls(uri, client.ssl_context)) as ws:
                assert ws.protocol.state is State.OPEN
            with pytest.raises(ssl.SSLCertVerificationError):
                await websockets.connect(uri, open_timeout=5)
    off = ssl_context(False)
    assert off is not None
    assert (off.verify_mode, off.check_hostname) == (ssl.CERT_NONE, False)
    assert ssl_context(True) is None  # the libraries' own default, which verifies


def test_verify_is_given_once_and_a_bad_bundle_is_a_config_error(tmp_path: Path) -> None:
    """A shared httpx client and verify are not both taken, and a CA bundle that is no PEM is a
    ConfigError naming platform.verify."""
    not_pem = tmp_path / "ca.pem"
    not_pem.write_text("not a certificate\n")
    tokens = ClientCredentials(login_base="https://login.example", client_id="c", client_secret="s")
    with pytest.raises(UsageError, match="verify or http"):
        PlatformClient(
            api_base="https://api.example", tokens=tokens, http=httpx.AsyncClient(), verify=False
        )
    with pytest.raises(ConfigError) as caught:
        PlatformClient(api_base="https://api.example", tokens=tokens, verify=str(not_pem))
    assert caught.value.key == "platform.verify"


@pytest.mark.parametrize(
    ("verify", "expected"),
    [("true", True), ("false", False), ('"ca.pem"', "ca.pem")],
)
def test_platform_verify_parses_like_an_adapters(
    tmp_path: Path, verify: str, expected: bool | str
) -> None:
    """[platform] verify takes what [[adapters]] verify takes: true, false or a CA bundle path
    (relative to the file), with the same checks."""
    (tmp_path / "ca.pem").write_text("")
    config = sandbox_config(tmp_path, "http://127.0.0.1:9", verify=verify)
    want = str(tmp_path / expected) if isinstance(expected, str) else expected
    assert config.platform.verify == want
    for bad, words in [('"missing.pem"', "does not exist"), ('"false"', "without quotes")]:
        with pytest.raises(ConfigError, match=words) as caught:
            sandbox_config(tmp_path, "http://127.0.0.1:9", verify=bad)
        assert caught.value.key == "platform.verify"


# ---------------------------------------------------------------------------------------------
# Adapters


async def post_one(receiver: Receiver, verify: bool | str) -> None:
    """Post one call log through a started webhook adapter with ``verify``."""
    context = AdapterContext(name="webhook", timeout=5.0, verify=verify)
    adapter = WebhookAdapter.from_options({"url": receiver.url}, context)
    await adapter.start()
    try:
        logs = fake_call_logs()
        await adapter.log_call(next(iter(logs.values())))
    finally:
        await adapter.close()
        context.close()


async def test_an_adapter_verifies_by_default_trusts_a_bundle_and_can_opt_out() -> None:
    """The webhook adapter refuses the private CA by default (nothing posted, the error naming
    the certificate), posts with verify = the bundle, and posts with verify = false."""
    async with Receiver() as receiver:
        with pytest.raises(CrmRetryableError) as caught:
            await post_one(receiver, True)
        assert receiver.posts == 0
        assert "certificate verify failed" in str(caught.value).lower()
        await post_one(receiver, str(receiver.https.ca_file))
        await post_one(receiver, False)
        assert receiver.posts == 2


async def test_adapter_opt_outs_are_logged_at_start_naming_adapter_and_host(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An [[adapters]] verify = false is a WARNING at start naming adapters[i], the instance and
    the host of its URL (never the URL's credentials), beside the platform's own."""
    caplog.set_level(logging.INFO)
    adapters = (
        '[[adapters]]\nname = "webhook"\ninstance = "hooks"\n'
        'url = "https://bot:hunter2hunter2@hooks.example.test:8443/calls"\nverify = false\n'
    )
    async with https_sandbox() as platform:
        config = sandbox_config(tmp_path, platform.url, verify="false", adapters=adapters)
        await follow_once(config)
    platform_warning, adapter_warning = warnings_logged(caplog)
    assert "platform.verify = false" in platform_warning
    assert "adapters[0].verify = false" in adapter_warning
    assert "'hooks'" in adapter_warning
    assert "hooks.example.test:8443" in adapter_warning
    assert "hunter2" not in adapter_warning
    assert tls_warnings(config) == (
        platform_warning.removeprefix("service: "),
        adapter_warning.removeprefix("service: "),
    )


# ---------------------------------------------------------------------------------------------
# crmphone check


def write_private(path: Path, text: str) -> Path:
    """``text`` in a new file only its owner can read."""
    path.write_text(text)
    path.chmod(0o600)
    return path


def check(path: Path, *options: str) -> Any:
    """``crmphone check --config path`` in this process."""
    return CliRunner().invoke(main, ["check", "--config", str(path), *options], env=CREDENTIALS)


def test_check_passes_a_verified_configuration_quietly(tmp_path: Path) -> None:
    """A private file with verification on is usable and has no warning."""
    config = write_private(
        tmp_path / "connector.toml",
        '[platform]\nkind = "sandbox"\nurl = "https://127.0.0.1:9"\n'
        '[[adapters]]\nname = "webhook"\nurl = "https://hooks.example.test/calls"\n',
    )
    result = check(config, "--strict")
    assert result.exit_code == 0, result.output
    assert "warning" not in result.output
    assert "TLS: verified" in result.output
    assert "is usable" in result.output


def test_check_prints_every_opt_out_and_strict_fails_on_them(tmp_path: Path) -> None:
    """check lists the platform's and each adapter's opt-out, exits 0, and 1 with --strict."""
    config = write_private(
        tmp_path / "connector.toml",
        '[platform]\nkind = "sandbox"\nurl = "https://127.0.0.1:9"\nverify = false\n'
        '[[adapters]]\nname = "webhook"\nurl = "https://hooks.example.test/calls"\n'
        "verify = false\n",
    )
    result = check(config)
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("warning: ")]
    assert len(lines) == 2
    assert "platform.verify = false" in lines[0]
    assert "127.0.0.1:9" in lines[0]
    assert "adapters[0].verify = false" in lines[1]
    assert "hooks.example.test" in lines[1]
    assert "TLS: NOT VERIFIED" in result.output
    assert "2 warning(s)" in result.output
    assert check(config, "--strict").exit_code == 1


def test_check_refuses_a_ca_bundle_that_is_not_pem(tmp_path: Path) -> None:
    """A [platform] verify naming a file that holds no certificate is exit code 2 at check time,
    not a surprise at the first connection."""
    write_private(tmp_path / "ca.pem", "not a certificate\n")
    config = write_private(
        tmp_path / "connector.toml",
        '[platform]\nkind = "sandbox"\nurl = "https://127.0.0.1:9"\nverify = "ca.pem"\n',
    )
    result = check(config)
    assert result.exit_code == 2
    assert "platform.verify" in result.output
