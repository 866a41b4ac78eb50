"""Unit tests of the consensus engine: group consensus, confidence and per-miner results.

Small hand-built cycles (one or two batches, two groups of 5-6 miners, a few
zipcodes of 8 listings) driven through the public flow
``evaluate -> spot_check_requests -> finalize``.
"""

from __future__ import annotations

import random

import pytest

from common.records import CONSENSUS_FIELDS, KEY_FIELDS
from config.consensus import ConsensusConfig
from consensus.evaluation import partial_credit
from tests.unit import consensus_builders as cb

pytestmark = pytest.mark.unit

# --------------------------------------------------------------------------- agreement


def test_agreeing_honest_groups_give_confident_zipcodes_and_full_quality():
    """Guards against honest, agreeing groups failing to produce evidence or full credit."""
    plan = cb.make_plan(zipcodes_per_batch=3, miners_per_group=5)
    truth = cb.make_truth(plan)
    result = cb.run_cycle(plan, cb.submissions(plan, cb.honest(truth)))

    assert set(result.zipcodes) == set(truth)
    for outcome in result.zipcodes.values():
        assert outcome.confidence >= 0.7
        assert outcome.agreement == pytest.approx(1.0)
        assert outcome.valid_groups == 2
        assert outcome.responders == 10
        assert outcome.confirmed == len(truth[outcome.zipcode])
        assert outcome.disputed == 0
    assert result.flags == []
    assert result.captured_groups == []
    assert result.dropped == {}
    total_volume = sum(len(records) for records in truth.values())
    for miner in result.miners.values():
        assert miner.flags == []
        assert miner.precision == pytest.approx(1.0)
        assert miner.recall == pytest.approx(1.0)
        assert miner.quality == pytest.approx(1.0)
        assert miner.evidence_zipcodes == 3
        assert miner.evidence_volume == pytest.approx(total_volume)
        assert miner.neutral_volume == 0
        assert miner.earned == pytest.approx(total_volume)


def test_heavily_disputed_zipcode_is_no_evidence_and_penalises_nobody():
    """Guards against miners being penalised (or credited) for a zipcode the groups dispute."""
    plan = cb.make_plan(zipcodes_per_batch=3, miners_per_group=5)
    truth = cb.make_truth(plan)
    disputed_zip = plan.groups[0].zipcodes[0]
    other_listings = [cb.listing(disputed_zip, 50 + i) for i in range(8)]  # other zpids
    skipper = plan.groups[1].miners[0]

    def answer_for(miner, group):
        answers = {z: cb.answer(truth[z]) for z in group.zipcodes}
        if group.overlap_group == 1:  # the second group saw entirely different listings
            answers[disputed_zip] = cb.answer(other_listings)
        if miner == skipper:
            del answers[disputed_zip]
        return answers

    result = cb.run_cycle(plan, cb.submissions(plan, answer_for))

    outcome = result.zipcodes[disputed_zip]
    assert outcome.confidence < ConsensusConfig().zipcode_confidence_threshold
    assert outcome.disputed == 16
    assert outcome.confirmed == 0
    assert result.flags == []
    others = [z for z in truth if z != disputed_zip]
    undisputed_volume = sum(len(truth[z]) for z in others)
    for miner in result.miners.values():
        assert miner.flags == []
        assert miner.evidence_zipcodes == len(others)
        assert miner.evidence_volume == pytest.approx(undisputed_volume)
        assert miner.precision == pytest.approx(1.0)
        if miner.hotkey == skipper.hotkey:
            assert miner.unanswered_volume == pytest.approx(cb.EXPECTED)
            assert miner.neutral_volume == 0
        else:
            # Answered, but no evidence: neutral, and earnings come only from the others.
            assert miner.neutral_volume == pytest.approx(cb.EXPECTED)
            assert miner.unanswered_volume == 0
            assert miner.earned == pytest.approx(undisputed_volume)


