#!/usr/bin/env python3
"""Attack simulator: the consensus core against honest and gaming miners in a synthetic world.

Drives the very functions the validator uses (assignment, consensus engine,
spot checks, honeypots, scoring) over ``scraping.synthetic.SyntheticWorld``,
with miners whose behaviour is built in or loaded from a plugin.

    python scripts/simulate.py --miners 64 --zipcodes 400 --cycles 3 --seed 7 \\
        --offline-fraction 0.1 --adversary fabricate=0.3 --json out.json

``--adversary NAME=FRACTION`` is repeatable. NAME is a built-in behaviour
(honest, offline, lazy, fabricate, inflate, copycat, cartel, sybil, stale,
pool, pool_omit, early_claim, silent, unserve, empty) or a plugin
``path/to/file.py:ClassName`` / ``package.module:ClassName``: a class with a
``name`` attribute and ``respond(self, ctx) -> dict[str, list[dict]] | None``
(zipcode -> records as dicts in the record schema; None = no answer). ``ctx``
has ``miner`` (MinerInfo), ``zipcodes`` (list[str]), ``scrape(zipcode)`` (this
miner's honest view), ``peer_responses(zipcode)`` (what it can really see
under commit, then reveal: its own coalition's answers), ``rng``
(random.Random), ``epoch`` (int), ``stale(record)``, and its coalition's
name, assignments and shared view. A plugin may also choose its commitments
(``commits``), what it reveals (``reveal``) and the cycles it serves
(``serves``): ``scraping/adversaries.py`` documents them, and
``scripts/sim_miners.py`` applies the validator's rules to them.
``--honest-noise-free`` makes every honest view identical.

The JSON report holds ``batches``, ``batch_confidence_rate`` (share of batches
whose mean zipcode confidence is above 0.7), ``responders_per_batch_mean``
(miners answering per batch, all its groups), ``responders_per_group_mean``,
``population_share_by_behavior``, ``weight_share_by_behavior``,
``flagged_by_behavior`` (share of each behaviour's miners flagged in any
cycle), ``earnings_ratio_by_behavior``, ``fast_bonus_share_by_behavior``,
``omitted_listings_confirmed_by_behavior`` (``scripts/sim_report.py``),
``honest_false_flag_rate``, ``runtime_s`` and per-cycle details.
Tie-breaks (off with ``--no-tiebreak``): ``disputes`` (disputed records
re-checked by five fresh miners), ``disputes_resolved``, ``disputes_settled``
(resolved records still disputed after spot checks, settled in the consensus)
and ``batch_confidence_rate_before_tiebreak`` (the same cycles finalized
without them).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # sim_miners, also when loaded by path

from sim_miners import (
    COPY_DELAY_S,
    HONEST_FINISH_S,
    MinerWorld,
    SimMiner,
    settle_commits,
)
from sim_report import HONEST, build_report, fast_bonus, omitted_listings
from sim_report import share as share_of

from common.records import RecordDigester
from config.consensus import AssignmentConfig, ConsensusConfig, ScoringConfig
from consensus.answers import ZipcodeAnswer, answer_from_digests, hash_to_int
from consensus.assignment import MinerInfo, ZipcodeAssignmentManager
from consensus.engine import ConsensusEngine
from consensus.scoring import ScoringState, apply_cycle
from consensus.tiebreak import TiebreakAnswer, TiebreakRequest
from consensus.types import (
    CycleResult,
    GroupSubmission,
    Honeypot,
    HoneypotKind,
    SpotCheckRequest,
    Verdict,
)
from sim.adversaries import Commit, load_behaviour, properties_from_respond
from sim.adversaries import parse_adversary as parse_adversary_spec
from sim.world import SyntheticWorld
from vali_utils.spot_check import verdict_from_truth

_DEFAULTS = AssignmentConfig()
REFERENCE_HONEYPOT_SHARE = 0.01  # of each epoch's zipcodes, on top of the empty ones


def parse_adversary(text: str) -> tuple[str, float]:
    try:
        return parse_adversary_spec(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_population(
    n: int, adversaries: list[tuple[str, float]], offline_fraction: float, seed: int
) -> list[SimMiner]:
    """Miners with behaviours: adversaries by fraction, then offline, then honest."""
    rng = random.Random(f"population:{seed}")
    slots = list(range(n))
    rng.shuffle(slots)
    kinds: dict[int, tuple[str, object]] = {}
    for spec, fraction in adversaries:
        behaviour = load_behaviour(spec)
        for _ in range(round(fraction * n)):
            if slots:
                kinds[slots.pop()] = (behaviour.name, behaviour)
    for _ in range(round(offline_fraction * n)):
        if slots:
            kinds[slots.pop()] = ("offline", load_behaviour("offline"))
    honest = load_behaviour(HONEST)
    miners = []
    for uid in range(n):
        kind, behaviour = kinds.get(uid, (HONEST, honest))
        shared = getattr(behaviour, "shares_coldkey", False)
        coldkey = f"cold-{kind}" if shared else f"cold-{uid:04d}"
        miners.append(SimMiner(MinerInfo(uid, f"hot-{uid:04d}", coldkey), behaviour, kind))
    return miners


class Simulation:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        # Every miner reads the cycle's zipcodes: keep them all cached (plus tie-breaks).
        self.world = SyntheticWorld(args.seed, cache_zipcodes=2 * args.zipcodes)
        self.miners = build_population(
            args.miners, args.adversary, args.offline_fraction, args.seed
        )
        self.by_hotkey = {m.info.hotkey: m for m in self.miners}
        self.miner_world = MinerWorld(self.world, self.miners, args.honest_noise_free)
        self.assignment = ZipcodeAssignmentManager(
            AssignmentConfig(
                zipcodes_per_batch=args.zipcodes_per_batch,
                miners_per_group=args.miners_per_group,
                overlap_factor=args.overlap,
            )
        )
        self.consensus_config = ConsensusConfig()
        self.engine = ConsensusEngine(self.consensus_config)
        self.digester = RecordDigester()
        self.state = ScoringState()

    def run(self) -> dict:
        started = time.perf_counter()
        cycles = []
        flagged: set[str] = set()
        failing: set[str] = set()
        for epoch in range(1, self.args.cycles + 1):
            result, stats, failing = self.run_cycle(epoch, failing)
            flagged |= {f.hotkey for f in result.flags}
            cycles.append(stats)
        return self.report(cycles, flagged, time.perf_counter() - started)

    def run_cycle(self, epoch: int, failing: set[str]) -> tuple[CycleResult, dict, set[str]]:
        seed = hashlib.sha256(f"sim:{self.args.seed}:{epoch}".encode()).digest()
        zipcodes = list(self.world.iter_zipcodes(self.args.zipcodes, epoch))
        honeypots = self.honeypots(zipcodes, epoch)
        # Miners that gave nothing last cycle are "recently failing": not eligible;
        # neither is one that does not publish its endpoint this cycle.
        eligible = [m.info for m in self.miners if m.info.hotkey not in failing and m.serves(epoch)]
        plan = self.assignment.create_plan(zipcodes, eligible, seed)
        submissions, responders, dropped = self.collect(plan, epoch)
        draft = self.engine.evaluate(plan, submissions, self.state.credibility())
        requests = self.engine.spot_check_requests(draft, seed)
        verdicts = [(r, self.verify(r)) for r in requests]
        threshold = self.consensus_config.zipcode_confidence_threshold
        tiebreak: dict = {"disputes": 0, "resolved": 0, "settled": 0}
        if self.args.no_tiebreak:
            result = self.engine.finalize(draft, verdicts, honeypots)
            rate_before = None
        else:
            before = self.engine.finalize(draft, verdicts, honeypots)
            rate_before = share_of(c > threshold for c in before.batch_confidence().values())
            tb_requests = self.engine.tiebreak_requests(draft, seed, eligible)
            tb_answers = self.tiebreak_answers(tb_requests, epoch)
            result = self.engine.finalize(
                draft, verdicts, honeypots, tiebreaks=(tb_requests, tb_answers)
            )
            tiebreak = dict(result.tiebreak) | {
                "batches": len(tb_requests),
                "answers": len(tb_answers),
            }
        self.state = apply_cycle(self.state, f"epoch-{epoch}", result, ScoringConfig())
        answered = {s.miner.hotkey for s in submissions}
        assigned = {m.hotkey for g in plan.groups for m in g.miners}
        batch_confidence = result.batch_confidence()
        rate = share_of(c > threshold for c in batch_confidence.values())
        stats = {
            "epoch": epoch,
            "batches": len(batch_confidence),
            "batch_confidence_rate": rate,
            "batch_confidence_rate_before_tiebreak": rate if rate_before is None else rate_before,
            "tiebreak": tiebreak,
            "responders_per_batch": [responders[b] for b in sorted(responders)],
            "group_responders": [
                sum(
                    1
                    for m in g.miners
                    if (g.batch_id, g.overlap_group, m.hotkey) in responders.keys_
                )
                for g in plan.groups
            ],
            "spot_checks": len(requests),
            "spot_check_failures": sum(
                v in (Verdict.MISMATCH, Verdict.NOT_FOUND) for _, v in verdicts
            ),
            "captured_groups": len(result.captured_groups),
            "flags": dict(Counter(f.kind.value for f in result.flags)),
            "relaxations": sorted({r.rule for r in plan.relaxations}),
            "max_miners_per_coldkey_in_group": max(
                (
                    max(Counter(m.coldkey for m in g.miners).values())
                    for g in plan.groups
                    if g.miners
                ),
                default=0,
            ),
            "plan_hash": plan.plan_hash,
            "dropped": dict(dropped),
            # behaviour -> [groups paid the fast bonus, groups answered]
            "fast_bonus": fast_bonus(result, submissions, self.by_hotkey),
            # behaviour -> [omitted listings confirmed, those independent miners reported]
            "omitted": omitted_listings(
                draft, submissions, self.miners, self.consensus_config.zipcode_confidence_threshold
            ),
        }
        return result, stats, assigned - answered

    def tiebreak_answers(self, requests: list[TiebreakRequest], epoch: int) -> list[TiebreakAnswer]:
        """Each tie-breaker looks the disputed properties up through its behaviour."""
        answers = []
        for request in requests:
            zipcodes = sorted({z for z, _ in request.properties})
            zpids = [zpid for _, zpid in request.properties]
            for miner in request.miners:
                sim = self.by_hotkey[miner.hotkey]
                ctx = self.miner_world.context(
                    sim,
                    miner,
                    zipcodes,
                    epoch,
                    random.Random(f"tiebreak:{self.args.seed}:{epoch}:{miner.hotkey}"),
                )
                found = properties_from_respond(sim.behaviour, ctx, zpids)
                if found is None:
                    continue
                records: dict[int, int | None] = {}
                for zpid, record in found.items():
                    if record is None:
                        records[int(zpid)] = None
                        continue
                    digest = self.digester.digest(record)
                    if not isinstance(digest, str):
                        records[int(zpid)] = hash_to_int(digest[1])
                answers.append(TiebreakAnswer(miner, request.batch_id, records))
        return answers

    def honeypots(self, zipcodes: list[str], epoch: int) -> dict[str, Honeypot]:
        """Empty zipcodes are no-residential honeypots; a seeded 1% are reference ones."""
        out = {
            z: Honeypot(z, HoneypotKind.NO_RESIDENTIAL) for z in zipcodes if self.world.is_empty(z)
        }
        rng = random.Random(f"honeypots:{self.args.seed}:{epoch}")
        candidates = [z for z in zipcodes if z not in out]
        for z in rng.sample(candidates, max(1, round(REFERENCE_HONEYPOT_SHARE * len(zipcodes)))):
            reference = {}
            for record in self.world.listings(z):
                digest = self.digester.digest(record)
                if not isinstance(digest, str):
                    reference[digest[0]] = digest[1]
            out[z] = Honeypot(z, HoneypotKind.REFERENCE, reference)
        return out

    def collect(self, plan, epoch: int) -> tuple[list[GroupSubmission], _Responders, Counter]:
        """Every miner's answer as the validator takes it: committed, revealed, timed."""
        submissions: list[GroupSubmission] = []
        responders = _Responders()
        dropped: Counter = Counter()
        timeout = self.consensus_config.assignment_timeout_s
        self.miner_world.begin_cycle(plan)
        for batch_id, groups in sorted(plan.batches.items()):
            finished: dict[str, float] = {}
            members = [(g, m) for g in groups for m in g.miners]
            rng = random.Random(f"order:{self.args.seed}:{epoch}:{batch_id}")
            rng.shuffle(members)
            # Copiers wait for the others so they have something to copy.
            members.sort(
                key=lambda gm: bool(
                    getattr(self.by_hotkey[gm[1].hotkey].behaviour, "copies_peers", False)
                )
            )
            responders[batch_id] = 0
            for group, miner in members:
                sim = self.by_hotkey[miner.hotkey]
                miner_rng = random.Random(
                    f"miner:{self.args.seed}:{epoch}:{miner.hotkey}:{batch_id}"
                )
                ctx = self.miner_world.context(sim, miner, list(group.zipcodes), epoch, miner_rng)
                answer = sim.behaviour.respond(ctx)
                if getattr(sim.behaviour, "copies_peers", False) and finished:
                    finish_s = max(finished.values()) + miner_rng.uniform(*COPY_DELAY_S)
                else:
                    finish_s = miner_rng.uniform(*HONEST_FINISH_S)
                commit_fn = getattr(sim.behaviour, "commits", None)
                commits = (
                    commit_fn(ctx, answer, finish_s)
                    if commit_fn is not None
                    else [Commit(finish_s, answer, True)]
                )
                settled = settle_commits(commits, timeout)
                if settled is None:
                    continue
                committed, completed_after_s = settled
                reveal = getattr(sim.behaviour, "reveal", None)
                if reveal is not None and reveal(ctx, committed) != committed:
                    dropped["reveal_mismatch"] += 1
                    continue
                finished[miner.hotkey] = completed_after_s
                self.miner_world.committed(sim, committed)
                answers = {z: self.to_answer(z, records) for z, records in committed.items()}
                submissions.append(
                    GroupSubmission(
                        miner, batch_id, group.overlap_group, answers, completed_after_s
                    )
                )
                responders[batch_id] += 1
                responders.keys_.add((batch_id, group.overlap_group, miner.hotkey))
        return submissions, responders, dropped

    def to_answer(self, zipcode: str, records: list[dict]) -> ZipcodeAnswer:
        digests = [self.digester.digest(r) for r in records]
        answer, _dropped = answer_from_digests(
            zipcode, [d for d in digests if not isinstance(d, str)]
        )
        return answer

    def verify(self, request: SpotCheckRequest) -> Verdict:
        """The validator's own source, here the world's truth."""
        return verdict_from_truth(self.world.lookup(request.zpid), request, self.digester)

    def report(self, cycles: list[dict], flagged: set[str], runtime: float) -> dict:
        return build_report(self.args, self.miners, self.state, cycles, flagged, runtime)


