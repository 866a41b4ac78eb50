"""What a consensus cycle sends and gets back, per miner: the ``Assignment`` records.

Every request is an ``Assignment`` that carries the miner (uid, hotkey) it
was sent to; answers are written back into that object, so a response can
never be credited to the wrong miner by position. ``progress()`` and
``restore()`` move it to and from the validator's store, so a restarted
validator resumes where it was. ``tiebreak_answers`` reads the property-id
lookups of tie-breakers the way the consensus core takes them.

Commit, then reveal: before the deadline a zipcode assignment holds the
miner's last commitment (``see_commitment``), when it was first seen and
whether it came with status completed; after the deadline only a revealed
manifest matching it is kept (``vali_utils/exchange.py``).

A revealed manifest is bounded by the assignment it answers: the validator
reads at most ``reveal_cap`` bytes of it, and keeps only entries for the
zipcodes it assigned, each within ``record_bound`` records
(``trim_manifest``); a tie-break answer is read up to ``lookup_cap`` and
keeps only the zpids asked (``trim_lookups``).

    bounds = {z: record_bound(expected[z], config.max_volume_factor) for z in zipcodes}
    status, answer = await client.post(..., max_bytes=reveal_cap(bounds))
    kept, dropped = trim_manifest(answer.manifest, assignment.request, bounds)
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from pydantic import TypeAdapter

from common.manifest import MAX_RECORDS_PER_ZIPCODE, Manifest
from common.protocol import AssignmentStatus, DataAssignmentRequest, PropertyAnswer, Source
from common.signed_client import ANSWER_ENVELOPE_BYTES, answer_cap
from config.consensus import ConsensusConfig
from config.storage import S3Settings
from consensus.answers import hash_to_int
from consensus.assignment import MinerGroup, MinerInfo
from consensus.tiebreak import TiebreakAnswer, TiebreakRequest
from consensus.types import Honeypot
from vali_utils.s3_reader import BucketReader
from vali_utils.store import Progress

_ANSWERS = TypeAdapter(list[PropertyAnswer])


@dataclass(frozen=True)
class S3Access:
    """How the validator reads miners' S3 objects, and the caps on what it reads."""

    reader: BucketReader  # fetches objects, and lists folders to corroborate a 404
    settings: S3Settings


class HoneypotsUnavailable(RuntimeError):
    """The epoch's honeypots could not be had (their source refused or is down)."""


# epoch -> {zipcode: Honeypot}, raising HoneypotsUnavailable
HoneypotSource = Callable[[int], Awaitable[dict[str, Honeypot]]]

SOURCE = Source.ZILLOW_SOLD

# The fewest records a revealed zipcode entry may list. The consensus counts at
# most ConsensusConfig.max_volume_factor x the expected listings of a zipcode,
# but the expected count is an estimate (50 when the block does not know) and a
# dense real zipcode has several hundred listings: 1,000 (20x the default
# expectation) leaves room for the densest without letting one miner's reveal
# grow past a few MB. The manifest model's own cap (5,000) is the ceiling.
MIN_RECORD_BOUND = 1000
# reveal_cap: bytes read per record a bound allows. A compact entry
# ["<12-digit zpid>","<32 hex>"] is 52 bytes (BYTES_PER_RECORD rounds it to 64);
# 2x that covers a serializer with spaces and each zipcode's files (4 of ~1.2 KB).
REVEAL_BYTES_MARGIN = 2
# lookup_cap: one PropertyAnswer is ~120 bytes of JSON; twice that per zpid asked.
BYTES_PER_LOOKUP = 256


