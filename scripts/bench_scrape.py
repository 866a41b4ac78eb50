#!/usr/bin/env python3
"""Scrape throughput of the RapidAPI source under its own rate limit, on loopback.

    python scripts/bench_scrape.py              # prints the figures as JSON

A batch of ``BENCH_ZIPCODES`` zipcodes is scraped concurrently through an
``asyncio.Semaphore(BENCH_CONCURRENCY)``, as the miner's batch scraper does,
by one ``RapidApiZillowSource`` limited to ``BENCH_CALLS_PER_S``, against the
fake API of the tests answering every call after ``BENCH_LATENCY_S``. The
semaphore alone would allow concurrency / latency = 160 calls/s, so the
source's token bucket is what sets the pace. Reports:

- ``scrape_records_per_s``: records returned / wall time of the batch.
- ``scrape_calls_per_s``: calls per second as the fake server saw them arrive
  ((calls - 1) / time between the first and the last arrival).
- ``scrape_calls_per_s_limit``: the configured limit.
- ``scrape_rate_ratio``: achieved / limit; the source holds its limit when this
  is within 10% of 1 (and it must never be well above 1).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from config.sources import RapidApiConfig  # noqa: E402
from scraping.rapidapi import RapidApiZillowSource  # noqa: E402
from sim.fake_rapidapi import VALID_KEY, FakeRapidApi  # noqa: E402

BENCH_ZIPCODES = 40
BENCH_CONCURRENCY = 8  # zipcodes in flight, like the miner's semaphore
BENCH_LATENCY_S = 0.05  # per call, at the fake server
BENCH_CALLS_PER_S = 20.0
BENCH_LISTINGS_PER_ZIPCODE = 60  # two pages of 41: 80 calls in all, ~4 s at the limit
BENCH_DEADLINE_S = 120.0


def bench_listings(zipcode: str, count: int = BENCH_LISTINGS_PER_ZIPCODE) -> list[dict]:
    """Recently sold listings of one zipcode as the search endpoint gives them."""
    return [
        {
            "zpid": int(zipcode) * 1000 + n,
            "address": f"{100 + n} Bench St, Katy, TX {zipcode}",
            "price": 200_000 + 1_000 * n,
            "bedrooms": 1 + n % 5,
            "bathrooms": 1 + n % 3,
            "livingArea": 900 + 10 * n,
            "lotAreaValue": 0.1 + n / 100,
            "lotAreaUnit": "acres",
            "propertyType": "SINGLE_FAMILY",
            "listingStatus": "RECENTLY_SOLD",
            "dateSold": 1_704_182_400_000 + n * 86_400_000,
            "detailUrl": f"/homedetails/{int(zipcode) * 1000 + n}_zpid/",
        }
        for n in range(1, count + 1)
    ]


async def _run() -> dict:
    zipcodes = [f"{77000 + i:05d}" for i in range(BENCH_ZIPCODES)]
    fake = FakeRapidApi(latency_s=BENCH_LATENCY_S)
    for zipcode in zipcodes:
        fake.set_listings(zipcode, "RecentlySold", bench_listings(zipcode))
    async with fake:
        config = RapidApiConfig(
            api_key=VALID_KEY,
            base_url=fake.base_url,
            calls_per_second=BENCH_CALLS_PER_S,
            calls_per_month=1_000_000,
        )
        source = RapidApiZillowSource(config)
        semaphore = asyncio.Semaphore(BENCH_CONCURRENCY)

        async def scrape(zipcode: str):
            async with semaphore:
                deadline = time.monotonic() + BENCH_DEADLINE_S
                return await source.scrape_zipcode(zipcode, "ZILLOW_SOLD", deadline=deadline)

        started = time.perf_counter()
        try:
            results = await asyncio.gather(*(scrape(z) for z in zipcodes))
        finally:
            wall_s = time.perf_counter() - started
            await source.close()
    arrivals = sorted(fake.arrivals())
    achieved = (len(arrivals) - 1) / (arrivals[-1] - arrivals[0])
    records = sum(len(r.records) for r in results)
    return {
        "scrape_records_per_s": round(records / wall_s, 1),
        "scrape_calls_per_s": round(achieved, 3),
        "scrape_calls_per_s_limit": BENCH_CALLS_PER_S,
        "scrape_rate_ratio": round(achieved / BENCH_CALLS_PER_S, 4),
        "scrape_records": records,
        "scrape_calls": len(arrivals),
        "scrape_errors": sum(len(r.errors) for r in results),
        "scrape_wall_s": round(wall_s, 3),
        "scrape_zipcodes": BENCH_ZIPCODES,
        "scrape_concurrency": BENCH_CONCURRENCY,
        "scrape_latency_ms": BENCH_LATENCY_S * 1e3,
    }


def bench_scrape() -> dict:
    """Run the batch once (a fresh event loop); the figures as a flat dict."""
    return asyncio.run(_run())


if __name__ == "__main__":
    print(json.dumps(bench_scrape(), indent=2))
