"""The synthetic market as a property source and as a spot-check verifier.

``SyntheticSource`` is what ``--scraper synthetic`` builds (the local subnet,
the tests, the benchmarks): each miner sees the world through its own honest
eyes (misses and stale values), and it can look one listing up, so a
validator's spot checks go through it like through any source.
``SyntheticVerifier`` checks against the world's truth directly (the
simulator, which has no event loop to spare per check).

    source = SyntheticSource(world, observer=hotkey, delay_s=0.05)
    result = await source.scrape_zipcode("77494", "ZILLOW_SOLD", deadline=time.monotonic() + 60)
    record = await source.fetch_property("77494001", deadline=time.monotonic() + 10)
    source = build_source("synthetic", context)    # scraping.registry: SyntheticSource.from_context
"""

from __future__ import annotations

import asyncio
import functools
import time

from common.records import RecordDigester
from consensus.types import SpotCheckRequest, Verdict
from scraping.registry import SourceContext
from scraping.source import ScrapeResult
from sim.world import SyntheticWorld
from vali_utils.spot_check import verdict_from_truth


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

    @classmethod
    def from_context(cls, context: SourceContext) -> SyntheticSource:
        """The registry's builder: the world of ``SYNTHETIC_SEED`` seen by the miner's hotkey."""
        world = (
            SyntheticWorld(context.synthetic_seed)
            if context.synthetic_cache_zipcodes is None
            else SyntheticWorld(
                context.synthetic_seed, cache_zipcodes=context.synthetic_cache_zipcodes
            )
        )
        return cls(world, observer=context.observer, delay_s=context.synthetic_delay_s)

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


class SyntheticVerifier:
    """Spot checks against the synthetic world's truth (the simulator's 'own source')."""

    def __init__(self, world: SyntheticWorld) -> None:
        self.world = world
        self.digester = RecordDigester()

    def verify_now(self, request: SpotCheckRequest) -> Verdict:
        return verdict_from_truth(self.world.lookup(request.zpid), request, self.digester)

    async def verify(self, request: SpotCheckRequest) -> Verdict:
        return self.verify_now(request)
