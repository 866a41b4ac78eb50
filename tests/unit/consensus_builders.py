"""Builders shared by the consensus unit tests: small plans, true listings, answers."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Mapping, Sequence

from common.records import CONSENSUS_FIELDS
from config.consensus import AssignmentConfig, ConsensusConfig
from consensus.answers import ZipcodeAnswer
from consensus.assignment import (
    AssignmentPlan,
    MinerGroup,
    MinerInfo,
    ZipcodeAssignmentManager,
)
from consensus.engine import ConsensusEngine
from consensus.types import CycleResult, GroupSubmission, Honeypot, MinerCycleResult

SLOW = 5000.0  # completion time (s) above fast_completion_s: no bonus
PRICE = CONSENSUS_FIELDS.index("price")
STATUS = CONSENSUS_FIELDS.index("listing_status")
BEDROOMS = CONSENSUS_FIELDS.index("bedrooms")
EXPECTED = ConsensusConfig().expected_properties_per_zipcode  # volume of a no-evidence zipcode


def listing(zipcode: str, i: int) -> tuple:
    """The true consensus fields of listing ``i`` of ``zipcode`` (CONSENSUS_FIELDS order)."""
    zpid = int(zipcode) * 100 + i
    return (
        str(zpid),
        f"{i} MAIN ST",
        zipcode,
        200_000 + 1_000 * i,
        "FOR_SALE",
        "SINGLE_FAMILY",
        3,
        2.0,
        1_500,
        5_000,
        1_990,
        None,
    )


def changed(fields: tuple, index: int, value) -> tuple:
    out = list(fields)
    out[index] = value
    return tuple(out)


def record_hash(fields: tuple) -> str:
    """32 lowercase hex chars that change with any field, like common.records' record_hash."""
    return hashlib.blake2b(repr(fields).encode(), digest_size=16).hexdigest()


def answer(records: list[tuple]) -> ZipcodeAnswer:
    return ZipcodeAnswer.from_pairs([(int(f[0]), record_hash(f)) for f in records], records)


def make_plan(
    zipcodes_per_batch: int = 3, miners_per_group: int = 5, n_batches: int = 1
) -> AssignmentPlan:
    """One or more batches of two groups over miners with distinct coldkeys."""
    zipcodes = [f"{10001 + i:05d}" for i in range(zipcodes_per_batch * n_batches)]
    miners = [
        MinerInfo(uid, f"hk{uid:02d}", f"ck{uid:02d}")
        for uid in range(2 * miners_per_group * n_batches)
    ]
    cfg = AssignmentConfig(
        zipcodes_per_batch=zipcodes_per_batch,
        miners_per_group=miners_per_group,
        overlap_factor=2,
        min_different_coldkeys=2,
    )
    plan = ZipcodeAssignmentManager(cfg).create_plan(zipcodes, miners, b"unit-plan")
    assert not plan.relaxations
    assert len(plan.groups) == 2 * n_batches
    return plan


def make_truth(plan: AssignmentPlan, n_records: int = 8) -> dict[str, list[tuple]]:
    return {z: [listing(z, i) for i in range(n_records)] for g in plan.groups for z in g.zipcodes}


AnswerFn = Callable[[MinerInfo, MinerGroup], Mapping[str, ZipcodeAnswer] | None]


def honest(truth: dict[str, list[tuple]]) -> AnswerFn:
    return lambda miner, group: {z: answer(truth[z]) for z in group.zipcodes}


def submissions(
    plan: AssignmentPlan,
    answer_for: AnswerFn,
    completed: Callable[[MinerInfo], float | None] = lambda m: SLOW,
) -> list[GroupSubmission]:
    out = []
    for group in plan.groups:
        for miner in group.miners:
            answers = answer_for(miner, group)
            if answers is not None:
                out.append(
                    GroupSubmission(
                        miner, group.batch_id, group.overlap_group, answers, completed(miner)
                    )
                )
    return out


def noisy_answers(truth: dict[str, list[tuple]], rng: random.Random) -> AnswerFn:
    """Honest miners with independent noise: ~10% misses, ~5% wrong prices."""

    def answer_for(miner: MinerInfo, group: MinerGroup) -> dict[str, ZipcodeAnswer]:
        out = {}
        for z in group.zipcodes:
            records = []
            for f in truth[z]:
                u = rng.random()
                if u < 0.10:
                    continue
                if u < 0.15:
                    f = changed(f, PRICE, f[PRICE] + rng.randrange(1, 10**6))
                records.append(f)
            out[z] = answer(records)
        return out

    return answer_for


def run_cycle(
    plan: AssignmentPlan,
    subs: list[GroupSubmission],
    *,
    config: ConsensusConfig | None = None,
    credibility: Mapping[str, float] | None = None,
    verdict: Callable | None = None,
    honeypots: Mapping[str, Honeypot] | None = None,
    seed: bytes = b"cycle-seed",
) -> CycleResult:
    """The validator's flow on one cycle; ``verdict`` plays the validator's own source."""
    engine = ConsensusEngine(config or ConsensusConfig())
    draft = engine.evaluate(plan, subs, credibility or {})
    requests = engine.spot_check_requests(draft, seed)
    verdicts = [(r, verdict(r)) for r in requests] if verdict else []
    return engine.finalize(draft, verdicts, honeypots or {})


def answered_cycle(
    hotkeys: Sequence[str], *, zipcodes: int, volume: float, earned: float, precision_sum: float
) -> CycleResult:
    """A cycle in which miner ``i`` of ``hotkeys`` (coldkey ``ck{i}``) answered all its
    ``zipcodes`` with ``volume`` of evidence, recalled all of it and earned ``earned``."""
    miners = {
        hk: MinerCycleResult(
            i,
            hk,
            f"ck{i}",
            assigned_zipcodes=zipcodes,
            answered_zipcodes=zipcodes,
            evidence_zipcodes=zipcodes,
            evidence_volume=volume,
            earned=earned,
            precision_sum=precision_sum,
            recall_sum=volume,
            answered_evidence_volume=volume,
        )
        for i, hk in enumerate(hotkeys)
    }
    return CycleResult({}, miners, [], [], {})
