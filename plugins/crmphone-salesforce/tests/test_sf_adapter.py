"""SalesforceAdapter against the emulator over HTTPS: lookup, Task logging, batching, errors."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import attrs
import pytest
import trustme
from sf_helpers import AdapterFactory

from crmphone.adapters import CallLog, CrmRecord, LogStage, MatchOutcome
from crmphone.adapters.numbers import search_digits
from crmphone.errors import ConfigError, CrmPermanentError, CrmRetryableError
from crmphone.events import CallDirection
from crmphone.testing import fake_call_logs
from crmphone_salesforce import SalesforceAdapter, SalesforceSettings
from crmphone_salesforce.emulator import (
    HTML_NAME_NUMBER,
    MANY_MATCH_NUMBERS,
    NO_MATCH_NUMBERS,
    ONE_MATCH_NUMBER,
    SalesforceEmulator,
)
from crmphone_salesforce.phone import escape_sosl


def call_logs(number: str = ONE_MATCH_NUMBER, **options: Any) -> dict[LogStage, CallLog]:
    """One call's log at each written stage."""
    return fake_call_logs(number=number, **options)


def only_task(emulator: SalesforceEmulator, log: CallLog) -> dict[str, Any]:
    tasks = emulator.model.find("Task", CTI_Call_Id__c=log.key)
    assert len(tasks) == 1, tasks
    return tasks[0]


# ------------------------------------------------------------------ lookup


async def test_lookup_finds_one_many_or_no_records(
    make_adapter: AdapterFactory, emulator: SalesforceEmulator
) -> None:
    """Seeded numbers in any stored format match by digits; people come before accounts."""
    adapter = await make_adapter()
    one = await adapter.lookup_caller(call_logs(ONE_MATCH_NUMBER)[LogStage.CONNECTED])
    many = await adapter.lookup_caller(call_logs(MANY_MATCH_NUMBERS[0])[LogStage.CONNECTED])
    none = await adapter.lookup_caller(call_logs(NO_MATCH_NUMBERS[0])[LogStage.CONNECTED])
    assert one.outcome is MatchOutcome.ONE
    assert one.primary is not None
    assert one.primary.kind in ("Contact", "Lead", "Account")
    assert many.outcome is MatchOutcome.MANY
    assert none.outcome is MatchOutcome.NONE
    assert emulator.model.stats.requests["search"] == 3


async def test_lookups_are_cached_briefly(
    make_adapter: AdapterFactory, emulator: SalesforceEmulator
) -> None:
    """The same caller again within the cache time costs no second search."""
    adapter = await make_adapter(lookup_cache_seconds=60)
    log = call_logs(ONE_MATCH_NUMBER)[LogStage.CONNECTED]
    first = await adapter.lookup_caller(log)
    second = await adapter.lookup_caller(log)
    assert first.records == second.records
    assert emulator.model.stats.requests["search"] == 1


async def test_soql_lookup_is_immediate_while_the_search_index_lags(
    make_adapter: AdapterFactory, emulator: SalesforceEmulator
) -> None:
    """A contact created a moment ago is invisible to SOSL (index lag) but found by SOQL."""
    emulator.model.search_lag = 600.0
    emulator.model.add_contact("Caller", first_name="Newly Created", phone="+15550177777")
    log = call_logs("+15550177777")[LogStage.CONNECTED]
    sosl = await make_adapter(lookup="sosl")
    soql = await make_adapter(lookup="soql")
    assert (await sosl.lookup_caller(log)).outcome is MatchOutcome.NONE
    found = await soql.lookup_caller(log)
    assert [record.name for record in found.records] == ["Newly Created Caller"]


@pytest.mark.parametrize(
    ("number", "expected"),
    [
        ("+15550100001", "5550100001"),
        ("tel:+1 (555) 010-0001", "5550100001"),
        ("+442079460000", "442079460000"),
        ("1234", None),
    ],
)
def test_numbers_are_searched_by_their_significant_digits(
    number: str, expected: str | None
) -> None:
    """+1 numbers are searched by ten digits (matching stored forms with or without +1)."""
    assert search_digits(number) == expected


