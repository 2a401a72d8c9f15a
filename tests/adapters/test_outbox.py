"""The durable outbox: events in, CRM work out in order, retried, dead-lettered, never twice."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import stat
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from crmphone.adapters import (
    AdapterContext,
    CrmRecord,
    LogStage,
    Outbox,
    OutboxSettings,
    OutboxStore,
    RetryPolicy,
)
from crmphone.errors import CrmPermanentError, CrmRetryableError, InvalidStateError
from crmphone.events import CallConnected, ConnectionState, ConnectionStateChanged
from crmphone.testing.recording import RecordingAdapter, fake_call

NUMBER = "+15551230001"
ALICE = CrmRecord("Contact", "003A", "Alice")
BOB = CrmRecord("Contact", "003B", "Bob")

FAST_RETRY = RetryPolicy(initial_delay=0.01, max_delay=0.05, max_attempts=5)


def settings(tmp_path: Path, **overrides: Any) -> OutboxSettings:
    values: dict[str, Any] = {"path": tmp_path / "outbox.sqlite3", "retry": FAST_RETRY}
    values.update(overrides)
    return OutboxSettings(**values)


@contextlib.asynccontextmanager
async def outbox_with(
    tmp_path: Path, adapter: RecordingAdapter | None = None, **overrides: Any
) -> AsyncIterator[tuple[Outbox, RecordingAdapter]]:
    adapter = adapter or RecordingAdapter(
        AdapterContext(name="crm", agents={"agent-1": "005X"}), records={NUMBER: [ALICE]}
    )
    async with Outbox(settings(tmp_path, **overrides), {"crm": adapter}) as outbox:
        yield outbox, adapter


async def test_one_call_flows_through_pop_and_three_log_writes(tmp_path: Path) -> None:
    """Alerting pops the matched record; connect, end and wrap-up each upsert the same log."""
    async with outbox_with(tmp_path) as (outbox, adapter):
        for event in fake_call(number=NUMBER, holds=1):
            await outbox.submit([event])
            await outbox.wait_idle(5)
        pops = adapter.of("screen_pop")
        assert len(pops) == 1
        assert pops[0].match is not None
        assert pops[0].match.primary == ALICE
        stages = [w.stage for w in adapter.writes]
        assert stages == [LogStage.CONNECTED, LogStage.ENDED, LogStage.WRAPPED_UP]
        final = adapter.writes[-1]
        assert len(adapter.logs) == 1
        assert final.record == ALICE  # the lookup's match travels with the log
        assert final.crm_user_id == "005X"
        assert final.holds == 1
        assert final.held_seconds == pytest.approx(2.0)
        assert final.duration_seconds == 42
        assert final.wrapup_code == "resolved"
        assert len({w.write_key for w in adapter.writes}) == 3


async def test_copies_of_events_make_no_second_write_even_after_a_restart(tmp_path: Path) -> None:
    """The same events submitted again (a resync, a redelivery, a restart) are refused."""
    events = fake_call(number=NUMBER)
    async with outbox_with(tmp_path) as (outbox, adapter):
        first = await outbox.submit(events)
        second = await outbox.submit(events)
        await outbox.wait_idle(5)
        assert sum(first.queued.values()) == 4  # pop + 3 log writes
        assert second.duplicates == len(events)
        writes = len(adapter.writes)
    async with outbox_with(tmp_path) as (outbox, again):
        third = await outbox.submit(events)
        await outbox.wait_idle(5)
        assert third.duplicates == len(events)
        assert again.calls == []
    assert writes >= 1


async def test_work_of_one_call_is_never_delivered_out_of_order(tmp_path: Path) -> None:
    """While the connect write fails and retries, the end waits: stages only ever go forward."""
    adapter = RecordingAdapter()
    adapter.fail_next("log_call", CrmRetryableError("busy", retry_after=0.05))
    async with outbox_with(tmp_path, adapter) as (outbox, adapter):
        await outbox.submit(fake_call(number=NUMBER))
        await outbox.wait_idle(5)
    stages = [c.log.stage for c in adapter.of("log_call") if c.log is not None]
    assert stages == sorted(stages)
    assert adapter.writes[-1].stage is LogStage.WRAPPED_UP
    # The retry found the end and wrap-up queued too and wrote the final content once.
    assert [w.stage for w in adapter.writes] == [LogStage.WRAPPED_UP]


async def test_many_calls_keep_their_own_order_under_concurrency(tmp_path: Path) -> None:
    """Twenty interleaved calls on four workers: each call's writes arrive in stage order."""
    calls = [fake_call(number=f"+1555000{i:04d}") for i in range(20)]
    interleaved = [event for group in zip(*calls, strict=True) for event in group]
    async with outbox_with(tmp_path) as (outbox, adapter):
        for start in range(0, len(interleaved), 7):
            await outbox.submit(interleaved[start : start + 7])
        assert await outbox.wait_idle(10)
    by_call: dict[str, list[LogStage]] = {}
    for write in adapter.writes:
        by_call.setdefault(write.key, []).append(write.stage)
    assert len(by_call) == 20
    for stages in by_call.values():
        assert stages == sorted(stages)
        assert stages[-1] is LogStage.WRAPPED_UP


