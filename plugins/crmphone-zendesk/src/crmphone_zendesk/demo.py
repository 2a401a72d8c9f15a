"""The Zendesk emulator as a CRM of ``crmphone demo`` (entry point group ``crmphone.emulators``,
name ``zendesk``; the protocol is :class:`crmphone.demo.crm.DemoCrm`).

:class:`ZendeskDemo` serves a seeded :class:`~.emulator.ZendeskEmulator` from a background
thread, with one Zendesk agent per platform agent (the four seeded agents first, more added when
the demo has more) and a per-minute request budget no demo can spend, and describes it as an
admin would configure the adapter: the emulator's URL, the API user's email with its API token
in ``CRMPHONE_DEMO_ZENDESK_API_TOKEN``, and the emulator's private CA. Call logs are counted in
the account itself, by the ``external_id`` the adapter gives each call record and voice ticket
(the log key, ``{conversation_id}:{participant_id}``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from crmphone._serving import ServiceThread
from crmphone.adapters.numbers import e164
from crmphone.demo.crm import CrmFault
from crmphone.errors import InvalidStateError, UsageError

from .emulator import HTML_NAME_NUMBER, ZendeskEmulator, ZendeskModel

__all__ = ["API_TOKEN_ENV", "DEMO_RATE_LIMIT", "ZendeskDemo"]

API_TOKEN_ENV = "CRMPHONE_DEMO_ZENDESK_API_TOKEN"  # noqa: S105 - a variable's name
"""The environment variable that holds the API user's token."""

DEMO_RATE_LIMIT = 1_000_000
"""Requests per minute the emulated account allows in the demo: far beyond any run, so the demo
shows the adapter's request counts rather than 429s."""

_JOIN_TIMEOUT = 5.0  # the emulator gives open connections 2 s to finish when it stops


