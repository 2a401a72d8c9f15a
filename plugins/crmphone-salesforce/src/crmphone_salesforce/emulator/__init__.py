"""A local Salesforce org over HTTPS, speaking the REST subset crmphone's adapter uses.

Unmodified simple-salesforce talks to it::

    async with SalesforceEmulator(seed=0) as emulator:      # or: await emulator.start()
        session = requests.Session()
        session.verify = str(emulator.ca_file)               # trust the emulator's private CA
        session.trust_env = False                             # REQUESTS_CA_BUNDLE would override it
        sf = Salesforce(instance_url=emulator.url, session_id=emulator.session_id,
                        version="62.0", session=session)
        sf.Task.upsert("CTI_Call_Id__c/call-1", {"Subject": "Call", "CallType": "Inbound"})
        emulator.model.faults.fail_next("request_limit", route="composite")

Synchronous callers (benchmarks, the demo's threads, fixtures) use
:class:`SalesforceEmulatorThread`, which serves on its own event loop in a background thread.

What is where:

* :mod:`.model` — the org as a pure model (:class:`SalesforceModel`, :class:`SalesforceSettings`):
  records, validation, upsert, collections, query, search; ``model.faults``, ``model.stats``,
  ``model.usage``, ``model.auth``, ``model.search_lag``, ``model.seeded_numbers(...)``.
* :mod:`.api` — routing and answer shapes without sockets; :mod:`.app` — the starlette layer.
* :mod:`.seed` — the seeded data and its numbers; :mod:`.faults` — the fault kinds.

``python -m crmphone_salesforce.emulator`` runs one until Ctrl+C.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

from crmphone._serving import HttpsService, ServedHttps, ServiceThread

from .api import LIMIT_HEADER, ApiRequest, ApiResponse, SalesforceApi
from .app import create_app
from .errors import ApiError, ErrorItem, OAuthError
from .faults import Fault, FaultKind, Faults, RouteKind
from .ids import KEY_PREFIXES
from .model import (
    API_VERSIONS,
    MAX_COLLECTION_RECORDS,
    Outcome,
    SalesforceModel,
    SalesforceSettings,
)
from .schema import DEFAULT_EXTERNAL_IDS, DEFAULT_TASK_STATUSES, ExternalId
from .seed import (
    HTML_NAME,
    HTML_NAME_NUMBER,
    INTEGRATION_USERNAME,
    MANY_MATCH_NUMBERS,
    NO_MATCH_NUMBERS,
    ONE_MATCH_NUMBER,
)
from .sosl import escape_sosl
from .stats import RequestRecord, Stats

__all__ = [
    "API_VERSIONS",
    "DEFAULT_EXTERNAL_IDS",
    "DEFAULT_TASK_STATUSES",
    "HTML_NAME",
    "HTML_NAME_NUMBER",
    "INTEGRATION_USERNAME",
    "KEY_PREFIXES",
    "LIMIT_HEADER",
    "MANY_MATCH_NUMBERS",
    "MAX_COLLECTION_RECORDS",
    "NO_MATCH_NUMBERS",
    "ONE_MATCH_NUMBER",
    "ApiError",
    "ApiRequest",
    "ApiResponse",
    "ErrorItem",
    "ExternalId",
    "Fault",
    "FaultKind",
    "Faults",
    "OAuthError",
    "Outcome",
    "RequestRecord",
    "RouteKind",
    "SalesforceApi",
    "SalesforceEmulator",
    "SalesforceEmulatorThread",
    "SalesforceModel",
    "SalesforceSettings",
    "Stats",
    "escape_sosl",
]

T = TypeVar("T")

SHUTDOWN_TIMEOUT = 2
"""Seconds open connections get to finish when the emulator stops."""


class SalesforceEmulator(HttpsService):
    """The emulated org served over HTTPS on loopback, on the running event loop.

    ``seed`` fixes the data and ids; ``settings`` the credentials, limits, versions, statuses and
    external ids; ``clock``/``wall_clock`` the time (see :class:`SalesforceModel`).
    """

    def __init__(
        self,
        seed: int = 0,
        *,
        settings: SalesforceSettings | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] | None = None,
    ) -> None:
        if wall_clock is None:
            self.model = SalesforceModel(seed, settings, clock=clock)
        else:
            self.model = SalesforceModel(seed, settings, clock=clock, wall_clock=wall_clock)
        self.api = SalesforceApi(self.model)
        self._https = ServedHttps("the Salesforce emulator", "salesforce-emulator")
        self._closing: asyncio.Event | None = None

    def __repr__(self) -> str:
        where = self.url if self.running else "not running"
        return f"<SalesforceEmulator seed={self.model.seed} {where}>"

    def _app(self) -> Any:
        self._closing = asyncio.Event()
        return create_app(self.api, self._closing)

    async def stop(self) -> None:
        """Stop serving (answers held by ``slow`` leave at once) and delete the TLS files."""
        closing, self._closing = self._closing, None
        if closing is not None:
            closing.set()
        await super().stop()

    @property
    def session_id(self) -> str:
        """The fixed session id (``Salesforce(session_id=...)``); a fake local credential."""
        return self.model.auth.session_id

    @property
    def client_id(self) -> str:
        """The connected app's consumer key (client credentials and JWT ``iss``)."""
        return self.model.auth.client_id

    @property
    def client_secret(self) -> str:
        """The connected app's consumer secret; a fake local credential."""
        return self.model.auth.client_secret

    @property
    def token_url(self) -> str:
        """``{url}/services/oauth2/token``."""
        return f"{self.url}/services/oauth2/token"


