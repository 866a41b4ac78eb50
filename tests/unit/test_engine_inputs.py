"""Unit tests of the consensus engine: what it drops of malformed input, and determinism.

The scoring itself is ``tests/unit/test_engine.py``'s. Small hand-built
cycles (one or two batches, two groups of 5-6 miners, a few zipcodes of 8
listings) driven through the public flow
``evaluate -> spot_check_requests -> finalize``.
"""

from __future__ import annotations

import random

import pytest

from config.consensus import AssignmentConfig
from consensus.assignment import (
    MinerInfo,
    ZipcodeAssignmentManager,
)
from consensus.engine import ConsensusEngine
from consensus.types import GroupSubmission, Honeypot, Verdict
from tests.unit import consensus_builders as cb

pytestmark = pytest.mark.unit

# --------------------------------------------------------------------------- malformed input


def test_foreign_duplicate_and_malformed_submissions_are_dropped_and_counted():
    """Guards against bad submissions raising or influencing the consensus."""
    plan = cb.make_plan(zipcodes_per_batch=3, miners_per_group=5, n_batches=2)
    truth = cb.make_truth(plan)
    baseline_subs = cb.submissions(plan, cb.honest(truth))
    baseline = cb.run_cycle(plan, baseline_subs)

    g0, g1 = plan.groups[0], plan.groups[1]
    other_batch_zip = next(g for g in plan.groups if g.batch_id != g0.batch_id).zipcodes[0]
    member = g0.miners[0]
    garbage = {z: cb.answer([cb.changed(f, cb.PRICE, 1) for f in truth[z]]) for z in g0.zipcodes}
    stranger = MinerInfo(999, "stranger", "ck-stranger")
    impostor = MinerInfo(member.uid, member.hotkey, "ck-impostor")
    extra = [
        GroupSubmission(stranger, g0.batch_id, g0.overlap_group, garbage, 1.0),
        GroupSubmission(impostor, g0.batch_id, g0.overlap_group, garbage, 1.0),
        GroupSubmission(member, g1.batch_id, g1.overlap_group, garbage, 1.0),  # not its group
        GroupSubmission(member, 99, 0, garbage, 1.0),  # no such batch
        GroupSubmission(member, g0.batch_id, g0.overlap_group, garbage, 1.0),  # duplicate
    ]
    polluted = {
        "99999": cb.answer(truth[g0.zipcodes[0]]),  # nobody's zipcode
        other_batch_zip: cb.answer(truth[other_batch_zip]),  # another batch's zipcode
        g0.zipcodes[0]: [(1, "0" * 32)],  # not a ZipcodeAnswer
        g0.zipcodes[1]: None,
        g0.zipcodes[2]: "junk",
    }
    subs = []
    for sub in baseline_subs:
        if sub.miner == g0.miners[1]:
            sub = GroupSubmission(sub.miner, sub.batch_id, sub.overlap_group, polluted, cb.SLOW)
        subs.append(sub)
    result = cb.run_cycle(plan, subs + extra)

    assert result.dropped == {
        "submission_not_in_plan": 4,
        "duplicate_submission": 1,
        "unassigned_zipcode": 2,
        "malformed_answer": 3,
    }
    assert "stranger" not in result.miners
    # The first submission of a miner counts; the garbage duplicate changed nothing.
    assert result.miners[member.hotkey] == baseline.miners[member.hotkey]
    polluter = result.miners[g0.miners[1].hotkey]
    assert polluter.answered_zipcodes == 0
    assert polluter.earned == 0.0
    assert polluter.flags == []
    for z, outcome in result.zipcodes.items():
        assert outcome.confirmed == baseline.zipcodes[z].confirmed
        assert outcome.confidence >= 0.7
    assert result.flags == []


