"""Plain data passed into and out of the consensus engine."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from consensus.answers import ZipcodeAnswer
from consensus.assignment import MinerInfo


@dataclass(frozen=True, slots=True)
class GroupSubmission:
    """What one miner returned for one group of the plan.

    ``answers`` maps zipcode -> answer; an assigned zipcode missing from it was
    not answered. ``completed_after_s`` is measured by the validator (dispatch
    to the first ``collect`` that saw the work completed) or the S3 server,
    never taken from the miner; None when the miner never completed.
    """

    miner: MinerInfo
    batch_id: int
    overlap_group: int
    answers: Mapping[str, ZipcodeAnswer]
    completed_after_s: float | None = None


class HoneypotKind(StrEnum):
    REFERENCE = "reference"  # the owner knows the listings
    NO_RESIDENTIAL = "no_residential"  # no residential listing can exist there


@dataclass(frozen=True, slots=True)
class Honeypot:
    """A honeypot zipcode revealed after the deadline, with its reference answer."""

    zipcode: str
    kind: HoneypotKind
    reference: Mapping[int, str] = field(default_factory=dict)  # zpid -> record_hash


class Verdict(StrEnum):
    MATCH = "match"  # the validator's own source agrees on the key fields
    MISMATCH = "mismatch"  # the listing exists, key fields differ
    NOT_FOUND = "not_found"  # the listing does not exist
    NO_EVIDENCE = "no_evidence"  # the source failed: says nothing about anyone


@dataclass(frozen=True, slots=True)
class SpotCheckRequest:
    """A record the validator must verify through its own source."""

    zipcode: str
    zpid: int
    record_hash: int  # hash_to_int of the claimed record
    fields: tuple | None  # the claimed consensus fields, when known
    batch_id: int
    reason: str  # "disputed" or "sample"


class FlagKind(StrEnum):
    FABRICATION = "fabrication"
    COPYING = "copying"
    CARTEL = "cartel"
    HONEYPOT = "honeypot"
    SPOT_CHECK = "spot_check"


@dataclass(frozen=True, slots=True)
class Flag:
    """A penalty-bearing finding against one miner, with the evidence behind it."""

    hotkey: str
    kind: FlagKind
    evidence: dict


class ZipcodeVerdict(StrEnum):
    """One assigned zipcode of one miner, as the cycle saw it."""

    CONFIRMED = "confirmed"  # answered; the groups agreed with confidence (evidence)
    DISPUTED = "disputed"  # answered; the groups disagreed on some of its records
    NO_EVIDENCE = "no_evidence"  # answered; confidence too low to judge anyone
    NOT_ANSWERED = "not_answered"


@dataclass(slots=True)
class MinerCycleResult:
    """Everything one cycle says about one miner; scoring turns it into credibility and score."""

    uid: int
    hotkey: str
    coldkey: str
    assigned_zipcodes: int = 0
    answered_zipcodes: int = 0
    evidence_zipcodes: int = 0
    evidence_volume: float = 0.0  # sum of zipcode volumes where the cycle had evidence
    neutral_volume: float = 0.0  # volumes of answered no-evidence zipcodes
    unanswered_volume: float = 0.0  # volumes of unanswered no-evidence zipcodes
    earned: float = 0.0  # sum of quality x volume x bonus x completeness
    quality_sum: float = 0.0  # sum of quality x volume (0 for unanswered evidence zipcodes)
    precision_sum: float = 0.0  # volume-weighted, over answered evidence zipcodes
    recall_sum: float = 0.0
    answered_evidence_volume: float = 0.0
    fast_groups: int = 0
    flags: list[Flag] = field(default_factory=list)
    # zipcode -> ZipcodeVerdict value: what the cycle made of each assigned zipcode
    # (the status page's "why"; scoring does not read it).
    zipcodes: dict[str, str] = field(default_factory=dict)

    @property
    def precision(self) -> float | None:
        if self.answered_evidence_volume <= 0:
            return None
        return self.precision_sum / self.answered_evidence_volume

    @property
    def recall(self) -> float | None:
        if self.answered_evidence_volume <= 0:
            return None
        return self.recall_sum / self.answered_evidence_volume

    @property
    def quality(self) -> float | None:
        if self.evidence_volume <= 0:
            return None
        return self.quality_sum / self.evidence_volume


@dataclass(frozen=True, slots=True)
class ZipcodeOutcome:
    zipcode: str
    batch_id: int
    confidence: float
    agreement: float
    margin: float
    responders: int
    valid_groups: int
    confirmed: int  # records in the final consensus
    disputed: int  # records some valid group accepted and another did not
    honeypot: bool = False


@dataclass(frozen=True, slots=True)
class CycleResult:
    zipcodes: dict[str, ZipcodeOutcome]
    miners: dict[str, MinerCycleResult]  # by hotkey
    flags: list[Flag]
    captured_groups: list[tuple[int, int]]  # (batch_id, overlap_group)
    dropped: dict[str, int]  # reason -> count of ignored submissions or answers
    # disputes asked about, resolved, settled in the consensus (empty without tie-breaks)
    tiebreak: dict[str, int] = field(default_factory=dict)
    # Miners of the plan whose cycle says nothing (their S3 check could not be
    # made): scoring leaves them as they were, where a miner absent from the
    # plan earns nothing.
    excused: frozenset[str] = frozenset()

    def batch_confidence(self) -> dict[int, float]:
        """Mean zipcode confidence per batch (honeypots excluded)."""
        sums: dict[int, list[float]] = {}
        for outcome in self.zipcodes.values():
            if not outcome.honeypot:
                sums.setdefault(outcome.batch_id, []).append(outcome.confidence)
        return {b: sum(v) / len(v) for b, v in sums.items()}
