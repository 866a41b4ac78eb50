"""The S3 evaluation's passes between consensus cycles, and how the validator reads S3.

One pass is one round of the S3 evaluation (``vali_utils/s3_evaluation.py``)
folded into the scoring state; the in-cycle manifest audit is
``vali_utils/s3_audit.py``.

``open_s3`` picks the reader: presigned URLs from the Data API (validators
need no bucket credentials), or the bucket itself with ``S3_BUCKET`` and
credentials. ``S3EvaluationPass`` is the evaluator's ``s3_pass``: each call
evaluates a seeded sample of every miner's files of the last consensus epoch
(its assignments, its nonce and its consensus) and folds the results into
the scoring state as one round, with its own weight (``S3EvalConfig``).

An outage is never evidence. The epoch's consensus cycle already knows
whether S3 or the Data API failed: its manifest checks say "unavailable".
When they said so for at least ``S3EvalConfig.outage_share`` of the miners,
the epoch's uploads and reads were disrupted and no round of that epoch
gives evidence about anyone; a miner the cycle alone could not read gets no
evidence from the epoch's rounds either. An outage that ended before the
cycle read anything is seen by the ``StorageWatch``, which probes the Data
API and S3 all through the upload window: in an epoch whose window saw
one, a file missing is no evidence (coverage is not judged), while what the
files that landed say still is. Within a round, reads that fail for
infrastructure reasons give no reward (``vali_utils/s3_evaluation.py``).

    s3 = open_s3(settings, api, session)          # None: S3 checks off
    evaluator = EnhancedMinerEvaluator(..., s3_pass=S3EvaluationPass(s3, verifier))
    s3_pass.remember(outcome)                       # after each consensus cycle
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp

from config.settings import Settings
from config.storage import S3EvalConfig
from consensus.s3_audit import ManifestVerdict, VerdictStatus
from consensus.s3_evaluation import (
    S3Evaluation,
    coverage_excused,
    evaluation_seed,
    is_outage,
    no_evidence,
)
from consensus.scoring import ScoringState, apply_s3_evaluation
from vali_utils.assignments import SOURCE, S3Access
from vali_utils.cycle import CycleOutcome
from vali_utils.data_api_client import DataAPIRefused, DataAPIUnavailable, ValidatorDataAPI
from vali_utils.metrics import ValidatorMetrics
from vali_utils.s3_evaluation import evaluate_miners
from vali_utils.s3_reader import DirectS3Reader, PresignedReader, ReadUrlLister, ReadUrlPage
from vali_utils.spot_check import Verifier
from vali_utils.storage_watch import StorageWatch

logger = logging.getLogger(__name__)

READ_URLS_HIDDEN = "read_urls_hidden"  # data_api/routes.py: an epoch's files before its deadline


def presigned_lister(api: ValidatorDataAPI) -> ReadUrlLister:
    """The Data API's read URLs as the ``PresignedReader``'s lister.

    Every refusal and outage becomes ``ValueError``, which the reader turns
    into "S3 unavailable": no evidence, nobody blamed.
    """

    async def read_urls(hotkey: str, epoch: int, max_keys: int, token: str | None) -> ReadUrlPage:
        try:
            return await api.read_url_page(hotkey, epoch, max_keys, token)
        except DataAPIRefused as exc:
            if exc.code == READ_URLS_HIDDEN:
                # Asked before the epoch's deadline: "not yet", not an outage. The
                # cycle and the passes read only closed epochs, so this is a clock
                # out of step with the Data API's.
                logger.warning(
                    "read URLs of epoch %d refused before its deadline (is this"
                    " validator's clock ahead of the Data API's?): %s",
                    epoch,
                    exc,
                )
            raise ValueError(f"Data API: {exc}") from exc
        except DataAPIUnavailable as exc:
            raise ValueError(f"Data API: {exc}") from exc

    return read_urls


def open_s3(
    settings: Settings, api: ValidatorDataAPI | None, session: aiohttp.ClientSession
) -> S3Access | None:
    """How this validator reads miners' S3 files, or None when it cannot.

    The bucket and the caps are ``settings.s3`` (checked when settings loaded).
    """
    s3 = settings.s3
    if s3.bucket and s3.access_key_id:
        logger.info("reading miners' S3 files from bucket %s directly", s3.bucket)
        return S3Access(DirectS3Reader.from_settings(s3), s3)
    if api is not None:
        logger.info("reading miners' S3 files through presigned URLs from the Data API")
        return S3Access(PresignedReader(session, presigned_lister(api), s3), s3)
    logger.warning("no S3 checks: set DATA_API_URL, or S3_BUCKET with credentials")
    return None


def unread_in_cycle(verdicts: dict[str, ManifestVerdict]) -> set[str]:
    """Miners whose manifest files the epoch's consensus cycle could not read."""
    return {hk for hk, v in verdicts.items() if v.status is VerdictStatus.UNAVAILABLE}


