"""Talking to Zendesk from worker threads with zenpy: sessions, timeouts, TLS, rate limits, keys.

zenpy is synchronous (requests), so every call runs in the adapter's worker threads, each with
its own ``Zenpy`` over a :class:`~crmphone.adapters.worker_http.WorkerSessions` session (a
timeout on every request, no retries, TLS as the settings' resolved ``verify`` says and never
the environment's CA variables), which also:

* adds an ``Idempotency-Key`` header to the request being made when the caller asked for one
  (per thread, per call: zenpy cannot set a header per request, and ``session.headers`` would be
  shared by every request of that session);
* remembers the last answer's ``Retry-After`` and ``X-Rate-Limit-Remaining``.

zenpy is given a ``ratelimit_budget`` of at most a second, so a 429 raises at once instead of
sleeping through ``Retry-After``; the outbox schedules the retry from the remembered header.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar
from urllib.parse import urlsplit

import attrs
import requests
from zenpy import Zenpy
from zenpy.lib.exception import APIException, RatelimitBudgetExceeded, ZenpyException

from crmphone.adapters import crm_error_for_status
from crmphone.adapters.worker_http import WorkerSessions
from crmphone.errors import CrmError, CrmPermanentError, CrmRetryableError
from crmphone.platform import parse_retry_after

from .settings import ZendeskSettings

__all__ = ["ZendeskClient"]

_T = TypeVar("_T")
_MESSAGE_LIMIT = 300


@attrs.define
class _ThreadState:
    zenpy: Zenpy


class ZendeskClient:
    """One adapter's way to Zendesk: one zenpy client per worker thread."""

    def __init__(self, settings: ZendeskSettings) -> None:
        self.settings = settings
        self.requests = 0
        """API requests sent (every attempt)."""
        self.rate_limit_remaining: int | None = None
        """``X-Rate-Limit-Remaining`` of the last answer that had it."""
        self._local = threading.local()
        self._http = WorkerSessions(
            timeout=settings.timeout,
            verify=settings.verify,
            on_response=self._observe,
            headers_for=self._idempotency_header,
        )

    def _state(self) -> _ThreadState:
        state: _ThreadState | None = getattr(self._local, "state", None)
        if state is not None:
            return state
        settings = self.settings
        netloc = urlsplit(settings.base_url).netloc
        # zenpy builds https://{subdomain}.{domain}; splitting the host at its first dot gives
        # back any host, a custom domain or the emulator's 127.0.0.1:port alike.
        subdomain, _, domain = netloc.partition(".")
        credentials: dict[str, Any] = (
            {"oauth_token": settings.oauth_token}
            if settings.oauth_token
            else {"email": settings.email, "token": settings.api_token}
        )
        client = Zenpy(
            subdomain=subdomain,
            domain=domain,
            session=self._http.session(),
            timeout=settings.timeout,
            # A budget of one second: zenpy raises on a 429 instead of sleeping through it.
            ratelimit_budget=1,
            disable_cache=True,
            **credentials,
        )
        state = _ThreadState(client)
        self._local.state = state
        return state

    def _idempotency_header(self, request: requests.PreparedRequest) -> dict[str, str]:
        """This thread's Idempotency-Key on the POST being sent, when the call asked for one."""
        key = getattr(self._local, "idempotency_key", None)
        return {"Idempotency-Key": key} if key is not None and request.method == "POST" else {}

    def _observe(self, response: requests.Response) -> None:
        self.requests += 1
        self._local.retry_after = parse_retry_after(response.headers.get("Retry-After"))
        remaining = response.headers.get("X-Rate-Limit-Remaining")
        if remaining is not None and remaining.isdigit():
            self.rate_limit_remaining = int(remaining)

    @contextlib.contextmanager
    def _idempotency(self, key: str | None) -> Iterator[None]:
        self._local.idempotency_key = key
        try:
            yield
        finally:
            self._local.idempotency_key = None

    def call(
        self, what: str, operation: Callable[[Zenpy], _T], *, idempotency_key: str | None = None
    ) -> _T:
        """Run ``operation`` with this thread's zenpy (in a worker thread); POSTs carry
        ``idempotency_key`` when given. Raises only crmphone errors."""
        state = self._state()
        try:
            with self._idempotency(idempotency_key):
                return operation(state.zenpy)
        except RatelimitBudgetExceeded as exc:
            retry_after = getattr(self._local, "retry_after", None)
            raise CrmRetryableError(
                f"Zendesk's rate limit is reached while {what}", retry_after=retry_after
            ) from exc
        except APIException as exc:
            raise self._from_response(exc.response, what, str(exc)) from exc
        except requests.HTTPError as exc:
            raise self._from_response(exc.response, what, "") from exc
        except requests.RequestException as exc:
            if isinstance(exc, requests.exceptions.SSLError):
                raise CrmRetryableError(
                    f"TLS failed while {what}: Zendesk's certificate is not trusted; if a proxy "
                    'or a private CA signs it, set verify = "<CA bundle>" (or ca_file) on the '
                    "adapter's table to trust that CA"
                ) from exc
            raise CrmRetryableError(
                f"no answer from Zendesk in time while {what} ({type(exc).__name__})"
            ) from exc
        except ZenpyException as exc:
            raise CrmPermanentError(f"zenpy refused {what}: {str(exc)[:_MESSAGE_LIMIT]}") from exc

    def _from_response(self, response: requests.Response | None, what: str, text: str) -> CrmError:
        if response is None:
            return CrmRetryableError(f"Zendesk failed while {what}: {text[:_MESSAGE_LIMIT]}")
        detail = _describe(response)
        status = response.status_code
        if status == 401:
            return CrmRetryableError(
                f"Zendesk refused the credentials while {what} (HTTP 401: {detail}); "
                "check email and token_env / oauth_token_env"
            )
        return crm_error_for_status(
            status,
            f"Zendesk answered while {what}: {detail}",
            retry_after=response.headers.get("Retry-After"),
        )

    def close(self) -> None:
        """Close every thread's session."""
        self._http.close()


def refused(error: BaseException) -> bool:
    """Whether ``error`` (raised by :meth:`ZendeskClient.call`) is Zendesk's answer refusing the
    request, or zenpy's refusal to send it: either way nothing was made. False when no answer
    came (a timeout, a dropped connection): the request may have been carried out."""
    cause = error.__cause__
    if isinstance(cause, requests.HTTPError):
        return cause.response is not None
    return isinstance(cause, APIException | ZenpyException)


def _describe(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:_MESSAGE_LIMIT] or response.reason or "no details"
    if isinstance(body, dict):
        error = body.get("error")
        description = body.get("description") or ""
        details = body.get("details")
        text = f"{error}: {description}" if error else json.dumps(body)
        if details:
            text += f" {json.dumps(details)}"
        return text[:_MESSAGE_LIMIT]
    return json.dumps(body)[:_MESSAGE_LIMIT]
