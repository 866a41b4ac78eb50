"""Verifier failures are counted, not swallowed (issue 16, item 7).

Incident guarded against: any exception in a spot-check verifier became "no
evidence", so a bug in the verifier switched spot checks off while weights
kept being set, and nothing counted it. Only a source's expected failures
(unavailable, rate limited, timeout) are quiet "no evidence"; anything else
is logged with its traceback, counted in the metric, and a cycle in which
most checks failed says so.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

import aiohttp
import pytest

from consensus.types import SpotCheckRequest, Verdict
from scraping.source import BudgetExhausted, SourceUnavailable
from vali_utils.cycle import ConsensusCycle, CycleOutcome
from vali_utils.metrics import ValidatorMetrics
from vali_utils.spot_check import ERROR, TIMEOUT, UNAVAILABLE, SpotChecker, mostly_failed

pytestmark = pytest.mark.unit

METRIC = "validator_spot_check_failures_total"


def request(zpid: int) -> SpotCheckRequest:
    return SpotCheckRequest("10001", zpid, 123, None, 0, "disputed")


class ScriptedVerifier:
    """Answers by zpid: a verdict, or raises what the script says for it."""

    def __init__(self, script: dict[int, object]) -> None:
        self.script = script

    async def verify(self, request: SpotCheckRequest) -> Verdict:
        outcome = self.script[request.zpid]
        if outcome == "slow":
            await asyncio.sleep(10)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome  # type: ignore[return-value]


def counted(metrics: ValidatorMetrics, reason: str, phase: str) -> float:
    value = metrics.registry.get_sample_value(METRIC, {"reason": reason, "phase": phase})
    return value or 0.0


def check(verifier, zpid: int, metrics: ValidatorMetrics | None = None, timeout_s: float = 1.0):
    checker = SpotChecker(verifier, metrics.spot_check_failures if metrics else None)
    return asyncio.run(checker.check(request(zpid), timeout_s, "cycle"))


def test_a_verifier_bug_is_counted_and_logged_with_its_traceback(caplog):
    metrics = ValidatorMetrics()
    verifier = ScriptedVerifier({1: KeyError("fields")})
    with caplog.at_level(logging.ERROR, logger="vali_utils.spot_check"):
        assert check(verifier, 1, metrics) == (Verdict.NO_EVIDENCE, ERROR)
    assert counted(metrics, ERROR, "cycle") == 1.0
    (record,) = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert record.exc_info is not None and record.exc_info[0] is KeyError
    assert "zpid 1" in record.getMessage()


@pytest.mark.parametrize(
    "failure",
    [
        SourceUnavailable("rate limited (HTTP 429); gave up after 4 attempts"),
        BudgetExhausted("monthly budget spent"),
        aiohttp.ClientConnectionError("connection reset"),
    ],
)
def test_an_expected_source_failure_is_quiet_no_evidence(failure, caplog):
    metrics = ValidatorMetrics()
    with caplog.at_level(logging.WARNING, logger="vali_utils.spot_check"):
        assert check(ScriptedVerifier({2: failure}), 2, metrics) == (
            Verdict.NO_EVIDENCE,
            UNAVAILABLE,
        )
    assert not caplog.records  # no traceback for what sources do
    assert counted(metrics, UNAVAILABLE, "cycle") == 1.0
    assert counted(metrics, ERROR, "cycle") == 0.0


def test_a_check_over_its_time_is_a_timeout_and_answers_pass_through():
    metrics = ValidatorMetrics()
    verifier = ScriptedVerifier({3: "slow", 4: Verdict.MISMATCH})
    assert check(verifier, 3, metrics, timeout_s=0.05) == (Verdict.NO_EVIDENCE, TIMEOUT)
    assert check(verifier, 4, metrics) == (Verdict.MISMATCH, None)
    assert counted(metrics, TIMEOUT, "cycle") == 1.0


def test_most_failed_means_more_than_half():
    assert not mostly_failed({}, 0)
    assert not mostly_failed({ERROR: 1, UNAVAILABLE: 1}, 4)
    assert mostly_failed({ERROR: 2, UNAVAILABLE: 1}, 4)


def test_a_cycle_whose_checks_mostly_failed_says_so(caplog):
    """The cycle's spot checks through the validator's checker: counted by reason, and told."""
    metrics = ValidatorMetrics()
    verifier = ScriptedVerifier(
        {
            1: RuntimeError("bug in the digester"),
            2: RuntimeError("bug in the digester"),
            3: SourceUnavailable("HTTP 503"),
            4: Verdict.MATCH,
        }
    )
    cycle = ConsensusCycle(
        None, None, None, SpotChecker(verifier, metrics.spot_check_failures), request_timeout_s=1
    )
    with caplog.at_level(logging.WARNING, logger="vali_utils"):
        verdicts, failures = asyncio.run(cycle._verify([request(z) for z in (1, 2, 3, 4)], 9))
    assert [v for _, v in verdicts] == [Verdict.NO_EVIDENCE] * 3 + [Verdict.MATCH]
    assert failures == Counter({ERROR: 2, UNAVAILABLE: 1})
    assert counted(metrics, ERROR, "cycle") == 2.0
    assert sum(r.exc_info is not None for r in caplog.records) == 2
    assert any("3 of 4 spot checks gave no verdict" in r.getMessage() for r in caplog.records)

    outcome = CycleOutcome(None, None, [], verdicts, spot_check_failures=failures)
    assert outcome.spot_checks_mostly_failed
    healthy = CycleOutcome(None, None, [], verdicts, spot_check_failures=Counter({ERROR: 1}))
    assert not healthy.spot_checks_mostly_failed
