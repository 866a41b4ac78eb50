"""The miner's SQLite store: assignments, which validator asked for them, and the records found.

Everything a ``collect`` answer needs lives here, so a restarted miner still
answers for work it finished, and resumes work it had not. One connection,
WAL journal, used from a single worker thread so the event loop never blocks
on disk.

    store = await MinerStore.open(path)
    await store.run(lambda db: db.execute(...))

The schema is versioned like every store's (``common/sqlite_db.py``,
``PRAGMA user_version``): ``MIGRATIONS`` holds one entry per version, ``_SCHEMA``
first; a store of the older meta-row scheme upgrades in place. Version 2
adds what commit-then-reveal needs: a secret salt per assignment, the order
zipcodes were finished in (``done_order``) and, per commitment the miner
issued, how many zipcodes it covered, so any commitment's manifest can be
rebuilt after a restart without storing a manifest per poll.

Nothing here deletes: finished work is pruned once an epoch by the service
(``scraping/retention.py``), whose delete-by-key queries use the primary keys,
each led by the assignment key.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from common.manifest import new_salt
from common.sqlite_db import (
    Migration,
    SchemaTooNew,
    adopt_meta_version,
    connect,
    migrate,
    schema_version,
)
from common.sqlite_tx import StoreThread, on_store_thread

T = TypeVar("T")
logger = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS assignments (
    key TEXT PRIMARY KEY,
    request_json TEXT NOT NULL,
    status TEXT NOT NULL,
    zipcodes_total INTEGER NOT NULL,
    created_at REAL NOT NULL,
    deadline_at REAL,
    completed_at REAL,
    error TEXT
);
CREATE TABLE IF NOT EXISTS requests (
    validator TEXT NOT NULL,
    request_id TEXT NOT NULL,
    key TEXT NOT NULL REFERENCES assignments(key),
    received_at REAL NOT NULL,
    PRIMARY KEY (validator, request_id)
);
CREATE TABLE IF NOT EXISTS zipcodes (
    key TEXT NOT NULL,
    source TEXT NOT NULL,
    zipcode TEXT NOT NULL,
    done INTEGER NOT NULL DEFAULT 0,
    record_count INTEGER NOT NULL DEFAULT 0,
    dropped INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (key, source, zipcode)
);
CREATE TABLE IF NOT EXISTS records (
    key TEXT NOT NULL,
    source TEXT NOT NULL,
    zipcode TEXT NOT NULL,
    zpid TEXT NOT NULL,
    record_hash TEXT NOT NULL,
    record_json TEXT NOT NULL,
    PRIMARY KEY (key, source, zipcode, zpid)
);
-- Property-id assignments (tie-breaks): one row per asked zpid. found is NULL
-- until looked up; a lookup that failed leaves done=0 (not answered).
CREATE TABLE IF NOT EXISTS properties (
    key TEXT NOT NULL,
    source TEXT NOT NULL,
    zpid TEXT NOT NULL,
    done INTEGER NOT NULL DEFAULT 0,
    found INTEGER,
    zipcode TEXT,
    record_hash TEXT,
    record_json TEXT,
    PRIMARY KEY (key, source, zpid)
);
CREATE INDEX IF NOT EXISTS assignments_status ON assignments(status);
"""


def _commit_reveal(db: sqlite3.Connection) -> None:
    """Version 2: what commit-then-reveal needs, for work taken before it too."""
    for statement in (
        "ALTER TABLE assignments ADD COLUMN salt TEXT",
        "ALTER TABLE zipcodes ADD COLUMN done_order INTEGER",
        # Zipcodes finished before the upgrade: in (source, zipcode) order, which
        # is the order the collect answers of version 1 listed them in.
        "UPDATE zipcodes SET done_order = (SELECT COUNT(*) FROM zipcodes z WHERE z.key ="
        " zipcodes.key AND z.done = 1 AND (z.source, z.zipcode) <= (zipcodes.source,"
        " zipcodes.zipcode)) WHERE done = 1",
        "CREATE TABLE commitments (key TEXT NOT NULL, commitment TEXT NOT NULL,"
        " zipcodes_covered INTEGER NOT NULL, issued_at REAL NOT NULL,"
        " PRIMARY KEY (key, commitment))",
        "CREATE INDEX commitments_covered ON commitments(key, zipcodes_covered)",
    ):
        db.execute(statement)
    # Assignments taken before the upgrade get their secret salt now.
    keys = [r[0] for r in db.execute("SELECT key FROM assignments WHERE salt IS NULL")]
    db.executemany("UPDATE assignments SET salt=? WHERE key=?", [(new_salt(), key) for key in keys])


