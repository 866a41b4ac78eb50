"""The honest strategy stops an assignment's other zipcodes when one of them fails."""

from __future__ import annotations

import asyncio

import pytest

from scraping.answering import HonestAnswers, Work

pytestmark = pytest.mark.unit


def test_one_failed_zipcode_stops_the_others_instead_of_storing_them_unuploaded():
    stored: list[str] = []

    async def scrape(source: str, zipcode: str) -> None:
        if zipcode == "10002":
            raise RuntimeError("store write failed")
        await asyncio.sleep(0.2)  # still scraping when the other one fails
        stored.append(zipcode)

    async def unused(*_args):
        raise AssertionError("not called")

    todo = [("ZILLOW_SOLD", z) for z in ("10001", "10002", "10003")]
    work = Work("k", {}, todo, 7, scrape, unused, unused)

    async def scenario() -> None:
        with pytest.raises(RuntimeError, match="store write failed"):
            await HonestAnswers().answer_zipcodes(work)
        await asyncio.sleep(0.3)  # long enough for a sibling that was not stopped

    asyncio.run(scenario())
    assert stored == []
