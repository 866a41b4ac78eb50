"""The validator's reading of tie-break lookups (vali_utils.cycle.tiebreak_answers)."""

from __future__ import annotations

import pytest

from common.protocol import DataAssignmentRequest, PropertyAnswer
from consensus.answers import hash_to_int
from consensus.assignment import MinerInfo
from consensus.tiebreak import TiebreakRequest
from vali_utils.assignments import SOURCE, Assignment, tiebreak_answers

pytestmark = pytest.mark.unit

MINER = MinerInfo(7, "hk7", "ck7")
TB = TiebreakRequest(batch_id=2, miners=(MINER,), properties=(("10001", 11), ("10002", 22)))
HASH = "ab" * 16


def _assignment(answers):
    request = DataAssignmentRequest(
        request_id="e1-b2-tb",
        phase="assign",
        assignment_mode="property_ids",
        property_ids={SOURCE: ["11", "22"]},
    )
    return Assignment(None, MINER, "http://x", request, tiebreak=TB, property_answers=answers)


def _found(zpid, zipcode, source=SOURCE):
    return PropertyAnswer(source=source, zpid=zpid, found=True, zipcode=zipcode, record_hash=HASH)


def test_found_in_the_disputed_zipcode_counts_as_its_hash():
    (answer,) = tiebreak_answers([_assignment([_found("11", "10001")])])
    assert answer.miner == MINER and answer.batch_id == 2
    assert answer.records == {11: hash_to_int(HASH)}  # 22 left out: not answered


def test_not_found_and_found_elsewhere_both_mean_not_there():
    answers = [
        PropertyAnswer(source=SOURCE, zpid="11", found=False),
        _found("22", "99999"),
    ]
    (answer,) = tiebreak_answers([_assignment(answers)])
    assert answer.records == {11: None, 22: None}


def test_unasked_zpids_other_sources_and_silent_miners_are_ignored():
    other = "ZILLOW" if SOURCE.value != "ZILLOW" else "ZILLOW_SOLD"
    answers = [_found("33", "10001"), _found("11", "10001", source=other)]
    (answer,) = tiebreak_answers([_assignment(answers)])
    assert answer.records == {}
    assert tiebreak_answers([_assignment(None)]) == []


def test_a_released_manifest_still_counts_as_collected():
    from common.manifest import Manifest
    from common.protocol import AssignmentStatus

    request = DataAssignmentRequest(
        request_id="e1-b2-g0", phase="assign", zipcode_assignments={SOURCE: ["10001"]}
    )
    a = Assignment(None, MINER, "http://x", request)
    a.status = AssignmentStatus.COMPLETED.value
    a.manifest = Manifest(miner_hotkey="hk7", zipcodes=[])
    assert a.collected and a.progress().answer_json is not None
    a.release_manifest()
    assert a.manifest is None and a.released and a.collected
    # Releasing again (nothing left to drop) keeps it released.
    a.release_manifest()
    assert a.released
    # An assignment that never had a manifest is not collected by releasing.
    empty = Assignment(None, MINER, "http://x", request, status=AssignmentStatus.COMPLETED.value)
    empty.release_manifest()
    assert not empty.released and not empty.collected
