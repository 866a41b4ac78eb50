"""Parsing zillow-com1 answers into records: every variant of the reference, every drop reason.

The fixtures in tests/fixtures/rapidapi are written from the API reference;
each test names the variant it guards.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.records import PropertyRecord
from scraping.parsing import (
    SQFT_PER_ACRE,
    DropReason,
    listing_to_record,
    listings_of,
    parse_property,
    parse_search_page,
    split_address,
)
from scraping.source import BadAnswer
from tests.unit.rapidapi_fixtures import fixture

pytestmark = pytest.mark.unit


def by_zpid(records: list[dict]) -> dict[str, dict]:
    return {r["zpid"]: r for r in records}


def test_sold_listing_becomes_the_exact_record():
    page = parse_search_page(
        fixture("search_recently_sold"), zipcode="77021", default_status="SOLD"
    )
    assert by_zpid(page.records)["27837052"] == {
        "schema_version": 1,
        "zpid": "27837052",
        "address": "5920 Conley St",
        "zipcode": "77021",
        "price": 189000,
        "listing_status": "SOLD",  # RECENTLY_SOLD is an alias of SOLD
        "city": "Houston",
        "state": "TX",
        "property_type": "SINGLE_FAMILY",
        "bedrooms": 3,
        "bathrooms": 1.0,
        "living_area_sqft": 1176,
        "lot_size_sqft": 6250,
        "latitude": 29.693112,
        "longitude": -95.348401,
        "sold_date": "2024-01-02",  # dateSold 1704182400000 ms
        "zestimate": 195300,
        "source_url": "https://www.zillow.com/homedetails/5920-Conley-St-Houston-TX-77021/27837052_zpid/",
    }


def test_every_record_is_accepted_by_the_record_model_unchanged():
    for name, zipcode in [
        ("search_for_sale_page1", "77494"),
        ("search_for_sale_page2", "77494"),
        ("search_recently_sold", "77021"),
        ("search_address_object", "77494"),
        ("search_single_property", "77494"),
    ]:
        page = parse_search_page(fixture(name), zipcode=zipcode, default_status="FOR_SALE")
        assert page.records, name
        for record in page.records:
            model = PropertyRecord.model_validate(record)
            assert model.model_dump(mode="json", exclude_none=True) == record


def test_for_sale_page_variants_and_drop_reasons():
    page = parse_search_page(
        fixture("search_for_sale_page1"), zipcode="77494", default_status="FOR_SALE"
    )
    records = by_zpid(page.records)
    assert page.total_pages == 2
    assert page.dropped == {
        "missing_zpid": 1,
        "missing_address": 1,
        "missing_price": 1,
        "wrong_zipcode": 1,  # a Houston 77002 listing in a Katy 77494 search
        "invalid_record": 1,  # zpid "not-a-zpid"
    }
    assert set(records) == {"2061234501", "2061234502", "2061234503", "2061234509"}
    # zpid given as a string; address string split into its parts; acres -> sqft
    first = records["2061234501"]
    assert (first["address"], first["city"], first["state"], first["zipcode"]) == (
        "24515 Sage Brook Ln",
        "Katy",
        "TX",
        "77494",
    )
    assert first["lot_size_sqft"] == round(0.2 * SQFT_PER_ACRE)
    # price "$1,250,000"; lot in sqft; a full detailUrl is kept as it is
    second = records["2061234502"]
    assert second["price"] == 1_250_000
    assert second["lot_size_sqft"] == 5000
    assert second["address"] == "2800 Cane Island Pkwy APT 1204"
    assert second["source_url"].startswith("https://www.zillow.com/homedetails/2800-Cane")
    # COMING_SOON is for sale; daysOnZillow -1 is cleared, the listing is kept
    third = records["2061234503"]
    assert third["listing_status"] == "FOR_SALE"
    assert "days_on_market" not in third
    assert records["2061234509"]["lot_size_sqft"] == round(1.5 * SQFT_PER_ACRE)


@pytest.mark.parametrize(
    ("name", "zipcode", "status", "zpid", "expected", "dropped"),
    [
        pytest.param(
            "search_for_sale_page2", "77494", "FOR_SALE", "2061234510",
            {"zipcode": "77494", "listing_status": "PENDING"}, {},
            id="zip_plus_four_in_a_string_address",
        ),
        pytest.param(
            "search_recently_sold", "77021", "SOLD", "27838001",
            {"listing_status": "SOLD", "sold_date": "2024-03-01", "price": 215_500},  # "$215,500"
            {"wrong_zipcode": 1},
            id="listing_without_status_takes_the_search_status",
        ),
    ],
)  # fmt: skip
def test_a_listing_on_a_search_page(name, zipcode, status, zpid, expected, dropped):
    """One listing of a fixture's search page parsed with the search's zipcode and status."""
    page = parse_search_page(fixture(name), zipcode=zipcode, default_status=status)
    record = by_zpid(page.records)[zpid]
    assert {field: record.get(field) for field in expected} == expected
    assert page.dropped == dropped


def test_address_object_with_home_status_and_home_type():
    page = parse_search_page(
        fixture("search_address_object"), zipcode="77494", default_status="FOR_SALE"
    )
    records = by_zpid(page.records)
    assert records["2061234599"]["address"] == "2419 Pine Forest Trl"
    assert records["2061234599"]["city"] == "Katy"
    assert records["2061234599"]["property_type"] == "SINGLE_FAMILY"
    assert records["2061234600"]["listing_status"] == "PENDING"
    assert records["2061234600"]["price"] == 412_000
    assert page.dropped == {}


def test_single_property_answer_is_one_listing():
    payload = fixture("search_single_property")
    items, total_pages = listings_of(payload)
    assert items == [payload] and total_pages == 1
    page = parse_search_page(payload, zipcode="77494", default_status="FOR_SALE")
    (record,) = page.records
    assert record["zpid"] == "2061234501"
    assert record["year_built"] == 2016
    assert record["source_url"].endswith("/2061234501_zpid/")  # hdpUrl, relative


@pytest.mark.parametrize("name", ["search_empty_props", "search_no_props"])
def test_empty_zipcode_answers(name):
    page = parse_search_page(fixture(name), zipcode="77494", default_status="FOR_SALE")
    assert page.records == [] and page.dropped == {}


def test_props_null_is_empty():
    assert listings_of({"props": None, "totalPages": 3}) == ([], 0)


def test_date_sold_is_ignored_on_a_listing_for_sale():
    """dateSold on a listing for sale is its previous sale, not part of this listing."""
    item = {
        "zpid": 1,
        "address": "1 Main St, Katy, TX 77494",
        "price": 1000,
        "listingStatus": "FOR_SALE",
        "dateSold": 1704182400000,
    }
    record = listing_to_record(item, zipcode="77494")
    assert isinstance(record, dict) and "sold_date" not in record


def test_property_detail_answer():
    record = parse_property(fixture("property_detail"))
    assert isinstance(record, dict)
    assert record["zpid"] == "27837052"
    assert record["listing_status"] == "SOLD"
    assert record["property_type"] == "SINGLE_FAMILY"
    assert record["year_built"] == 1950
    assert record["lot_size_sqft"] == 6250  # lotAreaUnit "Square Feet"
    assert record["sold_date"] == "2024-01-02"
    PropertyRecord.model_validate(record)


def test_scraped_at_is_recorded_but_not_hashed():
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    item = fixture("search_recently_sold")["props"][0]
    stamped = listing_to_record(item, zipcode="77021", scraped_at=when)
    plain = listing_to_record(item, zipcode="77021")
    assert isinstance(stamped, dict) and isinstance(plain, dict)
    assert stamped["scraped_at"].startswith("2026-01-02T03:04:05")
    record_hash = PropertyRecord.model_validate(stamped).record_hash
    assert record_hash == PropertyRecord.model_validate(plain).record_hash


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        ("not an object", DropReason.MALFORMED_ITEM),
        ({"zpid": "", "address": "1 A St, X, TX 77494", "price": 1}, DropReason.MISSING_ZPID),
        ({"zpid": 1, "address": "", "price": 1}, DropReason.MISSING_ADDRESS),
        ({"zpid": 1, "address": {"city": "Katy"}, "price": 1}, DropReason.MISSING_ADDRESS),
        ({"zpid": 1, "address": "1 A St, X, TX 77494", "price": " "}, DropReason.MISSING_PRICE),
        ({"zpid": 1, "address": "1 A St", "price": 1}, DropReason.MISSING_ZIPCODE),
        ({"zpid": 1, "address": "1 A St, X, TX 77495", "price": 1}, DropReason.WRONG_ZIPCODE),
        (
            {"zpid": 1, "address": "1 A St, X, TX 77494", "price": "call us"},
            DropReason.INVALID_RECORD,
        ),
        (
            {"zpid": 1, "address": "1 A St, X, TX 77494", "price": 1, "listingStatus": "AUCTION"},
            DropReason.INVALID_RECORD,
        ),
    ],
)
def test_drop_reasons(item, reason):
    assert listing_to_record(item, zipcode="77494", default_status="FOR_SALE") == reason


def test_odd_optional_values_are_cleared_not_fatal():
    item = {
        "zpid": "0042",
        "address": {"streetAddress": "1 A St", "zipcode": 7001},
        "price": 5.0,
        "homeStatus": "for sale",
        "yearBuilt": 0,
        "bedrooms": "studio",
        "latitude": 123.0,
        "lotAreaValue": 3,
        "lotAreaUnit": "hectares",
    }
    record = listing_to_record(item, zipcode="07001")
    assert record == {
        "schema_version": 1,
        "zpid": "42",
        "address": "1 A St",
        "zipcode": "07001",
        "price": 5,
        "listing_status": "FOR_SALE",
    }


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ([], "expected a JSON object"),
        ({"props": {"zpid": 1}}, "'props' is dict"),
        ({"message": "Too many requests"}, "Too many requests"),
    ],
)
def test_unusable_answers_raise_bad_answer(payload, message):
    with pytest.raises(BadAnswer, match=message):
        listings_of(payload)


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("5920 Conley St, Houston, TX 77021", ("5920 Conley St", "Houston", "TX", "77021")),
        ("5920 Conley St, Houston TX 77021", ("5920 Conley St", "Houston", "TX", "77021")),
        (
            "5920 Conley St, Houston, tx 77021-1234",
            ("5920 Conley St", "Houston", "TX", "77021-1234"),
        ),
        ("12 Elm St, Unit 4, Austin, TX 78701", ("12 Elm St, Unit 4", "Austin", "TX", "78701")),
        ("5920 Conley St, Houston, TX", ("5920 Conley St", "Houston", "TX", None)),
        ("5920 Conley St Houston TX 77021", ("5920 Conley St Houston", None, "TX", "77021")),
        ("5920 Conley St", ("5920 Conley St", None, None, None)),
        ("", (None, None, None, None)),
    ],
)
def test_split_address(text, parts):
    assert split_address(text) == parts


_json_leaf = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
_json = st.recursive(
    _json_leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)
_listing_keys = st.sampled_from(
    [
        "zpid",
        "address",
        "price",
        "listingStatus",
        "homeStatus",
        "lotAreaValue",
        "lotAreaUnit",
        "dateSold",
        "detailUrl",
        "bedrooms",
        "latitude",
        "zipcode",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_listing_keys, _json))
def test_any_listing_gives_a_valid_record_or_a_reason(item):
    outcome = listing_to_record(item, zipcode="77494", default_status="FOR_SALE")
    if isinstance(outcome, dict):
        assert PropertyRecord.model_validate(outcome).zipcode == "77494"
    else:
        assert isinstance(outcome, DropReason)
