"""The property record: one versioned model for every place a listing appears.

Miners store it, upload it to S3 and summarise it in manifests; validators
compare it in consensus and spot checks. Two honest miners who saw the same
listing must produce the same ``record_hash``, so the hash covers only the
normalised *consensus fields* (never ``scraped_at`` or fields that drift by
the hour such as ``days_on_market``).

    record = PropertyRecord.model_validate(raw_dict)      # normalises or raises
    record.record_hash                                     # 32 hex chars
    record.consensus_fields()                              # tuple, CONSENSUS_FIELDS order
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from common.zipcodes import ZIP_PLUS_4

SCHEMA_VERSION = 1
RECORD_HASH_HEX_CHARS = 32
MAX_ZPID_DIGITS = 12  # Zillow zpids are ~10 digits; 12 keeps them below 2**40 for packed keys
ZPID_PATTERN = re.compile(rf"[0-9]{{1,{MAX_ZPID_DIGITS}}}")


class ListingStatus(StrEnum):
    FOR_SALE = "FOR_SALE"
    PENDING = "PENDING"
    SOLD = "SOLD"
    FOR_RENT = "FOR_RENT"
    OFF_MARKET = "OFF_MARKET"


# Source spellings seen in the wild (RapidAPI listingStatus/homeStatus, search
# status_type values) mapped onto the five statuses of the schema.
STATUS_ALIASES: dict[str, ListingStatus] = {
    "FOR_SALE": ListingStatus.FOR_SALE,
    "FORSALE": ListingStatus.FOR_SALE,
    "ACTIVE": ListingStatus.FOR_SALE,
    "COMING_SOON": ListingStatus.FOR_SALE,
    "NEW_CONSTRUCTION": ListingStatus.FOR_SALE,
    "FORECLOSURE": ListingStatus.FOR_SALE,
    "PENDING": ListingStatus.PENDING,
    "UNDER_CONTRACT": ListingStatus.PENDING,
    "CONTINGENT": ListingStatus.PENDING,
    "SOLD": ListingStatus.SOLD,
    "RECENTLY_SOLD": ListingStatus.SOLD,
    "RECENTLYSOLD": ListingStatus.SOLD,
    "FOR_RENT": ListingStatus.FOR_RENT,
    "FORRENT": ListingStatus.FOR_RENT,
    "OFF_MARKET": ListingStatus.OFF_MARKET,
    "OTHER": ListingStatus.OFF_MARKET,
}

# Street-suffix and direction spellings folded so "123 North Main Street" and
# "123 N Main St." compare equal.
_ADDRESS_WORDS = {
    "STREET": "ST",
    "AVENUE": "AVE",
    "AV": "AVE",
    "ROAD": "RD",
    "DRIVE": "DR",
    "LANE": "LN",
    "BOULEVARD": "BLVD",
    "COURT": "CT",
    "CIRCLE": "CIR",
    "PLACE": "PL",
    "TERRACE": "TER",
    "PARKWAY": "PKWY",
    "HIGHWAY": "HWY",
    "TRAIL": "TRL",
    "WAY": "WAY",
    "NORTH": "N",
    "SOUTH": "S",
    "EAST": "E",
    "WEST": "W",
    "NORTHEAST": "NE",
    "NORTHWEST": "NW",
    "SOUTHEAST": "SE",
    "SOUTHWEST": "SW",
    "APARTMENT": "APT",
    "SUITE": "STE",
    "UNIT": "UNIT",
}
_NON_ALNUM = re.compile(r"[^A-Z0-9 ]+")
_SPACES = re.compile(r"\s+")

# The fields two honest scrapes of one listing agree on, in hash order.
CONSENSUS_FIELDS: tuple[str, ...] = (
    "zpid",
    "address_key",
    "zipcode",
    "price",
    "listing_status",
    "property_type",
    "bedrooms",
    "bathrooms",
    "living_area_sqft",
    "lot_size_sqft",
    "year_built",
    "sold_date",
)
# A record wrong in one of these is a wrong record, not a slightly-off one:
# they are what buyers of the data pay for.
KEY_FIELDS: tuple[str, ...] = ("price", "listing_status")
KEY_FIELD_INDEXES: tuple[int, ...] = tuple(CONSENSUS_FIELDS.index(f) for f in KEY_FIELDS)


def normalize_address(address: str) -> str:
    """Fold an address to a comparison key: upper case, no punctuation, short suffixes."""
    text = _NON_ALNUM.sub(" ", address.upper())
    words = [_ADDRESS_WORDS.get(word, word) for word in _SPACES.split(text.strip()) if word]
    return " ".join(words)


def parse_price(value: Any) -> int:
    """Price in whole dollars from a number or a string like "$1,250,000".

    Raises ValueError for anything that is not a non-negative finite amount.
    """
    if isinstance(value, bool):
        raise ValueError("price must be a number")
    if isinstance(value, str):
        cleaned = value.strip().replace("$", "").replace(",", "").strip()
        if not cleaned:
            raise ValueError("empty price")
        value = float(cleaned)
    if isinstance(value, int):
        amount = value
    elif isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("price must be finite")
        amount = round(value)
    else:
        raise ValueError(f"price of type {type(value).__name__}")
    if amount < 0 or amount > 10**11:
        raise ValueError("price out of range")
    return amount


def parse_status(value: Any) -> ListingStatus:
    """Map a source's status spelling onto ``ListingStatus``; ValueError if unknown."""
    if isinstance(value, ListingStatus):
        return value
    if not isinstance(value, str):
        raise ValueError("listing_status must be a string")
    key = value.strip().upper().replace(" ", "_").replace("-", "_")
    if key not in STATUS_ALIASES:
        raise ValueError(f"unknown listing status {value!r}")
    return STATUS_ALIASES[key]