class S3EvaluationPass:
    """Rounds of S3 evaluation of the last consensus epoch's uploads."""

    def __init__(
        self,
        access: S3Access,
        verifier: Verifier | None,
        config: S3EvalConfig | None = None,
        reports_dir: Path | None = None,
        metrics: ValidatorMetrics | None = None,
        watch: StorageWatch | None = None,
        upload_window: Callable[[int], tuple[float, float]] | None = None,
    ) -> None:
        self.access = access
        self.verifier = verifier
        self.config = config or S3EvalConfig()
        self.reports_dir = reports_dir
        self.metrics = metrics
        # The Data API and S3 as seen while miners uploaded, and each epoch's
        # (start, collect deadline): an outage in the window voids the epoch.
        self.watch = watch
        self.upload_window = upload_window
        self.last: CycleOutcome | None = None
        self.rounds = 0

    def remember(self, outcome: CycleOutcome) -> None:
        """The consensus cycle whose uploads the next rounds evaluate."""
        self.last = outcome
        self.rounds = 0

    async def __call__(
        self, state: ScoringState, epoch: int, deadline: float
    ) -> ScoringState | None:
        outcome = self.last
        if outcome is None or outcome.block is None:
            return None  # nothing scored yet: nothing to compare files with
        block = outcome.block
        self.rounds += 1
        assignments: dict[str, dict[str, list[str]]] = {}
        for group in outcome.plan.groups:
            for miner in group.miners:
                zipcodes = assignments.setdefault(miner.hotkey, {}).setdefault(SOURCE.value, [])
                zipcodes.extend(group.zipcodes)
        started = time.monotonic()
        unread = unread_in_cycle(outcome.s3_verdicts)
        upload_outage = self._upload_outage(block.epoch)
        if upload_outage is not None and self.rounds == 1:
            logger.warning(
                "S3 evaluation of epoch %d: %s while miners uploaded: files missing from"
                " the epoch are no evidence (coverage not judged)",
                block.epoch,
                upload_outage,
            )
        results: dict[str, S3Evaluation]
        if is_outage(len(unread), len(outcome.s3_verdicts), self.config.outage_share):
            logger.warning(
                "S3 evaluation of epoch %d, round %d: the cycle could not read %d of %d miners'"
                " files (S3 or the Data API was failing): the epoch gives no evidence",
                block.epoch,
                self.rounds,
                len(unread),
                len(outcome.s3_verdicts),
            )
            reason = (
                f"epoch_outage: the cycle could not read {len(unread)} of"
                f" {len(outcome.s3_verdicts)} miners"
            )
            results = {hk: no_evidence(hk, reason) for hk in sorted(assignments)}
        else:
            results = await evaluate_miners(
                self.access.reader,  # type: ignore[arg-type]
                sorted(assignments),
                epoch=block.epoch,
                seed=evaluation_seed(block.seed, self.rounds),
                now=time.time(),
                assignments=assignments,
                last_consensus=outcome.consensus,
                settings=self.access.settings,
                config=self.config,
                verifier=self.verifier,
                expected_nonce=block.nonce,
            )
            for hotkey in unread & results.keys():
                results[hotkey] = no_evidence(hotkey, "epoch_unavailable: the cycle could not read")
            if upload_outage is not None:
                results = {hk: coverage_excused(r, upload_outage) for hk, r in results.items()}
        judged = sum(r.reward is not None for r in results.values())
        logger.info(
            "S3 evaluation of epoch %d, round %d: %d miners, %d judged, in %.1fs",
            block.epoch,
            self.rounds,
            len(results),
            judged,
            time.monotonic() - started,
        )
        round_id = f"s3-e{block.epoch}-r{self.rounds}"
        if self.metrics is not None:
            self.metrics.s3_evaluated.inc(judged)
        if self.reports_dir is not None:
            self.reports_dir.mkdir(parents=True, exist_ok=True)
            summary = {
                "round": round_id,
                "epoch": block.epoch,
                "miners": len(results),
                "judged": judged,
                "rewards": {
                    hk: None if r.reward is None else round(r.reward, 4)
                    for hk, r in sorted(results.items())
                },
                "reasons": {hk: list(r.reasons) for hk, r in sorted(results.items()) if r.reasons},
            }
            (self.reports_dir / f"{round_id}.json").write_text(json.dumps(summary, indent=1))
        return apply_s3_evaluation(state, round_id, results, self.config)

    def _upload_outage(self, epoch: int) -> str | None:
        if self.watch is None or self.upload_window is None:
            return None
        return self.watch.outage(*self.upload_window(epoch))
