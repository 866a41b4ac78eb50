"""How a miner answers an assignment: the strategy ``MinerService`` is given.

The honest strategy (the default, and the only one a production miner runs)
scrapes every assigned zipcode through the service's source, in the
service's fair lanes, and looks every tie-break zpid up through the source.
The local subnet injects another one (``sim/answers.py``: a simulator
behaviour decides the answer) to show what validators make of gaming miners;
``scraping.registry.build_answering`` picks it by name, so this package never
imports the simulation.

    service = MinerService(store, source, hotkey)                           # HonestAnswers()
    service = MinerService(store, source, hotkey, answering=build_answering("fabricate", ...))
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from scraping.lookups import Wanted


@dataclass(frozen=True)
class Work:
    """One assignment's remaining work, and what the service lends a strategy to do it."""

    key: str  # the assignment's key
    request: dict  # the stored DataAssignmentRequest, as JSON
    todo: list[tuple[str, str]]  # (source name, zipcode); (source name, zpid) for lookups
    epoch: int  # the request's epoch number (0 when it names none)
    # Scrape one (source name, zipcode) through the source in a fair lane, and store it.
    scrape: Callable[[str, str], Awaitable[None]]
    # Store records as the answer for one (source name, zipcode).
    store: Callable[[str, str, list[dict]], Awaitable[None]]
    # Look every zpid of ``todo`` up through the source, in fair lanes, by the deadline.
    look_up: Callable[[], Awaitable[dict[Wanted, Any]]]


class AnswerStrategy(Protocol):
    """What decides a miner's answers; the service stores them, commits and reveals."""

    def looks_up(self, source: object) -> bool:
        """Whether property-id (tie-break) assignments can be answered with ``source``."""
        ...

    async def answer_zipcodes(self, work: Work) -> None:
        """Answer a zipcode assignment: ``work.store`` (or ``work.scrape``) each zipcode."""
        ...

    async def answer_lookups(self, work: Work) -> dict[Wanted, Any]:
        """Answer a property-id assignment: zpid -> record, None, or ``NOT_ANSWERED``."""
        ...


class HonestAnswers:
    """Every answer comes from the source: scraped zipcodes, looked-up zpids."""

    name = "honest"

    def looks_up(self, source: object) -> bool:
        return hasattr(source, "fetch_property")

    async def answer_zipcodes(self, work: Work) -> None:
        scrapes = [asyncio.ensure_future(work.scrape(s, z)) for s, z in work.todo]
        try:
            await asyncio.gather(*scrapes)
        except BaseException:
            # One failed (or the assignment was cancelled): the others stop here rather
            # than store zipcodes of an assignment already marked failed, unuploaded.
            for scrape in scrapes:
                scrape.cancel()
            await asyncio.gather(*scrapes, return_exceptions=True)
            raise

    async def answer_lookups(self, work: Work) -> dict[Wanted, Any]:
        return await work.look_up()
