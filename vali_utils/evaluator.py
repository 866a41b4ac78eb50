"""EnhancedMinerEvaluator: the validator's loop.

A consensus cycle at each epoch boundary (``common/epochs.py``: epochs are
multiples of ``cycle_seconds`` on the wall clock, so every validator starts the
same epoch), S3 evaluation passes in between, and S3 evaluation alone (the
fallback) for an epoch whose block cannot be had (Data API unreachable) or
whose metagraph has too few eligible miners. Both are logged and visible in
the metrics (``validator_mode``).

Everything a cycle learns is written to the ``ValidatorStore`` as it goes; on
start the evaluator first finishes the cycle a previous run left unfinished
(see ``vali_utils/store.py``), then follows the schedule.

    evaluator = EnhancedMinerEvaluator(chain, sync, cycle, blocks, store, EpochClock(...), ...)
    await evaluator.run(stop)

Time comes from the injected ``clock`` (unix seconds) and ``sleep`` (every
wait: between S3 passes, an S3 pass's time limit, the weight-setting
backoff), so tests drive the schedule in virtual time.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from typing import Protocol, TypeVar

from common.backoff import backoff_s
from common.chain import Chain, ChainUnavailable
from common.epochs import EpochClock
from common.memory import release_memory
from common.metagraph import MetagraphSync
from common.watchdog import Watchdog
from config.consensus import ScoringConfig
from config.storage import S3EvalConfig
from consensus.scoring import ScoringState, apply_cycle, compute_weights
from vali_utils.blocks import EpochBlock
from vali_utils.cycle import ConsensusCycle, CycleOutcome, eligible_miners
from vali_utils.metrics import ValidatorMetrics
from vali_utils.store import REPORT_EPOCHS, ValidatorStore

logger = logging.getLogger(__name__)

WEIGHT_RETRIES = 3

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]  # asyncio.sleep, or a test's virtual sleep


class BlocksUnavailable(RuntimeError):
    """The epoch's block cannot be had now (Data API unreachable or refusing)."""


class BlockProvider(Protocol):
    async def block(self, epoch: int) -> EpochBlock: ...


# An S3 evaluation pass: (scoring state, epoch, wall-clock deadline) -> the new
# state, or None when it had nothing to evaluate.
S3Pass = Callable[[ScoringState, int, float], Awaitable[ScoringState | None]]