@dataclass
class Assignment:
    group: MinerGroup | None  # None for a tie-break lookup
    miner: MinerInfo
    endpoint: str
    request: DataAssignmentRequest
    dispatched_wall: float | None = None  # time.time() when acknowledged
    accepted: bool = False
    status: str | None = None
    completed_after_s: float | None = None  # validator's clock, dispatch -> seen completed
    manifest: Manifest | None = None
    error: str | None = None
    tiebreak: TiebreakRequest | None = None
    property_answers: list[PropertyAnswer] | None = None
    resumed: bool = False  # restored from the store after a restart
    attempts: int = 0  # sends in this run
    retryable: bool = False  # the last send got no answer (timeout, unreachable)
    dirty: bool = False  # changed since it was last written to the store
    released: bool = False  # its manifest went to the engine and was dropped (the store has it)
    # Commit, then reveal (zipcode assignments): the last commitment received before
    # the deadline, the miner's signature of it, when it was first seen, and whether
    # it was seen with status completed (completed_after_s is measured from then).
    commitment: str | None = None
    commitment_signature: str | None = None
    commitment_seen_wall: float | None = None
    commitment_completed: bool = False
    # zipcode -> most records its revealed entry may list (record_bound); the
    # cycle sets it from the block's expected counts, else bound_for derives it.
    record_bounds: dict[str, int] = field(default_factory=dict)
    # What was dropped of the miner's last answer (trim_manifest, trim_lookups), by reason.
    dropped: Counter = field(default_factory=Counter)

    @property
    def collected(self) -> bool:
        """Nothing more to ask the miner for.

        A tie-break lookup: completed with its answers in hand. A zipcode
        assignment: its manifest revealed (or released to the engine); until
        the deadline it is polled, since only its last commitment counts.
        """
        if self.tiebreak is None:
            return self.manifest is not None or self.released
        return self.status == AssignmentStatus.COMPLETED.value and self.property_answers is not None

    @property
    def deadline_wall(self) -> float | None:
        expires = self.request.expires_at
        return expires.timestamp() if expires is not None else None

    def see_commitment(
        self, commitment: str, signature: str | None, completed: bool, now: float
    ) -> bool:
        """Record a commitment received before the deadline; True when something changed.

        A commitment marked completed binds: nothing the miner sends after it
        changes the answer or its time (an early claim earns what it claimed,
        no more). Before that, a new commitment restarts the clock, so
        completion is the first time the final commitment was seen completed.
        """
        if self.commitment_completed:
            return False
        if commitment != self.commitment:
            self.commitment = commitment
            self.commitment_signature = signature
            self.commitment_seen_wall = now
            self.commitment_completed = completed
        elif completed and not self.commitment_completed:
            self.commitment_completed = True
        else:
            return False
        self.completed_after_s = (
            max(0.0, now - self.dispatched_wall)
            if self.commitment_completed and self.dispatched_wall is not None
            else None
        )
        self.dirty = True
        return True

    def release_manifest(self) -> None:
        """Drop the manifest once the engine holds its answers as arrays.

        Manifests are a cycle's largest objects (~80 bytes a record, 200k records
        for 200 assignments); holding them through consensus set the validator's
        peak memory. The stored copy stays: a released assignment is never written again.
        """
        self.released = self.released or self.manifest is not None
        self.manifest = None

    def bounds(self) -> dict[str, int]:
        """zipcode -> record bound, for every zipcode this assignment asked for."""
        expected = self.request.expected_properties_per_zipcode
        if expected is None:
            expected = ConsensusConfig().expected_properties_per_zipcode
        factor = ConsensusConfig().max_volume_factor
        return {
            z: self.record_bounds.get(z) or record_bound(expected, factor)
            for zipcodes in self.request.zipcode_assignments.values()
            for z in zipcodes
        }

    @property
    def kind(self) -> str:
        return "zipcodes" if self.tiebreak is None else "tiebreak"

    def progress(self) -> Progress:
        answer = None
        if self.manifest is not None:
            answer = self.manifest.model_dump_json()
        elif self.property_answers is not None:
            answer = _ANSWERS.dump_json(self.property_answers).decode()
        return Progress(
            self.accepted,
            self.status,
            self.dispatched_wall,
            self.completed_after_s,
            answer,
            self.error,
            self.commitment,
            self.commitment_signature,
            self.commitment_seen_wall,
            self.commitment_completed,
        )

    def restore(self, progress: Progress) -> None:
        self.resumed = True
        self.accepted = progress.accepted
        self.status = progress.status
        self.dispatched_wall = progress.dispatched_wall
        self.completed_after_s = progress.completed_after_s
        self.error = progress.error
        self.commitment = progress.commitment
        self.commitment_signature = progress.commitment_signature
        self.commitment_seen_wall = progress.commitment_seen_wall
        self.commitment_completed = progress.commitment_completed
        if progress.answer_json:
            if self.tiebreak is None:
                self.manifest = Manifest.model_validate_json(progress.answer_json)
            else:
                self.property_answers = _ANSWERS.validate_json(progress.answer_json)


def record_bound(expected: int, max_volume_factor: float) -> int:
    """Most records a revealed entry for a zipcode of ``expected`` listings may list.

    ``max_volume_factor`` x ``expected`` (what the consensus can count), at least
    ``MIN_RECORD_BOUND`` and at most the manifest model's cap.
    """
    wanted = math.ceil(max_volume_factor * max(0, expected))
    return min(MAX_RECORDS_PER_ZIPCODE, max(MIN_RECORD_BOUND, wanted))


