"""No secret or token in the exceptions raised for bad credentials, 401 and 403, nor in reprs.

Real servers only: the sandbox platform, the Salesforce and Zendesk emulators, a webhook
receiver. For each failure the whole exception is read as a user or a log could see it: str,
repr and args of it and of everything it was raised from or during, and the formatted traceback.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from security_helpers import assert_no_secret, exception_texts, live_tokens
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from crmphone._serving import ServedHttps
from crmphone.adapters import AdapterContext, CallLog, LogStage
from crmphone.config import parse_config
from crmphone.errors import (
    AuthenticationError,
    CrmError,
    CrmPermanentError,
    PermissionDeniedError,
)
from crmphone.platform import (
    ClientCredentials,
    PlatformClient,
    StaticToken,
    sign_in_sandbox_agent,
)
from crmphone.sandbox import SandboxServer
from crmphone.testing import TEST_CLIENT_ID, fast_sandbox_config
from crmphone.testing.recording import fake_call_logs
from crmphone_salesforce import SalesforceAdapter
from crmphone_salesforce.emulator import SalesforceEmulator
from crmphone_webhook import WebhookAdapter
from crmphone_zendesk import ZendeskAdapter
from crmphone_zendesk.emulator import ZendeskEmulator

pytestmark = pytest.mark.timeout(60)

PLATFORM_SECRET = f"platform-secret-{secrets.token_hex(12)}"


def a_secret(kind: str) -> str:
    """A distinctive, never-valid secret for one test."""
    return f"{kind}-{secrets.token_hex(16)}"


def connected_log() -> CallLog:
    """An answered call's log, as the outbox hands it to an adapter."""
    return fake_call_logs()[LogStage.CONNECTED]


@pytest.fixture
async def sandbox() -> AsyncIterator[SandboxServer]:
    """A sandbox whose OAuth client has a distinctive secret."""
    config = fast_sandbox_config(client_secret=PLATFORM_SECRET, agents=2)
    async with SandboxServer(config, host="127.0.0.1", port=0) as server:
        yield server


class Refuser:
    """An HTTPS server (private CA) that answers every request with the next status of
    ``statuses`` and a Zendesk-shaped error body, recording the Authorization headers sent."""

    def __init__(self, *statuses: int) -> None:
        self.statuses = list(statuses)
        self.authorizations: list[str] = []
        self.https = ServedHttps("the refusing server", "refuser")

    async def _answer(self, request: Request) -> Response:
        await request.body()
        self.authorizations.append(request.headers.get("authorization", ""))
        status = self.statuses.pop(0) if self.statuses else 503
        body = {"error": "Forbidden", "description": "You do not have access to this page."}
        return JSONResponse(body, status_code=status)

    async def __aenter__(self) -> Refuser:
        routes = [Route("/{path:path}", self._answer, methods=["GET", "POST", "PUT"])]
        await self.https.start(Starlette(routes=routes))
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.https.stop()


# ---------------------------------------------------------------------------------------------
# The platform


async def test_a_refused_client_secret_is_not_in_the_error(sandbox: SandboxServer) -> None:
    """Bad client credentials: AuthenticationError, without the secret sent or the real one."""
    wrong = a_secret("wrong-secret")
    tokens = ClientCredentials(
        login_base=sandbox.base_url, client_id=TEST_CLIENT_ID, client_secret=wrong
    )
    with pytest.raises(AuthenticationError) as caught:
        await tokens.token()
    assert caught.value.status in (400, 401)
    assert_no_secret([wrong, PLATFORM_SECRET], exception_texts(caught.value), "the 401 error")
    assert_no_secret([wrong], repr(tokens) + str(tokens), "the provider's repr")


async def test_a_rejected_token_is_not_in_the_401_error(sandbox: SandboxServer) -> None:
    """A token the platform does not know: a 401 AuthenticationError without the token."""
    token = a_secret("token")
    async with PlatformClient(api_base=sandbox.base_url, tokens=StaticToken(token)) as client:
        with pytest.raises(AuthenticationError) as caught:
            await client.list_users()
        texts = exception_texts(caught.value) + repr(client) + str(client)
    assert_no_secret([token], texts, "the 401 error or the client's repr")


