"""Sessions and the OAuth 2.0 token endpoint of the emulated org (no I/O).

Three ways in, as on Salesforce:

* a fixed **session id** configured at construction (``Salesforce(session_id=...,
  instance_url=...)``), valid until :meth:`Authenticator.expire_sessions`;
* **client credentials**: ``grant_type=client_credentials`` with the connected app's consumer key
  and secret, in the form (``client_id``, ``client_secret``) or as HTTP Basic (what
  simple-salesforce sends); the session runs as the app's run-as user;
* **JWT bearer**: ``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`` with an RS256
  ``assertion`` whose ``iss`` is the consumer key, ``sub`` a username of an active user, ``aud``
  the login URL (``https://login.salesforce.com``, ``https://test.salesforce.com`` or the
  emulator's own URL, as My Domain) and ``exp`` in the future, signed with the private key of the
  certificate registered on the app.

Every data request carries ``Authorization: Bearer <token>`` (``OAuth <token>`` also works, as on
Salesforce). Sessions end ``session_ttl`` seconds after their last use. Token errors answer 400
``{"error", "error_description"}`` with Salesforce's wording where known: ``invalid_client_id``
"client identifier invalid", ``invalid_client`` "invalid client credentials", ``invalid_grant``
"invalid assertion" / "audience is invalid" / "expired authorization code" (an expired JWT) /
"user hasn't approved this consumer" (a username that is no active user: the wording Salesforce
uses when a user may not use the app; for a username that does not exist at all the real
wording is unconfirmed).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

import attrs
import jwt
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from crmphone.errors import ConfigError

from .errors import OAuthError

__all__ = [
    "CLIENT_CREDENTIALS",
    "DEFAULT_SESSION_TTL",
    "JWT_BEARER",
    "LOGIN_AUDIENCES",
    "Authenticator",
    "Session",
    "load_public_key",
]

CLIENT_CREDENTIALS = "client_credentials"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"

LOGIN_AUDIENCES = ("https://login.salesforce.com", "https://test.salesforce.com")
"""JWT audiences Salesforce accepts besides the org's own My Domain URL."""

DEFAULT_SESSION_TTL = 7_200.0
"""Two hours: Salesforce's default session timeout."""


@attrs.frozen
class Session:
    """Who a token acts for and until when (clock seconds; None: until expired by hand)."""

    user_id: str
    expires_at: float | None
    fixed: bool = False


def load_public_key(pem: str | bytes) -> RSAPublicKey:
    """The RSA public key of a PEM X.509 certificate or PEM public key; ConfigError otherwise."""
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        if b"BEGIN CERTIFICATE" in data:
            key: Any = x509.load_pem_x509_certificate(data).public_key()
        else:
            key = load_pem_public_key(data)
    except ValueError as exc:
        raise ConfigError("not a PEM certificate or public key", key="jwt_certificate") from exc
    if not isinstance(key, RSAPublicKey):
        raise ConfigError("the JWT bearer flow needs an RSA key (RS256)", key="jwt_certificate")
    return key


