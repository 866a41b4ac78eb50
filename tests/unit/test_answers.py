"""Unit tests for ``consensus.answers``: sanitising miner entries into ZipcodeAnswers."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.records import MAX_ZPID_DIGITS, PropertyRecord, RecordDigester
from consensus.answers import (
    DEFAULT_MAX_RECORDS_PER_ZIPCODE,
    HASH_PREFIX_HEX,
    ZipcodeAnswer,
    answer_from_digests,
    answer_from_entries,
    hash_to_int,
)

pytestmark = pytest.mark.unit

ZIP = "77494"
OTHER_ZIP = "10001"
H1 = "0123456789abcdef" * 2
H2 = "fedcba9876543210" * 2
REASONS = {
    "oversized_list",
    "malformed_entry",
    "bad_zpid",
    "bad_hash",
    "invalid_record",
    "wrong_zipcode",
    "malformed_fields",
    "fields_hash_mismatch",
    "duplicate_zpid",
    "conflicting_duplicate",
}


def raw(n: int = 1001, **overrides) -> dict:
    """A valid record dict for zpid ``n`` (address and price derived from it)."""
    return {
        "zpid": n,
        "address": f"{n} North Main Street",
        "zipcode": ZIP,
        "price": 300_000 + n,
        "listing_status": "FOR_SALE",
        "bedrooms": 3,
        **overrides,
    }


def record(n: int = 1001, **overrides) -> PropertyRecord:
    return PropertyRecord.model_validate(raw(n, **overrides))


def pair(rec: PropertyRecord) -> tuple[int, str]:
    return int(rec.zpid), rec.record_hash


def triple(rec: PropertyRecord) -> tuple[int, str, tuple]:
    return int(rec.zpid), rec.record_hash, rec.consensus_fields()


def assert_aligned(answer: ZipcodeAnswer) -> None:
    assert answer.zpids.dtype == np.int64
    assert answer.hashes.dtype == np.int64
    assert answer.zpids.shape == answer.hashes.shape
    assert len(set(answer.zpids.tolist())) == len(answer)
    if answer.fields is not None:
        assert len(answer.fields) == len(answer)


# ------------------------------------------------------------------ accepted forms


def test_pairs_accepted():
    recs = [record(z) for z in (1001, 1002, 1003)]
    answer, dropped = answer_from_entries(ZIP, [pair(r) for r in recs])
    assert dropped == Counter()
    assert answer.zpids.tolist() == [1001, 1002, 1003]
    assert answer.hashes.tolist() == [hash_to_int(r.record_hash) for r in recs]
    assert answer.fields is None
    assert_aligned(answer)


def test_pairs_as_json_lists_and_string_zpids_accepted():
    answer, dropped = answer_from_entries(ZIP, [["1001", H1], [1002, H2], ("0001003", H1)])
    assert dropped == Counter()
    assert answer.zpids.tolist() == [1001, 1002, 1003]
    assert answer.hashes.tolist() == [hash_to_int(H1), hash_to_int(H2), hash_to_int(H1)]


@pytest.mark.parametrize("zpid", [0, 10**MAX_ZPID_DIGITS - 1, "9" * MAX_ZPID_DIGITS])
def test_zpid_bounds_accepted(zpid):
    answer, dropped = answer_from_entries(ZIP, [(zpid, H1)])
    assert dropped == Counter()
    assert answer.zpids.tolist() == [int(zpid)]


def test_triples_accepted_with_fields():
    recs = [record(z) for z in (1001, 1002)]
    answer, dropped = answer_from_entries(ZIP, [triple(r) for r in recs])
    assert dropped == Counter()
    assert answer.zpids.tolist() == [1001, 1002]
    assert answer.fields == tuple(r.consensus_fields() for r in recs)
    assert_aligned(answer)


def test_triple_fields_as_json_list_become_tuple():
    rec = record()
    answer, dropped = answer_from_entries(
        ZIP, [[1001, rec.record_hash, list(rec.consensus_fields())]]
    )
    assert dropped == Counter()
    assert answer.fields == (rec.consensus_fields(),)


def test_triple_with_none_fields_is_a_pair():
    answer, dropped = answer_from_entries(ZIP, [(1001, H1, None)])
    assert dropped == Counter()
    assert answer.zpids.tolist() == [1001]
    assert answer.fields is None


def test_dicts_accepted_as_validated_records():
    data = [raw(1001), raw(1002, zpid="1002_zpid", price="$301,002")]
    answer, dropped = answer_from_entries(ZIP, data)
    recs = [PropertyRecord.model_validate(d) for d in data]
    assert dropped == Counter()
    assert answer.zpids.tolist() == [1001, 1002]
    assert answer.hashes.tolist() == [hash_to_int(r.record_hash) for r in recs]
    assert answer.fields == tuple(r.consensus_fields() for r in recs)


def test_property_records_accepted():
    recs = [record(1001), record(1002)]
    answer, dropped = answer_from_entries(ZIP, recs)
    assert dropped == Counter()
    assert answer.zpids.tolist() == [1001, 1002]
    assert answer.hashes.tolist() == [hash_to_int(r.record_hash) for r in recs]
    assert answer.fields == tuple(r.consensus_fields() for r in recs)


def test_mixed_forms_keep_fields_aligned():
    recs = [record(z) for z in (1001, 1002, 1003, 1004)]
    entries = [pair(recs[0]), triple(recs[1]), raw(1003), recs[3]]
    answer, dropped = answer_from_entries(ZIP, entries)
    assert dropped == Counter()
    assert answer.zpids.tolist() == [1001, 1002, 1003, 1004]
    assert answer.fields == (None, *(r.consensus_fields() for r in recs[1:]))
    for zpid, fields in zip(answer.zpids.tolist(), answer.fields, strict=True):
        assert fields is None or fields[0] == str(zpid)


def test_tuple_of_entries_accepted():
    answer, dropped = answer_from_entries(ZIP, ((1001, H1), (1002, H2)))
    assert dropped == Counter()
    assert len(answer) == 2


def test_empty_entries():
    answer, dropped = answer_from_entries(ZIP, [])
    assert len(answer) == 0
    assert dropped == Counter()


# ------------------------------------------------------------------ dropped entries


def assert_dropped_beside_a_good_entry(entry, reason: str) -> None:
    """``entry`` next to a good entry: it alone is dropped, counted under ``reason``."""
    answer, dropped = answer_from_entries(ZIP, [entry, (2002, H2)])
    assert dropped == Counter({reason: 1})
    assert answer.zpids.tolist() == [2002]


@pytest.mark.parametrize(
    "entry",
    [
        5,
        1.5,
        None,
        True,
        "1001",
        b"1001",
        (),
        (1001,),
        [1001],
        (1001, H1, None, "extra"),
        [1001, H1, [], [], []],
        {1001, H1},
    ],
)
def test_malformed_entry_dropped(entry):
    assert_dropped_beside_a_good_entry(entry, "malformed_entry")


@pytest.mark.parametrize(
    "zpid",
    [
        "",
        "abc",
        "12a",
        "-1",
        " 123",
        "123 ",
        "1.0",
        "123_zpid",
        -1,
        True,
        False,
        None,
        1.0,
        10**MAX_ZPID_DIGITS,
        "1" * (MAX_ZPID_DIGITS + 1),
        [1001],
    ],
)
def test_bad_zpid_dropped(zpid):
    """Guards against non-digit, negative, bool, float or over-long zpids entering the engine."""
    assert_dropped_beside_a_good_entry((zpid, H1), "bad_zpid")


@pytest.mark.parametrize(
    "record_hash",
    [
        H1[:-1],
        H1 + "0",
        H1.upper(),
        "A" + H1[1:],
        "g" * 32,
        " " + H1[1:],
        H1 + "\n",
        H1[:16],
        "",
        None,
        int(H1, 16),
        H1.encode(),
    ],
)
def test_bad_hash_dropped(record_hash):
    """Guards against hashes of the wrong length, case or type reaching hash_to_int."""
    assert_dropped_beside_a_good_entry((1001, record_hash), "bad_hash")


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"zpid": 1001},
        raw(price=-1),
        raw(price=True),
        raw(listing_status="AUCTIONED"),
        raw(zpid="abc"),
        raw(schema_version=2),
        raw(zipcode="7749"),
        raw(address=["1 Main St"]),
        {1: 2},
    ],
)
def test_invalid_record_dict_dropped(data):
    assert_dropped_beside_a_good_entry(data, "invalid_record")


@pytest.mark.parametrize(
    "entry",
    [
        raw(zipcode=OTHER_ZIP),
        record(zipcode=OTHER_ZIP),
        triple(record(zipcode=OTHER_ZIP)),
    ],
    ids=["dict", "record", "fields"],
)
def test_wrong_zipcode_dropped(entry):
    """Guards against a miner padding a zipcode's answer with listings of another zipcode."""
    assert_dropped_beside_a_good_entry(entry, "wrong_zipcode")


