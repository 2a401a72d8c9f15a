"""The Salesforce emulator as a CRM of ``crmphone demo`` (entry point group
``crmphone.emulators``, name ``salesforce``; the protocol is :class:`crmphone.demo.crm.DemoCrm`).

:class:`SalesforceDemo` serves a seeded :class:`~.emulator.SalesforceEmulatorThread` with one
agent user per platform agent and a daily API allowance no demo can spend, and describes it as
an admin would configure the adapter: the OAuth client credentials flow against the emulator's
token endpoint, the connected app's key and secret in ``CRMPHONE_DEMO_SALESFORCE_*`` variables,
and the emulator's private CA. Call logs are counted in the org itself: the Tasks whose
``CTI_Call_Id__c`` (the adapter's default external id field) holds a log key of the
conversation (``{conversation_id}:{participant_id}``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from crmphone.demo.crm import CrmFault
from crmphone.errors import InvalidStateError, UsageError

from .emulator import (
    HTML_NAME_NUMBER,
    SalesforceEmulatorThread,
    SalesforceModel,
    SalesforceSettings,
)
from .settings import DEFAULT_API_VERSION

__all__ = ["CLIENT_ID_ENV", "CLIENT_SECRET_ENV", "DEMO_API_LIMIT", "SalesforceDemo"]

CLIENT_ID_ENV = "CRMPHONE_DEMO_SALESFORCE_CLIENT_ID"
"""The environment variable that holds the connected app's consumer key."""

CLIENT_SECRET_ENV = "CRMPHONE_DEMO_SALESFORCE_CLIENT_SECRET"  # noqa: S105 - a variable's name
"""The environment variable that holds the connected app's consumer secret."""

DEMO_API_LIMIT = 100_000_000
"""The emulated org's daily API allowance in the demo: far beyond any run, so the demo shows the
adapter's request counts rather than a spent allowance."""

_FAULTS = {
    CrmFault.UNAVAILABLE: ("unavailable", "503 with an HTML page"),
    CrmFault.RATE_LIMITED: ("request_limit", "403 REQUEST_LIMIT_EXCEEDED"),
    CrmFault.EXPIRED_SESSION: ("expired_session", "401 INVALID_SESSION_ID"),
}
_EXTERNAL_ID_FIELD = "CTI_Call_Id__c"  # the adapter's default external_id_field, left as it is


