"""One consensus cycle on the wire: plan, dispatch, collect, reveal, tie-breaks, consensus.

Collect gathers each miner's commitment to its manifest until the deadline;
after it, reveal asks for the manifests and keeps those that match what was
committed (``vali_utils/exchange.py``), so consensus always starts after the
deadline, with every miner's final uploads listed.

When the two groups of a batch disagree on records, the disputed zpids go to
a few fresh miners in ``property_ids`` mode (``consensus/tiebreak.py`` picks
whom and what, identically on every validator); their lookups are collected
until the tie-break deadline, while the spot checks run, and settle the
disputes before scoring.

Every request is an ``Assignment`` object that carries the miner (uid,
hotkey) it was sent to; answers are written back into that object, so a
response can never be credited to the wrong miner by position. Sending,
polling and the restart-safe bookkeeping are ``vali_utils/exchange.py``'s.

    cycle = ConsensusCycle(client, engine, manager, SpotChecker(verifier, metric), poll_s=5)
    outcome = await cycle.run(block, graph, credibility, deadline_wall)
    outcome.spot_check_failures, outcome.spot_checks_mostly_failed

A Data API block is the plan's contract: the plan and the deadlines follow
it, whatever the validator's own settings say (``vali_utils/block_plan.py``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

from common.chain import MetagraphSnapshot
from common.manifest import Manifest
from common.memory import release_memory
from common.protocol import DataAssignmentRequest
from common.signed_http import SignedClient
from consensus.answers import answers_from_manifest
from consensus.assignment import AssignmentPlan, MinerInfo, ZipcodeAssignmentManager
from consensus.draft import ConsensusDraft
from consensus.engine import ConsensusEngine
from consensus.provenance import ConfirmedSet, confirmed_records
from consensus.s3_audit import ManifestVerdict, apply_s3_verdicts, rejected_hotkeys
from consensus.s3_evaluation import consensus_records
from consensus.tiebreak import TiebreakRequest
from consensus.types import CycleResult, GroupSubmission, Honeypot, SpotCheckRequest, Verdict
from vali_utils.assignments import (
    SOURCE,
    Assignment,
    HoneypotSource,
    HoneypotsUnavailable,
    S3Access,
    record_bound,
    tiebreak_answers,
)
from vali_utils.block_plan import BlockPlanner
from vali_utils.blocks import EpochBlock
from vali_utils.dataset.publish import uploaded_files
from vali_utils.exchange import MinerExchange
from vali_utils.s3_audit import verify_manifests
from vali_utils.spot_check import Verifier, mostly_failed, spot_checker
from vali_utils.store import ValidatorStore

logger = logging.getLogger(__name__)

HONEYPOT_MARGIN_S = 1.0  # past the deadline before honeypots are asked for (clock skew)


@dataclass
class CycleOutcome:
    plan: AssignmentPlan
    result: CycleResult
    assignments: list[Assignment]
    spot_checks: list[tuple[SpotCheckRequest, Verdict]]
    timings: dict[str, float] = field(default_factory=dict)
    dropped: Counter = field(default_factory=Counter)
    tiebreaks: list[Assignment] = field(default_factory=list)
    # source -> zipcode -> zpid -> record hash (None: presence only), confident zipcodes:
    # what the S3 evaluation compares miners' files with.
    consensus: dict = field(default_factory=dict)
    block: EpochBlock | None = None
    s3_verdicts: dict[str, ManifestVerdict] = field(default_factory=dict)
    responders: int = 0  # miners that sent a manifest
    # Spot checks without a verdict, by reason (spot_check.UNAVAILABLE, TIMEOUT, ERROR).
    spot_check_failures: Counter = field(default_factory=Counter)
    # What the dataset publishes: the confirmed records with their provenance, and
    # (hotkey, zipcode) -> the uploaded files (keys) that hold their full fields.
    confirmed: ConfirmedSet | None = None
    uploads: dict[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)

    @property
    def spot_checks_mostly_failed(self) -> bool:
        """More than half of the cycle's spot checks gave no verdict: the report must say so."""
        return mostly_failed(self.spot_check_failures, len(self.spot_checks))