def test_zip_plus_four_record_counts_for_its_zipcode():
    answer, dropped = answer_from_entries(ZIP, [raw(zipcode=f"{ZIP}-1234")])
    assert dropped == Counter()
    assert answer.zpids.tolist() == [1001]


def test_malformed_fields_dropped():
    fields = record().consensus_fields()
    entries = [
        (1001, H1, fields[:-1]),  # too short
        (1001, H1, (*fields, None)),  # too long
        (1001, H1, "x" * len(fields)),  # not a tuple/list
        (1001, H1, {"zpid": "1001"}),
        (1002, H1, fields),  # fields of another zpid
    ]
    answer, dropped = answer_from_entries(ZIP, entries)
    assert dropped == Counter({"malformed_fields": 5})
    assert len(answer) == 0


def test_same_zpid_same_hash_is_duplicate_one_kept():
    rec = record()
    answer, dropped = answer_from_entries(
        ZIP, [pair(rec), raw(1001), rec, triple(rec), ("1001", rec.record_hash)]
    )
    assert dropped == Counter({"duplicate_zpid": 4})
    assert answer.zpids.tolist() == [1001]
    assert answer.hashes.tolist() == [hash_to_int(rec.record_hash)]


def test_same_zpid_different_hash_is_conflict_none_kept():
    """Guards against a miner hedging with two versions of one listing and one counting."""
    a, b = record(1001), record(1001, price=1)
    answer, dropped = answer_from_entries(ZIP, [pair(a), (2002, H2), b])
    assert answer.zpids.tolist() == [2002]
    assert dropped == Counter({"conflicting_duplicate": 2})  # both copies dropped


