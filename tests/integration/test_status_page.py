"""The status page in headless Chromium, over loopback, on a store the real cycle code filled.

Screenshots go to the test's own folder (``tmp_path``): status.png,
status-filtered.png, miner-<uid>.png, hostile.png.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import aiohttp
import pytest

from common.epochs import EpochClock
from sim.processes import free_port
from sim.validator_history import fill_store
from tests.integration.browser import browser_or_skip, chromium
from tests.integration.status_checks import check_flagged_miner, check_overview, fetch_json
from tests.scripts import load_script
from vali_utils.status_server import ViewCache, serve_status
from vali_utils.status_view import StatusReader

pytestmark = pytest.mark.integration

CLOCK = EpochClock(100.0, 0.6)
FABRICATOR, OFFLINE, HOSTILE_UID = 3, 5, 7
# What a miner could put in the error text of its answer: a script, an element
# with an event handler, and a tag that would close the table cell.
HOSTILE = (
    '</td><script>window.pwned=1</script><img src=x onerror="window.pwned=2">'
    "<b id=injected>bold</b>"
)


async def served(tmp_path):
    state_dir = tmp_path / "validator"
    history = await fill_store(
        state_dir,
        miners=24,
        cycles=4,
        fabricators=(FABRICATOR,),
        offline=(OFFLINE,),
        hostile_error=HOSTILE,
        hostile_uid=HOSTILE_UID,
    )
    now = CLOCK.end(history.epochs[-1]) - 1  # the status of a validator in its last epoch
    server = await serve_status(StatusReader(state_dir, CLOCK), "127.0.0.1", 0, clock=lambda: now)
    return server, f"http://127.0.0.1:{server.port}/"


def in_chromium(tmp_path, check) -> None:
    """``await check(browser, base_url)`` on the served status page in headless Chromium."""
    browser_or_skip()

    async def main():
        server, base = await served(tmp_path)
        try:
            async with chromium() as browser:
                await check(browser, base)
        finally:
            await server.close()

    asyncio.run(main())


def test_status_and_miner_pages_in_chromium(tmp_path):
    async def check(browser, base):
        twin = await check_overview(browser, base, tmp_path)
        assert twin["phase"] == "S3 evaluation" and len(twin["cycles"]) == 4
        miner = await check_flagged_miner(browser, base, FABRICATOR, tmp_path)
        assert {f["kind"] for f in miner["flags"]} >= {"fabrication"}
        assert all(f["evidence"] for f in miner["flags"] if f["kind"] == "fabrication")

    in_chromium(tmp_path, check)
    for name in ("status.png", "status-filtered.png", f"miner-{FABRICATOR}.png"):
        assert (tmp_path / name).stat().st_size > 5000


def test_hostile_answer_is_shown_as_text(tmp_path):
    async def check(browser, base):
        page = await browser.new_page()
        dialogs: list[str] = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        await page.goto(f"{base}miner/{HOSTILE_UID}")
        errors = await page.eval_on_selector_all(
            "#answers tbody tr td:last-child", "cells => cells.map(c => c.textContent)"
        )
        assert HOSTILE in errors
        assert await page.evaluate("window.pwned") is None
        assert await page.locator("#injected").count() == 0
        assert await page.locator("img").count() == 0
        assert not dialogs
        await page.screenshot(path=str(tmp_path / "hostile.png"), full_page=True)
        twin = await fetch_json(f"{base}api/miners/{HOSTILE_UID}")
        assert twin["answers"][0]["error"] == HOSTILE  # JSON carries it as data

    in_chromium(tmp_path, check)


def test_pages_are_read_only_bounded_and_leak_no_path(tmp_path):
    async def main():
        server, base = await served(tmp_path)
        try:
            async with aiohttp.ClientSession() as session:
                async with session.post(base) as answer:
                    assert answer.status == 405
                async with session.get(f"{base}miner/abc") as answer:
                    assert answer.status == 404
                async with session.get(f"{base}api/miners/999") as answer:
                    assert answer.status == 404 and "error" in await answer.json()
                async with session.get(f"{base}?page=-5&q={'z' * 5000}") as answer:
                    assert answer.status == 200
                    assert "script-src 'sha256-" in answer.headers["Content-Security-Policy"]
                started = time.perf_counter()
                for url in (base, f"{base}api/status", f"{base}miner/{FABRICATOR}"):
                    async with session.get(url) as answer:
                        body = await answer.text()
                        assert answer.status == 200
                        assert str(tmp_path) not in body and "validator.sqlite" not in body
                assert time.perf_counter() - started < 5  # not a benchmark: scripts/bench.py
        finally:
            await server.close()

    asyncio.run(main())


class CountingReader:
    """A ``StatusReader`` that counts its reads of the store and the most run at once."""

    def __init__(self, reader: StatusReader) -> None:
        self.reader, self.reads, self.running, self.most = reader, 0, 0, 0
        self._lock = threading.Lock()

    def _counted(self, read):
        with self._lock:
            self.reads += 1
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            return read()
        finally:
            with self._lock:
                self.running -= 1

    def overview(self, *args):
        return self._counted(lambda: self.reader.overview(*args))

    def miner(self, *args):
        return self._counted(lambda: self.reader.miner(*args))


def test_a_burst_of_page_loads_reads_the_store_once_at_a_time(tmp_path):
    """Regression: every miner page parsed the last 12 cycle reports (~0.6 MB each)
    with no cache and no limit, so a burst of page loads could take both cores of
    a validator. Now identical pages within the cache's life cost one read, and
    reads of different pages run one after the other."""

    async def main():
        state_dir = tmp_path / "validator"
        history = await fill_store(state_dir, miners=24, cycles=2, fabricators=(FABRICATOR,))
        now = CLOCK.end(history.epochs[-1]) - 1
        reader = CountingReader(StatusReader(state_dir, CLOCK))
        ticks = [0.0]
        cache = ViewCache(ttl_s=3.0, entries=2, clock=lambda: ticks[0])
        server = await serve_status(reader, "127.0.0.1", 0, clock=lambda: now, cache=cache)
        base = f"http://127.0.0.1:{server.port}/"
        try:
            async with aiohttp.ClientSession() as session:

                async def get(path: str) -> str:
                    async with session.get(f"{base}{path}") as answer:
                        assert answer.status == 200, path
                        return await answer.text()

                pages = await asyncio.gather(*(get(f"miner/{FABRICATOR}") for _ in range(8)))
                assert reader.reads == 1 and len(set(pages)) == 1
                others = [uid for uid in range(8) if uid != FABRICATOR]
                await asyncio.gather(*(get(f"miner/{uid}") for uid in others))
                assert reader.reads == 8 and reader.most == 1
                # Two documents kept: the first page was dropped, then is kept again.
                await get(f"miner/{FABRICATOR}")
                await get(f"miner/{FABRICATOR}")
                assert reader.reads == 9
                ticks[0] = 3.0  # its life is over: read again
                await get(f"miner/{FABRICATOR}")
                assert reader.reads == 10
                # Queries the reader cuts to the same filter share one document.
                await get(f"?q={'z' * 64}")
                await get(f"?q={'z' * 5000}")
                assert reader.reads == 11
        finally:
            await server.close()

    asyncio.run(main())


def test_local_subnet_pages_close_those_started_when_a_port_is_taken(tmp_path):
    """Regression: when a later validator's port was taken, the pages already
    started stayed open on their ports after the error."""
    pages = load_script("localnet_status")
    first = free_port()
    with socket.socket() as taken:
        taken.bind((pages.HOST, 0))
        taken.listen()
        validators = [
            {"wallet": "v", "wallet_hotkey": str(n), "status_port": port}
            for n, port in enumerate((first, taken.getsockname()[1]))
        ]

        async def main():
            with pytest.raises(OSError):
                await pages.serve_pages(validators, tmp_path, CLOCK)
            # Still in the loop the pages ran on: nothing listens on the first port.
            with socket.socket() as probe:
                probe.bind((pages.HOST, first))

        asyncio.run(main())
