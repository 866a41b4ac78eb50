"""Spot checks through a property source: the source failing is never the miner's fault."""

from __future__ import annotations

import asyncio

import pytest

from common.records import RecordDigester
from consensus.answers import hash_to_int
from consensus.types import SpotCheckRequest, Verdict
from scraping.source import SourceUnavailable
from sim.world import SyntheticWorld
from vali_utils.spot_check import UNAVAILABLE, SourceVerifier, SpotChecker

pytestmark = pytest.mark.unit

WORLD = SyntheticWorld(3)
ZIPCODE = next(z for z in WORLD.universe(50) if WORLD.listings(z))
TRUTH = WORLD.listings(ZIPCODE)[0]


class FakeSource:
    def __init__(self, answer=None, fail=False):
        self.answer, self.fail = answer, fail

    async def fetch_property(self, zpid, *, deadline):
        if self.fail:
            raise SourceUnavailable("quota spent")
        return self.answer


def request(record: dict) -> SpotCheckRequest:
    zpid, record_hash, fields = RecordDigester().digest(record)
    return SpotCheckRequest(ZIPCODE, zpid, hash_to_int(record_hash), fields, 0, "disputed")


def checked(source, record) -> tuple[Verdict, str | None]:
    """The verdict as the validator gets it: through the checker that sorts failures."""
    checker = SpotChecker(SourceVerifier(source))
    return asyncio.run(checker.check(request(record), timeout_s=5.0, phase="cycle"))


def verdict(source, record) -> Verdict:
    return checked(source, record)[0]


def test_source_failure_is_no_evidence():
    assert checked(FakeSource(fail=True), dict(TRUTH)) == (Verdict.NO_EVIDENCE, UNAVAILABLE)


def test_missing_listing_is_not_found_and_true_record_matches():
    assert verdict(FakeSource(answer=None), dict(TRUTH)) is Verdict.NOT_FOUND
    assert verdict(FakeSource(answer=dict(TRUTH)), dict(TRUTH)) is Verdict.MATCH


def test_wrong_price_is_a_mismatch():
    claimed = dict(TRUTH, price=TRUTH["price"] + 50_000)
    assert verdict(FakeSource(answer=dict(TRUTH)), claimed) is Verdict.MISMATCH
