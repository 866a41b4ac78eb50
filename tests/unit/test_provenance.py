"""Which records the dataset publishes, and the evidence behind each (consensus/provenance.py)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from consensus.answers import hash_to_int
from consensus.engine import ConsensusEngine
from consensus.provenance import confirmed_records, miners_comparison
from consensus.types import Honeypot, HoneypotKind, Verdict
from tests.unit import consensus_builders as cb

pytestmark = pytest.mark.unit
SEED = b"provenance"


def finalized(plan, subs, verdict=None, honeypots=None):
    engine = ConsensusEngine()
    draft = engine.evaluate(plan, subs, {})
    verdicts = [(r, verdict(r)) for r in engine.spot_check_requests(draft, SEED)] if verdict else []
    result = engine.finalize(draft, verdicts, honeypots or {})
    return confirmed_records(draft, verdicts, result.zipcodes), result


def test_every_agreed_record_once_sorted_with_who_reported_it():
    plan = cb.make_plan(zipcodes_per_batch=3, miners_per_group=5)
    truth = cb.make_truth(plan, n_records=6)
    fabricator = plan.groups[0].miners[0].hotkey
    invented = cb.listing("10001", 99)

    def answer_for(miner, group):
        out = {z: truth[z] for z in group.zipcodes}
        if miner.hotkey == fabricator:
            out["10001"] = [*truth["10001"], invented]
        return {z: cb.answer(records) for z, records in out.items()}

    confirmed, result = finalized(plan, cb.submissions(plan, answer_for))
    keys = [(r.zipcode, r.zpid) for r in confirmed.records]
    assert keys == sorted((z, int(f[0])) for z, fs in truth.items() for f in fs)
    assert int(invented[0]) not in {r.zpid for r in confirmed.records}
    assert {r.miners for r in confirmed.records} == {10}  # both groups, every miner
    assert {r.coldkeys for r in confirmed.records} == {10}
    by_key = {(r.zipcode, r.zpid): r for r in confirmed.records}
    for z, fs in truth.items():
        for f in fs:
            record = by_key[(z, int(f[0]))]
            assert record.record_hash == hash_to_int(cb.record_hash(f))
            assert record.confidence == pytest.approx(result.zipcodes[z].confidence, abs=1e-6)
    # Every miner holds all 6 of each of its zipcodes' records: ties go by hotkey.
    assert confirmed.sources["10001"] == tuple(
        sorted(m.hotkey for g in plan.groups for m in g.miners)
    )


def test_shared_coldkeys_count_once():
    plan = cb.make_plan(zipcodes_per_batch=1, miners_per_group=5)
    truth = cb.make_truth(plan, n_records=3)
    first = plan.groups[0]
    pooled = replace(first, miners=tuple(replace(m, coldkey="pool") for m in first.miners))
    plan = replace(plan, groups=[pooled, *plan.groups[1:]])
    confirmed, _ = finalized(
        plan, cb.submissions(plan, lambda m, g: {z: cb.answer(truth[z]) for z in g.zipcodes})
    )
    assert confirmed.records and {(r.miners, r.coldkeys) for r in confirmed.records} == {(10, 6)}


def test_spot_checked_marks_only_matched_records():
    plan = cb.make_plan(zipcodes_per_batch=3, miners_per_group=5)
    truth = cb.make_truth(plan, n_records=8)
    confirmed, _ = finalized(
        plan,
        cb.submissions(plan, lambda m, g: {z: cb.answer(truth[z]) for z in g.zipcodes}),
        verdict=lambda r: Verdict.MATCH,
    )
    checked = [r for r in confirmed.records if r.spot_checked]
    assert 0 < len(checked) < len(confirmed.records)


def test_disputed_and_unconfident_zipcodes_are_left_out_honeypots_are_not():
    plan = cb.make_plan(zipcodes_per_batch=3, miners_per_group=5)
    truth = cb.make_truth(plan, n_records=6)
    disputed = truth["10002"][0]

    def answer_for(miner, group):
        out = {z: list(truth[z]) for z in group.zipcodes}
        if group.overlap_group == 1:  # the second group sees another price
            out["10002"][0] = cb.changed(disputed, cb.PRICE, disputed[cb.PRICE] + 5)
            # ...and half the records of 10003 differently: no confidence there
            out["10003"] = [cb.changed(f, cb.PRICE, f[cb.PRICE] + 1) for f in truth["10003"]]
        return {z: cb.answer(records) for z, records in out.items()}

    honeypots = {"10001": Honeypot("10001", HoneypotKind.NO_RESIDENTIAL)}
    confirmed, result = finalized(plan, cb.submissions(plan, answer_for), honeypots=honeypots)
    assert result.zipcodes["10003"].confidence < 0.7
    zipcodes = {r.zipcode for r in confirmed.records}
    assert zipcodes == {"10001", "10002"}
    assert int(disputed[0]) not in {r.zpid for r in confirmed.records}
    assert len([r for r in confirmed.records if r.zipcode == "10002"]) == len(truth["10002"]) - 1
    # The honeypot's records are the miners' agreed values, as without a honeypot.
    assert {(r.zpid, r.record_hash) for r in confirmed.records if r.zipcode == "10001"} == {
        (int(f[0]), hash_to_int(cb.record_hash(f))) for f in truth["10001"]
    }


@pytest.mark.parametrize("kind", list(HoneypotKind))
def test_the_dataset_says_nothing_about_which_zipcodes_were_honeypots(kind):
    """Issue 17 review: a zipcode that reached consensus but was missing from the
    published dataset was a honeypot, and the manifest lists zipcodes: a miner could
    read its block's honeypots off it. With or without honeypots revealed, the
    confirmed set is the same, record for record; the owner's reference (here other
    prices, and an extra listing) never reaches it."""
    plan = cb.make_plan(zipcodes_per_batch=3, miners_per_group=5)
    truth = cb.make_truth(plan, n_records=6)
    subs = cb.submissions(plan, lambda m, g: {z: cb.answer(truth[z]) for z in g.zipcodes})
    reference = {}
    if kind is HoneypotKind.REFERENCE:
        owner = [cb.changed(f, cb.PRICE, f[cb.PRICE] + 7) for f in truth["10001"]]
        owner.append(cb.listing("10001", 77))
        reference = {int(f[0]): cb.record_hash(f) for f in owner}
    honeypots = {"10001": Honeypot("10001", kind, reference)}

    def verdict(request):
        return Verdict.MATCH

    plain, _ = finalized(plan, subs, verdict=verdict)
    revealed, result = finalized(plan, subs, verdict=verdict, honeypots=honeypots)
    assert result.zipcodes["10001"].honeypot
    assert "10001" in {r.zipcode for r in revealed.records}
    assert revealed == plain


def test_without_honeypots_the_miners_comparison_is_the_final_one():
    plan = cb.make_plan(zipcodes_per_batch=3, miners_per_group=5)
    truth = cb.make_truth(plan, n_records=6)

    def answer_for(miner, group):
        out = {z: list(truth[z]) for z in group.zipcodes}
        if group.overlap_group == 1:
            out["10002"][0] = cb.changed(out["10002"][0], cb.PRICE, 1)
        return {z: cb.answer(records) for z, records in out.items()}

    engine = ConsensusEngine()
    draft = engine.evaluate(plan, cb.submissions(plan, answer_for), {})
    verdicts = [(r, Verdict.MATCH) for r in engine.spot_check_requests(draft, SEED)]
    engine.finalize(draft, verdicts, {})
    final, mine = draft.final_comparison, miners_comparison(draft)
    for name in ("confirmed_keys", "confirmed_hash", "confirmed_resolved", "confidence"):
        assert (getattr(final, name) == getattr(mine, name)).all(), name
