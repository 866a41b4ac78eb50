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
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from pydantic import TypeAdapter

from common.manifest import Manifest
from common.protocol import AssignmentStatus, DataAssignmentRequest, PropertyAnswer, Source
from config.storage import S3Settings
from consensus.answers import hash_to_int
from consensus.assignment import MinerGroup, MinerInfo
from consensus.tiebreak import TiebreakAnswer, TiebreakRequest
from consensus.types import Honeypot
from vali_utils.s3_reader import ObjectFetcher
from vali_utils.store import Progress

_ANSWERS = TypeAdapter(list[PropertyAnswer])


@dataclass(frozen=True)
class S3Access:
    """How the validator reads miners' S3 objects, and the caps on what it reads."""

    reader: ObjectFetcher
    settings: S3Settings


class HoneypotsUnavailable(RuntimeError):
    """The epoch's honeypots could not be had (their source refused or is down)."""


# epoch -> {zipcode: Honeypot}, raising HoneypotsUnavailable
HoneypotSource = Callable[[int], Awaitable[dict[str, Honeypot]]]

SOURCE = Source.ZILLOW_SOLD


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
