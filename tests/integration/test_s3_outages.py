"""An outage is never evidence: a Data API outage or an S3 freeze leaves honest miners' S3
evaluation as an undisturbed run has it, or without evidence; never lower.

Guards against issue 15's measurements: after a 28 s Data API outage honest
miners' S3 evaluation scored 0.03-0.06 instead of about 0.96, and after a
30 s S3 freeze 0.32-0.61. On loopback with the real Data API, a real S3
server (moto) and the validator's real readers:

- the Data API goes down in the middle of a round (after three miners were
  listed): each miner's reward is the undisturbed one or None, and the
  round as a whole gives no evidence once a quarter of the miners went unread;
- S3 freezes (SIGSTOP) in the middle of a round: the same;
- S3 freezes mid-epoch, so half of each honest miner's uploads are lost and
  the cycle's manifest checks read "unavailable": the epoch's S3 evaluation
  rounds give no evidence, where they used to score coverage 0.5.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Iterator

import aiohttp
import pytest

from config.storage import S3EvalConfig
from consensus.assignment import AssignmentConfig, AssignmentPlan, MinerGroup, MinerInfo
from consensus.s3_audit import ManifestVerdict, VerdictStatus
from consensus.s3_evaluation import evaluation_seed
from consensus.scoring import MinerScore, ScoringState, apply_s3_evaluation
from consensus.types import CycleResult
from tests.integration import s3_scenarios
from tests.integration.data_api_harness import (
    BUCKET,
    EPOCH_S,
    Clock,
    call,
    gateway,
    make_subnet,
    running,
    start_s3,
)
from tests.integration.s3_server import S3Server
from tests.unit.s3_builders import NONCE, encoded, hotkey, manifest, manifest_entry, zipcodes
from vali_utils.assignments import S3Access
from vali_utils.blocks import EpochBlock
from vali_utils.cycle import CycleOutcome
from vali_utils.data_api_client import RetryPolicy, ValidatorDataAPI
from vali_utils.s3_audit import verify_manifests
from vali_utils.s3_evaluation_pass import S3EvaluationPass, presigned_lister
from vali_utils.s3_reader import DirectS3Reader, Listing, PresignedReader

pytestmark = pytest.mark.integration

ZIPS = zipcodes(6)
MINERS = [hotkey(300 + i) for i in range(8)]
SEED = evaluation_seed(b"block-seed-of-the-next-epoch", 1)
LISTED_BEFORE_THE_OUTAGE = 3
FRESH = time.time() - 1800  # when the honest miners scraped


def honest_file(zipcode: str):
    return encoded(zipcode, scraped_at=FRESH)


def put_honest(client, bucket: str, epoch: int, zips=ZIPS) -> None:
    """Every miner's files, as honest uploads."""
    s3_scenarios.put_honest(client, bucket, MINERS, zips, epoch=epoch, scraped_at=FRESH)


@contextlib.contextmanager
def half_uploaded(epoch: int) -> Iterator[tuple[S3Server, str]]:
    """A fresh S3 server of its own (the test may freeze it) and its bucket, holding every
    honest miner's uploads of ``epoch`` for the first half of the zipcodes only."""
    server = S3Server.start()
    try:
        bucket = server.create_bucket()
        put_honest(server.client(), bucket, epoch, zips=ZIPS[:3])
        yield server, bucket
    finally:
        server.stop()


def state() -> ScoringState:
    return ScoringState(
        miners={m: MinerScore(uid=i, score=0.5, s3_quality=0.9, s3_credibility=0.5)
                for i, m in enumerate(MINERS)}
    )  # fmt: skip


def never_lower(undisturbed: dict, disturbed: dict) -> int:
    """Each reward is the undisturbed one or None; returns how many were None."""
    for miner in MINERS:
        assert disturbed[miner].reward in (None, undisturbed[miner].reward), miner
    before, ruled = state(), "s3-e-r1"
    normal = apply_s3_evaluation(before, ruled, undisturbed)
    after = apply_s3_evaluation(before, ruled, disturbed)
    for miner in MINERS:
        assert after.miners[miner].s3_quality in (
            before.miners[miner].s3_quality,
            normal.miners[miner].s3_quality,
        )
    return sum(r.reward is None for r in disturbed.values())


