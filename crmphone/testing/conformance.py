"""The adapter conformance suite: the checks a plugin runs to prove it keeps the adapter contract.

:class:`AdapterConformance` holds one check per rule of :mod:`crmphone.adapters.base`:
idempotency, retry-safety, error mapping, never blocking the event loop, and ordering through
crmphone's real durable outbox; plus caller lookup, screen pop and batched writes
(:meth:`~crmphone.adapters.Adapter.log_calls`) when the adapter implements them.
A plugin's test module subclasses it under a ``Test`` name and provides two pytest fixtures:

``adapter``
    A **started** instance of the plugin's adapter, aimed at the CRM stand-in (an emulator, a
    receiver); the fixture closes it afterwards. The suite never starts or closes it.
``backend``
    A :class:`ConformanceBackend` over the same CRM stand-in: it counts records, injects
    failures and slows the CRM down, so the checks can see what the adapter did to the CRM.

.. code-block:: python

    import pytest
    from crmphone.testing import AdapterConformance, ConformanceBackend

    @pytest.fixture
    def backend(emulator) -> ConformanceBackend:
        return EmulatorBackend(emulator)  # your class, over your CRM stand-in

    class TestMyAdapterConformance(AdapterConformance):
        '''crmphone's adapter conformance suite, run against MyAdapter.'''

The fixtures may live in the module, the class or a ``conftest.py`` (the checks take them as
arguments, so every check gets a fresh adapter and backend). pytest-asyncio must run the async
checks: ``asyncio_mode = "auto"``, or mark the subclass with ``pytest.mark.asyncio``.

Class attributes tune the checks to a CRM stand-in (:attr:`AdapterConformance.customer_number`,
:attr:`~AdapterConformance.crm_user_id`, :attr:`~AdapterConformance.stall_seconds`, …); the
limits they check against (the largest event-loop stall allowed: 0.1 s) are fixed.
Each check is also a plain coroutine method: ``await AdapterConformance().test_…(adapter, backend)``
runs one outside pytest's collection and raises :class:`AssertionError` when the adapter breaks it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from pathlib import Path
from typing import ClassVar, Literal, NoReturn, Protocol, TypeVar

from crmphone.adapters import (
    Adapter,
    CallerMatch,
    CallLog,
    CrmRecord,
    LogStage,
    Outbox,
    OutboxSettings,
    RetryPolicy,
)
from crmphone.errors import CrmPermanentError, CrmphoneError, CrmRetryableError
from crmphone.events import CallAlerting, CallEvent
from crmphone.testing.recording import fake_call

__all__ = ["AdapterConformance", "ConformanceBackend", "FailureKind"]

#: What :meth:`ConformanceBackend.fail_next` makes the CRM do: ``"retryable"`` is a failure that
#: may pass later (429 or 503, ideally with ``Retry-After``); ``"permanent"`` one that will not
#: (400, 422: the CRM refuses the write as it is).
FailureKind = Literal["retryable", "permanent"]

_E = TypeVar("_E", bound=BaseException)

#: The largest event-loop stall allowed while the CRM answers slowly. A coroutine that blocks the
#: loop for a CRM round trip shows the whole stall here; a well-behaved adapter's largest stall is
#: a few milliseconds, so 0.1 s leaves room for a loaded test machine.
MAX_LOOP_STALL = 0.1
_TICK = 0.005


class ConformanceBackend(Protocol):
    """What the suite asks of the CRM stand-in the adapter under test talks to.

    Implement it over your emulator or receiver. :meth:`records`, :meth:`fail_next` and
    :meth:`stall` are required; :meth:`last_written` and :meth:`written_stages` are optional:
    subclass this protocol to inherit their defaults ("cannot tell"), and the checks that need
    them check less.
    """

    def records(self, log_key: str) -> int:
        """How many CRM records hold the call log with key ``log_key`` (:attr:`CallLog.key`).

        A correct adapter leaves exactly one however often a log is written; a repeated or
        retried write that made a second record must show up here as more than one.
        """
        ...

    def fail_next(self, kind: FailureKind, count: int = 1) -> float | None:
        """Make the CRM refuse the next ``count`` requests with a ``kind`` failure.

        The failure must happen before the CRM applies anything (as a rate limiter or a
        validation rule does). Return the ``Retry-After`` (seconds) the CRM announces with a
        retryable failure, or None when it announces none (always None for ``"permanent"``).
        """
        ...

    def stall(self, seconds: float) -> None:
        """Make the CRM take ``seconds`` to answer its next request (then answer normally)."""
        ...

    def last_written(self, log_key: str) -> LogStage | None:
        """The stage of the content the call's record holds now (the last write that landed),
        or None when the backend cannot tell."""
        return None

    def written_stages(self, log_key: str) -> Sequence[LogStage] | None:
        """The stages of the writes the CRM applied to the call's record, in the order it
        applied them, or None when the backend cannot tell."""
        return None


class AdapterConformance:
    """The conformance checks; subclass it as ``Test…`` and provide ``adapter`` and ``backend``.

    Not collected itself (its name has no ``Test`` prefix). Override the class attributes to fit
    your CRM stand-in, and :meth:`call_events` to change the calls the checks log.
    """

    #: The caller's number in the checks' calls (make your emulator know it to test lookups).
    customer_number: ClassVar[str] = "+15551230001"
    #: The platform agent of the checks' calls.
    agent_id: ClassVar[str] = "agent-1"
    #: The agent's CRM user in the logs (:attr:`CallLog.crm_user_id`): set it when your adapter
    #: needs an owner for a record.
    crm_user_id: ClassVar[str | None] = None
    #: How long :meth:`ConformanceBackend.stall` makes the CRM take in the blocking check; the
    #: adapter's own request timeout must be longer.
    stall_seconds: ClassVar[float] = 0.5
    #: The longest the outbox check waits for the outbox to deliver everything.
    outbox_within: ClassVar[float] = 10.0

    def call_events(self) -> list[CallEvent]:
        """The events of one answered, wrapped-up call, new for every check (a fresh log key)."""
        return fake_call(agent_id=self.agent_id, number=self.customer_number)

    def call_logs(self) -> dict[LogStage, CallLog]:
        """One fresh call's log at each stage crmphone writes (CONNECTED, ENDED, WRAPPED_UP)."""
        first, *rest = self.call_events()
        log = _first_log(first, self.crm_user_id)
        logs: dict[LogStage, CallLog] = {}
        for event in rest:
            log = log.with_event(event)
            if log.stage > LogStage.ALERTING:
                logs[log.stage] = log
        missing = {LogStage.CONNECTED, LogStage.ENDED, LogStage.WRAPPED_UP} - set(logs)
        if missing:
            raise TypeError(
                "call_events() must make an answered, ended, wrapped-up call; missing: "
                + ", ".join(sorted(stage.name for stage in missing))
            )
        return logs

    # ------------------------------------------------------------------ the checks

    async def test_log_call_is_idempotent(
        self, adapter: Adapter, backend: ConformanceBackend
    ) -> None:
        """The same log written twice leaves one record, and each later stage updates that record."""
        logs = self.call_logs()
        connected = logs[LogStage.CONNECTED]
        key = connected.key
        await adapter.log_call(connected)
        _expect_records(backend, key, 1, "after the first write of a call log")
        await adapter.log_call(connected)
        _expect_records(backend, key, 1, "after the same write was repeated (same write_key)")
        for stage in (LogStage.ENDED, LogStage.WRAPPED_UP):
            await adapter.log_call(logs[stage])
            _expect_records(backend, key, 1, f"after the {stage.name} write")
        _expect_content(backend, key, LogStage.WRAPPED_UP, "after all three stages")

    async def test_a_retryable_failure_is_safe_to_retry(
        self, adapter: Adapter, backend: ConformanceBackend
    ) -> None:
        """A retryable CRM failure raises CrmRetryableError, and writing again leaves one record."""
        logs = self.call_logs()
        key = logs[LogStage.CONNECTED].key
        for stage in (LogStage.CONNECTED, LogStage.ENDED):  # the create, then an update
            announced = backend.fail_next("retryable")
            error = await _raises(
                CrmRetryableError,
                adapter.log_call(logs[stage]),
                f"the {stage.name} write, failed as retryable by the CRM",
            )
            if announced is not None:
                passed_on = (
                    f"the CRM announced Retry-After {announced:g} s, the adapter's "
                    f"CrmRetryableError says retry_after={error.retry_after!r}: pass it on, so "
                    "the outbox waits as long as the CRM asked"
                )
                assert error.retry_after is not None, passed_on
                assert abs(error.retry_after - announced) < 1e-3, passed_on
            await adapter.log_call(logs[stage])  # what the outbox does next
            _expect_records(backend, key, 1, f"after the {stage.name} write was retried")
            _expect_content(backend, key, stage, f"after the {stage.name} write was retried")

    async def test_errors_map_to_crmphone_errors(
        self, adapter: Adapter, backend: ConformanceBackend
    ) -> None:
        """A permanent CRM failure raises CrmPermanentError, no foreign exception escapes, and the
        adapter keeps working."""
        log = self.call_logs()[LogStage.CONNECTED]
        backend.fail_next("permanent")
        await _raises(
            CrmPermanentError, adapter.log_call(log), "a write the CRM refused as permanent"
        )
        await adapter.log_call(log)
        _expect_records(backend, log.key, 1, "after a write that followed a permanent failure")

    async def test_a_slow_crm_never_blocks_the_event_loop(
        self, adapter: Adapter, backend: ConformanceBackend
    ) -> None:
        """While the CRM takes stall_seconds to answer, the event loop never stalls 0.1 s or more."""
        log = self.call_logs()[LogStage.CONNECTED]
        loop = asyncio.get_running_loop()
        done = asyncio.Event()
        largest = 0.0

        async def tick() -> None:
            nonlocal largest
            while not done.is_set():
                due = loop.time() + _TICK
                await asyncio.sleep(_TICK)
                largest = max(largest, loop.time() - due)

        ticker = asyncio.create_task(tick(), name="conformance-loop-ticker")
        await asyncio.sleep(0)  # the ticker's first sleep is under way before the call starts
        backend.stall(self.stall_seconds)
        started = loop.time()
        try:
            async with asyncio.timeout(self.stall_seconds + 30.0):
                await adapter.log_call(log)
        except TimeoutError:
            raise AssertionError(
                f"log_call did not return within {self.stall_seconds + 30.0:g} s of a CRM "
                f"that answers after {self.stall_seconds:g} s"
            ) from None
        finally:
            elapsed = loop.time() - started
            done.set()
            await ticker
        assert elapsed >= self.stall_seconds * 0.9, (
            f"log_call returned after {elapsed:.3f} s although the CRM was told to take "
            f"{self.stall_seconds:g} s: the backend's stall() did not slow the CRM down"
        )
        assert largest < MAX_LOOP_STALL, (
            f"the event loop stalled for {largest:.3f} s while log_call waited on a CRM taking "
            f"{self.stall_seconds:g} s: do blocking I/O through context.run_sync, never on the loop"
        )
        _expect_records(backend, log.key, 1, "after the slow write")

    async def test_the_outbox_delivers_in_order_once(
        self, adapter: Adapter, backend: ConformanceBackend, tmp_path: Path
    ) -> None:
        """Through crmphone's outbox, with each call's first write failing once, every call ends up
        as one record with its wrapped-up content, and no stage is applied after a later one."""
        name = adapter.context.name
        settings = OutboxSettings(
            path=tmp_path / "conformance-outbox.sqlite3",
            # Retries at test speed; a Retry-After the CRM announces is capped to match.
            retry=RetryPolicy(
                initial_delay=0.01, max_delay=0.05, max_attempts=5, max_retry_after=0.05
            ),
            hook_timeout=max(10.0, 2 * self.stall_seconds),
        )
        # The `adapter` fixture started the adapter and closes it: the outbox must not.
        async with Outbox(settings, {name: adapter}, owns_adapters=False) as outbox:
            # Paced: each stage is delivered before the next event, so every write reaches
            # the CRM (the retried create, then two updates).
            paced = self.call_events()
            backend.fail_next("retryable")
            for event in paced:
                await outbox.submit([event])
                await self._idle(outbox)
            # Bunched: the later events arrive while the failed create waits for its retry;
            # the outbox holds them back and delivers the call's latest content after it.
            bunched = self.call_events()
            backend.fail_next("retryable")
            for event in bunched:
                await outbox.submit([event])
            await self._idle(outbox)
            stats = outbox.stats
        assert stats.retries[name] >= 2, (
            "an injected retryable failure never reached the adapter: check the backend's "
            "fail_next()"
        )
        assert stats.dead_letters[name] == 0, (
            f"{stats.dead_letters[name]} write(s) became dead letters: the adapter raised "
            "CrmPermanentError (or kept failing) on a write the CRM accepts"
        )
        for events, how in ((paced, "paced"), (bunched, "bunched")):
            key = _first_log(events[0], self.crm_user_id).key
            when = f"after the outbox delivered the {how} call"
            _expect_records(backend, key, 1, when)
            _expect_content(backend, key, LogStage.WRAPPED_UP, when)
            stages = backend.written_stages(key)
            if stages is not None:
                assert list(stages) == sorted(stages), (
                    f"the CRM applied the {how} call's writes in the order "
                    f"{[stage.name for stage in stages]}: a later stage before an earlier one"
                )

    async def test_log_calls_writes_each_log_once(
        self, adapter: Adapter, backend: ConformanceBackend
    ) -> None:
        """log_calls, when implemented, answers one outcome per log; written twice (a retried
        batch) or mixing stages of different calls, it leaves one record per call."""
        if not type(adapter).implements("log_calls"):
            _skip(f"{type(adapter).__name__} does not implement log_calls")
        calls = [self.call_logs() for _ in range(3)]
        first = [calls[0][LogStage.CONNECTED], calls[1][LogStage.ENDED]]
        first.append(calls[2][LogStage.WRAPPED_UP])
        for attempt in ("the first batch", "the same batch again"):
            outcomes = await adapter.log_calls(first)
            assert len(outcomes) == len(first), (
                f"log_calls answered {len(outcomes)} outcome(s) for {len(first)} logs in {attempt}"
            )
            assert all(outcome is None for outcome in outcomes), (
                f"log_calls reported failures the CRM never made in {attempt}: {outcomes!r}"
            )
            for log in first:
                _expect_records(backend, log.key, 1, f"after {attempt}")
        finishing = [logs[LogStage.WRAPPED_UP] for logs in calls]
        assert all(outcome is None for outcome in await adapter.log_calls(finishing))
        for log in finishing:
            _expect_records(backend, log.key, 1, "after the batch that finished every call")
            _expect_content(backend, log.key, LogStage.WRAPPED_UP, "after the finishing batch")

    async def _idle(self, outbox: Outbox) -> None:
        idle = await outbox.wait_idle(self.outbox_within)
        assert idle, f"the outbox still had work after {self.outbox_within:g} s"

    async def test_lookup_caller_answers_a_caller_match(
        self, adapter: Adapter, backend: ConformanceBackend
    ) -> None:
        """lookup_caller, when implemented, answers a CallerMatch of CrmRecords for the number."""
        if not type(adapter).implements("lookup_caller"):
            _skip(f"{type(adapter).__name__} does not implement lookup_caller")
        log = self.call_logs()[LogStage.CONNECTED]
        match = await adapter.lookup_caller(log)
        assert isinstance(match, CallerMatch), (
            f"lookup_caller returned {type(match).__name__}, not a CallerMatch"
        )
        assert all(isinstance(record, CrmRecord) for record in match.records), (
            f"lookup_caller's match holds something other than CrmRecords: {match.records!r}"
        )

    async def test_screen_pop_completes(
        self, adapter: Adapter, backend: ConformanceBackend
    ) -> None:
        """screen_pop, when implemented, completes for the lookup's match and for no match."""
        if not type(adapter).implements("screen_pop"):
            _skip(f"{type(adapter).__name__} does not implement screen_pop")
        log = self.call_logs()[LogStage.CONNECTED]
        if type(adapter).implements("lookup_caller"):
            await adapter.screen_pop(log, await adapter.lookup_caller(log))
        await adapter.screen_pop(log, CallerMatch(number=log.customer_number))