@pytest.mark.parametrize(("responders_b", "is_evidence"), [(2, False), (3, True)])
def test_zipcode_needs_min_responders_for_consensus(responders_b, is_evidence):
    """Guards against a zipcode answered by too few miners counting as evidence.

    Both groups agree perfectly; only the number of responders (3 + 2 = 5 vs
    3 + 3 = 6 against ``min_responders_for_consensus`` = 6) decides.
    """
    config = ConsensusConfig(min_group_responders=2, min_responders_for_consensus=6)
    plan = cb.make_plan(zipcodes_per_batch=2, miners_per_group=5)
    truth = cb.make_truth(plan)
    thin_zip = plan.groups[0].zipcodes[0]
    limit = {0: 3, 1: responders_b}
    answering = {m.hotkey for g in plan.groups for m in g.miners[: limit[g.overlap_group]]}

    def answer_for(miner, group):
        return {
            z: cb.answer(truth[z])
            for z in group.zipcodes
            if z != thin_zip or miner.hotkey in answering
        }

    result = cb.run_cycle(plan, cb.submissions(plan, answer_for), config=config)

    outcome = result.zipcodes[thin_zip]
    assert outcome.responders == 3 + responders_b
    assert outcome.agreement == pytest.approx(1.0)
    if is_evidence:
        assert outcome.confidence >= config.zipcode_confidence_threshold
    else:
        assert outcome.confidence == 0.0
        for miner in result.miners.values():
            assert miner.evidence_zipcodes == 1
            expected_neutral = cb.EXPECTED if miner.hotkey in answering else 0.0
            assert miner.neutral_volume == pytest.approx(expected_neutral)
    assert result.flags == []


def test_group_with_too_few_responders_gives_no_consensus():
    """Guards against a 2-miner group (< min_group_responders) deciding a zipcode alone."""
    plan = cb.make_plan(zipcodes_per_batch=2, miners_per_group=5)
    truth = cb.make_truth(plan)
    thin_zip = plan.groups[0].zipcodes[0]
    answering = {m.hotkey for g in plan.groups for m in g.miners[:2]}

    def answer_for(miner, group):
        return {
            z: cb.answer(truth[z])
            for z in group.zipcodes
            if z != thin_zip or miner.hotkey in answering
        }

    result = cb.run_cycle(plan, cb.submissions(plan, answer_for))
    outcome = result.zipcodes[thin_zip]
    assert outcome.valid_groups == 0
    assert outcome.responders == 0
    assert outcome.confidence == 0.0


def test_records_disputed_between_groups_judge_nobody():
    """Guards against listings one group found and the other missed counting as fabrication."""
    plan = cb.make_plan(zipcodes_per_batch=3, miners_per_group=5)
    truth = cb.make_truth(plan)
    finders = {m.hotkey for m in plan.groups[0].miners[:4]}  # 4/5: group 0 accepts them
    extra = {z: [cb.listing(z, 60 + i) for i in range(2)] for z in truth}

    def answer_for(miner, group):
        return {
            z: cb.answer(truth[z] + (extra[z] if miner.hotkey in finders else []))
            for z in group.zipcodes
        }

    result = cb.run_cycle(plan, cb.submissions(plan, answer_for, lambda m: 1000.0 + 60 * m.uid))
    for outcome in result.zipcodes.values():
        assert (outcome.confirmed, outcome.disputed) == (8, 2)
        assert outcome.confidence >= 0.7
    assert result.flags == []
    for hotkey in finders:
        assert result.miners[hotkey].precision == pytest.approx(1.0)
        assert result.miners[hotkey].recall == pytest.approx(1.0)


# --------------------------------------------------------------------------- credibility


@pytest.mark.parametrize("weighted", [False, True])
def test_credibility_weights_decide_the_group_value(weighted):
    """Guards against credibility being ignored in the group tally.

    Three low-credibility miners of group 0 report wrong prices for a zipcode,
    two high-credibility miners the truth. Unweighted, the wrong majority wins
    its group (3/5 = threshold) and the groups dispute every record; weighted
    (0.1 vs 1.0), the minority's value is the group's and both groups confirm.
    """
    plan = cb.make_plan(zipcodes_per_batch=3, miners_per_group=5)
    truth = cb.make_truth(plan)
    group = plan.groups[0]
    target = group.zipcodes[0]
    low = [m.hotkey for m in group.miners[:3]]
    high = [m.hotkey for m in group.miners[3:]]
    wrong = [cb.changed(f, cb.PRICE, f[cb.PRICE] + 7) for f in truth[target]]

    def answer_for(miner, g):
        answers = {z: cb.answer(truth[z]) for z in g.zipcodes}
        if miner.hotkey in low:
            answers[target] = cb.answer(wrong)
        return answers

    credibility = {**dict.fromkeys(low, 0.1), **dict.fromkeys(high, 1.0)} if weighted else {}
    # Equal completion times: the three identical wrong answers are not judged as copies here.
    result = cb.run_cycle(plan, cb.submissions(plan, answer_for), credibility=credibility)

    outcome = result.zipcodes[target]
    n = len(truth[target])
    if weighted:
        assert outcome.confirmed == n
        assert outcome.disputed == 0
        assert outcome.confidence >= 0.7
        for hotkey in low:  # wrong price = key field: zero credit on that zipcode
            assert result.miners[hotkey].precision == pytest.approx(2 / 3)
        for hotkey in high:
            assert result.miners[hotkey].precision == pytest.approx(1.0)
    else:
        assert outcome.confirmed == 0
        assert outcome.disputed == n
        assert outcome.confidence < 0.7
        for hotkey in low + high:
            assert result.miners[hotkey].evidence_zipcodes == 2


