"""S3 evaluation spot checks: a verifier bug is counted and told, a source outage is quiet.

Incident guarded against: every exception of the S3 evaluation's spot-check
verifier became "no evidence" with nothing counting it, so a bug switched the
checks off for every miner while the rounds kept scoring. Against a real S3
protocol server, through the checker the validator hands the S3 pass.
"""

from __future__ import annotations

import logging
import time

import pytest

from config.storage import S3EvalConfig
from consensus.s3_evaluation import evaluation_seed
from consensus.types import Verdict
from scraping.source import SourceUnavailable
from tests.integration.s3_scenarios import evaluate_round, put_honest
from tests.integration.s3_server import S3Server
from tests.unit.s3_builders import NONCE, hotkey, zipcodes
from vali_utils.metrics import ValidatorMetrics
from vali_utils.s3_reader import DirectS3Reader
from vali_utils.spot_check import ERROR, UNAVAILABLE, SpotChecker

pytestmark = pytest.mark.integration

EPOCH = 7
ZIPS = zipcodes(4)
SEED = evaluation_seed(b"block-seed-of-epoch-8", 0)
CFG = S3EvalConfig(spot_checks_per_miner=2)
METRIC = "validator_spot_check_failures_total"


class Raising:
    def __init__(self, failure: Exception) -> None:
        self.failure = failure

    async def verify(self, request) -> Verdict:
        raise self.failure


async def evaluate_failing_checks(s3: S3Server, failure: Exception, caplog) -> tuple:
    """A round of two miners' honest uploads whose every spot check raises ``failure``,
    through the checker the validator hands the S3 pass; logs go to ``caplog``.
    Returns the validator's metrics and the round's results."""
    bucket = s3.create_bucket()
    settings = s3.settings(bucket, eval_files_per_miner=4)
    miners = [hotkey(70), hotkey(71)]
    put_honest(s3.client(), bucket, miners, ZIPS, epoch=EPOCH, scraped_at=time.time() - 600)
    metrics = ValidatorMetrics()
    checker = SpotChecker(Raising(failure), metrics.spot_check_failures)
    reader = DirectS3Reader.from_settings(settings)
    try:
        with caplog.at_level(logging.INFO, logger="vali_utils"):
            results = await evaluate_round(
                reader, miners, epoch=EPOCH, seed=SEED, settings=settings, assigned=ZIPS,
                config=CFG, verifier=checker, expected_nonce=NONCE,
            )  # fmt: skip
    finally:
        await reader.close()
    return metrics, results


def counted(metrics: ValidatorMetrics, reason: str) -> float:
    value = metrics.registry.get_sample_value(METRIC, {"reason": reason, "phase": "s3_eval"})
    return value or 0.0


@pytest.mark.asyncio
async def test_a_verifier_bug_is_counted_logged_and_the_round_says_most_failed(s3, caplog):
    metrics, results = await evaluate_failing_checks(s3, AttributeError("no 'digest'"), caplog)
    assert counted(metrics, ERROR) == 4.0  # 2 miners x 2 checks
    tracebacks = [r for r in caplog.records if r.exc_info and r.exc_info[0] is AttributeError]
    assert len(tracebacks) == 4
    assert any("4 of 4 spot checks gave no verdict" in r.getMessage() for r in caplog.records)
    for evaluation in results.values():
        assert "spot_check" not in evaluation.components  # judged nobody


@pytest.mark.asyncio
async def test_a_source_outage_is_no_evidence_without_tracebacks(s3, caplog):
    metrics, results = await evaluate_failing_checks(s3, SourceUnavailable("HTTP 503"), caplog)
    assert counted(metrics, UNAVAILABLE) == 4.0 and counted(metrics, ERROR) == 0.0
    assert not [r for r in caplog.records if r.exc_info]
    for evaluation in results.values():
        assert "spot_check" not in evaluation.components
