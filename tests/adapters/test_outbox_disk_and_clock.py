"""The outbox when its disk stops taking writes and when the wall clock jumps: nothing lost,
nothing written twice, nothing stuck."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest

from crmphone.adapters import AdapterContext, CallLog, LogStage, Outbox, OutboxSettings, RetryPolicy
from crmphone.clock import ClockJumpDetector
from crmphone.errors import CrmRetryableError, StorageError
from crmphone.testing.disk import set_outbox_read_only
from crmphone.testing.recording import RecordingAdapter, fake_call

pytestmark = pytest.mark.timeout(30)

FAST = RetryPolicy(initial_delay=0.05, max_delay=0.2, max_attempts=20, max_age=600.0)


def outbox_for(
    tmp_path: Path, adapter: RecordingAdapter, drain_timeout: float = 10.0, **options: object
) -> Outbox:
    settings = OutboxSettings(
        path=tmp_path / "outbox.sqlite3",
        retry=FAST,
        storage_retry=0.05,
        pop_ttl=30.0,
        drain_timeout=drain_timeout,
    )
    return Outbox(settings, {"crm": adapter}, **options)  # type: ignore[arg-type]


def test_a_jump_is_reported_only_beyond_the_threshold() -> None:
    """Both clocks moving together is no jump; the wall moving 10 s more than monotonic is."""
    detector = ClockJumpDetector(threshold=5.0)
    assert detector.observe(100.0, 1_000.0) is None
    assert detector.observe(101.0, 1_001.2) is None  # NTP slewing: well under the threshold
    assert detector.observe(102.0, 1_012.2) == pytest.approx(10.0)
    assert detector.observe(103.0, 10.0) == pytest.approx(-1_003.2)


async def test_a_read_only_disk_holds_events_and_loses_none(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Submits are refused with StorageError while the disk refuses writes, said once; resubmitted
    afterwards, every call is logged to its last stage, each stage once."""
    adapter = RecordingAdapter(AdapterContext(name="crm"))
    calls = [fake_call(number=f"+1555000{index:04d}") for index in range(4)]
    async with outbox_for(tmp_path, adapter) as outbox:
        await outbox.submit(calls[0])
        assert await outbox.wait_idle(5)
        await set_outbox_read_only(outbox, True)
        with caplog.at_level(logging.WARNING, logger="crmphone.adapters.outbox"):
            for call in calls[1:]:
                with pytest.raises(StorageError, match="cannot write to"):
                    await outbox.submit(call)
            assert outbox.storage_error is not None
            assert "readonly" in outbox.storage_error
            await set_outbox_read_only(outbox, False)
            async with asyncio.timeout(5):
                await outbox.wait_writable()
            for call in calls[1:]:
                await outbox.submit(call)
            assert await outbox.wait_idle(5)
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1
        assert "read-only or full" in errors[0].getMessage()
        assert any("again after" in r.getMessage() for r in caplog.records)
    assert outbox.storage_error is None
    assert len(adapter.logs) == 4
    assert all(log.stage is LogStage.WRAPPED_UP for log in adapter.logs.values())
    # A call submitted whole is one write of its last stage; none of them twice.
    assert len({w.write_key for w in adapter.writes}) == len(adapter.writes)


async def test_a_write_done_while_the_disk_refused_to_record_it_is_recorded_once_it_is_back(
    tmp_path: Path,
) -> None:
    """A CRM write lands but cannot be marked done: the outbox holds the mark until the disk is
    back and records it then, so the CRM is not written a second time, and nothing spins."""
    adapter = RecordingAdapter(AdapterContext(name="crm"))
    release = adapter.stall("log_call")
    async with outbox_for(tmp_path, adapter) as outbox:
        events = fake_call(number="+15550009999")
        await outbox.submit(events)
        await adapter.wait_for("log_call", 1)
        await set_outbox_read_only(outbox, True)
        release.set()
        await asyncio.sleep(0.5)
        assert len(adapter.of("log_call")) == 1  # held, not a loop hammering the CRM
        assert outbox.storage_error is not None
        await set_outbox_read_only(outbox, False)
        assert await outbox.wait_idle(5)
        assert await outbox.depth("crm") == 0
    keys = [w.write_key for w in adapter.writes]
    assert len(keys) == 1
    assert keys[0].endswith(":wrapped_up")


