"""A deterministic synthetic housing market, for the simulator, the local subnet and tests.

Every zipcode holds a fixed set of listings derived from the world seed: same
seed, same world, on every machine. An honest miner sees it with independent
noise (misses about 5% of listings, about 1% of the records it returns carry
a stale value). Some listings changed recently and keep their previous
snapshot, which is what a stale cache would still serve. About 2% of zipcodes
have no residential listings at all (PO-box and business zipcodes).

    world = SyntheticWorld(seed=7)
    world.listings("77494")                      # the truth, list of record dicts
    world.honest_view("77494", observer=b"miner-3", epoch=1)
    world.lookup(zpid)                           # truth for one listing (spot checks)
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from functools import lru_cache

MEAN_LISTINGS = 50
EMPTY_ZIPCODE_SHARE = 0.02
CHANGED_LISTING_SHARE = 0.35  # listings whose price/status moved since an older snapshot
HONEST_MISS_RATE = 0.05
HONEST_STALE_RATE = 0.01
_ZPID_STRIDE = 1000  # zpid = zipcode * 1000 + n: the zipcode is recoverable from a zpid
LISTINGS_CACHE_ZIPCODES = 256  # ~240 KB of dicts each: ~60 MB at most per process

_STREETS = (
    "Oak",
    "Maple",
    "Cedar",
    "Pine",
    "Elm",
    "Lake",
    "Hill",
    "Park",
    "Main",
    "Sunset",
    "River",
    "Willow",
    "Meadow",
    "Forest",
    "Spring",
    "Ridge",
)
_SUFFIXES = ("St", "Ave", "Dr", "Ln", "Ct", "Blvd", "Way", "Rd")
_TYPES = ("SINGLE_FAMILY", "SINGLE_FAMILY", "SINGLE_FAMILY", "CONDO", "TOWNHOUSE", "MULTI_FAMILY")
_STATES = ("TX", "CA", "FL", "NY", "IL", "GA", "WA", "AZ", "CO", "OH", "NC", "PA")


def _rng(*parts: object) -> random.Random:
    digest = hashlib.blake2b("\x00".join(map(str, parts)).encode(), digest_size=8).digest()
    return random.Random(int.from_bytes(digest))


def zipcode_of_zpid(zpid: int) -> str:
    return f"{zpid // _ZPID_STRIDE:05d}"


class SyntheticWorld:
    """The truth of a synthetic market; every method is a pure function of the seed."""

    def __init__(
        self,
        seed: int | str = 0,
        mean_listings: int = MEAN_LISTINGS,
        cache_zipcodes: int = LISTINGS_CACHE_ZIPCODES,
    ) -> None:
        self.seed = str(seed)
        self.mean_listings = mean_listings
        # A bounded working set, not the universe: a long local run (a miner's
        # assignments, the validator's spot checks) stays flat in memory. The
        # simulator, which reads a whole cycle's zipcodes many times, asks for more.
        self._listings = lru_cache(maxsize=cache_zipcodes)(self._make_listings)
        self._previous: dict[str, dict] = {}  # zpid -> the fields an older snapshot shows

    def universe(self, size: int = 5000) -> list[str]:
        """A stable list of distinct zipcodes this world knows."""
        rng = _rng(self.seed, "universe")
        codes: set[str] = set()
        while len(codes) < size:
            codes.add(f"{rng.randrange(1001, 99950):05d}")
        return sorted(codes)

    def is_empty(self, zipcode: str) -> bool:
        return _rng(self.seed, "empty", zipcode).random() < EMPTY_ZIPCODE_SHARE

    def listing_count(self, zipcode: str) -> int:
        if self.is_empty(zipcode):
            return 0
        rng = _rng(self.seed, "count", zipcode)
        return max(
            5, min(_ZPID_STRIDE - 1, int(rng.gauss(self.mean_listings, self.mean_listings / 4)))
        )

    def listings(self, zipcode: str) -> list[dict]:
        """The true listings of a zipcode (do not mutate: they are cached)."""
        return self._listings(zipcode)

    def _make_listings(self, zipcode: str) -> list[dict]:
        rng = _rng(self.seed, "listings", zipcode)
        state = _STATES[int(zipcode) % len(_STATES)]
        lat0, lon0 = 25 + int(zipcode[:2]) % 24, -120 + int(zipcode[2:]) % 45
        out = []
        for n in range(1, self.listing_count(zipcode) + 1):
            sold = rng.random() < 0.3
            status = "SOLD" if sold else rng.choice(("FOR_SALE", "FOR_SALE", "PENDING"))
            price = rng.randrange(80, 2500) * 1000
            record = {
                "zpid": str(int(zipcode) * _ZPID_STRIDE + n),
                "address": (
                    f"{rng.randrange(1, 9999)} {rng.choice(_STREETS)} {rng.choice(_SUFFIXES)}"
                ),
                "zipcode": zipcode,
                "city": f"City{zipcode[:3]}",
                "state": state,
                "price": price,
                "listing_status": status,
                "property_type": rng.choice(_TYPES),
                "bedrooms": rng.randrange(1, 7),
                "bathrooms": rng.choice((1.0, 1.5, 2.0, 2.5, 3.0, 3.5)),
                "living_area_sqft": rng.randrange(600, 6000),
                "lot_size_sqft": rng.randrange(1000, 40000),
                "year_built": rng.randrange(1900, 2025),
                "latitude": round(lat0 + rng.random(), 6),
                "longitude": round(lon0 + rng.random(), 6),
                "sold_date": f"2026-{rng.randrange(1, 11):02d}-{rng.randrange(1, 28):02d}"
                if sold
                else None,
                "days_on_market": rng.randrange(0, 200),
            }
            if rng.random() < CHANGED_LISTING_SHARE:
                old_status = "FOR_SALE" if status in ("PENDING", "SOLD") else "PENDING"
                self._previous[record["zpid"]] = {
                    "price": price + rng.choice((-1, 1)) * rng.randrange(5, 60) * 1000,
                    "listing_status": old_status,
                    "sold_date": None,
                }
            out.append(record)
        return out

    def lookup(self, zpid: int) -> dict | None:
        """The true record for a zpid, or None when no such listing exists."""
        zipcode = zipcode_of_zpid(int(zpid))
        n = int(zpid) % _ZPID_STRIDE
        listings = self.listings(zipcode)
        return dict(listings[n - 1]) if 1 <= n <= len(listings) else None

    def honest_view(
        self,
        zipcode: str,
        observer: str,
        epoch: int,
        miss_rate: float = HONEST_MISS_RATE,
        stale_rate: float = HONEST_STALE_RATE,
    ) -> list[dict]:
        """What one honest scraper sees: independent misses and occasional stale values."""
        rng = _rng(self.seed, "view", observer, zipcode, epoch)
        out = []
        for listing in self.listings(zipcode):
            if rng.random() < miss_rate:
                continue
            if rng.random() < stale_rate:
                out.append(self.stale(listing) or _perturbed(listing, rng))
            else:
                out.append(dict(listing))
        return out

    def stale(self, record: dict) -> dict | None:
        """The listing as an old snapshot shows it, or None when it has not changed."""
        zpid = str(record.get("zpid", ""))
        if not zpid.isdigit():
            return None
        self.listings(zipcode_of_zpid(int(zpid)))  # the history is made with the listings
        previous = self._previous.get(zpid)
        return dict(record) | previous if previous is not None else None

    def iter_zipcodes(self, count: int, epoch: int) -> Iterator[str]:
        """A seeded sample of the universe for one epoch (rotates between epochs)."""
        universe = self.universe(max(5000, count * 4))
        yield from _rng(self.seed, "epoch", epoch).sample(universe, count)


def _perturbed(listing: dict, rng: random.Random) -> dict:
    record = dict(listing)
    record["price"] = record["price"] + rng.choice((-1, 1)) * rng.randrange(1, 20) * 1000
    return record
