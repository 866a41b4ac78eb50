"""The store's side of a miner's ``collect`` and ``reveal`` answers (``scraping/answers.py``).

Commit, then reveal (docs/architecture.md §3.7). Before the deadline a ``collect`` answer
carries status, progress and a commitment (``common.manifest.manifest_commitment``)
to the manifest of the zipcodes finished so far, never the manifest: a
validator, or anyone re-sending the same assignment content, learns nothing
a copier could use. Zipcodes are numbered in the order they were finished
(``zipcodes.done_order``) and every commitment issued is stored with the
number of zipcodes it covered, so ``reveal`` rebuilds the manifest of any
commitment the miner issued, also after a restart, from the first that many
zipcodes. A finished zipcode's records never change, so the same count gives
the same manifest and the same commitment.

    found = stored_assignment(db, validator_hotkey, request_id)   # None: never asked
    work = commit_work(db, found, hotkey)                         # collect: WorkCommitment
    covered = covered_by(db, found.key, commitment)               # reveal: None if never issued

Everything is keyed by the asking validator's hotkey, so one validator cannot
read another's request ids.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass

from common.manifest import Manifest, ManifestFile, ZipcodeManifest, manifest_commitment
from common.protocol import AssignmentStatus, DataAssignmentRequest, Progress, PropertyAnswer


@dataclass(frozen=True, slots=True)
class StoredAssignment:
    """One assignment as the store holds it, found through a validator's request id."""

    key: str
    status: str
    zipcodes_total: int
    deadline_at: float | None
    salt: str
    request: dict

    @property
    def lookups(self) -> bool:
        return self.request.get("assignment_mode") == "property_ids"

    @property
    def epoch_id(self) -> str | None:
        return self.request.get("epoch_id")

    @property
    def epoch_nonce(self) -> str | None:
        return self.request.get("epoch_nonce")


@dataclass(frozen=True, slots=True)
class FinishedWork:
    """Finished zipcodes (in the order they were finished) and their records."""

    zipcode_rows: list[tuple[str, str]]  # (source, zipcode)
    record_rows: list[tuple[str, str, str, str]]  # (source, zipcode, zpid, record_hash)


def stored_assignment(
    db: sqlite3.Connection, validator: str, request_id: str
) -> StoredAssignment | None:
    """The assignment behind a validator's request id: None when it never asked it."""
    row = db.execute(
        "SELECT a.key, a.status, a.zipcodes_total, a.deadline_at, a.salt, a.request_json"
        " FROM requests r JOIN assignments a ON a.key = r.key"
        " WHERE r.validator=? AND r.request_id=?",
        (validator, request_id),
    ).fetchone()
    if row is None:
        return None
    key, status, total, deadline_at, salt, request_json = row
    return StoredAssignment(key, status, total, deadline_at, salt, json.loads(request_json))


def answered_lookups(db: sqlite3.Connection, key: str) -> list[tuple]:
    """Answered property lookups: (source, zpid, found, zipcode, record_hash)."""
    return db.execute(
        "SELECT source, zpid, found, zipcode, record_hash FROM properties"
        " WHERE key=? AND done=1 ORDER BY source, zpid",
        (key,),
    ).fetchall()


def finished_work(db: sqlite3.Connection, key: str, covered: int | None = None) -> FinishedWork:
    """The first ``covered`` zipcodes finished (all of them when None) and their records."""
    limit = covered if covered is not None else -1  # LIMIT -1: no limit
    zipcode_rows = db.execute(
        "SELECT source, zipcode FROM zipcodes WHERE key=? AND done=1 ORDER BY done_order LIMIT ?",
        (key, limit),
    ).fetchall()
    wanted = set(zipcode_rows)
    record_rows = [
        row
        for row in db.execute(
            "SELECT source, zipcode, zpid, record_hash FROM records WHERE key=?"
            " ORDER BY source, zipcode, zpid",
            (key,),
        )
        if (row[0], row[1]) in wanted
    ]
    return FinishedWork([tuple(r) for r in zipcode_rows], record_rows)


