"""Token providers: client credentials, authorization code + PKCE, static tokens."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import random
import re
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import respx
from platform_fakes import ACCESS, LOGIN, SECRET, RecordedSleeps, token_response

from crmphone.clock import ManualClock
from crmphone.errors import AuthenticationError, PlatformError, TransportError
from crmphone.platform import (
    AccessToken,
    AuthorizationCode,
    ClientCredentials,
    StaticToken,
    TokenProvider,
    authorization_url,
    make_pkce_pair,
    pkce_challenge,
)

TOKEN_URL = f"{LOGIN}/oauth/token"


def form_of(request: httpx.Request) -> dict[str, str]:
    """The request's urlencoded form as a flat dict."""
    return {key: values[0] for key, values in parse_qs(request.content.decode()).items()}


async def test_client_credentials_posts_the_grant_with_basic_auth(
    mock: respx.MockRouter, credentials: ClientCredentials, clock: ManualClock
) -> None:
    """The first token() posts grant_type=client_credentials with HTTP Basic id:secret."""
    route = mock.post(TOKEN_URL).mock(return_value=token_response())
    token = await credentials.token()
    request = route.calls.last.request
    expected = base64.b64encode(f"my-client:{SECRET}".encode()).decode()
    assert request.headers["Authorization"] == f"Basic {expected}"
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert form_of(request) == {"grant_type": "client_credentials"}
    assert token.value == ACCESS
    assert token.authorization == f"Bearer {ACCESS}"
    assert token.issued_at == clock.wall()
    assert token.expires_at == clock.wall() + timedelta(days=1)
    assert credentials.current is token


async def test_token_is_cached(mock: respx.MockRouter, credentials: ClientCredentials) -> None:
    """Later token() calls return the cached token without asking the login host."""
    route = mock.post(TOKEN_URL).mock(return_value=token_response())
    first = await credentials.token()
    second = await credentials.token()
    assert first is second
    assert route.call_count == 1


async def test_renews_five_minutes_before_a_day_long_token_expires(
    mock: respx.MockRouter, credentials: ClientCredentials, clock: ManualClock
) -> None:
    """A 24 h token is renewed 300 s before expiry, not earlier."""
    route = mock.post(TOKEN_URL).mock(
        side_effect=[token_response("first"), token_response("second")]
    )
    assert (await credentials.token()).value == "first"
    clock.advance(86400 - 301)
    assert (await credentials.token()).value == "first"
    clock.advance(2)
    assert (await credentials.token()).value == "second"
    assert route.call_count == 2


async def test_short_tokens_renew_at_a_tenth_of_their_lifetime(
    mock: respx.MockRouter, credentials: ClientCredentials, clock: ManualClock
) -> None:
    """A 600 s token is renewed 60 s (10 %) before expiry, since that is less than 5 min."""
    mock.post(TOKEN_URL).mock(
        side_effect=[token_response("first", 600), token_response("second", 600)]
    )
    assert (await credentials.token()).value == "first"
    clock.advance(539)
    assert (await credentials.token()).value == "first"
    clock.advance(2)
    assert (await credentials.token()).value == "second"


async def test_explicit_refresh_margin(
    mock: respx.MockRouter, clock: ManualClock, sleeps: RecordedSleeps
) -> None:
    """refresh_margin overrides the default renewal point."""
    mock.post(TOKEN_URL).mock(side_effect=[token_response("a", 1000), token_response("b", 1000)])
    credentials = ClientCredentials(
        login_base=LOGIN,
        client_id="my-client",
        client_secret=SECRET,
        clock=clock,
        refresh_margin=10.0,
        sleep=sleeps,
    )
    await credentials.token()
    clock.advance(989)
    assert (await credentials.token()).value == "a"
    clock.advance(2)
    assert (await credentials.token()).value == "b"


async def test_refresh_always_fetches_a_new_token(
    mock: respx.MockRouter, credentials: ClientCredentials
) -> None:
    """refresh() asks the login host even when the cached token is fresh."""
    mock.post(TOKEN_URL).mock(side_effect=[token_response("a"), token_response("b")])
    await credentials.token()
    assert (await credentials.refresh()).value == "b"
    assert credentials.current is not None
    assert credentials.current.value == "b"


