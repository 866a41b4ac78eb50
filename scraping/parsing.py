"""Zillow (RapidAPI zillow-com1) answers -> records in the project's schema. Pure functions.

The API's shapes vary between endpoints and over time (see the reference in
``docs/miner.md``); every variant seen is accepted here, and a listing that
cannot become a valid ``PropertyRecord`` is dropped with a reason the caller
counts. Two honest miners parsing the same answer get the same records.

    items, total_pages = listings_of(payload)           # BadAnswer on a bad shape
    page = parse_search_page(payload, zipcode="77494", default_status="SOLD")
    page.records, page.dropped, page.total_pages
    record_or_reason = listing_to_record(item, zipcode="77494")
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from urllib.parse import urljoin

from common.records import PropertyRecord
from common.zipcodes import ZIP_PLUS_4_REGEX
from scraping.source import BadAnswer

ZILLOW_ORIGIN = "https://www.zillow.com"  # detailUrl is often a path on it
SQFT_PER_ACRE = 43_560
_EPOCH_MS_THRESHOLD = 1e11  # larger epoch numbers are milliseconds (1e11 s is the year 5138)
# The fields a record cannot do without; any other field that fails validation
# is cleared instead, so one odd value (yearBuilt 0, daysOnZillow -1) does not
# lose the listing.
_REQUIRED_FIELDS = frozenset({"zpid", "address", "zipcode", "price", "listing_status"})

_STATE_ZIP = re.compile(
    rf"^(?:(?P<city>.*\S)\s+)?(?P<state>[A-Za-z]{{2}})\s+(?P<zip>{ZIP_PLUS_4_REGEX})$"
)
_STATE_ONLY = re.compile(r"^[A-Za-z]{2}$")
_ISO_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}")


class DropReason(StrEnum):
    """Why a listing in an answer did not become a record."""

    MALFORMED_ITEM = "malformed_item"  # not a JSON object
    MISSING_ZPID = "missing_zpid"
    MISSING_ADDRESS = "missing_address"
    MISSING_PRICE = "missing_price"
    MISSING_ZIPCODE = "missing_zipcode"
    WRONG_ZIPCODE = "wrong_zipcode"  # not the zipcode asked for
    INVALID_RECORD = "invalid_record"  # PropertyRecord rejected a required field
    DUPLICATE_ZPID = "duplicate_zpid"  # seen on an earlier page of the same scrape


@dataclass(frozen=True)
class SearchPage:
    """One page of a search answer, parsed."""

    records: list[dict] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=dict)
    total_pages: int = 1


def listings_of(payload: Any) -> tuple[list[Any], int]:
    """The listing items of an answer and its page count.

    Accepts ``{"props": [...], "totalPages": n}``, ``props: []`` or ``null``,
    an answer without ``props`` (an empty zipcode) and a single-property
    answer (top-level ``zpid``). Raises BadAnswer for anything else: a
    non-object, ``props`` that is not a list, or an error message.
    """
    if not isinstance(payload, dict):
        raise BadAnswer(f"expected a JSON object, got {type(payload).__name__}")
    if "props" in payload:
        items = payload["props"]
        if items is None:
            return [], 0
        if not isinstance(items, list):
            raise BadAnswer(f"'props' is {type(items).__name__}, expected a list")
        return items, max(1, _whole(payload.get("totalPages")) or 1)
    if payload.get("zpid") not in (None, ""):
        return [payload], 1
    message = payload.get("message") or payload.get("error")
    if isinstance(message, str | dict):
        raise BadAnswer(f"answer without listings: {str(message)[:120]}")
    return [], 0


def parse_search_page(
    payload: Any,
    *,
    zipcode: str,
    default_status: str | None = None,
    scraped_at: datetime | None = None,
) -> SearchPage:
    """Records of one search page for ``zipcode``; drops counted by reason.

    ``default_status`` is used for listings that carry no status (the search's
    own status type). Raises BadAnswer when the page itself is unusable.
    """
    items, total_pages = listings_of(payload)
    records: list[dict] = []
    dropped: Counter[str] = Counter()
    for item in items:
        outcome = listing_to_record(
            item, zipcode=zipcode, default_status=default_status, scraped_at=scraped_at
        )
        if isinstance(outcome, DropReason):
            dropped[outcome.value] += 1
        else:
            records.append(outcome)
    return SearchPage(records=records, dropped=dict(dropped), total_pages=total_pages)


def listing_to_record(
    item: Any,
    *,
    zipcode: str | None = None,
    default_status: str | None = None,
    scraped_at: datetime | None = None,
) -> dict | DropReason:
    """One listing as a validated record dict (JSON-ready), or why it was dropped.

    ``zipcode``, when given, is the zipcode asked for: listings elsewhere are
    dropped. Never raises.
    """
    if not isinstance(item, dict):
        return DropReason.MALFORMED_ITEM
    zpid = item.get("zpid")
    if zpid is None or (isinstance(zpid, str) and not zpid.strip()):
        return DropReason.MISSING_ZPID
    street, city, state, zip_code = _address(item)
    if not street:
        return DropReason.MISSING_ADDRESS
    price = item.get("price")
    if price is None or (isinstance(price, str) and not price.strip()):
        return DropReason.MISSING_PRICE
    if not zip_code:
        return DropReason.MISSING_ZIPCODE
    if zipcode is not None and zip_code[:5] != zipcode:
        return DropReason.WRONG_ZIPCODE
    status = item.get("listingStatus") or item.get("homeStatus") or default_status
    record: dict[str, Any] = {
        "zpid": zpid,
        "address": street,
        "zipcode": zip_code,
        "price": price,
        "listing_status": status,
        "city": city,
        "state": state,
        "property_type": item.get("propertyType") or item.get("homeType"),
        "bedrooms": _whole(item.get("bedrooms")),
        "bathrooms": _number(item.get("bathrooms")),
        "living_area_sqft": _whole(item.get("livingArea")),
        "lot_size_sqft": _lot_sqft(item),
        "year_built": _whole(item.get("yearBuilt")),
        "latitude": _number(_coordinate(item, "latitude")),
        "longitude": _number(_coordinate(item, "longitude")),
        "days_on_market": _whole(item.get("daysOnZillow")),
        "zestimate": item.get("zestimate"),
        "source_url": _detail_url(item),
        "scraped_at": scraped_at.isoformat() if scraped_at else None,
    }
    if _is_sold(status):
        # dateSold on a listing for sale is its previous sale: not this listing's
        record["sold_date"] = _date(item.get("dateSold"))
    return _validated(record)


def parse_property(payload: Any, *, scraped_at: datetime | None = None) -> dict | DropReason:
    """The ``/property?zpid=`` answer as a record, or why it is not one.

    Raises BadAnswer when the answer is not a JSON object.
    """
    if not isinstance(payload, dict):
        raise BadAnswer(f"expected a JSON object, got {type(payload).__name__}")
    return listing_to_record(payload, scraped_at=scraped_at)


def split_address(text: str) -> tuple[str | None, str | None, str | None, str | None]:
    """ "5920 Conley St, Houston, TX 77021" -> (street, city, state, zipcode); None when absent."""
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not parts:
        return None, None, None, None
    tail = _STATE_ZIP.match(parts[-1])
    if tail and len(parts) == 1:
        # no commas at all: the city cannot be told from the street
        return tail["city"], None, tail["state"].upper(), tail["zip"]
    if tail and tail["city"]:  # "..., Houston TX 77021"
        return ", ".join(parts[:-1]), tail["city"], tail["state"].upper(), tail["zip"]
    if tail or _STATE_ONLY.match(parts[-1]):
        state = (tail["state"] if tail else parts[-1]).upper()
        zip_code = tail["zip"] if tail else None
        if len(parts) >= 3:
            return ", ".join(parts[:-2]), parts[-2], state, zip_code
        return parts[0], None, state, zip_code
    return ", ".join(parts), None, None, None


def _address(item: dict) -> tuple[str | None, str | None, str | None, str | None]:
    raw = item.get("address")
    street = city = state = zip_code = None
    if isinstance(raw, dict):
        street, city = _text(raw.get("streetAddress")), _text(raw.get("city"))
        state, zip_code = _text(raw.get("state")), _zip_text(raw.get("zipcode"))
    elif isinstance(raw, str):
        street, city, state, zip_code = split_address(raw)
    # The /property answer repeats the parts at the top level; older answers
    # have only those.
    return (
        street or _text(item.get("streetAddress")),
        city or _text(item.get("city")),
        state or _text(item.get("state")),
        zip_code or _zip_text(item.get("zipcode")),
    )


def _validated(record: dict) -> dict | DropReason:
    record = {k: v for k, v in record.items() if v is not None}
    for _attempt in range(2):
        try:
            model = PropertyRecord.model_validate(record)
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            bad = {str(error["loc"][0]) for error in exc.errors() if error["loc"]}
            if not bad or bad & _REQUIRED_FIELDS:
                return DropReason.INVALID_RECORD
            record = {k: v for k, v in record.items() if k not in bad}
            continue
        return model.model_dump(mode="json", exclude_none=True)
    return DropReason.INVALID_RECORD


def _is_sold(status: Any) -> bool:
    return isinstance(status, str) and "SOLD" in status.upper().replace(" ", "")


def _text(value: Any) -> str | None:
    if isinstance(value, str):
        return value.strip() or None
    return None


def _zip_text(value: Any) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 100_000:
        return f"{value:05d}"
    return _text(value)


def _number(value: Any) -> float | None:
    """A finite number from a number or a numeric string ("1,234"); None otherwise."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        try:
            value = float(value.replace(",", "").strip())
        except ValueError:
            return None
    if isinstance(value, int | float) and math.isfinite(value):
        return value
    return None


