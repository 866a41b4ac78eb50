"""Spot-check verifiers: the validator's own look at a record the consensus core picked.

A verifier turns a ``SpotCheckRequest`` into a ``Verdict``. A failure of the
source itself is ``NO_EVIDENCE``: it never counts against a miner.
"""

from __future__ import annotations

import time
from typing import Protocol

from common.records import KEY_FIELD_INDEXES, RecordDigester
from consensus.answers import hash_to_int
from consensus.types import SpotCheckRequest, Verdict
from scraping.source import SourceUnavailable
from scraping.synthetic import SyntheticWorld


class Verifier(Protocol):
    async def verify(self, request: SpotCheckRequest) -> Verdict: ...


def verdict_from_truth(
    truth: dict | None, request: SpotCheckRequest, digester: RecordDigester
) -> Verdict:
    """Compare a claimed record with the source's own record for the same zpid."""
    if truth is None or truth.get("zipcode") != request.zipcode:
        return Verdict.NOT_FOUND
    digest = digester.digest(truth)
    if isinstance(digest, str):
        return Verdict.NO_EVIDENCE
    if hash_to_int(digest[1]) == request.record_hash:
        return Verdict.MATCH
    if request.fields is None:
        return Verdict.MISMATCH
    same = all(request.fields[i] == digest[2][i] for i in KEY_FIELD_INDEXES)
    return Verdict.MATCH if same else Verdict.MISMATCH


class SourceVerifier:
    """Spot checks through a real property source (the validator's own key)."""

    def __init__(self, source: object, timeout_s: float = 30.0) -> None:
        self.source = source
        self.timeout_s = timeout_s
        self.digester = RecordDigester()

    async def verify(self, request: SpotCheckRequest) -> Verdict:
        try:
            truth = await self.source.fetch_property(  # type: ignore[attr-defined]
                str(request.zpid), deadline=time.monotonic() + self.timeout_s
            )
        except SourceUnavailable:
            return Verdict.NO_EVIDENCE  # our source failing says nothing about the miner
        return verdict_from_truth(truth, request, self.digester)


class SyntheticVerifier:
    """Spot checks against the synthetic world (the local subnet's 'own source')."""

    def __init__(self, world: SyntheticWorld) -> None:
        self.world = world
        self.digester = RecordDigester()

    def verify_now(self, request: SpotCheckRequest) -> Verdict:
        return verdict_from_truth(self.world.lookup(request.zpid), request, self.digester)

    async def verify(self, request: SpotCheckRequest) -> Verdict:
        return self.verify_now(request)
