"""The durable outbox: call events in, CRM work out, nothing lost, nothing done twice.

:meth:`Outbox.submit` returns once the events and the work they make are committed to SQLite
(:mod:`crmphone.adapters.store`); from then on a crash cannot lose them. Each adapter has its own
workers, which deliver each call's work in order, retry failures on the :class:`RetryPolicy`'s
schedule (honouring ``Retry-After``) and turn what keeps failing into dead letters
(``crmphone outbox list | retry | purge``).

Nothing here runs on the caller's path for longer than a commit: SQLite runs on one dedicated
thread, writes arriving together share one commit (so thousands of events a second cost a few
commits), and every adapter hook runs on that adapter's workers under a time limit, so a CRM that
is slow or down delays its own work only.

When the disk stops taking writes (read-only, full), nothing is acknowledged that is not stored:
:meth:`Outbox.submit` raises :class:`~crmphone.errors.StorageError` (the connector holds the events
and submits them again once :meth:`Outbox.wait_writable` returns), deliveries pause, and the outbox
tries a write every ``storage_retry`` seconds until one succeeds. Writes that reached the CRM but
could not be marked done are sent again then, under the same key: the adapter's upsert makes that
harmless. When the wall clock jumps, every stored time moves with it, so a jump neither delays a
retry by hours nor ages work into expiry.

Status events (:meth:`Outbox.publish_status`: the phone's connection, presence) are not durable:
they describe *now*, so when an adapter falls behind it gets the latest of each kind for each
agent, in order, and the older states it never saw are dropped.

:meth:`Outbox.watch` lets a UI follow the work as it lands (:class:`CallerMatched` when a lookup
found who is calling, :class:`CallLogged` when a CRM write completed): the bridge's dashboard and
screen pops. Watching is not durable and never slows the work.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import functools
import logging
import random
import sqlite3
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self, TypeVar

import attrs

from crmphone._watchers import Watchers
from crmphone.adapters.base import Adapter, CallerMatch, CallLog, CrmRecord, Memory
from crmphone.adapters.policy import RetryPolicy
from crmphone.adapters.router import WorkKind
from crmphone.adapters.store import AdapterRoute, EnqueueResult, OutboxStore, WorkItem
from crmphone.errors import CrmPermanentError, CrmRetryableError, InvalidStateError, StorageError
from crmphone.events import CallEvent, PresenceChanged, RoutingStatusChanged, StatusEvent

__all__ = ["CallLogged", "CallerMatched", "Outbox", "OutboxNotice", "OutboxSettings", "OutboxStats"]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")
_ERROR_TEXT_LIMIT = 500
# An idle worker still looks at the file this often: `crmphone outbox retry`, run from another
# process, cannot wake it otherwise.
_IDLE_POLL_SECONDS = 2.0


@attrs.frozen
class CallerMatched:
    """``adapter``'s lookup for the call ``log`` is done: ``match`` is who is calling.

    ``expired``: the pop came too late to be worth showing (:attr:`OutboxSettings.pop_ttl`).
    """

    adapter: str
    log: CallLog
    match: CallerMatch
    expired: bool = False


@attrs.frozen
class CallLogged:
    """``adapter`` wrote ``log`` (this stage of the call) into its CRM."""

    adapter: str
    log: CallLog


OutboxNotice = CallerMatched | CallLogged
"""What :meth:`Outbox.watch` callbacks receive."""


@attrs.frozen
class OutboxSettings:
    """How the outbox stores and delivers.

    ``path``: the SQLite file. ``synchronous``: ``"normal"`` survives a killed process, ``"full"``
    also a power cut (an fsync per commit). ``retry``: the retry and dead-letter policy.
    ``pop_ttl``: seconds a screen pop stays worth showing (later, the caller is still looked up,
    so the log links to the record, but nothing pops). ``concurrency``: calls an adapter works on
    at once. ``hook_timeout``: the longest one adapter hook may take before the attempt counts as
    failed. ``drain_timeout``: how long a shutdown waits for writes in flight. ``retention``:
    seconds to remember events already seen (to refuse copies) and finished calls' logs.
    ``status_backlog``: status events waiting per adapter (one per kind and agent); beyond it
    the oldest is dropped. ``storage_retry``: seconds between attempts to write while the disk
    refuses writes.
    """

    path: Path = attrs.field(converter=Path)
    synchronous: Literal["normal", "full"] = "normal"
    retry: RetryPolicy = attrs.field(factory=RetryPolicy)
    pop_ttl: float = 30.0
    concurrency: int = 4
    hook_timeout: float = 60.0
    drain_timeout: float = 10.0
    retention: float = 7 * 86_400.0
    status_backlog: int = 4096
    storage_retry: float = 1.0


@attrs.define
class OutboxStats:
    """Counters for metrics: events in, copies refused, and per adapter writes done, retries
    scheduled, dead letters made and screen pops skipped because they expired; how often the
    disk refused writes and the wall clock jumped."""

    events_in: int = 0
    duplicates: int = 0
    anomalies: int = 0
    writes_done: collections.Counter[str] = attrs.field(factory=collections.Counter)
    retries: collections.Counter[str] = attrs.field(factory=collections.Counter)
    dead_letters: collections.Counter[str] = attrs.field(factory=collections.Counter)
    pops_expired: collections.Counter[str] = attrs.field(factory=collections.Counter)
    storage_failures: int = 0
    clock_jumps: int = 0


_Write = Callable[[OutboxStore], Any]


class Outbox:
    """Durable CRM work for a set of adapters (an async context manager).

    ``adapters`` maps each adapter's name (its instance name in the configuration) to the started
    or unstarted adapter: entering starts them, leaving drains the writes in flight and closes
    them — unless ``owns_adapters`` is False: then the caller started them and closes them.
    Each adapter's agent map (platform user → CRM user) is its context's ``agents``.
    """

    def __init__(
        self,
        settings: OutboxSettings,
        adapters: Mapping[str, Adapter],
        *,
        owns_adapters: bool = True,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.adapters = dict(adapters)
        self.stats = OutboxStats()
        self._owns_adapters = owns_adapters
        self._clock = clock
        self._monotonic = monotonic
        self._storage_error: str | None = None
        self._writable = asyncio.Event()
        self._writable.set()
        self._rng = rng or random.Random()
        self._routes = tuple(
            AdapterRoute(
                name=name,
                pops=type(adapter).implements("lookup_caller")
                or type(adapter).implements("screen_pop"),
                pop_ttl=settings.pop_ttl,
                crm_users=dict(adapter.context.agents),
            )
            for name, adapter in self.adapters.items()
        )
        self._db: concurrent.futures.ThreadPoolExecutor | None = None
        self._store: OutboxStore | None = None
        self._writes: list[tuple[_Write, asyncio.Future[Any]]] = []
        self._write_ready = asyncio.Event()
        self._wake = {name: asyncio.Event() for name in self.adapters}
        # Per adapter: the call (log key) each delivery in flight holds, the deliveries (one
        # task may hold many calls: a batch), and which of them are batches.
        self._in_flight: dict[str, dict[str, asyncio.Task[None]]] = {n: {} for n in self.adapters}
        self._running: dict[str, set[asyncio.Task[None]]] = {n: set() for n in self.adapters}
        self._batches: dict[str, set[asyncio.Task[None]]] = {n: set() for n in self.adapters}
        # Per adapter, the status events not yet shown: one per (kind, agent), oldest first.
        self._status: dict[str, dict[tuple[str, str], StatusEvent]] = {
            name: {}
            for name, adapter in self.adapters.items()
            if type(adapter).implements("on_connection_event")
            or type(adapter).implements("on_presence_event")
        }
        self._status_ready = {name: asyncio.Event() for name in self._status}
        self._memories: dict[str, Memory] = {}
        self._outbox_memories: dict[str, _OutboxMemory] = {}
        self._watchers: Watchers[OutboxNotice] = Watchers(logger)
        self._tasks: list[asyncio.Task[None]] = []
        self._accepting = False
        self._stopping = False
        self._flushing = False

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Self:
        self._db = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="crmphone-outbox")
        settings = self.settings
        self._store = await self._read(
            lambda _: OutboxStore(
                settings.path,
                synchronous=settings.synchronous,
                clock=self._clock,
                monotonic=self._monotonic,
                on_clock_jump=self._clock_jumped,
            )
        )
        for name, adapter in self.adapters.items():
            self._memories[name] = adapter.context.memory
            memory = self._outbox_memories[name] = _OutboxMemory(self, name)
            adapter.context.memory = memory
        started: list[Adapter] = []
        try:
            for adapter in self.adapters.values() if self._owns_adapters else ():
                await adapter.start()
                started.append(adapter)
        except BaseException:
            for adapter in reversed(started):
                await self._close_adapter(adapter)
            self._restore_memories()
            await self._read(lambda store: store.close())
            self._db.shutdown(wait=True)
            raise
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._flush_writes(), name="crmphone-outbox-writer"))
        for name in self.adapters:
            self._tasks.append(loop.create_task(self._work(name), name=f"crmphone-outbox-{name}"))
        for name in self._status:
            self._tasks.append(
                loop.create_task(self._feed_status(name), name=f"crmphone-status-{name}")
            )
        await self._write(lambda store: store.prune(older_than=settings.retention))
        self._accepting = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop taking events, let the writes in flight finish (up to ``drain_timeout``), close.

        Work not finished stays queued in the file and is delivered at the next start.
        """
        if self._db is None:
            return
        self._accepting = False
        self._stopping = True
        for event in self._wake.values():
            event.set()
        flights = [task for tasks in self._running.values() for task in tasks]
        if flights:
            _, pending = await asyncio.wait(flights, timeout=self.settings.drain_timeout)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        for memory in self._outbox_memories.values():
            await memory.close()
        writer, *others = self._tasks
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        # Writes commit in order: once a no-op queued last is done, so is what the deliveries
        # reported before it. A disk still refusing writes was reported when it began, and what
        # was not recorded stays queued for the next start: close all the same.
        with contextlib.suppress(StorageError):
            await self._write(lambda store: None)
        writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)
        for adapter in self.adapters.values() if self._owns_adapters else ():
            await self._close_adapter(adapter)
        self._restore_memories()
        await self._read(lambda store: store.close())
        self._db.shutdown(wait=True)
        self._db = None

    def _restore_memories(self) -> None:
        """Give each adapter back the memory it had before this outbox drove it."""
        for name, memory in self._memories.items():
            self.adapters[name].context.memory = memory
        self._memories.clear()
        self._outbox_memories.clear()

    async def _close_adapter(self, adapter: Adapter) -> None:
        try:
            await adapter.close()
        except Exception:
            logger.exception("outbox: closing adapter %s failed", adapter.context.name)
        adapter.context.close()

    # ------------------------------------------------------------------ input

    async def submit(self, events: Sequence[CallEvent]) -> EnqueueResult:
        """Store ``events`` and the CRM work they make; return once that is committed.

        Copies of events already stored (same :attr:`~crmphone.events.BaseCallEvent.key`) are
        refused, so a resync or a redelivered notification cannot make work twice.

        :raises StorageError: the disk refused the commit; nothing of ``events`` was stored.
            Submit them again after :meth:`wait_writable`.
        """
        if not self._accepting:
            raise InvalidStateError("the outbox is not open (enter it with `async with`)")
        routes = self._routes
        result: EnqueueResult = await self._write(lambda store: store.enqueue(events, routes))
        self.stats.events_in += len(events)
        self.stats.duplicates += result.duplicates
        self.stats.anomalies += len(result.anomalies)
        for anomaly in result.anomalies:
            logger.warning("outbox: %s", anomaly)
        for name, count in result.queued.items():
            if count:
                self._wake[name].set()
        return result

    async def link_record(self, adapter: str, conversation_id: str, record: CrmRecord) -> None:
        """Link ``conversation_id``'s log (for ``adapter``) to the record a click-to-dial came from."""
        if adapter not in self.adapters:
            raise InvalidStateError(f"no adapter named {adapter!r} in this outbox")
        await self._write(lambda store: store.link_record(adapter, conversation_id, record))

    async def remember(self, key: str, value: str) -> None:
        """Keep a small value in the outbox's file, across restarts (committed with the next batch)."""
        await self._write(lambda store: store.set_meta(key, value))

    async def recall(self, key: str) -> str | None:
        """A value kept with :meth:`remember` (None when never kept)."""
        return await self._read(lambda store: store.meta(key))

    def publish_status(self, event: StatusEvent) -> None:
        """Hand a phone or presence status event to every adapter that shows it (not durable)."""
        key = (event.name, event.agent_id)
        for name, backlog in self._status.items():
            # A newer state of the same thing replaces the unshown older one: status says *now*.
            backlog.pop(key, None)
            backlog[key] = event
            if len(backlog) > self.settings.status_backlog:
                backlog.pop(next(iter(backlog)))
            self._status_ready[name].set()

    def watch(self, callback: Callable[[OutboxNotice], None]) -> Callable[[], None]:
        """Call ``callback`` with each :data:`OutboxNotice` from now on; return what stops it.

        Callbacks run on the event loop and must not block; one that raises is logged and kept.
        """
        return self._watchers.add(callback)

    async def depth(self, adapter: str) -> int:
        """Pending work of ``adapter``."""
        return await self._read(lambda store: store.depth(adapter))

    async def depths(self) -> dict[str, int]:
        """Pending work per adapter."""
        counts = await self._read(lambda store: store.counts())
        return {name: counts.get((name, "pending"), 0) for name in self.adapters}

    @property
    def storage_error(self) -> str | None:
        """Why the disk refuses writes now (None: it takes them)."""
        return self._storage_error

    async def wait_writable(self) -> None:
        """Return once the disk takes writes (at once when it does)."""
        await self._writable.wait()

    async def wait_idle(self, within: float) -> bool:
        """Wait until no work is pending or in flight (dead letters aside); False after ``within`` s.

        For tests and tools: a retry scheduled for later counts as pending.
        """
        try:
            async with asyncio.timeout(within):
                while True:
                    busy = any(self._in_flight[name] for name in self.adapters)
                    if not busy and not self._writes and not self._flushing:
                        depths = await self.depths()
                        if not any(depths.values()):
                            return True
                    await asyncio.sleep(0.01)
        except TimeoutError:
            return False

    # ------------------------------------------------------------------ the database thread

    async def _read(self, operation: Callable[[OutboxStore], _T]) -> _T:
        if self._db is None:
            raise InvalidStateError("the outbox is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._db, lambda: operation(self._store))  # type: ignore[arg-type]

    async def _write(self, operation: Callable[[OutboxStore], _T]) -> _T:
        """Run ``operation`` in the next commit, shared with every write queued meanwhile."""
        future: asyncio.Future[_T] = asyncio.get_running_loop().create_future()
        self._writes.append((operation, future))
        self._write_ready.set()
        return await future

    async def _write_held(self, operation: Callable[[OutboxStore], _T]) -> _T:
        """Record what a delivery did; while the disk refuses writes, wait for it, then record.

        The CRM already has what this records (a write done, a failure counted, a match found),
        so failing here would send the same work again: a second record wherever the CRM cannot
        upsert. A stop cancels the wait and the work stays queued.
        """
        while True:
            try:
                return await self._write(operation)
            except StorageError:
                await self._writable.wait()

    async def _flush_writes(self) -> None:
        while True:
            await self._write_ready.wait()
            self._write_ready.clear()
            batch, self._writes = self._writes, []
            if not batch:
                continue
            self._flushing = True
            try:
                outcomes = await self._read(functools.partial(_commit, [op for op, _ in batch]))
            except Exception as exc:  # noqa: BLE001 - the commit failed: each awaiter gets why
                failure: Exception = exc
                if isinstance(exc, sqlite3.Error):
                    failure = self._storage_failed(exc)
                for _, future in batch:
                    if not future.done():
                        future.set_exception(failure)
                continue
            finally:
                self._flushing = False
            for (_, future), (ok, value) in zip(batch, outcomes, strict=True):
                if future.done():
                    continue
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)

    def _storage_failed(self, exc: sqlite3.Error) -> StorageError:
        """The disk refused a commit: pause, say so once, and start probing for its return."""
        reason = f"{type(exc).__name__}: {exc}"
        error = StorageError(
            f"the outbox cannot write to {str(self.settings.path)!r} ({reason}): events are held "
            "in memory and nothing is acknowledged until it is stored"
        )
        if self._storage_error is None:
            self._storage_error = reason
            self._writable.clear()
            self.stats.storage_failures += 1
            logger.error(
                "outbox: cannot write to %s (%s). Is the disk read-only or full? Deliveries are "
                "paused and new events are held in memory (nothing is acknowledged or lost); "
                "trying again every %g s",
                self.settings.path,
                reason,
                self.settings.storage_retry,
            )
            self._tasks.append(
                asyncio.get_running_loop().create_task(
                    self._probe_storage(self._monotonic()), name="crmphone-outbox-probe"
                )
            )
        return error

    async def _probe_storage(self, since: float) -> None:
        """Try a small write every ``storage_retry`` seconds until the disk takes it."""
        while not self._stopping:
            await asyncio.sleep(self.settings.storage_retry)
            try:
                await self._write(lambda store: store.set_meta("storage_probe", str(self._clock())))
            except StorageError:
                continue  # still refused (said once, when it started)
            self._storage_error = None
            logger.warning(
                "outbox: writing to %s again after %.1f s; delivering what was held",
                self.settings.path,
                self._monotonic() - since,
            )
            self._writable.set()
            for event in self._wake.values():
                event.set()
            return

    def _clock_jumped(self, jump: float, moved: int) -> None:
        """The store moved its times with a wall-clock jump (called on the database thread)."""
        self.stats.clock_jumps += 1
        logger.warning(
            "outbox: the wall clock jumped %s by %.1f s (NTP, an admin or a resumed VM): moved "
            "the times of %d queued item(s) with it, so no retry is delayed and nothing expires "
            "because of the jump",
            "forward" if jump > 0 else "back",
            abs(jump),
            moved,
        )

    # ------------------------------------------------------------------ delivery

    async def _work(self, name: str) -> None:
        """Deliver ``name``'s due work, a call at a time per call, ``concurrency`` at once.

        For an adapter with :meth:`~crmphone.adapters.Adapter.log_calls`, log writes of several
        calls go out together: up to ``max_batch`` a request, and a part-filled batch waits
        while another is in flight (so a burst fills the next request instead of sending many).
        """
        wake = self._wake[name]
        in_flight, running = self._in_flight[name], self._running[name]
        kind = type(self.adapters[name])
        batch = max(1, int(kind.max_batch)) if kind.implements("log_calls") else 0
        limit = self.settings.concurrency
        while not self._stopping:
            wake.clear()
            if self._storage_error is not None:
                # Deliveries could not be marked done: wait for the disk (the probe wakes us).
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.settings.storage_retry):
                        await wake.wait()
                continue
            free = limit - len(running)
            launched = False
            if free > 0:
                busy = set(in_flight)
                try:
                    items = await self._read(
                        functools.partial(_due, name, free * max(batch, 1), busy)
                    )
                except sqlite3.Error as exc:
                    self._storage_failed(exc)  # a disk that fails reads fails writes too
                    continue
                launched = self._launch_due(name, items, free, batch)
            if launched and len(running) < limit:
                continue
            timeout: float | None = None
            if len(running) < limit:
                try:
                    next_at = await self._read(lambda store: store.next_due_at(name))
                except sqlite3.Error as exc:
                    self._storage_failed(exc)
                    continue
                timeout = _IDLE_POLL_SECONDS
                if next_at is not None and not launched:
                    timeout = min(timeout, max(0.0, next_at - self._clock()))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await wake.wait()

    def _launch_due(self, name: str, items: list[WorkItem], free: int, batch: int) -> bool:
        """Start deliveries for ``items`` within ``free`` task slots; True when any started."""
        launched = False
        logs = [item for item in items if batch and item.kind is WorkKind.LOG]
        for item in items:
            if free <= 0:
                break
            if batch and item.kind is WorkKind.LOG:
                continue
            self._launch(name, [item], self._deliver(name, item))
            free, launched = free - 1, True
        batching_now = bool(self._batches[name])
        for start in range(0, len(logs), batch or 1):
            chunk = logs[start : start + batch]
            if free <= 0 or (len(chunk) < batch and batching_now):
                break  # let the part-filled batch fill up while the one in flight lands
            self._launch(name, chunk, self._deliver_batch(name, chunk), batch=True)
            free, launched, batching_now = free - 1, True, True
        return launched

    def _launch(
        self,
        name: str,
        items: list[WorkItem],
        delivery: Coroutine[Any, Any, None],
        *,
        batch: bool = False,
    ) -> None:
        label = "crmphone-batch-" if batch else "crmphone-deliver-"
        task = asyncio.get_running_loop().create_task(delivery, name=label + name)
        self._running[name].add(task)
        if batch:
            self._batches[name].add(task)
        for item in items:
            self._in_flight[name][item.log_key] = task

        def landed(_: asyncio.Task[None]) -> None:
            if not task.cancelled() and (failure := task.exception()) is not None:
                # Every adapter failure and refused commit is handled inside; this is a fault of
                # ours (the store refused an operation): the work stays queued and goes again.
                logger.error("outbox: %s delivery not recorded", name, exc_info=failure)
            self._running[name].discard(task)
            self._batches[name].discard(task)
            for item in items:
                self._in_flight[name].pop(item.log_key, None)
            self._wake[name].set()

        task.add_done_callback(landed)

    async def _deliver_batch(self, name: str, items: list[WorkItem]) -> None:
        """One :meth:`~crmphone.adapters.Adapter.log_calls` for ``items`` (different calls);
        each log then completes or fails on its own outcome."""
        adapter = self.adapters[name]
        deliveries = await self._read(lambda store: [store.take_log(item) for item in items])
        gone = [item.id for item, delivery in zip(items, deliveries, strict=True) if not delivery]
        pairs = [
            (item, delivery)
            for item, delivery in zip(items, deliveries, strict=True)
            if delivery is not None
        ]
        outcomes: Sequence[Exception | None] = ()
        failure: Exception | None = None
        if pairs:
            try:
                async with asyncio.timeout(self.settings.hook_timeout):
                    outcomes = await adapter.log_calls([delivery.log for _, delivery in pairs])
            except asyncio.CancelledError:
                raise  # shutting down: the work stays queued
            except Exception as exc:  # noqa: BLE001 - every failure is classified in _failed
                failure = exc
            else:
                if len(outcomes) != len(pairs):
                    failure = CrmRetryableError(
                        f"log_calls answered {len(outcomes)} outcome(s) for {len(pairs)} log(s)"
                    )
        done = list(gone)
        writes = []
        for index, (item, delivery) in enumerate(pairs):
            outcome = failure if failure is not None else outcomes[index]
            if outcome is None:
                done.extend(delivery.ids)
                self.stats.writes_done[name] += 1
                self._watchers.notify(CallLogged(name, delivery.log))
            else:
                writes.append(self._failed(name, item, delivery.ids, outcome))
        # Together, so a failed batch of 200 shares one commit instead of 200 in a row.
        if done:
            writes.append(self._write_held(lambda store: store.complete(done)))
        await asyncio.gather(*writes)

    async def _deliver(self, name: str, item: WorkItem) -> None:
        adapter = self.adapters[name]
        ids: tuple[int, ...] = (item.id,)
        logged: CallLog | None = None
        try:
            async with asyncio.timeout(self.settings.hook_timeout):
                if item.kind is WorkKind.POP:
                    await self._pop(name, adapter, item)
                else:
                    delivery = await self._read(lambda store: store.take_log(item))
                    if delivery is not None:
                        ids = delivery.ids
                        await adapter.log_call(delivery.log)
                        logged = delivery.log
        except asyncio.CancelledError:
            raise  # shutting down: the work stays queued
        except Exception as exc:  # noqa: BLE001 - every failure is classified below
            await self._failed(name, item, ids, exc)
            return
        await self._write_held(lambda store: store.complete(ids))
        if item.kind is WorkKind.LOG:
            self.stats.writes_done[name] += 1
        if logged is not None:
            self._watchers.notify(CallLogged(name, logged))

    async def _pop(self, name: str, adapter: Adapter, item: WorkItem) -> None:
        log = await self._read(lambda store: store.call_log(name, item.log_key))
        if log is None:
            return
        kind = type(adapter)
        match = await adapter.lookup_caller(log) if kind.implements("lookup_caller") else None
        if match is not None:
            await self._write_held(lambda store: store.save_match(name, item.log_key, match))
            log = attrs.evolve(log, match=match)
        found = match or log.match or CallerMatch(log.customer_number)
        if item.expires is not None and self._clock() > item.expires:
            self.stats.pops_expired[name] += 1
            self._watchers.notify(CallerMatched(name, log, found, expired=True))
            return
        self._watchers.notify(CallerMatched(name, log, found))
        if kind.implements("screen_pop"):
            await adapter.screen_pop(log, found)

    async def _failed(
        self, name: str, item: WorkItem, ids: tuple[int, ...], exc: Exception
    ) -> None:
        permanent = isinstance(exc, CrmPermanentError)
        retry_after = exc.retry_after if isinstance(exc, CrmRetryableError) else None
        if isinstance(exc, TimeoutError):
            text = f"the adapter took longer than {self.settings.hook_timeout:g} s"
        else:
            text = f"{type(exc).__name__}: {exc}"
            if not isinstance(exc, CrmRetryableError | CrmPermanentError):
                logger.error(
                    "outbox: adapter %s raised %s, not a crmphone CRM error: retrying; map it "
                    "in the adapter",
                    name,
                    type(exc).__name__,
                    exc_info=exc,
                )
        text = text[:_ERROR_TEXT_LIMIT]
        delay = self.settings.retry.next_delay(
            failures=item.attempts + 1,
            age=max(0.0, self._clock() - item.created),
            retry_after=retry_after,
            permanent=permanent,
            rng=self._rng,
        )
        await self._write_held(lambda store: store.fail(ids, text, retry_in=delay))
        if delay is None:
            self.stats.dead_letters[name] += len(ids)
            logger.warning(
                "outbox: %s %s of %s is a dead letter after %d attempt(s): %s",
                name,
                item.kind.value,
                item.log_key,
                item.attempts + 1,
                text,
            )
        else:
            self.stats.retries[name] += 1
            logger.info(
                "outbox: %s %s of %s failed (%s); retrying in %.1f s",
                name,
                item.kind.value,
                item.log_key,
                text,
                delay,
            )

    async def _feed_status(self, name: str) -> None:
        adapter = self.adapters[name]
        backlog, ready = self._status[name], self._status_ready[name]
        while True:
            await ready.wait()
            ready.clear()
            while backlog:
                event = backlog.pop(next(iter(backlog)))
                try:
                    async with asyncio.timeout(self.settings.hook_timeout):
                        if isinstance(event, PresenceChanged | RoutingStatusChanged):
                            await adapter.on_presence_event(event)
                        else:
                            await adapter.on_connection_event(event)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - status is best effort
                    logger.warning(
                        "outbox: %s could not show %s: %s", name, type(event).__name__, exc
                    )


