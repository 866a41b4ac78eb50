"""Unit tests of anti-gaming: spot-check selection, captured groups, copies, cartels, honeypots.

Small hand-built cycles driven through ``evaluate -> spot_check_requests ->
finalize``; a verdict function plays the validator's own data source.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping

import pytest

from config.consensus import ConsensusConfig
from consensus.answers import hash_to_int
from consensus.assignment import (
    AssignmentPlan,
    MinerInfo,
)
from consensus.engine import ConsensusEngine
from consensus.types import (
    CycleResult,
    FlagKind,
    GroupSubmission,
    Honeypot,
    HoneypotKind,
    SpotCheckRequest,
    Verdict,
)
from tests.unit import consensus_builders as cb

pytestmark = pytest.mark.unit

# --------------------------------------------------------------------------- builders


def run(
    plan: AssignmentPlan,
    subs: list[GroupSubmission],
    *,
    config: ConsensusConfig | None = None,
    verdict: Callable[[SpotCheckRequest], Verdict] | None = None,
    honeypots: Mapping[str, Honeypot] | None = None,
    seed: bytes = b"cycle-seed",
) -> tuple[list[SpotCheckRequest], CycleResult]:
    """The validator's flow; ``verdict`` plays the validator's own source."""
    engine = ConsensusEngine(config or ConsensusConfig())
    draft = engine.evaluate(plan, subs, {})
    requests = engine.spot_check_requests(draft, seed)
    verdicts = [(r, verdict(r)) for r in requests] if verdict else []
    result = engine.finalize(draft, verdicts, honeypots or {})
    assert_flags_well_formed(result)
    return requests, result


def assert_flags_well_formed(result: CycleResult) -> None:
    """Every flag carries evidence and appears both in result.flags and on its miner."""
    on_miners = [f for m in result.miners.values() for f in m.flags]
    assert sorted(map(repr, on_miners)) == sorted(map(repr, result.flags))
    for flag in result.flags:
        assert flag.hotkey in result.miners
        assert isinstance(flag.evidence, dict) and flag.evidence


def kinds(result: CycleResult, hotkey: str) -> set[FlagKind]:
    return {f.kind for f in result.miners[hotkey].flags}


# --------------------------------------------------------------------------- scenarios


def fakes_for(zipcode: str, n: int, start: int = 50) -> list[tuple]:
    """Invented listings: zpids no honest miner reports."""
    return [cb.changed(cb.listing(zipcode, start + i), 1, f"{i} NOWHERE RD") for i in range(n)]


def with_extras(truth, extras: Mapping[str, list[tuple]], who: set[str]) -> cb.AnswerFn:
    """Honest answers, plus ``extras`` for the miners in ``who``."""

    def answer_for(miner, group):
        return {
            z: cb.answer(truth[z] + (extras.get(z, []) if miner.hotkey in who else []))
            for z in group.zipcodes
        }

    return answer_for


def spread_times(miner: MinerInfo) -> float:
    """Distinct completion times, far outside the copy tie window."""
    return 1000.0 + 60.0 * miner.uid


# --------------------------------------------------------------------------- spot-check selection


def test_spot_check_selection_is_deterministic_and_seeded():
    """Guards against validators choosing different checks (or the same ones for every seed)."""
    plan = cb.make_plan(zipcodes_per_batch=3, miners_per_group=5, n_batches=3)
    truth = cb.make_truth(plan)
    subs = cb.submissions(plan, cb.honest(truth))
    engine = ConsensusEngine()
    draft = engine.evaluate(plan, subs, {})
    again = engine.evaluate(plan, list(reversed(subs)), {})

    first = engine.spot_check_requests(draft, b"seed-1")
    assert first == engine.spot_check_requests(draft, b"seed-1")
    assert first == engine.spot_check_requests(again, b"seed-1")
    assert len(first) == 3  # spot_checks_per_batch = 1 confirmed record per batch
    assert {r.batch_id for r in first} == {0, 1, 2}
    selections = {
        frozenset((r.zipcode, r.zpid) for r in engine.spot_check_requests(draft, f"s{i}".encode()))
        for i in range(8)
    }
    assert len(selections) > 1  # another seed checks other records, not just in another order


def test_disputed_records_are_checked_before_samples():
    """Guards against disputed records (the signature of a captured group) being crowded out."""
    config = ConsensusConfig()
    plan = cb.make_plan(zipcodes_per_batch=3, miners_per_group=5, n_batches=2)
    truth = cb.make_truth(plan)
    group = next(g for g in plan.groups if g.batch_id == 0 and g.overlap_group == 0)
    extras = {z: fakes_for(z, 2) for z in group.zipcodes}
    who = {m.hotkey for m in group.miners[:4]}  # 4/5 >= threshold: group 0 accepts them
    subs = cb.submissions(plan, with_extras(truth, extras, who))
    engine = ConsensusEngine(config)
    draft = engine.evaluate(plan, subs, {})
    requests = engine.spot_check_requests(draft, b"seed")

    reasons = [r.reason for r in requests]
    n_disputed = reasons.count("disputed")
    assert n_disputed == config.spot_checks_per_disputed_batch
    assert reasons == ["disputed"] * n_disputed + ["sample"] * (len(reasons) - n_disputed)
    fake_by_zpid = {int(f[0]): f for fs in extras.values() for f in fs}
    for r in requests[:n_disputed]:
        assert r.batch_id == 0
        assert r.zpid in fake_by_zpid
        assert r.fields == fake_by_zpid[r.zpid]
        assert r.record_hash == hash_to_int(cb.record_hash(fake_by_zpid[r.zpid]))
    samples = requests[n_disputed:]
    assert sorted(r.batch_id for r in samples) == [0, 1]  # one confirmed record per batch
    for r in samples:
        true = truth[r.zipcode][r.zpid % 100]
        assert r.fields == true and r.record_hash == hash_to_int(cb.record_hash(true))

    capped = ConsensusEngine(ConsensusConfig(spot_checks_per_cycle=2))
    assert capped.spot_check_requests(capped.evaluate(plan, subs, {}), b"seed") == requests[:2]
    none = ConsensusEngine(ConsensusConfig(spot_checks_per_cycle=0))
    assert none.spot_check_requests(none.evaluate(plan, subs, {}), b"seed") == []


def test_value_disputes_check_both_groups_values():
    """Guards against only one side of a value dispute being verified."""
    plan = cb.make_plan(zipcodes_per_batch=3, miners_per_group=5)
    truth = cb.make_truth(plan)
    group_b = plan.groups[1]

    def answer_for(miner, group):
        if group == group_b:
            return {
                z: cb.answer([cb.changed(f, cb.PRICE, f[cb.PRICE] + 7) for f in truth[z]])
                for z in truth
            }
        return {z: cb.answer(truth[z]) for z in truth}

    engine = ConsensusEngine()
    draft = engine.evaluate(plan, cb.submissions(plan, answer_for), {})
    requests = engine.spot_check_requests(draft, b"seed")
    per_batch = ConsensusConfig().spot_checks_per_disputed_batch
    assert [r.reason for r in requests] == ["disputed"] * per_batch  # nothing confirmed to sample
    prices = [r.fields[cb.PRICE] - truth[r.zipcode][r.zpid % 100][cb.PRICE] for r in requests]
    assert set(prices) == {0, 7}  # the groups take turns


# --------------------------------------------------------------------------- captured groups


def captured_scenario():
    """Group 0: 4 of 6 miners (>= 60%) invent the same 2 listings per zipcode; group 1 honest."""
    plan = cb.make_plan(zipcodes_per_batch=3, miners_per_group=6)
    truth = cb.make_truth(plan)
    captured = plan.groups[0]
    colluders = {m.hotkey for m in captured.miners[:4]}
    extras = {z: fakes_for(z, 2) for z in captured.zipcodes}
    subs = cb.submissions(plan, with_extras(truth, extras, colluders), spread_times)
    fake_zpids = {int(f[0]) for fs in extras.values() for f in fs}
    return plan, truth, subs, captured, colluders, fake_zpids


def test_colluding_majority_loses_its_weight_and_honest_miners_decide():
    """Guards against a colluding majority of one group poisoning the consensus or the honest.

    The checks contradict the colluders' votes, so the tally run again after
    them weighs the colluders down: their inventions are no longer accepted,
    the group needs no capture, and its honest minority decides with the
    other group.
    """
    plan, truth, subs, _, colluders, fake_zpids = captured_scenario()
    requests, result = run(
        plan, subs, verdict=lambda r: Verdict.NOT_FOUND if r.zpid in fake_zpids else Verdict.MATCH
    )

    assert sum(r.zpid in fake_zpids for r in requests) >= 2
    assert any(r.reason == "sample" for r in requests)
    assert result.captured_groups == []
    for z, outcome in result.zipcodes.items():
        assert outcome.valid_groups == 2
        assert outcome.confidence >= 0.7
        assert outcome.confirmed == len(truth[z])
        assert outcome.disputed == 0
    honest_reference = result.miners[plan.groups[1].miners[0].hotkey]
    for miner in plan.groups[0].miners + plan.groups[1].miners:
        got = result.miners[miner.hotkey]
        if miner.hotkey in colluders:
            # The checked inventions were shared across coldkeys: a cartel's flag.
            assert FlagKind.CARTEL in kinds(result, miner.hotkey)
            assert got.precision < 1.0
        else:  # honest, in the captured group or not
            assert got.flags == []
            assert got.precision == pytest.approx(1.0)
            assert got.earned == pytest.approx(honest_reference.earned)


def test_unverified_groups_are_not_captured():
    """Guards against capture without failed checks (no verdicts, or NO_EVIDENCE only)."""
    plan, _, subs, _, _, _ = captured_scenario()
    _, without = run(plan, subs)
    _, no_evidence = run(plan, subs, verdict=lambda r: Verdict.NO_EVIDENCE)
    assert without.captured_groups == [] and no_evidence.captured_groups == []
    assert no_evidence == without
    assert not any(f.kind is FlagKind.SPOT_CHECK for f in without.flags)


def test_lone_group_without_passed_checks_is_not_evidence():
    """Guards against trusting the surviving group of a batch that none of its checks confirm."""
    plan, _, subs, captured, colluders, fake_zpids = captured_scenario()
    # Without the re-tally's evidence weights (a threshold nobody reaches), the
    # colluders keep their majority and only capture can void their group.
    config = ConsensusConfig(evidence_min_wrong=10**6)
    _, result = run(
        plan,
        subs,
        config=config,
        verdict=lambda r: Verdict.NOT_FOUND if r.zpid in fake_zpids else Verdict.NO_EVIDENCE,
    )
    assert result.captured_groups == [(captured.batch_id, captured.overlap_group)]
    assert all(o.confidence < 0.7 for o in result.zipcodes.values())
    for hotkey, miner in result.miners.items():
        # Listings the source says do not exist still flag those who reported them,
        # as a cartel's: several coldkeys reported the same ones.
        assert kinds(result, hotkey) == ({FlagKind.CARTEL} if hotkey in colluders else set())
        assert miner.evidence_zipcodes == 0


def test_wrong_values_capture_a_group_but_flag_nobody():
    """Guards against stale values (MISMATCH) being punished like invented listings."""
    plan = cb.make_plan(zipcodes_per_batch=3, miners_per_group=6)
    truth = cb.make_truth(plan)
    captured = plan.groups[0]
    stale = {m.hotkey for m in captured.miners[:4]}
    target = captured.zipcodes[0]

    def answer_for(miner, group):
        answers = {z: cb.answer(truth[z]) for z in group.zipcodes}
        if miner.hotkey in stale:
            answers[target] = cb.answer(
                [cb.changed(f, cb.PRICE, f[cb.PRICE] + 7) for f in truth[target]]
            )
        return answers

    true_hashes = {hash_to_int(cb.record_hash(f)) for fs in truth.values() for f in fs}
    # Equal completion times: the identical stale values cannot be ordered as copies.
    # No evidence weights: this is about capture by wrong values alone.
    _, result = run(
        plan,
        cb.submissions(plan, answer_for),
        config=ConsensusConfig(evidence_min_wrong=10**6),
        verdict=lambda r: Verdict.MATCH if r.record_hash in true_hashes else Verdict.MISMATCH,
    )
    assert result.captured_groups == [(captured.batch_id, captured.overlap_group)]
    assert result.zipcodes[target].confidence >= 0.7
    assert result.flags == []
    for hotkey in stale:
        assert result.miners[hotkey].precision == pytest.approx(2 / 3)


# --------------------------------------------------------------------------- copying


def copy_scenario(rng_seed: int = 1):
    plan = cb.make_plan(zipcodes_per_batch=4, miners_per_group=6)
    truth = cb.make_truth(plan, n_records=20)
    answers = {}
    noisy = cb.noisy_answers(truth, random.Random(rng_seed))
    for group in plan.groups:
        for miner in group.miners:
            answers[miner.hotkey] = noisy(miner, group)
    original, copier = plan.groups[0].miners[0], plan.groups[1].miners[0]
    answers[copier.hotkey] = answers[original.hotkey]  # errors and misses included
    return plan, answers, original, copier


@pytest.mark.parametrize("copier_later_by", [500.0, 1.5])
def test_later_copier_is_flagged_not_the_original(copier_later_by):
    """Guards against copiers going unnoticed, or the original being blamed."""
    plan, answers, original, copier = copy_scenario()

    def completed(miner):
        if miner == copier:
            return 1000.0 + copier_later_by
        return 1000.0 if miner == original else spread_times(miner) + 7.0

    # The validator's source says every record of the truth exists with its
    # value, so the pair's shared misses and wrong values are verified false.
    true_hashes = {
        hash_to_int(cb.record_hash(f))
        for fs in cb.make_truth(plan, n_records=20).values()
        for f in fs
    }
    _, result = run(
        plan,
        cb.submissions(plan, lambda m, g: answers[m.hotkey], completed),
        config=ConsensusConfig(spot_checks_per_batch=50),
        verdict=lambda r: Verdict.MATCH if r.record_hash in true_hashes else Verdict.MISMATCH,
    )

    assert [f.kind for f in result.flags] == [FlagKind.COPYING]
    flag = result.flags[0]
    assert flag.hotkey == copier.hotkey
    assert sorted(flag.evidence["pair"]) == sorted([original.hotkey, copier.hotkey])
    assert flag.evidence["shared_deviations"] >= ConsensusConfig().copy_min_shared
    assert flag.evidence["copier_later_s"] == pytest.approx(copier_later_by)
    assert flag.evidence["verified_false"] >= 1
    assert result.miners[original.hotkey].flags == []


def test_copying_pair_without_verified_deviations_is_not_flagged():
    """Guards against a copy flag from agreement alone (honest miners share a source's errors)."""
    plan, answers, original, copier = copy_scenario()

    def completed(miner):
        return 1500.0 if miner == copier else 1000.0 if miner == original else spread_times(miner)

    _, result = run(plan, cb.submissions(plan, lambda m, g: answers[m.hotkey], completed))
    assert result.flags == []


@pytest.mark.parametrize(
    ("original_s", "copier_s"), [(1000.0, 1000.5), (1000.0, 1001.0), (1000.0, None), (None, 900.0)]
)
def test_copy_without_a_clear_order_flags_nobody(original_s, copier_s):
    """Guards against penalising either side when the validator's clock cannot order them."""
    plan, answers, original, copier = copy_scenario()
    times = {original.hotkey: original_s, copier.hotkey: copier_s}
    _, result = run(
        plan,
        cb.submissions(
            plan, lambda m, g: answers[m.hotkey], lambda m: times.get(m.hotkey, spread_times(m))
        ),
    )
    assert result.flags == []


@pytest.mark.parametrize("rng_seed", range(6))
def test_honest_miners_with_independent_noise_are_never_flagged(rng_seed):
    """Guards against false copy/cartel/fabrication flags on honest, independently noisy miners."""
    plan = cb.make_plan(zipcodes_per_batch=4, miners_per_group=6)
    truth = cb.make_truth(plan, n_records=20)
    _, result = run(
        plan, cb.submissions(plan, cb.noisy_answers(truth, random.Random(rng_seed)), spread_times)
    )
    assert sum(m.evidence_zipcodes for m in result.miners.values()) > 0  # miners were judged
    assert result.flags == []


def test_honest_miners_missing_the_same_new_listings_are_not_copiers():
    """Guards against correlated honest misses being read as copying.

    Two listings per zipcode appeared mid-cycle; the 2 earliest scrapers of
    each group (honest, independent) missed them. 4 of 6 per group found them,
    so they are consensus and every pair of early scrapers shares 6 identical
    misses with Jaccard 1.
    """
    plan = cb.make_plan(zipcodes_per_batch=3, miners_per_group=6)
    truth = cb.make_truth(plan, n_records=10)
    early = {m.hotkey for g in plan.groups for m in g.miners[:2]}

    def answer_for(miner, group):
        return {
            z: cb.answer(truth[z][2:] if miner.hotkey in early else truth[z])
            for z in group.zipcodes
        }

    _, result = run(plan, cb.submissions(plan, answer_for, spread_times))
    assert all(o.confirmed == 10 and o.confidence >= 0.7 for o in result.zipcodes.values())
    assert result.flags == []


# --------------------------------------------------------------------------- cartels


@pytest.mark.parametrize("verified", [True, False])
def test_cartel_is_flagged_on_checked_inventions_only(verified):
    """Guards against a cartel escaping, and against a cartel flag from shared records alone.

    Two coldkeys report the same invented listings: two reporters make them
    uncertain (never evidence by agreement alone), they are checked, and the
    source not finding them flags both as a cartel. Unchecked, nobody is flagged.
    """
    plan = cb.make_plan(zipcodes_per_batch=3, miners_per_group=6)
    truth = cb.make_truth(plan)
    members = {plan.groups[0].miners[0].hotkey, plan.groups[1].miners[0].hotkey}
    zips = plan.groups[0].zipcodes
    extras = {z: fakes_for(z, 2) for z in zips}
    fake_zpids = {int(f[0]) for fs in extras.values() for f in fs}
    requests, result = run(
        plan,
        cb.submissions(plan, with_extras(truth, extras, members), spread_times),
        verdict=(lambda r: Verdict.NOT_FOUND if r.zpid in fake_zpids else Verdict.MATCH)
        if verified
        else None,
    )
    assert sum(r.reason == "uncertain" and r.zpid in fake_zpids for r in requests) >= 2
    cartel = [f for f in result.flags if f.kind is FlagKind.CARTEL]
    if verified:
        assert {f.hotkey for f in cartel} == members
        for flag in cartel:
            assert flag.evidence["shared"] >= ConsensusConfig().spot_check_flag_min_failures
        assert {f.hotkey for f in result.flags} == members  # nobody else
    else:
        assert result.flags == []


# --------------------------------------------------------------------------- honeypots


def test_no_residential_honeypot():
    """Guards against records in a no-residential honeypot going unpunished (or empty answers)."""
    config = ConsensusConfig()
    plan = cb.make_plan(zipcodes_per_batch=3, miners_per_group=5)
    truth = cb.make_truth(plan)
    honeypot = plan.groups[0].zipcodes[0]
    liar, tolerated, absent = (
        plan.groups[0].miners[0],
        plan.groups[1].miners[0],
        plan.groups[1].miners[1],
    )
    invented = {
        liar.hotkey: fakes_for(honeypot, 5),
        tolerated.hotkey: fakes_for(honeypot, config.honeypot_empty_max_records, start=70),
    }

    def answer_for(miner, group):
        answers = {z: cb.answer(truth[z]) for z in group.zipcodes}
        answers[honeypot] = cb.answer(invented.get(miner.hotkey, []))
        if miner == absent:
            del answers[honeypot]
        return answers

    _, result = run(
        plan,
        cb.submissions(plan, answer_for),
        honeypots={honeypot: Honeypot(honeypot, HoneypotKind.NO_RESIDENTIAL)},
    )
    outcome = result.zipcodes[honeypot]
    assert outcome.honeypot and outcome.confirmed == 0 and outcome.confidence == 1.0
    assert FlagKind.HONEYPOT in kinds(result, liar.hotkey)
    flag = next(f for f in result.flags if f.kind is FlagKind.HONEYPOT)
    assert flag.evidence["zipcode"] == honeypot and flag.evidence["records"] == 5
    assert [f.hotkey for f in result.flags if f.kind is FlagKind.HONEYPOT] == [liar.hotkey]
    for hotkey, miner in result.miners.items():
        if hotkey != liar.hotkey:
            assert miner.flags == []
    # Answering "nothing here" is judged correct.
    assert result.miners[plan.groups[0].miners[1].hotkey].precision == pytest.approx(1.0)


def test_reference_honeypot_is_scored_against_the_reference():
    """Guards against reference honeypots being scored against group consensus, or not at all."""
    plan = cb.make_plan(zipcodes_per_batch=3, miners_per_group=5)
    truth = cb.make_truth(plan)
    honeypot = plan.groups[0].zipcodes[0]
    reference = {int(f[0]): cb.record_hash(f) for f in truth[honeypot]}
    # Everybody but one miner reports listing 0 with a stale price: the groups agree on it.
    stale = [cb.changed(truth[honeypot][0], cb.PRICE, 1), *truth[honeypot][1:]]
    exact, inventor = plan.groups[0].miners[0], plan.groups[1].miners[0]

    def answer_for(miner, group):
        answers = {z: cb.answer(truth[z]) for z in group.zipcodes}
        answers[honeypot] = cb.answer(stale)
        if miner == exact:
            answers[honeypot] = cb.answer(truth[honeypot])
        if miner == inventor:
            answers[honeypot] = cb.answer(fakes_for(honeypot, 5))
        return answers

    honeypots = {honeypot: Honeypot(honeypot, HoneypotKind.REFERENCE, reference)}
    _, result = run(plan, cb.submissions(plan, answer_for), honeypots=honeypots)

    outcome = result.zipcodes[honeypot]
    assert outcome.honeypot and outcome.confirmed == len(reference)
    assert result.miners[exact.hotkey].flags == []
    assert result.miners[exact.hotkey].precision == pytest.approx(1.0)
    n = len(reference)
    crowd = plan.groups[0].miners[1]
    assert result.miners[crowd.hotkey].precision == pytest.approx((2 + (n - 1) / n) / 3)
    assert result.miners[crowd.hotkey].flags == []
    assert FlagKind.HONEYPOT in kinds(result, inventor.hotkey)
    flag = next(f for f in result.flags if f.kind is FlagKind.HONEYPOT)
    assert flag.evidence["matched"] == 0 and flag.evidence["kind"] == "reference"
    assert {f.hotkey for f in result.flags} == {inventor.hotkey}


def test_honeypot_deviations_are_not_copy_evidence():
    """Guards against everyone missing a honeypot's private listings being read as copying."""
    plan = cb.make_plan(zipcodes_per_batch=3, miners_per_group=5)
    truth = cb.make_truth(plan)
    honeypot = plan.groups[0].zipcodes[0]
    unseen = [cb.listing(honeypot, 80 + i) for i in range(6)]  # in the reference only
    reference = {int(f[0]): cb.record_hash(f) for f in truth[honeypot] + unseen}
    _, result = run(
        plan,
        cb.submissions(plan, cb.honest(truth), spread_times),
        honeypots={honeypot: Honeypot(honeypot, HoneypotKind.REFERENCE, reference)},
    )
    assert result.zipcodes[honeypot].confirmed == len(reference)
    assert result.flags == []
    # Recall is volume-weighted: the honeypot's volume is its reference size.
    n = len(truth[honeypot])
    for miner in result.miners.values():
        assert miner.recall == pytest.approx(3 * n / (2 * n + len(reference)))
