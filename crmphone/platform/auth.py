"""OAuth access tokens for the platform, and the providers that obtain and renew them.

A :class:`TokenProvider` hands the REST client a valid :class:`AccessToken` (``token()``) and a
fresh one when the platform rejects the old one (``refresh()``). Three providers:

- :class:`ClientCredentials` — a server-side integration (an OAuth client with the Client
  Credentials grant); renews the token shortly before it expires.
- :class:`AuthorizationCode` — an agent signed in through the browser (Authorization Code grant with
  PKCE); needed for anything about "me" (``users/me``, the agent's own station).
- :class:`StaticToken` — a token obtained elsewhere; never renewed.

Concurrent callers share one token request: a burst of 401s or a cold start produces one request to
the login host, not one per caller. Client secrets, codes, verifiers and tokens never appear in
reprs, logs or error messages.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import random
import secrets
import ssl
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable
from urllib.parse import urlencode

import attrs
import httpx

from crmphone.clock import Clock, SystemClock
from crmphone.errors import (
    AuthenticationError,
    PlatformError,
    RateLimitedError,
    ServerError,
    UsageError,
)

from ._http import Sleep, read_json, send_with_retries
from ._tls import ssl_context
from .retry import RetryPolicy, parse_retry_after

__all__ = [
    "AccessToken",
    "AuthorizationCode",
    "ClientCredentials",
    "StaticToken",
    "TokenProvider",
    "authorization_url",
    "make_pkce_pair",
]

logger = logging.getLogger(__name__)

_TOKEN_PATH = "/oauth/token"  # noqa: S105 - a URL path, not a secret
# Genesys Cloud's documented token lifetime bounds are 300 s to 172,800 s; its default is a day.
_DEFAULT_EXPIRES_IN = 86400.0
_DEFAULT_REFRESH_MARGIN = 300.0


@attrs.frozen
class AccessToken:
    """A bearer token and its lifetime; the value is kept out of every repr.

    ``issued_at`` and ``expires_at`` are aware UTC datetimes taken from the provider's clock when
    the token arrived, for deciding when to renew and for diagnosis.
    """

    value: str = attrs.field(repr=False)
    token_type: str
    issued_at: datetime
    expires_at: datetime

    @property
    def authorization(self) -> str:
        """The ``Authorization`` header value (``Bearer …``); handle it as a secret."""
        scheme = "Bearer" if self.token_type.lower() == "bearer" else self.token_type
        return f"{scheme} {self.value}"

    @property
    def lifetime(self) -> float:
        """Seconds between issue and expiry."""
        return (self.expires_at - self.issued_at).total_seconds()

    def expires_in(self, now: datetime) -> float:
        """Seconds left at ``now`` (negative once expired)."""
        return (self.expires_at - now).total_seconds()

    def is_expired(self, now: datetime) -> bool:
        """Whether the token is no longer valid at ``now``."""
        return now >= self.expires_at

    @classmethod
    def from_genesys(cls, data: object, *, now: datetime) -> AccessToken:
        """Build from a ``POST /oauth/token`` response body received at ``now``.

        Raises :class:`~crmphone.errors.PlatformError` (without echoing the body, which holds the
        token) when ``access_token`` is missing or ``expires_in`` is not a positive number.
        """
        if not isinstance(data, dict):
            raise PlatformError("malformed token response from the login host: not a JSON object")
        value = data.get("access_token")
        if not isinstance(value, str) or not value:
            raise PlatformError(
                "malformed token response from the login host: no 'access_token' string"
            )
        token_type = data.get("token_type", "bearer")
        if not isinstance(token_type, str) or not token_type:
            raise PlatformError(
                "malformed token response from the login host: 'token_type' must be a string"
            )
        expires_in = data.get("expires_in", _DEFAULT_EXPIRES_IN)
        if isinstance(expires_in, bool) or not isinstance(expires_in, int | float):
            raise PlatformError(
                "malformed token response from the login host: 'expires_in' must be a number"
            )
        if expires_in <= 0:
            raise PlatformError(
                "malformed token response from the login host: 'expires_in' must be positive"
            )
        return cls(
            value=value,
            token_type=token_type,
            issued_at=now,
            expires_at=now + timedelta(seconds=float(expires_in)),
        )


@runtime_checkable
class TokenProvider(Protocol):
    """What the REST client needs from a source of access tokens."""

    async def token(self) -> AccessToken:
        """A token valid for a while yet; fetched or renewed only when needed."""
        ...

    async def refresh(self) -> AccessToken:
        """A new token, because the platform rejected the current one (a 401)."""
        ...

    @property
    def current(self) -> AccessToken | None:
        """The token in use, if any (for diagnosis: ``issued_at``, ``expires_at``)."""
        ...


def make_pkce_pair() -> tuple[str, str]:
    """A fresh PKCE ``(code_verifier, code_challenge)`` pair (method S256, RFC 7636).

    Keep the verifier secret until the token exchange; put the challenge in the authorization URL.
    """
    verifier = secrets.token_urlsafe(64)  # 86 characters of [A-Za-z0-9_-], within 43..128
    return verifier, pkce_challenge(verifier)


def pkce_challenge(verifier: str) -> str:
    """The S256 code challenge of ``verifier``: unpadded base64url of its SHA-256."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def authorization_url(
    login_base: str, client_id: str, redirect_uri: str, challenge: str, state: str
) -> str:
    """The URL to send the agent's browser to for signing in (Authorization Code grant + PKCE).

    The login host redirects to ``redirect_uri`` with ``code`` and the same ``state``; check the
    state, then give the code and the verifier to :class:`AuthorizationCode`.
    """
    query = urlencode(
        {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "state": state,
        }
    )
    return f"{login_base.rstrip('/')}/oauth/authorize?{query}"