def test_sosl_reserved_characters_are_escaped() -> None:
    """Every SOSL reserved character gets a backslash, so input cannot change the query."""
    assert escape_sosl("a-b} OR {c") == "a\\-b\\} OR \\{c"
    assert escape_sosl("&|!(){}[]^\"~*?:\\'+-") == "".join(
        "\\" + char for char in "&|!(){}[]^\"~*?:\\'+-"
    )


# ------------------------------------------------------------------ logging


async def test_a_call_becomes_one_completed_task_with_the_right_fields(
    make_adapter: AdapterFactory, emulator: SalesforceEmulator
) -> None:
    """Connect creates an In Progress call Task; end and wrap-up complete the same Task."""
    adapter = await make_adapter()
    owner = emulator.model.agent_user_ids[0]
    logs = call_logs(ONE_MATCH_NUMBER, crm_user_id=owner)
    match = await adapter.lookup_caller(logs[LogStage.CONNECTED])
    assert match.primary is not None
    connected = attrs.evolve(logs[LogStage.CONNECTED], match=match)
    await adapter.log_call(connected)
    task = only_task(emulator, connected)
    assert task["Status"] == "In Progress"
    assert task["TaskSubtype"] == "Call"
    assert task["CallType"] == "Inbound"
    assert task["CallObject"] == connected.conversation_id
    link = "WhoId" if match.primary.kind in ("Contact", "Lead") else "WhatId"
    assert task[link] == match.primary.id
    for stage in (LogStage.ENDED, LogStage.WRAPPED_UP):
        later = attrs.evolve(logs[stage], match=match, notes="Asked about <b>bills</b>")
        await adapter.log_call(later)
    task = only_task(emulator, connected)
    assert task["Status"] == "Completed"
    assert task["CallDurationInSeconds"] == 42
    assert task["CallDisposition"] == "resolved"
    assert task["Description"] == "Asked about <b>bills</b>"
    assert task["OwnerId"] == owner
    assert str(task["ActivityDate"]) == connected.alerting_at.date().isoformat()


async def test_click_to_dial_links_the_task_to_the_record_it_came_from(
    make_adapter: AdapterFactory, emulator: SalesforceEmulator
) -> None:
    """An outbound call dialled from an Account logs with WhatId = that Account."""
    adapter = await make_adapter()
    account = emulator.model.records("Account")[0]
    logs = call_logs(NO_MATCH_NUMBERS[0], direction=CallDirection.OUTBOUND)
    record = CrmRecord("Account", account["Id"], account["Name"])
    await adapter.log_call(attrs.evolve(logs[LogStage.WRAPPED_UP], linked_record=record))
    task = only_task(emulator, logs[LogStage.WRAPPED_UP])
    assert task["WhatId"] == account["Id"]
    assert task["CallType"] == "Outbound"
    assert task["Subject"].startswith("Outbound call to")


async def test_a_retried_first_write_updates_without_the_insert_only_field(
    make_adapter: AdapterFactory, emulator: SalesforceEmulator
) -> None:
    """A connect write sent again after its answer was lost still leaves one Task."""
    adapter = await make_adapter()
    connected = call_logs()[LogStage.CONNECTED]
    await adapter.log_call(connected)
    await adapter.log_call(connected)  # TaskSubtype may only be set on insert
    assert only_task(emulator, connected)["TaskSubtype"] == "Call"


async def test_a_burst_of_logs_is_one_collection_request_with_per_record_outcomes(
    make_adapter: AdapterFactory, emulator: SalesforceEmulator
) -> None:
    """200 logs in one request; a record Salesforce refuses fails alone (permanently)."""
    adapter = await make_adapter()
    logs = [call_logs(NO_MATCH_NUMBERS[0])[LogStage.CONNECTED] for _ in range(200)]
    logs[7] = attrs.evolve(logs[7], crm_user_id="001000000000000AAA")  # an Account as owner
    before = emulator.model.stats.requests["composite"]
    outcomes = await adapter.log_calls(logs)
    assert emulator.model.stats.requests["composite"] - before == 1
    assert isinstance(outcomes[7], CrmPermanentError)
    assert [i for i, outcome in enumerate(outcomes) if outcome is not None] == [7]
    assert emulator.model.count("Task") >= 199
    # The same batch again (a retried request): still one Task per call.
    again = await adapter.log_calls([log for i, log in enumerate(logs) if i != 7])
    assert all(outcome is None for outcome in again)
    for log in logs[:3]:
        only_task(emulator, log)


