"""The conformance suite passes a correct adapter and catches broken ones.

The correct adapter is :class:`RecordingAdapter`, whose "CRM" is its own ``logs`` (an upsert by
log key). The broken ones break one rule each; each check that must catch them is called directly.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence

import pytest

from crmphone.adapters import CallLog, CrmRecord, LogStage
from crmphone.errors import CrmPermanentError, CrmRetryableError
from crmphone.testing import AdapterConformance, ConformanceBackend
from crmphone.testing.conformance import FailureKind
from crmphone.testing.recording import RecordingAdapter

NUMBER = "+15551230001"
RETRY_AFTER = 0.01


class MemoryCrm(ConformanceBackend):
    """The CRM of a RecordingAdapter: what it stored, failures through fail_next, stalls."""

    def __init__(self, adapter: RecordingAdapter) -> None:
        self.adapter = adapter

    def stored(self) -> Iterable[CallLog]:
        """Every record the CRM holds."""
        return self.adapter.logs.values()

    def records(self, log_key: str) -> int:
        """Records whose key is ``log_key``."""
        return sum(1 for log in self.stored() if log.key == log_key)

    def fail_next(self, kind: FailureKind, count: int = 1) -> float | None:
        """The next log_call calls raise before anything is stored."""
        if kind == "retryable":
            errors = [CrmRetryableError("429 injected", retry_after=RETRY_AFTER)] * count
            self.adapter.fail_next("log_call", *errors)
            return RETRY_AFTER
        self.adapter.fail_next("log_call", *[CrmPermanentError("422 injected")] * count)
        return None

    def stall(self, seconds: float) -> None:
        """log_call calls wait ``seconds`` from now (without blocking the loop)."""
        release = self.adapter.stall("log_call")
        asyncio.get_running_loop().call_later(seconds, release.set)

    def last_written(self, log_key: str) -> LogStage | None:
        """The stage of the stored log."""
        found = [log.stage for log in self.stored() if log.key == log_key]
        return found[-1] if found else None

    def written_stages(self, log_key: str) -> Sequence[LogStage] | None:
        """The stages of the successful writes, in order."""
        return [log.stage for log in self.adapter.writes if log.key == log_key]


@pytest.fixture
def adapter() -> RecordingAdapter:
    """A RecordingAdapter that knows the suite's caller (so lookups and pops have a match)."""
    return RecordingAdapter(records={NUMBER: [CrmRecord("Contact", "003A", "Alice")]})


@pytest.fixture
def backend(adapter: RecordingAdapter) -> MemoryCrm:
    """The adapter's in-memory CRM."""
    return MemoryCrm(adapter)


class TestRecordingAdapterConformance(AdapterConformance):
    """The whole suite, against RecordingAdapter."""

    customer_number = NUMBER


# ---------------------------------------------------------------------------------------------
# Broken adapters, one rule each


class AppendingAdapter(RecordingAdapter):
    """Broken: inserts a record per write instead of upserting by the log's key."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[CallLog] = []

    async def log_call(self, log: CallLog) -> None:
        """Append a record."""
        await super().log_call(log)
        self.rows.append(log)


class AppendingCrm(MemoryCrm):
    """The CRM of an AppendingAdapter: every row it inserted."""

    adapter: AppendingAdapter

    def stored(self) -> Iterable[CallLog]:
        """Every row, copies included."""
        return self.adapter.rows


class LeakyCrm(MemoryCrm):
    """A CRM whose client library's errors the adapter lets escape unmapped."""

    def fail_next(self, kind: FailureKind, count: int = 1) -> float | None:
        """The next writes raise the client library's own exception."""
        self.adapter.fail_next("log_call", *[ValueError("HTTP 422 from client lib")] * count)
        return None


class BlockingAdapter(RecordingAdapter):
    """Broken: waits for a slow CRM with a blocking call on the event loop."""

    block = 0.0

    async def log_call(self, log: CallLog) -> None:
        """Block the loop for ``block`` seconds, then store."""
        time.sleep(self.block)  # noqa: ASYNC251 - the bug this adapter exists to show
        self.block = 0.0
        await super().log_call(log)


class BlockingCrm(MemoryCrm):
    """The CRM of a BlockingAdapter: a stall makes the adapter block."""

    adapter: BlockingAdapter

    def stall(self, seconds: float) -> None:
        """The next write blocks for ``seconds``."""
        self.adapter.block = seconds


async def test_a_non_idempotent_adapter_fails_the_idempotency_check() -> None:
    """An adapter that inserts on every write is caught after its second write of one log."""
    adapter = AppendingAdapter()
    with pytest.raises(AssertionError, match=r"holds 2 record\(s\) .* same write was repeated"):
        await AdapterConformance().test_log_call_is_idempotent(adapter, AppendingCrm(adapter))


async def test_a_non_idempotent_adapter_fails_the_retry_check() -> None:
    """Writing a create again after a failure must not make a second record either."""
    adapter = AppendingAdapter()
    with pytest.raises(AssertionError, match=r"holds 2 record\(s\) .* ENDED write was retried"):
        await AdapterConformance().test_a_retryable_failure_is_safe_to_retry(
            adapter, AppendingCrm(adapter)
        )


async def test_an_unmapped_client_error_fails_the_error_mapping_check() -> None:
    """A foreign exception escaping log_call is named as such."""
    adapter = RecordingAdapter()
    with pytest.raises(AssertionError, match=r"a foreign builtins\.ValueError escaped"):
        await AdapterConformance().test_errors_map_to_crmphone_errors(adapter, LeakyCrm(adapter))


async def test_a_lost_retry_after_fails_the_retry_check() -> None:
    """A retryable error that drops the CRM's Retry-After is caught."""

    class Forgetful(MemoryCrm):
        def fail_next(self, kind: FailureKind, count: int = 1) -> float | None:
            self.adapter.fail_next("log_call", CrmRetryableError("429"))  # retry_after lost
            return 7.0

    adapter = RecordingAdapter()
    with pytest.raises(AssertionError, match="announced Retry-After 7 s"):
        await AdapterConformance().test_a_retryable_failure_is_safe_to_retry(
            adapter, Forgetful(adapter)
        )


async def test_a_blocking_adapter_fails_the_event_loop_check() -> None:
    """An adapter that sleeps on the loop while the CRM is slow shows the whole stall."""
    adapter = BlockingAdapter()
    with pytest.raises(AssertionError, match=r"the event loop stalled for 0\.[45]\d+ s"):
        await AdapterConformance().test_a_slow_crm_never_blocks_the_event_loop(
            adapter, BlockingCrm(adapter)
        )
