"""crmphone-webhook against a real receiver over loopback sockets: delivery, keys, errors, options."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trustme
from receiver import WebhookReceiver

from crmphone.adapters import AdapterContext, CallLog, LogStage
from crmphone.adapters.registry import installed_plugins, load_adapter_class
from crmphone.errors import (
    ConfigError,
    CrmPermanentError,
    CrmRetryableError,
    InvalidStateError,
)
from crmphone.events import CallDirection, HungUpBy
from crmphone_webhook import EVENT, WebhookAdapter, WebhookOptions

SECRET = "Bearer s3cret-token-9f2c"

START = datetime(2026, 5, 1, 9, 30, tzinfo=UTC)


def call_log(stage: LogStage = LogStage.CONNECTED, *, conversation: str = "conv-1") -> CallLog:
    """The log of one inbound call, as far as ``stage``."""
    log = CallLog(
        conversation_id=conversation,
        participant_id="part-1",
        agent_id="agent-1",
        crm_user_id="crm-user-1",
        direction=CallDirection.INBOUND,
        customer_number="+15551230001",
        ani="+15551230001",
        dnis="+15550009999",
        queue_name="Support",
        alerting_at=START,
    )
    if stage >= LogStage.CONNECTED:
        log = attrs.evolve(
            log, stage=LogStage.CONNECTED, connected_at=START + timedelta(seconds=5), answered=True
        )
    if stage >= LogStage.ENDED:
        log = attrs.evolve(
            log,
            stage=LogStage.ENDED,
            ended_at=START + timedelta(seconds=47),
            duration_seconds=42,
            who_hung_up=HungUpBy.CUSTOMER,
        )
    if stage >= LogStage.WRAPPED_UP:
        log = attrs.evolve(log, stage=LogStage.WRAPPED_UP, wrapup_code="resolved")
    return log


@asynccontextmanager
async def running(
    options: Mapping[str, Any],
    *,
    environ: Mapping[str, str] | None = None,
    **context: Any,
) -> AsyncIterator[WebhookAdapter]:
    """A started adapter built from ``options`` (and context settings), closed afterwards."""
    adapter_context = AdapterContext(name="webhook", **context)
    adapter = WebhookAdapter(
        adapter_context,
        WebhookOptions.from_options(options, prefix="adapters.webhook"),
        environ=environ,
    )
    await adapter.start()
    try:
        yield adapter
    finally:
        await adapter.close()
        adapter_context.close()


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# ---------------------------------------------------------------------------------------------
# Delivery


async def test_a_call_log_arrives_as_json_with_its_write_key(
    adapter: WebhookAdapter, receiver: WebhookReceiver
) -> None:
    """One write is one POST: the call log wrapped as a call.log event, keyed by its write key."""
    log = call_log()
    await adapter.log_call(log)
    assert receiver.records == {log.write_key: {"event": EVENT, "log": log.to_json()}}
    [attempt] = receiver.attempts
    assert attempt.key == log.write_key == "conv-1:part-1:connected"
    assert attempt.status == 201
    assert attempt.headers["content-type"] == "application/json"
    assert attempt.headers["user-agent"].startswith("crmphone-webhook/")
    assert CallLog.from_json(attempt.body["log"]) == log


async def test_each_stage_is_its_own_write_of_one_call(
    adapter: WebhookAdapter, receiver: WebhookReceiver
) -> None:
    """Connect, end and wrap-up post three writes, all carrying the call's one log key."""
    for stage in (LogStage.CONNECTED, LogStage.ENDED, LogStage.WRAPPED_UP):
        await adapter.log_call(call_log(stage))
    assert list(receiver.records) == [
        "conv-1:part-1:connected",
        "conv-1:part-1:ended",
        "conv-1:part-1:wrapped_up",
    ]
    assert {record["log"]["key"] for record in receiver.records.values()} == {"conv-1:part-1"}


async def test_a_repeated_write_makes_one_record(
    adapter: WebhookAdapter, receiver: WebhookReceiver
) -> None:
    """The same write delivered twice (a retry, a restart) is stored once; both attempts succeed."""
    log = call_log(LogStage.ENDED)
    await adapter.log_call(log)
    await adapter.log_call(log)
    assert list(receiver.records) == [log.write_key]
    assert [(a.key, a.status, a.replayed) for a in receiver.attempts] == [
        (log.write_key, 201, False),
        (log.write_key, 201, True),
    ]


