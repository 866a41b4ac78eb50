"""Unit tests of tie-breaks: disputed records re-checked by five fresh miners.

Selection (neither group, one per coldkey, seeded and order-independent,
bounded), the resolution rules (5/5, 3/2, 2/2 with one missing, credibility
weighting) and their effect in ``finalize``.
"""

from __future__ import annotations

import random

import pytest

from config.consensus import ConsensusConfig
from consensus.answers import hash_to_int
from consensus.assignment import AssignmentPlan, MinerInfo
from consensus.draft import ZPID_BITS, ConsensusDraft
from consensus.engine import ConsensusEngine
from consensus.tiebreak import (
    TiebreakAnswer,
    TiebreakRequest,
    disputed_zpids,
    plan_tiebreaks,
    resolve_disputes,
    select_tiebreakers,
)
from tests.unit.consensus_builders import answer, listing, make_plan, make_truth, submissions

pytestmark = pytest.mark.unit

SEED = b"tiebreak-seed"


def fake(zipcode: str, i: int = 50) -> tuple:
    """A listing that does not exist (zpid beyond the true ones)."""
    return listing(zipcode, i)


def fake_hash(zipcode: str, i: int = 50) -> int:
    from tests.unit.consensus_builders import record_hash

    return hash_to_int(record_hash(fake(zipcode, i)))


def disputed_cycle(
    n_fake_zipcodes: int = 2,
    n_fakes: int = 1,
    n_batches: int = 3,
    config: ConsensusConfig | None = None,
    credibility: dict[str, float] | None = None,
) -> tuple[ConsensusEngine, AssignmentPlan, ConsensusDraft]:
    """Group 0 of batch 0 adds invented listings to its first zipcodes; everyone else is honest."""
    plan = make_plan(zipcodes_per_batch=2, miners_per_group=6, n_batches=n_batches)
    truth = make_truth(plan)

    def answer_for(miner, group):
        out = {}
        for k, z in enumerate(group.zipcodes):
            records = list(truth[z])
            if group.batch_id == 0 and group.overlap_group == 0 and k < n_fake_zipcodes:
                records += [fake(z, 50 + i) for i in range(n_fakes)]
            out[z] = answer(records)
        return out

    engine = ConsensusEngine(config or ConsensusConfig())
    draft = engine.evaluate(plan, submissions(plan, answer_for), credibility or {})
    return engine, plan, draft


def batch_members(plan: AssignmentPlan, batch_id: int) -> list[MinerInfo]:
    return [m for g in plan.groups if g.batch_id == batch_id for m in g.miners]


# --- selection ------------------------------------------------------------------


def test_disputes_are_the_disputed_records_of_the_batch():
    _, plan, draft = disputed_cycle(n_fake_zipcodes=2)
    disputes = disputed_zpids(draft, SEED)
    assert set(disputes) == {0}
    zipcodes = plan.groups[0].zipcodes if plan.groups[0].batch_id == 0 else ()
    zipcodes = next(g.zipcodes for g in plan.groups if g.batch_id == 0)
    assert sorted(disputes[0]) == sorted((z, int(fake(z)[0])) for z in zipcodes)


@pytest.mark.parametrize("seed", [b"a", b"b", b"c", b"d", b"e"])
def test_selection_excludes_both_groups_and_repeats_no_coldkey(seed):
    _, plan, draft = disputed_cycle()
    members = batch_members(plan, 0)
    others = [m for g in plan.groups if g.batch_id != 0 for m in g.miners]
    # Extra miners: one under a group member's coldkey, two sharing a coldkey.
    pool = [
        *members,
        *others,
        MinerInfo(100, "hk-x0", members[0].coldkey),
        MinerInfo(101, "hk-x1", "ck-shared"),
        MinerInfo(102, "hk-x2", "ck-shared"),
        MinerInfo(103, "hk-x3", "ck-shared"),
    ]
    requests = plan_tiebreaks(draft, seed, pool)
    assert [r.batch_id for r in requests] == [0]
    chosen = requests[0].miners
    assert len(chosen) == 5
    assert not {m.hotkey for m in chosen} & {m.hotkey for m in members}
    assert not {m.coldkey for m in chosen} & {m.coldkey for m in members}
    assert len({m.coldkey for m in chosen}) == 5


def test_selection_is_deterministic_and_order_independent():
    _, plan, draft = disputed_cycle()
    pool = [m for g in plan.groups for m in g.miners]
    shuffled = list(pool)
    random.Random(3).shuffle(shuffled)
    first = plan_tiebreaks(draft, SEED, pool)
    assert first == plan_tiebreaks(draft, SEED, shuffled)
    assert first == plan_tiebreaks(draft, SEED)  # default pool: the plan's miners
    picks = {plan_tiebreaks(draft, bytes([i]), pool)[0].miners for i in range(8)}
    assert len(picks) > 1  # the seed decides