def test_missing_credibility_is_neutral():
    """Guards against a miner absent from the credibility map getting other than 0.5 weight."""
    plan = cb.make_plan()
    truth = cb.make_truth(plan)
    subs = cb.submissions(plan, cb.noisy_answers(truth, random.Random(4)))
    everyone = {m.hotkey: 0.5 for g in plan.groups for m in g.miners}
    assert cb.run_cycle(plan, subs, credibility=everyone) == cb.run_cycle(
        plan, subs, credibility={}
    )


# --------------------------------------------------------------------------- precision, recall


def test_partial_credit_for_non_key_field_and_none_for_key_fields():
    """Guards against a wrong key field earning partial credit, or a wrong non-key field none."""
    plan = cb.make_plan(zipcodes_per_batch=3, miners_per_group=5)
    truth = cb.make_truth(plan)
    group = plan.groups[0]
    target = group.zipcodes[0]
    first = truth[target][0]
    variants = {
        group.miners[0].hotkey: cb.changed(first, cb.BEDROOMS, 4),
        group.miners[1].hotkey: cb.changed(first, cb.PRICE, first[cb.PRICE] + 1),
        group.miners[2].hotkey: cb.changed(first, cb.STATUS, "SOLD"),
    }

    def answer_for(miner, g):
        answers = {z: cb.answer(truth[z]) for z in g.zipcodes}
        if miner.hotkey in variants:
            answers[target] = cb.answer([variants[miner.hotkey], *truth[target][1:]])
        return answers

    result = cb.run_cycle(plan, cb.submissions(plan, answer_for))

    n = len(truth[target])
    non_key_credit = 1 - 1 / (len(CONSENSUS_FIELDS) - len(KEY_FIELDS))
    assert result.zipcodes[target].confirmed == n
    expected = {
        group.miners[0].hotkey: (2 + (n - 1 + non_key_credit) / n) / 3,
        group.miners[1].hotkey: (2 + (n - 1) / n) / 3,
        group.miners[2].hotkey: (2 + (n - 1) / n) / 3,
    }
    for hotkey, precision in expected.items():
        miner = result.miners[hotkey]
        assert miner.precision == pytest.approx(precision)
        assert miner.recall == pytest.approx(1.0)  # a wrong value is still a found listing
        assert miner.flags == []
    assert result.miners[group.miners[3].hotkey].precision == pytest.approx(1.0)
    # precision ** 3 x recall: the key-field error costs more than the bedroom error
    bedroom, price = (result.miners[h].earned for h in list(variants)[:2])
    assert price < bedroom < result.miners[group.miners[3].hotkey].earned


def test_partial_credit_function():
    """Guards against partial_credit crediting records without comparable fields."""
    base = cb.listing("10001", 0)
    assert partial_credit(base, base) == pytest.approx(1.0)
    assert partial_credit(cb.changed(base, cb.BEDROOMS, 9), base) == pytest.approx(0.9)
    assert partial_credit(cb.changed(base, cb.PRICE, 1), base) == 0.0
    assert partial_credit(cb.changed(base, cb.STATUS, "SOLD"), base) == 0.0
    assert partial_credit(None, base) == 0.0
    assert partial_credit(base, None) == 0.0
    assert partial_credit(base[:-1], base) == 0.0


