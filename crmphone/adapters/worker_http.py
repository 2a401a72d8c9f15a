"""HTTP sessions for synchronous CRM client libraries (simple-salesforce, zenpy) in worker threads.

A ``requests.Session`` is not safe to share between threads, and the libraries built on it take no
timeout on most calls and trust the environment's CA variables over ``verify``. ``WorkerSessions``
gives each of an adapter's worker threads (:meth:`~crmphone.adapters.AdapterContext.run_sync`)
its own session, set up as a CRM client should be:

* a timeout on every request (a CRM that hangs never holds a worker for hours);
* no retries: crmphone's outbox is the one retry layer;
* TLS as ``verify`` says (:attr:`~crmphone.adapters.AdapterContext.verify`: the system store,
  a CA bundle, or off), and ``trust_env = False`` so ``REQUESTS_CA_BUNDLE`` /
  ``CURL_CA_BUNDLE`` / proxy variables cannot override it;
* ``on_response`` sees every answer (rate-limit and usage headers, ``Retry-After``), in the
  thread that sent the request;
* ``headers_for`` may add headers to one request (an ``Idempotency-Key`` per call), which a
  library that sets headers per session cannot.

A plugin with a CA option of its own (``ca_file``) resolves it against the table's ``verify`` with
:func:`resolve_verify` when it reads its options, so the two cannot silently disagree:

.. code-block:: python

    verify = resolve_verify(context.verify, read.file("ca_file"), key=read.key("ca_file"))
    sessions = WorkerSessions(timeout=context.timeout, verify=verify)

Needs ``requests`` (a dependency of every plugin that uses this module, not of crmphone itself).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from crmphone.errors import ConfigError

__all__ = ["WorkerSessions", "resolve_verify"]

ResponseHook = Callable[[requests.Response], None]
HeadersFor = Callable[[requests.PreparedRequest], Mapping[str, str]]


def resolve_verify(base_verify: bool | str, ca_file: str | None, *, key: str) -> bool | str:
    """The TLS verification of a plugin with its own ``ca_file`` option, given the
    ``[[adapters]]`` table's ``verify`` (``base_verify``: True, False, or a CA bundle's path).

    Without ``ca_file``, ``base_verify``. With it, ``ca_file`` when ``base_verify`` is True or
    names the same file. Call it while reading the options: what follows is what
    :class:`WorkerSessions` takes as ``verify``.

    :raises ConfigError: ``ca_file`` with ``verify = false`` (one asks for checks against a CA,
        the other for none), or with ``verify`` naming another CA bundle; ``key`` names
        ``ca_file``.
    """
    if ca_file is None:
        return base_verify
    if base_verify is True:
        return ca_file
    if base_verify is False:
        raise ConfigError(
            "trusts a CA while the table's verify = false turns TLS verification off; they "
            "contradict each other: remove verify = false to verify against this CA (the safe "
            "choice), or remove ca_file to accept any certificate",
            key=key,
        )
    if os.path.realpath(ca_file) != os.path.realpath(base_verify):
        raise ConfigError(
            f"names the CA bundle {ca_file!r} while the table's verify names another, "
            f'{base_verify!r}; use one: keep verify = "<CA bundle>" (the general way) and '
            "remove ca_file",
            key=key,
        )
    return ca_file


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
    """One configured ``requests.Session`` per worker thread; :meth:`close` closes them all.

    ``verify``: True verifies against the system store, a string against that CA bundle (PEM)
    instead, False not at all (the connector warns about that at start; nothing here does).

    :raises ConfigError: ``verify`` is an empty string (which requests would take for False).
    """

    def __init__(
        self,
        *,
        timeout: float,
        verify: bool | str = True,
        on_response: ResponseHook | None = None,
        headers_for: HeadersFor | None = None,
    ) -> None:
        if verify == "":
            # requests reads any falsy verify as "off": an empty path must not turn checks off.
            raise ConfigError("must be True, False, or a CA bundle's path, not ''", key="verify")
        self.timeout = timeout
        self.verify = verify
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
        session.verify = self.verify
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
