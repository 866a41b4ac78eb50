"""A miner killed (SIGKILL) mid-assignment still answers ``collect`` after a restart.

Zipcodes finished before the kill are in the manifest, unchanged; the rest
resume and the assignment completes.
"""

from __future__ import annotations

import asyncio
import signal
import time

import aiohttp
import pytest

from common.protocol import DataAssignmentRequest
from tests.integration.neurons import (
    clear_endpoint,
    make_wallet,
    post_signed,
    spawn_miner,
    wait_for_endpoint,
    write_chain,
)

pytestmark = pytest.mark.integration

ZIPCODES = [f"{20001 + i:05d}" for i in range(10)]


def body(phase: str) -> bytes:
    request = DataAssignmentRequest(
        request_id="restart-1",
        phase=phase,
        zipcode_assignments={"ZILLOW_SOLD": ZIPCODES} if phase == "assign" else {},
        batch_id=3,
        overlap_group=1,
        epoch_id="epoch-5",
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


def test_killed_miner_answers_collect_for_finished_zipcodes(tmp_path):
    wallets = tmp_path / "wallets"
    validator, miner = make_wallet(wallets, "validator"), make_wallet(wallets, "miner")
    chain = tmp_path / "chain.json"
    write_chain(chain, [(validator, 1000.0, True), (miner, 1.0, False)])
    slow = ("--scrape.delay", "0.4", "--scrape.concurrency", "1")

    process = spawn_miner(tmp_path, wallets, chain, "miner", *slow)
    try:
        endpoint = wait_for_endpoint(chain, miner.hotkey, process)
        status, answer = call(endpoint, validator, miner, body("assign"))
        assert status == 200 and answer["accepted"]
        deadline = time.monotonic() + 20
        while True:
            status, answer = call(endpoint, validator, miner, body("collect"))
            assert status == 200
            if answer["progress"]["zipcodes_done"] >= 3 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        before = {z["zipcode"]: z["records"] for z in answer["manifest"]["zipcodes"]}
        assert 3 <= len(before) < len(ZIPCODES)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)

    clear_endpoint(chain, miner.hotkey)
    process = spawn_miner(tmp_path, wallets, chain, "miner", *slow)
    try:
        endpoint = wait_for_endpoint(chain, miner.hotkey, process)
        status, answer = call(endpoint, validator, miner, body("collect"))
        assert status == 200
        assert answer["status"] in ("in_progress", "completed")
        after = {z["zipcode"]: z["records"] for z in answer["manifest"]["zipcodes"]}
        for zipcode, records in before.items():
            assert after[zipcode] == records  # finished work survived the kill unchanged
        deadline = time.monotonic() + 30
        while answer["status"] != "completed" and time.monotonic() < deadline:
            time.sleep(0.2)
            status, answer = call(endpoint, validator, miner, body("collect"))
        assert answer["status"] == "completed"
        assert sorted(z["zipcode"] for z in answer["manifest"]["zipcodes"]) == ZIPCODES
        log = (tmp_path / "miner.log").read_text()
        assert "resuming assignment" in log
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=15)
