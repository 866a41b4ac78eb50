"""Pure S3 logic: seeded sampling, manifest checks, the evaluation's components, scoring."""

from __future__ import annotations

import json

import pytest

from common.manifest import Manifest, ZipcodeManifest
from common.s3_files import (
    DecodedFile,
    Rejection,
    RejectReason,
    decode_zipcode_file,
    encode_zipcode_file,
)
from common.s3_layout import build_key, parse_key
from config.storage import S3EvalConfig
from consensus.answers import hash_to_int
from consensus.engine import ConsensusEngine
from consensus.s3_audit import (
    FileCheck,
    VerdictStatus,
    apply_s3_verdicts,
    check_key,
    check_sample,
    combine,
    rejected_hotkeys,
    select_manifest_samples,
    verification_seed,
)
from consensus.s3_evaluation import (
    COMPONENTS,
    ListedFile,
    SampledFile,
    consensus_records,
    evaluate_miner,
    evaluation_seed,
    no_evidence,
    select_files,
    select_spot_checks,
)
from consensus.scoring import (
    MinerScore,
    ScoringState,
    apply_cycle,
    apply_s3_evaluation,
    compute_weights,
)
from consensus.types import CycleResult, FlagKind, Verdict
from tests.unit.consensus_builders import (
    answered_cycle,
    honest,
    make_plan,
    make_truth,
    record_hash,
    submissions,
)
from tests.unit.s3_builders import (
    NONCE,
    NOW,
    SOURCE,
    encoded,
    hotkey,
    manifest,
    manifest_entry,
    records,
    zipcodes,
)

pytestmark = pytest.mark.unit

EPOCH = 7
CFG = S3EvalConfig()
ZIPS = zipcodes(12)


def decoded(file) -> DecodedFile:
    out = decode_zipcode_file(file.body)
    assert isinstance(out, DecodedFile)
    return out


def miners_manifests(n_miners: int = 4, n_zips: int = 10) -> dict[str, list[Manifest]]:
    out = {}
    for i in range(n_miners):
        hk = hotkey(i)
        entries = [manifest_entry(hk, EPOCH, z, encoded(z)) for z in ZIPS[:n_zips]]
        out[hk] = [manifest(hk, EPOCH, entries)]
    return out


# --- sampling -------------------------------------------------------------------------


def test_manifest_sampling_is_deterministic_for_a_seed():
    manifests = miners_manifests()
    seed = verification_seed(b"block-seed")
    first = select_manifest_samples(seed, manifests, 3)
    again = select_manifest_samples(seed, dict(reversed(list(manifests.items()))), 3)
    assert {hk: [s.key for s in v] for hk, v in first.items()} == {
        hk: [s.key for s in v] for hk, v in again.items()
    }
    assert all(len(v) == 3 for v in first.values())
    others = [
        select_manifest_samples(verification_seed(bytes([i])), manifests, 3) for i in range(5)
    ]
    assert any(
        [s.entry.zipcode for s in o[hotkey(0)]] != [s.entry.zipcode for s in first[hotkey(0)]]
        for o in others
    )


def test_manifest_sampling_skips_foreign_manifests_and_reads_the_old_form():
    hk, other = hotkey(0), hotkey(1)
    file = encoded(ZIPS[0])
    legacy = ZipcodeManifest(
        zipcode=ZIPS[0],
        source=SOURCE,
        record_count=len(file.records),
        records=list(file.records),
        s3_key=build_key("data", hk, EPOCH, SOURCE, ZIPS[0], file.content_hash),
        content_hash=file.content_hash,
    )
    samples = select_manifest_samples(
        b"s", {hk: [manifest(hk, EPOCH, [legacy]), manifest(other, EPOCH, [legacy])]}, 5
    )
    assert len(samples[hk]) == 1 and samples[hk][0].whole_entry
    assert select_manifest_samples(b"s", {hk: [manifest(hk, EPOCH, [])]}, 5) == {hk: []}