def write_report(folder: Path, epoch: int, report: dict) -> None:
    """``folder/epoch-<epoch>.json``; reports of epochs before the store's report window go."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"epoch-{epoch}.json").write_text(json.dumps(report, indent=1))
    for old in folder.glob("epoch-*.json"):
        number = old.stem.removeprefix("epoch-")
        if number.isdigit() and int(number) < epoch - REPORT_EPOCHS:
            old.unlink(missing_ok=True)


@dataclass(eq=False)
class EnhancedMinerEvaluator:
    """The validator's loop: a consensus cycle an epoch, S3 evaluation between, weights."""

    chain: Chain
    sync: MetagraphSync
    cycle: ConsensusCycle
    blocks: BlockProvider
    store: ValidatorStore
    schedule: EpochClock
    _: KW_ONLY
    reports_dir: Path | None = None
    metrics: ValidatorMetrics | None = None  # None: a registry of its own
    s3_pass: S3Pass | None = None
    s3_pass_interval_s: float = 60.0
    min_eligible_miners: int = 2
    max_cycles: int = 0
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    # Weights carry the S3 factor (1 for a miner never evaluated from S3):
    # the same S3EvalConfig as the S3 pass's (settings.s3_eval).
    s3_config: S3EvalConfig = field(default_factory=S3EvalConfig)
    watchdog: Watchdog | None = None
    report_status: Callable[[int, dict], Awaitable[None]] | None = None
    dataset: Callable[[CycleOutcome], Awaitable[dict]] | None = None  # never raises
    clock: Callable[[], float] = time.time
    sleep: Sleep = asyncio.sleep
    # What a run keeps between cycles.
    state: ScoringState = field(default_factory=ScoringState, init=False)
    cycles_run: int = field(default=0, init=False)
    handled_epoch: int | None = field(default=None, init=False)  # last with a cycle or fallback
    _stop: asyncio.Event = field(default_factory=asyncio.Event, init=False)

    def __post_init__(self) -> None:
        if self.metrics is None:
            self.metrics = ValidatorMetrics()

    async def run(self, stop: asyncio.Event) -> None:
        self._stop = stop
        self.state = await self.store.scoring_state()
        await self._finish_unfinished()
        while not stop.is_set() and not self._enough_cycles():
            epoch, start = self.schedule.next_cycle(self.clock())
            if self.handled_epoch is not None and epoch <= self.handled_epoch:
                epoch = self.handled_epoch + 1
                start = self.schedule.start(epoch)
            if await self._between_cycles(epoch, start, stop):
                break
            if f"epoch-{epoch}" in self.state.applied_cycles:
                logger.info("epoch %d already scored; waiting for the next", epoch)
                if await self._between_cycles(epoch + 1, self.schedule.start(epoch + 1), stop):
                    break
                continue
            await self.run_epoch(epoch)

    def _enough_cycles(self) -> bool:
        return bool(self.max_cycles) and self.cycles_run >= self.max_cycles

    async def _finish_unfinished(self) -> None:
        unfinished = await self.store.unfinished_cycle()
        if unfinished is None:
            return
        epoch, phase = unfinished
        if epoch > self.schedule.epoch_at(self.clock()):
            return  # planned for an epoch that has not started (a clock jump): redo normally
        logger.info("resuming epoch %d, left in phase %r by the previous run", epoch, phase)
        if phase == "scored":
            graph = await self._graph()
            await self._set_weights(epoch, {n.hotkey: n.uid for n in graph.neurons})
            self.cycles_run += 1
            return
        await self.run_epoch(epoch)

    async def _between_cycles(self, next_epoch: int, start: float, stop: asyncio.Event) -> bool:
        """S3 evaluation passes (of the epoch before) until ``start``; True when asked to stop."""
        return await self._s3_until(next_epoch - 1, start, stop)

    async def _s3_until(self, epoch: int, until: float, stop: asyncio.Event) -> bool:
        """S3 evaluation passes of ``epoch`` until ``until``; True when asked to stop meanwhile."""
        self.metrics.phase("idle")
        start = until
        while self.clock() < start and not stop.is_set():
            if self.s3_pass is not None:
                await self._s3_pass(epoch, start)  # a round may use the time until the cycle
                if await self._wait(stop, min(self.s3_pass_interval_s, start - self.clock())):
                    return True
            elif await self._wait(stop, start - self.clock()):
                return True
        return stop.is_set()

    async def _wait(self, stop: asyncio.Event, seconds: float) -> bool:
        """Sleep up to ``seconds``; True when asked to stop meanwhile."""
        if seconds <= 0:
            return stop.is_set()
        try:
            await within(stop.wait(), seconds, self.sleep)
            return True
        except TimeoutError:
            return False

    async def _s3_pass(self, epoch: int, deadline: float) -> None:
        if self.s3_pass is None:
            return
        self.metrics.phase("s3_eval")
        logger.debug("S3 evaluation pass of epoch %d until %.0f", epoch, deadline)
        try:
            state = await within(
                self.s3_pass(self.state, epoch, deadline),
                max(0.1, deadline - self.clock()),
                self.sleep,
            )
        except TimeoutError:
            logger.warning("S3 evaluation pass of epoch %d ran out of time", epoch)
            state = None
        finally:
            self.metrics.phase("idle")
        release_memory()
        if state is not None:
            self.state = state
            await self.store.save_scoring(state)
            self.metrics.last_cycle.set(self.clock())
            if self.watchdog:
                self.watchdog.beat()

    async def run_epoch(self, epoch: int) -> CycleOutcome | None:
        """One epoch: a consensus cycle, or the fallback when it cannot run."""
        self.metrics.epoch.set(epoch)
        self.handled_epoch = max(epoch, self.handled_epoch or epoch)
        graph = await self._graph()
        miners, _ = eligible_miners(graph)
        resumed = await self.store.phase(epoch) is not None
        if len(miners) < self.min_eligible_miners and not resumed:
            await self._fallback(
                epoch, f"{len(miners)} eligible miners, fewer than {self.min_eligible_miners}"
            )
            return None
        try:
            block = await self.blocks.block(epoch)
        except BlocksUnavailable as exc:
            await self._fallback(epoch, f"no block: {exc}")
            return None
        self.metrics.set_mode("consensus")
        self.metrics.phase("collect")
        logger.info("epoch %d: consensus cycle on block %s", epoch, block.block_id)
        outcome = await self.cycle.run(
            block,
            graph,
            self.state.credibility(),
            self.schedule.deadline(epoch),
            self.schedule.tiebreak_deadline(epoch),
        )
        self.metrics.phase("consensus")
        cycle_id = f"epoch-{epoch}"
        self.state = apply_cycle(self.state, cycle_id, outcome.result, self.scoring)
        uids = {n.hotkey: n.uid for n in graph.neurons}
        report = cycle_report(
            epoch, outcome, self.state, compute_weights(self.state, uids, self.s3_config)
        )
        await self.store.commit_cycle(epoch, self.state, report)
        self._observe(outcome)
        remember = getattr(self.s3_pass, "remember", None)
        if remember is not None:
            remember(outcome)  # the next S3 evaluation rounds check this epoch's uploads
        weights_set = await self._set_weights(epoch, uids)
        report["weights_set"] = weights_set
        if self.dataset is not None:  # after the weights: an export never delays them
            report["dataset"] = await self.dataset(outcome)
        if self.reports_dir is not None:
            write_report(self.reports_dir, epoch, report)
        if self.report_status is not None:
            await self.report_status(epoch, report)
        logger.info(
            "epoch %d done: %d submissions, %d flagged miners, weights %s (%d uids)",
            epoch,
            report["completed"],
            len({f.hotkey for f in outcome.result.flags}),
            "set" if weights_set else "NOT set",
            len(report["miners"]),
        )
        self.metrics.last_cycle.set(self.clock())
        if self.watchdog:
            self.watchdog.beat()
        self.cycles_run += 1
        release_memory()
        self.metrics.phase("idle")
        return outcome

    async def _fallback(self, epoch: int, reason: str) -> None:
        """This epoch gets S3 evaluation only, until its collect window would have ended."""
        logger.warning("epoch %d: no consensus cycle (%s); S3 evaluation only", epoch, reason)
        self.metrics.set_mode("fallback")
        await self._s3_until(epoch, self.schedule.deadline(epoch), self._stop)

    async def _graph(self):
        try:
            return await self.sync.refresh()
        except ChainUnavailable as exc:
            logger.warning("metagraph refresh failed, using the last one: %s", exc)
            return self.sync.snapshot

    async def _set_weights(self, epoch: int, uids: dict[str, int]) -> bool:
        self.metrics.phase("weights")
        weights = compute_weights(self.state, uids, self.s3_config)
        ok = bool(weights) and await set_weights_with_retry(self.chain, weights, self.sleep)
        await self.store.record_weights(epoch, weights, ok)
        self.metrics.weights_set.labels("ok" if ok else "failed").inc()
        if ok:
            self.metrics.last_weights.set(self.clock())
            if self.watchdog:
                self.watchdog.beat()
        return ok

    def _observe(self, outcome: CycleOutcome) -> None:
        result = outcome.result
        self.metrics.assignments.set(len(outcome.assignments))
        self.metrics.responders.set(outcome.responders)
        confidences = list(result.batch_confidence().values())
        self.metrics.confidence.set(sum(confidences) / len(confidences) if confidences else 0.0)
        for flag in result.flags:
            self.metrics.flags.labels(flag.kind.value).inc()
        self.metrics.observe_checks(outcome.spot_checks, outcome.timings)
        self.metrics.disputes.inc(result.tiebreak.get("disputes", 0))
        self.metrics.resolved.inc(result.tiebreak.get("resolved", 0))


