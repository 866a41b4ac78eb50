"""Miner answers in the compact form the consensus engine works on.

A miner's answer for one zipcode arrives as a list of manifest entries
(``(zpid, record_hash)`` pairs, ``(zpid, record_hash, fields)`` triples) or
full record dicts. ``answer_from_entries`` turns it into a ``ZipcodeAnswer``
(numpy arrays of zpids and 64-bit hash prefixes, plus the consensus-field
tuples when known) and says, with a counted reason, what it dropped. Nothing a
miner sends can make it raise.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import ValidationError

from common.manifest import Manifest
from common.records import (
    CONSENSUS_FIELDS,
    MAX_ZPID_DIGITS,
    RECORD_HASH_HEX_CHARS,
    PropertyRecord,
    hash_consensus_fields,
)
from config.limits import MAX_RECORDS_PER_ZIPCODE

HASH_PREFIX_HEX = 16  # 64 bits of record_hash: collisions ~1e-19 per pair of records
DEFAULT_MAX_RECORDS_PER_ZIPCODE = MAX_RECORDS_PER_ZIPCODE  # beyond it an answer is padding
_HASH_PATTERN = re.compile(rf"[0-9a-f]{{{RECORD_HASH_HEX_CHARS}}}")
_FIELD_COUNT = len(CONSENSUS_FIELDS)
_ZIPCODE_FIELD = CONSENSUS_FIELDS.index("zipcode")
_ZPID_FIELD = CONSENSUS_FIELDS.index("zpid")


def hash_to_int(record_hash: str) -> int:
    """The signed 64-bit integer the engine compares in place of a hex ``record_hash``."""
    value = int(record_hash[:HASH_PREFIX_HEX], 16)
    return value - (1 << 64) if value >= 1 << 63 else value


@dataclass(frozen=True, slots=True)
class ZipcodeAnswer:
    """One miner's records for one zipcode: unique zpids, aligned hash prefixes and fields."""

    zpids: np.ndarray  # int64, unique
    hashes: np.ndarray  # int64, hash_to_int(record_hash)
    fields: tuple[tuple | None, ...] | None = None  # CONSENSUS_FIELDS tuples, aligned; or None

    def __len__(self) -> int:
        return int(self.zpids.shape[0])

    @classmethod
    def empty(cls) -> ZipcodeAnswer:
        return cls(np.zeros(0, np.int64), np.zeros(0, np.int64), ())

    @classmethod
    def from_pairs(
        cls, pairs: Iterable[tuple[int, str]], fields: Iterable[tuple] | None = None
    ) -> ZipcodeAnswer:
        """Trusted fast path (tests, simulator, benchmark): unique zpids, valid hashes."""
        pairs = list(pairs)
        zpids = np.fromiter((int(z) for z, _ in pairs), np.int64, len(pairs))
        hashes = np.fromiter((hash_to_int(h) for _, h in pairs), np.int64, len(pairs))
        return cls(zpids, hashes, tuple(fields) if fields is not None else None)


