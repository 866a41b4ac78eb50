"""Manifest model: structural validation, and conversion into engine answers."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from common.manifest import MAX_RECORDS_PER_ZIPCODE, Manifest
from consensus.answers import answers_from_manifest

pytestmark = pytest.mark.unit

HASH = "0123456789abcdef" * 2


def manifest(**zipcode_overrides) -> dict:
    entry = {
        "zipcode": "77494",
        "source": "ZILLOW_SOLD",
        "record_count": 1,
        "records": [["123", HASH]],
    }
    entry.update(zipcode_overrides)
    return {"miner_hotkey": "5Hotkey", "zipcodes": [entry]}


def test_valid_manifest_parses():
    parsed = Manifest.model_validate(manifest())
    assert parsed.zipcodes[0].records == [("123", HASH)]


@pytest.mark.parametrize(
    "overrides",
    [
        {"zipcode": "7749"},
        {"zipcode": "77494-1"},
        {"source": "zillow"},
        {"records": [["12a", HASH]], "record_count": 1},
        {"records": [["123", HASH.upper()]]},
        {"records": [["123", HASH[:-1]]]},
        {"records": [[123, HASH, "extra"]]},
        {"record_count": 2},
        {"record_count": -1, "records": []},
        {"unexpected": True},
    ],
)
def test_structural_lies_and_bad_types_are_rejected(overrides):
    """A manifest whose count disagrees with its list, or with malformed entries, is a 422."""
    with pytest.raises(ValidationError):
        Manifest.model_validate(manifest(**overrides))


def test_oversized_record_list_is_rejected():
    records = [[str(i), HASH] for i in range(MAX_RECORDS_PER_ZIPCODE + 1)]
    with pytest.raises(ValidationError):
        Manifest.model_validate(manifest(records=records, record_count=len(records)))


def test_unknown_version_is_rejected():
    with pytest.raises(ValidationError):
        Manifest.model_validate(manifest() | {"version": 2})


def test_answers_keep_assigned_zipcodes_and_count_the_rest():
    data = manifest()
    data["zipcodes"].append(dict(data["zipcodes"][0]))  # the same zipcode twice
    data["zipcodes"].append(
        {"zipcode": "10001", "source": "ZILLOW_SOLD", "record_count": 0, "records": []}
    )
    data["zipcodes"].append(
        {"zipcode": "77495", "source": "ZILLOW", "record_count": 0, "records": []}
    )
    answers, dropped = answers_from_manifest(
        Manifest.model_validate(data), ["77494", "77495"], source="ZILLOW_SOLD"
    )
    assert list(answers) == ["77494"]
    assert answers["77494"].zpids.tolist() == [123]
    assert dropped == {"duplicate_zipcode": 1, "unassigned_zipcode": 1, "other_source": 1}


def test_duplicate_zpids_inside_a_manifest_entry_are_counted():
    answers, dropped = answers_from_manifest(
        Manifest.model_validate(
            manifest(records=[["123", HASH], ["123", HASH], ["0123", "f" * 32]], record_count=3)
        ),
        ["77494"],
    )
    # "0123" is zpid 123 with another hash: the miner contradicts itself, nothing counts.
    assert len(answers["77494"]) == 0
    assert dropped["duplicate_zpid"] == 1
    assert dropped["conflicting_duplicate"] >= 1
