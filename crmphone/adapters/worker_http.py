"""HTTP sessions for synchronous CRM client libraries (simple-salesforce, zenpy) in worker threads.

A ``requests.Session`` is not safe to share between threads, and the libraries built on it take no
timeout on most calls and trust the environment's CA variables over ``verify``. ``WorkerSessions``
gives each of an adapter's worker threads (:meth:`~crmphone.adapters.AdapterContext.run_sync`)
its own session, set up as a CRM client should be:

* a timeout on every request (a CRM that hangs never holds a worker for hours);
* no retries: crmphone's outbox is the one retry layer;
* TLS verified against ``ca_file`` or the system store, and ``trust_env = False`` so
  ``REQUESTS_CA_BUNDLE`` / ``CURL_CA_BUNDLE`` / proxy variables cannot override it;
* ``on_response`` sees every answer (rate-limit and usage headers, ``Retry-After``), in the
  thread that sent the request;
* ``headers_for`` may add headers to one request (an ``Idempotency-Key`` per call), which a
  library that sets headers per session cannot.

Needs ``requests`` (a dependency of every plugin that uses this module, not of crmphone itself).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

import requests
from requests.adapters import HTTPAdapter

__all__ = ["WorkerSessions"]

ResponseHook = Callable[[requests.Response], None]
HeadersFor = Callable[[requests.PreparedRequest], Mapping[str, str]]


class _WorkerAdapter(HTTPAdapter):
    """A timeout on every request, no retries, and the per-request headers."""

    def __init__(self, timeout: float, headers_for: HeadersFor | None) -> None:
        super().__init__(max_retries=0)
        self._timeout = timeout
        self._headers_for = headers_for

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self._timeout
        if self._headers_for is not None:
            request.headers.update(self._headers_for(request))
        return super().send(request, **kwargs)


class WorkerSessions:
    """One configured ``requests.Session`` per worker thread; :meth:`close` closes them all."""

    def __init__(
        self,
        *,
        timeout: float,
        ca_file: str | None = None,
        on_response: ResponseHook | None = None,
        headers_for: HeadersFor | None = None,
    ) -> None:
        self.timeout = timeout
        self.ca_file = ca_file
        self._on_response = on_response
        self._headers_for = headers_for
        self._local = threading.local()
        self._lock = threading.Lock()
        self._sessions: list[requests.Session] = []

    def session(self) -> requests.Session:
        """This thread's session (made on its first use)."""
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is not None:
            return session
        session = requests.Session()
        session.trust_env = False
        session.verify = self.ca_file or True
        adapter = _WorkerAdapter(self.timeout, self._headers_for)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        if self._on_response is not None:
            hook = self._on_response
            session.hooks["response"].append(lambda response, *_, **__: hook(response))
        self._local.session = session
        with self._lock:
            self._sessions.append(session)
        return session

    def close(self) -> None:
        """Close every thread's session."""
        with self._lock:
            sessions, self._sessions = self._sessions, []
        for session in sessions:
            session.close()