async def test_retry_after_is_honoured(tmp_path: Path) -> None:
    """A 429's Retry-After holds the next attempt back at least that long."""
    adapter = RecordingAdapter()
    adapter.fail_next("log_call", CrmRetryableError("rate limited", retry_after=0.3))
    async with outbox_with(tmp_path, adapter) as (outbox, adapter):
        alerting, connected = fake_call(number=NUMBER)[:2]
        await outbox.submit([alerting, connected])
        attempts = await adapter.wait_for("log_call", 2, within=5)
    assert attempts[1].at - attempts[0].at >= 0.3


async def test_a_permanent_error_makes_a_dead_letter_and_the_call_goes_on(tmp_path: Path) -> None:
    """The refused write is kept for a person; the call's later writes still go through."""
    adapter = RecordingAdapter()
    adapter.fail_next("log_call", CrmPermanentError("FIELD_CUSTOM_VALIDATION_EXCEPTION"))
    async with outbox_with(tmp_path, adapter) as (outbox, adapter):
        events = fake_call(number=NUMBER)
        await outbox.submit(events[:2])  # alerting, connected
        await outbox.wait_idle(5)
        await outbox.submit(events[2:])  # ended, wrap-up
        await outbox.wait_idle(5)
        assert outbox.stats.dead_letters["crm"] == 1
    assert adapter.writes[-1].stage is LogStage.WRAPPED_UP
    store = OutboxStore(tmp_path / "outbox.sqlite3")
    try:
        (dead,) = store.items(state="dead")
        assert dead.attempts == 1
        assert "FIELD_CUSTOM_VALIDATION_EXCEPTION" in (dead.last_error or "")
        assert store.retry() == 1
        assert store.items(state="dead") == []
    finally:
        store.close()
    async with outbox_with(tmp_path) as (outbox, replay):
        assert await outbox.wait_idle(5)
    assert [w.stage for w in replay.writes] == [LogStage.WRAPPED_UP]


async def test_attempts_run_out_into_a_dead_letter(tmp_path: Path) -> None:
    """After max_attempts retryable failures the write stops being tried."""
    adapter = RecordingAdapter()
    adapter.fail_next("log_call", *[CrmRetryableError("503") for _ in range(3)])
    policy = RetryPolicy(initial_delay=0.01, max_delay=0.02, max_attempts=3)
    async with outbox_with(tmp_path, adapter, retry=policy) as (outbox, adapter):
        await outbox.submit(fake_call(number=NUMBER)[:2])
        await adapter.wait_for("log_call", 3)
        await outbox.wait_idle(5)
        assert outbox.stats.retries["crm"] == 2
        assert outbox.stats.dead_letters["crm"] == 1
        assert await outbox.depth("crm") == 0
    assert adapter.writes == []


