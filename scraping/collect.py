"""What a miner answers to ``collect``: read from its store, never from memory.

``collect_rows`` reads a validator's request and the work done for it (the
zipcodes and records, or the property lookups); ``manifest_from_rows`` turns
zipcode work into the ``Manifest`` the validator checks; ``reply`` sends the
request back with the miner's status. Everything is keyed by the asking
validator's hotkey, so one validator cannot read another's request ids.
"""

from __future__ import annotations

import json

from common.manifest import Manifest, ManifestFile, ZipcodeManifest
from common.protocol import AssignmentStatus, DataAssignmentRequest, Progress, PropertyAnswer


def collect_rows(db, validator: str, request_id: str):
    """What the store holds for a validator's request: None when it never asked it."""
    row = db.execute(
        "SELECT a.key, a.status, a.zipcodes_total, a.request_json FROM requests r "
        "JOIN assignments a ON a.key = r.key WHERE r.validator=? AND r.request_id=?",
        (validator, request_id),
    ).fetchone()
    if row is None:
        return None
    key, status, total, request_json = row
    request = json.loads(request_json)
    if request.get("assignment_mode") == "property_ids":
        rows = db.execute(
            "SELECT source, zpid, found, zipcode, record_hash FROM properties"
            " WHERE key=? AND done=1 ORDER BY source, zpid",
            (key,),
        ).fetchall()
        return "property_ids", status, total, rows
    zipcode_rows = db.execute(
        "SELECT source, zipcode FROM zipcodes WHERE key=? AND done=1 ORDER BY source, zipcode",
        (key,),
    ).fetchall()
    record_rows = db.execute(
        "SELECT source, zipcode, zpid, record_hash FROM records WHERE key=?"
        " ORDER BY source, zipcode, zpid",
        (key,),
    ).fetchall()
    return (
        "zipcodes",
        status,
        total,
        zipcode_rows,
        record_rows,
        request.get("epoch_id"),
        request.get("epoch_nonce"),
    )


def reply(
    request: DataAssignmentRequest,
    status: AssignmentStatus,
    *,
    accepted: bool | None = None,
    error: str | None = None,
    progress: Progress | None = None,
    manifest: Manifest | None = None,
    property_answers: list[PropertyAnswer] | None = None,
) -> DataAssignmentRequest:
    """The request sent back with the miner's status and what it has."""
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