# ------------------------------------------------------------------ errors


async def test_an_expired_session_is_renewed_once(
    make_adapter: AdapterFactory, emulator: SalesforceEmulator
) -> None:
    """With client credentials, a 401 gets a new session and the write goes through."""
    adapter = await make_adapter(
        auth="client_credentials",
        session_id_env=None,
        client_id_env="SF_CLIENT_ID",
        client_secret_env="SF_CLIENT_SECRET",
        login_url=emulator.url,
    )
    emulator.model.expire_sessions()
    log = call_logs()[LogStage.CONNECTED]
    await adapter.log_call(log)
    only_task(emulator, log)
    assert emulator.model.stats.requests["oauth"] == 2  # the start's login, then the renewal


async def test_a_fixed_session_that_expired_is_a_clear_retryable_error(
    make_adapter: AdapterFactory, emulator: SalesforceEmulator
) -> None:
    """A session id cannot be renewed: the write waits in the outbox, and the message says why."""
    adapter = await make_adapter()
    emulator.model.faults.fail_next("expired_session")
    with pytest.raises(CrmRetryableError, match="cannot be renewed"):
        await adapter.log_call(call_logs()[LogStage.CONNECTED])


async def test_request_limit_and_outages_are_retryable(
    make_adapter: AdapterFactory, emulator: SalesforceEmulator
) -> None:
    """403 REQUEST_LIMIT_EXCEEDED waits minutes; 503 passes its Retry-After on."""
    adapter = await make_adapter()
    log = call_logs()[LogStage.CONNECTED]
    emulator.model.faults.fail_next("request_limit")
    with pytest.raises(CrmRetryableError, match="allowance") as limited:
        await adapter.log_call(log)
    assert limited.value.retry_after == 300.0
    emulator.model.faults.fail_next("unavailable", retry_after=7)
    with pytest.raises(CrmRetryableError) as down:
        await adapter.log_call(log)
    assert down.value.retry_after == 7.0
    assert isinstance(down.value.__cause__, Exception)  # chained, not swallowed


async def test_a_field_that_is_no_external_id_is_a_permanent_error_with_the_fix(
    make_adapter: AdapterFactory,
) -> None:
    """404 on the upsert names the field and says what to do."""
    adapter = await make_adapter(external_id_field="Subject")
    with pytest.raises(CrmPermanentError, match="External ID"):
        await adapter.log_call(call_logs()[LogStage.CONNECTED])


async def test_a_slow_answer_times_out_and_the_retry_leaves_one_task(
    make_adapter: AdapterFactory, emulator: SalesforceEmulator
) -> None:
    """No request waits longer than the timeout; the write that landed anyway is not doubled."""
    adapter = await make_adapter(timeout=0.3)
    log = call_logs()[LogStage.CONNECTED]
    emulator.model.faults.fail_next("slow", delay=1.5)
    with pytest.raises(CrmRetryableError, match="in time"):
        await adapter.log_call(log)
    await adapter.log_call(log)
    only_task(emulator, log)


async def test_tls_is_verified_and_the_environment_cannot_override_it(
    make_adapter: AdapterFactory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Without the emulator's CA the request fails on TLS; a bogus REQUESTS_CA_BUNDLE is ignored."""
    stranger = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(stranger))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(stranger))
    trusted = await make_adapter()
    await trusted.log_call(call_logs()[LogStage.CONNECTED])  # ca_file wins over the variable
    untrusting = await make_adapter(ca_file=str(stranger))
    with pytest.raises(CrmRetryableError, match="TLS"):
        await untrusting.log_call(call_logs()[LogStage.CONNECTED])