async def test_the_plugin_is_found_through_its_entry_point() -> None:
    """The installed distribution declares entry point "webhook" naming WebhookAdapter."""
    [plugin] = installed_plugins(names=["webhook"])
    assert (plugin.distribution, plugin.version) == ("crmphone-webhook", "0.1.0")
    assert load_adapter_class("webhook", allow={"webhook"}) is WebhookAdapter
    assert WebhookAdapter.implements("log_call")
    assert not WebhookAdapter.implements("lookup_caller")
    assert not WebhookAdapter.implements("screen_pop")


# ---------------------------------------------------------------------------------------------
# Errors


async def test_429_is_retryable_with_the_receivers_retry_after(
    adapter: WebhookAdapter, receiver: WebhookReceiver
) -> None:
    """A rate limit maps to CrmRetryableError carrying Retry-After; the retry then lands once."""
    receiver.fail_next(status=429, retry_after="7")
    log = call_log()
    with pytest.raises(CrmRetryableError) as caught:
        await adapter.log_call(log)
    assert caught.value.retry_after == 7.0
    assert "HTTP 429" in str(caught.value)
    assert receiver.records == {}
    await adapter.log_call(log)  # what the outbox does after waiting
    assert list(receiver.records) == [log.write_key]
    assert [a.status for a in receiver.attempts] == [429, 201]


async def test_503_is_retryable(adapter: WebhookAdapter, receiver: WebhookReceiver) -> None:
    """An unavailable receiver is a retryable error, without a delay when it named none."""
    receiver.fail_next(status=503)
    with pytest.raises(CrmRetryableError, match="HTTP 503") as caught:
        await adapter.log_call(call_log())
    assert caught.value.retry_after is None


async def test_400_is_permanent(adapter: WebhookAdapter, receiver: WebhookReceiver) -> None:
    """A rejected body is a permanent error naming the endpoint, the write and the status."""
    receiver.fail_next(status=400)
    log = call_log()
    with pytest.raises(CrmPermanentError) as caught:
        await adapter.log_call(log)
    message = str(caught.value)
    assert f"127.0.0.1:{receiver.port}/hook" in message
    assert log.write_key in message
    assert "HTTP 400" in message


async def test_a_key_still_in_progress_is_retryable(
    adapter: WebhookAdapter, receiver: WebhookReceiver
) -> None:
    """A second delivery while the first is still processed gets 409, which is retried later."""
    log = call_log()
    receiver.slow_next(seconds=30)
    async with running({"url": receiver.url}) as other:
        pending = asyncio.ensure_future(other.log_call(log))
        await receiver.wait_for_requests(1)
        with pytest.raises(CrmRetryableError, match="in progress"):
            await adapter.log_call(log)
        pending.cancel()
        with pytest.raises(asyncio.CancelledError):
            await pending


async def test_connection_refused_is_retryable() -> None:
    """Nobody listening is a retryable error with httpx's error chained."""
    async with running({"url": f"http://127.0.0.1:{closed_port()}/hook"}) as adapter:
        with pytest.raises(CrmRetryableError, match="cannot reach webhook") as caught:
            await adapter.log_call(call_log())
    assert isinstance(caught.value.__cause__, httpx.ConnectError)


async def test_a_slow_receiver_times_out_as_retryable(receiver: WebhookReceiver) -> None:
    """A receiver slower than the timeout is a retryable error; the write is not lost to it."""
    receiver.slow_next(seconds=30)
    async with running({"url": receiver.url, "timeout": 0.05}) as adapter:
        with pytest.raises(CrmRetryableError, match=r"did not answer within 0\.05 s") as caught:
            await adapter.log_call(call_log())
    assert isinstance(caught.value.__cause__, httpx.TimeoutException)


async def test_log_call_before_start_is_a_usage_error(receiver: WebhookReceiver) -> None:
    """Posting without start() says what to call first."""
    adapter = WebhookAdapter.from_options({"url": receiver.url}, AdapterContext(name="webhook"))
    with pytest.raises(InvalidStateError, match=r"await adapter.start\(\)"):
        await adapter.log_call(call_log())


