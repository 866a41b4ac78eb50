"""One SQLite write transaction, for every store of the project.

``BEGIN IMMEDIATE`` takes the write lock at once, so a read-then-write (count,
then insert) is one step even across processes sharing the database file.

    count = transaction(db, lambda d: d.execute("SELECT ...").fetchone()[0])

``on_store_thread`` is what every store's executor runs: a cursor that a
lambda returns (``db.execute(...)`` as the last expression) is closed there,
never handed to the event loop's thread. A cursor freed on another thread
resets its statement while the store's thread may be stepping it, which
SQLite reports as "bad parameter or other API misuse" in the middle of an
unrelated write.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


def transaction(db: sqlite3.Connection, work: Callable[[sqlite3.Connection], T]) -> T:
    """Run ``work(db)`` in one write transaction: committed, or rolled back if it raises."""
    db.execute("BEGIN IMMEDIATE")
    try:
        out = work(db)
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    return out


def on_store_thread(work: Callable[[], T]) -> T | None:
    """``work()`` for a store's own thread; a cursor it returns is closed there, not returned."""
    out = work()
    if isinstance(out, sqlite3.Cursor):
        out.close()
        return None
    return out


class StoreThread:
    """The one thread a store's SQLite connection lives on: every use of it goes here.

    A connection is used from the thread that made it, and one thread means one
    writer per store without a lock.
    """

    def __init__(self, name: str) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    async def run(self, work: Callable[[], T]) -> T:
        """``work()`` on the store's thread (through ``on_store_thread``)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, on_store_thread, work)  # type: ignore[return-value]

    def shutdown(self, wait: bool = True) -> None:
        self._executor.shutdown(wait=wait)

    async def close(self, connection: Callable[[], sqlite3.Connection | None]) -> None:
        """Close ``connection()`` (if any) on the store's thread, then the thread."""

        def shut() -> None:
            db = connection()
            if db is not None:
                db.close()

        await self.run(shut)
        self.shutdown()
