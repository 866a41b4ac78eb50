"""How every SQLite store of the project opens its file and versions its schema.

``connect`` gives an autocommit connection in WAL mode, usable from the
store's own thread (``check_same_thread`` off: stores hand it to one worker
thread), with a busy timeout so two processes sharing a file take turns.
The schema is a tuple of migrations; ``PRAGMA user_version`` holds the
number applied, and ``migrate`` applies the rest in one write transaction
(``common/sqlite_tx.py``), so two processes opening a new file take turns.

    db = connect(path, synchronous="FULL")
    migrate(db, MIGRATIONS)                                # 0 -> len(MIGRATIONS)
    migrate(db, MIGRATIONS, legacy=adopt_meta_version)     # a file from the meta-row scheme

A migration is never edited once released: a change is a new entry at the end.
Stores from before this scheme kept their version in a ``meta`` row
(``schema_version``); ``adopt_meta_version`` moves it to ``user_version``
in the same transaction, so such a file upgrades in place.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path

from common.sqlite_tx import transaction

BUSY_TIMEOUT_MS = 5_000  # a writer in another process holds the lock milliseconds, not seconds
SYNCHRONOUS = ("NORMAL", "FULL")


class SchemaTooNew(RuntimeError):
    """The file was written by a newer version of the code: opening it could lose data."""


def connect(
    path: Path | str,
    *,
    synchronous: str = "NORMAL",
    busy_timeout_ms: int = BUSY_TIMEOUT_MS,
) -> sqlite3.Connection:
    """An autocommit WAL connection to ``path`` (its folder is made when missing).

    ``synchronous``: NORMAL (in WAL a commit is durable at the next
    checkpoint: a power cut may lose the last instants, never corrupt the
    file) or FULL (every commit fsynced: for marks that must survive a power cut).
    """
    if synchronous not in SYNCHRONOUS:
        raise ValueError(f"synchronous must be one of {SYNCHRONOUS}, not {synchronous!r}")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(
        path, timeout=busy_timeout_ms / 1000, isolation_level=None, check_same_thread=False
    )
    db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    db.execute("PRAGMA journal_mode = WAL")
    db.execute(f"PRAGMA synchronous = {synchronous}")
    return db


def schema_version(db: sqlite3.Connection) -> int:
    """The number of migrations applied to ``db``."""
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def adopt_meta_version(db: sqlite3.Connection) -> int:
    """The version an older file kept in ``meta`` (0 when none); the row is removed.

    Called inside ``migrate``'s transaction: the version moves to
    ``user_version`` there, so the file never holds two answers.
    """
    has_meta = db.execute(
        "SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'"
    ).fetchone()
    if has_meta is None:
        return 0
    row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    if row is None:
        return 0
    db.execute("DELETE FROM meta WHERE key='schema_version'")
    return int(row[0])


# A migration: SQL statements separated by ";", or a function for a step SQL
# cannot say (e.g. secrets drawn for existing rows), run in the same transaction.
Migration = str | Callable[[sqlite3.Connection], None]


def migrate(
    db: sqlite3.Connection,
    migrations: Sequence[Migration],
    *,
    legacy: Callable[[sqlite3.Connection], int] | None = None,
) -> int:
    """Apply the migrations ``db`` has not seen, in one write transaction; returns the version.

    ``legacy(db)``, when given, names the version of a file whose
    ``user_version`` is still 0 (a store from an older scheme). Raises
    SchemaTooNew, with nothing changed, for a file newer than ``migrations``.
    """

    def apply(d: sqlite3.Connection) -> int:
        version = schema_version(d)
        if version == 0 and legacy is not None:
            version = legacy(d)
        if version > len(migrations):
            raise SchemaTooNew(
                f"database schema version {version} is newer than this code ({len(migrations)})"
            )
        for step in migrations[version:]:
            if callable(step):
                step(d)
                continue
            for statement in statements(step):
                d.execute(statement)
        d.execute(f"PRAGMA user_version = {len(migrations)}")
        return len(migrations)

    return transaction(db, apply)


def statements(script: str) -> list[str]:
    """The statements of an SQL script, split where SQLite itself would end them.

    Not a plain split on ";": a semicolon inside a comment or a string ends
    nothing (``sqlite3.complete_statement`` knows). ``executescript`` would
    split them too, but it commits first, out of ``migrate``'s transaction.
    """
    out: list[str] = []
    pending = ""
    for part in script.split(";"):
        pending += part + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \t\n;"):
                out.append(pending)
            pending = ""
    return out