def _default_margin(token: AccessToken) -> float:
    return min(_DEFAULT_REFRESH_MARGIN, 0.1 * token.lifetime)


@attrs.define(kw_only=True)
class _TokenEndpoint:
    """Posts grant forms to ``{login_base}/oauth/token`` and maps failures to crmphone errors."""

    login_base: str
    client_id: str
    http: httpx.AsyncClient | None
    clock: Clock
    retry: RetryPolicy
    sleep: Sleep
    rng: random.Random
    timeout: float
    credentials_hint: str
    verify: bool | str = True
    _ssl: ssl.SSLContext | None = attrs.field(init=False, default=None, repr=False)

    def __attrs_post_init__(self) -> None:
        if self.http is not None and self.verify is not True:
            raise UsageError(
                "give verify or http, not both: a shared httpx.AsyncClient keeps its own TLS "
                "settings"
            )
        self._ssl = ssl_context(self.verify)

    async def request(
        self, form: dict[str, str], *, basic_secret: str | None, grant: str
    ) -> tuple[AccessToken, dict[str, object]]:
        """Send one grant; return the token and the raw body (for a refresh_token)."""
        auth = httpx.BasicAuth(self.client_id, basic_secret) if basic_secret is not None else None
        url = f"{self.login_base}{_TOKEN_PATH}"

        async def send(client: httpx.AsyncClient) -> httpx.Response:
            response, _attempts = await send_with_retries(
                lambda: client.post(
                    url,
                    data=form,
                    auth=auth if auth is not None else httpx.USE_CLIENT_DEFAULT,
                    headers={"Accept": "application/json"},
                    timeout=self.timeout,
                ),
                method="POST",
                path=_TOKEN_PATH,
                host=self.login_base,
                policy=self.retry,
                clock=self.clock,
                sleep=self.sleep,
                rng=self.rng,
            )
            return response

        if self.http is not None:
            response = await send(self.http)
        else:
            # Tokens are requested about once a day: a short-lived client leaks nothing and
            # needs no closing by the caller.
            verify = self._ssl if self._ssl is not None else True
            async with httpx.AsyncClient(verify=verify) as client:
                response = await send(client)
        if not response.is_success:
            raise self._error(response, grant)
        body = read_json(response, f"POST {_TOKEN_PATH}")
        token = AccessToken.from_genesys(body, now=self.clock.wall())
        logger.info("obtained an access token (%s grant), valid for %.0f s", grant, token.lifetime)
        return token, body

    def _error(self, response: httpx.Response, grant: str) -> PlatformError:
        status = response.status_code
        correlation_id = response.headers.get("ININ-Correlation-Id")
        reason = _oauth_reason(response)
        what = f"POST {_TOKEN_PATH} ({grant} grant) at {self.login_base}"
        if status in (400, 401, 403, 404):
            return AuthenticationError(
                f"{what} was refused: {status}{reason}. {self.credentials_hint}",
                status=status,
                correlation_id=correlation_id,
            )
        if status == 429:
            return RateLimitedError(
                f"{what}: still rate limited (429{reason}) after retrying; wait and try again.",
                status=status,
                correlation_id=correlation_id,
                retry_after=_retry_after_seconds(response),
            )
        if status >= 500:
            return ServerError(
                f"{what}: the login host kept failing ({status}{reason}); try again later.",
                status=status,
                correlation_id=correlation_id,
            )
        return PlatformError(
            f"{what}: unexpected status {status}{reason}.",
            status=status,
            correlation_id=correlation_id,
        )


