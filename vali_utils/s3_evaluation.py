"""The S3 evaluation, between cycles: list, sample, fetch and judge miners' uploaded files.

Not the in-cycle audit of revealed manifests (``vali_utils/s3_audit.py``):
this scores the files of the last epoch, rounds at a time, after its cycle.

For each miner: list its files of the epoch (paged, capped at
``max_keys_per_miner``), keep the keys that follow the layout, fetch a seeded
sample of ``eval_files_per_miner`` files (capped size, streaming
decompression with a limit), optionally spot-check a few of their records
through the validator's own source, and judge everything with
``consensus/s3_evaluation.evaluate_miner``. S3 calls run under one semaphore
(``eval_concurrency``); miners are evaluated a few at a time so decoded
records of at most that many miners are in memory at once.

    seed = evaluation_seed(next_block.seed, round_index)      # known to validators only
    results = await evaluate_miners(reader, hotkeys, epoch=12, seed=seed, now=time.time(),
                                    assignments=..., last_consensus=..., settings=settings)
    state = apply_s3_evaluation(state, f"s3-{12}-{round_index}", results, S3EvalConfig())

An S3 failure for a miner (listing or any sampled file) gives that miner
``reward None``: no evidence, and its scores stay as they were. A sampled
file that is not there counts only when corroborated (fetched again, and
absent from the miner's folder listed in full; ``s3_audit.fetch_corroborated``).
When at least ``S3EvalConfig.outage_share`` of the miners could not be read,
S3 or the Data API was failing: the whole round gives no evidence. A folder
padded past ``max_keys_per_miner`` is evidence against its miner (reward 0).
A spot check whose source cannot tell is no evidence; a verifier failing in
any other way is a bug, logged with its traceback and counted in the
checker's metric, and a round where most spot checks failed logs an error.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Mapping, Sequence

from common.s3_layout import InvalidKey, parse_key
from config.storage import S3EvalConfig, S3Settings
from consensus.s3_evaluation import (
    ListedFile,
    S3Evaluation,
    SampledFile,
    evaluate_miner,
    folder_padded,
    is_outage,
    no_evidence,
    select_files,
    select_spot_checks,
    without_evidence,
)
from consensus.types import SpotCheckRequest, Verdict
from vali_utils.s3_audit import fetch_decoded
from vali_utils.s3_reader import BucketReader, FolderPadded, Listing, StorageUnavailable
from vali_utils.spot_check import SpotChecker, Verifier, mostly_failed, spot_checker

logger = logging.getLogger(__name__)

SPOT_CHECK_TIMEOUT_S = 30.0  # one lookup through the validator's source
UNAVAILABLE = "s3_unavailable"  # the first reason of a miner S3 could not be read for


def listed_files(
    hotkey: str, epoch: int, listing: Listing, prefix: str
) -> tuple[list[ListedFile], int]:
    """The listing's keys that are this miner's files of this epoch, and how many were not."""
    files, foreign = [], 0
    for item in listing.objects:
        try:
            parts = parse_key(item.key, prefix)
        except InvalidKey:
            foreign += 1
            continue
        if parts.hotkey != hotkey or parts.epoch != epoch:
            foreign += 1
            continue
        files.append(ListedFile(item.key, parts, item.size, item.last_modified))
    return files, foreign


async def evaluate_miners(
    reader: BucketReader,
    miners: Sequence[str],
    *,
    epoch: int,
    seed: bytes,
    now: float,
    assignments: Mapping[str, Mapping[str, Sequence[str]]],
    last_consensus: Mapping[str, Mapping[str, Mapping[int, int | None]]],
    settings: S3Settings,
    config: S3EvalConfig | None = None,
    verifier: Verifier | None = None,
    expected_nonce: str | None = None,
    cutoff: float | None = None,
    concurrency: int | None = None,
) -> dict[str, S3Evaluation]:
    """Evaluate ``miners``' uploaded files of ``epoch``.

    Takes the reader, the hotkeys, the epoch, a seed every validator knows
    and miners did not at upload time, the evaluation time (validator's
    clock), each miner's assignments of the epoch (hotkey -> source ->
    zipcodes), the last consensus (source -> zipcode -> zpid ->
    ``hash_to_int(record_hash)`` or None; ``consensus.s3_evaluation.consensus_records``
    builds it from the engine's comparison), the settings and config, an optional
    ``verifier`` for spot checks through the validator's own source (None:
    no spot checks), the epoch nonce, a cutoff (files uploaded after it are
    not sampled) and the number of S3 calls in flight. Returns hotkey ->
    ``S3Evaluation`` (all with ``reward None`` when the round met an outage);
    never raises on what miners or S3 do.
    """
    cfg = config or S3EvalConfig()
    calls = asyncio.Semaphore(concurrency or settings.eval_concurrency)
    # Miners at a time: twice what fills `calls` with their samples, so listings of
    # the next miners overlap the fetches of the current ones; it bounds the decoded
    # records in memory to about that many miners' samples.
    per_miner = max(1, settings.eval_files_per_miner)
    at_once = asyncio.Semaphore(
        2 * max(1, (concurrency or settings.eval_concurrency) // per_miner) + 1
    )

    unread: set[str] = set()  # miners S3 or the Data API could not be read for
    checks = _SpotChecks(spot_checker(verifier)) if verifier is not None else None

    async def one(hotkey: str) -> S3Evaluation:
        async with at_once:
            try:
                return await _evaluate_one(
                    reader, hotkey, epoch, seed, now, assignments.get(hotkey, {}),
                    last_consensus, settings, cfg, checks, expected_nonce, cutoff, calls,
                )  # fmt: skip
            except StorageUnavailable as exc:
                logger.info(
                    "S3 evaluation of miner %s, epoch %d: S3 unavailable (%s): no evidence",
                    hotkey,
                    epoch,
                    exc,
                )
                unread.add(hotkey)
                return no_evidence(hotkey, f"{UNAVAILABLE}: {str(exc)[:120]}")
            except FolderPadded as exc:
                logger.warning(
                    "S3 evaluation of miner %s, epoch %d: folder padded past the listing cap"
                    " of %d keys (%s): reward 0",
                    hotkey,
                    epoch,
                    settings.max_keys_per_miner,
                    exc,
                )
                return folder_padded(hotkey, settings.max_keys_per_miner, str(exc))

    results = {
        r.hotkey: r for r in await asyncio.gather(*(one(hk) for hk in dict.fromkeys(miners)))
    }
    if checks is not None and mostly_failed(checks.failed, checks.asked):
        logger.error(
            "S3 evaluation of epoch %d: %d of %d spot checks gave no verdict (%s): the round's"
            " spot checks judged almost nobody",
            epoch,
            sum(checks.failed.values()),
            checks.asked,
            dict(checks.failed),
        )
    failed = len(unread)
    if is_outage(failed, len(results), cfg.outage_share):
        # Reads that did answer during an outage may have been degraded (a node
        # serving 404s, a listing cut short): none of the round counts.
        logger.warning(
            "S3 evaluation of epoch %d: %d of %d miners could not be read: S3 or the Data API"
            " was failing; the round gives no evidence about anyone",
            epoch,
            failed,
            len(results),
        )
        return without_evidence(results, f"s3_outage_round: {failed} of {len(results)} unread")
    return results


async def _evaluate_one(
    reader: BucketReader,
    hotkey: str,
    epoch: int,
    seed: bytes,
    now: float,
    assigned: Mapping[str, Sequence[str]],
    last_consensus: Mapping[str, Mapping[str, Mapping[int, int | None]]],
    settings: S3Settings,
    cfg: S3EvalConfig,
    checks: _SpotChecks | None,
    expected_nonce: str | None,
    cutoff: float | None,
    calls: asyncio.Semaphore,
) -> S3Evaluation:
    async with calls:
        listing = await reader.list_miner(hotkey, epoch, max_keys=settings.max_keys_per_miner)
    files, foreign = listed_files(hotkey, epoch, listing, settings.prefix)
    chosen = select_files(seed, hotkey, files, settings.eval_files_per_miner, cutoff=cutoff)

    async def fetch(listed: ListedFile) -> SampledFile:
        async with calls:
            outcome, _ = await fetch_decoded(
                reader, listed.key, settings, zipcode=listed.parts.zipcode
            )
        return SampledFile(listed, outcome)

    # Every fetch finishes before one failure decides the miner: no task is left behind.
    outcomes = await asyncio.gather(*(fetch(f) for f in chosen), return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome  # StorageUnavailable, FolderPadded: `one` judges; others are bugs
    sampled = [o for o in outcomes if isinstance(o, SampledFile)]
    verdicts: list[Verdict] = []
    if checks is not None and cfg.spot_checks_per_miner:
        requests = select_spot_checks(seed, hotkey, sampled, cfg.spot_checks_per_miner)
        verdicts = list(await asyncio.gather(*(checks.verdict(r) for r in requests)))
    evaluation = evaluate_miner(
        hotkey,
        listed=files,
        sampled=sampled,
        assigned=assigned,
        consensus=last_consensus,
        now=now,
        config=cfg,
        expected_nonce=expected_nonce,
        spot_verdicts=verdicts,
        foreign_keys=foreign,
        listing_capped=listing.truncated,
    )
    logger.info(
        "S3 evaluation of miner %s, epoch %d: reward %s, %d files listed, %d checked, %s%s",
        hotkey,
        epoch,
        "none" if evaluation.reward is None else f"{evaluation.reward:.3f}",
        evaluation.files_listed,
        evaluation.files_checked,
        {k: round(v, 3) for k, v in evaluation.components.items()},
        f", {'; '.join(evaluation.reasons)}" if evaluation.reasons else "",
    )
    return evaluation


class _SpotChecks:
    """A round's spot checks through the validator's source, and the ones that gave no verdict.

    Failures are sorted by the checker (``vali_utils/spot_check.py``): a source
    that cannot tell is no evidence, anything else is a verifier bug, logged
    with its traceback and counted in the metric.
    """

    def __init__(self, checker: SpotChecker) -> None:
        self.checker = checker
        self.asked = 0
        self.failed: Counter = Counter()

    async def verdict(self, request: SpotCheckRequest) -> Verdict:
        self.asked += 1
        verdict, failure = await self.checker.check(request, SPOT_CHECK_TIMEOUT_S, "s3_eval")
        if failure is not None:
            self.failed[failure] += 1
        return verdict
