"""How long the miner keeps finished work, and the pruning of what is older (issue 16, item 8).

A validator asks for an assignment's collect, reveal and tie-break answers
until that epoch's deadline and shortly after; the epoch gate refuses every
assignment of an epoch that is over. Finished work whose deadline lies more
than ``keep_s`` in the past is therefore never asked again: its rows
(assignment, requests, zipcodes, records, lookups, commitments) are deleted,
once an epoch, in one write transaction. Open work is never pruned, whatever
its age: a task may still be writing it.

    retention = Retention.epochs(epoch_seconds=14400.0)       # keep 3 epochs, prune each epoch
    pruned = prune_finished(db, cutoff=now - retention.keep_s)  # on the store's thread
    pruned.keys                                                 # what the service forgets too
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from common.protocol import AssignmentStatus
from config.settings import RETENTION_EPOCHS  # the default; MINER_RETENTION_EPOCHS

# Without a known epoch length (the local preset checks no epochs): the
# production epoch (CYCLE_SECONDS on test and finney), so nothing is pruned early.
FALLBACK_EPOCH_S = 4 * 3600.0

_OPEN = (AssignmentStatus.ACCEPTED.value, AssignmentStatus.IN_PROGRESS.value)
# Tables keyed by assignment key: each has the key first in its primary key.
_BY_KEY = ("zipcodes", "records", "properties", "commitments")


@dataclass(frozen=True, slots=True)
class Retention:
    """Finished work is kept ``keep_s`` past its deadline; pruning runs every ``every_s``."""

    keep_s: float
    every_s: float

    def __post_init__(self) -> None:
        if not (self.keep_s > 0 and self.every_s > 0):
            raise ValueError("retention keep_s and every_s must be positive")

    @classmethod
    def epochs(cls, epoch_seconds: float, keep: int = RETENTION_EPOCHS) -> Retention:
        """Keep ``keep`` epochs of ``epoch_seconds``; prune once an epoch."""
        return cls(keep * epoch_seconds, epoch_seconds)


@dataclass(frozen=True, slots=True)
class Pruned:
    """What one pruning deleted: the assignment keys, and rows per table."""

    keys: tuple[str, ...]
    rows: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.rows.values())


def prune_finished(db: sqlite3.Connection, cutoff: float) -> Pruned:
    """Delete finished assignments whose deadline is before ``cutoff``, and all their rows.

    Runs inside the caller's write transaction (``MinerStore.write``). Request
    rows whose assignment is gone go too: a request remembered behind its
    answer while its assignment was being pruned would otherwise stay forever.
    """
    keys = tuple(
        r[0]
        for r in db.execute(
            "SELECT key FROM assignments WHERE status NOT IN (?, ?)"
            # No deadline (rows of old versions): the creation time is older still.
            " AND COALESCE(deadline_at, created_at) < ?",
            (*_OPEN, cutoff),
        )
    )
    rows: dict[str, int] = {}
    by_key = [(key,) for key in keys]
    for table in _BY_KEY:
        rows[table] = db.executemany(f"DELETE FROM {table} WHERE key=?", by_key).rowcount
    rows["assignments"] = db.executemany("DELETE FROM assignments WHERE key=?", by_key).rowcount
    rows["requests"] = db.execute(
        "DELETE FROM requests WHERE key NOT IN (SELECT key FROM assignments)"
    ).rowcount
    return Pruned(keys, rows)