async def test_a_403_leaks_neither_the_agents_token_nor_its_refresh_token(
    sandbox: SandboxServer,
) -> None:
    """An agent's token changing another agent's presence: PermissionDeniedError (403) without
    the access token, the refresh token or the PKCE secrets."""
    first, second = (agent.id for agent in sandbox.sandbox.agents[:2])
    tokens = await sign_in_sandbox_agent(sandbox.base_url, first, client_id=TEST_CLIENT_ID)
    async with PlatformClient(api_base=sandbox.base_url, tokens=tokens) as client:
        definitions = await client.presence_definitions()
        with pytest.raises(PermissionDeniedError) as caught:
            await client.set_presence(second, definitions[0].id)
        issued = live_tokens()
        assert tokens.current is not None
        assert tokens.current.value in issued
        texts = [
            exception_texts(caught.value),
            repr(client),
            repr(tokens),
            str(tokens),
            repr(tokens.current),
            str(tokens.current),
        ]
    assert caught.value.status == 403
    assert_no_secret(issued, "\n".join(texts), "the 403 error or the reprs")


async def test_platform_reprs_hold_no_secret(sandbox: SandboxServer) -> None:
    """Providers, tokens and clients, used for real, show ids and times, never secrets."""
    tokens = ClientCredentials(
        login_base=sandbox.base_url, client_id=TEST_CLIENT_ID, client_secret=PLATFORM_SECRET
    )
    async with PlatformClient(api_base=sandbox.base_url, tokens=tokens, verify=False) as client:
        await client.list_users()
        static = StaticToken(a_secret("static"))
        shown = [repr(tokens), str(tokens), repr(client), str(client), repr(static), str(static)]
        shown += [repr(tokens.current), repr(static.current)]
        secrets_ = live_tokens() | {PLATFORM_SECRET}
    assert_no_secret(secrets_, "\n".join(shown), "a platform repr")
    assert TEST_CLIENT_ID in repr(tokens)  # the id is not secret, and helps diagnosis


def test_config_reprs_hold_no_secret(tmp_path: Path) -> None:
    """A Genesys config with its secrets read: no repr or str of it or its parts shows them, nor
    an adapter option holding a literal credential."""
    secret, agent_token, literal = a_secret("secret"), a_secret("agent"), a_secret("literal")
    text = (
        '[platform]\nkind = "genesys"\nregion = "mypurecloud.de"\n'
        '[agents]\nids = ["agent-1"]\n'
        '[[adapters]]\nname = "webhook"\nurl = "https://hooks.example.test/calls"\n'
        f'[adapters.headers]\nAuthorization = "Bearer {literal}"\n'
        '[phone]\nagent = "agent-1"\n'
    )
    environ = {
        "CRMPHONE_CLIENT_ID": "client-1",
        "CRMPHONE_CLIENT_SECRET": secret,
        "CRMPHONE_AGENT_TOKEN": agent_token,
    }
    config = parse_config(text, base_dir=tmp_path, environ=environ)
    assert config.platform.client_secret == secret
    assert config.phone is not None
    assert config.phone.token == agent_token
    parts: list[Any] = [config, config.platform, config.phone, *config.adapters]
    shown = "\n".join(repr(part) + str(part) for part in parts)
    assert_no_secret([secret, agent_token, literal], shown, "a config repr")


# ---------------------------------------------------------------------------------------------
# Salesforce


@pytest.fixture
async def salesforce() -> AsyncIterator[SalesforceEmulator]:
    """The Salesforce emulator on loopback."""
    async with SalesforceEmulator(seed=0) as emulator:
        yield emulator


@pytest.fixture
def contexts() -> Iterator[list[AdapterContext]]:
    """Adapter contexts made by a test, closed at its end."""
    made: list[AdapterContext] = []
    yield made
    for context in made:
        context.close()


