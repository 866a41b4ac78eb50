#!/usr/bin/env python3
"""Answer time of the validator's status page for 256 miners and 12 stored cycles.

    python scripts/bench_status.py              # prints the figures as JSON

A store is filled by the real cycle code (``sim/validator_history.py``: 256
miners, 1000 zipcodes per cycle as on mainnet, 12 cycles, a few fabricators),
the status server is started on loopback and each page is fetched
``REQUESTS`` times one after the other; each figure is the median answer
time, from sending the request to the last byte of the body. The server's
view cache is off (a TTL of 0): every request reads the store, as the first
request after the cache's few seconds does. Reports:

- ``status_page_ms``: the overview in HTML (cycles and the 256-miner table);
- ``status_json_ms``: its JSON twin (``/api/status``);
- ``status_miner_page_ms``: a flagged miner's page (12 cycles, zipcodes, flags);
- ``status_page_bytes``: the overview's size.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402

from common.epochs import EpochClock  # noqa: E402
from sim.validator_history import fill_store  # noqa: E402
from vali_utils.status_server import ViewCache, serve_status  # noqa: E402
from vali_utils.status_view import StatusReader  # noqa: E402

MINERS = 256
CYCLES = 12
ZIPCODES = 1000
FABRICATORS = (3, 50, 101, 200)
REQUESTS = 21
CLOCK = EpochClock(4 * 3600.0, 0.75)


async def _timed(session: aiohttp.ClientSession, url: str) -> tuple[float, int]:
    started = time.perf_counter()
    async with session.get(url) as answer:
        body = await answer.read()
        assert answer.status == 200, (url, answer.status)
    return time.perf_counter() - started, len(body)


async def bench_status_page() -> dict:
    with tempfile.TemporaryDirectory() as folder:
        state_dir = Path(folder)
        history = await fill_store(
            state_dir,
            miners=MINERS,
            cycles=CYCLES,
            zipcodes_per_batch=20,
            zipcodes=ZIPCODES,
            fabricators=FABRICATORS,
        )
        now = CLOCK.end(history.epochs[-1]) - 60
        reader = StatusReader(state_dir, CLOCK)
        uncached = ViewCache(ttl_s=0.0)
        server = await serve_status(reader, "127.0.0.1", 0, clock=lambda: now, cache=uncached)
        base = f"http://127.0.0.1:{server.port}/"
        pages = {
            "status_page_ms": base,
            "status_json_ms": f"{base}api/status",
            "status_miner_page_ms": f"{base}miner/{FABRICATORS[0]}",
        }
        out: dict = {}
        try:
            async with aiohttp.ClientSession() as session:
                for name, url in pages.items():
                    await _timed(session, url)  # a first read warms SQLite's page cache
                    runs = [await _timed(session, url) for _ in range(REQUESTS)]
                    out[name] = round(statistics.median(t for t, _ in runs) * 1000, 2)
                    if name == "status_page_ms":
                        out["status_page_bytes"] = runs[0][1]
        finally:
            await server.close()
    out |= {"status_page_miners": MINERS, "status_page_cycles": CYCLES}
    return out


if __name__ == "__main__":
    print(json.dumps(asyncio.run(bench_status_page()), indent=2))
