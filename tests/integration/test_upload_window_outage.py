"""An outage while miners upload that is over before anything reads is still no evidence.

Issue 15 left this gap: the Data API or S3 goes down in the middle of an
epoch's upload window and is back before the deadline. The miners' uploads
during the outage are lost (their retries run out), yet the cycle's manifest
checks and every later S3 read find S3 healthy, so the honest miners' missing
files scored as missing work (coverage 0.5 for half the files lost).

On loopback with the real Data API, a real S3 server (moto in a subprocess,
frozen with SIGSTOP) and the validator's real watch and S3 pass:

- the watch's probe of ``/v1/health`` says what miners meet: fine when both
  answer, failing when S3 is frozen (the Data API says so) or the Data API is
  down, fine again after;
- in an epoch whose upload window saw either outage, the missing half is no
  evidence (coverage not judged) and the files that landed are judged as
  they are: honest, so every score goes up (0.9 -> 0.93); the same epoch
  with a clean window is judged on coverage too (the control: 0.5, and
  0.9 -> 0.78, what honest miners lost before).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

import aiohttp
import pytest

from common.chain import LocalFileChain
from common.metagraph import MetagraphSync
from config.storage import S3EvalConfig
from consensus.s3_audit import ManifestVerdict, VerdictStatus
from data_api.app import start_data_api
from data_api.s3 import PROBE_TTL_S
from tests.integration.data_api_harness import (
    BUCKET,
    EPOCH_S,
    SECRET,
    Clock,
    free_port,
    gateway,
    make_subnet,
    options,
)
from tests.integration.s3_server import S3Server
from tests.integration.test_s3_outages import MINERS, ZIPS, cycle_outcome, put_honest, state
from vali_utils.assignments import S3Access
from vali_utils.cycle import CycleOutcome
from vali_utils.data_api_client import RetryPolicy, ValidatorDataAPI
from vali_utils.s3_evaluation_pass import S3EvaluationPass, presigned_lister
from vali_utils.s3_reader import PresignedReader
from vali_utils.storage_watch import build_watch

pytestmark = pytest.mark.integration

INTERVAL_S = 0.25  # a 6.25 s epoch's probes: a twenty-fifth of it
OUTAGE_S = 3.5  # past the Data API's cached look at S3 (PROBE_TTL_S), then several probes


class Api:
    """The Data API on a fixed port, so it can be stopped and started again."""

    def __init__(self, subnet, db, s3_endpoint: str, clock: Clock) -> None:
        self.subnet, self.db, self.s3_endpoint, self.clock = subnet, db, s3_endpoint, clock
        self.port = free_port()
        self.running = None

    async def start(self) -> None:
        sync = MetagraphSync(LocalFileChain(self.subnet.chain))
        await sync.refresh()
        self.running = await start_data_api(
            self.subnet.owner.hotkey,
            lambda: sync.snapshot,
            options(),
            self.db,
            SECRET,
            gateway(self.s3_endpoint),
            port=self.port,
            now=self.clock,
        )

    async def stop(self) -> None:
        if self.running is not None:
            await self.running.close()
            self.running = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def outcome(epoch: int) -> CycleOutcome:
    """The epoch's consensus cycle: every miner's manifest read fine (S3 was back by then)."""
    return cycle_outcome(epoch, {m: ManifestVerdict(m, VerdictStatus.OK, 3, 0) for m in MINERS})


@pytest.mark.parametrize("outage", ["s3_freeze", "data_api_down", "none"])
def test_an_outage_over_before_the_deadline_gives_no_evidence(tmp_path, outage):
    subnet = make_subnet(tmp_path)
    server = S3Server.start()
    server.create_bucket(BUCKET)
    epoch = subnet.epoch
    clock = Clock((epoch + 0.5) * EPOCH_S + 1)  # after the deadline: the files are readable
    # Half of every honest miner's files landed; the rest were lost in the outage.
    put_honest(server.client(), BUCKET, epoch, zips=ZIPS[:3])
    settings = server.settings(BUCKET, eval_files_per_miner=3, call_timeout_s=5.0)
    api = Api(subnet, tmp_path / "api.sqlite", server.endpoint, clock)

    async def scenario():
        await api.start()
        async with aiohttp.ClientSession() as session:
            client = ValidatorDataAPI(
                api.url, subnet.owner.hotkey, subnet.people["validator"].keypair, session,
                timeout_s=5.0, retry=RetryPolicy(attempts=1),
            )  # fmt: skip
            reader = PresignedReader(session, presigned_lister(client), settings)
            access = S3Access(reader, settings)
            watch = build_watch(25 * INTERVAL_S, client, access)
            assert watch is not None and watch.interval_s == INTERVAL_S
            stop = asyncio.Event()
            watching = asyncio.create_task(watch.run(stop))
            seen: dict[str, list[bool]] = {}
            try:
                window_start = time.time()
                await asyncio.sleep(4 * INTERVAL_S)
                seen["before"] = [ok for _, ok in watch.observations]
                if outage == "s3_freeze":
                    os.kill(server.process.pid, signal.SIGSTOP)
                elif outage == "data_api_down":
                    await api.stop()
                mark = len(watch.observations)
                await asyncio.sleep(OUTAGE_S)
                seen["during"] = [ok for _, ok in list(watch.observations)[mark:]]
                if outage == "s3_freeze":
                    os.kill(server.process.pid, signal.SIGCONT)
                elif outage == "data_api_down":
                    await api.start()
                # The Data API keeps a failed look at S3 for PROBE_TTL_S.
                await asyncio.sleep(PROBE_TTL_S + 4 * INTERVAL_S + watch.timeout_s)
                mark = len(watch.observations) - 2
                seen["after"] = [ok for _, ok in list(watch.observations)[mark:]]
                deadline = time.time()
            finally:
                stop.set()
                await watching
            s3_pass = S3EvaluationPass(
                access,
                None,
                S3EvalConfig(spot_checks_per_miner=0),
                watch=watch,
                upload_window=lambda _: (window_start, deadline),
            )
            s3_pass.remember(outcome(epoch))
            after = await s3_pass(state(), epoch, time.time() + 60)
        await api.stop()
        return seen, after

    try:
        seen, after = asyncio.run(scenario())
    finally:
        if server.process is not None:
            os.kill(server.process.pid, signal.SIGCONT)
        server.stop()
    assert seen["before"] and all(seen["before"])
    assert seen["after"] == [True, True]
    before = state()
    assert after is not None
    if outage == "none":
        assert all(seen["during"])
        for miner in MINERS:  # judged: coverage 3 of 6 is evidence
            assert after.miners[miner].s3_credibility > before.miners[miner].s3_credibility
            assert after.miners[miner].s3_quality == pytest.approx(0.78)  # 0.9 -> 0.78
    else:
        assert seen["during"].count(False) >= 2, seen
        for miner in MINERS:  # the lost half is no evidence; the landed half is honest
            assert after.miners[miner].s3_quality == pytest.approx(0.93)  # 0.9 -> 0.93
            assert after.miners[miner].s3_credibility > before.miners[miner].s3_credibility
