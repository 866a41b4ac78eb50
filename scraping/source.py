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

    source = build_source(settings.scraper, context)      # scraping.registry
    result = await source.scrape_zipcode("77494", "ZILLOW_SOLD", deadline=time.monotonic() + 60)
    record = await source.fetch_property("77494001", deadline=time.monotonic() + 10)

Third-party sources plug in through ``scraping.registry`` (``SCRAPER=module.path:Class``);
the synthetic market (``--scraper synthetic``) is one such plugin, ``sim/source.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

# The failures a source raises live in common/ (a validator's spot checks catch them too);
# re-exported under their own names so sources keep importing them from this module.
from common.source_errors import BadAnswer as BadAnswer
from common.source_errors import BudgetExhausted as BudgetExhausted
from common.source_errors import KeyRejected as KeyRejected
from common.source_errors import SourceUnavailable as SourceUnavailable


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