def salesforce_adapter(
    emulator: SalesforceEmulator,
    contexts: list[AdapterContext],
    monkeypatch: pytest.MonkeyPatch,
    **env: str,
) -> SalesforceAdapter:
    """A Salesforce adapter on the emulator, its credentials from ``env`` as the connector reads
    them (client credentials, or a fixed session when ``SF_SESSION`` is given)."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    options: dict[str, Any] = {"instance_url": emulator.url, "ca_file": str(emulator.ca_file)}
    if "SF_SESSION" in env:
        options |= {"auth": "session", "session_id_env": "SF_SESSION"}
    else:
        options |= {
            "auth": "client_credentials",
            "client_id_env": "SF_ID",
            "client_secret_env": "SF_SECRET",
        }
    context = AdapterContext(name="salesforce", timeout=5.0)
    contexts.append(context)
    return SalesforceAdapter.from_options(options, context)


async def test_salesforce_bad_secret_401_and_403_leak_nothing(
    salesforce: SalesforceEmulator,
    contexts: list[AdapterContext],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A refused consumer secret (at start), an unknown session id (401) and a spent API
    allowance (403): neither the secrets sent, the real secret nor a live session is shown, in
    the errors, the adapter's reprs or its logs."""
    caplog.set_level(logging.DEBUG)
    wrong = a_secret("sf-wrong")
    refused = salesforce_adapter(
        salesforce, contexts, monkeypatch, SF_ID=salesforce.client_id, SF_SECRET=wrong
    )
    with pytest.raises(CrmPermanentError) as bad_secret:
        await refused.start()
    await refused.close()

    session = a_secret("sf-session")
    unknown = salesforce_adapter(salesforce, contexts, monkeypatch, SF_SESSION=session)
    await unknown.start()  # unreachable at start is only logged: the outbox will retry
    with pytest.raises(CrmError) as expired:
        await unknown.log_call(connected_log())
    await unknown.close()

    good = salesforce_adapter(
        salesforce,
        contexts,
        monkeypatch,
        SF_ID=salesforce.client_id,
        SF_SECRET=salesforce.client_secret,
    )
    await good.start()
    salesforce.model.faults.fail_next("request_limit")
    with pytest.raises(CrmError) as limited:
        await good.log_call(connected_log())
    sessions = live_tokens()
    shown = [repr(good), str(good), repr(good.settings), repr(good.client), repr(refused.settings)]
    await good.close()

    assert "403" in str(limited.value)
    assert "401" in str(expired.value)
    assert sessions  # the good adapter's session, held by simple-salesforce
    every_secret = [wrong, session, salesforce.client_secret, salesforce.session_id, *sessions]
    for name, error in [("bad secret", bad_secret), ("401", expired), ("403", limited)]:
        assert_no_secret(every_secret, exception_texts(error.value), f"the {name} error")
    assert_no_secret(every_secret, "\n".join(shown), "a Salesforce adapter's repr")
    assert_no_secret(every_secret, caplog.text, "the logs")


# ---------------------------------------------------------------------------------------------
# Zendesk