class SalesforceDemo:
    """The Salesforce emulator for ``crmphone demo``: a :class:`~crmphone.demo.crm.DemoCrm`.

    Made with no arguments. :meth:`start` serves a fresh org from a background thread (it keeps
    answering while the demo's event loop is busy); the other methods need it running, and
    :meth:`stop` ends it and deletes its certificate files (calling it again does nothing).
    """

    def __init__(self) -> None:
        self._stack: contextlib.ExitStack | None = None
        self._emulator: SalesforceEmulatorThread | None = None
        self._agents: tuple[str, ...] = ()

    def __repr__(self) -> str:
        where = self._emulator.url if self._emulator is not None else "not running"
        return f"<SalesforceDemo {where}>"

    def start(self, *, agents: Sequence[str], seed: int) -> None:
        """Serve a freshly seeded org with one agent user per platform agent in ``agents``.

        :raises InvalidStateError: it is already running.
        :raises UsageError: ``agents`` names an agent twice.
        """
        if self._emulator is not None:
            raise InvalidStateError("the Salesforce demo emulator is already running")
        agent_ids = tuple(agents)
        if len(set(agent_ids)) != len(agent_ids):
            raise UsageError(f"agents must be distinct, got {list(agent_ids)!r}")
        settings = SalesforceSettings(agents=len(agent_ids), api_limit=DEMO_API_LIMIT)
        stack = contextlib.ExitStack()
        self._emulator = stack.enter_context(SalesforceEmulatorThread(seed, settings=settings))
        self._stack, self._agents = stack, agent_ids

    def stop(self) -> None:
        """Stop the emulator, join its thread and delete its certificate files."""
        stack = self._stack
        self._stack = self._emulator = None
        self._agents = ()
        if stack is not None:
            stack.close()

    def adapter_options(self) -> Mapping[str, Any]:
        """The ``[[adapters]]`` options for the emulated org: its URL, the pinned API version,
        the client credentials flow with the NAMES of the variables holding the key and secret
        (:meth:`environ` has their values), and the CA file to trust."""
        emulator = self._running()
        return {
            "instance_url": emulator.url,
            "api_version": DEFAULT_API_VERSION,
            "auth": "client_credentials",
            "login_url": emulator.url,
            "client_id_env": CLIENT_ID_ENV,
            "client_secret_env": CLIENT_SECRET_ENV,
            "ca_file": str(emulator.ca_file),
        }

    def environ(self) -> Mapping[str, str]:
        """The connected app's consumer key and secret, by the variable names the options use."""
        emulator = self._running()
        return {CLIENT_ID_ENV: emulator.client_id, CLIENT_SECRET_ENV: emulator.client_secret}

    def crm_users(self) -> Mapping[str, str]:
        """Platform agent id → the id of the Salesforce user seeded for that agent."""
        emulator = self._running()
        # Seeded once at start and never changed afterwards: safe to read from this thread.
        return dict(zip(self._agents, emulator.model.agent_user_ids, strict=True))

    def known_callers(self) -> Sequence[str]:
        """The seeded numbers that match exactly one Contact, Lead or Account, with the
        contact whose name is HTML second, so even a short demo shows a name escaped."""
        emulator = self._running()
        numbers = list(emulator.model.seeded_numbers("one"))
        if HTML_NAME_NUMBER in numbers:
            numbers.remove(HTML_NAME_NUMBER)
            numbers.insert(min(1, len(numbers)), HTML_NAME_NUMBER)
        return tuple(numbers)

    def call_records(self, conversation_ids: Collection[str]) -> Mapping[str, int]:
        """How many Tasks hold a log key of each conversation in ``CTI_Call_Id__c``."""
        emulator = self._running()
        wanted = frozenset(conversation_ids)
        return emulator.call(_count_tasks, emulator.model, wanted)

    def requests(self) -> int:
        """API requests the org has answered since :meth:`start` (token requests included)."""
        emulator = self._running()
        return emulator.call(lambda: emulator.model.stats.total)

    def inject(self, fault: CrmFault, count: int) -> str:
        """Queue ``count`` faults for any REST request (see :class:`crmphone.demo.crm.FaultyCrm`).

        Salesforce answers a spent API allowance with 403 ``REQUEST_LIMIT_EXCEEDED`` and no
        ``Retry-After``, never 429: that is its rate limit, so that is what it sends here.
        """
        emulator = self._running()
        kind, answer = _FAULTS[CrmFault(fault)]
        emulator.call(lambda: emulator.model.faults.fail_next(kind, count))
        return answer

    def heal(self) -> None:
        """Drop every queued fault."""
        emulator = self._running()
        emulator.call(lambda: emulator.model.faults.clear())

    def accelerated_options(self) -> Mapping[str, Any]:
        """Wait 1 s, not 5 minutes, after ``REQUEST_LIMIT_EXCEEDED``."""
        return {"request_limit_wait": 1.0}

    def _running(self) -> SalesforceEmulatorThread:
        if self._emulator is None:
            raise InvalidStateError("the Salesforce demo emulator is not running (call start())")
        return self._emulator


def _count_tasks(model: SalesforceModel, conversation_ids: frozenset[str]) -> dict[str, int]:
    """Tasks per conversation; run on the emulator's loop, between requests."""
    counts = dict.fromkeys(conversation_ids, 0)
    for task in model.records("Task"):
        key = task.get(_EXTERNAL_ID_FIELD)
        if not isinstance(key, str):
            continue
        # The adapter's key is "{conversation_id}:{participant_id}", one Task per agent leg.
        conversation = key.rpartition(":")[0]
        if conversation in counts:
            counts[conversation] += 1
    return counts
