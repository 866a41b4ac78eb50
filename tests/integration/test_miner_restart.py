"""A miner killed (SIGKILL) mid-assignment still answers ``collect`` after a restart.

Zipcodes finished before the kill are kept, unchanged; the rest resume and
the assignment completes. After the deadline the miner reveals the manifest
of any commitment it issued, also one issued before the kill (a validator's
last poll may come before the last zipcode is done).
"""

from __future__ import annotations

import asyncio
import signal
import time
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest

from common.manifest import Manifest, manifest_commitment
from common.protocol import DataAssignmentRequest
from sim.processes import clear_endpoint, spawn_miner, start_miner, wait_for_endpoint
from tests.integration.neurons import post_signed

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ZIPCODES = [f"{20001 + i:05d}" for i in range(10)]
DEADLINE_S = 20.0  # 10 zipcodes at 0.4 s, a kill and a restart fit well inside this


def body(phase: str, commitment: str | None = None, expires: datetime | None = None) -> bytes:
    request = DataAssignmentRequest(
        request_id="restart-1",
        phase=phase,
        zipcode_assignments={"ZILLOW_SOLD": ZIPCODES} if phase == "assign" else {},
        batch_id=3,
        overlap_group=1,
        epoch_id="epoch-5",
        expires_at=expires,
        commitment=commitment,
    )
    return request.model_dump_json(exclude_none=True).encode()


def call(endpoint, validator, miner, raw: bytes) -> tuple[int, dict]:
    async def go():
        async with aiohttp.ClientSession() as session:
            status, answer, _ = await post_signed(
                session, endpoint, validator.keypair, miner.hotkey, raw
            )
            return status, answer

    return asyncio.run(go())


def test_killed_miner_keeps_its_commitments_and_reveals_them_after_the_deadline(tmp_path):
    expires = datetime.now(UTC) + timedelta(seconds=DEADLINE_S)
    slow = ("--scrape.delay", "0.4", "--scrape.concurrency", "1")
    started = start_miner(tmp_path, {"validator": (1000.0, True)}, *slow)
    validator, miner = started.people["validator"], started.people["miner"]
    process, endpoint, chain = started.process, started.endpoint, started.chain
    try:
        status, answer = call(endpoint, validator, miner, body("assign", expires=expires))
        assert status == 200 and answer["accepted"]
        deadline = time.monotonic() + 20
        while True:
            status, answer = call(endpoint, validator, miner, body("collect"))
            assert status == 200
            assert "manifest" not in answer
            if answer["progress"]["zipcodes_done"] >= 3 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        early, early_done = answer["commitment"], answer["progress"]["zipcodes_done"]
        assert 3 <= early_done < len(ZIPCODES)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)

    clear_endpoint(chain, miner.hotkey)
    process = spawn_miner(tmp_path, tmp_path / "wallets", chain, "miner", *slow)
    try:
        endpoint = wait_for_endpoint(chain, miner.hotkey, process)
        status, answer = call(endpoint, validator, miner, body("collect"))
        assert status == 200
        assert answer["status"] in ("in_progress", "completed")
        assert answer["progress"]["zipcodes_done"] >= early_done  # finished work survived
        deadline = time.monotonic() + 30
        while answer["status"] != "completed" and time.monotonic() < deadline:
            time.sleep(0.2)
            status, answer = call(endpoint, validator, miner, body("collect"))
        assert answer["status"] == "completed"
        final = answer["commitment"]
        assert final != early
        log = (tmp_path / "miner.log").read_text()
        assert "resuming assignment" in log

        time.sleep(max(0.0, expires.timestamp() - time.time()) + 0.05)  # the wall-clock deadline
        revealed = {}
        for commitment in (early, final):
            status, answer = call(endpoint, validator, miner, body("reveal", commitment))
            assert status == 200, answer
            manifest = Manifest.model_validate(answer["manifest"])
            assert manifest_commitment(manifest, answer["salt"]) == commitment
            revealed[commitment] = {z.zipcode: z.records for z in manifest.zipcodes}
        assert len(revealed[early]) == early_done
        assert sorted(revealed[final]) == ZIPCODES
        for zipcode, records in revealed[early].items():
            assert revealed[final][zipcode] == records  # finished work never changes
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=15)