async def test_concurrent_token_callers_share_one_request(
    mock: respx.MockRouter, credentials: ClientCredentials
) -> None:
    """Ten callers arriving while the first request is in flight cause a single request."""
    release = asyncio.Event()

    async def slow_login(request: httpx.Request) -> httpx.Response:
        await release.wait()
        return token_response()

    route = mock.post(TOKEN_URL).mock(side_effect=slow_login)
    callers = [asyncio.create_task(credentials.token()) for _ in range(10)]
    await asyncio.sleep(0)
    release.set()
    tokens = await asyncio.wait_for(asyncio.gather(*callers), timeout=5)
    assert route.call_count == 1
    assert all(token is tokens[0] for token in tokens)


async def test_concurrent_refresh_callers_share_one_request(
    mock: respx.MockRouter, credentials: ClientCredentials
) -> None:
    """A burst of 401-driven refreshes for the same stale token yields one new token."""
    release = asyncio.Event()
    values = iter(["initial", "renewed", "unexpected"])

    async def login(request: httpx.Request) -> httpx.Response:
        value = next(values)
        if value != "initial":
            await release.wait()
        return token_response(value)

    route = mock.post(TOKEN_URL).mock(side_effect=login)
    await credentials.token()
    callers = [asyncio.create_task(credentials.refresh()) for _ in range(5)]
    await asyncio.sleep(0)
    release.set()
    tokens = await asyncio.wait_for(asyncio.gather(*callers), timeout=5)
    assert {token.value for token in tokens} == {"renewed"}
    assert route.call_count == 2


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (401, {"error": "invalid_client", "description": "client not found"}),
        (400, {"error": "invalid_client", "error_description": "authentication failed"}),
        (403, {"error": "unauthorized_client"}),
        (404, None),
    ],
)
async def test_refused_credentials_raise_authentication_error_with_advice(
    mock: respx.MockRouter, credentials: ClientCredentials, status: int, body: object
) -> None:
    """Refused credentials say which host refused, the OAuth reason, and which settings to check."""
    response = httpx.Response(status, json=body) if body else httpx.Response(status, text="nope")
    route = mock.post(TOKEN_URL).mock(return_value=response)
    with pytest.raises(AuthenticationError) as info:
        await credentials.token()
    message = str(info.value)
    assert info.value.status == status
    assert "CRMPHONE_CLIENT_ID" in message
    assert "CRMPHONE_CLIENT_SECRET" in message
    assert LOGIN in message
    assert SECRET not in message
    if body:
        assert "invalid_client" in message or "unauthorized_client" in message
    assert route.call_count == 1  # refused credentials are not retried


async def test_login_host_server_errors_are_retried(
    mock: respx.MockRouter, credentials: ClientCredentials, sleeps: RecordedSleeps
) -> None:
    """A 503 from the login host is retried after a backoff wait."""
    route = mock.post(TOKEN_URL).mock(side_effect=[httpx.Response(503), token_response()])
    assert (await credentials.token()).value == ACCESS
    assert route.call_count == 2
    assert len(sleeps.delays) == 1


async def test_unreachable_login_host_is_a_transport_error(
    mock: respx.MockRouter, credentials: ClientCredentials
) -> None:
    """A refused connection to the login host becomes TransportError, chained."""
    mock.post(TOKEN_URL).mock(side_effect=httpx.ConnectError("connection refused"))
    with pytest.raises(TransportError, match="no response from https://login") as info:
        await credentials.token()
    assert isinstance(info.value.__cause__, httpx.ConnectError)


@pytest.mark.parametrize(
    ("response", "match"),
    [
        (httpx.Response(200, json={"token_type": "bearer"}), "no 'access_token'"),
        (httpx.Response(200, json={"access_token": "x", "expires_in": "soon"}), "expires_in"),
        (httpx.Response(200, json={"access_token": "x", "expires_in": 0}), "positive"),
        (httpx.Response(200, json=["x"]), "not a JSON object"),
        (httpx.Response(200, text="<html>proxy login</html>"), "not JSON"),
    ],
)
async def test_malformed_token_responses_are_platform_errors(
    mock: respx.MockRouter, credentials: ClientCredentials, response: httpx.Response, match: str
) -> None:
    """A token answer without a usable token is a PlatformError, never a KeyError."""
    mock.post(TOKEN_URL).mock(return_value=response)
    with pytest.raises(PlatformError, match=match):
        await credentials.token()


