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

from common.s3_files import encode_zipcode_file
from common.s3_layout import build_key
from config.storage import S3EvalConfig
from consensus.s3_evaluation import evaluation_seed
from consensus.types import Verdict
from scraping.source import SourceUnavailable
from tests.integration.s3_server import S3Server
from tests.unit.s3_builders import NONCE, SOURCE, hotkey, records, zipcodes
from vali_utils.metrics import ValidatorMetrics
from vali_utils.s3_evaluation import evaluate_miners
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


@pytest.fixture(scope="module")
def s3():
    server = S3Server.start()
    yield server
    server.stop()


async def evaluate(s3: S3Server, verifier) -> dict:
    bucket = s3.create_bucket()
    settings = s3.settings(bucket, eval_files_per_miner=4)
    miners = [hotkey(70), hotkey(71)]
    for miner in miners:
        for z in ZIPS:
            file = encode_zipcode_file(
                z, records(z, scraped_at=time.time() - 600), epoch_nonce=NONCE
            )
            key = build_key("data", miner, EPOCH, SOURCE, z, file.content_hash)
            s3.client().put_object(Bucket=bucket, Key=key, Body=file.body)
    reader = DirectS3Reader.from_settings(settings)
    try:
        return await evaluate_miners(
            reader,
            miners,
            epoch=EPOCH,
            seed=SEED,
            now=time.time(),
            assignments={m: {SOURCE: ZIPS} for m in miners},
            last_consensus={},
            settings=settings,
            config=CFG,
            verifier=verifier,
            expected_nonce=NONCE,
        )
    finally:
        await reader.close()


def counted(metrics: ValidatorMetrics, reason: str) -> float:
    value = metrics.registry.get_sample_value(METRIC, {"reason": reason, "phase": "s3_eval"})
    return value or 0.0


@pytest.mark.asyncio
async def test_a_verifier_bug_is_counted_logged_and_the_round_says_most_failed(s3, caplog):
    metrics = ValidatorMetrics()
    checker = SpotChecker(Raising(AttributeError("no 'digest'")), metrics.spot_check_failures)
    with caplog.at_level(logging.INFO, logger="vali_utils"):
        results = await evaluate(s3, checker)
    assert counted(metrics, ERROR) == 4.0  # 2 miners x 2 checks
    tracebacks = [r for r in caplog.records if r.exc_info and r.exc_info[0] is AttributeError]
    assert len(tracebacks) == 4
    assert any("4 of 4 spot checks gave no verdict" in r.getMessage() for r in caplog.records)
    for evaluation in results.values():
        assert "spot_check" not in evaluation.components  # judged nobody


@pytest.mark.asyncio
async def test_a_source_outage_is_no_evidence_without_tracebacks(s3, caplog):
    metrics = ValidatorMetrics()
    checker = SpotChecker(Raising(SourceUnavailable("HTTP 503")), metrics.spot_check_failures)
    with caplog.at_level(logging.INFO, logger="vali_utils"):
        results = await evaluate(s3, checker)
    assert counted(metrics, UNAVAILABLE) == 4.0 and counted(metrics, ERROR) == 0.0
    assert not [r for r in caplog.records if r.exc_info]
    for evaluation in results.values():
        assert "spot_check" not in evaluation.components