class ZendeskDemo:
    """The Zendesk emulator for ``crmphone demo``: a :class:`~crmphone.demo.crm.DemoCrm`.

    Made with no arguments. :meth:`start` serves a fresh account from a background thread (it
    keeps answering while the demo's event loop is busy); the other methods need it running,
    and :meth:`stop` ends it and deletes its certificate files (calling it again does nothing).
    """

    def __init__(self) -> None:
        self._thread: ServiceThread | None = None
        self._emulator: ZendeskEmulator | None = None
        self._users: dict[str, str] = {}

    def __repr__(self) -> str:
        where = self._emulator.url if self._emulator is not None else "not running"
        return f"<ZendeskDemo {where}>"

    def start(self, *, agents: Sequence[str], seed: int) -> None:
        """Serve a freshly seeded account with one Zendesk agent per platform agent in ``agents``.

        :raises InvalidStateError: it is already running.
        :raises UsageError: ``agents`` names an agent twice.
        """
        if self._thread is not None:
            raise InvalidStateError("the Zendesk demo emulator is already running")
        agent_ids = tuple(agents)
        if len(set(agent_ids)) != len(agent_ids):
            raise UsageError(f"agents must be distinct, got {list(agent_ids)!r}")
        emulator = ZendeskEmulator(seed, rate_limit=DEMO_RATE_LIMIT)
        model = emulator.model
        # The model is still this thread's own: add the agents before the server starts.
        zendesk_agents = [agent.id for agent in model.agents]
        for number in range(len(zendesk_agents) + 1, len(agent_ids) + 1):
            added = model.add_user(
                f"Agent {number}",
                role="agent",
                email=f"agent{number}@crmphone-emulator.example",
            )
            zendesk_agents.append(added.id)
        thread = ServiceThread(
            emulator,
            name="zendesk-emulator",
            what="the Zendesk emulator",
            join_timeout=_JOIN_TIMEOUT,
        )
        thread.start()
        self._thread, self._emulator = thread, emulator
        self._users = {
            agent: str(user) for agent, user in zip(agent_ids, zendesk_agents, strict=False)
        }

    def stop(self) -> None:
        """Stop the emulator, join its thread and delete its certificate files."""
        thread = self._thread
        self._thread = self._emulator = None
        self._users = {}
        if thread is not None:
            thread.close()

    def adapter_options(self) -> Mapping[str, Any]:
        """The ``[[adapters]]`` options for the emulated account: its URL, the API user's email
        with the NAME of the variable holding its API token (:meth:`environ` has the value),
        and the CA file to trust."""
        emulator = self._running()
        return {
            "base_url": emulator.url,
            "email": emulator.email,
            "token_env": API_TOKEN_ENV,
            "ca_file": str(emulator.ca_file),
        }

    def environ(self) -> Mapping[str, str]:
        """The API token, by the variable name the options use."""
        return {API_TOKEN_ENV: self._running().api_token}

    def crm_users(self) -> Mapping[str, str]:
        """Platform agent id → the id of its Zendesk agent (a number, as the adapter needs)."""
        self._running()
        return dict(self._users)

    def known_callers(self) -> Sequence[str]:
        """The E.164 numbers of the seeded end users whose number no other user has, with the
        one whose name is HTML second, so even a short demo shows a name escaped."""
        numbers = self._thread_of().invoke(_unique_numbers, self._running().model)
        if HTML_NAME_NUMBER in numbers:
            numbers.remove(HTML_NAME_NUMBER)
            numbers.insert(min(1, len(numbers)), HTML_NAME_NUMBER)
        return tuple(numbers)

    def call_records(self, conversation_ids: Collection[str]) -> Mapping[str, int]:
        """How many call logs the account holds for each conversation: its call records, or
        its voice tickets when there are more of those (a duplicated ticket is a duplicated
        log too); 0 whenever the call record is missing."""
        wanted = frozenset(conversation_ids)
        return self._thread_of().invoke(_count_logs, self._running().model, wanted)

    def requests(self) -> int:
        """API requests the account has answered since :meth:`start`."""
        model = self._running().model
        return self._thread_of().invoke(lambda: model.stats.total)

    def inject(self, fault: CrmFault, count: int) -> str:
        """Queue ``count`` faults for any API request (see :class:`crmphone.demo.crm.FaultyCrm`)."""
        faults = self._running().model.faults
        match CrmFault(fault):
            case CrmFault.UNAVAILABLE:
                self._thread_of().invoke(lambda: faults.unavailable(count))
                return "503 Service Unavailable"
            case CrmFault.RATE_LIMITED:
                self._thread_of().invoke(lambda: faults.rate_limited(count, retry_after=1))
                return "429 with Retry-After: 1"
            case CrmFault.EXPIRED_SESSION:
                self._thread_of().invoke(lambda: faults.expired_credentials(count))
                return "401 Couldn't authenticate you"

    def heal(self) -> None:
        """Drop every queued fault."""
        faults = self._running().model.faults
        self._thread_of().invoke(faults.clear)

    def accelerated_options(self) -> Mapping[str, Any]:
        """None needed: Zendesk says how long to wait (``Retry-After``)."""
        return {}

    def _running(self) -> ZendeskEmulator:
        if self._emulator is None:
            raise InvalidStateError("the Zendesk demo emulator is not running (call start())")
        return self._emulator

    def _thread_of(self) -> ServiceThread:
        if self._thread is None:
            raise InvalidStateError("the Zendesk demo emulator is not running (call start())")
        return self._thread


def _conversation(key: object) -> str | None:
    """The conversation of a log key ``{conversation_id}:{participant_id}``, or None."""
    if not isinstance(key, str) or ":" not in key:
        return None
    return key.rpartition(":")[0]


def _unique_numbers(model: ZendeskModel) -> list[str]:
    """The seeded end users' numbers that only one user has; run on the emulator's loop."""
    return [
        normal
        for customer in model.customers
        if customer.phone
        and not model.shares_phone(customer)
        and (normal := e164(customer.phone)) is not None
    ]


def _count_logs(model: ZendeskModel, conversation_ids: frozenset[str]) -> dict[str, int]:
    """Call logs per conversation; run on the emulator's loop, between requests."""
    calls: Counter[str] = Counter()
    tickets: Counter[str] = Counter()
    for call in model.calls.values():
        conversation = _conversation(call.fields.get("external_id"))
        if conversation is not None and conversation in conversation_ids:
            calls[conversation] += 1
    for ticket in model.tickets.values():
        conversation = _conversation(ticket.external_id)
        if conversation is not None and conversation in conversation_ids:
            tickets[conversation] += 1
    return {
        conversation: max(calls[conversation], tickets[conversation]) if calls[conversation] else 0
        for conversation in conversation_ids
    }