class _Responders(dict):
    """Responders per batch, plus the (batch, group, hotkey) triples that answered."""

    def __init__(self) -> None:
        super().__init__()
        self.keys_: set[tuple[int, int, str]] = set()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Run the consensus core against honest and gaming miners in a synthetic world.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--miners", type=int, default=64, help="number of miners")
    parser.add_argument("--zipcodes", type=int, default=400, help="zipcodes per cycle")
    parser.add_argument("--cycles", type=int, default=3, help="consensus cycles to run")
    parser.add_argument("--seed", type=int, default=7, help="world and plan seed")
    parser.add_argument(
        "--offline-fraction", type=float, default=0.0, help="share of miners offline"
    )
    parser.add_argument(
        "--adversary",
        type=parse_adversary,
        action="append",
        default=[],
        metavar="NAME=FRACTION",
        help="gaming behaviour and its share of miners (repeatable); "
        "NAME is built in or path/file.py:Class",
    )
    parser.add_argument("--zipcodes-per-batch", type=int, default=_DEFAULTS.zipcodes_per_batch)
    parser.add_argument("--miners-per-group", type=int, default=_DEFAULTS.miners_per_group)
    parser.add_argument(
        "--overlap", type=int, default=_DEFAULTS.overlap_factor, help="groups per batch"
    )
    parser.add_argument(
        "--no-tiebreak",
        action="store_true",
        help="skip the same-cycle re-check of disputed records by fresh miners",
    )
    parser.add_argument(
        "--honest-noise-free",
        action="store_true",
        help="honest views without misses or stale values: honest answers become identical, "
        "as when every miner calls the same API at the same time",
    )
    parser.add_argument("--json", type=Path, help="write the report here")
    args = parser.parse_args(argv)
    if args.miners < 1 or args.zipcodes < 1 or args.cycles < 1:
        parser.error("--miners, --zipcodes and --cycles must be positive")
    if sum(f for _, f in args.adversary) + args.offline_fraction > 1:
        parser.error("adversary and offline fractions add up to more than 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        report = Simulation(args).run()
    except ValueError as exc:
        print(f"simulate: {exc}", file=sys.stderr)
        return 2
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))
    print(
        f"batches {report['batches']}  confidence>0.7 {report['batch_confidence_rate']:.3f}  "
        f"responders/batch {report['responders_per_batch_mean']:.1f}  "
        f"responders/group {report['responders_per_group_mean']:.1f}  "
        f"honest false flags {report['honest_false_flag_rate']:.3f}  "
        f"disputes {report['disputes']} resolved {report['disputes_resolved']}  "
        f"confidence>0.7 before tie-breaks {report['batch_confidence_rate_before_tiebreak']:.3f}  "
        f"runtime {report['runtime_s']} s"
    )
    print(f"{'behaviour':<12}{'population':>11}{'weight':>9}{'earnings':>10}{'flagged':>9}")
    for kind, share in report["population_share_by_behavior"].items():
        ratio = report["earnings_ratio_by_behavior"][kind]
        print(
            f"{kind:<12}{share:>11.3f}{report['weight_share_by_behavior'][kind]:>9.3f}"
            f"{'-' if ratio is None else format(ratio, '.3f'):>10}"
            f"{report['flagged_by_behavior'][kind]:>9.3f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
