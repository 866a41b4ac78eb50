"""Unit tests for ``common.records``: PropertyRecord normalisation, record_hash, RecordDigester."""

from __future__ import annotations

import math
import re
from datetime import date, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from common.records import (
    CONSENSUS_FIELDS,
    KEY_FIELD_INDEXES,
    MAX_ZPID_DIGITS,
    RECORD_HASH_HEX_CHARS,
    SCHEMA_VERSION,
    ListingStatus,
    PropertyRecord,
    RecordDigester,
    hash_consensus_fields,
    normalize_address,
    parse_price,
    parse_status,
)

pytestmark = pytest.mark.unit

HEX_HASH = re.compile(rf"^[0-9a-f]{{{RECORD_HASH_HEX_CHARS}}}$")

BASE: dict = {
    "zpid": 2077001234,
    "address": "123 North Main Street",
    "zipcode": "77494",
    "price": 450_000,
    "listing_status": "FOR_SALE",
    "city": "Katy",
    "state": "TX",
    "property_type": "SINGLE_FAMILY",
    "bedrooms": 3,
    "bathrooms": 2.5,
    "living_area_sqft": 2100,
    "lot_size_sqft": 7000,
    "year_built": 1998,
    "latitude": 29.78,
    "longitude": -95.82,
    "days_on_market": 12,
    "scraped_at": "2024-05-01T12:00:00Z",
}


def raw(**overrides) -> dict:
    """A valid raw record dict with ``overrides`` applied."""
    return {**BASE, **overrides}


def make(**overrides) -> PropertyRecord:
    return PropertyRecord.model_validate(raw(**overrides))


# --------------------------------------------------------------------------- zpid


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (123, "123"),
        ("123", "123"),
        (" 123 ", "123"),
        ("000123", "123"),
        ("123_zpid", "123"),
        ("0000123_zpid", "123"),
        (0, "0"),
        ("0", "0"),
        ("000", "0"),
        (10**MAX_ZPID_DIGITS - 1, "9" * MAX_ZPID_DIGITS),
        ("9" * MAX_ZPID_DIGITS + "_zpid", "9" * MAX_ZPID_DIGITS),
    ],
)
def test_zpid_normalised_to_digits_without_leading_zeros(value, expected):
    assert make(zpid=value).zpid == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        "abc",
        "12a",
        "12 3",
        "-5",
        -5,
        "+5",
        "1.0",
        1.0,
        1.5,
        True,
        False,
        None,
        [123],
        "_zpid",
        "123_zpid_zpid",
        "zpid_123",
        "1" * (MAX_ZPID_DIGITS + 1),
        10**MAX_ZPID_DIGITS,
        "0" * (MAX_ZPID_DIGITS + 1),
    ],
)
def test_bad_zpid_rejected(value):
    """Guards against a non-digit, signed, bool, float or over-long zpid being accepted."""
    with pytest.raises(ValidationError):
        make(zpid=value)


def test_missing_zpid_rejected():
    data = raw()
    del data["zpid"]
    with pytest.raises(ValidationError):
        PropertyRecord.model_validate(data)


@settings(max_examples=80, deadline=None)
@given(n=st.integers(0, 10**MAX_ZPID_DIGITS - 1), zeros=st.integers(0, MAX_ZPID_DIGITS))
def test_zpid_spellings_agree(n, zeros):
    """int, str, zero-padded and "_zpid" spellings of one zpid give one zpid and one hash."""
    padded = ("0" * zeros + str(n))[-MAX_ZPID_DIGITS:] if zeros else str(n)
    if int(padded) != n:  # padding cut into significant digits: not the same zpid
        padded = str(n)
    spellings = [n, str(n), padded, f"{n}_zpid", f"{padded}_zpid"]
    records = [make(zpid=s) for s in spellings]
    assert {r.zpid for r in records} == {str(n)}
    assert len({r.record_hash for r in records}) == 1


# ------------------------------------------------------------------------ zipcode


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("77494", "77494"),
        ("77494-1234", "77494"),
        (" 77494 ", "77494"),
        (" 77494-1234 ", "77494"),
        (77494, "77494"),
        (7501, "07501"),
        ("07501", "07501"),
    ],
)
def test_zipcode_normalised_to_five_digits(value, expected):
    assert make(zipcode=value).zipcode == expected


@pytest.mark.parametrize(
    "value", ["", "7749", "abcde", "7749a", "-7749", -1, True, None, 77494.0, ["77494"]]
)
def test_bad_zipcode_rejected(value):
    with pytest.raises(ValidationError):
        make(zipcode=value)


def test_zip_plus_four_does_not_change_hash():
    assert make(zipcode="77494-1234").record_hash == make(zipcode="77494").record_hash


