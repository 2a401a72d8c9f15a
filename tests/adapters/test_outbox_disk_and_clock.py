"""The outbox when its disk stops taking writes and when the wall clock jumps: nothing lost,
nothing written twice, nothing stuck."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest

from crmphone.adapters import AdapterContext, LogStage, Outbox, OutboxSettings, RetryPolicy
from crmphone.clock import ClockJumpDetector
from crmphone.errors import CrmRetryableError, StorageError
from crmphone.testing.disk import set_outbox_read_only
from crmphone.testing.recording import RecordingAdapter, fake_call

pytestmark = pytest.mark.timeout(30)

FAST = RetryPolicy(initial_delay=0.05, max_delay=0.2, max_attempts=20, max_age=600.0)


def outbox_for(tmp_path: Path, adapter: RecordingAdapter, **options: object) -> Outbox:
    settings = OutboxSettings(
        path=tmp_path / "outbox.sqlite3", retry=FAST, storage_retry=0.05, pop_ttl=30.0
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


async def test_a_write_done_while_the_disk_refused_to_record_it_goes_again_under_its_key(
    tmp_path: Path,
) -> None:
    """A CRM write lands but cannot be marked done: it is sent again, same key and content,
    once the disk is back (an upsert to the CRM), and deliveries do not spin meanwhile."""
    adapter = RecordingAdapter(AdapterContext(name="crm"))
    release = adapter.stall("log_call")
    async with outbox_for(tmp_path, adapter) as outbox:
        events = fake_call(number="+15550009999")
        await outbox.submit(events)
        await adapter.wait_for("log_call", 1)
        await set_outbox_read_only(outbox, True)
        release.set()
        await asyncio.sleep(0.5)
        attempts_while_refused = len(adapter.of("log_call"))
        assert attempts_while_refused <= 2  # paused, not a loop hammering the CRM
        await set_outbox_read_only(outbox, False)
        assert await outbox.wait_idle(5)
    keys = [w.write_key for w in adapter.writes]
    (key,) = set(keys)  # the call was submitted whole: one write, of its last stage
    assert key.endswith(":wrapped_up")
    assert len(keys) == 2  # landed while the disk refused, so sent once more when it was back
    assert adapter.writes[0] == adapter.writes[1]


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
