"""ZendeskAdapter against the emulator over HTTPS: conformance, lookup, pops, tickets, calls."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import attrs
import pytest

from crmphone.adapters import AdapterContext, CallLog, LogStage, MatchOutcome
from crmphone.errors import ConfigError, CrmPermanentError, CrmRetryableError
from crmphone.events import CallDirection
from crmphone.testing import AdapterConformance, ConformanceBackend, fake_call_logs
from crmphone.testing.conformance import FailureKind
from crmphone_zendesk import ZendeskAdapter, ZendeskSettings
from crmphone_zendesk.emulator import ZendeskEmulator
from crmphone_zendesk.emulator.model import (
    NO_MATCH_NUMBER,
    ONE_MATCH_NUMBER,
    SHARED_NUMBER,
)

RETRY_AFTER = 3


def call_logs(number: str = ONE_MATCH_NUMBER, **options: Any) -> dict[LogStage, CallLog]:
    """One call's log at each written stage."""
    return fake_call_logs(number=number, **options)


class EmulatorBackend(ConformanceBackend):
    """The emulated account as the suite's CRM: a call's record is its ticket (by external id)."""

    def __init__(self, emulator: ZendeskEmulator) -> None:
        self.emulator = emulator

    def records(self, log_key: str) -> int:
        """Tickets of the call, plus any second call record (each must be one)."""
        tickets = self.emulator.model.tickets_by_external_id(log_key)
        calls = self.emulator.model.calls_by_external_id(log_key)
        return len(tickets) + max(0, len(calls) - 1)

    def fail_next(self, kind: FailureKind, count: int = 1) -> float | None:
        """429 with Retry-After (retryable) or 422 RecordInvalid (permanent)."""
        if kind == "retryable":
            self.emulator.model.faults.rate_limited(count, retry_after=RETRY_AFTER)
            return float(RETRY_AFTER)
        self.emulator.model.faults.rejected(count)
        return None

    def stall(self, seconds: float) -> None:
        """The next answer leaves ``seconds`` late."""
        self.emulator.model.faults.slow(seconds)

    def last_written(self, log_key: str) -> LogStage | None:
        """From the call record: ended → ENDED (WRAPPED_UP once a disposition is set)."""
        calls = self.emulator.model.calls_by_external_id(log_key)
        if len(calls) != 1:
            return None
        fields = calls[0].fields
        if fields.get("call_disposition"):
            return LogStage.WRAPPED_UP
        return LogStage.ENDED if fields.get("call_ended_at") else LogStage.CONNECTED


AdapterFactory = Callable[..., Any]


@pytest.fixture
async def emulator() -> AsyncIterator[ZendeskEmulator]:
    """The emulator on loopback, in this event loop."""
    async with ZendeskEmulator(seed=0) as running:
        yield running


