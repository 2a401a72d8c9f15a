"""A local Zendesk for tests, benchmarks and the demo: the subset of the Support and Talk Partner
Edition APIs that crmphone's Zendesk adapter uses, over real HTTPS on loopback, answering what
unmodified zenpy sends.

.. code-block:: python

    from crmphone_zendesk.emulator import ZendeskEmulator

    async with ZendeskEmulator(seed=0) as emulator:
        emulator.url            # "https://127.0.0.1:PORT"
        emulator.ca_file        # the PEM CA certificate a client must trust
        emulator.email, emulator.api_token, emulator.oauth_token
        emulator.model          # records, faults, counters: see ZendeskModel

    # unmodified zenpy:
    session = requests.Session()
    session.verify = str(emulator.ca_file)
    session.trust_env = False
    zenpy = Zenpy(subdomain=emulator.subdomain, domain=emulator.domain,  # "127", "0.0.1:PORT"
                  email=emulator.email, token=emulator.api_token,
                  session=session, ratelimit_budget=1)

zenpy builds ``https://{subdomain}.{domain}``, so ``subdomain="127"`` and ``domain="0.0.1:PORT"``
address ``https://127.0.0.1:PORT``. Modules: :mod:`.model` (the account: seeded data, validation,
credentials, rate limit, idempotency), :mod:`.records`, :mod:`.search` (the query language),
:mod:`.faults`, :mod:`.api` (routes and response shapes, sans-I/O), :mod:`.app` (starlette).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from crmphone._serving import HttpsService, ServedHttps
from crmphone.errors import InvalidStateError

from .api import ApiAnswer, ApiRequest, ZendeskApi
from .app import create_app
from .faults import Fault, FaultKind, FaultRecord, Faults
from .model import (
    HTML_NAME,
    HTML_NAME_NUMBER,
    NO_MATCH_NUMBER,
    ONE_MATCH_NUMBER,
    SHARED_NUMBER,
    Credentials,
    RecordInvalidError,
    Stats,
    ZendeskModel,
)
from .records import Call, Comment, DisplayRequest, RequestRecord, Ticket, User, Via

__all__ = [
    "HTML_NAME",
    "HTML_NAME_NUMBER",
    "NO_MATCH_NUMBER",
    "ONE_MATCH_NUMBER",
    "SHARED_NUMBER",
    "ApiAnswer",
    "ApiRequest",
    "Call",
    "Comment",
    "Credentials",
    "DisplayRequest",
    "Fault",
    "FaultKind",
    "FaultRecord",
    "Faults",
    "RecordInvalidError",
    "RequestRecord",
    "Stats",
    "Ticket",
    "User",
    "Via",
    "ZendeskApi",
    "ZendeskEmulator",
    "ZendeskModel",
]


class ZendeskEmulator(HttpsService):
    """The emulated Zendesk account served over HTTPS: :meth:`start` (or ``async with``), read
    :attr:`url` and :attr:`ca_file`, drive :attr:`model`, :meth:`stop`.

    Options go to :class:`ZendeskModel`: ``seed`` (ids, names, seeded data), ``email``,
    ``api_token`` and ``oauth_token`` (generated when not given), ``rate_limit`` (requests per
    minute), ``search_lag`` (seconds), ``clock`` (monotonic seconds) and ``wall`` (UTC
    datetimes).
    """

    def __init__(
        self,
        seed: int = 0,
        *,
        email: str = "admin@crmphone-emulator.example",
        api_token: str | None = None,
        oauth_token: str | None = None,
        rate_limit: int = 700,
        search_lag: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] | None = None,
    ) -> None:
        self.model = ZendeskModel(
            seed,
            email=email,
            api_token=api_token,
            oauth_token=oauth_token,
            rate_limit=rate_limit,
            search_lag=search_lag,
            clock=clock,
            wall=wall,
        )
        self.api = ZendeskApi(self.model)
        self._https = ServedHttps("the Zendesk emulator", "zendesk-emulator")

    def __repr__(self) -> str:
        where = self.url if self.running else "stopped"
        return f"<ZendeskEmulator {where}>"

    def _app(self) -> Any:
        return create_app(self.api)

    @property
    def subdomain(self) -> str:
        """With :attr:`domain`, what zenpy needs to address the server: ``"127"``."""
        self._need_ipv4_loopback()
        return "127"

    @property
    def domain(self) -> str:
        """With :attr:`subdomain`, what zenpy needs: ``"0.0.1:PORT"``."""
        self._need_ipv4_loopback()
        return f"0.0.1:{self.port}"

    @property
    def email(self) -> str:
        """The API user's email (HTTP Basic ``{email}/token``)."""
        return self.model.credentials.email

    @property
    def api_token(self) -> str:
        """The API token (HTTP Basic password). A secret: never log it."""
        return self.model.credentials.api_token

    @property
    def oauth_token(self) -> str:
        """The OAuth access token (``Authorization: Bearer``). A secret: never log it."""
        return self.model.credentials.oauth_token

    def _need_ipv4_loopback(self) -> None:
        # zenpy joins "{subdomain}.{domain}": only a dotted address splits that way.
        if self.running and self.host != "127.0.0.1":
            raise InvalidStateError(
                "subdomain/domain only address an emulator on 127.0.0.1; "
                "for another host set ZENPY_FORCE_NETLOC to host:port"
            )
