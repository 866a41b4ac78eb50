"""Tunables of the consensus core (assignment, consensus, anti-gaming, scoring).

All validators run the defaults (docs/architecture.md §6). Each field says its unit and why it has
that value; code receives these objects and never reads the environment.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class AssignmentConfig:
    """How an epoch's zipcodes become batches and miner groups."""

    zipcodes_per_batch: int = 20  # zipcodes; one group's workload per cycle
    miners_per_group: int = 10  # miners scraping the same batch independently
    overlap_factor: int = 2  # disjoint groups per batch, compared against each other
    max_batches_per_cycle: int = 50  # 50 x 20 = 1000 zipcodes per consensus cycle
    max_miners_per_coldkey: int = 1  # per group: one owner cannot outvote a group
    min_different_coldkeys: int = 5  # per group: below this a group is not independent

    def __post_init__(self) -> None:
        for name in (
            "zipcodes_per_batch",
            "miners_per_group",
            "overlap_factor",
            "max_batches_per_cycle",
            "max_miners_per_coldkey",
            "min_different_coldkeys",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"AssignmentConfig.{name} must be >= 1")


@dataclass(frozen=True, slots=True)
class ConsensusConfig:
    """How group answers become per-zipcode consensus, confidence and miner quality."""

    consensus_threshold: float = 0.6  # credibility-weighted share needed to accept a record
    zipcode_confidence_threshold: float = 0.7  # below it a zipcode is no evidence either way
    min_responders_for_consensus: int = 6  # per zipcode, over all groups
    min_group_responders: int = 3  # a group with fewer responders gives no consensus
    full_confidence_responders: int = 12  # responders at which the responder factor is 1
    min_credibility_weight: float = 0.05  # vote floor so a new or punished miner still counts
    precision_exponent: float = 3.0  # wrong data costs more than missing data
    max_volume_factor: float = 4.0  # a zipcode counts at most 4x its expected size
    expected_properties_per_zipcode: int = 50  # listings; volume of a zipcode of unknown size
    fast_completion_s: float = 3600.0  # validator-measured; under it the bonus applies
    fast_completion_bonus: float = 1.3  # reward multiplier for finishing under 1 h
    assignment_timeout_s: float = 3 * 3600.0  # answers after this are not collected
    # A group's earnings x (share of its zipcodes answered) ** this, on top of the
    # zero credit for unanswered zipcodes: answering half a batch earns a quarter,
    # because partial answers deny the batch the responders its consensus needs.
    partial_answer_exponent: float = 1.0
    # Anti-gaming
    fabrication_tolerance: float = 0.10  # share of unconfirmed records before a flag
    fabrication_min_records: int = 5  # unconfirmed records needed for a fabrication flag
    copy_min_shared: int = 5  # identical deviations two miners must share
    copy_min_jaccard: float = 0.5  # overlap of their deviation sets
    copy_tie_window_s: float = 1.0  # closer completions than this cannot say who copied
    honeypot_empty_max_records: int = 2  # records tolerated in a no-residential honeypot
    honeypot_min_precision: float = 0.5  # against a reference honeypot's records
    honeypot_min_records: int = 3  # records needed before a reference honeypot judges
    # Records verified through the validator's own source, one lookup each. The
    # per-batch lanes below give at most 4 + 4 + 1 a batch: 450 for a full block
    # of 50 batches, so the cap never cuts a lane there (about 2,700 lookups a
    # day at most at 4 h cycles; an honest network uses about a quarter of it).
    spot_checks_per_cycle: int = 450
    spot_checks_per_disputed_batch: int = 4  # disputed records checked first, per batch
    spot_checks_per_batch: int = 1  # random confirmed records, per batch
    # Records no group accepted that two or more coldkeys reported, per batch:
    # where a bloc's omissions or a cartel's inventions show (consensus/evidence.py).
    spot_checks_per_uncertain_batch: int = 4
    # A submission whose votes on checked records were wrong at least this often,
    # and no less often than right, keeps the square of its right share of tally weight.
    evidence_min_wrong: int = 2
    capture_min_failures: int = 2  # failed spot checks that mark a group as captured
    spot_check_flag_min_failures: int = 2  # failed checks that flag the miners behind them
    # A deviation shared by more miners than this is common to the batch (a
    # listing posted mid-cycle, a price the source changed), not a fingerprint.
    copy_max_sharers: int = 3
    # Tie-breaks: records the two groups of a batch disagree on, re-checked in the
    # same cycle by miners of neither group (one per coldkey), who answer with
    # the property's record hash or "does not exist".
    tiebreak_miners: int = 5  # fresh miners asked per disputed batch
    tiebreak_max_per_cycle: int = 200  # disputed zpids asked about per cycle
    tiebreak_max_per_miner: int = 50  # zpids one tie-breaker is asked about per cycle
    tiebreak_threshold: float = 0.6  # credibility-weighted share of answers that resolves
    tiebreak_min_answers: int = 3  # answers needed before a dispute can be resolved
    tiebreak_record_volume: float = 1.0  # reward volume of one tie-break answer (a listing)

    def __post_init__(self) -> None:
        for name in ("consensus_threshold", "zipcode_confidence_threshold"):
            value = getattr(self, name)
            if not 0.5 <= value <= 1.0:
                raise ValueError(f"ConsensusConfig.{name} must be in [0.5, 1]")
        if self.min_group_responders < 1 or self.min_responders_for_consensus < 1:
            raise ValueError("responder minimums must be >= 1")


@dataclass(frozen=True, slots=True)
class ScoringConfig:
    """How per-cycle results become credibility, scores and weights."""

    score_alpha: float = 0.3  # EMA step of the score per consensus cycle
    credibility_alpha: float = 0.2  # EMA step of credibility (slower: it is a vote weight)
    initial_credibility: float = 0.5  # neutral start: new miners neither trusted nor doubted
    initial_quality: float = 0.5  # prior quality credited on no-evidence zipcodes
    flag_credibility_factor: float = 0.5  # credibility kept when flagged in a cycle
    penalty_decay: float = 0.5  # share of a penalty left after each later cycle