class OutageAfter:
    """Wraps a reader's listings: after ``n`` complete, ``outage()`` runs once, then all go on."""

    def __init__(self, reader, n: int, outage) -> None:
        self.reader, self.n, self.outage = reader, n, outage
        self.started, self.finished = 0, 0
        self.ready = asyncio.Event()
        self.lock = asyncio.Lock()
        self.done = False

    async def list_miner(self, hotkey: str, epoch: int, *, max_keys: int) -> Listing:
        self.started += 1
        if self.started > self.n:
            await self.ready.wait()  # the first n miners were listed before the outage
            async with self.lock:
                if not self.done:
                    await self.outage()
                    self.done = True
            return await self.reader.list_miner(hotkey, epoch, max_keys=max_keys)
        try:
            return await self.reader.list_miner(hotkey, epoch, max_keys=max_keys)
        finally:
            self.finished += 1
            if self.finished == self.n:
                self.ready.set()

    async def fetch(self, key: str, *, max_bytes: int):
        return await self.reader.fetch(key, max_bytes=max_bytes)


async def evaluate(reader, settings, epoch: int, config: S3EvalConfig) -> dict:
    return await s3_scenarios.evaluate_round(
        reader, MINERS, epoch=epoch, seed=SEED, settings=settings, assigned=ZIPS,
        last_consensus=s3_scenarios.honest_consensus(ZIPS), config=config, expected_nonce=NONCE,
    )  # fmt: skip


@pytest.mark.parametrize("outage_share", [0.25, 1.0])
def test_a_data_api_outage_mid_round_is_no_evidence(tmp_path, outage_share):
    subnet = make_subnet(tmp_path)
    endpoint, stop_s3 = start_s3()
    config = S3EvalConfig(spot_checks_per_miner=0, outage_share=outage_share)
    clock = Clock((subnet.epoch + 0.5) * EPOCH_S + 1)  # the epoch's files are readable

    async def scenario():
        put_honest(gateway(endpoint).client, BUCKET, subnet.epoch)
        settings = S3Server(0).settings(
            BUCKET, endpoint_url=endpoint, eval_files_per_miner=3, call_timeout_s=5.0
        )
        async with contextlib.AsyncExitStack() as api_running, aiohttp.ClientSession() as s:
            api = await api_running.enter_async_context(
                running(subnet, tmp_path / "api.sqlite", clock, s3=endpoint)
            )
            validator = subnet.people["validator"]
            status, _, _ = await call(s, api, validator, "GET", "/v1/epochs/current")
            assert status == 200
            client = ValidatorDataAPI(
                api.url, api.owner_hotkey, validator.keypair, s,
                timeout_s=2.0, retry=RetryPolicy(attempts=1),
            )  # fmt: skip
            lister = presigned_lister(client)
            undisturbed = await evaluate(
                PresignedReader(s, lister, settings), settings, subnet.epoch, config
            )
            assert all(r.reward == pytest.approx(1.0) for r in undisturbed.values())
            reader = OutageAfter(
                PresignedReader(s, lister, settings), LISTED_BEFORE_THE_OUTAGE, api_running.aclose
            )
            started = time.monotonic()
            disturbed = await evaluate(reader, settings, subnet.epoch, config)
            return undisturbed, disturbed, time.monotonic() - started

    try:
        undisturbed, disturbed, elapsed = asyncio.run(scenario())
    finally:
        stop_s3()
    unread = never_lower(undisturbed, disturbed)
    if outage_share <= 0.25:  # five of eight unread: the round says nothing about anyone
        assert unread == len(MINERS)
        assert all(r.reasons[-1].startswith("s3_outage_round") for r in disturbed.values())
    else:  # the round stands: the three listed before the outage keep their reward
        assert unread == len(MINERS) - LISTED_BEFORE_THE_OUTAGE
    assert elapsed < 10.0


def test_an_s3_freeze_mid_round_is_no_evidence():
    server = S3Server.start()
    config = S3EvalConfig(spot_checks_per_miner=0)
    try:
        bucket = server.create_bucket()
        epoch = 11
        put_honest(server.client(), bucket, epoch)
        settings = server.settings(
            bucket, eval_files_per_miner=3, connect_timeout_s=0.5, read_timeout_s=0.5,
            call_timeout_s=1.0,
        )  # fmt: skip

        async def scenario():
            reader = DirectS3Reader.from_settings(settings)
            try:
                undisturbed = await evaluate(reader, settings, epoch, config)
            finally:
                await reader.close()

            async def freeze() -> None:
                os.kill(server.process.pid, signal.SIGSTOP)

            frozen = DirectS3Reader.from_settings(settings)
            try:
                started = time.monotonic()
                disturbed = await evaluate(
                    OutageAfter(frozen, LISTED_BEFORE_THE_OUTAGE, freeze), settings, epoch, config
                )
                return undisturbed, disturbed, time.monotonic() - started
            finally:
                os.kill(server.process.pid, signal.SIGCONT)
                await frozen.close()

        undisturbed, disturbed, elapsed = asyncio.run(scenario())
    finally:
        server.stop()
    assert all(r.reward == pytest.approx(1.0) for r in undisturbed.values())
    assert never_lower(undisturbed, disturbed) == len(MINERS)
    assert elapsed < 10.0  # every call gives up after its 1 s