# One entry per schema version, applied in order by common/sqlite_db.migrate; an
# entry is never edited once released. Stores from before kept the version in
# meta.schema_version, which migrate adopts (adopt_meta_version).
MIGRATIONS: tuple[Migration, ...] = (_SCHEMA, _commit_reveal)
SCHEMA_VERSION = len(MIGRATIONS)
WAL_SIZE_LIMIT_BYTES = 4 * 1024 * 1024


class MinerStore:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._thread = StoreThread("miner-store")
        self._db: sqlite3.Connection | None = None
        self._pending: list[tuple[Callable[[sqlite3.Connection], object], asyncio.Future]] = []
        self._flushing = False
        self._flusher: asyncio.Task | None = None

    @classmethod
    async def open(cls, path: Path) -> MinerStore:
        store = cls(path)
        await store.run(store._connect)
        return store

    def _connect(self, _db: object = None) -> None:
        db = connect(self.path, synchronous="NORMAL")
        # After a checkpoint the WAL file is cut back to this size instead of
        # keeping the size of the largest burst (a pruning deletes an epoch of rows).
        db.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT_BYTES}")
        before = schema_version(db)
        try:
            version = migrate(db, MIGRATIONS, legacy=adopt_meta_version)
            # The release before this scheme reads meta.schema_version: kept for it, so a
            # miner rolled back one release still opens this file instead of migrating
            # it again ("duplicate column"). Drop a release after the user_version scheme.
            db.execute(
                "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
            )
            db.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(version),))
        except SchemaTooNew as exc:
            db.close()
            raise SchemaTooNew(f"{self.path}: {exc}; upgrade the miner") from None
        except BaseException:
            db.close()
            raise
        if before and version != before:
            logger.info("%s: schema migrated from version %d to %d", self.path, before, version)
        self._db = db

    async def run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work(connection)`` on the store's thread."""
        return await self._thread.run(lambda: work(self._db))  # type: ignore[arg-type]

    async def write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work(connection)`` in a transaction shared with the writes queued meanwhile.

        Group commit: a burst of acknowledgements costs one thread hand-off and
        one commit instead of one each. Each write runs under its own
        savepoint, so one that raises is rolled back alone and its caller gets
        the exception.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future = loop.create_future()
        self._pending.append((work, future))
        if not self._flushing:
            self._flushing = True
            self._flusher = loop.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    results = await self._thread.run(lambda b=batch: self._run_batch(b))
                except Exception as exc:  # the commit itself failed: every caller hears it
                    results = [(False, exc)] * len(batch)
                for (_, future), (ok, value) in zip(batch, results, strict=True):
                    if future.done():
                        continue
                    if ok:
                        future.set_result(value)
                    else:
                        future.set_exception(value)
        finally:
            self._flushing = False

    def _run_batch(self, batch: list) -> list[tuple[bool, object]]:
        db = self._db
        assert db is not None
        results: list[tuple[bool, object]] = []
        db.execute("BEGIN IMMEDIATE")
        try:
            for work, _ in batch:
                db.execute("SAVEPOINT write")
                try:
                    results.append((True, on_store_thread(lambda w=work: w(db))))
                    db.execute("RELEASE write")
                except Exception as exc:
                    db.execute("ROLLBACK TO write")
                    db.execute("RELEASE write")
                    results.append((False, exc))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return results

    async def close(self) -> None:
        await self._thread.close(lambda: self._db)


def now() -> float:
    return time.time()