def test_selection_needs_enough_fresh_coldkeys():
    _, _, draft = disputed_cycle(n_batches=1)  # nobody outside the batch's groups
    assert plan_tiebreaks(draft, SEED) == []


def test_disputes_bounded_per_cycle_and_per_miner():
    cfg = ConsensusConfig(tiebreak_max_per_cycle=3, tiebreak_max_per_miner=2)
    _, _, draft = disputed_cycle(n_fake_zipcodes=2, n_fakes=3, config=cfg)
    assert sum(len(v) for v in disputed_zpids(draft, SEED).values()) == 2  # per miner: all of it
    cfg = ConsensusConfig(tiebreak_max_per_cycle=3, tiebreak_max_per_miner=50)
    _, _, draft = disputed_cycle(n_fake_zipcodes=2, n_fakes=3, config=cfg)
    assert sum(len(v) for v in disputed_zpids(draft, SEED).values()) == 3


def test_a_miner_is_not_loaded_past_its_bound():
    cfg = ConsensusConfig(tiebreak_max_per_miner=2)
    _, _, draft = disputed_cycle(config=cfg)
    disputes = {0: [("x", 1), ("x", 2)], 1: [("y", 1)], 2: [("z", 1)]}
    chosen = select_tiebreakers(draft, disputes, SEED)
    load: dict[str, int] = {}
    for batch_id, miners in chosen.items():
        for m in miners:
            load[m.hotkey] = load.get(m.hotkey, 0) + len(disputes[batch_id])
    assert max(load.values()) <= 2


# --- resolution -----------------------------------------------------------------


def one_dispute(draft: ConsensusDraft, plan: AssignmentPlan) -> tuple[TiebreakRequest, str, int]:
    requests = plan_tiebreaks(draft, SEED)
    request = requests[0]
    zipcode, zpid = request.properties[0]
    return request, zipcode, zpid


def answers_of(request: TiebreakRequest, zpid: int, values: list) -> list[TiebreakAnswer]:
    """One answer per tie-breaker; the sentinel ``...`` means the miner did not answer."""
    return [
        TiebreakAnswer(m, request.batch_id, {} if v is ... else {zpid: v})
        for m, v in zip(request.miners, values, strict=True)
    ]


def zkey(draft: ConsensusDraft, zipcode: str, zpid: int) -> int:
    return (draft.zipcode_index[zipcode] << ZPID_BITS) | zpid


def test_five_agreeing_answers_resolve():
    _, plan, draft = disputed_cycle()
    request, zipcode, zpid = one_dispute(draft, plan)
    outcome = resolve_disputes(draft, [request], answers_of(request, zpid, [None] * 5))
    assert outcome.resolved == {zkey(draft, zipcode, zpid): None}
    assert all(outcome.correct[m.hotkey] == 1 for m in request.miners)


def test_three_against_two_resolves_with_the_three():
    _, plan, draft = disputed_cycle()
    request, zipcode, zpid = one_dispute(draft, plan)
    h = fake_hash(zipcode)
    outcome = resolve_disputes(draft, [request], answers_of(request, zpid, [h, None, h, None, h]))
    assert outcome.resolved == {zkey(draft, zipcode, zpid): h}
    assert sum(outcome.correct.values()) == 3 and sum(outcome.wrong.values()) == 2


def test_two_against_two_with_one_missing_stays_unresolved():
    _, plan, draft = disputed_cycle()
    request, zipcode, zpid = one_dispute(draft, plan)
    h = fake_hash(zipcode)
    outcome = resolve_disputes(draft, [request], answers_of(request, zpid, [h, None, ..., h, None]))
    assert outcome.resolved == {}
    assert zkey(draft, zipcode, zpid) in outcome.unresolved
    assert not outcome.correct and not outcome.wrong


def test_too_few_answers_stay_unresolved():
    _, plan, draft = disputed_cycle()
    request, _, zpid = one_dispute(draft, plan)
    outcome = resolve_disputes(
        draft, [request], answers_of(request, zpid, [None, None] + [...] * 3)
    )
    assert outcome.resolved == {}


def test_resolution_is_credibility_weighted():
    _, plan, probe = disputed_cycle()
    request, zipcode, zpid = one_dispute(probe, plan)
    trusted = {m.hotkey: 0.9 for m in request.miners[:2]}
    trusted |= {m.hotkey: 0.1 for m in request.miners[2:]}
    _, _, draft = disputed_cycle(credibility=trusted)
    h = fake_hash(zipcode)
    outcome = resolve_disputes(
        draft, [request], answers_of(request, zpid, [h, h, None, None, None])
    )
    assert outcome.resolved == {zkey(draft, zipcode, zpid): h}


def test_answers_from_miners_not_asked_are_ignored():
    _, plan, draft = disputed_cycle()
    request, _, zpid = one_dispute(draft, plan)
    outsider = batch_members(plan, 0)[0]
    answers = answers_of(request, zpid, [None, None, ..., ..., ...])
    answers.append(TiebreakAnswer(outsider, request.batch_id, {zpid: None}))
    assert resolve_disputes(draft, [request], answers).resolved == {}