class Authenticator:
    """Issues, checks and expires the org's sessions; answers token requests.

    ``users`` maps a username to the id of an *active* user (or None); ``run_as_user_id`` is who
    client-credentials sessions and the fixed session id act as.
    """

    def __init__(
        self,
        *,
        org_id: str,
        client_id: str,
        client_secret: str,
        session_id: str,
        run_as_user_id: str,
        users: Callable[[str], str | None],
        clock: Callable[[], float],
        wall_clock: Callable[[], datetime],
        certificate: str | bytes | None = None,
        session_ttl: float = DEFAULT_SESSION_TTL,
        audiences: Iterable[str] = LOGIN_AUDIENCES,
    ) -> None:
        self.org_id = org_id
        self.client_id = client_id
        self._client_secret = client_secret
        self._users = users
        self._clock = clock
        self._wall_clock = wall_clock
        self._session_ttl = session_ttl
        self._audiences = tuple(audiences)
        self._run_as_user_id = run_as_user_id
        self._public_key = load_public_key(certificate) if certificate is not None else None
        self._signing_key = secrets.token_bytes(32)
        self._sessions: dict[str, Session] = {}
        self._fixed_session_id = session_id
        self._sessions[session_id] = Session(run_as_user_id, None, fixed=True)

    def __repr__(self) -> str:
        return f"<Authenticator org={self.org_id} client_id={self.client_id} sessions={len(self._sessions)}>"

    @property
    def session_id(self) -> str:
        """The fixed session id configured at construction."""
        return self._fixed_session_id

    @property
    def client_secret(self) -> str:
        """The connected app's consumer secret (the emulator's own fake credential)."""
        return self._client_secret

    def register_certificate(self, certificate: str | bytes) -> None:
        """Trust ``certificate`` (PEM certificate or public key) for JWT bearer assertions."""
        self._public_key = load_public_key(certificate)

    # ------------------------------------------------------------------ sessions

    def session_for(self, authorization: str | None) -> Session | None:
        """The live session of an ``Authorization`` header value, or None (answer 401).

        Using a session extends it, as activity does on Salesforce.
        """
        token = _bearer(authorization)
        if token is None:
            return None
        session = self._sessions.get(token)
        if session is None:
            return None
        now = self._clock()
        if session.expires_at is not None:
            if now >= session.expires_at:
                del self._sessions[token]
                return None
            session = attrs.evolve(session, expires_at=now + self._session_ttl)
            self._sessions[token] = session
        return session

    def issue(self, user_id: str) -> str:
        """A new access token acting for ``user_id`` (what a successful OAuth login hands out)."""
        token = f"{self.org_id[:15]}!{secrets.token_urlsafe(72)}"
        self._sessions[token] = Session(user_id, self._clock() + self._session_ttl)
        return token

    def expire_sessions(self, *, keep_fixed: bool = False) -> int:
        """End every current session (the fixed one too unless ``keep_fixed``); how many ended.

        A new OAuth login works afterwards; the fixed session id stays dead until
        :meth:`revive_session_id`.
        """
        ended = [token for token, s in self._sessions.items() if not (keep_fixed and s.fixed)]
        for token in ended:
            del self._sessions[token]
        return len(ended)

    def revive_session_id(self) -> None:
        """Make the fixed session id valid again (after :meth:`expire_sessions`)."""
        self._sessions[self._fixed_session_id] = Session(self._run_as_user_id, None, fixed=True)

    @property
    def live_sessions(self) -> int:
        """How many sessions are currently valid (expired ones not yet noticed included)."""
        return len(self._sessions)

    # ------------------------------------------------------------------ token endpoint

    def grant(
        self, form: Mapping[str, str], authorization: str | None, *, instance_url: str
    ) -> dict[str, str]:
        """Answer ``POST /services/oauth2/token`` with form ``form``; OAuthError when refused.

        ``instance_url`` is the emulator's base URL: the ``instance_url`` of the answer and the
        My Domain audience JWT assertions may name.
        """
        grant_type = form.get("grant_type", "")
        if grant_type == CLIENT_CREDENTIALS:
            user_id = self._client_credentials(form, authorization)
        elif grant_type == JWT_BEARER:
            user_id = self._jwt_bearer(form.get("assertion", ""), instance_url)
        else:
            raise OAuthError("unsupported_grant_type", "grant type not supported")
        token = self.issue(user_id)
        issued_at = str(int(self._wall_clock().timestamp() * 1000))
        identity = f"{instance_url}/id/{self.org_id}/{user_id}"
        signature = hmac.new(
            self._signing_key, (identity + issued_at).encode(), hashlib.sha256
        ).digest()
        return {
            "access_token": token,
            "signature": base64.b64encode(signature).decode(),
            "scope": "api",
            "instance_url": instance_url,
            "id": identity,
            "token_type": "Bearer",
            "issued_at": issued_at,
        }

    def _client_credentials(self, form: Mapping[str, str], authorization: str | None) -> str:
        client_id = form.get("client_id")
        client_secret = form.get("client_secret")
        if client_id is None and authorization is not None:
            client_id, client_secret = _basic(authorization)
        if not client_id or not hmac.compare_digest(client_id, self.client_id):
            raise OAuthError("invalid_client_id", "client identifier invalid")
        if client_secret is None or not hmac.compare_digest(
            client_secret.encode(), self._client_secret.encode()
        ):
            raise OAuthError("invalid_client", "invalid client credentials")
        return self._run_as_user_id

    def _jwt_bearer(self, assertion: str, instance_url: str) -> str:
        try:
            claims = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise OAuthError("invalid_grant", "invalid assertion") from exc
        issuer = claims.get("iss")
        if not isinstance(issuer, str) or not hmac.compare_digest(issuer, self.client_id):
            raise OAuthError("invalid_client_id", "client identifier invalid")
        if self._public_key is None:
            # No certificate on the connected app: nothing can verify the signature.
            raise OAuthError("invalid_grant", "invalid assertion")
        try:
            claims = jwt.decode(
                assertion,
                self._public_key,
                algorithms=["RS256"],
                options={
                    "require": ["iss", "sub", "aud", "exp"],
                    # Audience and expiry are checked below, against the injected wall clock.
                    "verify_aud": False,
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                },
            )
        except jwt.PyJWTError as exc:
            raise OAuthError("invalid_grant", "invalid assertion") from exc
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        accepted = {a.rstrip("/") for a in (*self._audiences, instance_url)}
        if not any(isinstance(a, str) and a.rstrip("/") in accepted for a in audiences):
            raise OAuthError("invalid_grant", "audience is invalid")
        try:
            expires = int(claims["exp"])
        except (TypeError, ValueError) as exc:
            raise OAuthError("invalid_grant", "invalid assertion") from exc
        if expires <= self._wall_clock().timestamp():
            raise OAuthError("invalid_grant", "expired authorization code")
        subject = claims["sub"]
        user_id = self._users(subject) if isinstance(subject, str) else None
        if user_id is None:
            raise OAuthError("invalid_grant", "user hasn't approved this consumer")
        return user_id


def _bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() not in ("bearer", "oauth") or not token.strip():
        return None
    return token.strip()


def _basic(authorization: str) -> tuple[str | None, str | None]:
    scheme, _, encoded = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return None, None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None, None
    client_id, colon, client_secret = decoded.partition(":")
    return (client_id, client_secret) if colon else (None, None)