# -------------------------------------------------------------------------- price


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("$1,250,000", 1_250_000),
        (" $1,250,000 ", 1_250_000),
        ("1250000", 1_250_000),
        ("$ 1,250,000", 1_250_000),
        ("1,250,000.40", 1_250_000),
        (1_250_000, 1_250_000),
        (1_250_000.0, 1_250_000),
        (1_250_000.6, 1_250_001),
        (0, 0),
        ("0", 0),
        ("$0", 0),
        (10**11, 10**11),
    ],
)
def test_price_parsed_to_whole_dollars(value, expected):
    record = make(price=value)
    assert record.price == expected
    assert type(record.price) is int


@pytest.mark.parametrize(
    "value",
    [
        -1,
        -0.6,
        "-5",
        "$-1,000",
        math.nan,
        math.inf,
        -math.inf,
        "nan",
        "NaN",
        "inf",
        "-inf",
        True,
        False,
        "",
        "   ",
        "$",
        "$,",
        "abc",
        "1.2.3",
        None,
        [100],
        {"amount": 100},
        10**11 + 1,
        "1e300",
    ],
)
def test_bad_price_rejected(value):
    """Guards against negative, NaN/inf, bool, empty, out-of-range or non-numeric prices."""
    with pytest.raises(ValidationError):
        make(price=value)


@pytest.mark.parametrize("value", [-1, math.nan, math.inf, True, False, "", "$", None, "x"])
def test_parse_price_raises_value_error(value):
    with pytest.raises(ValueError):
        parse_price(value)


def test_price_spellings_share_hash():
    assert make(price="$450,000").record_hash == make(price=450_000).record_hash
    assert make(price=450_000.0).record_hash == make(price=450_000).record_hash


def test_zestimate_parsed_like_price_and_optional():
    assert make(zestimate="$460,000").zestimate == 460_000
    assert make(zestimate=None).zestimate is None
    with pytest.raises(ValidationError):
        make(zestimate=-1)


# ------------------------------------------------------------------------- status


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("FOR_SALE", ListingStatus.FOR_SALE),
        ("ForSale", ListingStatus.FOR_SALE),
        ("for sale", ListingStatus.FOR_SALE),
        ("for-sale", ListingStatus.FOR_SALE),
        (" FOR_SALE ", ListingStatus.FOR_SALE),
        ("ACTIVE", ListingStatus.FOR_SALE),
        ("COMING_SOON", ListingStatus.FOR_SALE),
        ("Pending", ListingStatus.PENDING),
        ("UNDER_CONTRACT", ListingStatus.PENDING),
        ("contingent", ListingStatus.PENDING),
        ("SOLD", ListingStatus.SOLD),
        ("RECENTLY_SOLD", ListingStatus.SOLD),
        ("RecentlySold", ListingStatus.SOLD),
        ("recently sold", ListingStatus.SOLD),
        ("FOR_RENT", ListingStatus.FOR_RENT),
        ("ForRent", ListingStatus.FOR_RENT),
        ("OFF_MARKET", ListingStatus.OFF_MARKET),
        ("OTHER", ListingStatus.OFF_MARKET),
        (ListingStatus.SOLD, ListingStatus.SOLD),
    ],
)
def test_status_aliases(value, expected):
    assert make(listing_status=value).listing_status is expected
    assert parse_status(value) is expected


@pytest.mark.parametrize(
    "value", ["", "AUCTIONED", "SOLDX", "FOR SALE NOW", "sold!", 1, None, True, ["SOLD"]]
)
def test_unknown_status_rejected(value):
    """Guards against an unknown status being silently mapped onto one of the five."""
    with pytest.raises(ValidationError):
        make(listing_status=value)
    with pytest.raises(ValueError):
        parse_status(value)


def test_status_aliases_share_hash():
    assert (
        make(listing_status="RECENTLY_SOLD").record_hash == make(listing_status="SOLD").record_hash
    )
    assert make(listing_status="ForSale").record_hash == make(listing_status="FOR_SALE").record_hash


# ------------------------------------------------------------------------ address


@pytest.mark.parametrize(
    "spelling",
    [
        "123 North Main Street",
        "123 N. Main St",
        "123 N Main St.",
        "123 n main st",
        "  123   NORTH   MAIN   STREET  ",
        "123 North Main St",
        "123, N. Main Street",
    ],
)
def test_address_spellings_share_address_key(spelling):
    assert make(address=spelling).address_key == "123 N MAIN ST"


def test_address_key_distinguishes_different_addresses():
    keys = {
        make(address=a).address_key
        for a in ("123 N Main St", "123 S Main St", "124 N Main St", "123 N Main Ave")
    }
    assert len(keys) == 4