# --- finalize ---------------------------------------------------------------------


def all_answer(request: TiebreakRequest, value_of) -> list[TiebreakAnswer]:
    return [
        TiebreakAnswer(
            m, request.batch_id, {zpid: value_of(z, zpid) for z, zpid in request.properties}
        )
        for m in request.miners
    ]


def test_finalize_without_tiebreaks_is_unchanged():
    engine, _, draft = disputed_cycle()
    a = engine.finalize(draft)
    b = engine.finalize(draft, tiebreaks=([], []))
    assert a.zipcodes == b.zipcodes and a.captured_groups == b.captured_groups
    assert {k: v.quality for k, v in a.miners.items()} == {
        k: v.quality for k, v in b.miners.items()
    }


def test_resolved_fabrications_settle_the_records_and_score_everyone():
    """Tie-breakers settle what they resolve but void no group: only the validator's source can
    (a pool drawn as tie-breakers must not be able to void an honest group)."""
    engine, plan, draft = disputed_cycle(n_fake_zipcodes=2, n_fakes=5)
    request = plan_tiebreaks(draft, SEED)[0]
    before = engine.finalize(draft)
    after = engine.finalize(draft, tiebreaks=([request], all_answer(request, lambda z, p: None)))
    assert after.tiebreak == {"disputes": 10, "resolved": 10, "settled": 10}
    assert after.captured_groups == before.captured_groups == []
    batch_zipcodes = [z for z, o in after.zipcodes.items() if o.batch_id == 0]
    for z in batch_zipcodes:
        assert after.zipcodes[z].confidence >= 0.7 > before.zipcodes[z].confidence
    wrong = next(g for g in plan.groups if g.batch_id == 0 and g.overlap_group == 0).miners
    right = next(g for g in plan.groups if g.batch_id == 0 and g.overlap_group == 1).miners
    for m in right:
        assert after.miners[m.hotkey].earned > before.miners[m.hotkey].earned
    for m in wrong:
        assert (after.miners[m.hotkey].quality or 0) < 1.0
    for m in request.miners:
        res_before, res_after = before.miners[m.hotkey], after.miners[m.hotkey]
        assert res_after.earned == pytest.approx(res_before.earned + 10.0)


def test_a_single_resolved_dispute_is_settled_in_the_consensus():
    engine, plan, draft = disputed_cycle(n_fake_zipcodes=1)
    request = plan_tiebreaks(draft, SEED)[0]
    ((zipcode, _),) = request.properties
    before = engine.finalize(draft)
    after = engine.finalize(draft, tiebreaks=([request], all_answer(request, lambda z, p: None)))
    assert after.tiebreak == {"disputes": 1, "resolved": 1, "settled": 1}
    assert not after.captured_groups  # one failure does not capture a group
    assert after.zipcodes[zipcode].disputed == 0 < before.zipcodes[zipcode].disputed
    assert after.zipcodes[zipcode].confidence > before.zipcodes[zipcode].confidence
    wrong = next(g for g in plan.groups if g.batch_id == 0 and g.overlap_group == 0).miners
    for m in wrong:  # their invented listing is now an unconfirmed record
        assert after.miners[m.hotkey].precision < 1.0


def test_a_dispute_resolved_present_joins_the_consensus():
    engine, plan, draft = disputed_cycle(n_fake_zipcodes=1)
    request = plan_tiebreaks(draft, SEED)[0]
    ((zipcode, _),) = request.properties
    after = engine.finalize(
        draft, tiebreaks=([request], all_answer(request, lambda z, p: fake_hash(z)))
    )
    assert after.tiebreak["settled"] == 1
    assert after.zipcodes[zipcode].confirmed == 9 and after.zipcodes[zipcode].disputed == 0
    right = next(g for g in plan.groups if g.batch_id == 0 and g.overlap_group == 0).miners
    missed = next(g for g in plan.groups if g.batch_id == 0 and g.overlap_group == 1).miners
    for m in right:
        assert after.miners[m.hotkey].quality == pytest.approx(1.0)
    for m in missed:
        assert after.miners[m.hotkey].recall < 1.0


def test_unresolved_disputes_stay_no_evidence():
    engine, _, draft = disputed_cycle(n_fake_zipcodes=1)
    request = plan_tiebreaks(draft, SEED)[0]
    ((_, zpid),) = request.properties
    before = engine.finalize(draft)
    after = engine.finalize(
        draft, tiebreaks=([request], answers_of(request, zpid, [1, None, ..., 1, None]))
    )
    assert after.tiebreak == {"disputes": 1, "resolved": 0, "settled": 0}
    assert after.zipcodes == before.zipcodes
    assert {k: v.earned for k, v in after.miners.items()} == {
        k: v.earned for k, v in before.miners.items()
    }