def _whole(value: Any) -> int | None:
    number = _number(value)
    return None if number is None else round(number)


def _lot_sqft(item: dict) -> int | None:
    value = _number(item.get("lotAreaValue"))
    if value is None:
        return _whole(item.get("lotSize"))  # the /property answer: square feet
    unit = str(item.get("lotAreaUnit") or "sqft").strip().lower().replace(" ", "")
    if unit.startswith("acre") or unit == "ac":
        return round(value * SQFT_PER_ACRE)
    if unit in ("sqft", "squarefeet", "ft2", "sf"):
        return round(value)
    return None


def _coordinate(item: dict, name: str) -> Any:
    value = item.get(name)
    if value is None and isinstance(item.get("latLong"), dict):
        value = item["latLong"].get(name)
    return value


def _date(value: Any) -> str | None:
    """An ISO date from epoch milliseconds (or seconds) or an ISO date string."""
    if isinstance(value, str) and _ISO_DATE.match(value.strip()):
        return value.strip()[:10]
    number = _number(value)
    if number is None or number <= 0:
        return None
    seconds = number / 1000 if number >= _EPOCH_MS_THRESHOLD else number
    try:
        return datetime.fromtimestamp(seconds, UTC).date().isoformat()
    except (OverflowError, OSError, ValueError):
        return None


def _detail_url(item: dict) -> str | None:
    for key in ("detailUrl", "hdpUrl", "url"):
        value = _text(item.get(key))
        if value is None:
            continue
        if value.startswith(("https://", "http://")):
            return value
        if value.startswith("/"):
            return urljoin(ZILLOW_ORIGIN, value)
    return None