def test_conflict_then_repeat_of_first_drops_everything_for_that_zpid():
    answer, dropped = answer_from_entries(ZIP, [(1001, H1), (1001, H2), (1001, H1)])
    assert len(answer) == 0
    assert dropped["duplicate_zpid"] == 1
    assert dropped["conflicting_duplicate"] >= 1
    assert "1001" not in map(str, answer.zpids.tolist())


def test_oversized_list_truncated_to_max_records():
    entries = [(z, H1) for z in range(1, 11)]
    answer, dropped = answer_from_entries(ZIP, entries, max_records=4)
    assert dropped == Counter({"oversized_list": 6})
    assert answer.zpids.tolist() == [1, 2, 3, 4]


def test_list_at_max_records_not_oversized():
    entries = [(z, H1) for z in range(1, 5)]
    answer, dropped = answer_from_entries(ZIP, entries, max_records=4)
    assert dropped == Counter()
    assert len(answer) == 4


def test_oversized_tail_is_not_inspected():
    entries = [(1, H1), (2, H1), ("bad", H1), (1, H2)]
    answer, dropped = answer_from_entries(ZIP, entries, max_records=2)
    assert dropped == Counter({"oversized_list": 2})
    assert answer.zpids.tolist() == [1, 2]


def test_default_max_records():
    entries = [(z, H1) for z in range(DEFAULT_MAX_RECORDS_PER_ZIPCODE + 3)]
    answer, dropped = answer_from_entries(ZIP, entries)
    assert len(answer) == DEFAULT_MAX_RECORDS_PER_ZIPCODE
    assert dropped == Counter({"oversized_list": 3})


@pytest.mark.parametrize(
    "entries", [None, 5, "entries", b"x", {"1001": H1}, {(1001, H1)}, record(), (e for e in [])]
)
def test_non_list_entries_argument(entries):
    answer, dropped = answer_from_entries(ZIP, entries)
    assert len(answer) == 0
    assert dropped == Counter({"malformed_entry": 1})