def _first_log(first: CallEvent, crm_user_id: str | None) -> CallLog:
    if not isinstance(first, CallAlerting):
        raise TypeError(f"call_events() must start with a CallAlerting, not {first!r}")
    return CallLog.from_alerting(first, crm_user_id=crm_user_id)


def _expect_records(backend: ConformanceBackend, key: str, expected: int, when: str) -> None:
    found = backend.records(key)
    assert found == expected, (
        f"the CRM holds {found} record(s) for call log {key} {when}, not {expected}: log_call "
        "must be an upsert keyed by log.key (never create a second record for a key)"
    )


def _expect_content(backend: ConformanceBackend, key: str, stage: LogStage, when: str) -> None:
    written = backend.last_written(key)
    if written is None:
        return  # the backend cannot tell
    assert written is stage, (
        f"the CRM's record for call log {key} holds the {written.name} content {when}, not "
        f"{stage.name}: each write must update the record (a key such as an Idempotency-Key "
        "must be log.write_key, which differs from stage to stage)"
    )


async def _raises(expected: type[_E], attempt: Awaitable[object], what: str) -> _E:
    """Await ``attempt``; return the ``expected`` error it raised, else fail saying what it did."""
    try:
        await attempt
    except expected as error:
        return error
    except CrmphoneError as error:
        raise AssertionError(
            f"{what}: expected {expected.__name__}, the adapter raised "
            f"{type(error).__name__}: {error}"
        ) from error
    except Exception as error:
        raise AssertionError(
            f"{what}: a foreign {type(error).__module__}.{type(error).__name__} escaped the "
            "adapter: map it at the boundary to CrmRetryableError or CrmPermanentError, "
            "chained with `raise … from`"
        ) from error
    raise AssertionError(f"{what}: the adapter returned instead of raising {expected.__name__}")


def _skip(reason: str) -> NoReturn:
    # Imported here: crmphone.testing is imported outside test runs too (the CLI's demo).
    import pytest

    pytest.skip(reason)