def hash_consensus_fields(fields: tuple) -> str:
    """Stable digest of a consensus-field tuple (the definition of ``record_hash``)."""
    canonical = json.dumps(fields, separators=(",", ":"), ensure_ascii=True)
    digest = hashlib.blake2b(canonical.encode(), digest_size=RECORD_HASH_HEX_CHARS // 2)
    return digest.hexdigest()


class PropertyRecord(BaseModel):
    """One listing, normalised. Construct with ``model_validate`` on raw data."""

    model_config = ConfigDict(frozen=True, extra="ignore", str_strip_whitespace=True)

    schema_version: int = SCHEMA_VERSION
    zpid: str = Field(max_length=MAX_ZPID_DIGITS)
    address: str = Field(min_length=3, max_length=300)
    zipcode: str
    price: int
    listing_status: ListingStatus
    city: str | None = Field(default=None, max_length=100)
    state: str | None = Field(default=None, max_length=2)
    property_type: str | None = Field(default=None, max_length=40)
    bedrooms: int | None = Field(default=None, ge=0, le=200)
    bathrooms: float | None = Field(default=None, ge=0, le=200)
    living_area_sqft: int | None = Field(default=None, ge=0, le=10_000_000)
    lot_size_sqft: int | None = Field(default=None, ge=0, le=10**10)
    year_built: int | None = Field(default=None, ge=1600, le=2100)
    latitude: float | None = Field(default=None, ge=-90, le=90)
    longitude: float | None = Field(default=None, ge=-180, le=180)
    list_date: date | None = None
    sold_date: date | None = None
    days_on_market: int | None = Field(default=None, ge=0, le=100_000)
    zestimate: int | None = Field(default=None, ge=0)
    source_url: str | None = Field(default=None, max_length=500)
    scraped_at: datetime | None = None

    @field_validator("schema_version")
    @classmethod
    def _known_version(cls, value: int) -> int:
        if value != SCHEMA_VERSION:
            raise ValueError(f"schema_version {value} is not {SCHEMA_VERSION}")
        return value

    @field_validator("zpid", mode="before")
    @classmethod
    def _zpid_digits(cls, value: Any) -> str:
        if isinstance(value, bool):
            raise ValueError("zpid must be digits")
        if isinstance(value, int):
            value = str(value)
        if not isinstance(value, str):
            raise ValueError("zpid must be digits")
        value = value.strip()
        if value.endswith("_zpid"):  # detail URLs carry "12345_zpid"
            value = value[: -len("_zpid")]
        if not ZPID_PATTERN.fullmatch(value):
            raise ValueError(f"zpid {value[:20]!r} is not 1-{MAX_ZPID_DIGITS} digits")
        return str(int(value))  # drop leading zeros so "007" and 7 agree

    @field_validator("zipcode", mode="before")
    @classmethod
    def _zipcode_format(cls, value: Any) -> str:
        if isinstance(value, int) and not isinstance(value, bool):
            value = f"{value:05d}"
        if not isinstance(value, str) or not ZIP_PLUS_4.fullmatch(value.strip()):
            raise ValueError("zipcode must be 5 digits (or ZIP+4)")
        return value.strip()[:5]  # "77494-1234" -> "77494"

    @field_validator("price", "zestimate", mode="before")
    @classmethod
    def _money(cls, value: Any) -> int | None:
        if value is None:
            return None
        return parse_price(value)

    @field_validator("listing_status", mode="before")
    @classmethod
    def _status(cls, value: Any) -> ListingStatus:
        return parse_status(value)

    @field_validator("property_type", mode="before")
    @classmethod
    def _property_type(cls, value: Any) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str):
            raise ValueError("property_type must be a string")
        return value.strip().upper().replace(" ", "_").replace("-", "_") or None

    @field_validator("state", mode="before")
    @classmethod
    def _state(cls, value: Any) -> str | None:
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            raise ValueError("state must be a string")
        return value.strip().upper()

    @field_validator("bedrooms", "living_area_sqft", "lot_size_sqft", "year_built", mode="before")
    @classmethod
    def _whole_number(cls, value: Any) -> int | None:
        if value is None or value == "":
            return None
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return value

    @property
    def address_key(self) -> str:
        return normalize_address(self.address)

    def consensus_fields(self) -> tuple:
        """The values ``record_hash`` covers, in ``CONSENSUS_FIELDS`` order, JSON-safe."""
        return (
            self.zpid,
            self.address_key,
            self.zipcode,
            self.price,
            self.listing_status.value,
            self.property_type,
            self.bedrooms,
            self.bathrooms,
            self.living_area_sqft,
            self.lot_size_sqft,
            self.year_built,
            self.sold_date.isoformat() if self.sold_date else None,
        )

    @property
    def record_hash(self) -> str:
        return hash_consensus_fields(self.consensus_fields())


