"""Validator entry point: consensus cycles on epoch boundaries, scores, weights.

    python -m neurons.validator --wallet.name validator --wallet.hotkey default
    python -m neurons.validator --help

Each epoch (``--cycle.seconds``, aligned to multiples of it on the wall clock
so every validator works on the same epoch) it takes the epoch's block, builds
the plan, dispatches assignments, collects manifests until
``--collect.fraction`` of the epoch has passed, settles the groups'
disagreements with tie-break lookups by fresh miners (until half of the rest
of the epoch has passed), runs consensus and scoring, saves the state and sets
weights through the chain adapter.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

import aiohttp

from common.chain import Chain, ChainUnavailable, open_chain
from common.metagraph import MetagraphSync
from common.signed_http import SignedClient
from config.consensus import AssignmentConfig, ConsensusConfig, ScoringConfig
from config.settings import Settings, SettingsError
from consensus.assignment import ZipcodeAssignmentManager
from consensus.engine import ConsensusEngine
from consensus.scoring import ScoringState, apply_cycle, compute_weights
from neurons.miner import build_source, load_wallet
from neurons.runner import run_neuron
from scraping.synthetic import SyntheticWorld
from vali_utils.blocks import LocalBlockSource
from vali_utils.cycle import ConsensusCycle, CycleOutcome
from vali_utils.spot_check import SourceVerifier, SyntheticVerifier
from vali_utils.state import load_state, save_state

logger = logging.getLogger("neurons.validator")

WEIGHT_RETRIES = 3


def epoch_window(now: float, cycle_seconds: float, collect_fraction: float) -> tuple[int, float]:
    """(epoch number, wall time its collect phase ends) for the epoch containing ``now``."""
    epoch = int(now // cycle_seconds)
    return epoch, epoch * cycle_seconds + collect_fraction * cycle_seconds


def tiebreak_deadline(epoch: int, cycle_seconds: float, collect_fraction: float) -> float:
    """Wall time the tie-break lookups end: half of what the epoch has left after collect."""
    return (epoch + collect_fraction + (1.0 - collect_fraction) / 2) * cycle_seconds


def next_epoch_to_run(
    now: float, cycle_seconds: float, collect_fraction: float
) -> tuple[int, float]:
    """Join the current epoch if at least half its collect window is left, else the next."""
    epoch, deadline = epoch_window(now, cycle_seconds, collect_fraction)
    window = collect_fraction * cycle_seconds
    if deadline - now >= window / 2:
        return epoch, epoch * cycle_seconds
    return epoch + 1, (epoch + 1) * cycle_seconds


async def set_weights_with_retry(chain: Chain, weights: dict[int, float]) -> bool:
    for attempt in range(1, WEIGHT_RETRIES + 1):
        try:
            await chain.set_weights(weights)
            return True
        except ChainUnavailable as exc:
            logger.warning("set_weights attempt %d/%d failed: %s", attempt, WEIGHT_RETRIES, exc)
            await asyncio.sleep(min(10.0, 0.5 * 2**attempt))
    return False


def cycle_report(
    epoch: int,
    outcome: CycleOutcome,
    state: ScoringState,
    weights: dict[int, float],
    weights_set: bool,
) -> dict:
    result = outcome.result
    confidences = result.batch_confidence()
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
                "credibility": round(score.credibility, 4) if score else None,
                "score": round(score.score, 6) if score else 0.0,
                "weight": round(weights.get(r.uid, 0.0), 6),
                "flags": sorted({f.kind.value for f in r.flags}),
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
        "batch_confidence": {str(b): round(c, 4) for b, c in sorted(confidences.items())},
        "captured_groups": result.captured_groups,
        "spot_checks": len(outcome.spot_checks),
        "tiebreak": dict(result.tiebreak)
        | {
            "lookups": len(outcome.tiebreaks),
            "answered": sum(a.property_answers is not None for a in outcome.tiebreaks),
        },
        "flags": [
            {"hotkey": f.hotkey, "kind": f.kind.value, "evidence": f.evidence} for f in result.flags
        ],
        "timings": {k: round(v, 3) for k, v in outcome.timings.items()},
        "dropped": dict(outcome.dropped),
        "weights_set": weights_set,
        "miners": miners,
    }


async def validate(settings: Settings, stop: asyncio.Event) -> None:
    wallet, keypair = load_wallet(settings)
    hotkey = keypair.ss58_address
    chain = open_chain(settings.network, settings.netuid, settings.chain_file, wallet, hotkey)
    sync = MetagraphSync(chain, settings.metagraph_refresh_s)
    graph = await sync.refresh()
    me = graph.by_hotkey(hotkey)
    if me is None or not me.validator_permit:
        logger.warning("hotkey %s has no validator permit on netuid %s", hotkey, settings.netuid)
    sync.on_change(lambda old, new: logger.info("metagraph changed: %d neurons", len(new.neurons)))

    world = SyntheticWorld(settings.synthetic_seed)
    if settings.scraper == "synthetic":
        verifier = SyntheticVerifier(world)
    else:
        source = build_source(settings, hotkey)
        if not hasattr(source, "fetch_property"):
            raise SettingsError(f"--scraper {settings.scraper} cannot fetch single properties")
        verifier = SourceVerifier(source, settings.request_timeout_s * 6)
    blocks = LocalBlockSource(settings.netuid, world, settings.zipcodes_per_cycle)
    state_path = settings.state_dir / "scoring_state.json"
    reports = settings.state_dir / "cycles"
    reports.mkdir(parents=True, exist_ok=True)
    state = load_state(state_path)
    scoring = ScoringConfig()
    refresher = asyncio.create_task(sync.run(), name="metagraph-sync")
    cycles_run = 0
    connector = aiohttp.TCPConnector(limit=settings.dispatch_concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        cycle = ConsensusCycle(
            SignedClient(keypair, session, settings.request_timeout_s),
            ConsensusEngine(ConsensusConfig()),
            ZipcodeAssignmentManager(AssignmentConfig(miners_per_group=settings.miners_per_group)),
            verifier,
            concurrency=settings.dispatch_concurrency,
            poll_s=max(0.5, min(10.0, settings.cycle_seconds / 20)),
            request_timeout_s=settings.request_timeout_s,
        )
        try:
            while not stop.is_set():
                epoch, start = next_epoch_to_run(
                    time.time(), settings.cycle_seconds, settings.collect_fraction
                )
                if await _sleep_until(start, stop):
                    break
                deadline = (
                    epoch * settings.cycle_seconds
                    + settings.collect_fraction * settings.cycle_seconds
                )
                cycle_id = f"epoch-{epoch}"
                if cycle_id in state.applied_cycles:
                    logger.info("epoch %d already scored; waiting for the next", epoch)
                    await _sleep_until((epoch + 1) * settings.cycle_seconds, stop)
                    continue
                try:
                    graph = await sync.refresh()
                except ChainUnavailable as exc:
                    logger.warning("metagraph refresh failed, using the last one: %s", exc)
                    graph = sync.snapshot
                outcome = await cycle.run(
                    blocks.block(epoch),
                    graph,
                    state.credibility(),
                    deadline,
                    tiebreak_deadline(epoch, settings.cycle_seconds, settings.collect_fraction),
                )
                state = apply_cycle(state, cycle_id, outcome.result, scoring)
                save_state(state_path, state)
                uids = {n.hotkey: n.uid for n in graph.neurons}
                weights = compute_weights(state, uids)
                weights_set = bool(weights) and await set_weights_with_retry(chain, weights)
                report = cycle_report(epoch, outcome, state, weights, weights_set)
                (reports / f"{cycle_id}.json").write_text(json.dumps(report, indent=1))
                flagged = len({f.hotkey for f in outcome.result.flags})
                logger.info(
                    "epoch %d done: %d submissions, %d flagged miners, weights %s (%d uids)",
                    epoch,
                    report["completed"],
                    flagged,
                    "set" if weights_set else "NOT set",
                    len(weights),
                )
                cycles_run += 1
                if settings.max_cycles and cycles_run >= settings.max_cycles:
                    logger.info("ran %d cycles; stopping as asked", cycles_run)
                    break
        finally:
            refresher.cancel()
            await chain.close()


async def _sleep_until(wall: float, stop: asyncio.Event) -> bool:
    """Sleep until wall-clock ``wall``; True when asked to stop meanwhile."""
    delay = wall - time.time()
    if delay <= 0:
        return stop.is_set()
    try:
        await asyncio.wait_for(stop.wait(), delay)
        return True
    except TimeoutError:
        return False


def main(argv: list[str] | None = None) -> int:
    return run_neuron("validator", validate, argv, __doc__.split("\n\n")[0])


if __name__ == "__main__":
    raise SystemExit(main())