def eligible_miners(graph: MetagraphSnapshot) -> tuple[list[MinerInfo], dict[str, str]]:
    """Registered, serving, non-validator neurons, from the metagraph alone.

    Only shared data decides eligibility, so every validator builds the same
    plan; a miner's own failures are scored, not used to skip it.
    """
    miners, endpoints = [], {}
    for neuron in graph.neurons:
        if neuron.validator_permit or not neuron.endpoint or not neuron.active:
            continue
        miners.append(MinerInfo(neuron.uid, neuron.hotkey, neuron.coldkey))
        endpoints[neuron.hotkey] = neuron.endpoint
    return miners, endpoints


class ConsensusCycle:
    def __init__(
        self,
        client: SignedClient,
        engine: ConsensusEngine,
        manager: ZipcodeAssignmentManager,
        verifier: Verifier,
        concurrency: int = 64,
        poll_s: float = 5.0,
        request_timeout_s: float = 5.0,
        store: ValidatorStore | None = None,
        honeypots: HoneypotSource | None = None,
        s3: S3Access | None = None,
        provenance: bool = False,
    ) -> None:
        self.exchange = MinerExchange(client, concurrency, poll_s, request_timeout_s, store)
        self.engine = engine
        self.planner = BlockPlanner(manager)
        self.checker = spot_checker(verifier)
        self.request_timeout_s = request_timeout_s
        self.store = store
        self.honeypots = honeypots
        self.s3 = s3
        # The dataset's input (confirmed records with their evidence): ~0.3 s at a full
        # cycle, so only for a validator that exports.
        self.provenance = provenance

    def plan(
        self, block: EpochBlock, graph: MetagraphSnapshot
    ) -> tuple[AssignmentPlan, dict[str, str]]:
        miners, endpoints = eligible_miners(graph)
        return self.planner.plan(block, miners), endpoints

    async def run(
        self,
        block: EpochBlock,
        graph: MetagraphSnapshot,
        credibility: dict[str, float],
        deadline_wall: float,
        tiebreak_deadline_wall: float | None = None,
    ) -> CycleOutcome:
        """Run the cycle; tie-breaks only when ``tiebreak_deadline_wall`` leaves time for them."""
        miners, endpoints = eligible_miners(graph)
        resumed = False
        if self.store is not None:
            # After a restart the cycle keeps the miners it started with: same plan.
            miners, endpoints, resumed = await self.store.begin_cycle(
                block.epoch, miners, endpoints
            )
        plan = self.planner.plan(block, miners)
        deadline_wall, tiebreak_deadline_wall = self.planner.deadlines(
            block, deadline_wall, tiebreak_deadline_wall
        )
        logger.info(
            "epoch %d: plan %s: %d groups, %d miners, relaxations %s",
            block.epoch,
            plan.plan_hash[:12],
            len(plan.groups),
            len(endpoints),
            sorted({r.rule for r in plan.relaxations}) or "none",
        )
        expires = datetime.fromtimestamp(deadline_wall, UTC)
        # What a revealed entry may list per zipcode: what the consensus can count of it.
        factor = self.engine.config.max_volume_factor
        bounds = {z: record_bound(n, factor) for z, n in block.expected_counts().items()}
        assignments = [
            Assignment(
                group,
                miner,
                endpoints[miner.hotkey],
                DataAssignmentRequest(
                    request_id=f"e{block.epoch}-b{group.batch_id}-g{group.overlap_group}",
                    phase="assign",
                    zipcode_assignments={SOURCE: list(group.zipcodes)},
                    expected_properties_per_zipcode=block.expected_properties_per_zipcode,
                    batch_id=group.batch_id,
                    overlap_group=group.overlap_group,
                    epoch_id=f"epoch-{block.epoch}",
                    epoch_nonce=block.nonce,
                    expires_at=expires,
                ),
                record_bounds={z: bounds[z] for z in group.zipcodes if z in bounds},
            )
            for group in plan.groups
            for miner in group.miners
        ]
        if resumed:
            await self.exchange.restore(block.epoch, assignments)
            logger.info(
                "epoch %d: resumed after a restart: %d of %d assignments acknowledged before",
                block.epoch,
                sum(a.accepted for a in assignments),
                len(assignments),
            )
        timings: dict[str, float] = {}
        started = time.monotonic()
        await self.exchange.dispatch(assignments)
        await self.exchange.save(block.epoch, assignments, "dispatched", plan.plan_hash)
        timings["dispatch_s"] = time.monotonic() - started
        acked = sum(a.accepted for a in assignments)
        logger.info(
            "epoch %d: dispatched %d assignments, %d acknowledged in %.2fs",
            block.epoch,
            len(assignments),
            acked,
            timings["dispatch_s"],
        )

        started = time.monotonic()
        await self.exchange.collect(assignments, deadline_wall, block.epoch)
        revealed = await self.exchange.reveal(assignments, deadline_wall, block.epoch)
        await self.exchange.save(block.epoch, assignments, "collected", force=True)
        timings["collect_s"] = time.monotonic() - started

        s3_verdicts: dict[str, ManifestVerdict] = {}
        if self.s3 is not None:
            s3_verdicts = await self._verify_uploads(block, assignments)
        liars = rejected_hotkeys(s3_verdicts)
        started = time.monotonic()
        submissions, dropped = self.submissions(
            [a for a in assignments if a.miner.hotkey not in liars], block.nonce
        )
        dropped.update(revealed)
        responders = len({a.miner.hotkey for a in assignments if a.manifest is not None})
        uploads = uploaded_files(
            (a.miner.hotkey, a.manifest) for a in assignments if a.miner.hotkey not in liars
        )
        for a in assignments:
            a.release_manifest()  # the submissions hold the answers now
        # Collect's garbage (response bodies, timed-out requests' frames) goes before
        # the engine builds its arrays: the cycle's peak is consensus, not both at once.
        release_memory()
        draft = self.engine.evaluate(
            plan,
            submissions,
            credibility,
            block.expected_counts(),
        )
        requests = self.engine.spot_check_requests(draft, block.seed)
        tb_requests = self.engine.tiebreak_requests(draft, block.seed, miners)
        tb_assignments = self._tiebreak_assignments(
            tb_requests, endpoints, block.epoch, tiebreak_deadline_wall
        )
        if resumed:
            await self.exchange.restore(block.epoch, tb_assignments)
        timings["consensus_s"] = time.monotonic() - started
        started = time.monotonic()
        (verdicts, failures), lookup_drops = await asyncio.gather(
            self._verify(requests, block.epoch),
            self._tiebreak_round(tb_assignments, tiebreak_deadline_wall, block.epoch),
        )
        dropped.update(lookup_drops)
        dropped.update({f"spot_check_{reason}": n for reason, n in failures.items()})
        await self.exchange.save(block.epoch, tb_assignments, "tiebreaks", force=True)
        timings["verify_s"] = time.monotonic() - started
        started = time.monotonic()
        tiebreaks = (tb_requests, tiebreak_answers(tb_assignments)) if tb_assignments else None
        honeypots = await self._honeypots(block.epoch, deadline_wall)
        result = self.engine.finalize(draft, verdicts, honeypots=honeypots, tiebreaks=tiebreaks)
        result = apply_s3_verdicts(result, s3_verdicts)
        timings["consensus_s"] += time.monotonic() - started
        if tiebreaks:
            logger.info(
                "epoch %d: tie-breaks: %d disputes in %d batches, %d resolved, %d answers",
                block.epoch,
                result.tiebreak.get("disputes", 0),
                len(tb_requests),
                result.tiebreak.get("resolved", 0),
                len(tiebreaks[1]),
            )
        consensus = consensus_records(
            draft.zipcodes,
            draft.final_comparison or draft.comparison,
            source=SOURCE.value,
            min_confidence=draft.config.zipcode_confidence_threshold,
        )
        return CycleOutcome(
            plan,
            result,
            assignments,
            verdicts,
            timings,
            dropped,
            tiebreaks=tb_assignments,
            consensus=consensus,
            block=block,
            s3_verdicts=s3_verdicts,
            responders=responders,
            spot_check_failures=failures,
            confirmed=self._confirmed(draft, verdicts, result, block.epoch),
            uploads=uploads,
        )

    def _confirmed(
        self,
        draft: ConsensusDraft,
        verdicts: list[tuple[SpotCheckRequest, Verdict]],
        result: CycleResult,
        epoch: int,
    ) -> ConfirmedSet | None:
        """The dataset's input, or None when off or when computing it failed.

        Weights never wait on the optional dataset: a bug here is logged with
        its traceback and the cycle goes on without an export.
        """
        if not self.provenance:
            return None
        try:
            return confirmed_records(draft, verdicts, result.zipcodes)
        except Exception:  # boundary: the dataset must never stop weights
            logger.exception("epoch %d: confirmed records failed; no dataset this epoch", epoch)
            return None

    def _tiebreak_assignments(
        self,
        requests: list[TiebreakRequest],
        endpoints: dict[str, str],
        epoch: int,
        deadline_wall: float | None,
    ) -> list[Assignment]:
        """Property-id lookups for the disputed zpids, one per (batch, tie-breaker)."""
        if not requests or deadline_wall is None or deadline_wall <= time.time():
            if requests:
                logger.info("epoch %d: no time left for %d tie-breaks", epoch, len(requests))
            return []
        expires = datetime.fromtimestamp(deadline_wall, UTC)
        out = []
        for tb in requests:
            request = DataAssignmentRequest(
                request_id=f"e{epoch}-b{tb.batch_id}-tb",
                phase="assign",
                assignment_mode="property_ids",
                property_ids={SOURCE: [str(zpid) for _, zpid in tb.properties]},
                # Where the listings are said to be: context for the lookup.
                zipcode_assignments={SOURCE: sorted({z for z, _ in tb.properties})},
                batch_id=tb.batch_id,
                epoch_id=f"epoch-{epoch}",
                expires_at=expires,
            )
            out.extend(
                Assignment(None, miner, endpoints[miner.hotkey], request, tiebreak=tb)
                for miner in tb.miners
                if miner.hotkey in endpoints
            )
        return out

    async def _tiebreak_round(
        self, assignments: list[Assignment], deadline_wall: float | None, epoch: int
    ) -> Counter:
        """Dispatch and collect the lookups; returns what was dropped of their answers."""
        if not assignments or deadline_wall is None:
            return Counter()
        await self.exchange.dispatch(assignments)
        await self.exchange.save(epoch, assignments)
        return await self.exchange.collect(
            assignments, deadline_wall, epoch, what="tie-break lookups"
        )

    async def _verify_uploads(
        self, block: EpochBlock, assignments: list[Assignment]
    ) -> dict[str, ManifestVerdict]:
        """Check a seeded sample of each miner's manifest files against its S3 objects.

        The manifests are the revealed ones, asked for after the deadline, so
        they list every file uploaded in time (uploads finish in the background,
        and the Data API hands out no upload URL after the deadline nor read
        URLs before it).
        """
        manifests: dict[str, list[Manifest]] = {}
        for a in assignments:
            if a.manifest is not None:
                manifests.setdefault(a.miner.hotkey, []).append(a.manifest)
        return await verify_manifests(
            self.s3.reader,  # type: ignore[union-attr]
            block.seed,
            manifests,
            self.s3.settings,  # type: ignore[union-attr]
            expected_epoch=block.epoch,
            expected_nonce=block.nonce,
        )

    async def _honeypots(self, epoch: int, deadline_wall: float) -> dict[str, Honeypot]:
        """The epoch's honeypots, revealed after its deadline; none when they cannot be had.

        Consensus waits for the deadline when honeypots are to be had: miners
        may answer until then, and only then are the honeypots revealed.
        """
        if self.honeypots is None:
            return {}
        wait = deadline_wall + HONEYPOT_MARGIN_S - time.time()
        if wait > 0:
            logger.info("epoch %d: waiting %.1fs for the deadline to see honeypots", epoch, wait)
            await asyncio.sleep(wait)
        try:
            return await asyncio.wait_for(self.honeypots(epoch), self.request_timeout_s * 6)
        except (TimeoutError, HoneypotsUnavailable) as exc:
            logger.warning("epoch %d: honeypots unavailable (%s); scoring without them", epoch, exc)
            return {}

    def submissions(
        self, assignments: list[Assignment], nonce: str | None = None
    ) -> tuple[list[GroupSubmission], Counter]:
        """The collected manifests as the consensus core reads them.

        A manifest of another hotkey, or without the epoch's nonce (when the
        block has one), does not count: it could have been made before the
        epoch started.
        """
        submissions, dropped = [], Counter()
        for a in assignments:
            if a.manifest is None or a.group is None:
                continue
            if a.manifest.miner_hotkey != a.miner.hotkey:
                dropped["manifest_of_another_hotkey"] += 1
                continue
            if nonce is not None and a.manifest.epoch_nonce != nonce:
                dropped["wrong_epoch_nonce"] += 1
                continue
            answers, reasons = answers_from_manifest(
                a.manifest, a.group.zipcodes, source=SOURCE.value
            )
            dropped.update(reasons)
            submissions.append(
                GroupSubmission(
                    a.miner, a.group.batch_id, a.group.overlap_group, answers, a.completed_after_s
                )
            )
        return submissions, dropped

    async def _verify(
        self, requests: list[SpotCheckRequest], epoch: int
    ) -> tuple[list[tuple[SpotCheckRequest, Verdict]], Counter]:
        """Spot-check verdicts, and the checks that gave none (by reason).

        Verdicts found before a restart are reused, not asked again. The
        checker sorts failures (``vali_utils/spot_check.py``): a source that
        cannot tell or a check over its time is no evidence; any other error
        is a verifier bug, logged with its traceback and counted (reason
        ``error``, in the epoch's ``dropped`` as ``spot_check_error`` and in
        the metric). Every failed check judges nobody, since a wrong "no
        evidence" costs no miner anything while a crash would cost the whole
        cycle; a cycle where most checks failed says so (an error logged, and
        ``CycleOutcome.spot_checks_mostly_failed``).
        """
        known = await self.store.verdicts(epoch) if self.store is not None else {}
        failed: Counter = Counter()

        async def one(request: SpotCheckRequest) -> tuple[SpotCheckRequest, Verdict]:
            stored = known.get((request.zipcode, request.zpid, request.record_hash))
            if stored is not None:
                return request, Verdict(stored)
            verdict, failure = await self.checker.check(request, self.request_timeout_s, "cycle")
            if failure is not None:
                failed[failure] += 1
            return request, verdict

        verdicts = list(await asyncio.gather(*(one(r) for r in requests)))
        if mostly_failed(failed, len(requests)):
            logger.error(
                "epoch %d: %d of %d spot checks gave no verdict (%s): this cycle's spot checks"
                " judged almost nobody",
                epoch,
                sum(failed.values()),
                len(requests),
                dict(failed),
            )
        elif failed:
            logger.warning("epoch %d: spot checks without an answer: %s", epoch, dict(failed))
        if self.store is not None:
            await self.store.save_verdicts(
                epoch,
                (
                    (r.zipcode, r.zpid, r.record_hash, v.value)
                    for r, v in verdicts
                    if (r.zipcode, r.zpid, r.record_hash) not in known
                ),
            )
        return verdicts, failed