@dataclass(frozen=True, slots=True)
class WorkCommitment:
    """The commitment to the work finished so far, and what it covers."""

    commitment: str
    zipcodes: int  # finished zipcodes covered
    records: int
    issued: bool  # stored before: a validator may already hold it


def commit_work(
    db: sqlite3.Connection, assignment: StoredAssignment, hotkey: str
) -> WorkCommitment:
    """The commitment to the work finished so far.

    Polls come from every validator every few seconds: when no zipcode has
    finished since a commitment was issued, that commitment is the answer (the
    same count gives the same manifest), read by the index on
    ``zipcodes_covered``; the manifest is rebuilt and hashed only after a
    zipcode finishes. Runs on the store's thread, off the event loop.
    """
    covered, records = db.execute(
        "SELECT COUNT(*), COALESCE(SUM(record_count), 0) FROM zipcodes WHERE key=? AND done=1",
        (assignment.key,),
    ).fetchone()
    row = db.execute(
        "SELECT commitment FROM commitments WHERE key=? AND zipcodes_covered=? LIMIT 1",
        (assignment.key, covered),
    ).fetchone()
    if row is not None:
        return WorkCommitment(row[0], int(covered), int(records), True)
    work = finished_work(db, assignment.key)
    manifest = manifest_from_rows(
        hotkey,
        assignment.epoch_id,
        assignment.epoch_nonce,
        work.zipcode_rows,
        work.record_rows,
        {},
    )
    commitment = manifest_commitment(manifest, assignment.salt)
    return WorkCommitment(commitment, len(work.zipcode_rows), len(work.record_rows), False)


def record_commitment(
    db: sqlite3.Connection, key: str, commitment: str, covered: int, issued_at: float
) -> None:
    """Remember an issued commitment and how many zipcodes it covered (reveal rebuilds it)."""
    db.execute(
        "INSERT OR IGNORE INTO commitments (key, commitment, zipcodes_covered, issued_at)"
        " VALUES (?, ?, ?, ?)",
        (key, commitment, covered, issued_at),
    )


def covered_by(db: sqlite3.Connection, key: str, commitment: str) -> int | None:
    """How many zipcodes an issued commitment covered; None when it was never issued."""
    row = db.execute(
        "SELECT zipcodes_covered FROM commitments WHERE key=? AND commitment=?",
        (key, commitment),
    ).fetchone()
    return None if row is None else int(row[0])


def reply(
    request: DataAssignmentRequest,
    status: AssignmentStatus,
    *,
    accepted: bool | None = None,
    error: str | None = None,
    progress: Progress | None = None,
    manifest: Manifest | None = None,
    property_answers: list[PropertyAnswer] | None = None,
    commitment: str | None = None,
    commitment_signature: str | None = None,
    salt: str | None = None,
) -> DataAssignmentRequest:
    """The request sent back with the miner's status and what it may show now."""
    return request.model_copy(
        update={
            "property_answers": property_answers,
            "accepted": accepted
            if accepted is not None
            else status not in (AssignmentStatus.REJECTED, AssignmentStatus.FAILED),
            "status": status,
            "error": error,
            "progress": progress,
            "manifest": manifest,
            "commitment": commitment,
            "commitment_signature": commitment_signature,
            "salt": salt,
        }
    )


def manifest_from_rows(
    hotkey: str,
    epoch_id: str | None,
    nonce: str | None,
    zipcode_rows: list[tuple[str, str]],
    record_rows: list[tuple[str, str, str, str]],
    files: dict[tuple[str, str], list[ManifestFile]],
) -> Manifest:
    """The manifest of the zipcodes done: their (zpid, hash) lists and uploaded files."""
    records: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for source, zipcode, zpid, record_hash in record_rows:
        records.setdefault((source, zipcode), []).append((zpid, record_hash))
    entries = [
        ZipcodeManifest(
            zipcode=zipcode,
            source=source,
            record_count=len(records.get((source, zipcode), [])),
            records=records.get((source, zipcode), []),
            files=files.get((source, zipcode), []),
        )
        for source, zipcode in zipcode_rows
    ]
    return Manifest(epoch_id=epoch_id, epoch_nonce=nonce, miner_hotkey=hotkey, zipcodes=entries)