async def test_zendesk_bad_token_401_and_403_leak_nothing(
    contexts: list[AdapterContext],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A wrong API token (401), an expired one (401) and a proxy's 403: no token in the errors,
    the reprs or the logs."""
    caplog.set_level(logging.DEBUG)
    async with ZendeskEmulator(seed=0) as emulator:

        def adapter(token: str) -> ZendeskAdapter:
            monkeypatch.setenv("ZD_TOKEN", token)
            options = {
                "base_url": emulator.url,
                "email": emulator.email,
                "token_env": "ZD_TOKEN",
                "ca_file": str(emulator.ca_file),
            }
            context = AdapterContext(name="zendesk", timeout=5.0)
            contexts.append(context)
            return ZendeskAdapter.from_options(options, context)

        wrong = a_secret("zd-wrong")
        refused = adapter(wrong)
        with pytest.raises(CrmError) as bad_token:
            await refused.log_call(connected_log())
        await refused.close()

        good = adapter(emulator.api_token)
        emulator.model.faults.expired_credentials()
        with pytest.raises(CrmError) as expired:
            await good.log_call(connected_log())
        shown = [repr(good), str(good), repr(good.settings), repr(good.client)]
        await good.close()
        every_secret = [wrong, emulator.api_token, emulator.oauth_token]

    # The emulator has no 403: a server in front of Zendesk gives one with Zendesk's body.
    monkeypatch.setenv("ZD_TOKEN", emulator.api_token)
    async with Refuser(403) as refuser:
        context = AdapterContext(name="zendesk", timeout=5.0)
        contexts.append(context)
        options = {
            "base_url": refuser.https.url,
            "email": "bot@example.test",
            "token_env": "ZD_TOKEN",
            "ca_file": str(refuser.https.ca_file),
        }
        behind = ZendeskAdapter.from_options(options, context)
        with pytest.raises(CrmError) as forbidden:
            await behind.log_call(connected_log())
        shown += [repr(behind), str(behind)]
        await behind.close()
    assert refuser.authorizations  # the token really was sent, so it could have leaked

    assert "401" in str(bad_token.value)
    assert "403" in str(forbidden.value)
    for name, error in [("wrong token", bad_token), ("expired", expired), ("403", forbidden)]:
        assert_no_secret(every_secret, exception_texts(error.value), f"the {name} error")
    assert_no_secret(every_secret, "\n".join(shown), "a Zendesk adapter's repr")
    assert_no_secret(every_secret, caplog.text, "the logs")


# ---------------------------------------------------------------------------------------------
# The webhook example


async def test_webhook_401_and_403_leak_neither_header_nor_url_credentials(
    contexts: list[AdapterContext], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Receivers answering 401 and 403: neither the bearer token from the environment nor the
    password in the URL is in an error or a repr."""
    bearer, password = a_secret("hook-bearer"), a_secret("hook-password")
    monkeypatch.setenv("HOOK_TOKEN", bearer)
    errors: list[BaseException] = []
    shown: list[str] = []
    async with Refuser(401, 403, 401, 403) as refuser:
        host = refuser.https.url.removeprefix("https://")
        targets: list[dict[str, Any]] = [
            {"url": f"{refuser.https.url}/hook", "headers": {"Authorization": "env:HOOK_TOKEN"}},
            {"url": f"https://bot:{password}@{host}/hook"},
        ]
        for options in targets:
            context = AdapterContext(name="webhook", timeout=5.0, verify=str(refuser.https.ca_file))
            contexts.append(context)
            adapter = WebhookAdapter.from_options(options, context)
            await adapter.start()
            for _ in range(2):
                with pytest.raises(CrmError) as caught:
                    await adapter.log_call(connected_log())
                errors.append(caught.value)
            shown += [repr(adapter), str(adapter)]
            await adapter.close()
    assert [("401" in str(e), "403" in str(e)) for e in errors] == [
        (True, False),
        (False, True),
    ] * 2
    assert len(refuser.authorizations) == 4
    for error in errors:
        assert_no_secret([bearer, password], exception_texts(error), "a webhook error")
    assert_no_secret([bearer, password], "\n".join(shown), "the webhook adapter's repr")


def test_the_scan_sees_a_secret_hidden_anywhere_in_a_chain() -> None:
    """exception_texts reads causes, contexts and their args, so a secret only an inner
    exception holds would fail these tests."""
    secret = a_secret("hidden")
    inner = KeyError({"authorization": f"Bearer {secret}"})
    middle = ValueError("while handling it")
    middle.__context__ = inner
    middle.__suppress_context__ = True  # hidden from a printed traceback, still reachable
    outer = CrmPermanentError("outer, clean")
    outer.__cause__ = middle
    assert secret not in str(outer) + repr(outer)
    assert secret in exception_texts(outer)
