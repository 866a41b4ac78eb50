"""The Data API's SQLite store: issued blocks, honeypots, owner references, status reports,
upload grants.

Methods are synchronous and thread-safe (one connection behind a lock); the
service calls them through ``asyncio.to_thread``. Every statement is
parameterised. WAL lets readers in other worker processes go on while one
writes.

    store = ApiStore.open(path)
    raw = store.save_block(IssuedBlock(epoch_id, block_id, raw, zipcodes, honeypots))  # first wins
    store.block_json(epoch_id)
    store.grant_upload(UploadGrant(hotkey, epoch_id, source, zipcode, content_hash), limits)
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from common import sqlite_db
from common.data_api_models import HoneypotReference
from common.sqlite_db import BUSY_TIMEOUT_MS
from common.sqlite_tx import transaction
from config.data_api import UploadLimits
from data_api.migrations import migrate


def default_db_path(workdir: Path) -> Path:
    return Path(workdir) / "data_api" / "data_api.sqlite"


def connect(path: Path, busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> sqlite3.Connection:
    """An autocommit connection in WAL mode (each statement commits unless in BEGIN)."""
    # NORMAL: a power cut may lose the last instants (nonces, counters), never the file.
    conn = sqlite_db.connect(path, synchronous="NORMAL", busy_timeout_ms=busy_timeout_ms)
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


@dataclass(frozen=True, slots=True)
class IssuedBlock:
    """An epoch's block as the store keeps it: its bytes, zipcodes and honeypots."""

    epoch_id: int
    block_id: str
    block_json: bytes
    zipcodes: Sequence[str]
    honeypots: Sequence[IssuedHoneypot]

    def zipcode_rows(self) -> list[tuple[int, str]]:
        return [(self.epoch_id, z) for z in self.zipcodes]

    def honeypot_rows(self) -> list[tuple[int, str, str, str]]:
        return [
            (self.epoch_id, h.zipcode, h.kind, json.dumps(h.references, sort_keys=True))
            for h in self.honeypots
        ]


@dataclass(frozen=True, slots=True)
class UploadGrant:
    """One file a miner asks to upload: its place (miner, epoch, source, zipcode) and hash."""

    hotkey: str
    epoch_id: int
    source: str
    zipcode: str
    content_hash: str

    @property
    def place(self) -> tuple[str, int, str, str]:
        return (self.hotkey, self.epoch_id, self.source, self.zipcode)


@dataclass(frozen=True, slots=True)
class ReferenceRow:
    zipcode: str
    source: str
    record_count: int
    added_at: float
    added_by: str


@dataclass(frozen=True, slots=True)
class IssuedHoneypot:
    zipcode: str
    kind: str
    references: dict[str, list[list[str]]]  # source -> [[zpid, record_hash], ...]


