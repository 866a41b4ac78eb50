"""The validator's own checks as evidence: blocs lose their weight, records settle, empties abstain.

Regressions of the pool incident (issue 14): hotkeys on many coldkeys served
one answer, their shared omissions pushed real listings under the acceptance
line, the honest miners who reported those listings held "unconfirmed"
records and were flagged as a cartel, and the pool took most of the weight.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from config.consensus import ConsensusConfig, ScoringConfig
from consensus.answers import ZipcodeAnswer, hash_to_int
from consensus.engine import ConsensusEngine
from consensus.evidence import evidence_weights, verified_resolutions, votes_on_checks
from consensus.scoring import MinerScore, ScoringState, apply_cycle
from consensus.types import CycleResult, FlagKind, Verdict
from tests.unit.consensus_builders import (
    answer,
    listing,
    make_plan,
    make_truth,
    record_hash,
    submissions,
)

pytestmark = pytest.mark.unit

SEED = b"evidence-seed"


def truth_verdict(truth):
    hashes = {hash_to_int(record_hash(f)) for fs in truth.values() for f in fs}
    return lambda r: Verdict.MATCH if r.record_hash in hashes else Verdict.NOT_FOUND


def bloc_scenario():
    """4 of 6 miners of each group (a bloc on 8 coldkeys) leave the same 3 listings out.

    Without evidence the bloc's head count keeps those listings out of both
    groups, and the 4 honest miners who report them used to hold shared
    "unconfirmed" records: a cartel's mark.
    """
    plan = make_plan(zipcodes_per_batch=3, miners_per_group=6)
    truth = make_truth(plan, n_records=10)
    bloc = {m.hotkey for g in plan.groups for m in g.miners[:4]}
    omitted = {z: truth[z][:3] for z in truth}

    def answer_for(miner, group):
        if miner.hotkey in bloc:
            return {z: answer(truth[z][3:]) for z in group.zipcodes}
        return {z: answer(truth[z]) for z in group.zipcodes}

    return plan, truth, bloc, omitted, submissions(plan, answer_for)


def finalize(plan, subs, verdict, config=None):
    engine = ConsensusEngine(config or ConsensusConfig())
    draft = engine.evaluate(plan, subs, {})
    requests = engine.spot_check_requests(draft, SEED)
    verdicts = [(r, verdict(r)) for r in requests]
    return draft, requests, verdicts, engine.finalize(draft, verdicts, {})


def test_a_bloc_that_leaves_listings_out_loses_its_weight_and_the_listings_are_confirmed():
    plan, truth, bloc, omitted, subs = bloc_scenario()
    draft, requests, verdicts, result = finalize(plan, subs, truth_verdict(truth))

    assert any(r.reason in ("disputed", "uncertain") for r in requests)
    weights, by_hotkey = evidence_weights(draft, verdicts)
    assert weights is not None
    for s, sub in enumerate(draft.submissions):
        if sub.miner.hotkey in bloc:
            assert weights[s] < 0.1  # wrong on every check of an omitted listing
        else:
            assert weights[s] == 1.0
    assert set(by_hotkey) == bloc  # the same miners weigh less as tie-breakers
    # Every listing the bloc left out ends confirmed: the independent miners decide.
    for z, outcome in result.zipcodes.items():
        assert outcome.confirmed == len(truth[z]) and outcome.disputed == 0
        assert outcome.confidence >= 0.7
    assert result.flags == []  # nobody is flagged: omissions are misses, not inventions
    honest = [r for hk, r in result.miners.items() if hk not in bloc]
    for hk in bloc:
        assert result.miners[hk].recall == pytest.approx(7 / 10)  # 3 of 10 left out
    assert all(r.recall == pytest.approx(1.0) for r in honest if r.recall is not None)
    assert sum(len(v) for v in omitted.values()) == 9


def test_without_checks_the_bloc_frames_nobody():
    """Listings two or more coldkeys report are uncertain, never evidence against reporters."""
    plan, _, _, _, subs = bloc_scenario()
    _, _, _, result = finalize(plan, subs, lambda r: Verdict.NO_EVIDENCE)
    assert result.flags == []
    for r in result.miners.values():
        assert r.precision in (None, pytest.approx(1.0))


def test_a_listing_one_coldkey_reports_alone_is_still_unconfirmed():
    plan = make_plan(zipcodes_per_batch=3, miners_per_group=6)
    truth = make_truth(plan, n_records=10)
    liar = plan.groups[0].miners[0]
    fakes = {z: [listing(z, 90 + i) for i in range(4)] for z in truth}  # listings nobody has

    def answer_for(miner, group):
        extra = fakes if miner == liar else {z: [] for z in truth}
        return {z: answer(truth[z] + extra[z]) for z in group.zipcodes}

    _, _, _, result = finalize(plan, submissions(plan, answer_for), lambda r: Verdict.NO_EVIDENCE)
    assert [f.kind for f in result.flags] == [FlagKind.FABRICATION]
    assert result.flags[0].hotkey == liar.hotkey


def test_checked_records_settle_as_the_source_says():
    plan, truth, _, _, subs = bloc_scenario()
    draft, _, verdicts, _ = finalize(plan, subs, truth_verdict(truth))
    resolved = verified_resolutions(draft, verdicts)
    assert resolved
    for request, verdict in verdicts:
        zkey = (draft.zipcode_index[request.zipcode] << 40) | request.zpid
        if verdict is Verdict.MATCH:
            assert resolved[zkey] == request.record_hash
        elif verdict is Verdict.NOT_FOUND:
            assert resolved[zkey] is None


def test_votes_on_checks_count_omissions_and_inventions():
    plan, truth, bloc, _, subs = bloc_scenario()
    draft, _, verdicts, _ = finalize(plan, subs, truth_verdict(truth))
    right, wrong = votes_on_checks(draft, verdicts)
    for s, sub in enumerate(draft.submissions):
        if sub.miner.hotkey in bloc:
            assert wrong[s] >= 2
        else:
            assert wrong[s] == 0 and right[s] >= 1


def test_empty_answers_abstain_and_count_as_unanswered():
    """Guards against answering nothing as a way to look complete and thin the consensus."""
    plan = make_plan(zipcodes_per_batch=4, miners_per_group=6)
    truth = make_truth(plan, n_records=10)
    empties = {m.hotkey for g in plan.groups for m in g.miners[:2]}
    half = {z for i, z in enumerate(sorted(truth)) if i % 2}

    def answer_for(miner, group):
        if miner.hotkey in empties:
            return {
                z: answer(truth[z]) if z not in half else ZipcodeAnswer.empty()
                for z in group.zipcodes
            }
        return {z: answer(truth[z]) for z in group.zipcodes}

    _, _, _, result = finalize(plan, submissions(plan, answer_for), truth_verdict(truth))
    for z, outcome in result.zipcodes.items():
        assert outcome.confirmed == len(truth[z])
        assert outcome.responders == (8 if z in half else 12)  # the empties are no responders
    for hk in empties:
        assert result.miners[hk].answered_zipcodes == 2  # of 4: the empty ones do not count
    honest = next(r for hk, r in result.miners.items() if hk not in empties)
    assert honest.answered_zipcodes == 4
    assert result.flags == []


def test_empty_answers_count_where_the_consensus_found_no_listing():
    plan = make_plan(zipcodes_per_batch=3, miners_per_group=6)
    truth = make_truth(plan, n_records=10)
    nothing = sorted(truth)[0]
    truth[nothing] = []
    _, _, _, result = finalize(
        plan,
        submissions(plan, lambda m, g: {z: answer(truth[z]) for z in g.zipcodes}),
        truth_verdict(truth),
    )
    assert all(r.answered_zipcodes == 3 for r in result.miners.values())


def test_spot_checks_are_a_pure_function_of_draft_and_seed():
    plan, _, _, _, subs = bloc_scenario()
    engine = ConsensusEngine()
    a = engine.spot_check_requests(engine.evaluate(plan, subs, {}), SEED)
    b = engine.spot_check_requests(engine.evaluate(plan, list(reversed(subs)), {}), SEED)
    assert a == b
    assert engine.spot_check_requests(engine.evaluate(plan, subs, {}), b"other") != a


def test_finalize_twice_gives_the_same_result():
    plan, truth, _, _, subs = bloc_scenario()
    engine = ConsensusEngine()
    draft = engine.evaluate(plan, subs, {})
    verdict = truth_verdict(truth)
    verdicts = [(r, verdict(r)) for r in engine.spot_check_requests(draft, SEED)]
    first = engine.finalize(draft, verdicts, {})
    second = engine.finalize(draft, verdicts, {})
    assert first.zipcodes == second.zipcodes
    assert {hk: r.earned for hk, r in first.miners.items()} == {
        hk: r.earned for hk, r in second.miners.items()
    }


# --- scoring: no free rides -------------------------------------------------------------------


def test_a_miner_out_of_the_plan_earns_nothing_and_an_excused_one_keeps_its_score():
    """Guards against a frozen score: serving one cycle in K kept the score of every cycle."""
    cfg = ScoringConfig()
    state = ScoringState(
        miners={
            "away": MinerScore(uid=1, score=0.8),
            "excused": MinerScore(uid=2, score=0.8),
        }
    )
    result = CycleResult({}, {}, [], [], {}, excused=frozenset({"excused"}))
    after = apply_cycle(state, "epoch-1", result, cfg)
    assert after.miners["away"].score == pytest.approx(0.8 * (1 - cfg.score_alpha))
    assert after.miners["excused"].score == 0.8
    again = apply_cycle(after, "epoch-2", replace(result, excused=frozenset()), cfg)
    assert again.miners["excused"].score == pytest.approx(0.8 * (1 - cfg.score_alpha))