async def test_an_adapter_bug_is_retried_and_logged_as_such(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A foreign exception from a hook counts as retryable and is reported as unmapped."""
    adapter = RecordingAdapter()
    adapter.fail_next("log_call", KeyError("Id"))
    with caplog.at_level(logging.ERROR, "crmphone.adapters.outbox"):
        async with outbox_with(tmp_path, adapter) as (outbox, adapter):
            await outbox.submit(fake_call(number=NUMBER)[:2])
            await outbox.wait_idle(5)
    assert len(adapter.writes) == 1
    assert "not a crmphone CRM error" in caplog.text


async def test_a_hung_hook_times_out_and_is_retried(tmp_path: Path) -> None:
    """A hook that never returns counts as a failed attempt after hook_timeout."""
    adapter = RecordingAdapter()
    release = adapter.stall("log_call")
    async with outbox_with(tmp_path, adapter, hook_timeout=0.1) as (outbox, adapter):
        await outbox.submit(fake_call(number=NUMBER)[:2])
        await adapter.wait_for("log_call", 2, within=5)
        release.set()
        await outbox.wait_idle(5)
        assert outbox.stats.retries["crm"] >= 1
    assert len(adapter.writes) == 1


async def test_a_stalled_crm_never_slows_submit(tmp_path: Path) -> None:
    """While every hook hangs, events keep being committed at full speed."""
    adapter = RecordingAdapter()
    adapter.stall("lookup_caller")
    adapter.stall("log_call")
    async with outbox_with(tmp_path, adapter, drain_timeout=0.1) as (outbox, adapter):
        started = time.monotonic()
        for _ in range(50):
            await outbox.submit(fake_call(number=NUMBER))
        elapsed = time.monotonic() - started
        assert await outbox.depth("crm") == 50 * 4
    # Committing 250 events must not wait on a CRM hook (each hangs forever).
    assert elapsed < 5.0


async def test_an_expired_pop_is_skipped_but_the_caller_is_still_linked(tmp_path: Path) -> None:
    """A pop that comes too late is not shown; the lookup still links the log."""
    adapter = RecordingAdapter(records={NUMBER: [ALICE, BOB]})
    adapter.fail_next("lookup_caller", CrmRetryableError("slow", retry_after=0.2))
    async with outbox_with(tmp_path, adapter, pop_ttl=0.1) as (outbox, adapter):
        await outbox.submit(fake_call(number=NUMBER)[:2])
        await outbox.wait_idle(5)
        assert outbox.stats.pops_expired["crm"] == 1
    assert adapter.of("screen_pop") == []
    assert adapter.writes[-1].record == ALICE  # several matches: logged once, to the primary


async def test_a_click_to_dial_record_is_what_the_log_links_to(tmp_path: Path) -> None:
    """The record a dial came from wins over the lookup's match."""
    events = fake_call(number=NUMBER)
    async with outbox_with(tmp_path) as (outbox, adapter):
        await outbox.link_record("crm", events[0].conversation_id, BOB)
        await outbox.submit(events)
        await outbox.wait_idle(5)
    assert {w.record for w in adapter.writes} == {BOB}


async def test_a_connect_for_a_call_never_seen_alerting_is_an_anomaly(tmp_path: Path) -> None:
    """No log can be written from a lone connect: it is reported, and makes no work."""
    _, connected, *_ = fake_call(number=NUMBER)
    assert isinstance(connected, CallConnected)
    async with outbox_with(tmp_path) as (outbox, _adapter):
        result = await outbox.submit([connected])
        assert len(result.anomalies) == 1
        assert "no alerting" in result.anomalies[0]
        assert await outbox.depth("crm") == 0


async def test_a_missed_call_is_logged_at_its_end(tmp_path: Path) -> None:
    """Alerting then ended, never connected: one log, marked missed."""
    async with outbox_with(tmp_path) as (outbox, adapter):
        await outbox.submit(fake_call(number=NUMBER, answered=False))
        await outbox.wait_idle(5)
    (write,) = adapter.writes
    assert write.missed
    assert not write.answered
    assert write.stage is LogStage.ENDED


async def test_a_lagging_status_hook_gets_each_agents_latest_state(tmp_path: Path) -> None:
    """A stalled status hook then gets the latest state of every agent; older ones collapse."""
    adapter = RecordingAdapter()
    release = adapter.stall("on_connection_event")
    states = [ConnectionState.ESTABLISHING, ConnectionState.PERSISTED]
    async with outbox_with(tmp_path, adapter) as (outbox, adapter):
        for index in range(10):
            for agent in ("agent-1", "agent-2", "agent-3"):
                outbox.publish_status(
                    ConnectionStateChanged(
                        agent_id=agent,
                        at=datetime.now(UTC),
                        state=states[index % 2],
                        previous=states[(index + 1) % 2],
                    )
                )
            await asyncio.sleep(0)
        release.set()
        seen = await adapter.wait_for("on_connection_event", 4)
        await asyncio.sleep(0.05)
    seen = adapter.of("on_connection_event")
    # The one in the hook when it stalled, then the last state of each of the three agents.
    assert len(seen) == 4
    latest = [call.event for call in seen[1:]]
    assert [e.agent_id for e in latest if isinstance(e, ConnectionStateChanged)] == [
        "agent-1",
        "agent-2",
        "agent-3",
    ]
    assert all(
        isinstance(e, ConnectionStateChanged) and e.state is ConnectionState.PERSISTED
        for e in latest
    )


async def test_the_status_backlog_is_bounded(tmp_path: Path) -> None:
    """Beyond ``status_backlog`` waiting events, the oldest agent's is dropped."""
    adapter = RecordingAdapter()
    release = adapter.stall("on_connection_event")
    async with outbox_with(tmp_path, adapter, status_backlog=3) as (outbox, adapter):
        for index in range(6):
            outbox.publish_status(
                ConnectionStateChanged(
                    agent_id=f"agent-{index}",
                    at=datetime.now(UTC),
                    state=ConnectionState.PERSISTED,
                    previous=ConnectionState.IDLE,
                )
            )
            await asyncio.sleep(0)
        release.set()
        await adapter.wait_for("on_connection_event", 4)
        await asyncio.sleep(0.05)
    agents = [c.event.agent_id for c in adapter.of("on_connection_event") if c.event is not None]
    assert agents == ["agent-0", "agent-3", "agent-4", "agent-5"]


async def test_submit_outside_the_context_is_refused(tmp_path: Path) -> None:
    """An outbox that is not open says so instead of losing the events."""
    outbox = Outbox(settings(tmp_path), {"crm": RecordingAdapter()})
    with pytest.raises(InvalidStateError, match="not open"):
        await outbox.submit(fake_call())


def test_the_backoff_grows_with_jitter_and_honours_retry_after() -> None:
    """Equal jitter inside the ceiling; Retry-After as a floor; dead letter at the limits."""
    policy = RetryPolicy(initial_delay=1.0, max_delay=60.0, max_attempts=10, max_age=3600.0)
    rng = random.Random(7)
    for failures in range(1, 9):
        delay = policy.next_delay(
            failures=failures, age=0.0, retry_after=None, permanent=False, rng=rng
        )
        ceiling = min(60.0, 2.0 ** (failures - 1))
        assert delay is not None
        assert ceiling / 2 <= delay <= ceiling
    assert (
        policy.next_delay(failures=1, age=0.0, retry_after=30.0, permanent=False, rng=rng) == 30.0
    )
    assert (
        policy.next_delay(failures=10, age=0.0, retry_after=None, permanent=False, rng=rng) is None
    )
    assert policy.next_delay(failures=1, age=0.0, retry_after=None, permanent=True, rng=rng) is None
    assert (
        policy.next_delay(failures=2, age=3599.5, retry_after=None, permanent=False, rng=rng)
        is None
    )


def test_the_default_policy_rides_out_an_hour_long_outage() -> None:
    """With the defaults, a write failing for an hour is still being retried after it."""
    policy = RetryPolicy()
    rng = random.Random(1)
    elapsed, failures = 0.0, 0
    while elapsed < 3600.0:
        failures += 1
        delay = policy.next_delay(
            failures=failures, age=elapsed, retry_after=None, permanent=False, rng=rng
        )
        assert delay is not None, f"dead after {failures} attempts, {elapsed:.0f} s"
        elapsed += delay


def test_adapter_context_validates_its_limits() -> None:
    """A context with no threads or no timeout is a configuration error."""
    with pytest.raises(Exception, match="threads"):
        AdapterContext(name="x", threads=0)


async def test_a_dead_letter_retried_from_another_process_is_delivered_while_running(
    tmp_path: Path,
) -> None:
    """`crmphone outbox retry` on a running connector: the idle worker finds the item."""
    adapter = RecordingAdapter()
    adapter.fail_next("log_call", CrmPermanentError("400"))
    async with outbox_with(tmp_path, adapter) as (outbox, adapter):
        await outbox.submit(fake_call(number=NUMBER)[:2])
        await adapter.wait_for("log_call", 1)
        await outbox.wait_idle(5)
        other = OutboxStore(tmp_path / "outbox.sqlite3")  # as the CLI opens it
        try:
            assert other.retry() == 1
        finally:
            other.close()
        await adapter.wait_for("log_call", 2, within=5)
        assert await outbox.wait_idle(5)
    assert len(adapter.writes) == 1


class BatchingAdapter(RecordingAdapter):
    """A recording adapter with a bulk write: records each batch; ``bad`` keys fail alone."""

    max_batch = 50

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[list[str]] = []
        self.bad: dict[str, Exception] = {}
        self.gate = asyncio.Event()
        self.gate.set()
        self.whole_failures: list[Exception] = []

    async def log_calls(self, logs: Any) -> list[Exception | None]:
        await self.gate.wait()
        self.batches.append([log.key for log in logs])
        if self.whole_failures:
            raise self.whole_failures.pop()
        outcomes: list[Exception | None] = []
        for log in logs:
            failure = self.bad.pop(log.key, None)
            if failure is None:
                self.logs[log.key] = log
                self.writes.append(log)
            outcomes.append(failure)
        self.changed.set()
        return outcomes


async def test_a_burst_goes_out_in_few_full_batches_each_log_once(tmp_path: Path) -> None:
    """While a batch is in flight the next fills up: 300 calls take a handful of requests,
    none over max_batch, each call's log written once with its final content."""
    adapter = BatchingAdapter()
    async with outbox_with(tmp_path, adapter, concurrency=2) as (outbox, _):
        adapter.gate.clear()
        await outbox.submit(fake_call(number=NUMBER))  # its batch waits at the gate
        await asyncio.sleep(0.05)
        calls = [fake_call(number=NUMBER) for _ in range(300)]
        for events in calls:
            await outbox.submit(events)
        adapter.gate.set()
        assert await outbox.wait_idle(10)
    assert len(adapter.logs) == 301
    assert all(len(batch) <= BatchingAdapter.max_batch for batch in adapter.batches)
    # The held-back writes of 300 calls (connect + end + wrap-up each, coalesced per call).
    assert len(adapter.batches) <= 12, [len(b) for b in adapter.batches]
    assert all(log.stage is LogStage.WRAPPED_UP for log in adapter.logs.values())
    for batch in adapter.batches:
        assert len(batch) == len(set(batch))  # never two writes of one call in one request


async def test_one_bad_log_in_a_batch_fails_alone(tmp_path: Path) -> None:
    """A record the CRM refuses is retried (or dead-lettered) on its own; the rest complete."""
    adapter = BatchingAdapter()
    async with outbox_with(tmp_path, adapter) as (outbox, _):
        first, second, third = (fake_call(number=NUMBER) for _ in range(3))
        adapter.gate.clear()
        for events in (first, second, third):
            await outbox.submit(events)
        key_of = {
            events[0].conversation_id: f"{events[0].conversation_id}:{events[0].participant_id}"
            for events in (first, second, third)
        }
        adapter.bad[key_of[second[0].conversation_id]] = CrmRetryableError("locked row")
        adapter.bad[key_of[third[0].conversation_id]] = CrmPermanentError("bad field")
        adapter.gate.set()
        await outbox.wait_idle(5)
        dead = await outbox._read(lambda store: store.items(state="dead"))
    assert key_of[first[0].conversation_id] in adapter.logs
    assert key_of[second[0].conversation_id] in adapter.logs  # written on its retry
    assert key_of[third[0].conversation_id] not in adapter.logs
    assert {item.log_key for item in dead} == {key_of[third[0].conversation_id]}
    assert outbox.stats.retries["crm"] >= 1


async def test_a_failed_batch_request_retries_every_log_in_it(tmp_path: Path) -> None:
    """A request that failed as a whole (503) counts against each log, and each is retried."""
    adapter = BatchingAdapter()
    adapter.whole_failures.append(CrmRetryableError("503 from the CRM", retry_after=0.01))
    async with outbox_with(tmp_path, adapter) as (outbox, _):
        calls = [fake_call(number=NUMBER) for _ in range(5)]
        for events in calls:
            await outbox.submit(events)
        assert await outbox.wait_idle(5)
    assert len(adapter.logs) == 5
    assert len(adapter.batches) >= 2


async def test_an_adapters_memory_survives_a_restart_in_the_outbox_file(tmp_path: Path) -> None:
    """What an adapter keeps in context.memory while an outbox drives it is there after a
    restart; outside an outbox it has a volatile memory of its own."""
    adapter = RecordingAdapter()
    outside = adapter.context.memory
    async with outbox_with(tmp_path, adapter):
        await adapter.context.memory.set("ticket:conv-1", "4711")
        assert await adapter.context.memory.get("ticket:conv-1") == "4711"
    assert adapter.context.memory is outside  # given back when the outbox closed
    assert await outside.get("ticket:conv-1") is None
    again = RecordingAdapter()
    async with outbox_with(tmp_path, again):
        assert await again.context.memory.get("ticket:conv-1") == "4711"
        assert await again.context.memory.get("ticket:conv-2") is None


def test_an_in_memory_store_makes_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite's ``:memory:`` database has no file: the store creates none (not even one named
    ``:memory:`` in the working directory) and works."""
    monkeypatch.chdir(tmp_path)
    store = OutboxStore(":memory:")
    try:
        store.set_meta("key", "value")
        assert store.meta("key") == "value"
    finally:
        store.close()
    assert list(tmp_path.iterdir()) == []


def test_a_file_store_is_private_to_its_owner(tmp_path: Path) -> None:
    """The outbox's file holds call data: it is created readable by its owner only."""
    path = tmp_path / "outbox.sqlite3"
    OutboxStore(path).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