def _oauth_reason(response: httpx.Response) -> str:
    """``": invalid_client (client not found)"`` from an OAuth error body, or ``""``."""
    try:
        body = response.json()
    except ValueError:
        return ""
    if not isinstance(body, dict):
        return ""
    error = body.get("error") or body.get("code")
    description = body.get("error_description") or body.get("description") or body.get("message")
    parts = [str(part)[:200] for part in (error, description) if isinstance(part, str) and part]
    if not parts:
        return ""
    return ": " + (f"{parts[0]} ({parts[1]})" if len(parts) == 2 else parts[0])


def _retry_after_seconds(response: httpx.Response) -> float | None:
    return parse_retry_after(response.headers.get("Retry-After"))


_CLIENT_CREDENTIALS_HINT = (
    "Check CRMPHONE_CLIENT_ID and CRMPHONE_CLIENT_SECRET (an OAuth client with the Client "
    "Credentials grant) and that the login host belongs to the organisation's region "
    "(login.<region>, e.g. login.mypurecloud.de)."
)
_AUTHORIZATION_CODE_HINT = (
    "The code or refresh token is no longer valid (codes are single-use and short-lived); sign "
    "the agent in again. Also check the OAuth client id, that the redirect URI matches the one "
    "registered, and that the login host belongs to the organisation's region."
)


class _CachingProvider:
    """The shared part of renewing providers: cache, renewal margin, one in-flight request."""

    def __init__(self, clock: Clock, refresh_margin: float | None) -> None:
        if refresh_margin is not None and refresh_margin < 0:
            raise ValueError(f"refresh_margin must be >= 0, got {refresh_margin!r}")
        self._clock = clock
        self._refresh_margin = refresh_margin
        self._current: AccessToken | None = None
        self._lock = asyncio.Lock()

    @property
    def current(self) -> AccessToken | None:
        """See :meth:`TokenProvider.current`."""
        return self._current

    def _needs_renewal(self, token: AccessToken | None) -> bool:
        if token is None:
            return True
        margin = self._refresh_margin
        if margin is None:
            margin = _default_margin(token)
        return token.expires_in(self._clock.wall()) <= margin

    async def token(self) -> AccessToken:
        """See :meth:`TokenProvider.token`: cached until ``refresh_margin`` before expiry."""
        token = self._current
        if not self._needs_renewal(token):
            assert token is not None
            return token
        async with self._lock:
            # Whoever held the lock before us may have renewed it already.
            if not self._needs_renewal(self._current):
                assert self._current is not None
                return self._current
            self._current = await self._obtain(renewal=self._current is not None)
            return self._current

    async def refresh(self) -> AccessToken:
        """See :meth:`TokenProvider.refresh`: always a new token, shared by concurrent callers."""
        seen = self._current
        async with self._lock:
            if self._current is not None and self._current is not seen:
                return self._current  # renewed while we waited: that one is new enough
            self._current = await self._obtain(renewal=seen is not None)
            return self._current

    async def _obtain(self, *, renewal: bool) -> AccessToken:
        raise NotImplementedError


class ClientCredentials(_CachingProvider):
    """Tokens for an OAuth client with the Client Credentials grant (server-side integrations).

    The first :meth:`token` call fetches a token from ``{login_base}/oauth/token``; later calls
    return it until ``refresh_margin`` seconds before expiry (default: 5 minutes or a tenth of the
    lifetime, whichever is smaller). Pass ``http`` to share a client (its TLS settings apply);
    otherwise a short-lived one is made per token request, verifying TLS as ``verify`` says (see
    :class:`~crmphone.platform.PlatformClient`). Raises
    :class:`~crmphone.errors.AuthenticationError` when the credentials are refused.
    """

    def __init__(
        self,
        *,
        login_base: str,
        client_id: str,
        client_secret: str,
        http: httpx.AsyncClient | None = None,
        clock: Clock | None = None,
        refresh_margin: float | None = None,
        timeout: float = 10.0,
        retry: RetryPolicy | None = None,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
        verify: bool | str = True,
    ) -> None:
        clock = clock if clock is not None else SystemClock()
        super().__init__(clock, refresh_margin)
        self._client_secret = client_secret
        self._endpoint = _TokenEndpoint(
            login_base=login_base.rstrip("/"),
            client_id=client_id,
            http=http,
            clock=clock,
            retry=retry if retry is not None else RetryPolicy(),
            sleep=sleep,
            rng=rng if rng is not None else random.Random(),
            timeout=timeout,
            credentials_hint=_CLIENT_CREDENTIALS_HINT,
            verify=verify,
        )

    def __repr__(self) -> str:
        return (
            f"ClientCredentials(login_base={self._endpoint.login_base!r}, "
            f"client_id={self._endpoint.client_id!r}, current={self._current!r})"
        )

    async def _obtain(self, *, renewal: bool) -> AccessToken:
        token, _body = await self._endpoint.request(
            {"grant_type": "client_credentials"},
            basic_secret=self._client_secret,
            grant="client_credentials",
        )
        return token


