"""Talking to Salesforce from worker threads: sessions, timeouts, TLS, renewal, API usage.

simple-salesforce is synchronous (requests), so every call runs in the adapter's worker threads
(:meth:`~crmphone.adapters.AdapterContext.run_sync`), each with its own ``requests.Session`` and
``Salesforce`` object (a Session is not safe to share between threads). Each session:

* is a :class:`~crmphone.adapters.worker_http.WorkerSessions` session: a timeout on every
  request (simple-salesforce's CRUD calls take none), no retries, TLS as the settings'
  resolved ``verify`` says (the system store, a CA bundle, or off) and never the environment's
  CA variables;
* reads ``Sforce-Limit-Info`` from every answer into :class:`ApiUsage`.

:meth:`SalesforceClient.call` runs one operation and, on 401, renews the session once (OAuth
client credentials or JWT bearer) and runs it again. Nothing here retries anything else: the
outbox owns retrying.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import attrs
import jwt
import requests
from simple_salesforce.api import Salesforce
from simple_salesforce.exceptions import SalesforceError, SalesforceExpiredSession

from crmphone.adapters.worker_http import WorkerSessions
from crmphone.errors import CrmPermanentError, CrmRetryableError
from crmphone.platform import parse_retry_after

from .errors import error_details, from_salesforce_error, from_transport_error
from .settings import AuthKind, SalesforceSettings

__all__ = ["ApiUsage", "SalesforceClient"]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")
_LIMIT_INFO = re.compile(r"api-usage=(\d+)/(\d+)")
_JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
_JWT_LIFETIME = 180  # seconds; Salesforce accepts assertions valid for at most 3 minutes


@attrs.frozen
class ApiUsage:
    """The org's API requests used today and its daily allowance (``Sforce-Limit-Info``)."""

    used: int
    allowed: int

    @property
    def fraction(self) -> float:
        """Share of the allowance spent (0 to 1 and beyond)."""
        return self.used / self.allowed if self.allowed else 0.0


@attrs.define
class _Session:
    access_token: str = attrs.field(repr=False)
    instance_url: str
    generation: int


@attrs.define
class _ThreadState:
    salesforce: Salesforce | None = None
    generation: int = -1


class SalesforceClient:
    """One adapter's way to Salesforce: shared session credentials, one client per thread."""

    def __init__(self, settings: SalesforceSettings) -> None:
        self.settings = settings
        self.requests = 0
        """API requests sent (every attempt, renewals included)."""
        self.usage: ApiUsage | None = None
        self._lock = threading.RLock()  # renewal (under it) may open this thread's session
        self._session: _Session | None = None
        self._local = threading.local()
        self._http = WorkerSessions(
            timeout=settings.timeout, verify=settings.verify, on_response=self._observe
        )

    # ------------------------------------------------------------------ sessions

    def _observe(self, response: requests.Response) -> None:
        # Runs in the thread that sent the request: remember its Retry-After for the error that
        # simple-salesforce raises next (its exceptions keep no headers).
        self._local.retry_after = parse_retry_after(response.headers.get("Retry-After"))
        self.requests += 1
        found = _LIMIT_INFO.search(response.headers.get("Sforce-Limit-Info", ""))
        if found:
            self.usage = ApiUsage(int(found.group(1)), int(found.group(2)))

    def _current(self, stale: _Session | None = None) -> _Session:
        """The shared session; a new one when there is none or ``stale`` is still current."""
        with self._lock:
            if self._session is None or (stale is not None and self._session is stale):
                generation = 0 if self._session is None else self._session.generation + 1
                token, instance = self._authenticate()
                self._session = _Session(token, instance, generation)
            return self._session

    def _authenticate(self) -> tuple[str, str]:
        settings = self.settings
        if settings.auth is AuthKind.SESSION:
            if self._session is not None:
                raise CrmRetryableError(
                    "the Salesforce session expired and a fixed session_id cannot be renewed: "
                    'set a new one, or use auth = "client_credentials" or "jwt"'
                )
            assert settings.session_id is not None
            return settings.session_id, settings.instance_url
        form: dict[str, str]
        if settings.auth is AuthKind.CLIENT_CREDENTIALS:
            assert settings.client_id is not None
            assert settings.client_secret is not None
            form = {
                "grant_type": "client_credentials",
                "client_id": settings.client_id,
                "client_secret": settings.client_secret,
            }
        else:
            assert settings.client_id is not None
            assert settings.private_key is not None
            now = int(time.time())
            claims = {
                "iss": settings.client_id,
                "sub": settings.username or "",
                "aud": settings.login_url or settings.instance_url,
                "exp": now + _JWT_LIFETIME,
            }
            assertion = jwt.encode(claims, settings.private_key, algorithm="RS256")
            form = {"grant_type": _JWT_GRANT, "assertion": assertion}
        http = self._http.session()
        what = f"getting a Salesforce session ({settings.auth.value})"
        try:
            response = http.post(settings.token_url, data=form)
        except requests.RequestException as exc:
            raise from_transport_error(exc, what=what) from exc
        if response.status_code != 200:
            details = error_details(_json_or_text(response))
            text = "; ".join(f"{code}: {message}" for code, message in details)[:300]
            error = f"Salesforce refused {what}: HTTP {response.status_code} {text}"
            if response.status_code >= 500 or response.status_code == 429:
                raise CrmRetryableError(error)
            raise CrmPermanentError(f"{error}. Check the connected app and the *_env credentials")
        body = _json_or_text(response)
        token = body.get("access_token") if isinstance(body, dict) else None
        instance = body.get("instance_url") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise CrmRetryableError(f"{what}: the answer has no access_token")
        logger.info("salesforce: got a new session (%s)", settings.auth.value)
        return token, str(instance or settings.instance_url).rstrip("/")

    def _thread_state(self) -> _ThreadState:
        state: _ThreadState | None = getattr(self._local, "state", None)
        if state is None:
            state = _ThreadState()
            self._local.state = state
        return state

    def _salesforce(self, session: _Session) -> Salesforce:
        state = self._thread_state()
        if state.salesforce is None or state.generation != session.generation:
            state.salesforce = Salesforce(
                session_id=session.access_token,
                instance_url=session.instance_url,
                version=self.settings.api_version,
                session=self._http.session(),
            )
            state.generation = session.generation
        return state.salesforce

    # ------------------------------------------------------------------ calls

    def call(self, what: str, operation: Callable[[Salesforce], _T]) -> _T:
        """Run ``operation`` with this thread's client (in a worker thread); renew the session
        once on 401. Raises only crmphone errors."""
        session = self._current()
        for attempt in (1, 2):
            client = self._salesforce(session)
            try:
                return operation(client)
            except SalesforceExpiredSession as exc:
                if attempt == 2 or self.settings.auth is AuthKind.SESSION:
                    raise from_salesforce_error(
                        exc, what=what, limit_wait=self.settings.request_limit_wait
                    ) from exc
                logger.info("salesforce: session expired while %s; renewing it once", what)
                session = self._current(stale=session)
            except SalesforceError as exc:
                retry_after = getattr(self._local, "retry_after", None)
                raise from_salesforce_error(
                    exc,
                    what=what,
                    retry_after=retry_after,
                    limit_wait=self.settings.request_limit_wait,
                ) from exc
            except requests.RequestException as exc:
                raise from_transport_error(exc, what=what) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        """Close every thread's HTTP session."""
        self._http.close()


def _json_or_text(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text[:300]