def test_empty_submissions():
    """Guards against a cycle with no answers raising or rewarding anyone."""
    plan = cb.make_plan(zipcodes_per_batch=3, miners_per_group=5)
    engine = ConsensusEngine()
    draft = engine.evaluate(plan, [], {})
    assert engine.spot_check_requests(draft, b"seed") == []
    result = engine.finalize(draft, [], {})
    assert result.flags == [] and result.captured_groups == [] and result.dropped == {}
    assert len(result.zipcodes) == 3
    assert all(o.confidence == 0.0 and o.responders == 0 for o in result.zipcodes.values())
    assert len(result.miners) == 10
    for miner in result.miners.values():
        assert miner.earned == 0.0
        assert miner.answered_zipcodes == 0
        assert miner.unanswered_volume == pytest.approx(3 * cb.EXPECTED)
        assert miner.precision is None


def test_empty_plan():
    """Guards against a plan without zipcodes or groups raising."""
    plan = ZipcodeAssignmentManager(AssignmentConfig()).create_plan(
        [], [MinerInfo(0, "hk", "ck")], b"seed"
    )
    engine = ConsensusEngine()
    draft = engine.evaluate(plan, [], {})
    assert engine.spot_check_requests(draft, b"seed") == []
    result = engine.finalize(draft, [], {})
    assert result.zipcodes == {} and result.miners == {} and result.flags == []


def test_verdicts_and_honeypots_for_unknown_zipcodes_are_ignored():
    """Guards against stray verdicts or honeypots (zipcodes outside the plan) raising."""
    from consensus.types import HoneypotKind, SpotCheckRequest

    plan = cb.make_plan()
    truth = cb.make_truth(plan)
    subs = cb.submissions(plan, cb.honest(truth))
    engine = ConsensusEngine()
    draft = engine.evaluate(plan, subs, {})
    stray = SpotCheckRequest("99999", 1, 0, None, 0, "sample")
    result = engine.finalize(
        draft,
        [(stray, Verdict.NOT_FOUND)],
        {"99999": Honeypot("99999", HoneypotKind.NO_RESIDENTIAL)},
    )
    assert result == cb.run_cycle(plan, subs)


# --------------------------------------------------------------------------- determinism


def test_same_inputs_give_identical_results():
    """Guards against hidden state or randomness in evaluate/spot checks/finalize."""
    plan = cb.make_plan(zipcodes_per_batch=3, miners_per_group=5, n_batches=2)
    truth = cb.make_truth(plan)
    subs = cb.submissions(plan, cb.noisy_answers(truth, random.Random(7)), lambda m: 1000.0 + m.uid)
    engine = ConsensusEngine()

    def once():
        draft = engine.evaluate(plan, subs, {})
        requests = engine.spot_check_requests(draft, b"seed")
        verdicts = [(r, Verdict.MATCH) for r in requests]
        return requests, engine.finalize(draft, verdicts, {})

    (req_a, res_a), (req_b, res_b) = once(), once()
    assert req_a == req_b
    assert res_a == res_b
    assert [m.earned for m in res_a.miners.values()] == [m.earned for m in res_b.miners.values()]


def test_submission_order_does_not_change_the_outcome():
    """Guards against results depending on the order submissions arrive in.

    Decisions (evidence, counts, flags, spot checks) must be identical;
    floats may differ only in the last bits of summation order.
    """
    plan = cb.make_plan(zipcodes_per_batch=3, miners_per_group=5, n_batches=2)
    truth = cb.make_truth(plan)
    subs = cb.submissions(
        plan, cb.noisy_answers(truth, random.Random(11)), lambda m: 1000.0 + m.uid
    )
    engine = ConsensusEngine()
    forward = engine.evaluate(plan, subs, {})
    backward = engine.evaluate(plan, list(reversed(subs)), {})
    assert engine.spot_check_requests(forward, b"s") == engine.spot_check_requests(backward, b"s")
    a, b = engine.finalize(forward), engine.finalize(backward)
    assert a.flags == b.flags
    for z in a.zipcodes:
        oa, ob = a.zipcodes[z], b.zipcodes[z]
        assert (oa.confirmed, oa.disputed, oa.responders) == (
            ob.confirmed,
            ob.disputed,
            ob.responders,
        )
        assert oa.confidence == pytest.approx(ob.confidence, rel=1e-12)
    for hotkey in a.miners:
        ma, mb = a.miners[hotkey], b.miners[hotkey]
        assert ma.evidence_zipcodes == mb.evidence_zipcodes
        assert ma.earned == pytest.approx(mb.earned, rel=1e-12)
