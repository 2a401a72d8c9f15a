"""The outbox's durable state in SQLite (WAL): queued CRM work, call logs, dead letters.

Synchronous and single-threaded by design: :class:`~crmphone.adapters.outbox.Outbox` runs every
call on one dedicated thread, and ``crmphone outbox`` runs it directly. Times are wall-clock
epoch seconds (they must mean the same after a restart), read from an injected clock.

Tables::

    seen      (adapter, event_key)        events already routed: a second copy is refused
    logs      (adapter, log_key) → JSON   each call's log content for each adapter
    links     (adapter, conversation_id)  the CRM record a click-to-dial came from
    work      id, adapter, log_key, kind, event_key, created, expires, attempts, next_at,
              last_error, state ('pending' | 'dead')

A piece of work is deleted when it is done; a dead letter stays until retried or purged. Work of
one call is delivered in id order: a call's next item waits until every earlier pending item of
the same call is done or dead (a dead letter never blocks the rest of its call).

Crash safety: a batch of events and the work it makes are one transaction, committed before the
events are acknowledged. Work is deleted only after the CRM accepted it, so a crash at any moment
redelivers at most the writes in flight, with the same content and key (the adapter's upsert makes
that harmless). ``synchronous=NORMAL`` in WAL mode survives a killed process; ``FULL`` also survives
power loss, at the cost of an fsync per commit.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import attrs

from crmphone.adapters.base import CallerMatch, CallLog, CrmRecord
from crmphone.adapters.router import WorkKind, route
from crmphone.clock import ClockJumpDetector
from crmphone.errors import ConfigError
from crmphone.events import CallEvent

__all__ = ["AdapterRoute", "Delivery", "EnqueueResult", "OutboxStore", "WorkItem", "WorkState"]

WorkState = Literal["pending", "dead"]

_SCHEMA_VERSION = "1"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS seen (
    adapter TEXT NOT NULL, event_key TEXT NOT NULL, at REAL NOT NULL,
    PRIMARY KEY (adapter, event_key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS logs (
    adapter TEXT NOT NULL, log_key TEXT NOT NULL, log TEXT NOT NULL, updated REAL NOT NULL,
    PRIMARY KEY (adapter, log_key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS memory (
    adapter TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, at REAL NOT NULL,
    PRIMARY KEY (adapter, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS links (
    adapter TEXT NOT NULL, conversation_id TEXT NOT NULL, record TEXT NOT NULL, at REAL NOT NULL,
    PRIMARY KEY (adapter, conversation_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS work (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    adapter TEXT NOT NULL,
    log_key TEXT NOT NULL,
    kind TEXT NOT NULL,
    event_key TEXT NOT NULL,
    created REAL NOT NULL,
    expires REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL,
    last_error TEXT,
    state TEXT NOT NULL DEFAULT 'pending'
);
CREATE INDEX IF NOT EXISTS work_by_call ON work (adapter, state, log_key, id);
CREATE INDEX IF NOT EXISTS work_by_due ON work (adapter, state, next_at);
"""


@attrs.frozen
class AdapterRoute:
    """How events become work for one adapter: its name, whether it looks up or pops, how long
    a screen pop stays worth showing, and its agent map (platform user → CRM user)."""

    name: str
    pops: bool
    pop_ttl: float = 30.0
    crm_users: Mapping[str, str] = attrs.field(factory=dict)


@attrs.frozen
class WorkItem:
    """One queued piece of CRM work, as stored."""

    id: int
    adapter: str
    log_key: str
    kind: WorkKind
    event_key: str
    created: float
    expires: float | None
    attempts: int
    next_at: float
    last_error: str | None
    state: WorkState

    def to_json(self) -> dict[str, Any]:
        """The item as JSON-ready data (``crmphone outbox list --json``)."""
        return {
            "id": self.id,
            "adapter": self.adapter,
            "logKey": self.log_key,
            "kind": self.kind.value,
            "eventKey": self.event_key,
            "created": self.created,
            "expires": self.expires,
            "attempts": self.attempts,
            "nextAt": self.next_at,
            "lastError": self.last_error,
            "state": self.state,
        }


@attrs.frozen
class Delivery:
    """What a worker hands an adapter for one call: the log as it is now, and the ids of the
    queued items of that call that this one write settles."""

    log: CallLog
    ids: tuple[int, ...]


@attrs.frozen
class EnqueueResult:
    """What a batch of events did: work items queued per adapter, duplicates refused,
    anomalies (events that made no sense, e.g. a connect for a call never seen alerting)."""

    queued: Mapping[str, int]
    duplicates: int
    anomalies: tuple[str, ...]


_COLUMNS = (
    "id, adapter, log_key, kind, event_key, created, expires, attempts, next_at, last_error, state"
)


