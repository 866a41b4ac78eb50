"""A revealed manifest is bounded by the assignment it answers (issue 15, item 2).

Incident: a miner's reveal could list 200 zipcodes x 5,000 records whatever
it was assigned, and the validator kept and stored it as received (+1.1 GB
of memory, 8.5 s of CPU and 156 MB of SQLite rows per epoch from one miner).
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from common.manifest import MAX_RECORDS_PER_ZIPCODE, Manifest
from common.protocol import DataAssignmentRequest, PropertyAnswer, Source
from consensus.assignment import MinerInfo
from tests.unit.manifest_builders import manifest_of, zipcode_entry
from vali_utils.assignments import (
    MIN_RECORD_BOUND,
    SOURCE,
    Assignment,
    lookup_cap,
    record_bound,
    reveal_cap,
    trim_lookups,
    trim_manifest,
)

pytestmark = pytest.mark.unit

ASSIGNED = ["10001", "10002", "10003"]


def request(**update) -> DataAssignmentRequest:
    fields = {
        "request_id": "e1-b0-g0",
        "phase": "assign",
        "zipcode_assignments": {SOURCE: ASSIGNED},
        "epoch_id": "epoch-1",
        "expires_at": datetime(2030, 1, 1, tzinfo=UTC),
    }
    return DataAssignmentRequest(**(fields | update))


def test_record_bound_is_what_the_consensus_counts_within_the_floor_and_the_model_cap():
    assert record_bound(50, 4.0) == MIN_RECORD_BOUND  # 200 < the floor for dense zipcodes
    assert record_bound(600, 4.0) == 2400
    assert record_bound(100_000, 4.0) == MAX_RECORDS_PER_ZIPCODE
    assert record_bound(0, 4.0) == MIN_RECORD_BOUND


def test_reveal_cap_grows_with_the_assignment_and_holds_an_honest_manifest_at_its_bounds():
    bounds = {z: MIN_RECORD_BOUND for z in ASSIGNED}
    full = manifest_of(
        ASSIGNED,
        MIN_RECORD_BOUND,
        zpid=lambda zipcode, i: f"{10**11 + i}",  # the longest zpids, to bound the bytes from above
        epoch_id="epoch-1",
        epoch_nonce="ab" * 32,
        miner_hotkey="5" * 48,
    )
    answer = request(phase="reveal", commitment="0" * 64, manifest=full, salt="1" * 64)
    assert len(answer.model_dump_json()) < reveal_cap(bounds)
    assert reveal_cap(bounds) < 2 * reveal_cap({"10001": MIN_RECORD_BOUND}) * len(ASSIGNED)
    # A hostile 200 x 5,000 reveal is ~50 MB; 20 assigned zipcodes are read up to ~2.6 MB.
    assert reveal_cap({f"{i:05d}": MIN_RECORD_BOUND for i in range(20)}) < 3 * 1024**2


def test_unassigned_duplicate_and_oversized_entries_are_dropped_and_counted():
    manifest = Manifest(
        miner_hotkey="miner",
        zipcodes=[
            zipcode_entry("10001", 3),
            zipcode_entry("99999", 3),  # not assigned
            zipcode_entry("10001", 2),  # a second entry for an assigned zipcode
            zipcode_entry("10002", 11),  # over its bound
            # assigned, but for another source:
            zipcode_entry("10003", 3, source=Source.ZILLOW.value),
            zipcode_entry("10003", 10),  # exactly at its bound
        ],
    )
    bounds = {"10001": 10, "10002": 10, "10003": 10}
    kept, dropped = trim_manifest(manifest, request(), bounds)
    assert [(z.zipcode, z.record_count) for z in kept.zipcodes] == [("10001", 3), ("10003", 10)]
    assert dropped == {"unassigned_zipcode": 2, "duplicate_zipcode": 1, "over_record_bound": 1}


def test_a_manifest_within_its_assignment_is_kept_as_it_is():
    manifest = manifest_of(ASSIGNED, 5, miner_hotkey="miner")
    kept, dropped = trim_manifest(manifest, request(), dict.fromkeys(ASSIGNED, 5))
    assert kept is manifest and not dropped


def test_bounds_default_from_the_request_when_the_cycle_set_none():
    a = Assignment(None, MinerInfo(1, "hk", "ck"), "127.0.0.1:1", request())
    assert a.bounds() == dict.fromkeys(ASSIGNED, MIN_RECORD_BOUND)
    a.record_bounds = {"10002": 2400}
    assert a.bounds()["10002"] == 2400 and a.bounds()["10001"] == MIN_RECORD_BOUND


def test_lookups_keep_only_the_zpids_asked_once_each():
    asked = request(assignment_mode="property_ids", property_ids={SOURCE: ["11", "12"]}, batch_id=0)

    def answer(zpid: str, source: Source = SOURCE) -> PropertyAnswer:
        return PropertyAnswer(source=source, zpid=zpid, found=False)

    kept, dropped = trim_lookups(
        [answer("11"), answer("11"), answer("13"), answer("12", Source.ZILLOW), answer("12")],
        asked,
    )
    assert [(a.source, a.zpid) for a in kept] == [(SOURCE, "11"), (SOURCE, "12")]
    assert dropped == {"lookup_duplicate": 1, "lookup_not_asked": 2}
    assert lookup_cap(2) < lookup_cap(1000) < 1024**2
