"""Property sources: where a miner's records come from.

A source answers one question, asynchronously: what listings does this
zipcode hold? ``scrape_zipcode`` returns records as dicts in the record schema
(``common.records``) plus call statistics; it must give up by ``deadline``
(a ``time.monotonic()`` value) and keep what it has. It reports a failing
source in ``ScrapeResult.errors`` instead of raising, so one bad zipcode never
fails a whole assignment.

Sources that can look up one listing also offer ``fetch_property`` (the
validator's spot checks): the record, ``None`` when the source says there is
no such listing, or ``SourceUnavailable`` when it cannot tell, which is no
evidence either way and never a miner's failure.

    source = SyntheticSource(world, observer=hotkey, delay_s=0.05)
    result = await source.scrape_zipcode("77494", "ZILLOW_SOLD", deadline=time.monotonic() + 60)
    record = await source.fetch_property("77494001", deadline=time.monotonic() + 10)

Third-party sources plug in through ``scraping.registry`` (``SCRAPER=module.path:Class``).
"""

from __future__ import annotations

import asyncio
import functools
import time
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from scraping.synthetic import SyntheticWorld


class SourceUnavailable(Exception):
    """The source cannot answer now (network, limits, key, malformed answer).

    For a validator this is no evidence: the record is neither confirmed nor
    refuted, and the miner is not blamed. The message is one line.
    """


class KeyRejected(SourceUnavailable):
    """The source refused the credentials (HTTP 401/403); it stays unusable until restarted."""


class BudgetExhausted(SourceUnavailable):
    """The configured call budget is spent; no call was made."""


class BadAnswer(SourceUnavailable):
    """The source answered with something that is not a usable answer (invalid JSON, shape)."""


@dataclass
class ScrapeResult:
    """One zipcode's scrape: records in the record schema and what it took to get them."""

    records: list[dict] = field(default_factory=list)
    pages: int = 0  # result pages read
    calls: int = 0  # HTTP calls made for this zipcode, retries included
    errors: list[str] = field(default_factory=list)  # one line each; empty when all went well
    dropped: dict[str, int] = field(default_factory=dict)  # listings not kept, by reason


class PropertySource(Protocol):
    """What the miner's batch scraper needs from a source."""

    name: str

    async def scrape_zipcode(
        self, zipcode: str, source: str, *, deadline: float
    ) -> ScrapeResult: ...


@runtime_checkable
class PropertyLookup(Protocol):
    """A source that can fetch one listing by zpid (used by validators' spot checks)."""

    async def fetch_property(self, zpid: str, *, deadline: float) -> dict | None: ...


def is_no_residential(zipcode: str) -> bool:
    """A real PO-box or single-organisation zipcode, where no residential listing exists.

    The Data API mixes such zipcodes into blocks as honeypots; the synthetic
    market (local subnet) leaves them empty so that honest miners pass them.
    Without the ``zipcodes`` package (the ``api``/``local`` extras) nothing is
    known and nothing is empty.
    """
    return zipcode in _no_residential_zipcodes()


@functools.cache
def _no_residential_zipcodes() -> frozenset[str]:
    try:
        import zipcodes
    except ImportError:
        return frozenset()
    return frozenset(
        row["zip_code"]
        for row in zipcodes.list_all()
        if row.get("zip_code_type") in ("PO BOX", "UNIQUE")
    )


class SyntheticSource:
    """The synthetic market seen through one observer's honest eyes (misses and stale values)."""

    name = "synthetic"

    def __init__(self, world: SyntheticWorld, observer: str, delay_s: float = 0.0) -> None:
        self.world = world
        self.observer = observer
        self.delay_s = delay_s
        _no_residential_zipcodes()  # load once now, not on the request path

    async def scrape_zipcode(self, zipcode: str, source: str, *, deadline: float) -> ScrapeResult:
        if self.delay_s:
            await asyncio.sleep(min(self.delay_s, max(0.0, deadline - time.monotonic())))
        if time.monotonic() > deadline:
            return ScrapeResult(errors=["deadline passed"])
        return ScrapeResult(records=self.view(zipcode), pages=1, calls=1)

    def view(self, zipcode: str) -> list[dict]:
        """What this observer sees in ``zipcode``: nothing where no home can be listed."""
        if is_no_residential(zipcode):
            return []
        return self.world.honest_view(zipcode, self.observer, epoch=0)

    async def fetch_property(self, zpid: str, *, deadline: float) -> dict | None:
        """The world's true record for ``zpid``, or None when there is no such listing."""
        zpid = str(zpid).strip()
        if not zpid.isascii() or not zpid.isdigit():
            return None
        record = self.world.lookup(int(zpid))
        if record is not None and is_no_residential(str(record.get("zipcode"))):
            return None  # as ``view``: no listings where no home can be listed
        return record

    async def close(self) -> None:
        """Nothing to release; present so every built-in source can be closed alike."""