async def test_secrets_never_appear_in_reprs_errors_or_logs(
    mock: respx.MockRouter, credentials: ClientCredentials, caplog: pytest.LogCaptureFixture
) -> None:
    """Neither the client secret nor the access token shows in repr, str, errors or log records."""
    caplog.set_level(logging.DEBUG)
    mock.post(TOKEN_URL).mock(
        side_effect=[token_response(), httpx.Response(401, json={"error": "invalid_client"})]
    )
    token = await credentials.token()
    with pytest.raises(AuthenticationError) as info:
        await credentials.refresh()
    texts = [repr(credentials), str(credentials), repr(token), str(token), str(info.value)]
    texts += [record.getMessage() for record in caplog.records]
    assert any("access token" in record.getMessage() for record in caplog.records)
    for text in texts:
        assert SECRET not in text
        assert ACCESS not in text
    assert "my-client" in repr(credentials)  # the id is not secret, and helps diagnosis


def test_access_token_lifetime_arithmetic() -> None:
    """expires_in and is_expired compare against the given instant."""
    issued = datetime(2026, 1, 1, tzinfo=UTC)
    token = AccessToken(
        value="v", token_type="bearer", issued_at=issued, expires_at=issued + timedelta(hours=1)
    )
    assert token.lifetime == 3600
    assert token.expires_in(issued + timedelta(minutes=50)) == 600
    assert not token.is_expired(issued + timedelta(minutes=59))
    assert token.is_expired(issued + timedelta(hours=1))
    assert token.expires_in(issued + timedelta(hours=2)) == -3600


def test_pkce_pair_is_s256() -> None:
    """The challenge is the unpadded base64url SHA-256 of a 43-128 char unreserved verifier."""
    verifier, challenge = make_pkce_pair()
    assert re.fullmatch(r"[A-Za-z0-9._~-]{43,128}", verifier)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    assert challenge == base64.urlsafe_b64encode(digest).decode().rstrip("=")
    assert make_pkce_pair()[0] != verifier


