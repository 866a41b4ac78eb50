"""The validator's state store: cycles, their progress, verdicts, scores and weights in SQLite.

A validator killed at any point (``kill -9``) and started again resumes the
cycle it was in from here:

- the eligible miners of the cycle are kept, so the plan after a restart is
  the plan before it, whatever the metagraph says now;
- every assignment's progress (acknowledged, status, when it was sent, the
  miner's last commitment before the deadline with when it was first seen
  and whether it came completed, the manifest revealed or lookups collected)
  is written as it changes, so nothing collected is lost, nothing
  acknowledged is sent again and completion times do not move;
- spot-check verdicts are kept, so a check is not repeated with another answer;
- the scoring state and the cycle's "scored" mark are written in one
  transaction, so a cycle is counted exactly once;
- weights are recorded with the time they were set, only when they were.

One connection in WAL mode, used from a single worker thread so the event
loop never waits on the disk. The schema is versioned; ``MIGRATIONS[i]``
takes a database from version ``i`` to ``i + 1``.

A store that cannot be trusted is never used nor repaired: ``open`` checks the
file first and raises ``StoreUnusable`` (``StoreCorrupt``: not a database,
truncated, damaged; ``StoreWithoutHistory``: an existing file with no schema,
or a store that had cycles and scores and holds none now; ``StoreTooNew``),
leaving its bytes as they are (``vali_utils/store_file.py``). Only a missing
file is a new store, and it is made under another name and renamed into
place, so a crash while creating it never leaves an empty file behind.

    store = await ValidatorStore.open(state_dir / "validator.sqlite")
    miners, endpoints = await store.begin_cycle(epoch, miners, endpoints)
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from common.sqlite_db import connect, migrate, schema_version
from common.sqlite_tx import StoreThread, transaction
from consensus.assignment import MinerInfo
from consensus.scoring import ScoringState
from vali_utils.store_file import (
    HISTORY_KEY,
    SIDECARS,
    check_store_file,
    has_history,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Phases of a cycle, in order. "scored" means the scoring state includes it.
PHASES = ("planned", "dispatched", "collected", "tiebreaks", "scored", "done")

MIGRATIONS: tuple[str, ...] = (
    # 0 -> 1
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE cycles (
        epoch INTEGER PRIMARY KEY,
        phase TEXT NOT NULL,
        plan_hash TEXT,
        miners_json TEXT NOT NULL,
        started_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        report_json TEXT
    );
    CREATE TABLE assignments (
        epoch INTEGER NOT NULL,
        request_id TEXT NOT NULL,
        hotkey TEXT NOT NULL,
        kind TEXT NOT NULL,
        accepted INTEGER NOT NULL DEFAULT 0,
        status TEXT,
        dispatched_wall REAL,
        completed_after_s REAL,
        answer_json TEXT,
        error TEXT,
        PRIMARY KEY (epoch, request_id, hotkey)
    );
    CREATE TABLE verdicts (
        epoch INTEGER NOT NULL,
        zipcode TEXT NOT NULL,
        zpid INTEGER NOT NULL,
        record_hash INTEGER NOT NULL,
        verdict TEXT NOT NULL,
        PRIMARY KEY (epoch, zipcode, zpid, record_hash)
    );
    CREATE TABLE scoring (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        state_json TEXT NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE weights (
        epoch INTEGER PRIMARY KEY,
        weights_json TEXT NOT NULL,
        attempted_at REAL NOT NULL,
        set_at REAL
    );
    """,
    # 1 -> 2: commit, then reveal (docs/architecture.md §3.7). The last commitment a miner sent
    # before the deadline, its hotkey's signature of it, when it was first seen
    # and whether it was seen with status completed.
    """
    ALTER TABLE assignments ADD COLUMN commitment TEXT;
    ALTER TABLE assignments ADD COLUMN commitment_signature TEXT;
    ALTER TABLE assignments ADD COLUMN commitment_seen_wall REAL;
    ALTER TABLE assignments ADD COLUMN commitment_completed INTEGER NOT NULL DEFAULT 0
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)
KEEP_EPOCHS = 12  # cycles whose assignments and verdicts are kept (two days at 4 h)
REPORT_EPOCHS = 42  # cycles whose reports are kept in the store (a week at 4 h)


@dataclass(slots=True)
class Progress:
    """What the store knows of one assignment of a cycle."""

    accepted: bool
    status: str | None
    dispatched_wall: float | None
    completed_after_s: float | None
    answer_json: str | None
    error: str | None
    commitment: str | None = None
    commitment_signature: str | None = None
    commitment_seen_wall: float | None = None
    commitment_completed: bool = False


class ValidatorStore:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._thread = StoreThread("validator-store")
        self._db: sqlite3.Connection | None = None

    @classmethod
    async def open(cls, path: Path, legacy_state: Path | None = None) -> ValidatorStore:
        """Open (creating or migrating) the store; import a legacy JSON scoring state once.

        Raises StoreUnusable, with the file untouched, for a store that cannot
        be trusted (see the module docstring); a missing file is a new store.
        """
        store = cls(path)
        try:
            await store.run(lambda _: store._connect(legacy_state))
        except BaseException:
            store._thread.shutdown(wait=False)
            raise
        return store

    def _connect(self, legacy_state: Path | None) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not check_store_file(self.path, SCHEMA_VERSION):
            _create(self.path)
            logger.info("%s: a new state store", self.path)
        db = connect(self.path, synchronous="FULL")  # a "scored" mark must survive a power cut
        before = schema_version(db)
        if migrate(db, MIGRATIONS) != before:
            logger.info("%s: schema migrated to version %d", self.path, SCHEMA_VERSION)
        self._db = db
        if legacy_state is not None and legacy_state.exists() and self._scoring_row() is None:
            self._import_legacy(legacy_state)
        if has_history(db):  # stores from before the mark get it now
            db.execute(
                "INSERT OR IGNORE INTO meta VALUES (?, ?)", (HISTORY_KEY, str(int(time.time())))
            )

    def _import_legacy(self, path: Path) -> None:
        try:
            state = ScoringState.from_dict(json.loads(path.read_text()))
        except (OSError, ValueError) as exc:
            logger.error("legacy scoring state %s unreadable (%s); not imported", path, exc)
            return
        self._write_scoring(self._db, state)  # type: ignore[arg-type]
        path.rename(path.with_name(path.name + ".imported"))
        logger.info("imported the scoring state of %d miners from %s", len(state.miners), path)

    async def run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work(connection)`` on the store's thread."""
        return await self._thread.run(lambda: work(self._db))  # type: ignore[arg-type]

    async def close(self) -> None:
        await self._thread.close(lambda: self._db)

    # Cycles ---------------------------------------------------------------

    async def begin_cycle(
        self, epoch: int, miners: list[MinerInfo], endpoints: dict[str, str]
    ) -> tuple[list[MinerInfo], dict[str, str], bool]:
        """The cycle's eligible miners: those stored for it, or these (then stored).

        Returns (miners, endpoints, resumed).
        """

        def work(db: sqlite3.Connection):
            row = db.execute("SELECT miners_json FROM cycles WHERE epoch=?", (epoch,)).fetchone()
            if row is not None:
                stored = json.loads(row[0])
                kept = [MinerInfo(m["uid"], m["hotkey"], m["coldkey"]) for m in stored]
                return kept, {m["hotkey"]: m["endpoint"] for m in stored}, True
            document = [
                {
                    "uid": m.uid,
                    "hotkey": m.hotkey,
                    "coldkey": m.coldkey,
                    "endpoint": endpoints[m.hotkey],
                }
                for m in miners
            ]
            now = time.time()
            db.execute(
                "INSERT INTO cycles (epoch, phase, miners_json, started_at, updated_at)"
                " VALUES (?, 'planned', ?, ?, ?)",
                (epoch, json.dumps(document), now, now),
            )
            return miners, endpoints, False

        return await self.run(work)

    async def set_phase(self, epoch: int, phase: str, plan_hash: str | None = None) -> None:
        if phase not in PHASES:
            raise ValueError(f"unknown phase {phase!r}")
        await self.run(
            lambda db: db.execute(
                "UPDATE cycles SET phase=?, updated_at=?, plan_hash=COALESCE(?, plan_hash)"
                " WHERE epoch=?",
                (phase, time.time(), plan_hash, epoch),
            )
        )

    async def phase(self, epoch: int) -> str | None:
        row = await self.run(
            lambda db: db.execute("SELECT phase FROM cycles WHERE epoch=?", (epoch,)).fetchone()
        )
        return row[0] if row else None

    async def unfinished_cycle(self) -> tuple[int, str] | None:
        """The latest cycle a previous run left before "done": (epoch, phase)."""
        row = await self.run(
            lambda db: db.execute(
                "SELECT epoch, phase FROM cycles WHERE phase != 'done' ORDER BY epoch DESC LIMIT 1"
            ).fetchone()
        )
        return (int(row[0]), str(row[1])) if row else None

    async def cycles(self, limit: int = 10) -> list[dict]:
        rows = await self.run(
            lambda db: db.execute(
                "SELECT epoch, phase, plan_hash, started_at, updated_at, report_json FROM cycles"
                " ORDER BY epoch DESC LIMIT ?",
                (limit,),
            ).fetchall()
        )
        return [
            {
                "epoch": r[0],
                "phase": r[1],
                "plan_hash": r[2],
                "started_at": r[3],
                "updated_at": r[4],
                "report": json.loads(r[5]) if r[5] else None,
            }
            for r in rows
        ]

    # Assignment progress ---------------------------------------------------

    async def progress(self, epoch: int) -> dict[tuple[str, str], Progress]:
        rows = await self.run(
            lambda db: db.execute(
                "SELECT request_id, hotkey, accepted, status, dispatched_wall,"
                " completed_after_s, answer_json, error, commitment, commitment_signature,"
                " commitment_seen_wall, commitment_completed FROM assignments WHERE epoch=?",
                (epoch,),
            ).fetchall()
        )
        return {
            (r[0], r[1]): Progress(bool(r[2]), *r[3:11], commitment_completed=bool(r[11]))
            for r in rows
        }

    async def save_progress(
        self, epoch: int, kind: str, items: Iterable[tuple[str, str, Progress]]
    ) -> None:
        """Upsert (request_id, hotkey, progress) rows of one cycle in one transaction."""
        rows = [
            (
                epoch,
                request_id,
                hotkey,
                kind,
                int(p.accepted),
                p.status,
                p.dispatched_wall,
                p.completed_after_s,
                p.answer_json,
                p.error,
                p.commitment,
                p.commitment_signature,
                p.commitment_seen_wall,
                int(p.commitment_completed),
            )
            for request_id, hotkey, p in items
        ]
        if not rows:
            return
        await self.run(
            lambda db: transaction(
                db,
                lambda d: d.executemany(
                    "INSERT OR REPLACE INTO assignments (epoch, request_id, hotkey, kind,"
                    " accepted, status, dispatched_wall, completed_after_s, answer_json, error,"
                    " commitment, commitment_signature, commitment_seen_wall,"
                    " commitment_completed) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    rows,
                ),
            )
        )

    # Verdicts ---------------------------------------------------------------

    async def verdicts(self, epoch: int) -> dict[tuple[str, int, int], str]:
        rows = await self.run(
            lambda db: db.execute(
                "SELECT zipcode, zpid, record_hash, verdict FROM verdicts WHERE epoch=?",
                (epoch,),
            ).fetchall()
        )
        return {(r[0], int(r[1]), int(r[2])): str(r[3]) for r in rows}

    async def save_verdicts(self, epoch: int, items: Iterable[tuple[str, int, int, str]]) -> None:
        rows = [(epoch, z, zpid, h, v) for z, zpid, h, v in items]
        if rows:
            await self.run(
                lambda db: transaction(
                    db,
                    lambda d: d.executemany(
                        "INSERT OR REPLACE INTO verdicts VALUES (?, ?, ?, ?, ?)", rows
                    ),
                )
            )

    # Scoring and weights ----------------------------------------------------

    def _scoring_row(self) -> tuple | None:
        return self._db.execute("SELECT state_json FROM scoring WHERE id=1").fetchone()  # type: ignore[union-attr]

    @staticmethod
    def _write_scoring(db: sqlite3.Connection, state: ScoringState) -> None:
        now = time.time()
        db.execute(
            "INSERT OR REPLACE INTO scoring VALUES (1, ?, ?)", (json.dumps(state.to_dict()), now)
        )
        # From now on an empty store is a lost history, not a new one (check_store_file).
        db.execute("INSERT OR IGNORE INTO meta VALUES (?, ?)", (HISTORY_KEY, str(int(now))))

    async def scoring_state(self) -> ScoringState:
        row = await self.run(lambda _: self._scoring_row())
        if row is None:
            return ScoringState()
        return ScoringState.from_dict(json.loads(row[0]))

    async def save_scoring(self, state: ScoringState) -> None:
        """A scoring state not tied to a cycle (an S3 evaluation pass)."""
        await self.run(lambda db: transaction(db, lambda d: self._write_scoring(d, state)))

    async def commit_cycle(self, epoch: int, state: ScoringState, report: dict) -> None:
        """The new scoring state and the cycle's "scored" mark, atomically."""

        def work(db: sqlite3.Connection) -> None:
            self._write_scoring(db, state)
            db.execute(
                "UPDATE cycles SET phase='scored', updated_at=?, report_json=? WHERE epoch=?",
                (time.time(), json.dumps(report), epoch),
            )
            # Old cycles' details are not needed to resume anything; their reports
            # (per-zipcode outcomes: ~0.6 MB a cycle at 1,000 zipcodes) go after
            # REPORT_EPOCHS, the cycle's row (epoch, phase, plan hash) stays.
            db.execute("DELETE FROM assignments WHERE epoch < ?", (epoch - KEEP_EPOCHS,))
            db.execute("DELETE FROM verdicts WHERE epoch < ?", (epoch - KEEP_EPOCHS,))
            db.execute(
                "UPDATE cycles SET report_json=NULL WHERE epoch < ? AND report_json IS NOT NULL",
                (epoch - REPORT_EPOCHS,),
            )

        await self.run(lambda db: transaction(db, work))

    async def record_weights(self, epoch: int, weights: dict[int, float], ok: bool) -> None:
        """A weight-setting attempt; ``set_at`` is written only when it succeeded."""
        now = time.time()

        def work(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT OR REPLACE INTO weights VALUES (?, ?, ?, ?)",
                (
                    epoch,
                    json.dumps({str(k): v for k, v in weights.items()}),
                    now,
                    now if ok else None,
                ),
            )
            db.execute("UPDATE cycles SET phase='done', updated_at=? WHERE epoch=?", (now, epoch))

        await self.run(lambda db: transaction(db, work))

    async def last_weights(self) -> dict | None:
        row = await self.run(
            lambda db: db.execute(
                "SELECT epoch, weights_json, attempted_at, set_at FROM weights"
                " ORDER BY attempted_at DESC LIMIT 1"
            ).fetchone()
        )
        if row is None:
            return None
        last_ok = await self.run(
            lambda db: db.execute("SELECT MAX(set_at) FROM weights").fetchone()[0]
        )
        return {
            "epoch": row[0],
            "weights": json.loads(row[1]),
            "attempted_at": row[2],
            "set_at": row[3],
            "last_success_at": last_ok,
        }


def _create(path: Path) -> None:
    """A new store at ``path``, made aside and renamed into place (never half made)."""
    making = Path(f"{path}.new")
    for leftover in (making, *(Path(f"{making}{s}") for s in SIDECARS)):
        leftover.unlink(missing_ok=True)  # a crash while creating: never data
    db = connect(making, synchronous="FULL")
    try:
        migrate(db, MIGRATIONS)
    finally:
        db.close()  # the last connection folds the WAL into the file
    os.replace(making, path)