def _due(name: str, limit: int, busy: set[str], store: OutboxStore) -> list[WorkItem]:
    return store.due(name, limit=limit, busy=busy)


def _commit(operations: list[_Write], store: OutboxStore) -> list[tuple[bool, Any]]:
    """Run ``operations`` in one transaction; each in a savepoint, so one failing undoes itself only."""
    outcomes: list[tuple[bool, Any]] = []
    with store.transaction():
        for operation in operations:
            try:
                with store.savepoint():
                    value = operation(store)
            except Exception as exc:  # noqa: BLE001 - handed to the operation's awaiter
                outcomes.append((False, exc))
            else:
                outcomes.append((True, value))
    return outcomes


def _remember_all(adapter: str, values: Mapping[str, str], store: OutboxStore) -> None:
    for key, value in values.items():
        store.remember_for(adapter, key, value)


class _OutboxMemory:
    """An adapter's :class:`~crmphone.adapters.Memory` in the outbox's file (shared commits).

    An adapter remembers a CRM id right after the CRM made the record, so the value must not be
    refused: while the disk refuses writes it is held here (and answered from here), and stored
    as soon as the disk takes writes again.
    """

    def __init__(self, outbox: Outbox, adapter: str) -> None:
        self._outbox = outbox
        self._adapter = adapter
        self._held: dict[str, str] = {}
        self._storing: asyncio.Task[None] | None = None

    async def get(self, key: str) -> str | None:
        """The value the adapter kept under ``key``, or None."""
        held = self._held.get(key)
        if held is not None:
            return held
        return await self._outbox._read(lambda store: store.recall_for(self._adapter, key))

    async def set(self, key: str, value: str) -> None:
        """Keep ``value`` under ``key``: committed when this returns, or, while the disk refuses
        writes, held in memory and committed once it takes them (lost only if the process ends
        before that)."""
        if not self._held:  # with values held, a newer one waits behind them (order is kept)
            try:
                await self._outbox._write(
                    lambda store: store.remember_for(self._adapter, key, value)
                )
            except StorageError:
                pass  # said once by the outbox; held below
            else:
                return
        self._held[key] = value
        if self._storing is None:
            self._storing = asyncio.get_running_loop().create_task(
                self._store_held(), name=f"crmphone-memory-{self._adapter}"
            )

    async def _store_held(self) -> None:
        try:
            while self._held:
                values = dict(self._held)
                await self._outbox._write_held(
                    functools.partial(_remember_all, self._adapter, values)
                )
                for key, value in values.items():
                    if self._held.get(key) == value:  # not replaced while it was being stored
                        del self._held[key]
        finally:
            self._storing = None

    async def close(self) -> None:
        """Store what is held if the disk takes writes (within the drain time), then stop; say
        how many values the disk never took."""
        storing = self._storing
        if storing is not None:
            if self._outbox.storage_error is None:
                await asyncio.wait({storing}, timeout=self._outbox.settings.drain_timeout)
            storing.cancel()
            await asyncio.gather(storing, return_exceptions=True)
        if self._held:
            logger.error(
                "outbox: %d value(s) adapter %s remembered were never stored (the disk refused "
                "writes until the stop); a delivery made again at the next start may write its "
                "CRM record a second time",
                len(self._held),
                self._adapter,
            )