def test_file_sampling_is_deterministic_and_respects_the_cutoff():
    hk = hotkey(3)
    listed = [
        ListedFile(
            key := build_key("data", hk, EPOCH, SOURCE, z, f"{i:064x}"),
            parse_key(key),
            100,
            NOW - 100 * i,
        )
        for i, z in enumerate(ZIPS)
    ]
    seed = evaluation_seed(b"next-block", 2)
    first = select_files(seed, hk, listed, 4)
    assert first == select_files(seed, hk, list(reversed(listed)), 4)
    assert len(first) == 4
    others = [select_files(evaluation_seed(b"next-block", r), hk, listed, 4) for r in range(3, 8)]
    assert any(o != first for o in others)
    late = select_files(seed, hk, listed, 20, cutoff=NOW - 450)
    assert {f.last_modified for f in late} <= {NOW - 100 * i for i in range(5, 12)}
    assert len(late) == 7


def test_spot_check_choice_is_deterministic():
    hk = hotkey(2)
    sampled = [sampled_file(hk, z) for z in ZIPS[:3]]
    first = select_spot_checks(b"seed", hk, sampled, 5)
    assert first == select_spot_checks(b"seed", hk, list(reversed(sampled)), 5)
    assert len(first) == 5 and all(r.reason == "s3_eval" for r in first)


# --- manifest checks ------------------------------------------------------------------


def sample_for(entry: ZipcodeManifest, hk: str = hotkey(0)):
    samples = select_manifest_samples(b"s", {hk: [manifest(hk, EPOCH, [entry])]}, 1)
    return samples[hk][0]


def test_honest_file_passes():
    file = encoded(ZIPS[0])
    sample = sample_for(manifest_entry(hotkey(0), EPOCH, ZIPS[0], file))
    assert check_key(sample, prefix="data", expected_epoch=EPOCH) is None
    assert check_sample(sample, decoded(file), expected_nonce=NONCE).status is VerdictStatus.OK


def lying_entry(zipcode: str, **changes) -> tuple[ZipcodeManifest, object]:
    file = encoded(zipcode)
    entry = manifest_entry(hotkey(0), EPOCH, zipcode, file)
    data = json.loads(entry.model_dump_json())
    for path, value in changes.items():
        if path == "records":
            data["records"] = value(data["records"])
            data["record_count"] = len(data["records"])
        else:
            data["files"][0][path] = value
    return ZipcodeManifest.model_validate(data), file


@pytest.mark.parametrize(
    ("changes", "check"),
    [
        ({"content_hash": "0" * 64}, "content_hash"),
        ({"record_count": 3}, "record_count"),
        ({"records": lambda r: [[r[0][0], "f" * 32], *r[1:]]}, "records"),  # a changed record
        ({"records": lambda r: r[:-1]}, "records"),  # the file holds one more
        ({"records": lambda r: [*r, ["1", "e" * 32]]}, "records"),  # the file lacks one
    ],
)
def test_lies_are_caught_with_evidence(changes, check):
    entry, file = lying_entry(ZIPS[1], **changes)
    result = check_sample(sample_for(entry), decoded(file))
    assert result.status is VerdictStatus.MISMATCH
    assert result.evidence["check"] == check
    assert result.evidence["zipcode"] == ZIPS[1]


def test_missing_rejected_and_wrong_nonce_are_mismatches():
    file = encoded(ZIPS[0])
    sample = sample_for(manifest_entry(hotkey(0), EPOCH, ZIPS[0], file))
    assert check_sample(sample, None).evidence["check"] == "object_missing"
    bomb = Rejection(RejectReason.DECOMPRESSED_TOO_LARGE, "bomb", 10, 10)
    assert check_sample(sample, bomb).evidence["reason"] == "decompressed_too_large"
    wrong = check_sample(sample, decoded(file), expected_nonce="f" * 32)
    assert wrong.evidence["check"] == "epoch_nonce"


def test_a_key_under_another_miner_or_epoch_is_a_mismatch():
    """Guards against a miner claiming another miner's upload as its own."""
    file = encoded(ZIPS[0])
    theirs = manifest_entry(hotkey(9), EPOCH, ZIPS[0], file)
    sample = sample_for(theirs, hk=hotkey(0))
    found = check_key(sample, prefix="data", expected_epoch=EPOCH)
    assert found is not None and found.evidence["check"] == "key_mismatch"
    assert "hotkey" in found.evidence["fields"]
    mine = sample_for(manifest_entry(hotkey(0), EPOCH, ZIPS[0], file))
    assert check_key(mine, prefix="data", expected_epoch=EPOCH + 1).evidence["fields"].keys() == {
        "epoch"
    }
    assert check_key(mine, prefix="other", expected_epoch=EPOCH).evidence["check"] == "key_layout"


