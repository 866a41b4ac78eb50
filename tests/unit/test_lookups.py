"""Property-id lookups: found, not found and not answered stay apart."""

from __future__ import annotations

import asyncio

import pytest

from common.records import RecordDigester
from scraping.lookups import (
    NOT_ANSWERED,
    lookup_rows,
    lookup_with_source,
    property_answers,
)
from scraping.source import SourceUnavailable
from sim.adversaries import Cartel, Honest, Offline
from sim.answers import behaviour_context, lookup_with_behaviour
from sim.world import SyntheticWorld

pytestmark = pytest.mark.unit

WORLD = SyntheticWorld(3)
LISTING = WORLD.listings("30301")[0]
REAL = ("ZILLOW", str(LISTING["zpid"]))
MISSING = ("ZILLOW", "999999999")
BROKEN = ("ZILLOW", "123")


class FlakySource:
    """Knows the world, says "no such listing" for unknown zpids, fails on one."""

    async def fetch_property(self, zpid: str, *, deadline: float) -> dict | None:
        if zpid == BROKEN[1]:
            raise SourceUnavailable("upstream 503")
        return WORLD.lookup(int(zpid))


def test_source_lookups_keep_failures_out_of_the_answer():
    results = asyncio.run(
        lookup_with_source(FlakySource(), [REAL, MISSING, BROKEN], 1e12, asyncio.Semaphore(2))
    )
    assert results[REAL]["zpid"] == LISTING["zpid"]
    assert results[MISSING] is None
    assert results[BROKEN] is NOT_ANSWERED
    rows, rejected = lookup_rows("k", results, RecordDigester())
    assert rejected == 0
    answers = {a.zpid: a for a in property_answers([r[1:6] for r in rows])}
    assert set(answers) == {REAL[1], MISSING[1]}  # the failed lookup is not "not found"
    assert answers[REAL[1]].found and answers[REAL[1]].zipcode == "30301"
    assert answers[REAL[1]].record_hash == RecordDigester().digest(LISTING)[1]
    assert not answers[MISSING[1]].found and answers[MISSING[1]].record_hash is None


def test_a_record_of_another_zpid_or_an_invalid_one_is_not_an_answer():
    other = dict(LISTING, zpid=int(LISTING["zpid"]) + 1)
    rows, rejected = lookup_rows("k", {REAL: other, MISSING: {"zpid": "x"}}, RecordDigester())
    assert rows == [] and rejected == 2


def test_past_the_deadline_nothing_is_answered():
    results = asyncio.run(
        lookup_with_source(FlakySource(), [REAL, MISSING], 0.0, asyncio.Semaphore(1))
    )
    assert set(results.values()) == {NOT_ANSWERED}


def _ctx(zipcodes):
    return behaviour_context("hk", "key", zipcodes, 4, None, WORLD)


def test_behaviours_answer_lookups_their_own_way():
    honest = lookup_with_behaviour(Honest(), _ctx(["30301"]), [REAL, MISSING])
    assert honest[REAL]["zpid"] == LISTING["zpid"] and honest[MISSING] is None
    offline = lookup_with_behaviour(Offline(), _ctx(["30301"]), [REAL, MISSING])
    assert set(offline.values()) == {NOT_ANSWERED}
    # A cartel member vouches for the cartel's invented listings of that zipcode.
    invented = Cartel().respond(_ctx(["30301"]))["30301"][0]
    wanted = ("ZILLOW", str(invented["zpid"]))
    cartel = lookup_with_behaviour(Cartel(), _ctx(["30301"]), [wanted])
    assert cartel[wanted]["zpid"] == invented["zpid"]