class RecordDigester:
    """Record dicts -> (zpid, record_hash, consensus fields), validated, with a memo.

    Honest miners return the same listings over and over; full pydantic
    validation runs once per distinct record and is remembered (bounded). The
    memo key is every model field's value *with its type* (so ``True`` and
    ``1`` differ); keys the model ignores cannot change the outcome. Invalid
    records give the reason instead.
    """

    def __init__(self, max_entries: int = 1_000_000) -> None:
        self._memo: dict[tuple, tuple[int, str, tuple] | str] = {}
        self._max_entries = max_entries

    def digest(self, raw: object) -> tuple[int, str, tuple] | str:
        if not isinstance(raw, dict):
            return "malformed_entry"
        try:
            key = tuple((type(v), v) for v in map(raw.get, _MODEL_KEYS))
            cached = self._memo.get(key)
        except TypeError:  # unhashable values: validate without the memo
            key, cached = None, None
        if cached is not None:
            return cached
        try:
            record = PropertyRecord.model_validate(raw)
            fields = record.consensus_fields()
            out: tuple[int, str, tuple] | str = (
                int(record.zpid),
                hash_consensus_fields(fields),
                fields,
            )
        except (ValueError, TypeError):
            out = "invalid_record"
        if key is not None and len(self._memo) < self._max_entries:
            self._memo[key] = out
        return out


_MODEL_KEYS = tuple(PropertyRecord.model_fields)