def test_combine_prefers_evidence_then_outage():
    sample = sample_for(manifest_entry(hotkey(0), EPOCH, ZIPS[0], encoded(ZIPS[0])))
    ok = FileCheck(sample, VerdictStatus.OK, {})
    bad = FileCheck(sample, VerdictStatus.MISMATCH, {"check": "records"})
    down = FileCheck(sample, VerdictStatus.UNAVAILABLE, {"reason": "timeout"})
    assert combine("hk", [ok, down, bad]).status is VerdictStatus.MISMATCH
    assert combine("hk", [ok, down]).status is VerdictStatus.UNAVAILABLE
    assert combine("hk", [ok, ok]).status is VerdictStatus.OK
    assert combine("hk", []).status is VerdictStatus.NO_FILES


def cycle_result(*hotkeys: str) -> CycleResult:
    return answered_cycle(hotkeys, zipcodes=4, volume=100.0, earned=90.0, precision_sum=100.0)


def test_verdicts_flag_liars_and_leave_unavailable_miners_unscored():
    a, b, c = hotkey(0), hotkey(1), hotkey(2)
    sample = sample_for(manifest_entry(a, EPOCH, ZIPS[0], encoded(ZIPS[0])))
    verdicts = {
        a: combine(a, [FileCheck(sample, VerdictStatus.OK, {})]),
        b: combine(b, [FileCheck(sample, VerdictStatus.MISMATCH, {"check": "records"})]),
        c: combine(c, [FileCheck(sample, VerdictStatus.UNAVAILABLE, {"reason": "down"})]),
    }
    assert rejected_hotkeys(verdicts) == {b}
    before = ScoringState(miners={c: MinerScore(uid=2, score=0.7, credibility=0.8)})
    result = cycle_result(a, b, c)
    folded = apply_s3_verdicts(result, verdicts)
    assert set(result.miners) == {a, b, c}  # the input is untouched
    assert set(folded.miners) == {a, b}
    assert [f.kind for f in folded.miners[b].flags] == [FlagKind.FABRICATION]
    assert folded.flags[0].evidence["check"] == "s3_manifest"
    after = apply_cycle(before, "epoch-1", folded)
    assert after.miners[c].score == 0.7 and after.miners[c].credibility == 0.8
    assert after.miners[b].last_flags == ("fabrication",)


# --- evaluation -----------------------------------------------------------------------


def sampled_file(hk: str, zipcode: str, *, modified: float = NOW - 600, **kwargs) -> SampledFile:
    file = encoded(zipcode, **kwargs)
    key = build_key("data", hk, EPOCH, SOURCE, zipcode, file.content_hash)
    return SampledFile(ListedFile(key, parse_key(key), len(file.body), modified), decoded(file))


def consensus_of(*zips: str) -> dict:
    return {
        SOURCE: {
            z: {
                int(zpid): hash_to_int(h)
                for zpid, h in encoded(z).records  # the truth of the synthetic world
            }
            for z in zips
        }
    }


def evaluate(hk, sampled, *, listed=None, assigned=None, consensus=None, **kwargs):
    return evaluate_miner(
        hk,
        listed=listed if listed is not None else [s.listed for s in sampled],
        sampled=sampled,
        assigned=assigned
        if assigned is not None
        else {SOURCE: [s.listed.parts.zipcode for s in sampled]},
        consensus=consensus if consensus is not None else consensus_of(*ZIPS),
        now=NOW,
        config=CFG,
        expected_nonce=NONCE,
        **kwargs,
    )


def test_honest_miner_scores_full_marks():
    hk = hotkey(0)
    result = evaluate(hk, [sampled_file(hk, z) for z in ZIPS[:4]], spot_verdicts=[Verdict.MATCH])
    assert result.reward == pytest.approx(1.0)
    # every component but the padded folder's, which only a padded folder gets
    assert set(result.components) == set(COMPONENTS) - {"folder"}
    assert result.files_checked == 4 and result.reasons == ()