def test_an_epoch_whose_cycle_could_not_read_s3_gives_no_evidence():
    epoch = 12
    # Half of every honest miner's uploads landed before S3 froze mid-epoch.
    with half_uploaded(epoch) as (server, bucket):
        settings = server.settings(
            bucket, eval_files_per_miner=3, verify_files_per_miner=2,
            connect_timeout_s=0.5, read_timeout_s=0.5, call_timeout_s=1.0,
        )  # fmt: skip
        manifests = {
            m: [manifest(m, epoch, [manifest_entry(m, epoch, z, honest_file(z)) for z in ZIPS[:3]])]
            for m in MINERS
        }

        async def scenario():
            reader = DirectS3Reader.from_settings(settings)
            os.kill(server.process.pid, signal.SIGSTOP)
            try:
                # The uploads of the other half fail during the freeze (the miners'
                # retries run out before the deadline), and so do the cycle's checks.
                verdicts = await verify_manifests(
                    reader, b"seed", manifests, settings, expected_epoch=epoch
                )
            finally:
                os.kill(server.process.pid, signal.SIGCONT)
            await reader.close()
            outcome = cycle_outcome(epoch, verdicts)
            # What the round scores with S3 back and the cycle's knowledge ignored:
            reader = DirectS3Reader.from_settings(settings)
            try:
                blind = await evaluate(
                    reader, settings, epoch, S3EvalConfig(spot_checks_per_miner=0)
                )
                s3_pass = S3EvaluationPass(S3Access(reader, settings), None)
                s3_pass.remember(outcome)
                after = await s3_pass(state(), epoch, time.time() + 60)
            finally:
                await reader.close()
            return verdicts, blind, after

        verdicts, blind, after = asyncio.run(scenario())
    assert {v.status.value for v in verdicts.values()} == {"unavailable"}
    # The incident: coverage 3 of 6 for every honest miner, had the round counted.
    assert {round(r.reward, 3) for r in blind.values()} == {0.5}
    assert after is not None
    assert {m: s.s3_quality for m, s in after.miners.items()} == {
        m: s.s3_quality for m, s in state().miners.items()
    }


def plan() -> AssignmentPlan:
    group = MinerGroup(
        0, 0, tuple(ZIPS), tuple(MinerInfo(i, m, f"coldkey-{i}") for i, m in enumerate(MINERS))
    )
    return AssignmentPlan("00", AssignmentConfig(), (group,), (), (), "plan", {})


def cycle_outcome(epoch: int, verdicts: dict[str, ManifestVerdict]) -> CycleOutcome:
    """The epoch's consensus cycle as the S3 pass remembers it: every miner in one group,
    the honest consensus, and ``verdicts``, the cycle's own reads of the manifests."""
    block = EpochBlock(epoch, "b", tuple(ZIPS), f"seed-of-epoch-{epoch}".encode(), nonce=NONCE)
    return CycleOutcome(
        plan=plan(),
        result=CycleResult(zipcodes={}, miners={}, flags=[], captured_groups=[], dropped={}),
        assignments=[],
        spot_checks=[],
        consensus=s3_scenarios.honest_consensus(ZIPS),
        block=block,
        s3_verdicts=verdicts,
    )


def test_a_miner_the_cycle_alone_could_not_read_gets_no_evidence_from_the_epoch():
    epoch = 13
    with half_uploaded(epoch) as (server, bucket):
        settings = server.settings(bucket, eval_files_per_miner=3)
        unread = MINERS[0]
        verdicts = {
            m: ManifestVerdict(m, VerdictStatus.UNAVAILABLE if m == unread else VerdictStatus.OK,
                               0 if m == unread else 2, 2 if m == unread else 0)
            for m in MINERS
        }  # fmt: skip
        outcome = cycle_outcome(epoch, verdicts)

        async def scenario():
            reader = DirectS3Reader.from_settings(settings)
            try:
                s3_pass = S3EvaluationPass(S3Access(reader, settings), None)
                s3_pass.remember(outcome)
                return await s3_pass(state(), epoch, time.time() + 60)
            finally:
                await reader.close()

        after = asyncio.run(scenario())
    assert after is not None
    before = state()
    # One miner the cycle could not read is a glitch: only that miner is left alone.
    assert after.miners[unread] == before.miners[unread]
    for miner in MINERS[1:]:  # the others are judged (coverage 3 of 6 here: evidence)
        assert after.miners[miner].s3_credibility > before.miners[miner].s3_credibility