def _parse_zpid(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 <= value < 10**MAX_ZPID_DIGITS else None
    if (
        isinstance(value, str)
        and 0 < len(value) <= MAX_ZPID_DIGITS
        and value.isascii()
        and value.isdigit()
    ):
        return int(value)
    return None


def _valid_hash(value: Any) -> bool:
    return isinstance(value, str) and _HASH_PATTERN.fullmatch(value) is not None


def _entry_parts(entry: Any, zipcode: str) -> tuple[int, str, tuple | None] | str:
    """(zpid, record_hash, fields) for a good entry, else the reason it is dropped."""
    if isinstance(entry, PropertyRecord | dict):
        try:
            record = (
                entry if isinstance(entry, PropertyRecord) else PropertyRecord.model_validate(entry)
            )
        except (ValidationError, TypeError, ValueError):
            return "invalid_record"
        if record.zipcode != zipcode:
            return "wrong_zipcode"
        return int(record.zpid), record.record_hash, record.consensus_fields()
    if not isinstance(entry, list | tuple) or len(entry) not in (2, 3):
        return "malformed_entry"
    zpid = _parse_zpid(entry[0])
    if zpid is None:
        return "bad_zpid"
    if not _valid_hash(entry[1]):
        return "bad_hash"
    fields = entry[2] if len(entry) == 3 else None
    if fields is not None:
        if not isinstance(fields, tuple | list) or len(fields) != _FIELD_COUNT:
            return "malformed_fields"
        if fields[_ZIPCODE_FIELD] != zipcode:
            return "wrong_zipcode"
        if str(fields[_ZPID_FIELD]) != str(zpid):
            return "malformed_fields"
        fields = tuple(fields)
        try:
            matches = hash_consensus_fields(fields) == entry[1]
        except (TypeError, ValueError):
            return "malformed_fields"
        if not matches:
            # Fields that do not hash to the claimed record would let a liar
            # steer partial credit and spot-check comparisons.
            return "fields_hash_mismatch"
    return zpid, entry[1], fields


def answer_from_entries(
    zipcode: str,
    entries: Any,
    *,
    max_records: int = DEFAULT_MAX_RECORDS_PER_ZIPCODE,
) -> tuple[ZipcodeAnswer, Counter[str]]:
    """Sanitise one zipcode's entries into a ``ZipcodeAnswer``.

    Takes the zipcode the answer is for, the entries as received and a cap on
    their number. Returns the answer and a Counter of drop reasons
    (``oversized_list``, ``malformed_entry``, ``bad_zpid``, ``bad_hash``,
    ``invalid_record``, ``wrong_zipcode``, ``malformed_fields``, ``fields_hash_mismatch``,
    ``duplicate_zpid``, ``conflicting_duplicate``). Never raises on content.
    """
    dropped: Counter[str] = Counter()
    if not isinstance(entries, list | tuple):
        dropped["malformed_entry"] += 1
        return ZipcodeAnswer.empty(), dropped
    if len(entries) > max_records:
        dropped["oversized_list"] += len(entries) - max_records
        entries = entries[:max_records]
    seen: dict[int, str] = {}
    conflicted: set[int] = set()
    fields_by_zpid: dict[int, tuple | None] = {}
    for entry in entries:
        parts = _entry_parts(entry, zipcode)
        if isinstance(parts, str):
            dropped[parts] += 1
            continue
        zpid, record_hash, fields = parts
        if zpid in seen:
            # The same zpid twice with two values says the miner does not know
            # which is right: neither copy counts.
            if seen[zpid] != record_hash:
                conflicted.add(zpid)
                dropped["conflicting_duplicate"] += 1
            else:
                dropped["duplicate_zpid"] += 1
            continue
        seen[zpid] = record_hash
        fields_by_zpid[zpid] = fields
    kept = [(z, h) for z, h in seen.items() if z not in conflicted]
    if conflicted:
        dropped["conflicting_duplicate"] += len(conflicted)
    has_fields = any(fields_by_zpid[z] is not None for z, _ in kept)
    fields = tuple(fields_by_zpid[z] for z, _ in kept) if has_fields else None
    return ZipcodeAnswer.from_pairs(kept, fields), dropped


def answer_from_digests(
    zipcode: str, digests: Iterable[tuple[int, str, tuple]]
) -> tuple[ZipcodeAnswer, Counter[str]]:
    """Fast path for records already validated by ``common.records.RecordDigester``.

    Applies the same wrong-zipcode and duplicate rules as ``answer_from_entries``.
    """
    dropped: Counter[str] = Counter()
    kept: dict[int, tuple[str, tuple]] = {}
    conflicted: set[int] = set()
    for zpid, record_hash, fields in digests:
        if fields[_ZIPCODE_FIELD] != zipcode:
            dropped["wrong_zipcode"] += 1
        elif zpid in kept:
            if kept[zpid][0] != record_hash:
                conflicted.add(zpid)
                dropped["conflicting_duplicate"] += 1
            else:
                dropped["duplicate_zpid"] += 1
        else:
            kept[zpid] = (record_hash, fields)
    for zpid in conflicted:
        del kept[zpid]
    if conflicted:  # the first copies go too, counted as in answer_from_entries
        dropped["conflicting_duplicate"] += len(conflicted)
    return (
        ZipcodeAnswer.from_pairs(
            [(z, h) for z, (h, _) in kept.items()], [f for _, f in kept.values()]
        ),
        dropped,
    )


def answers_from_manifest(
    manifest: Manifest, assigned: Iterable[str], *, source: str | None = None
) -> tuple[dict[str, ZipcodeAnswer], Counter[str]]:
    """The engine's answers from a validated manifest, for the zipcodes assigned.

    Takes the manifest, the zipcodes the miner was assigned and optionally the
    one source that counts (others are dropped). Entries for other zipcodes
    and second entries for a zipcode are dropped with a counted reason.
    """
    wanted = set(assigned)
    dropped: Counter[str] = Counter()
    answers: dict[str, ZipcodeAnswer] = {}
    for entry in manifest.zipcodes:
        if entry.zipcode not in wanted:
            dropped["unassigned_zipcode"] += 1
            continue
        if source is not None and entry.source != source:
            dropped["other_source"] += 1
            continue
        if entry.zipcode in answers:
            dropped["duplicate_zipcode"] += 1
            continue
        answer, reasons = answer_from_entries(entry.zipcode, entry.records)
        answers[entry.zipcode] = answer
        dropped.update(reasons)
    return answers, dropped
