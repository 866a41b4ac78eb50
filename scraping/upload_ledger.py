"""The miner's upload ledger: which zipcode files wait for S3, which are there, which failed.

One SQLite file (``uploads.sqlite`` in the miner's workdir, WAL), separate
from the scrape store so uploads never contend with ``collect`` answers, and
a spool directory holding the files still to send (named by content hash).
A file is written to the spool atomically (temporary file, fsync, rename)
before its row, so after a crash every ``pending`` row has its whole file.
All disk work runs on one thread: the event loop never blocks on it.

    ledger = await UploadLedger.open(workdir / "uploads.sqlite", workdir / "upload-spool")
    await ledger.add(12, "ZILLOW_SOLD", "77494", encoded)       # pending
    rows = await ledger.due(time.time(), limit=4)
    await ledger.mark_uploaded(rows[0], key)
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TypeVar

from common.manifest import ManifestFile
from common.s3_files import EncodedFile
from common.sqlite_db import adopt_meta_version, connect, migrate
from common.sqlite_tx import StoreThread

T = TypeVar("T")
PENDING, UPLOADED, FAILED = "pending", "uploaded", "failed"

# The schema, as migrations (common/sqlite_db.py); a ledger from before
# user_version kept "1" in a meta row, which migrate adopts in place.
MIGRATIONS: tuple[str, ...] = (
    """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS uploads (
    id INTEGER PRIMARY KEY,
    epoch INTEGER NOT NULL,
    source TEXT NOT NULL,
    zipcode TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    size INTEGER NOT NULL,
    record_count INTEGER NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_try_at REAL NOT NULL,
    created_at REAL NOT NULL,
    uploaded_at REAL,
    s3_key TEXT,
    error TEXT,
    UNIQUE (epoch, source, zipcode, content_hash)
);
CREATE INDEX IF NOT EXISTS uploads_due ON uploads(state, next_try_at);
CREATE INDEX IF NOT EXISTS uploads_epoch ON uploads(epoch, source, zipcode);
""",
)
SCHEMA_VERSION = len(MIGRATIONS)


@dataclass(frozen=True, slots=True)
class UploadRow:
    id: int
    epoch: int
    source: str
    zipcode: str
    content_hash: str
    size: int
    record_count: int
    attempts: int


class UploadLedger:
    """Upload rows in SQLite plus the spool of files to send; one thread does all disk work."""

    def __init__(self, path: Path, spool: Path) -> None:
        self.path = Path(path)
        self.spool = Path(spool)
        self._thread = StoreThread("upload-ledger")
        self._db: sqlite3.Connection | None = None

    @classmethod
    async def open(cls, path: Path, spool: Path) -> UploadLedger:
        ledger = cls(path, spool)
        await ledger._run(ledger._connect)
        return ledger

    def _connect(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.spool.mkdir(parents=True, exist_ok=True)
        db = connect(self.path, synchronous="NORMAL")
        try:
            migrate(db, MIGRATIONS, legacy=adopt_meta_version)
        except BaseException:
            db.close()
            raise
        self._db = db

    async def _run(self, work: Callable[[], T]) -> T:
        return await self._thread.run(work)

    @property
    def db(self) -> sqlite3.Connection:
        assert self._db is not None, "ledger not open"
        return self._db

    def _spool_path(self, content_hash: str) -> Path:
        return self.spool / f"{content_hash}.jsonl.gz"

    async def add(self, epoch: int, source: str, zipcode: str, encoded: EncodedFile) -> None:
        """Spool the file (atomically, fsynced) and record it as pending."""
        await self._run(partial(self._add, epoch, source, zipcode, encoded, time.time()))

    def _add(self, epoch: int, source: str, zipcode: str, encoded: EncodedFile, now: float) -> None:
        path = self._spool_path(encoded.content_hash)
        tmp = path.with_name(f".{path.name}.tmp")
        with open(tmp, "wb") as handle:
            handle.write(encoded.body)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)  # a crash leaves the whole file or none; the row comes after
        # Enqueueing the same content again makes it the zipcode's latest file again
        # and gives a failed upload a fresh set of attempts.
        self.db.execute(
            "INSERT INTO uploads (epoch, source, zipcode, content_hash, size, record_count,"
            " state, attempts, next_try_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, ?)"
            " ON CONFLICT (epoch, source, zipcode, content_hash) DO UPDATE SET"
            " created_at=excluded.created_at,"
            " attempts=CASE WHEN state='failed' THEN 0 ELSE attempts END,"
            " next_try_at=CASE WHEN state='failed' THEN excluded.next_try_at ELSE next_try_at END,"
            " state=CASE WHEN state='failed' THEN 'pending' ELSE state END",
            (
                epoch,
                source,
                zipcode,
                encoded.content_hash,
                len(encoded.body),
                len(encoded.records),
                PENDING,
                now,
                now,
            ),
        )
        self._drop_spool_if_unused(encoded.content_hash)

    def _drop_spool_if_unused(self, content_hash: str) -> None:
        in_use = self.db.execute(
            "SELECT 1 FROM uploads WHERE content_hash=? AND state=? LIMIT 1",
            (content_hash, PENDING),
        ).fetchone()
        if in_use is None:
            with contextlib.suppress(FileNotFoundError):
                self._spool_path(content_hash).unlink()

    async def due(self, now: float, limit: int, exclude: Iterable[int] = ()) -> list[UploadRow]:
        """Pending rows whose next try has come, earliest first, except those in ``exclude``."""
        skip = set(exclude)

        def work() -> list[UploadRow]:
            rows = self.db.execute(
                "SELECT id, epoch, source, zipcode, content_hash, size, record_count, attempts"
                " FROM uploads WHERE state=? AND next_try_at<=? ORDER BY next_try_at, id LIMIT ?",
                (PENDING, now, limit + len(skip)),
            ).fetchall()
            return [UploadRow(*r) for r in rows if r[0] not in skip][:limit]

        return await self._run(work)

    async def next_due(self, exclude: Iterable[int] = ()) -> float | None:
        """When the earliest pending row not in ``exclude`` may be tried; None when none."""
        skip = sorted(set(exclude))
        marks = ",".join("?" * len(skip))
        query = "SELECT MIN(next_try_at) FROM uploads WHERE state=?" + (
            f" AND id NOT IN ({marks})" if skip else ""
        )
        return await self._run(lambda: self.db.execute(query, (PENDING, *skip)).fetchone()[0])

    async def counts(self) -> dict[str, int]:
        rows = await self._run(
            lambda: self.db.execute("SELECT state, COUNT(*) FROM uploads GROUP BY state").fetchall()
        )
        return {state: count for state, count in rows}

    async def read_spool(self, content_hash: str) -> bytes | None:
        """The spooled file, or None when it is missing or no longer hashes to its name."""

        def work() -> bytes | None:
            try:
                body = self._spool_path(content_hash).read_bytes()
            except FileNotFoundError:
                return None
            return body if hashlib.sha256(body).hexdigest() == content_hash else None

        return await self._run(work)

    async def mark_uploaded(self, row: UploadRow, key: str) -> None:
        def work() -> None:
            self.db.execute(
                "UPDATE uploads SET state=?, s3_key=?, uploaded_at=?, attempts=attempts+1,"
                " error=NULL WHERE id=?",
                (UPLOADED, key, time.time(), row.id),
            )
            self._drop_spool_if_unused(row.content_hash)

        await self._run(work)

    async def mark_retry(self, row: UploadRow, next_try_at: float, error: str) -> None:
        await self._run(
            lambda: self.db.execute(
                "UPDATE uploads SET attempts=attempts+1, next_try_at=?, error=? WHERE id=?",
                (next_try_at, error[:500], row.id),
            )
        )

    async def mark_failed(self, row: UploadRow, error: str) -> None:
        def work() -> None:
            self.db.execute(
                "UPDATE uploads SET state=?, attempts=attempts+1, error=? WHERE id=?",
                (FAILED, error[:500], row.id),
            )
            self._drop_spool_if_unused(row.content_hash)

        await self._run(work)

    async def files(
        self, epoch: int, pairs: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], ManifestFile]:
        """Per (source, zipcode): the latest file enqueued, when it is uploaded."""
        wanted = set(pairs)

        def work() -> dict[tuple[str, str], ManifestFile]:
            latest: dict[tuple[str, str], tuple] = {}
            for row in self.db.execute(
                "SELECT source, zipcode, state, s3_key, content_hash, record_count, size"
                " FROM uploads WHERE epoch=? ORDER BY created_at, id",
                (epoch,),
            ):
                if (row[0], row[1]) in wanted:
                    latest[(row[0], row[1])] = row
            return {
                pair: ManifestFile(key=r[3], content_hash=r[4], record_count=r[5], size=r[6])
                for pair, r in latest.items()
                if r[2] == UPLOADED and r[3]
            }

        return await self._run(work)

    async def tidy(self, older_than: float) -> tuple[int, int]:
        """Prune finished rows created before ``older_than`` and spool files no row needs.

        Returns (rows pruned, spool files removed). Run at start, when nothing is in flight.
        """

        def work() -> tuple[int, int]:
            pruned = self.db.execute(
                "DELETE FROM uploads WHERE state!=? AND created_at<?", (PENDING, older_than)
            ).rowcount
            needed = {
                r[0]
                for r in self.db.execute(
                    "SELECT content_hash FROM uploads WHERE state=?", (PENDING,)
                )
            }
            removed = 0
            for path in self.spool.iterdir():
                name = path.name.removeprefix(".").removesuffix(".tmp")
                if name.removesuffix(".jsonl.gz") not in needed or path.name.endswith(".tmp"):
                    path.unlink(missing_ok=True)
                    removed += 1
            return pruned, removed

        return await self._run(work)

    async def close(self) -> None:
        def shut() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        await self._run(shut)
        self._thread.shutdown()
