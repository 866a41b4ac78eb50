"""Manifest model: structural validation, and conversion into engine answers."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from common.manifest import (
    MAX_RECORDS_PER_ZIPCODE,
    Manifest,
    ManifestFile,
    ZipcodeManifest,
    manifest_commitment,
    new_salt,
)
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


# --- commit, then reveal -----------------------------------------------------------------


def _committable(zipcodes, files_per_zipcode=0):
    entries = []
    for z in zipcodes:
        files = [
            ManifestFile(
                key=f"data/hotkey=hk/epoch=1/source=ZILLOW_SOLD/zipcode={z}/{'a' * 64}.jsonl.gz",
                content_hash="a" * 64,
                record_count=2,
                size=10,
            )
        ][:files_per_zipcode]
        entries.append(
            ZipcodeManifest(
                zipcode=z,
                source="ZILLOW_SOLD",
                record_count=2,
                records=[("11", "0" * 32), ("22", "1" * 32)],
                files=files,
            )
        )
    return Manifest(epoch_id="epoch-1", epoch_nonce="ab" * 8, miner_hotkey="hk", zipcodes=entries)


def test_a_commitment_covers_the_records_not_their_order_nor_the_files():
    salt = new_salt()
    base = manifest_commitment(_committable(["10001", "10002"]), salt)
    assert manifest_commitment(_committable(["10002", "10001"]), salt) == base
    # Files may still land until the deadline: they are checked against S3, not committed.
    assert manifest_commitment(_committable(["10001", "10002"], files_per_zipcode=1), salt) == base
    assert manifest_commitment(_committable(["10001"]), salt) != base
    assert manifest_commitment(_committable(["10001", "10002"]), new_salt()) != base
    changed = _committable(["10001", "10002"]).model_copy(update={"epoch_nonce": "cd" * 8})
    assert manifest_commitment(changed, salt) != base


def test_a_salt_of_the_wrong_size_is_refused():
    with pytest.raises(ValueError):
        manifest_commitment(_committable(["10001"]), "ab" * 8)