def test_recall_is_share_of_consensus_found():
    """Guards against recall counting anything other than consensus records found."""
    plan = cb.make_plan(zipcodes_per_batch=3, miners_per_group=5)
    truth = cb.make_truth(plan)
    half = plan.groups[1].miners[2]

    def answer_for(miner, g):
        keep = (lambda i: i % 2 == 0) if miner == half else (lambda i: True)
        return {z: cb.answer([f for i, f in enumerate(truth[z]) if keep(i)]) for z in g.zipcodes}

    result = cb.run_cycle(plan, cb.submissions(plan, answer_for))
    miner = result.miners[half.hotkey]
    total = sum(len(v) for v in truth.values())
    assert all(o.confirmed == 8 for o in result.zipcodes.values())
    assert miner.recall == pytest.approx(0.5)
    assert miner.precision == pytest.approx(1.0)
    assert miner.quality == pytest.approx(0.5)
    assert miner.earned == pytest.approx(0.5 * total)
    assert miner.flags == []


# --------------------------------------------------------------------------- speed, completeness


@pytest.mark.parametrize(
    ("completed_after_s", "complete", "bonus"),
    [
        (100.0, True, True),
        (3600.0, True, True),  # boundary: <= fast_completion_s
        (3600.5, True, False),
        (None, True, False),  # never completed by the validator's clock
        (100.0, False, False),  # fast but incomplete
    ],
)
def test_fast_completion_bonus(completed_after_s, complete, bonus):
    """Guards against the 1.3x bonus for slow, unclocked or incomplete groups."""
    config = ConsensusConfig()
    plan = cb.make_plan(zipcodes_per_batch=3, miners_per_group=5)
    truth = cb.make_truth(plan)
    target = plan.groups[0].miners[0]
    skipped = plan.groups[0].zipcodes[-1]

    def answer_for(miner, g):
        return {
            z: cb.answer(truth[z])
            for z in g.zipcodes
            if complete or miner != target or z != skipped
        }

    def with_time(t):
        return cb.run_cycle(
            plan, cb.submissions(plan, answer_for, lambda m: t if m == target else cb.SLOW)
        )

    fast, slow = with_time(completed_after_s), with_time(cb.SLOW)
    ratio = fast.miners[target.hotkey].earned / slow.miners[target.hotkey].earned
    assert ratio == pytest.approx(config.fast_completion_bonus if bonus else 1.0)
    assert fast.miners[target.hotkey].fast_groups == (1 if bonus else 0)
    assert fast.flags == []


def test_miner_cannot_claim_fast_completion_through_its_answers():
    """Guards against a miner-supplied value replacing the validator's completion clock."""
    plan = cb.make_plan()
    truth = cb.make_truth(plan)
    target = plan.groups[1].miners[1]

    def answer_for(miner, g):
        answers = {z: cb.answer(truth[z]) for z in g.zipcodes}
        if miner == target:
            answers["completed_after_s"] = 1.0  # type: ignore[assignment]
        return answers

    result = cb.run_cycle(plan, cb.submissions(plan, answer_for, lambda m: cb.SLOW))
    assert result.miners[target.hotkey].fast_groups == 0
    assert result.dropped == {"unassigned_zipcode": 1}
    peer = plan.groups[1].miners[0]
    assert result.miners[target.hotkey].earned == pytest.approx(result.miners[peer.hotkey].earned)


def test_partial_answers_earn_less_than_their_share():
    """Guards against answering half a group's zipcodes earning half (or more) of a full answer."""
    plan = cb.make_plan(zipcodes_per_batch=4, miners_per_group=5)
    truth = cb.make_truth(plan)
    partial, full = plan.groups[0].miners[:2]
    answered = plan.groups[0].zipcodes[:2]

    def answer_for(miner, g):
        zips = answered if miner == partial else g.zipcodes
        return {z: cb.answer(truth[z]) for z in zips}

    result = cb.run_cycle(plan, cb.submissions(plan, answer_for))
    p, f = result.miners[partial.hotkey], result.miners[full.hotkey]
    assert (p.assigned_zipcodes, p.answered_zipcodes) == (4, 2)
    assert p.precision == pytest.approx(1.0)
    assert p.earned < 0.5 * f.earned
    # quality x volume on half the zipcodes, x completeness ** 1
    assert p.earned == pytest.approx(0.25 * f.earned)
    assert p.flags == []
