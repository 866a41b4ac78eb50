"""The zipcode universe blocks are drawn from: real US zipcodes with state, coordinates, size tier.

Source: the ``zipcodes`` package (PyPI, maintained, bundled USPS-derived data).
Residential zipcodes are the active STANDARD ones in the 50 states and DC;
no-residential ones (honeypot candidates) are active PO BOX and UNIQUE ones.
Size tiers come from a density proxy (``config/data_api.py`` explains it).

    universe = load_universe()                 # cached per process; ~1 s the first time
    universe.residential[0].zipcode, universe.by_zipcode["77494"].tier
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from config.data_api import (
    DENSITY_CELL_DEGREES,
    NO_RESIDENTIAL_TYPES,
    RESIDENTIAL_TYPES,
    SIZE_TIERS,
    UNIVERSE_STATES,
)


@dataclass(frozen=True, slots=True)
class ZipcodeInfo:
    zipcode: str
    state: str
    lat: float
    lng: float
    tier: int  # index into SIZE_TIERS

    @property
    def expected_properties(self) -> int:
        return SIZE_TIERS[self.tier].expected_properties


@dataclass(frozen=True)
class Universe:
    residential: tuple[ZipcodeInfo, ...]  # sorted by zipcode
    no_residential: tuple[ZipcodeInfo, ...]  # sorted by zipcode
    tier_shares: tuple[float, ...]  # share of residential zipcodes per tier
    by_zipcode: Mapping[str, ZipcodeInfo] = field(repr=False)


def tier_of(neighbours: int) -> int:
    """The size tier (index into SIZE_TIERS) for a density count."""
    tier = 0
    for index, size in enumerate(SIZE_TIERS):
        if neighbours >= size.min_neighbours:
            tier = index
    return tier


def _cell(lat: float, lng: float) -> tuple[int, int]:
    return math.floor(lat / DENSITY_CELL_DEGREES), math.floor(lng / DENSITY_CELL_DEGREES)


def density_counts(
    points: list[tuple[float, float]], reference: list[tuple[float, float]]
) -> list[int]:
    """For each point, how many reference points lie in the 3x3 grid cells around it.

    A point that is itself in ``reference`` counts itself; callers subtract it.
    """
    cells = Counter(_cell(lat, lng) for lat, lng in reference)
    counts = []
    for lat, lng in points:
        row, col = _cell(lat, lng)
        counts.append(
            sum(cells.get((row + dr, col + dc), 0) for dr in (-1, 0, 1) for dc in (-1, 0, 1))
        )
    return counts


def _coordinates(row: Mapping) -> tuple[float, float] | None:
    try:
        lat, lng = float(row["lat"]), float(row["long"])
    except (KeyError, TypeError, ValueError):
        return None
    if not (math.isfinite(lat) and math.isfinite(lng)) or (lat == 0 and lng == 0):
        return None
    if not (-90 <= lat <= 90 and -180 <= lng <= 180):
        return None
    return round(lat, 4), round(lng, 4)


def build_universe(rows: Iterable[Mapping]) -> Universe:
    """The universe from ``zipcodes``-package rows (dicts with zip_code, zip_code_type, ...)."""
    residential_rows, other_rows = [], []
    for row in rows:
        if not row.get("active") or row.get("state") not in UNIVERSE_STATES:
            continue
        zipcode = str(row.get("zip_code", ""))
        point = _coordinates(row)
        if len(zipcode) != 5 or not zipcode.isascii() or not zipcode.isdigit() or point is None:
            continue
        kind = row.get("zip_code_type")
        if kind in RESIDENTIAL_TYPES:
            residential_rows.append((zipcode, row["state"], point))
        elif kind in NO_RESIDENTIAL_TYPES:
            other_rows.append((zipcode, row["state"], point))
    reference = [point for _, _, point in residential_rows]

    def infos(entries: list, self_counted: bool) -> tuple[ZipcodeInfo, ...]:
        counts = density_counts([point for _, _, point in entries], reference)
        out = [
            ZipcodeInfo(zipcode, state, lat, lng, tier_of(count - int(self_counted)))
            for (zipcode, state, (lat, lng)), count in zip(entries, counts, strict=True)
        ]
        return tuple(sorted(out, key=lambda z: z.zipcode))

    residential = infos(residential_rows, self_counted=True)
    no_residential = infos(other_rows, self_counted=False)
    tiers = Counter(z.tier for z in residential)
    total = max(1, len(residential))
    shares = tuple(tiers.get(i, 0) / total for i in range(len(SIZE_TIERS)))
    by_zipcode = {z.zipcode: z for z in (*no_residential, *residential)}
    return Universe(residential, no_residential, shares, by_zipcode)


@functools.cache
def load_universe() -> Universe:
    """The universe from the installed ``zipcodes`` package (read once per process)."""
    import zipcodes

    return build_universe(zipcodes.list_all())