def test_normalize_address_folds_suffixes_and_units():
    assert (
        normalize_address("456 Southwest Oak Boulevard, Apartment 4B") == "456 SW OAK BLVD APT 4B"
    )
    assert normalize_address("9 East Elm Avenue Suite 100") == "9 E ELM AVE STE 100"
    assert normalize_address("") == ""


@pytest.mark.parametrize("value", ["", "ab", "x" * 301, None, 123])
def test_bad_address_rejected(value):
    with pytest.raises(ValidationError):
        make(address=value)


# -------------------------------------------------------------------- record_hash


def test_record_hash_is_32_lowercase_hex_of_consensus_fields():
    record = make()
    assert HEX_HASH.match(record.record_hash)
    assert record.record_hash == hash_consensus_fields(record.consensus_fields())
    fields = record.consensus_fields()
    assert len(fields) == len(CONSENSUS_FIELDS)
    assert fields[CONSENSUS_FIELDS.index("zpid")] == record.zpid
    assert fields[CONSENSUS_FIELDS.index("address_key")] == record.address_key
    assert fields[CONSENSUS_FIELDS.index("zipcode")] == record.zipcode
    assert [fields[i] for i in KEY_FIELD_INDEXES] == [record.price, record.listing_status.value]


def test_record_hash_stable_across_equivalent_inputs():
    """Two honest scrapes spelling the same listing differently must hash the same."""
    reference = make().record_hash
    equivalents = [
        make(zpid="2077001234"),
        make(zpid="2077001234_zpid"),
        make(zpid="02077001234"),
        make(address="123 N. Main St"),
        make(address="123 north main st."),
        make(price="$450,000"),
        make(listing_status="for sale"),
        make(zipcode="77494-0001"),
        make(property_type="single family"),
        make(bedrooms=3.0),
        make(bedrooms="3"),
        make(bathrooms="2.5"),
        make(living_area_sqft=2100.0),
    ]
    assert [r.record_hash for r in equivalents] == [reference] * len(equivalents)


def test_integral_bathrooms_hash_the_same_as_int_or_float():
    assert make(bathrooms=2).record_hash == make(bathrooms=2.0).record_hash


@pytest.mark.parametrize(
    "overrides",
    [
        {"scraped_at": "2030-01-01T00:00:00Z"},
        {"scraped_at": None},
        {"days_on_market": 99},
        {"days_on_market": None},
        {"latitude": 30.0},
        {"latitude": None},
        {"longitude": -96.0},
        {"city": "Houston"},
        {"state": "tx"},
        {"zestimate": 470_000},
        {"source_url": "https://www.zillow.com/homedetails/2077001234_zpid/"},
        {"list_date": "2024-04-01"},
        {"unknown_extra_field": "ignored"},
    ],
)
def test_non_consensus_fields_do_not_change_hash(overrides):
    """Guards against drifting fields (scrape time, days on market, coordinates) in the hash."""
    assert make(**overrides).record_hash == make().record_hash


@pytest.mark.parametrize(
    "overrides",
    [
        {"price": 450_001},
        {"price": "$460,000"},
        {"listing_status": "SOLD"},
        {"listing_status": "PENDING"},
        {"zpid": 2077001235},
        {"address": "125 North Main Street"},
        {"zipcode": "77450"},
        {"property_type": "CONDO"},
        {"property_type": None},
        {"bedrooms": 4},
        {"bathrooms": 3.0},
        {"living_area_sqft": 2200},
        {"lot_size_sqft": None},
        {"year_built": 1999},
        {"sold_date": "2024-04-30"},
    ],
)
def test_consensus_field_changes_change_hash(overrides):
    """Guards against a consensus field (above all price or status) missing from the hash."""
    assert make(**overrides).record_hash != make().record_hash


def test_sold_date_in_consensus_fields_as_iso_string():
    record = make(listing_status="SOLD", sold_date=date(2024, 4, 30))
    assert record.consensus_fields()[CONSENSUS_FIELDS.index("sold_date")] == "2024-04-30"
    assert record.record_hash == make(listing_status="SOLD", sold_date="2024-04-30").record_hash


def test_scraped_at_parsed_but_not_hashed():
    record = make()
    assert isinstance(record.scraped_at, datetime)
    assert "scraped_at" not in CONSENSUS_FIELDS
    assert "days_on_market" not in CONSENSUS_FIELDS


# -------------------------------------------------------------------- schema etc.


def test_schema_version_defaults_to_1():
    assert SCHEMA_VERSION == 1
    assert make().schema_version == 1
    assert make(schema_version=1).schema_version == 1


@pytest.mark.parametrize("version", [0, 2, -1, 99, "2"])
def test_other_schema_version_rejected(version):
    """Guards against a future/unknown record schema being accepted as version 1."""
    with pytest.raises(ValidationError):
        make(schema_version=version)