def reveal_cap(bounds: Mapping[str, int]) -> int:
    """Bytes worth reading of a reveal answer for zipcodes bounded by ``bounds``."""
    zipcodes = max(1, len(bounds))
    per_zipcode = math.ceil(sum(bounds.values()) / zipcodes) if bounds else 0
    return answer_cap(zipcodes, per_zipcode, sources=1, margin=REVEAL_BYTES_MARGIN)


def lookup_cap(asked: int) -> int:
    """Bytes worth reading of a tie-break answer to ``asked`` property ids."""
    return ANSWER_ENVELOPE_BYTES + max(1, asked) * BYTES_PER_LOOKUP


def trim_manifest(
    manifest: Manifest, request: DataAssignmentRequest, bounds: Mapping[str, int]
) -> tuple[Manifest, Counter]:
    """The manifest with only what ``request`` asked for; returns it and the drops.

    Dropped, counted by reason: entries of a source or zipcode not assigned
    (``unassigned_zipcode``), a second entry for a zipcode (``duplicate_zipcode``,
    the consensus reads only the first) and entries listing more records than
    their bound (``over_record_bound``). An entry over its bound goes whole:
    keeping part of it would disagree with its S3 file, which the manifest
    check would call a mismatch, and no choice of records to keep is right.
    """
    assigned = {(source.value, z) for source, zs in request.zipcode_assignments.items() for z in zs}
    dropped: Counter = Counter()
    kept, seen = [], set()
    for entry in manifest.zipcodes:
        key = (entry.source, entry.zipcode)
        if key not in assigned:
            dropped["unassigned_zipcode"] += 1
        elif key in seen:
            dropped["duplicate_zipcode"] += 1
        elif entry.record_count > bounds.get(entry.zipcode, 0):
            dropped["over_record_bound"] += 1
        else:
            seen.add(key)
            kept.append(entry)
    if not dropped:
        return manifest, dropped
    return manifest.model_copy(update={"zipcodes": kept}), dropped


def trim_lookups(
    answers: list[PropertyAnswer], request: DataAssignmentRequest
) -> tuple[list[PropertyAnswer], Counter]:
    """A tie-breaker's answers to the zpids asked, one each; returns them and the drops."""
    asked = {(source, zpid) for source, zpids in request.property_ids.items() for zpid in zpids}
    dropped: Counter = Counter()
    kept, seen = [], set()
    for answer in answers:
        key = (answer.source, answer.zpid)
        if key not in asked:
            dropped["lookup_not_asked"] += 1
        elif key in seen:
            dropped["lookup_duplicate"] += 1
        else:
            seen.add(key)
            kept.append(answer)
    return kept, dropped


def tiebreak_answers(assignments: list[Assignment]) -> list[TiebreakAnswer]:
    """Each tie-breaker's lookups as the consensus core reads them.

    Only the zpids it was asked about count. A listing found in another
    zipcode than the disputed one is "not there" for that dispute; a zpid the
    miner left out was not answered.
    """
    answers = []
    for a in assignments:
        if a.tiebreak is None or a.property_answers is None:
            continue
        disputed = {int(zpid): zipcode for zipcode, zpid in a.tiebreak.properties}
        records: dict[int, int | None] = {}
        for answer in a.property_answers:
            zpid = int(answer.zpid)
            if answer.source != SOURCE or zpid not in disputed:
                continue
            here = answer.found and answer.zipcode == disputed[zpid]
            records[zpid] = hash_to_int(answer.record_hash) if here else None
        answers.append(TiebreakAnswer(a.miner, a.tiebreak.batch_id, records))
    return answers


def protocol_refusal(status: int, answer: object, ours: int) -> str | None:
    """Why a miner refused our protocol version, or None when that was not the refusal.

    A miner of this version answers 426 naming both versions; one from before
    versioning refuses the unknown ``protocol_version`` field with 422.
    """
    code, message = getattr(answer, "code", ""), str(getattr(answer, "message", ""))
    if status == 426 or code == "unsupported_protocol":
        return message[:300]
    if status == 422 and "protocol_version" in message:
        return (
            f"the miner speaks protocol v1 (it does not know protocol_version); this validator"
            f" speaks v{ours}: the miner must upgrade"
        )
    return None


def describe_answer(status: int, answer: object) -> str:
    if isinstance(answer, DataAssignmentRequest):
        return f"{status} {answer.status}: {answer.error or 'not accepted'}"
    return f"{status} {getattr(answer, 'code', '?')}: {getattr(answer, 'message', '')}"
