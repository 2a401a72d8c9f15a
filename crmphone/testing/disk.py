"""A disk that stops taking writes, for tests and the fault matrix.

A real file system turning read-only under an open SQLite file cannot be arranged without
privileges (a remount is refused while the file is open for writing), so the outbox's own
connection is switched to SQLite's ``query_only`` mode instead: every write then fails with
"attempt to write a readonly database", the error SQLite gives for a read-only file, while reads go
on as they do on a disk remounted read-only.
"""

from __future__ import annotations

from crmphone.adapters import Outbox, OutboxStore

__all__ = ["set_outbox_read_only"]


async def set_outbox_read_only(outbox: Outbox, read_only: bool) -> None:
    """Make ``outbox``'s file refuse every write (True) or take writes again (False)."""

    def switch(store: OutboxStore) -> None:
        store._db.execute(
            f"PRAGMA query_only = {int(read_only)}"
        )  # private on purpose: see the module

    await outbox._read(switch)  # on the outbox's database thread