def _item(row: sqlite3.Row | tuple[Any, ...]) -> WorkItem:
    return WorkItem(
        id=row[0],
        adapter=row[1],
        log_key=row[2],
        kind=WorkKind(row[3]),
        event_key=row[4],
        created=row[5],
        expires=row[6],
        attempts=row[7],
        next_at=row[8],
        last_error=row[9],
        state=row[10],
    )


class OutboxStore:
    """The outbox's SQLite file. Not thread-safe: use it from one thread."""

    def __init__(
        self,
        path: str | Path,
        *,
        synchronous: Literal["normal", "full"] = "normal",
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        on_clock_jump: Callable[[float, int], None] | None = None,
    ) -> None:
        if synchronous not in ("normal", "full"):
            raise ConfigError(
                f"must be 'normal' or 'full', not {synchronous!r}", key="outbox.synchronous"
            )
        self.path = Path(path)
        self._clock = clock
        self._monotonic = monotonic
        self._jumps = ClockJumpDetector()
        self._on_clock_jump = on_clock_jump
        try:
            # ":memory:" is SQLite's name for a database without a file: none to create.
            if str(path) != ":memory:" and not self.path.exists():
                # Call data: readable by its owner only (SQLite gives the WAL the same mode).
                os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except (sqlite3.Error, OSError) as exc:
            raise ConfigError(
                f"cannot open the outbox database {str(self.path)!r}: {exc}. Check that its "
                "directory exists and is writable.",
                key="outbox.path",
            ) from exc
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={synchronous.upper()}")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)
        found = self._db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        if found is None:
            self._db.execute("INSERT INTO meta VALUES ('schema', ?)", (_SCHEMA_VERSION,))
        elif found[0] != _SCHEMA_VERSION:
            raise ConfigError(
                f"{str(self.path)!r} has outbox schema {found[0]}, this crmphone reads "
                f"{_SCHEMA_VERSION}: drain it with the crmphone that wrote it, or choose another path",
                key="outbox.path",
            )

    def close(self) -> None:
        """Close the database (every committed change is on disk)."""
        self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group several writes into one commit (nesting is not supported)."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._now()  # a clock jump moves the stored times here, outside any savepoint
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """Inside :meth:`transaction`: undo only this block's writes if it raises."""
        self._db.execute("SAVEPOINT operation")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK TO operation")
            self._db.execute("RELEASE operation")
            raise
        self._db.execute("RELEASE operation")

    # ------------------------------------------------------------------ writing events

    def enqueue(self, events: Iterable[CallEvent], routes: Sequence[AdapterRoute]) -> EnqueueResult:
        """Store each event for each adapter: refuse copies, update its log, queue its work.

        Call inside :meth:`transaction` (the outbox commits a whole batch at once).
        """
        now = self._now()
        queued = dict.fromkeys((r.name for r in routes), 0)
        duplicates = 0
        anomalies: list[str] = []
        db = self._db
        for event in events:
            for adapter in routes:
                fresh = db.execute(
                    "INSERT OR IGNORE INTO seen VALUES (?, ?, ?)", (adapter.name, event.key, now)
                ).rowcount
                if not fresh:
                    duplicates += 1
                    continue
                log_key = f"{event.conversation_id}:{event.participant_id}"
                log = self._log(adapter.name, log_key)
                routed = route(
                    event,
                    log,
                    crm_user_id=adapter.crm_users.get(event.agent_id),
                    pops=adapter.pops,
                )
                if routed.anomaly is not None:
                    anomalies.append(f"{adapter.name}: {routed.anomaly}")
                if routed.log is not None and routed.log is not log:
                    self._save_log(adapter.name, routed.log, now)
                for kind in routed.work:
                    expires = now + adapter.pop_ttl if kind is WorkKind.POP else None
                    db.execute(
                        "INSERT INTO work (adapter, log_key, kind, event_key, created, expires,"
                        " next_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (adapter.name, log_key, kind.value, event.key, now, expires, now),
                    )
                    queued[adapter.name] += 1
        return EnqueueResult(queued, duplicates, tuple(anomalies))

    def link_record(self, adapter: str, conversation_id: str, record: CrmRecord) -> None:
        """Remember that ``adapter``'s click-to-dial placed ``conversation_id`` from ``record``."""
        self._db.execute(
            "INSERT OR REPLACE INTO links VALUES (?, ?, ?, ?)",
            (adapter, conversation_id, json.dumps(record.to_json()), self._now()),
        )

    def save_match(self, adapter: str, log_key: str, match: CallerMatch) -> None:
        """Keep the caller lookup's result with the call's log (the log links to it)."""
        log = self._log(adapter, log_key)
        if log is not None:
            self._save_log(adapter, attrs.evolve(log, match=match), self._now())

    # ------------------------------------------------------------------ delivering

    def due(
        self, adapter: str, *, limit: int, busy: Collection[str] = (), now: float | None = None
    ) -> list[WorkItem]:
        """Up to ``limit`` items ready now: the first pending item of calls not ``busy``."""
        now = self._now() if now is None else now
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM work AS w WHERE adapter = ? AND state = 'pending'"  # noqa: S608 - constant SQL fragments; values are bound
            " AND next_at <= ? AND NOT EXISTS (SELECT 1 FROM work AS p WHERE p.adapter ="
            " w.adapter AND p.state = 'pending' AND p.log_key = w.log_key AND p.id < w.id)"
            " ORDER BY id LIMIT ?",
            (adapter, now, limit + len(busy)),
        ).fetchall()
        items = [_item(row) for row in rows if row[2] not in busy]
        return items[:limit]

    def next_due_at(self, adapter: str) -> float | None:
        """When ``adapter``'s next pending item is due (None: nothing pending)."""
        row = self._db.execute(
            "SELECT MIN(next_at) FROM work WHERE adapter = ? AND state = 'pending'", (adapter,)
        ).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def call_log(self, adapter: str, log_key: str) -> CallLog | None:
        """The call's log as it is now, with the click-to-dial record linked."""
        log = self._log(adapter, log_key)
        if log is None:
            return None
        row = self._db.execute(
            "SELECT record FROM links WHERE adapter = ? AND conversation_id = ?",
            (adapter, log.conversation_id),
        ).fetchone()
        if row is not None:
            log = attrs.evolve(log, linked_record=CrmRecord.from_json(json.loads(row[0])))
        return log

    def take_log(self, item: WorkItem) -> Delivery | None:
        """The log write ``item`` stands for, settling every pending log item of its call.

        A call whose log was queued at connect, end and wrap-up while the CRM was down is
        written once, with its final content. None when the log is gone (purged).
        """
        log = self.call_log(item.adapter, item.log_key)
        if log is None:
            return None
        rows = self._db.execute(
            "SELECT id FROM work WHERE adapter = ? AND state = 'pending' AND log_key = ?"
            " AND kind = ? AND id >= ? ORDER BY id",
            (item.adapter, item.log_key, WorkKind.LOG.value, item.id),
        ).fetchall()
        return Delivery(log, tuple(row[0] for row in rows))

    def complete(self, ids: Iterable[int]) -> None:
        """The CRM accepted the work: forget it."""
        self._db.executemany("DELETE FROM work WHERE id = ?", [(i,) for i in ids])

    def fail(self, ids: Iterable[int], error: str, *, retry_in: float | None) -> None:
        """An attempt failed: try again in ``retry_in`` seconds, or (None) make dead letters."""
        now = self._now()
        if retry_in is None:
            self._db.executemany(
                "UPDATE work SET attempts = attempts + 1, last_error = ?, state = 'dead',"
                " next_at = ? WHERE id = ?",
                [(error, now, i) for i in ids],
            )
        else:
            self._db.executemany(
                "UPDATE work SET attempts = attempts + 1, last_error = ?, next_at = ? WHERE id = ?",
                [(error, now + retry_in, i) for i in ids],
            )

    # ------------------------------------------------------------------ looking and replaying

    def items(
        self,
        *,
        state: WorkState | None = None,
        adapter: str | None = None,
        limit: int = 1000,
    ) -> list[WorkItem]:
        """Queued and dead work, oldest first, optionally of one state or adapter."""
        clauses, values = self._filter(state=state, adapter=adapter)
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM work{clauses} ORDER BY id LIMIT ?",  # noqa: S608 - constant SQL fragments; values are bound
            (*values, limit),
        ).fetchall()
        return [_item(row) for row in rows]

    def counts(self) -> dict[tuple[str, str], int]:
        """Items per (adapter, state)."""
        rows = self._db.execute("SELECT adapter, state, COUNT(*) FROM work GROUP BY 1, 2")
        return {(a, s): n for a, s, n in rows}

    def depth(self, adapter: str) -> int:
        """Pending items of ``adapter`` (the outbox's depth for it)."""
        row = self._db.execute(
            "SELECT COUNT(*) FROM work WHERE adapter = ? AND state = 'pending'", (adapter,)
        ).fetchone()
        return int(row[0])

    def retry(self, *, ids: Collection[int] = (), adapter: str | None = None) -> int:
        """Make dead letters pending again, due now, with their attempts reset; return how many.

        ``ids`` empty: every dead letter (of ``adapter`` when given).
        """
        clauses, values = self._filter(state="dead", adapter=adapter, ids=ids)
        return self._db.execute(
            f"UPDATE work SET state = 'pending', attempts = 0, next_at = ?{clauses}",  # noqa: S608 - constant SQL fragments; values are bound
            (self._now(), *values),
        ).rowcount

    def purge(
        self,
        *,
        ids: Collection[int] = (),
        adapter: str | None = None,
        state: WorkState = "dead",
    ) -> int:
        """Delete dead letters (or, with ``state='pending'``, queued work); return how many."""
        clauses, values = self._filter(state=state, adapter=adapter, ids=ids)
        statement = f"DELETE FROM work{clauses}"  # noqa: S608 - constant SQL fragments; values are bound
        return self._db.execute(statement, values).rowcount

    def prune(self, *, older_than: float) -> int:
        """Forget refused-copy records and logs of calls untouched for ``older_than`` seconds,
        when no work of theirs is left; return how many rows went."""
        cutoff = self._now() - older_than
        gone = self._db.execute("DELETE FROM seen WHERE at < ?", (cutoff,)).rowcount
        gone += self._db.execute(
            "DELETE FROM logs WHERE updated < ? AND NOT EXISTS (SELECT 1 FROM work WHERE"
            " work.adapter = logs.adapter AND work.log_key = logs.log_key)",
            (cutoff,),
        ).rowcount
        gone += self._db.execute("DELETE FROM links WHERE at < ?", (cutoff,)).rowcount
        gone += self._db.execute("DELETE FROM memory WHERE at < ?", (cutoff,)).rowcount
        return gone

    def recall_for(self, adapter: str, key: str) -> str | None:
        """What ``adapter`` kept under ``key`` (its :class:`~crmphone.adapters.Memory`)."""
        row = self._db.execute(
            "SELECT value FROM memory WHERE adapter = ? AND key = ?", (adapter, key)
        ).fetchone()
        return None if row is None else str(row[0])

    def remember_for(self, adapter: str, key: str, value: str) -> None:
        """Keep ``value`` under ``key`` for ``adapter`` (until ``retention`` after this)."""
        self._db.execute(
            "INSERT OR REPLACE INTO memory VALUES (?, ?, ?, ?)",
            (adapter, key, value, self._now()),
        )

    def meta(self, key: str) -> str | None:
        """A value the connector keeps across restarts (e.g. when it last heard the platform)."""
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (f"x:{key}",)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        """Keep ``value`` under ``key`` (see :meth:`meta`)."""
        self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (f"x:{key}", value))

    def shift_times(self, seconds: float) -> int:
        """Move every stored time by ``seconds`` (the wall clock jumped by that much): retries
        stay as far away as they were, nothing ages or expires by the jump. Returns the number of
        queued items re-timed."""
        db = self._db
        moved = db.execute(
            "UPDATE work SET next_at = next_at + ?1, created = created + ?1, "
            "expires = expires + ?1",
            (seconds,),
        ).rowcount
        for table, column in (
            ("seen", "at"),
            ("logs", "updated"),
            ("memory", "at"),
            ("links", "at"),
        ):
            db.execute(f"UPDATE {table} SET {column} = {column} + ?", (seconds,))  # noqa: S608 - fixed names
        return int(moved)

    # ------------------------------------------------------------------ internals

    def _now(self) -> float:
        """The wall clock, after moving every stored time with it if it jumped since the last
        reading: a time taken after a jump is never shifted, one taken before always is."""
        wall = self._clock()
        jump = self._jumps.observe(self._monotonic(), wall)
        if jump is not None:
            moved = self.shift_times(jump)
            if self._on_clock_jump is not None:
                self._on_clock_jump(jump, moved)
        return wall

    def _log(self, adapter: str, log_key: str) -> CallLog | None:
        row = self._db.execute(
            "SELECT log FROM logs WHERE adapter = ? AND log_key = ?", (adapter, log_key)
        ).fetchone()
        return None if row is None else CallLog.from_json(json.loads(row[0]))

    def _save_log(self, adapter: str, log: CallLog, now: float) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO logs VALUES (?, ?, ?, ?)",
            (adapter, log.key, json.dumps(log.to_json()), now),
        )

    @staticmethod
    def _filter(
        *, state: str | None, adapter: str | None, ids: Collection[int] = ()
    ) -> tuple[str, tuple[Any, ...]]:
        clauses: list[str] = []
        values: list[Any] = []
        if state is not None:
            clauses.append("state = ?")
            values.append(state)
        if adapter is not None:
            clauses.append("adapter = ?")
            values.append(adapter)
        if ids:
            clauses.append(f"id IN ({', '.join('?' * len(ids))})")
            values.extend(ids)
        return (" WHERE " + " AND ".join(clauses) if clauses else "", tuple(values))