def test_dropped_counts_are_per_entry():
    entries = [
        (1001, H1),
        (1001, H1),
        ("x", H1),
        (1003, "bad"),
        raw(1004, zipcode=OTHER_ZIP),
        raw(1005, price=-1),
        42,
        (1006, H1),
    ]
    answer, dropped = answer_from_entries(ZIP, entries)
    assert answer.zpids.tolist() == [1001, 1006]
    assert dropped == Counter(
        {
            "duplicate_zpid": 1,
            "bad_zpid": 1,
            "bad_hash": 1,
            "wrong_zipcode": 1,
            "invalid_record": 1,
            "malformed_entry": 1,
        }
    )


@pytest.mark.parametrize("zpid", ["²", "12³", "①"])
def test_unicode_non_decimal_digit_zpid_dropped_not_raised(zpid):
    """A miner sending ["²", hash] must not crash the validator's intake."""
    assert_dropped_beside_a_good_entry([zpid, H1], "bad_zpid")


# --------------------------------------------------------------------------- fuzz

_SAFE_CHARS = st.characters(codec="utf-8").filter(lambda c: not (c.isdigit() and not c.isdecimal()))
_TEXT = st.text(alphabet=_SAFE_CHARS, max_size=20)
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    _TEXT,
)
JSON = st.recursive(
    _SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=5), st.dictionaries(_TEXT, children, max_size=5)
    ),
    max_leaves=12,
)
_NEAR_ZPID = st.one_of(
    st.integers(-5, 10**13),
    st.integers(2**62, 2**66),  # around the int64 limit
    st.sampled_from(["1001", "01001", "x", "", "9" * 19]),
    JSON,
)
_NEAR_HASH = st.one_of(st.sampled_from([H1, H2, H1.upper(), H1[:31]]), JSON)
_RECORD_FIELDS = st.sampled_from(
    ["zpid", "zipcode", "price", "listing_status", "address", "schema_version", "bedrooms"]
)
NEAR_ENTRIES = st.one_of(
    st.tuples(_NEAR_ZPID, _NEAR_HASH),
    st.tuples(_NEAR_ZPID, _NEAR_HASH, st.one_of(JSON, st.just(record().consensus_fields()))),
    st.builds(
        lambda over: raw(**over), st.dictionaries(_RECORD_FIELDS, JSON | _NEAR_ZPID, max_size=3)
    ),
)


def _check_answer(answer, dropped) -> None:
    assert isinstance(answer, ZipcodeAnswer)
    assert isinstance(dropped, Counter)
    assert set(dropped) <= REASONS
    assert all(isinstance(n, int) and n > 0 for n in dropped.values())
    assert_aligned(answer)


@settings(max_examples=100, deadline=None)
@given(entries=st.lists(st.one_of(JSON, NEAR_ENTRIES), max_size=12))
def test_fuzz_entries_never_raise_and_zpids_unique(entries):
    """Nothing a miner sends may make intake raise or yield a duplicate zpid."""
    answer, dropped = answer_from_entries(ZIP, entries, max_records=10)
    _check_answer(answer, dropped)
    # every entry is either kept or counted once under one reason
    assert len(answer) + sum(dropped.values()) == len(entries)


@settings(max_examples=60, deadline=None)
@given(entries=JSON)
def test_fuzz_any_json_value_as_entries(entries):
    answer, dropped = answer_from_entries(ZIP, entries)
    _check_answer(answer, dropped)


# ---------------------------------------------------------------- answer_from_digests


def digests_of(raws: list[dict]) -> list:
    digester = RecordDigester()
    return [d for d in map(digester.digest, raws) if not isinstance(d, str)]


def test_digests_match_entries_for_clean_records():
    raws = [raw(z) for z in (1001, 1002, 1003)]
    from_digests, dropped_d = answer_from_digests(ZIP, digests_of(raws))
    from_entries, dropped_e = answer_from_entries(ZIP, raws)
    assert dropped_d == dropped_e == Counter()
    assert from_digests.zpids.tolist() == from_entries.zpids.tolist() == [1001, 1002, 1003]
    assert from_digests.hashes.tolist() == from_entries.hashes.tolist()
    assert from_digests.fields == from_entries.fields


def test_digests_duplicate_one_kept():
    answer, dropped = answer_from_digests(ZIP, digests_of([raw(1001), raw(1001), raw(1002)]))
    assert answer.zpids.tolist() == [1001, 1002]
    assert dropped == Counter({"duplicate_zpid": 1})


