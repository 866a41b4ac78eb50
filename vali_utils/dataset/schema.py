"""The dataset's tables: every column, its type and its meaning, in file order.

The one definition: the Parquet writer builds its Arrow schema from it
(``vali_utils/dataset/parquet.py``) and ``docs/dataset.md`` documents it
(``tests/unit/test_dataset_docs.py`` checks that every column is there).
Partition columns (``epoch``, ``state``) are in the path, Hive style, not in
the files.
"""

from __future__ import annotations

DATASET_VERSION = "v1"

# (column, Arrow type, meaning). Types: int32, int64, float64, string, bool, date32,
# timestamp (milliseconds, UTC).
LISTINGS: tuple[tuple[str, str, str], ...] = (
    ("zpid", "int64", "Zillow property id"),
    ("zipcode", "string", "5-digit zipcode"),
    ("record_hash", "string", "32 hex chars: the hash of the consensus fields miners agreed on"),
    ("address", "string", "street address as scraped"),
    ("city", "string", "city"),
    ("price", "int64", "list or sold price, whole USD"),
    ("listing_status", "string", "FOR_SALE, PENDING, SOLD, FOR_RENT or OFF_MARKET"),
    ("property_type", "string", "SINGLE_FAMILY, CONDO, TOWNHOUSE, MULTI_FAMILY, ..."),
    ("bedrooms", "int32", "bedrooms"),
    ("bathrooms", "float64", "bathrooms"),
    ("living_area_sqft", "int64", "living area, square feet"),
    ("lot_size_sqft", "int64", "lot size, square feet"),
    ("year_built", "int32", "year built"),
    ("latitude", "float64", "latitude, degrees"),
    ("longitude", "float64", "longitude, degrees"),
    ("list_date", "date32", "date listed"),
    ("sold_date", "date32", "date sold"),
    ("days_on_market", "int32", "days on market when scraped"),
    ("zestimate", "int64", "Zillow's estimate, whole USD"),
    ("source_url", "string", "listing page"),
    ("scraped_at", "timestamp", "when the miner whose file gave the fields scraped it (UTC)"),
    ("confidence", "float64", "consensus confidence of its zipcode in this epoch, 0-1"),
    ("miners", "int32", "miners of trusted groups who reported this exact record"),
    ("coldkeys", "int32", "distinct coldkeys (owners) among those miners"),
    ("spot_checked", "bool", "the validator's own source confirmed this record"),
    ("first_seen_epoch", "int64", "first epoch in which the dataset confirmed this zpid"),
    ("last_seen_epoch", "int64", "last epoch in which it was confirmed (this one)"),
)

LISTING_HISTORY: tuple[tuple[str, str, str], ...] = (
    ("zpid", "int64", "Zillow property id"),
    ("zipcode", "string", "5-digit zipcode"),
    ("state", "string", "2-letter state (the listings partition it sits in)"),
    ("change", "string", "new, price, status or price+status"),
    ("price", "int64", "price from this epoch on, whole USD"),
    ("listing_status", "string", "status from this epoch on"),
    ("previous_price", "int64", "price before the change (null when new)"),
    ("previous_status", "string", "status before the change (null when new)"),
    ("previous_epoch", "int64", "last epoch the previous values were confirmed (null when new)"),
)

LISTING_STATE: tuple[tuple[str, str, str], ...] = (
    ("zpid", "int64", "Zillow property id"),
    ("zipcode", "string", "5-digit zipcode"),
    ("state", "string", "2-letter state"),
    ("price", "int64", "last confirmed price, whole USD"),
    ("listing_status", "string", "last confirmed status"),
    ("first_seen_epoch", "int64", "first epoch the dataset confirmed this zpid"),
    ("last_seen_epoch", "int64", "last epoch it was confirmed"),
)

# table -> (columns, partition columns in the path)
TABLES: dict[str, tuple[tuple[tuple[str, str, str], ...], tuple[str, ...]]] = {
    "listings": (LISTINGS, ("epoch", "state")),
    "listing_history": (LISTING_HISTORY, ("epoch",)),
    "listing_state": (LISTING_STATE, ("epoch",)),
}