class SalesforceEmulatorThread:
    """A :class:`SalesforceEmulator` serving from a background thread with its own event loop.

    ``with SalesforceEmulatorThread(seed=0) as emulator:`` returns once it listens; the
    attributes are the emulator's. The model lives on the emulator's loop: touch it between
    requests (a blocking client waits for each answer, so that is whenever your code runs), or
    through :meth:`call` while requests may be in flight.
    """

    def __init__(
        self,
        seed: int = 0,
        *,
        settings: SalesforceSettings | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.emulator = SalesforceEmulator(
            seed, settings=settings, clock=clock, wall_clock=wall_clock
        )
        self._thread = ServiceThread(
            _listening(self.emulator, host, port),
            name="salesforce-emulator",
            what="the Salesforce emulator",
            join_timeout=SHUTDOWN_TIMEOUT + 3,
        )

    def __repr__(self) -> str:
        return f"<SalesforceEmulatorThread {self.emulator!r}>"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop the emulator and join its thread."""
        self._thread.close()

    @property
    def alive(self) -> bool:
        """Whether the background thread is still running."""
        return self._thread.alive

    def call(self, function: Callable[..., T], *args: Any, timeout: float = 10.0) -> T:
        """Run ``function(*args)`` on the emulator's loop (between requests) and return its result."""
        return self._thread.invoke(function, *args, timeout=timeout)

    def run(self, coroutine: Coroutine[Any, Any, T], *, timeout: float = 10.0) -> T:
        """Run ``coroutine`` on the emulator's loop and return its result."""
        return self._thread.run(coroutine, timeout=timeout)

    # The emulator's attributes, for code written against SalesforceEmulator.

    @property
    def model(self) -> SalesforceModel:
        """The emulator's model (records, faults, stats, sessions)."""
        return self.emulator.model

    @property
    def url(self) -> str:
        """``https://host:port``: the ``instance_url`` clients use."""
        return self.emulator.url

    @property
    def ca_file(self) -> Path:
        """The PEM CA certificate a client must trust."""
        return self.emulator.ca_file

    @property
    def port(self) -> int:
        """The bound TCP port."""
        return self.emulator.port

    @property
    def host(self) -> str:
        """The address served on."""
        return self.emulator.host

    @property
    def session_id(self) -> str:
        """The fixed session id; a fake local credential."""
        return self.emulator.session_id

    @property
    def client_id(self) -> str:
        """The connected app's consumer key."""
        return self.emulator.client_id

    @property
    def client_secret(self) -> str:
        """The connected app's consumer secret; a fake local credential."""
        return self.emulator.client_secret

    @property
    def token_url(self) -> str:
        """``{url}/services/oauth2/token``."""
        return self.emulator.token_url


@contextlib.asynccontextmanager
async def _listening(emulator: SalesforceEmulator, host: str, port: int) -> AsyncIterator[None]:
    """The emulator serving on ``host:port`` for the length of the block."""
    await emulator.start(host, port)
    try:
        yield
    finally:
        await emulator.stop()