def test_duplicates_within_and_across_files_cost():
    hk = hotkey(0)
    honest = sampled_file(hk, ZIPS[0])
    copy = sampled_file(hk, ZIPS[0], modified=NOW - 500, nonce=NONCE)
    copy = SampledFile(
        ListedFile(
            build_key("data", hk, EPOCH, SOURCE, ZIPS[1], copy.listed.parts.content_hash),
            parse_key(
                build_key("data", hk, EPOCH, SOURCE, ZIPS[1], copy.listed.parts.content_hash)
            ),
            copy.listed.size,
            copy.listed.last_modified,
        ),
        copy.outcome,
    )
    result = evaluate(hk, [honest, copy], consensus={})
    assert result.components["duplicates"] == pytest.approx(0.5)
    assert any(r.startswith("duplicates_across_files") for r in result.reasons)
    doubled = honest.outcome
    within = SampledFile(
        honest.listed,
        DecodedFile(
            doubled.content_hash,
            doubled.compressed_bytes,
            doubled.decompressed_bytes,
            doubled.records * 2,
            {},
            doubled.nonces,
        ),
    )
    assert evaluate(hk, [within], consensus={}).components["duplicates"] == pytest.approx(0.5)


def test_stale_and_future_records_are_not_fresh():
    hk = hotkey(0)
    stale = sampled_file(hk, ZIPS[0], scraped_at=NOW - CFG.freshness_max_age_s - 10)
    future = sampled_file(hk, ZIPS[1], scraped_at=NOW - 100, modified=NOW - 3600)
    result = evaluate(hk, [stale, future])
    assert result.components["freshness"] == 0.0
    assert result.reward == 0.0


def test_undated_records_take_their_upload_time():
    hk = hotkey(0)
    file = encoded(ZIPS[0])
    rows = [{k: v for k, v in r.items() if k != "scraped_at"} for r in records(ZIPS[0])]
    undated = encode_zipcode_file(ZIPS[0], rows, epoch_nonce=NONCE)
    key = build_key("data", hk, EPOCH, SOURCE, ZIPS[0], undated.content_hash)
    fresh = SampledFile(ListedFile(key, parse_key(key), 1, NOW - 60), decoded(undated))
    old = SampledFile(ListedFile(key, parse_key(key), 1, NOW - 10 * 86400), decoded(undated))
    assert evaluate(hk, [fresh]).components["freshness"] == 1.0
    assert evaluate(hk, [old]).components["freshness"] == 0.0
    assert file.content_hash != undated.content_hash


def test_coverage_counts_assigned_zipcodes_with_a_file():
    hk = hotkey(0)
    sampled = [sampled_file(hk, z) for z in ZIPS[:2]]
    result = evaluate(hk, sampled, assigned={SOURCE: ZIPS[:8]})
    assert result.components["coverage"] == pytest.approx(0.25)
    assert "assigned_zipcodes_without_file: 6" in result.reasons
    nothing = evaluate(hk, [], listed=[], assigned={SOURCE: ZIPS[:8]})
    assert nothing.reward == 0.0


def test_disagreement_with_consensus_costs():
    hk = hotkey(0)
    half = {SOURCE: {ZIPS[0]: dict(list(consensus_of(ZIPS[0])[SOURCE][ZIPS[0]].items())[::2])}}
    result = evaluate(hk, [sampled_file(hk, ZIPS[0])], consensus=half)
    assert 0.5 < result.components["agreement"] < 0.8  # precision 1/2, recall 1: F1 2/3
    other = {SOURCE: {ZIPS[0]: {1: 2}}}
    assert evaluate(hk, [sampled_file(hk, ZIPS[0])], consensus=other).reward == 0.0


def test_rejected_vanished_and_renamed_files_fail_integrity():
    hk = hotkey(0)
    good = sampled_file(hk, ZIPS[0])
    bomb = SampledFile(
        sampled_file(hk, ZIPS[1]).listed,
        Rejection(RejectReason.DECOMPRESSED_TOO_LARGE, "bomb", 1, 1),
    )
    gone = SampledFile(sampled_file(hk, ZIPS[2]).listed, None)
    renamed = SampledFile(sampled_file(hk, ZIPS[3]).listed, good.outcome)
    result = evaluate(hk, [good, bomb, gone, renamed])
    assert result.components["integrity"] == pytest.approx(0.25)
    assert {r.split(":")[0] for r in result.reasons} >= {
        "rejected_decompressed_too_large",
        "vanished",
        "content_hash_mismatch",
    }


def test_spot_checks_without_evidence_do_not_count():
    hk = hotkey(0)
    sampled = [sampled_file(hk, ZIPS[0])]
    none = evaluate(hk, sampled, spot_verdicts=[Verdict.NO_EVIDENCE])
    assert "spot_check" not in none.components
    failed = evaluate(hk, sampled, spot_verdicts=[Verdict.MATCH, Verdict.MISMATCH])
    assert failed.components["spot_check"] == 0.5