def test_digests_conflicting_duplicate_none_kept():
    answer, dropped = answer_from_digests(
        ZIP, digests_of([raw(1001), raw(1002), raw(1001, price=5)])
    )
    assert answer.zpids.tolist() == [1002]
    assert answer.fields == (record(1002).consensus_fields(),)
    assert dropped["conflicting_duplicate"] >= 1
    assert set(dropped) == {"conflicting_duplicate"}


def test_digests_wrong_zipcode_dropped():
    answer, dropped = answer_from_digests(
        ZIP, digests_of([raw(1001, zipcode=OTHER_ZIP), raw(1002)])
    )
    assert answer.zpids.tolist() == [1002]
    assert dropped == Counter({"wrong_zipcode": 1})


def test_digests_and_entries_count_conflicts_the_same():
    raws = [raw(1001), raw(1001, price=5)]
    _, dropped_d = answer_from_digests(ZIP, digests_of(raws))
    _, dropped_e = answer_from_entries(ZIP, raws)
    assert dropped_d == dropped_e


_POOL = [
    raw(z, zipcode=zc, price=p)
    for z in (1001, 1002, 1003)
    for zc in (ZIP, OTHER_ZIP)
    for p in (100, 200)
]


@settings(max_examples=80, deadline=None)
@given(raws=st.lists(st.sampled_from(_POOL), max_size=12))
def test_digests_and_entries_keep_the_same_records(raws):
    """The fast path must keep exactly what the full intake keeps, aligned with its fields."""
    from_digests, dropped_d = answer_from_digests(ZIP, digests_of(raws))
    from_entries, dropped_e = answer_from_entries(ZIP, raws)
    assert from_digests.zpids.tolist() == from_entries.zpids.tolist()
    assert from_digests.hashes.tolist() == from_entries.hashes.tolist()
    assert (from_digests.fields or ()) == (from_entries.fields or ())
    assert_aligned(from_digests)
    for reason in ("wrong_zipcode", "duplicate_zpid"):
        assert dropped_d[reason] == dropped_e[reason]
    assert bool(dropped_d["conflicting_duplicate"]) == bool(dropped_e["conflicting_duplicate"])


# ------------------------------------------------------------ ZipcodeAnswer, hash_to_int


def test_from_pairs():
    answer = ZipcodeAnswer.from_pairs([(1001, H1), ("1002", H2)])
    assert answer.zpids.dtype == np.int64 and answer.hashes.dtype == np.int64
    assert answer.zpids.tolist() == [1001, 1002]
    assert answer.hashes.tolist() == [hash_to_int(H1), hash_to_int(H2)]
    assert answer.fields is None
    assert len(answer) == 2


def test_from_pairs_with_fields_and_generator():
    fields = [("1001",), ("1002",)]
    answer = ZipcodeAnswer.from_pairs(((z, H1) for z in (1001, 1002)), iter(fields))
    assert answer.fields == tuple(fields)
    assert len(answer) == 2


def test_empty_answer():
    answer = ZipcodeAnswer.empty()
    assert len(answer) == 0
    assert answer.zpids.dtype == np.int64 and answer.hashes.dtype == np.int64
    assert ZipcodeAnswer.from_pairs([]).zpids.shape == (0,)


@pytest.mark.parametrize(
    ("record_hash", "expected"),
    [
        ("0" * 32, 0),
        ("0" * 15 + "1" + "f" * 16, 1),
        ("7" + "f" * 15 + "0" * 16, 2**63 - 1),
        ("8" + "0" * 15 + "f" * 16, -(2**63)),
        ("f" * 32, -1),
        ("f" * 15 + "e" + "0" * 16, -2),
    ],
)
def test_hash_to_int_is_signed_int64_of_first_16_hex(record_hash, expected):
    assert hash_to_int(record_hash) == expected


@settings(max_examples=100, deadline=None)
@given(prefix=st.integers(0, 2**64 - 1), tail=st.integers(0, 2**64 - 1))
def test_hash_to_int_matches_numpy_reinterpretation(prefix, tail):
    record_hash = f"{prefix:016x}{tail:016x}"
    value = hash_to_int(record_hash)
    assert -(2**63) <= value < 2**63
    assert value == int(np.array([prefix], dtype=np.uint64).view(np.int64)[0])
    assert value == hash_to_int(record_hash[:HASH_PREFIX_HEX] + "0" * 16)
