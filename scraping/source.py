"""Property sources: where a miner's records come from.

A source answers one question, asynchronously: what listings does this
zipcode hold? ``scrape_zipcode`` returns records as dicts in the record schema
(``common.records``) plus call statistics; it must give up by ``deadline``
(a ``time.monotonic()`` value) and keep what it has.

    source = SyntheticSource(world, observer=hotkey, delay_s=0.05)
    result = await source.scrape_zipcode("77494", "ZILLOW_SOLD", deadline=time.monotonic() + 60)
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Protocol

from scraping.synthetic import SyntheticWorld


@dataclass
class ScrapeResult:
    records: list[dict] = field(default_factory=list)
    pages: int = 0
    calls: int = 0
    errors: list[str] = field(default_factory=list)


class PropertySource(Protocol):
    name: str

    async def scrape_zipcode(
        self, zipcode: str, source: str, *, deadline: float
    ) -> ScrapeResult: ...


class SyntheticSource:
    """The synthetic market seen through one observer's honest eyes (misses and stale values)."""

    name = "synthetic"

    def __init__(self, world: SyntheticWorld, observer: str, delay_s: float = 0.0) -> None:
        self.world = world
        self.observer = observer
        self.delay_s = delay_s

    async def scrape_zipcode(self, zipcode: str, source: str, *, deadline: float) -> ScrapeResult:
        if self.delay_s:
            await asyncio.sleep(min(self.delay_s, max(0.0, deadline - time.monotonic())))
        if time.monotonic() > deadline:
            return ScrapeResult(errors=["deadline passed"])
        records = self.world.honest_view(zipcode, self.observer, epoch=0)
        return ScrapeResult(records=records, pages=1, calls=1)