def test_pkce_challenge_matches_rfc_7636_example() -> None:
    """The challenge of RFC 7636 Appendix B's verifier is the RFC's challenge."""
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert pkce_challenge(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_authorization_url_carries_the_pkce_parameters() -> None:
    """The sign-in URL asks for a code with an S256 challenge, the redirect URI and the state."""
    url = authorization_url(
        LOGIN + "/", "my-client", "http://127.0.0.1:8765/callback", "CHALLENGE", "st&te"
    )
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == f"{LOGIN}/oauth/authorize"
    assert parse_qs(parts.query) == {
        "response_type": ["code"],
        "client_id": ["my-client"],
        "redirect_uri": ["http://127.0.0.1:8765/callback"],
        "code_challenge": ["CHALLENGE"],
        "code_challenge_method": ["S256"],
        "state": ["st&te"],
    }


def _authorization_code(
    clock: ManualClock, sleeps: RecordedSleeps, **extra: str
) -> AuthorizationCode:
    return AuthorizationCode(
        login_base=LOGIN,
        client_id="public-client",
        redirect_uri="http://127.0.0.1:8765/callback",
        code="the-code",
        code_verifier="the-verifier-" + "v" * 40,
        clock=clock,
        sleep=sleeps,
        rng=random.Random(1),
        **extra,  # type: ignore[arg-type]
    )


async def test_authorization_code_exchange_then_refresh_token_grant(
    mock: respx.MockRouter, clock: ManualClock, sleeps: RecordedSleeps
) -> None:
    """The code and verifier are exchanged once; renewal then uses the refresh token."""
    route = mock.post(TOKEN_URL).mock(
        side_effect=[
            httpx.Response(
                200,
                json={
                    "access_token": "user-1",
                    "token_type": "bearer",
                    "expires_in": 3600,
                    "refresh_token": "rt-1",
                },
            ),
            httpx.Response(
                200,
                json={"access_token": "user-2", "expires_in": 3600, "refresh_token": "rt-2"},
            ),
            httpx.Response(200, json={"access_token": "user-3", "expires_in": 3600}),
        ]
    )
    provider = _authorization_code(clock, sleeps)
    assert (await provider.token()).value == "user-1"
    exchange = route.calls[0].request
    assert "Authorization" not in exchange.headers  # a public client proves itself by PKCE
    assert form_of(exchange) == {
        "grant_type": "authorization_code",
        "code": "the-code",
        "redirect_uri": "http://127.0.0.1:8765/callback",
        "code_verifier": "the-verifier-" + "v" * 40,
        "client_id": "public-client",
    }
    clock.advance(3600)
    assert (await provider.token()).value == "user-2"
    assert form_of(route.calls[1].request) == {
        "grant_type": "refresh_token",
        "refresh_token": "rt-1",
        "client_id": "public-client",
    }
    assert (await provider.refresh()).value == "user-3"
    assert form_of(route.calls[2].request)["refresh_token"] == "rt-2"
    for text in (repr(provider), str(provider)):
        for secret in ("the-code", "the-verifier", "rt-", "user-"):
            assert secret not in text


async def test_authorization_code_confidential_client_uses_basic_auth(
    mock: respx.MockRouter, clock: ManualClock, sleeps: RecordedSleeps
) -> None:
    """With a client secret the exchange authenticates with HTTP Basic, not a client_id field."""
    route = mock.post(TOKEN_URL).mock(return_value=token_response())
    provider = _authorization_code(clock, sleeps, client_secret=SECRET)
    await provider.token()
    request = route.calls.last.request
    assert request.headers["Authorization"].startswith("Basic ")
    assert "client_id" not in form_of(request)
    assert SECRET not in repr(provider)


async def test_authorization_code_without_refresh_token_asks_to_sign_in_again(
    mock: respx.MockRouter, clock: ManualClock, sleeps: RecordedSleeps
) -> None:
    """Once the single-use code is spent and no refresh token came, renewal fails clearly."""
    route = mock.post(TOKEN_URL).mock(return_value=token_response(expires_in=3600))
    provider = _authorization_code(clock, sleeps)
    await provider.token()
    with pytest.raises(AuthenticationError, match="Sign the agent in again"):
        await provider.refresh()
    assert route.call_count == 1


async def test_refused_authorization_code_is_not_sent_twice(
    mock: respx.MockRouter, clock: ManualClock, sleeps: RecordedSleeps
) -> None:
    """A refused exchange raises AuthenticationError and the spent code is never reused."""
    route = mock.post(TOKEN_URL).mock(
        return_value=httpx.Response(400, json={"error": "invalid_grant"})
    )
    provider = _authorization_code(clock, sleeps)
    with pytest.raises(AuthenticationError, match=r"invalid_grant.*sign the agent in again"):
        await provider.token()
    with pytest.raises(AuthenticationError, match="Sign the agent in again"):
        await provider.token()
    assert route.call_count == 1


async def test_static_token_is_returned_and_cannot_refresh(clock: ManualClock) -> None:
    """A static token is handed out as given; refresh() raises a clear AuthenticationError."""
    provider = StaticToken(ACCESS, clock=clock)
    token = await provider.token()
    assert token.value == ACCESS
    assert provider.current is token
    with pytest.raises(AuthenticationError, match="cannot be renewed"):
        await provider.refresh()
    assert ACCESS not in repr(provider)


async def test_static_token_past_its_expiry_raises(clock: ManualClock) -> None:
    """A static token with a known expiry is refused locally once it has passed."""
    provider = StaticToken(ACCESS, expires_at=clock.wall() + timedelta(seconds=10), clock=clock)
    await provider.token()
    clock.advance(10)
    with pytest.raises(AuthenticationError, match="expired"):
        await provider.token()


def test_every_provider_satisfies_the_protocol(
    credentials: ClientCredentials, clock: ManualClock, sleeps: RecordedSleeps
) -> None:
    """The three providers are TokenProviders."""
    for provider in (credentials, _authorization_code(clock, sleeps), StaticToken("x")):
        assert isinstance(provider, TokenProvider)