@pytest.fixture
async def make_adapter(
    emulator: ZendeskEmulator, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[AdapterFactory]:
    """Build and start adapters on the emulator (API token auth); closed at the end."""
    monkeypatch.setenv("ZD_TEST_TOKEN", emulator.api_token)
    made: list[tuple[ZendeskAdapter, AdapterContext]] = []

    async def make(**options: Any) -> ZendeskAdapter:
        values: dict[str, Any] = {
            "base_url": emulator.url,
            "email": emulator.email,
            "token_env": "ZD_TEST_TOKEN",
            "ca_file": str(emulator.ca_file),
            "timeout": 5.0,
        }
        values.update(options)
        context = AdapterContext(name="zendesk", agents={}, timeout=5.0)
        adapter = ZendeskAdapter.from_options(values, context)
        made.append((adapter, context))
        await adapter.start()
        return adapter

    yield make
    for adapter, context in made:
        await adapter.close()
        context.close()


@pytest.fixture
async def adapter(make_adapter: AdapterFactory) -> ZendeskAdapter:
    """A started adapter for the conformance suite."""
    made: ZendeskAdapter = await make_adapter()
    return made


@pytest.fixture
def backend(emulator: ZendeskEmulator) -> EmulatorBackend:
    """The emulator seen by the suite."""
    return EmulatorBackend(emulator)


class TestZendeskConformance(AdapterConformance):
    """The conformance suite against ZendeskAdapter and the Zendesk emulator."""

    customer_number = ONE_MATCH_NUMBER
    stall_seconds = 0.5


def agent_of(emulator: ZendeskEmulator) -> str:
    return str(emulator.model.agents[0].id)


async def test_lookup_finds_one_many_or_creates_the_caller(
    make_adapter: AdapterFactory, emulator: ZendeskEmulator
) -> None:
    """One seeded match, two for a shared number, and a new end user (once) for an unknown one."""
    adapter = await make_adapter(lookup_cache_seconds=0)
    one = await adapter.lookup_caller(call_logs(ONE_MATCH_NUMBER)[LogStage.CONNECTED])
    many = await adapter.lookup_caller(call_logs(SHARED_NUMBER)[LogStage.CONNECTED])
    assert one.outcome is MatchOutcome.ONE
    assert many.outcome is MatchOutcome.MANY
    emulator.model.search_lag = 600.0  # a new user stays invisible to search for minutes
    new = await adapter.lookup_caller(call_logs(NO_MATCH_NUMBER)[LogStage.CONNECTED])
    again = await adapter.lookup_caller(call_logs(NO_MATCH_NUMBER)[LogStage.CONNECTED])
    assert new.outcome is MatchOutcome.ONE
    assert again.records == new.records  # remembered, not created twice
    assert len(emulator.model.users_with_phone(NO_MATCH_NUMBER)) == 1


async def test_a_caller_made_but_never_remembered_is_found_not_made_again(
    make_adapter: AdapterFactory, emulator: ZendeskEmulator
) -> None:
    """The process died between Zendesk making the caller and the commit of its id: the next
    lookup (fresh memory, search still lagging) is refused a second user with the same external
    id and uses the first."""
    emulator.model.search_lag = 600.0
    first = await make_adapter(lookup_cache_seconds=0)
    made = await first.lookup_caller(call_logs(NO_MATCH_NUMBER)[LogStage.CONNECTED])
    restarted = await make_adapter(lookup_cache_seconds=0)  # nothing remembered
    again = await restarted.lookup_caller(call_logs(NO_MATCH_NUMBER)[LogStage.CONNECTED])
    assert again.records == made.records
    (user,) = emulator.model.users_with_phone(NO_MATCH_NUMBER)
    assert user.external_id == f"crmphone-caller:{NO_MATCH_NUMBER}"


async def test_unknown_callers_are_left_alone_when_asked(
    make_adapter: AdapterFactory, emulator: ZendeskEmulator
) -> None:
    """create_users = false: no match, no user made."""
    adapter = await make_adapter(create_users=False)
    none = await adapter.lookup_caller(call_logs(NO_MATCH_NUMBER)[LogStage.CONNECTED])
    assert none.outcome is MatchOutcome.NONE
    assert emulator.model.users_with_phone(NO_MATCH_NUMBER) == []


async def test_a_ringing_call_shows_the_caller_to_the_agent(
    make_adapter: AdapterFactory, emulator: ZendeskEmulator
) -> None:
    """One match → a display request for that user to the mapped agent; many → none."""
    adapter = await make_adapter()
    agent = agent_of(emulator)
    log = call_logs(ONE_MATCH_NUMBER, crm_user_id=agent)[LogStage.CONNECTED]
    await adapter.screen_pop(log, await adapter.lookup_caller(log))
    shared = call_logs(SHARED_NUMBER, crm_user_id=agent)[LogStage.CONNECTED]
    await adapter.screen_pop(shared, await adapter.lookup_caller(shared))
    assert len(emulator.model.displays) == 1
    display = emulator.model.displays[0]
    assert str(display.agent_id) == agent


async def test_a_call_is_one_voice_ticket_and_one_completed_call_record(
    make_adapter: AdapterFactory, emulator: ZendeskEmulator
) -> None:
    """Connect makes the ticket (via 45, shown to the agent) and the call record; the end
    completes the record; wrap-up adds one summary comment, even when written twice."""
    adapter = await make_adapter()
    agent = agent_of(emulator)
    logs = call_logs(ONE_MATCH_NUMBER, crm_user_id=agent)
    match = await adapter.lookup_caller(logs[LogStage.CONNECTED])
    for stage in (LogStage.CONNECTED, LogStage.ENDED, LogStage.WRAPPED_UP, LogStage.WRAPPED_UP):
        await adapter.log_call(attrs.evolve(logs[stage], match=match, notes="<b>refund</b>"))
    key = logs[LogStage.CONNECTED].key
    [ticket] = emulator.model.tickets_by_external_id(key)
    assert (ticket.via.channel, ticket.via.via_id) == ("voice", 45)
    assert str(ticket.assignee_id) == agent
    assert match.primary is not None
    assert str(ticket.requester_id) == match.primary.id
    shown = [d for d in emulator.model.displays if d.kind == "ticket"]
    assert [(str(d.agent_id), d.target_id) for d in shown] == [(agent, ticket.id)]
    calls = emulator.model.calls_by_external_id(key)
    assert len(calls) == 1
    fields = calls[0].fields
    assert fields["duration"] == 42
    assert fields["call_disposition"] == "resolved"
    assert str(fields["agent_id"]) == agent
    assert fields["ticket_id"] == ticket.id
    comments = [c for c in emulator.model.comments if c.ticket_id == ticket.id]
    summaries = [c for c in comments if "Disposition: resolved" in c.body]
    assert len(summaries) == 1
    assert "Notes: <b>refund</b>" in summaries[0].body  # kept as text, not markup
    assert not summaries[0].public


async def test_a_retried_ticket_creation_returns_the_same_ticket(
    make_adapter: AdapterFactory, emulator: ZendeskEmulator
) -> None:
    """The creation carries an Idempotency-Key; after a restart the ticket is found by
    external_id; either way one ticket."""
    first = await make_adapter()
    log = call_logs(ONE_MATCH_NUMBER)[LogStage.CONNECTED]
    await first.log_call(log)
    second = await make_adapter()  # a new process: its memory is empty
    await second.log_call(log)
    assert len(emulator.model.tickets_by_external_id(log.key)) == 1
    creations = [r for r in emulator.model.stats.log if r.route == "voice.tickets.create"]
    # One creation, and it carried an Idempotency-Key (the emulator answers a keyed request
    # with a lookup result; an unkeyed one has none).
    assert [r.idempotency_lookup for r in creations] == ["miss"]


async def test_rate_limits_pass_retry_after_on_and_never_sleep(
    make_adapter: AdapterFactory, emulator: ZendeskEmulator
) -> None:
    """A 429 with Retry-After: 30 raises at once with retry_after 30 (zenpy does not wait)."""
    adapter = await make_adapter()
    emulator.model.faults.rate_limited(1, retry_after=30)
    import time

    started = time.monotonic()
    with pytest.raises(CrmRetryableError) as caught:
        await adapter.log_call(call_logs()[LogStage.CONNECTED])
    assert time.monotonic() - started < 5
    assert caught.value.retry_after == 30.0


async def test_outages_and_refusals_map_to_crmphone_errors(
    make_adapter: AdapterFactory, emulator: ZendeskEmulator
) -> None:
    """Plain-text 503 → retryable; 422 → permanent naming the problem; 401 → retryable, clear."""
    adapter = await make_adapter()
    log = call_logs()[LogStage.CONNECTED]
    emulator.model.faults.unavailable()
    with pytest.raises(CrmRetryableError, match="503"):
        await adapter.log_call(log)
    emulator.model.faults.rejected()
    with pytest.raises(CrmPermanentError, match="RecordInvalid"):
        await adapter.log_call(log)
    emulator.model.faults.expired_credentials()
    with pytest.raises(CrmRetryableError, match="credentials"):
        await adapter.log_call(log)
    await adapter.log_call(log)
    assert len(emulator.model.tickets_by_external_id(log.key)) == 1


async def test_a_call_record_attempt_without_an_answer_is_said_when_it_is_made_again(
    make_adapter: AdapterFactory, emulator: ZendeskEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    """Zendesk makes the call record but its answer never arrives (here: too late). The next
    attempt cannot look the record up (the API has no lookup), so it makes another one, and
    the log says so; an attempt Zendesk refused (429) makes nothing and is retried silently."""
    adapter = await make_adapter(timeout=0.5)
    refused = call_logs(ONE_MATCH_NUMBER)[LogStage.CONNECTED]
    emulator.model.faults.rate_limited(1, retry_after=1, route="calls.create")
    with pytest.raises(CrmRetryableError, match="rate limit"):
        await adapter.log_call(refused)
    unanswered = call_logs(SHARED_NUMBER)[LogStage.CONNECTED]
    emulator.model.faults.slow(1.5, route="calls.create")
    with pytest.raises(CrmRetryableError, match="no answer"):
        await adapter.log_call(unanswered)
    with caplog.at_level(logging.WARNING, logger="crmphone_zendesk.adapter"):
        await adapter.log_call(refused)
        await adapter.log_call(unanswered)
    warnings = [r.getMessage() for r in caplog.records if "earlier attempt" in r.getMessage()]
    assert len(warnings) == 1
    assert unanswered.conversation_id in warnings[0]
    assert "two" in warnings[0]
    assert len(emulator.model.calls_by_external_id(refused.key)) == 1
    assert len(emulator.model.calls_by_external_id(unanswered.key)) == 2  # what the warning said


async def test_outbound_calls_get_tickets_only_when_asked(
    make_adapter: AdapterFactory, emulator: ZendeskEmulator
) -> None:
    """tickets_for without outbound: the call record only."""
    adapter = await make_adapter(tickets_for=["answered", "missed"])
    log = call_logs(NO_MATCH_NUMBER, direction=CallDirection.OUTBOUND)[LogStage.WRAPPED_UP]
    await adapter.log_call(log)
    assert emulator.model.tickets_by_external_id(log.key) == []
    assert emulator.model.calls_by_external_id(log.key)


@pytest.mark.parametrize(
    ("options", "key", "text"),
    [
        ({}, "subdomain", "one of"),
        ({"subdomain": "acme", "base_url": "https://x"}, "subdomain", "one of"),
        ({"base_url": "http://acme.zendesk.com"}, "base_url", "https"),
        ({"subdomain": "acme", "token_env": "T"}, "email", "required"),
        ({"subdomain": "acme", "email": "a@b.c", "token_env": "UNSET_VAR"}, "token_env", "not set"),
        (
            {"subdomain": "acme", "email": "a@b.c", "token_env": "T", "subject": "{secret}"},
            "subject",
            "placeholders",
        ),
        (
            {"subdomain": "acme", "email": "a@b.c", "token_env": "T", "tickets_for": ["all"]},
            "tickets_for",
            "list of",
        ),
        (
            {"subdomain": "acme", "email": "a@b.c", "token_env": "T", "colour": 1},
            "colour",
            "unknown",
        ),
    ],
)
def test_bad_options_name_the_key(options: dict[str, Any], key: str, text: str) -> None:
    """Each bad option is one ConfigError naming adapters.<instance>.<option>."""
    with pytest.raises(ConfigError, match=text) as caught:
        ZendeskSettings.from_options(options, prefix="adapters.zd", environ={"T": "tok"})
    assert caught.value.key == f"adapters.zd.{key}"


def test_the_token_stays_out_of_reprs() -> None:
    """Settings show that a token is set, never what it is."""
    settings = ZendeskSettings.from_options(
        {"subdomain": "acme", "email": "a@b.c", "token_env": "T"}, environ={"T": "zd-secret-42"}
    )
    assert "zd-secret-42" not in repr(settings)


def test_the_plugin_is_found_through_its_entry_point() -> None:
    """`zendesk` in group crmphone.adapters loads ZendeskAdapter."""
    from crmphone.adapters.registry import load_adapter_class

    assert load_adapter_class("zendesk") is ZendeskAdapter