# ---------------------------------------------------------------------------------------------
# Headers, secrets, TLS


async def test_configured_headers_are_sent_and_env_values_read(receiver: WebhookReceiver) -> None:
    """Literal header values are sent as written; env:NAME values come from the environment."""
    options = {
        "url": receiver.url,
        "headers": {"Authorization": "env:WEBHOOK_AUTHORIZATION", "X-Source": "crmphone"},
    }
    async with running(options, environ={"WEBHOOK_AUTHORIZATION": SECRET}) as adapter:
        await adapter.log_call(call_log())
    [attempt] = receiver.attempts
    assert attempt.headers["authorization"] == SECRET
    assert attempt.headers["x-source"] == "crmphone"


async def test_header_values_never_reach_logs_reprs_or_errors(
    receiver: WebhookReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    """A header's value shows up in no log line, repr or error, while the receiver gets it."""
    caplog.set_level(logging.DEBUG)
    receiver.fail_next(status=401)
    async with running({"url": receiver.url, "headers": {"Authorization": SECRET}}) as adapter:
        with pytest.raises(CrmPermanentError) as caught:
            await adapter.log_call(call_log())
        await adapter.log_call(call_log())
        shown = [repr(adapter), repr(adapter.options), str(caught.value), caplog.text]
    assert receiver.attempts[-1].headers["authorization"] == SECRET
    assert "check the credentials" in str(caught.value)
    assert "posted conv-1:part-1:connected" in caplog.text
    for text in shown:
        assert SECRET not in text


async def test_url_credentials_become_basic_auth_and_stay_unshown(
    receiver: WebhookReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    """user:password@ in the URL is sent as Basic auth; no log, repr or error shows it or the query."""
    url = receiver.url.replace("http://", "http://user:pa55word@") + "?token=q-secret"
    caplog.set_level(logging.DEBUG)
    receiver.fail_next(status=400)
    async with running({"url": url}) as adapter:
        with pytest.raises(CrmPermanentError) as caught:
            await adapter.log_call(call_log())
        await adapter.log_call(call_log())
        ours = [r.getMessage() for r in caplog.records if r.name.startswith("crmphone")]
        shown = [repr(adapter), repr(adapter.options), str(caught.value), *ours]
    assert receiver.attempts[-1].headers["authorization"] == "Basic dXNlcjpwYTU1d29yZA=="
    assert "pa55word" not in caplog.text  # not even in httpx's own request log
    assert ours
    for text in shown:
        for secret in ("pa55word", "q-secret"):
            assert secret not in text


def test_a_missing_environment_variable_is_named_without_a_value() -> None:
    """An env:NAME header whose variable is unset stops the adapter being built, naming both."""
    options = WebhookOptions.from_options(
        {"url": "https://hooks.example.com/x", "headers": {"Authorization": "env:NOT_SET_HERE"}}
    )
    with pytest.raises(ConfigError) as caught:
        WebhookAdapter(AdapterContext(name="webhook"), options, environ={})
    assert caught.value.key == "adapters.webhook.headers.Authorization"
    assert "NOT_SET_HERE" in str(caught.value)
    assert "set NOT_SET_HERE before starting crmphone" in str(caught.value)


@pytest.fixture(scope="module")
def certificate_authority() -> trustme.CA:
    """A throwaway CA that signs the receiver's certificate."""
    return trustme.CA()


@pytest.fixture
async def tls_receiver(
    certificate_authority: trustme.CA, tmp_path: Path
) -> AsyncIterator[WebhookReceiver]:
    """A receiver serving HTTPS on 127.0.0.1 with a certificate from the throwaway CA."""
    pem = tmp_path / "receiver.pem"
    certificate_authority.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(
        str(pem)
    )
    async with WebhookReceiver(tls=pem) as running_receiver:
        yield running_receiver


async def test_https_trusts_the_ca_bundle_the_context_names(
    tls_receiver: WebhookReceiver, certificate_authority: trustme.CA, tmp_path: Path
) -> None:
    """With verify set to a CA bundle path, a certificate from that CA is accepted."""
    bundle = tmp_path / "ca.pem"
    certificate_authority.cert_pem.write_to_path(str(bundle))
    async with running({"url": tls_receiver.url}, verify=str(bundle)) as adapter:
        await adapter.log_call(call_log())
    assert len(tls_receiver.records) == 1


async def test_https_verifies_certificates_by_default(tls_receiver: WebhookReceiver) -> None:
    """With the default verify, an unknown CA's certificate is refused (retryable, nothing sent)."""
    async with running({"url": tls_receiver.url}) as adapter:
        with pytest.raises(CrmRetryableError, match="cannot reach webhook"):
            await adapter.log_call(call_log())
    assert tls_receiver.records == {}


# ---------------------------------------------------------------------------------------------
# Options


def test_timeout_defaults_to_the_adapter_context() -> None:
    """Without a timeout option the context's timeout applies; with one, the option's."""
    context = AdapterContext(name="webhook", timeout=3.5)
    default = WebhookAdapter.from_options({"url": "https://hooks.example.com/x"}, context)
    assert default.timeout == 3.5
    explicit = WebhookAdapter.from_options(
        {"url": "https://hooks.example.com/x", "timeout": 2}, context
    )
    assert explicit.timeout == 2.0


@pytest.mark.parametrize(
    ("options", "key", "says"),
    [
        ({}, "adapters.crm.url", 'is missing; set url = "https://'),
        ({"url": 42}, "adapters.crm.url", "must be an http:// or https:// URL"),
        ({"url": "   "}, "adapters.crm.url", "must be an http:// or https:// URL"),
        ({"url": "ftp://files.example.com/x"}, "adapters.crm.url", "must start with https://"),
        ({"url": "hooks.example.com/x"}, "adapters.crm.url", "must start with https://"),
        ({"url": "https:///path-only"}, "adapters.crm.url", "has no host"),
        ({"uri": "https://h.example.com"}, "adapters.crm.uri", "takes url, headers, timeout"),
        ({"url": "https://h.example.com", "timeout": 0}, "adapters.crm.timeout", "positive"),
        ({"url": "https://h.example.com", "timeout": "5"}, "adapters.crm.timeout", "number"),
        ({"url": "https://h.example.com", "timeout": True}, "adapters.crm.timeout", "number"),
        ({"url": "https://h.example.com", "headers": "X"}, "adapters.crm.headers", "a table"),
        (
            {"url": "https://h.example.com", "headers": {"Bad Name": "x"}},
            "adapters.crm.headers.Bad Name",
            "not a valid HTTP header name",
        ),
        (
            {"url": "https://h.example.com", "headers": {"Idempotency-Key": "x"}},
            "adapters.crm.headers.Idempotency-Key",
            "is set by the webhook adapter itself; remove it",
        ),
        (
            {"url": "https://h.example.com", "headers": {"X-Count": 3}},
            "adapters.crm.headers.X-Count",
            "must be a string",
        ),
        (
            {"url": "https://h.example.com", "headers": {"X-Token": "env:has space"}},
            "adapters.crm.headers.X-Token",
            "does not name an environment variable",
        ),
        (
            {"url": "https://h.example.com", "headers": {"X-Two": "a\r\nInjected: b"}},
            "adapters.crm.headers.X-Two",
            "single line",
        ),
        (
            {"url": "https://u:p@h.example.com", "headers": {"authorization": "env:TOKEN"}},
            "adapters.crm.url",
            "keep one",
        ),
    ],
)
def test_bad_options_name_the_key_and_the_fix(options: dict[str, Any], key: str, says: str) -> None:
    """Every bad option is a ConfigError whose key is the option under the adapter's name."""
    with pytest.raises(ConfigError) as caught:
        WebhookAdapter.from_options(options, AdapterContext(name="crm"))
    assert caught.value.key == key
    assert says in str(caught.value)
    assert str(caught.value).startswith(f"{key}: ")


# ---------------------------------------------------------------------------------------------
# Conformance: crmphone.testing's adapter conformance suite (idempotency, retry-safety, error
# mapping, never blocking the loop, ordering) runs against the `adapter` and `receiver`
# fixtures of conftest.py in test_webhook_conformance.py.
