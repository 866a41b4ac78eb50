"""One epoch's dataset rows from its confirmed records: pure, sorted, deterministic.

    tables = build_epoch(epoch, found, states, previous)
    tables.listings["TX"], tables.history, tables.state    # lists of row dicts

``found`` pairs each confirmed record (``consensus/provenance.py``) with the
full record read from a reporter's file (and its record hash); ``previous`` is the last published
``listing_state`` (zpid -> ``ListingState``), so the history is built
incrementally: a zpid's row goes into ``listing_history`` when it is new or
its price or status differs from its last confirmed values. Rows come out
sorted (listings by zipcode and zpid, the rest by zpid), so equal inputs
give equal files.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC

from common.records import PropertyRecord
from consensus.provenance import ConfirmedRecord

UNKNOWN_STATE = "XX"  # partition of a zipcode whose state nobody trustworthy told us
STATE_PATTERN = re.compile(r"[A-Z]{2}")


@dataclass(frozen=True, slots=True)
class ListingState:
    """The last confirmed values of one zpid: a row of ``listing_state``."""

    zpid: int
    zipcode: str
    state: str
    price: int
    listing_status: str
    first_seen_epoch: int
    last_seen_epoch: int

    def row(self) -> dict:
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(frozen=True, slots=True)
class EpochTables:
    listings: dict[str, list[dict]]  # state -> rows, sorted by (zipcode, zpid)
    history: list[dict]  # sorted by zpid
    state: list[dict]  # every zpid ever confirmed, sorted by zpid

    @property
    def records(self) -> int:
        return sum(len(rows) for rows in self.listings.values())


def partition_state(zipcode: str, states: Mapping[str, str], record: PropertyRecord) -> str:
    """The state a zipcode's rows are filed under: the block's, else the record's, else XX.

    The block's comes from the Data API; a record's ``state`` is only what one
    miner wrote, so it is used only when it looks like a state code (it
    becomes part of an object key).
    """
    for candidate in (states.get(zipcode), record.state):
        if candidate and STATE_PATTERN.fullmatch(candidate):
            return candidate
    return UNKNOWN_STATE


def listing_row(
    confirmed: ConfirmedRecord,
    record: PropertyRecord,
    record_hash: str,
    first_seen: int,
    epoch: int,
) -> dict:
    """A ``listings`` row: the record's fields (``record_hash`` is its hash, computed once by
    the file decoder), then its provenance."""
    scraped = record.scraped_at
    if scraped is not None and scraped.tzinfo is None:
        scraped = scraped.replace(tzinfo=UTC)
    return {
        "zpid": confirmed.zpid,
        "zipcode": confirmed.zipcode,
        "record_hash": record_hash,
        "address": record.address,
        "city": record.city,
        "price": record.price,
        "listing_status": record.listing_status.value,
        "property_type": record.property_type,
        "bedrooms": record.bedrooms,
        "bathrooms": record.bathrooms,
        "living_area_sqft": record.living_area_sqft,
        "lot_size_sqft": record.lot_size_sqft,
        "year_built": record.year_built,
        "latitude": record.latitude,
        "longitude": record.longitude,
        "list_date": record.list_date,
        "sold_date": record.sold_date,
        "days_on_market": record.days_on_market,
        "zestimate": record.zestimate,
        "source_url": record.source_url,
        "scraped_at": scraped,
        "confidence": confirmed.confidence,
        "miners": confirmed.miners,
        "coldkeys": confirmed.coldkeys,
        "spot_checked": confirmed.spot_checked,
        "first_seen_epoch": first_seen,
        "last_seen_epoch": epoch,
    }


def _change(before: ListingState | None, price: int, status: str) -> str | None:
    if before is None:
        return "new"
    moved = [
        name
        for name, changed in (
            ("price", before.price != price),
            ("status", before.listing_status != status),
        )
        if changed
    ]
    return "+".join(moved) or None


def build_epoch(
    epoch: int,
    found: Sequence[tuple[ConfirmedRecord, PropertyRecord, str]],
    states: Mapping[str, str],
    previous: Mapping[int, ListingState],
) -> EpochTables:
    """The epoch's three tables from its confirmed records and the last published state.

    A zpid confirmed in two zipcodes of one epoch is kept once, in the first
    zipcode (sorted order); nothing else is dropped.
    """
    listings: dict[str, list[dict]] = {}
    history: list[dict] = []
    current: dict[int, ListingState] = dict(previous)
    seen: set[int] = set()
    for confirmed, record, record_hash in sorted(found, key=lambda f: (f[0].zipcode, f[0].zpid)):
        if confirmed.zpid in seen:
            continue
        seen.add(confirmed.zpid)
        state = partition_state(confirmed.zipcode, states, record)
        before = previous.get(confirmed.zpid)
        status = record.listing_status.value
        first_seen = before.first_seen_epoch if before is not None else epoch
        listings.setdefault(state, []).append(
            listing_row(confirmed, record, record_hash, first_seen, epoch)
        )
        change = _change(before, record.price, status)
        if change is not None:
            history.append(
                {
                    "zpid": confirmed.zpid,
                    "zipcode": confirmed.zipcode,
                    "state": state,
                    "change": change,
                    "price": record.price,
                    "listing_status": status,
                    "previous_price": before.price if before else None,
                    "previous_status": before.listing_status if before else None,
                    "previous_epoch": before.last_seen_epoch if before else None,
                }
            )
        current[confirmed.zpid] = ListingState(
            confirmed.zpid, confirmed.zipcode, state, record.price, status, first_seen, epoch
        )
    history.sort(key=lambda row: row["zpid"])
    return EpochTables(
        listings={s: listings[s] for s in sorted(listings)},
        history=history,
        state=[current[z].row() for z in sorted(current)],
    )


def states_from_rows(rows: Sequence[Mapping]) -> dict[int, ListingState]:
    """``listing_state`` rows as read back from Parquet -> zpid -> ``ListingState``."""
    return {
        int(row["zpid"]): ListingState(
            int(row["zpid"]),
            str(row["zipcode"]),
            str(row["state"]),
            int(row["price"]),
            str(row["listing_status"]),
            int(row["first_seen_epoch"]),
            int(row["last_seen_epoch"]),
        )
        for row in rows
    }