class ApiStore:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._lock = threading.Lock()
        self._pruned_before = -1  # upload grants of epochs up to this one are pruned

    @classmethod
    def open(cls, path: Path) -> ApiStore:
        """Open (creating and migrating) the database at ``path``."""
        conn = connect(path)
        migrate(conn)
        return cls(conn)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def checkpoint(self) -> None:
        """Copy the WAL into the database without waiting on readers or writers (blocking)."""
        with self._lock:
            self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)")

    # --- blocks ---------------------------------------------------------------------

    def block_json(self, epoch_id: int) -> bytes | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT block_json FROM epochs WHERE epoch_id = ?", (epoch_id,)
            ).fetchone()
        return bytes(row[0]) if row else None

    def recent_zipcodes(self, epoch_id: int, epochs: int) -> list[frozenset[str]]:
        """Zipcodes of the persisted blocks of the ``epochs`` epochs before ``epoch_id``,
        most recent first (an epoch nobody asked for has no block and is skipped)."""
        if epochs <= 0:
            return []
        with self._lock:
            rows = self._conn.execute(
                "SELECT epoch_id, zipcode FROM block_zipcodes "
                "WHERE epoch_id >= ? AND epoch_id < ? ORDER BY epoch_id DESC",
                (epoch_id - epochs, epoch_id),
            ).fetchall()
        by_epoch: dict[int, set[str]] = {}
        for epoch, zipcode in rows:
            by_epoch.setdefault(epoch, set()).add(zipcode)
        return [frozenset(by_epoch[e]) for e in sorted(by_epoch, reverse=True)]

    def save_block(self, block: IssuedBlock, now: float | None = None) -> tuple[bytes, bool]:
        """Persist a block unless the epoch has one already.

        Returns (the epoch's block bytes, whether this call stored them). The
        first write wins, also across processes, so every validator gets the
        bytes that were persisted first.
        """

        epoch_id, block_id, block_json = block.epoch_id, block.block_id, block.block_json

        def work(conn: sqlite3.Connection) -> tuple[bytes, bool]:
            row = conn.execute(
                "SELECT block_json FROM epochs WHERE epoch_id = ?", (epoch_id,)
            ).fetchone()
            if row is not None:
                return bytes(row[0]), False
            conn.execute(
                "INSERT INTO epochs (epoch_id, block_id, block_json, created_at) "
                "VALUES (?, ?, ?, ?)",
                (epoch_id, block_id, block_json, time.time() if now is None else now),
            )
            conn.executemany(
                "INSERT INTO block_zipcodes (epoch_id, zipcode) VALUES (?, ?)", block.zipcode_rows()
            )
            conn.executemany(
                "INSERT INTO block_honeypots (epoch_id, zipcode, kind, references_json) "
                "VALUES (?, ?, ?, ?)",
                block.honeypot_rows(),
            )
            return block_json, True

        with self._lock:
            return transaction(self._conn, work)

    def honeypots(self, epoch_id: int) -> tuple[str, list[IssuedHoneypot]] | None:
        """(block_id, honeypots) of an issued block, or None when the epoch has no block."""
        with self._lock:
            epoch = self._conn.execute(
                "SELECT block_id FROM epochs WHERE epoch_id = ?", (epoch_id,)
            ).fetchone()
            if epoch is None:
                return None
            rows = self._conn.execute(
                "SELECT zipcode, kind, references_json FROM block_honeypots "
                "WHERE epoch_id = ? ORDER BY zipcode",
                (epoch_id,),
            ).fetchall()
        return epoch[0], [IssuedHoneypot(z, k, json.loads(r)) for z, k, r in rows]

    # --- owner references -------------------------------------------------------------

    def upsert_reference(
        self, reference: HoneypotReference, added_by: str, now: float | None = None
    ) -> None:
        zipcode, source, records = reference.zipcode, reference.source.value, reference.records
        records_json = json.dumps([list(r) for r in records])
        with self._lock:
            self._conn.execute(
                "INSERT INTO honeypot_references "
                "(zipcode, source, records_json, record_count, added_at, added_by) "
                "VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (zipcode, source) DO UPDATE SET records_json = excluded.records_json, "
                "record_count = excluded.record_count, added_at = excluded.added_at, "
                "added_by = excluded.added_by",
                (
                    zipcode,
                    source,
                    records_json,
                    len(records),
                    time.time() if now is None else now,
                    added_by,
                ),
            )

    def delete_reference(self, zipcode: str, source: str | None = None) -> int:
        """Remove a zipcode's references (one source, or all); returns how many went."""
        with self._lock:
            if source is None:
                cursor = self._conn.execute(
                    "DELETE FROM honeypot_references WHERE zipcode = ?", (zipcode,)
                )
            else:
                cursor = self._conn.execute(
                    "DELETE FROM honeypot_references WHERE zipcode = ? AND source = ?",
                    (zipcode, source),
                )
        return cursor.rowcount

    def references(self) -> list[ReferenceRow]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT zipcode, source, record_count, added_at, added_by "
                "FROM honeypot_references ORDER BY zipcode, source"
            ).fetchall()
        return [ReferenceRow(*row) for row in rows]

    def reference_zipcodes(self) -> list[str]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT DISTINCT zipcode FROM honeypot_references ORDER BY zipcode"
            ).fetchall()
        return [row[0] for row in rows]

    def reference_records(self, zipcodes: Iterable[str]) -> dict[str, dict[str, list]]:
        """zipcode -> source -> [[zpid, record_hash], ...] for the given zipcodes."""
        wanted = sorted(set(zipcodes))
        out: dict[str, dict[str, list]] = {}
        with self._lock:
            for zipcode in wanted:
                for source, records_json in self._conn.execute(
                    "SELECT source, records_json FROM honeypot_references WHERE zipcode = ?",
                    (zipcode,),
                ):
                    out.setdefault(zipcode, {})[source] = json.loads(records_json)
        return out

    # --- upload grants ---------------------------------------------------------------

    def grant_upload(
        self, grant: UploadGrant, limits: UploadLimits, now: float | None = None
    ) -> int | None:
        """Record an upload grant unless the miner's (epoch, source, zipcode) is at the cap.

        Returns how many distinct files the zipcode then has (a grant for a file
        already granted is a retry: granted again, not counted again), or None
        when a new file would pass the cap. ``BEGIN IMMEDIATE`` makes the count
        and the insert one step across worker processes, so the cap holds when
        a miner spreads its requests over them. Grants of epochs more than
        ``limits.keep_epochs`` back are pruned with the first grant of a new epoch.
        """
        place, content_hash = grant.place, grant.content_hash
        epoch_id, cap, keep_epochs = grant.epoch_id, limits.files_per_zipcode, limits.keep_epochs

        def work(conn: sqlite3.Connection) -> int | None:
            if self._pruned_before < epoch_id - keep_epochs:
                conn.execute(
                    "DELETE FROM upload_grants WHERE epoch_id <= ?", (epoch_id - keep_epochs,)
                )
            count, known = conn.execute(
                "SELECT COUNT(*), COALESCE(SUM(content_hash = ?), 0) FROM upload_grants "
                "WHERE hotkey = ? AND epoch_id = ? AND source = ? AND zipcode = ?",
                (content_hash, *place),
            ).fetchone()
            if known:
                return count  # a retry of a file already granted: not a new file
            if count >= cap:
                return None
            conn.execute(
                "INSERT INTO upload_grants (hotkey, epoch_id, source, zipcode,"
                " content_hash, granted_at) VALUES (?, ?, ?, ?, ?, ?)",
                (*place, content_hash, time.time() if now is None else now),
            )
            return count + 1

        with self._lock:
            count = transaction(self._conn, work)
            # Pruned once per epoch per process, not on every presign.
            self._pruned_before = max(self._pruned_before, epoch_id - keep_epochs)
        return count

    # --- validators' status reports -----------------------------------------------------

    def save_status(
        self, epoch_id: int, hotkey: str, report_json: str, now: float | None = None
    ) -> float:
        """Store (or replace) a validator's report for an epoch; returns the receipt time."""
        received = time.time() if now is None else now
        with self._lock:
            self._conn.execute(
                "INSERT INTO status_reports (epoch_id, validator_hotkey, received_at, report_json) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (epoch_id, validator_hotkey) DO UPDATE SET "
                "received_at = excluded.received_at, report_json = excluded.report_json",
                (epoch_id, hotkey, received, report_json),
            )
        return received

    def status_reports(self, epoch_id: int) -> dict[str, dict]:
        """validator hotkey -> report, for one epoch."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT validator_hotkey, report_json FROM status_reports WHERE epoch_id = ?",
                (epoch_id,),
            ).fetchall()
        return {hotkey: json.loads(report) for hotkey, report in rows}
