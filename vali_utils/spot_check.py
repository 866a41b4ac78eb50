"""Spot-check verifiers, and the one place their failures are sorted and counted.

A verifier turns a ``SpotCheckRequest`` into a ``Verdict``, or raises when its
source cannot tell. ``SpotChecker`` runs it under a timeout: an expected
failure of the source (``EXPECTED_SOURCE_FAILURES``: unavailable, rate
limited, key refused, malformed answer, network, timeout) is ``NO_EVIDENCE``
and never counts against a miner; anything else is a bug in the verifier,
logged with its traceback and counted apart (``ERROR``), so a broken verifier
cannot quietly switch the spot checks off while weights keep being set.

    checker = SpotChecker(SourceVerifier(source), failures=metrics.spot_check_failures)
    verdict, failure = await checker.check(request, timeout_s=5.0, phase="cycle")
    failure in (None, UNAVAILABLE, TIMEOUT, ERROR)
    mostly_failed({"error": 3}, asked=4)            # True: the cycle must say so
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Protocol

import aiohttp

from common.records import KEY_FIELD_INDEXES, RecordDigester
from common.source_errors import SourceUnavailable
from consensus.answers import hash_to_int
from consensus.types import SpotCheckRequest, Verdict

logger = logging.getLogger(__name__)

# What a source raises when it cannot tell: ``SourceUnavailable`` and its kinds
# (KeyRejected, BudgetExhausted, BadAnswer; rate limits and 5xx after retries),
# and a plugged-in source's network failures. A timeout is counted on its own.
EXPECTED_SOURCE_FAILURES: tuple[type[Exception], ...] = (SourceUnavailable, aiohttp.ClientError)

UNAVAILABLE = "unavailable"  # the source could not tell: no evidence
TIMEOUT = "timeout"  # no answer in time: no evidence
ERROR = "error"  # the verifier raised something no source raises: a bug, counted
FAILURES = (UNAVAILABLE, TIMEOUT, ERROR)


class Verifier(Protocol):
    async def verify(self, request: SpotCheckRequest) -> Verdict:
        """The verdict on ``request``; one of EXPECTED_SOURCE_FAILURES when it cannot tell."""
        ...


class _Incrementable(Protocol):
    def inc(self, amount: float = 1) -> None: ...


class FailureCounter(Protocol):
    """A counter with (reason, phase) labels: ``ValidatorMetrics.spot_check_failures``."""

    def labels(self, reason: str, phase: str) -> _Incrementable: ...


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


def mostly_failed(failures: Mapping[str, int], asked: int) -> bool:
    """True when more than half of ``asked`` spot checks failed, for whatever reason."""
    return asked > 0 and 2 * sum(failures.values()) > asked


class SpotChecker:
    """A verifier run under a timeout, its failures sorted into expected ones and bugs.

    It is a ``Verifier`` too (``verify`` passes through), so the validator
    hands one checker, holding the metric, to the cycle and to the S3 pass.
    """

    def __init__(self, verifier: Verifier, failures: FailureCounter | None = None) -> None:
        self.verifier = verifier
        self.failures = failures

    async def verify(self, request: SpotCheckRequest) -> Verdict:
        return await self.verifier.verify(request)

    async def check(
        self, request: SpotCheckRequest, timeout_s: float, phase: str
    ) -> tuple[Verdict, str | None]:
        """The verdict, and why there is none (UNAVAILABLE, TIMEOUT, ERROR) or None.

        Never raises for what the verifier does (cancellation passes through).
        """
        try:
            return await asyncio.wait_for(self.verifier.verify(request), timeout_s), None
        except TimeoutError:
            reason = TIMEOUT
        except EXPECTED_SOURCE_FAILURES as exc:
            reason = UNAVAILABLE
            logger.debug("%s spot check of zpid %s: no answer: %s", phase, request.zpid, exc)
        except Exception:
            reason = ERROR
            logger.exception(
                "%s spot check of zpid %s (zipcode %s): the verifier failed with an error no"
                " source raises (a bug); counted, and the check gives no evidence",
                phase,
                request.zpid,
                request.zipcode,
            )
        if self.failures is not None:
            self.failures.labels(reason, phase).inc()
        return Verdict.NO_EVIDENCE, reason


def spot_checker(verifier: Verifier) -> SpotChecker:
    """``verifier`` as a SpotChecker (itself when it is one already; no metric otherwise)."""
    return verifier if isinstance(verifier, SpotChecker) else SpotChecker(verifier)


class SourceVerifier:
    """Spot checks through a real property source (the validator's own key)."""

    def __init__(self, source: object, timeout_s: float = 30.0) -> None:
        self.source = source
        self.timeout_s = timeout_s
        self.digester = RecordDigester()

    async def verify(self, request: SpotCheckRequest) -> Verdict:
        """The verdict; raises SourceUnavailable when the source cannot tell (no evidence)."""
        truth = await self.source.fetch_property(  # type: ignore[attr-defined]
            str(request.zpid), deadline=time.monotonic() + self.timeout_s
        )
        return verdict_from_truth(truth, request, self.digester)