async def set_weights_with_retry(
    chain: Chain, weights: dict[int, float], sleep: Sleep = asyncio.sleep
) -> bool:
    for attempt in range(1, WEIGHT_RETRIES + 1):
        try:
            await chain.set_weights(weights)
            return True
        except ChainUnavailable as exc:
            logger.warning("set_weights attempt %d/%d failed: %s", attempt, WEIGHT_RETRIES, exc)
            await sleep(backoff_s(attempt, base_s=0.5, cap_s=10.0, jitter=1.0))
    return False


def cycle_report(
    epoch: int, outcome: CycleOutcome, state: ScoringState, weights: dict[int, float]
) -> dict:
    """The cycle in JSON: plan, responses, confidence, tie-breaks, flags and every miner."""
    result = outcome.result
    miners = []
    for hotkey, r in sorted(result.miners.items(), key=lambda kv: kv[1].uid):
        score = state.miners.get(hotkey)
        miners.append(
            {
                "uid": r.uid,
                "hotkey": hotkey,
                "assigned_zipcodes": r.assigned_zipcodes,
                "answered_zipcodes": r.answered_zipcodes,
                "quality": None if r.quality is None else round(r.quality, 4),
                "precision": None if r.precision is None else round(r.precision, 4),
                "recall": None if r.recall is None else round(r.recall, 4),
                "credibility": round(score.credibility, 4) if score else None,
                "score": round(score.score, 6) if score else 0.0,
                "weight": round(weights.get(r.uid, 0.0), 6),
                "flags": sorted({f.kind.value for f in r.flags}),
                "zipcodes": dict(sorted(r.zipcodes.items())),  # the status page's outcomes
            }
        )
    return {
        "epoch": epoch,
        "plan_hash": outcome.plan.plan_hash,
        "groups": len(outcome.plan.groups),
        "relaxations": sorted({r.rule for r in outcome.plan.relaxations}),
        "assignments": len(outcome.assignments),
        "acknowledged": sum(a.accepted for a in outcome.assignments),
        "completed": sum(a.completed_after_s is not None for a in outcome.assignments),
        "batch_confidence": {
            str(b): round(c, 4) for b, c in sorted(result.batch_confidence().items())
        },
        "captured_groups": result.captured_groups,
        "spot_checks": len(outcome.spot_checks),
        # Records the dataset publishes (confident zipcodes, agreed values, no honeypots).
        "confirmed_records": len(outcome.confirmed.records) if outcome.confirmed else None,
        "spot_check_failures": dict(outcome.spot_check_failures),
        "spot_checks_mostly_failed": outcome.spot_checks_mostly_failed,
        "tiebreak": dict(result.tiebreak)
        | {
            "lookups": len(outcome.tiebreaks),
            "answered": sum(a.property_answers is not None for a in outcome.tiebreaks),
        },
        "flags": [
            {"hotkey": f.hotkey, "kind": f.kind.value, "evidence": f.evidence} for f in result.flags
        ],
        # Manifests checked against the miners' S3 objects: miners by verdict.
        "s3_verification": dict(Counter(v.status.value for v in outcome.s3_verdicts.values())),
        "timings": {k: round(v, 3) for k, v in outcome.timings.items()},
        "dropped": dict(outcome.dropped),
        "weights_set": False,
        "miners": miners,
    }


async def within(work: Awaitable[T], seconds: float, sleep: Sleep) -> T:
    """``work``'s result if it finishes within ``seconds`` of ``sleep``'s time.

    ``asyncio.wait_for`` on the injected sleep, so tests drive it in virtual
    time. Raises ``TimeoutError`` when the time runs out first (``work`` is
    then cancelled and awaited), and whatever ``work`` raises.
    """
    task = asyncio.ensure_future(work)
    timer = asyncio.ensure_future(sleep(seconds))
    timed_out = False
    try:
        await asyncio.wait((task, timer), return_when=asyncio.FIRST_COMPLETED)
    finally:
        timer.cancel()
        if not task.done():
            timed_out = True
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise  # this task was cancelled too: never turned into a timeout
    if timed_out:
        raise TimeoutError
    return task.result()