class AuthorizationCode(_CachingProvider):
    """Tokens for an agent who signed in through the browser (Authorization Code grant + PKCE).

    Build it with the ``code`` the login host redirected back with and the PKCE ``code_verifier``
    from :func:`make_pkce_pair`. The first :meth:`token` call exchanges them; afterwards the
    provider renews with the ``refresh_token`` grant before expiry. When the platform gave no
    refresh token, or refused it, :class:`~crmphone.errors.AuthenticationError` says to sign in
    again. ``client_secret`` is for confidential clients; public (PKCE-only) clients omit it.
    ``http`` and ``verify`` work as for :class:`ClientCredentials`.
    """

    def __init__(
        self,
        *,
        login_base: str,
        client_id: str,
        redirect_uri: str,
        code: str,
        code_verifier: str,
        client_secret: str | None = None,
        http: httpx.AsyncClient | None = None,
        clock: Clock | None = None,
        refresh_margin: float | None = None,
        timeout: float = 10.0,
        retry: RetryPolicy | None = None,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
        verify: bool | str = True,
    ) -> None:
        clock = clock if clock is not None else SystemClock()
        super().__init__(clock, refresh_margin)
        self._redirect_uri = redirect_uri
        self._code: str | None = code
        self._code_verifier = code_verifier
        self._client_secret = client_secret
        self._refresh_token: str | None = None
        self._endpoint = _TokenEndpoint(
            login_base=login_base.rstrip("/"),
            client_id=client_id,
            http=http,
            clock=clock,
            retry=retry if retry is not None else RetryPolicy(),
            sleep=sleep,
            rng=rng if rng is not None else random.Random(),
            timeout=timeout,
            credentials_hint=_AUTHORIZATION_CODE_HINT,
            verify=verify,
        )

    def __repr__(self) -> str:
        return (
            f"AuthorizationCode(login_base={self._endpoint.login_base!r}, "
            f"client_id={self._endpoint.client_id!r}, current={self._current!r})"
        )

    async def _obtain(self, *, renewal: bool) -> AccessToken:
        if self._code is not None:
            form = {
                "grant_type": "authorization_code",
                "code": self._code,
                "redirect_uri": self._redirect_uri,
                "code_verifier": self._code_verifier,
            }
            grant = "authorization_code"
            self._code = None  # single-use: never send it twice, even if this exchange fails
        elif self._refresh_token is not None:
            form = {"grant_type": "refresh_token", "refresh_token": self._refresh_token}
            grant = "refresh_token"
        else:
            raise AuthenticationError(
                "the agent's session cannot be renewed: the authorization code was already used "
                "and the login host gave no refresh token. Sign the agent in again."
            )
        if self._client_secret is None:
            form["client_id"] = self._endpoint.client_id  # public clients identify in the body
        token, body = await self._endpoint.request(
            form, basic_secret=self._client_secret, grant=grant
        )
        refresh_token = body.get("refresh_token")
        if isinstance(refresh_token, str) and refresh_token:
            self._refresh_token = refresh_token
        return token


class StaticToken:
    """A token obtained elsewhere (a test, a token broker); it is never renewed.

    :meth:`token` returns it until ``expires_at`` (if given), then raises
    :class:`~crmphone.errors.AuthenticationError`; :meth:`refresh` always raises, so a 401 ends
    with a clear message instead of a retry loop.
    """

    def __init__(
        self,
        value: str,
        *,
        token_type: str = "bearer",  # noqa: S107 - a token scheme, not a secret
        expires_at: datetime | None = None,
        clock: Clock | None = None,
    ) -> None:
        if not value:
            raise ValueError("StaticToken needs a non-empty token value")
        self._clock = clock if clock is not None else SystemClock()
        now = self._clock.wall()
        self._token = AccessToken(
            value=value,
            token_type=token_type,
            issued_at=now,
            expires_at=expires_at if expires_at is not None else datetime.max.replace(tzinfo=UTC),
        )

    def __repr__(self) -> str:
        return f"StaticToken(current={self._token!r})"

    @property
    def current(self) -> AccessToken:
        """See :meth:`TokenProvider.current`."""
        return self._token

    async def token(self) -> AccessToken:
        """See :meth:`TokenProvider.token`."""
        if self._token.is_expired(self._clock.wall()):
            raise AuthenticationError(
                f"the static access token expired at {self._token.expires_at.isoformat()}; "
                "supply a new one, or use ClientCredentials/AuthorizationCode to renew "
                "automatically."
            )
        return self._token

    async def refresh(self) -> AccessToken:
        """See :meth:`TokenProvider.refresh`: a static token cannot be renewed, so this raises."""
        raise AuthenticationError(
            "the platform rejected the static access token (401) and it cannot be renewed; "
            "supply a new token, or use ClientCredentials/AuthorizationCode to renew "
            "automatically."
        )
