"""One SQLite write transaction, for every store of the project.

``BEGIN IMMEDIATE`` takes the write lock at once, so a read-then-write (count,
then insert) is one step even across processes sharing the database file.

    count = transaction(db, lambda d: d.execute("SELECT ...").fetchone()[0])
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