async def test_jwt_bearer_login_works(
    make_adapter: AdapterFactory,
    emulator: SalesforceEmulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A private key whose certificate the connected app holds gets a session."""
    authority = trustme.CA(key_type=trustme.KeyType.RSA)  # RS256 needs an RSA key
    leaf = authority.issue_cert("crmphone-jwt", key_type=trustme.KeyType.RSA)
    key_file = tmp_path / "jwt.key"
    leaf.private_key_pem.write_to_path(str(key_file))
    emulator.model.auth.register_certificate(leaf.cert_chain_pems[0].bytes())
    username = emulator.model.records("User")[0]["Username"]
    adapter = await make_adapter(
        auth="jwt",
        session_id_env=None,
        client_id_env="SF_CLIENT_ID",
        username=username,
        private_key_file=str(key_file),
        login_url=emulator.url,
    )
    log = call_logs()[LogStage.CONNECTED]
    await adapter.log_call(log)
    only_task(emulator, log)


async def test_api_usage_is_read_and_logged(
    make_adapter: AdapterFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """Sforce-Limit-Info becomes api_usage and an INFO line; the session id is in no log."""
    caplog.set_level(logging.DEBUG)
    adapter = await make_adapter()
    await adapter.log_call(call_logs()[LogStage.CONNECTED])
    usage = adapter.api_usage
    assert usage is not None
    assert usage.allowed == 15000
    assert 0 < usage.used < 100
    assert any("API usage" in record.getMessage() for record in caplog.records)
    secret = adapter.settings.session_id
    assert secret
    assert secret not in caplog.text
    assert secret not in repr(adapter.settings)


# ------------------------------------------------------------------ options


@pytest.mark.parametrize(
    ("options", "key", "text"),
    [
        ({}, "instance_url", "required"),
        ({"instance_url": "http://x.my.salesforce.com"}, "instance_url", "https"),
        ({"instance_url": "https://x", "sesion_id_env": "X"}, "sesion_id_env", "unknown"),
        (
            {"instance_url": "https://x", "session_id_env": "NOT_SET_ANYWHERE"},
            "session_id_env",
            "not set",
        ),
        (
            {"instance_url": "https://x", "session_id_env": "A", "api_version": "latest"},
            "api_version",
            "62.0",
        ),
        (
            {"instance_url": "https://x", "session_id_env": "A", "auth": "password"},
            "auth",
            "one of",
        ),
        (
            {"instance_url": "https://x", "session_id_env": "A", "fields": {"colour": "X__c"}},
            "fields.colour",
            "call value",
        ),
    ],
)
def test_bad_options_name_the_key(options: dict[str, Any], key: str, text: str) -> None:
    """Each bad option is one ConfigError naming adapters.<instance>.<option>."""
    with pytest.raises(ConfigError, match=text) as caught:
        SalesforceSettings.from_options(options, prefix="adapters.sf", environ={"A": "secret"})
    assert caught.value.key == f"adapters.sf.{key}"


def test_secrets_stay_out_of_reprs() -> None:
    """Settings show that a secret is set, never what it is."""
    settings = SalesforceSettings.from_options(
        {"instance_url": "https://x.my.salesforce.com", "session_id_env": "A"},
        environ={"A": "00D-super-secret-session"},
    )
    assert "00D-super-secret-session" not in repr(settings)
    assert settings.session_id == "00D-super-secret-session"


def test_the_plugin_is_found_through_its_entry_point() -> None:
    """`salesforce` in group crmphone.adapters loads SalesforceAdapter."""
    from crmphone.adapters.registry import load_adapter_class

    assert load_adapter_class("salesforce") is SalesforceAdapter


async def test_html_in_a_name_is_kept_as_data(make_adapter: AdapterFactory) -> None:
    """A caller whose name holds HTML is matched with that name verbatim (pages show it as
    text; the adapter neither strips nor escapes it)."""
    adapter = await make_adapter()
    match = await adapter.lookup_caller(call_logs(HTML_NAME_NUMBER)[LogStage.CONNECTED])
    assert match.primary is not None
    assert match.primary.name is not None
    assert "<img src=x onerror=alert(1)>" in match.primary.name
