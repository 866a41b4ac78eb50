"""A validator's state store filled by the real cycle code, without a network.

For the status page's tests and benchmark: each cycle is planned by
``ZipcodeAssignmentManager``, judged by ``ConsensusEngine`` (spot checks
answered by the synthetic truth), scored by ``apply_cycle`` /
``compute_weights``, reported by ``cycle_report`` and committed with
``ValidatorStore``, exactly as ``EnhancedMinerEvaluator`` does; answers'
progress rows and S3 round summaries are written where the validator writes
them. Fabricators invent listings (flagged ``fabrication`` / ``spot_check``);
``hostile_error`` is put in one miner's answer error, as a miner can.

    history = asyncio.run(fill_store(state_dir, miners=256, cycles=12, fabricators=(3,)))
    history.hotkeys[3], history.epochs
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from config.consensus import AssignmentConfig
from consensus.answers import ZipcodeAnswer
from consensus.assignment import MinerInfo, ZipcodeAssignmentManager
from consensus.engine import ConsensusEngine
from consensus.scoring import ScoringState, apply_cycle, compute_weights
from consensus.types import GroupSubmission, Honeypot, HoneypotKind, Verdict
from sim.fixtures import hotkey
from vali_utils.cycle import CycleOutcome
from vali_utils.evaluator import cycle_report
from vali_utils.store import Progress, ValidatorStore

LISTINGS = 6  # true listings per zipcode
INVENTED = 4  # listings a fabricator adds per zipcode
FIRST_EPOCH = 1000


@dataclass(frozen=True)
class History:
    hotkeys: list[str]
    coldkeys: list[str]
    epochs: list[int]
    fabricators: tuple[int, ...]


def _fields(zipcode: str, zpid: int, price: int) -> tuple:
    return (str(zpid), f"{zpid} MAIN ST", zipcode, price, "FOR_SALE", "SINGLE_FAMILY",
            3, 2.0, 1500, 5000, 1990, None)  # fmt: skip


def _answer(records: list[tuple]) -> ZipcodeAnswer:
    pairs = [(int(f[0]), hashlib.blake2b(repr(f).encode(), digest_size=16).hexdigest())
             for f in records]  # fmt: skip
    return ZipcodeAnswer.from_pairs(pairs, records)


def _truth(zipcode: str) -> list[tuple]:
    return [_fields(zipcode, int(zipcode) * 100 + i, 200_000 + 1000 * i) for i in range(LISTINGS)]


def _invented(zipcode: str) -> list[tuple]:
    return [_fields(zipcode, int(zipcode) * 100 + 90 + i, 123_000) for i in range(INVENTED)]


def _verdict(fabricated: set[int], zpid: int) -> Verdict:
    return Verdict.NOT_FOUND if zpid in fabricated else Verdict.MATCH


async def fill_store(
    state_dir: Path,
    *,
    miners: int = 24,
    cycles: int = 3,
    zipcodes_per_batch: int = 4,
    zipcodes: int = 0,
    fabricators: Iterable[int] = (),
    offline: Iterable[int] = (),
    hostile_error: str | None = None,
    hostile_uid: int = 0,
    honeypot: bool = False,
) -> History:
    """Run ``cycles`` cycles over ``miners`` miners into ``state_dir/validator.sqlite``.

    ``zipcodes`` per cycle (0: one batch per two groups); ``offline`` miners
    never answer; ``hostile_error`` is ``hostile_uid``'s answer error text;
    with ``honeypot`` the block's last zipcode has no listing (a no-residential
    honeypot: fabricators' inventions there are flagged).
    """
    fabricators, offline = tuple(fabricators), set(offline)
    hotkeys = [hotkey(uid) for uid in range(miners)]
    coldkeys = [hotkey(10_000 + uid) for uid in range(miners)]
    infos = [MinerInfo(uid, hotkeys[uid], coldkeys[uid]) for uid in range(miners)]
    uids = {m.hotkey: m.uid for m in infos}
    config = AssignmentConfig(
        zipcodes_per_batch=zipcodes_per_batch,
        miners_per_group=min(10, max(2, miners // 4)),
        min_different_coldkeys=2,
    )
    # One batch per two groups of miners unless told how many zipcodes (1000: mainnet's).
    count = zipcodes or zipcodes_per_batch * max(1, miners // (2 * config.miners_per_group))
    block = [f"{10001 + i:05d}" for i in range(count)]
    honeypots = {block[-1]: Honeypot(block[-1], HoneypotKind.NO_RESIDENTIAL)} if honeypot else {}
    engine = ConsensusEngine()
    state = ScoringState()
    store = await ValidatorStore.open(state_dir / "validator.sqlite")
    epochs = []
    try:
        for n in range(cycles):
            epoch = FIRST_EPOCH + n
            seed = f"history-{epoch}".encode()
            plan = ZipcodeAssignmentManager(config).create_plan(block, infos, seed)
            await store.begin_cycle(
                epoch, infos, {m.hotkey: f"http://127.0.0.1:{9000 + m.uid}" for m in infos}
            )
            await store.set_phase(epoch, "dispatched", plan.plan_hash)
            submissions, invented, progress = [], set(), []
            for group in plan.groups:
                for miner in group.miners:
                    if miner.uid in offline:
                        continue
                    answers = {}
                    for z in group.zipcodes:
                        records = [] if z in honeypots else _truth(z)
                        if miner.uid in fabricators:
                            records += _invented(z)
                            invented.update(int(f[0]) for f in _invented(z))
                        answers[z] = _answer(records)
                    submissions.append(
                        GroupSubmission(miner, group.batch_id, group.overlap_group, answers, 900.0)
                    )
            for miner in infos:
                error = hostile_error if hostile_error and miner.uid == hostile_uid else None
                status = "failed" if miner.uid in offline else "completed"
                progress.append(
                    (f"{epoch}-{miner.uid}", miner.hotkey,
                     Progress(True, status, 1.0, 900.0, None, error))
                )  # fmt: skip
            await store.save_progress(epoch, "zipcodes", progress)
            draft = engine.evaluate(plan, submissions, state.credibility())
            checks = [
                (r, _verdict(invented, r.zpid)) for r in engine.spot_check_requests(draft, seed)
            ]
            result = engine.finalize(draft, checks, honeypots)
            state = apply_cycle(state, f"epoch-{epoch}", result)
            weights = compute_weights(state, uids)
            outcome = CycleOutcome(plan, result, [], checks, responders=len(submissions))
            report = cycle_report(epoch, outcome, state, weights)
            await store.commit_cycle(epoch, state, report)
            await store.record_weights(epoch, weights, ok=True)
            _s3_round(state_dir, epoch, hotkeys, fabricators)
            epochs.append(epoch)
    finally:
        await store.close()
    return History(hotkeys, coldkeys, epochs, fabricators)


def _s3_round(state_dir: Path, epoch: int, hotkeys: list[str], fabricators: tuple[int, ...]):
    """One S3 evaluation round summary per epoch, shaped as ``S3EvaluationPass`` writes it."""
    folder = state_dir / "s3"
    folder.mkdir(parents=True, exist_ok=True)
    rewards = {hk: (0.0 if uid in fabricators else 0.95) for uid, hk in enumerate(hotkeys)}
    reasons = {
        hotkeys[uid]: ["spot_check: 4 of 4 sampled records not found"] for uid in fabricators
    }
    summary = {
        "round": f"s3-e{epoch}-r1",
        "epoch": epoch,
        "miners": len(hotkeys),
        "judged": len(hotkeys),
        "rewards": rewards,
        "reasons": reasons,
    }
    (folder / f"s3-e{epoch}-r1.json").write_text(json.dumps(summary))
