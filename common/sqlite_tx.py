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

import sqlite3
from collections.abc import Callable
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