@pytest.mark.parametrize(
    "overrides",
    [
        {"bedrooms": -1},
        {"bedrooms": 2.5},
        {"bathrooms": -0.5},
        {"year_built": 1500},
        {"latitude": 91},
        {"longitude": -181},
        {"days_on_market": -1},
        {"state": "TEX"},
        {"property_type": 5},
    ],
)
def test_out_of_range_optional_fields_rejected(overrides):
    with pytest.raises(ValidationError):
        make(**overrides)


def test_record_is_frozen():
    record = make()
    with pytest.raises(ValidationError):
        record.price = 1


# ------------------------------------------------------------------ RecordDigester

VALID_RAWS = [
    raw(),
    raw(zpid="000123_zpid", price="$1,250,000", listing_status="RECENTLY_SOLD"),
    raw(zipcode="77494-1234", address="123 N. Main St", bedrooms=None, bathrooms=None),
    {
        "zpid": "42",
        "address": "1 Elm Ct",
        "zipcode": 7501,
        "price": 0,
        "listing_status": "ForRent",
    },
]


@pytest.mark.parametrize("data", VALID_RAWS)
def test_digest_matches_property_record(data):
    record = PropertyRecord.model_validate(data)
    out = RecordDigester().digest(data)
    assert out == (int(record.zpid), record.record_hash, record.consensus_fields())
    assert type(out[0]) is int


def test_digest_is_stable_when_repeated():
    digester = RecordDigester()
    first = [digester.digest(d) for d in VALID_RAWS]
    second = [digester.digest(dict(d)) for d in VALID_RAWS]
    assert first == second
    assert first == [RecordDigester().digest(d) for d in VALID_RAWS]


@pytest.mark.parametrize(
    "data",
    [
        {},
        raw(zpid="abc"),
        raw(zpid=True),
        raw(price=-1),
        raw(price=math.nan),
        raw(price=True),
        raw(listing_status="AUCTIONED"),
        raw(zipcode="7749"),
        raw(schema_version=2),
        raw(latitude=500),
        {k: v for k, v in BASE.items() if k != "address"},
    ],
)
def test_digest_invalid_record(data):
    assert RecordDigester().digest(data) == "invalid_record"


@pytest.mark.parametrize(
    "entry", [None, 5, "record", ["zpid", 1], (1, "a" * 32), b"{}", make(), {1, 2}]
)
def test_digest_malformed_entry(entry):
    assert RecordDigester().digest(entry) == "malformed_entry"


@pytest.mark.parametrize(
    "overrides",
    [
        {"address": ["123 Main St"]},
        {"price": [450_000]},
        {"zpid": {"id": 1}},
        {"bedrooms": [3]},
        {"sold_date": ["2024-01-01"]},
    ],
)
def test_digest_unhashable_consensus_value_does_not_raise(overrides):
    """Guards against TypeError from memoising on a raw dict holding lists or dicts."""
    digester = RecordDigester()
    assert digester.digest(raw(**overrides)) == "invalid_record"
    assert digester.digest(raw(**overrides)) == "invalid_record"


def test_digest_unhashable_extra_value_does_not_raise():
    data = raw(photos=["a.jpg", "b.jpg"], price_history=[{"price": 1}])
    record = PropertyRecord.model_validate(data)
    assert RecordDigester().digest(data) == (
        int(record.zpid),
        record.record_hash,
        record.consensus_fields(),
    )


def test_digest_with_zero_memo_still_validates():
    digester = RecordDigester(max_entries=0)
    assert digester.digest(raw()) == RecordDigester().digest(raw())
    assert digester.digest(raw(price=-1)) == "invalid_record"


def test_digest_valid_record_not_poisoned_by_earlier_invalid_one():
    """A miner sending a listing with a bad latitude first must not invalidate honest copies."""
    digester = RecordDigester()
    assert digester.digest(raw(latitude=500)) == "invalid_record"
    assert digester.digest(raw()) == RecordDigester().digest(raw()) != "invalid_record"


def test_digest_invalid_record_not_accepted_from_memo():
    digester = RecordDigester()
    assert digester.digest(raw()) != "invalid_record"
    assert digester.digest(raw(schema_version=2)) == "invalid_record"


def test_digest_bool_and_int_not_conflated_by_memo():
    digester = RecordDigester()
    assert digester.digest(raw(price=True)) == "invalid_record"
    assert digester.digest(raw(price=1)) != "invalid_record"


def test_digest_bool_zpid_rejected_after_int_zpid():
    digester = RecordDigester()
    assert digester.digest(raw(zpid=1)) != "invalid_record"
    assert digester.digest(raw(zpid=True)) == "invalid_record"