def test_nothing_to_judge_is_no_evidence():
    assert evaluate(hotkey(0), [], listed=[], assigned={}).reward is None
    assert no_evidence(hotkey(0), "s3 down").reward is None


def test_consensus_records_come_from_the_engine_comparison():
    plan = make_plan()
    truth = make_truth(plan)
    engine = ConsensusEngine()
    draft = engine.evaluate(plan, submissions(plan, honest(truth)), {})
    found = consensus_records(
        draft.zipcodes,
        draft.comparison,
        source=SOURCE,
        min_confidence=engine.config.zipcode_confidence_threshold,
    )
    assert set(found[SOURCE]) == set(truth)
    for zipcode, rows in truth.items():
        assert found[SOURCE][zipcode] == {int(f[0]): hash_to_int(record_hash(f)) for f in rows}
    unsure = consensus_records(draft.zipcodes, draft.comparison, source=SOURCE, min_confidence=1.1)
    assert unsure == {SOURCE: {}}


def test_presence_only_consensus_accepts_any_value():
    hk = hotkey(0)
    file = sampled_file(hk, ZIPS[0])
    presence = {SOURCE: {ZIPS[0]: {r.zpid: None for r in file.outcome.records}}}
    assert evaluate(hk, [file], consensus=presence).components["agreement"] == 1.0


# --- scoring --------------------------------------------------------------------------


def test_s3_rounds_feed_their_own_component():
    hk, other, new = hotkey(0), hotkey(1), hotkey(2)
    state = ScoringState(
        miners={hk: MinerScore(uid=0, score=1.0), other: MinerScore(uid=1, score=1.0)}
    )
    assert compute_weights(state, {hk: 0, other: 1}) == {0: 0.5, 1: 0.5}
    bad = evaluate(hk, [], listed=[], assigned={SOURCE: ZIPS[:2]})  # reward 0
    rounds = {hk: bad, other: no_evidence(other, "down"), new: bad}
    after = apply_s3_evaluation(state, "s3-7-0", rounds, CFG)
    assert after.miners[hk].s3_quality == 0.0  # the first round sets it
    assert after.miners[hk].s3_credibility == pytest.approx(CFG.credibility_alpha)
    assert after.miners[other] == state.miners[other]  # no evidence: untouched
    assert new not in after.miners  # no uid from consensus yet
    assert apply_s3_evaluation(after, "s3-7-0", rounds, CFG) == after  # idempotent
    assert after.miners[hk].credibility == state.miners[hk].credibility
    for i in range(1, 30):
        after = apply_s3_evaluation(after, f"s3-7-{i}", {hk: bad}, CFG)
    assert after.miners[hk].s3_factor(CFG.s3_weight) == pytest.approx(1 - CFG.s3_weight, abs=1e-3)
    weights = compute_weights(after, {hk: 0, other: 1}, CFG)
    assert weights[0] == pytest.approx(0.7 / 1.7, abs=1e-3)


def test_state_with_s3_fields_round_trips_and_old_files_load():
    state = ScoringState(
        applied_cycles=("c1",),
        miners={hotkey(0): MinerScore(uid=1, score=0.5, s3_quality=0.4, s3_credibility=0.3)},
        applied_s3_rounds=("s3-1",),
    )
    data = json.loads(json.dumps(state.to_dict()))
    assert ScoringState.from_dict(data) == state
    del data["applied_s3_rounds"]
    for m in data["miners"].values():
        del m["s3_quality"], m["s3_credibility"]
    old = ScoringState.from_dict(data)
    assert old.miners[hotkey(0)].s3_credibility == 0.0 and old.applied_s3_rounds == ()
    with pytest.raises(ValueError):
        ScoringState.from_dict(state.to_dict() | {"applied_s3_rounds": "s3-1"})


def test_apply_cycle_keeps_the_s3_component():
    hk = hotkey(0)
    state = ScoringState(miners={hk: MinerScore(uid=0, s3_quality=0.2, s3_credibility=0.9)})
    state = apply_s3_evaluation(state, "s3-x", {}, CFG)
    after = apply_cycle(state, "c1", cycle_result(hk))
    assert (after.miners[hk].s3_quality, after.miners[hk].s3_credibility) == (0.2, 0.9)
    assert after.applied_s3_rounds == ("s3-x",)