class CreatesThenRemembers(RecordingAdapter):
    """A CRM without an upsert (like Zendesk's call records): the adapter makes a record, then
    remembers its id so a retry finds it instead of making another."""

    def __init__(self, context: AdapterContext) -> None:
        super().__init__(context)
        self.created: list[str] = []  # the memory key of each record made
        self.made = asyncio.Event()
        self.go_on = asyncio.Event()

    async def log_call(self, log: CallLog) -> None:
        key = f"record:{log.key}"
        if await self.context.memory.get(key) is not None:
            return
        self.created.append(key)
        self.made.set()
        await self.go_on.wait()
        await self.context.memory.set(key, f"id-{len(self.created)}")


async def test_an_id_remembered_while_the_disk_refuses_writes_is_held_then_stored(
    tmp_path: Path,
) -> None:
    """The adapter remembers the id of the record it just made while the disk refuses writes:
    the memory takes it (no error, so no retry making a second record), answers it at once, and
    stores it when the disk is back, so it is there after a restart."""
    adapter = CreatesThenRemembers(AdapterContext(name="crm"))
    async with outbox_for(tmp_path, adapter) as outbox:
        await outbox.submit(fake_call(number="+15550008888"))
        async with asyncio.timeout(5):
            await adapter.made.wait()
        (key,) = adapter.created
        await set_outbox_read_only(outbox, True)
        adapter.go_on.set()
        await asyncio.sleep(0.3)
        assert await adapter.context.memory.get(key) == "id-1"  # held, answered from memory
        await adapter.context.memory.set("other", "newer")  # waits behind the held one
        await set_outbox_read_only(outbox, False)
        assert await outbox.wait_idle(5)
        assert await outbox.depth("crm") == 0
    assert adapter.created == [key]
    async with outbox_for(tmp_path, adapter) as outbox:
        assert await adapter.context.memory.get(key) == "id-1"
        assert await adapter.context.memory.get("other") == "newer"


async def test_a_stop_while_the_disk_refuses_says_what_memory_was_never_stored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Stopping before the disk takes writes again cannot store a held id: the stop says so,
    and the delivery stays queued for the next start."""
    adapter = CreatesThenRemembers(AdapterContext(name="crm"))
    async with outbox_for(tmp_path, adapter, drain_timeout=0.2) as outbox:
        await outbox.submit(fake_call(number="+15550007777"))
        async with asyncio.timeout(5):
            await adapter.made.wait()
        await set_outbox_read_only(outbox, True)
        adapter.go_on.set()
        await asyncio.sleep(0.2)
        queued = await outbox.depth("crm")
        caplog.set_level(logging.ERROR, logger="crmphone.adapters.outbox")
    held = [r.getMessage() for r in caplog.records if "never stored" in r.getMessage()]
    assert held == [
        (
            "outbox: 1 value(s) adapter crm remembered were never stored (the disk refused "
            "writes until the stop); a delivery made again at the next start may write its CRM "
            "record a second time"
        )
    ]
    again = CreatesThenRemembers(AdapterContext(name="crm"))  # holds the delivery: depth is stable
    async with outbox_for(tmp_path, again, drain_timeout=0.2) as outbox:
        assert queued > 0
        assert await outbox.depth("crm") == queued


class JumpingClock:
    """time.time plus an offset the test moves."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@pytest.mark.parametrize("jump", [-7_200.0, 2 * 86_400.0])
async def test_a_wall_clock_jump_neither_delays_retries_nor_expires_work(
    tmp_path: Path, jump: float, caplog: pytest.LogCaptureFixture
) -> None:
    """Back two hours or forward two days, with a retry pending: it is still retried within
    a second or two, delivered (not a dead letter for its age), and the jump is logged."""
    adapter = RecordingAdapter(AdapterContext(name="crm"))
    clock = JumpingClock()
    adapter.fail_next("log_call", CrmRetryableError("down", retry_after=1.5))
    async with outbox_for(tmp_path, adapter, clock=clock) as outbox:
        with caplog.at_level(logging.WARNING, logger="crmphone.adapters.outbox"):
            await outbox.submit(fake_call(number="+15550001111"))
            await adapter.wait_for("log_call", 1)
            clock.offset = jump
            assert await outbox.wait_idle(6)
        assert outbox.stats.clock_jumps == 1
        assert outbox.stats.dead_letters["crm"] == 0
    assert any("wall clock jumped" in r.getMessage() for r in caplog.records)
    assert [w.stage for w in adapter.logs.values()] == [LogStage.WRAPPED_UP]
