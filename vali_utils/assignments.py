"""What a consensus cycle sends and gets back, per miner: the ``Assignment`` records.

Every request is an ``Assignment`` that carries the miner (uid, hotkey) it
was sent to; answers are written back into that object, so a response can
never be credited to the wrong miner by position. ``progress()`` and
``restore()`` move it to and from the validator's store, so a restarted
validator resumes where it was. ``tiebreak_answers`` reads the property-id
lookups of tie-breakers the way the consensus core takes them.
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

    @property
    def collected(self) -> bool:
        """Completed, and its answer is in hand (or was, before ``release_manifest``)."""
        answer = self.manifest if self.tiebreak is None else self.property_answers
        return self.status == AssignmentStatus.COMPLETED.value and (
            answer is not None or self.released
        )

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
        )

    def restore(self, progress: Progress) -> None:
        self.resumed = True
        self.accepted = progress.accepted
        self.status = progress.status
        self.dispatched_wall = progress.dispatched_wall
        self.completed_after_s = progress.completed_after_s
        self.error = progress.error
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


def describe_answer(status: int, answer: object) -> str:
    if isinstance(answer, DataAssignmentRequest):
        return f"{status} {answer.status}: {answer.error or 'not accepted'}"
    return f"{status} {getattr(answer, 'code', '?')}: {getattr(answer, 'message', '')}"
