"""A real miner process on loopback, flooded by one validator while another asks for work.

Guards against the incident of issue 15: validator A sent 500 assignments of
40 zipcodes in 8 s, inside its rate limit; they filled the miner's one global
queue, the miner answered nothing to validator B for two epochs and B's view
of it fell from weight 0.106 to 0.042. Now A is held to its stake's share of
open assignments (refusals saying "quota", logged once a minute), and the
scraping takes turns between validators, so B's assignment, sent in the
middle of the flood, is finished long before A's queue and before its deadline.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest

from common.manifest import Manifest
from sim.processes import start_miner
from tests.integration.neurons import assign_body, collect_body, post_signed, reveal_body

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EPOCH_S = 1_000_000.0  # long epochs: a test never straddles a boundary
FLOOD = 200  # A's assignments, inside its rate limit of 1,200 a minute
FLOOD_ZIPCODES = 40
CAPACITY, FLOOR = 100, 10  # equal stakes: each validator's quota is 50
SCRAPE_DELAY_S = 0.05  # per zipcode, 4 at once: A's accepted queue is 2,000 x 0.05 / 4 = 25 s
B_DEADLINE_S = 8.0  # well under A's queue, far above B's share of the turns


@pytest.fixture
def miner(tmp_path):
    validators = {"alice": (1000.0, True), "bob": (1000.0, True)}
    flags = ["--scrape.delay", str(SCRAPE_DELAY_S), "--rate.limit", "1200"]
    flags += ["--assignments.max.open", str(CAPACITY)]
    flags += ["--assignments.min.per.validator", str(FLOOR)]
    flags += ["--epoch.check", "--cycle.seconds", str(EPOCH_S)]
    miner = start_miner(tmp_path, validators, *flags)
    try:
        yield {"endpoint": miner.endpoint, "people": miner.people, "log": miner.log}
    finally:
        miner.stop()


async def _flood_and_serve(miner) -> dict:
    people, endpoint = miner["people"], miner["endpoint"]
    receiver = people["miner"].hotkey
    epoch = int(time.time() // EPOCH_S)
    far = datetime.now(UTC) + timedelta(seconds=120)
    connector = aiohttp.TCPConnector(limit=32)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def call(who: str, body: bytes) -> tuple[int, dict]:
            status, answer, _ = await post_signed(
                session, endpoint, people[who].keypair, receiver, body
            )
            return status, answer

        def flood_body(n: int) -> bytes:
            zipcodes = [f"{20000 + n * FLOOD_ZIPCODES + i:05d}" for i in range(FLOOD_ZIPCODES)]
            return assign_body(f"flood-{n}", zipcodes, epoch=f"epoch-{epoch}", expires_at=far)

        first = await asyncio.gather(*(call("alice", flood_body(n)) for n in range(FLOOD // 2)))
        # B's assignment arrives in the middle of the flood.
        b_zipcodes = [f"{90000 + i:05d}" for i in range(20)]
        b_expires = datetime.now(UTC) + timedelta(seconds=B_DEADLINE_S)
        b_sent = time.monotonic()
        b_status, b_answer = await call(
            "bob", assign_body("b-1", b_zipcodes, epoch=f"epoch-{epoch}", expires_at=b_expires)
        )
        second = await asyncio.gather(
            *(call("alice", flood_body(n)) for n in range(FLOOD // 2, FLOOD))
        )
        stale_status, stale = await call(
            "bob",
            assign_body("b-stale", b_zipcodes[:1], epoch=f"epoch-{epoch - 1}", expires_at=far),
        )

        progress, b_done_s = None, None
        while time.monotonic() - b_sent < B_DEADLINE_S:
            _, answer = await call("bob", collect_body("b-1"))
            progress = answer.get("progress")
            if answer.get("status") == "completed":
                b_done_s = time.monotonic() - b_sent
                commitment = answer["commitment"]
                break
            await asyncio.sleep(0.1)  # a validator's poll interval: the wire has no push
        assert b_done_s is not None, f"B not completed by its deadline: {progress}"
        # The reveal opens at the deadline: a time on the wall clock, not an event.
        await asyncio.sleep(max(0.0, b_expires.timestamp() - time.time()) + 0.05)
        reveal_status, revealed = await call("bob", reveal_body("b-1", commitment))
    return {
        "flood": first + second,
        "b": (b_status, b_answer),
        "b_done_s": b_done_s,
        "b_progress": progress,
        "stale": (stale_status, stale),
        "reveal": (reveal_status, revealed),
    }


def test_a_flooding_validator_is_held_to_its_quota_and_another_is_served_in_full(miner):
    started = time.monotonic()
    outcome = asyncio.run(_flood_and_serve(miner))
    flood = outcome["flood"]
    accepted = [a for s, a in flood if s == 200 and a.get("accepted")]
    refused = [a for s, a in flood if s == 200 and a.get("status") == "rejected"]
    print(
        f"\nA: {len(accepted)} accepted, {len(refused)} refused of {FLOOD};"
        f" B completed {outcome['b_done_s']:.2f}s after sending (deadline {B_DEADLINE_S:g}s;"
        f" A's accepted queue alone is {len(accepted) * FLOOD_ZIPCODES * SCRAPE_DELAY_S / 4:.0f}s"
        f" of scraping); whole test {time.monotonic() - started:.1f}s"
    )
    assert all(s == 200 for s, _ in flood), {s for s, _ in flood}
    assert len(accepted) == CAPACITY // 2  # A's quota: half the stake
    assert len(refused) == FLOOD - CAPACITY // 2
    assert all("quota" in a["error"] for a in refused)

    b_status, b_answer = outcome["b"]
    assert b_status == 200 and b_answer["accepted"] is True, b_answer
    assert outcome["b_progress"]["zipcodes_done"] == outcome["b_progress"]["zipcodes_total"] == 20
    reveal_status, revealed = outcome["reveal"]
    assert reveal_status == 200, revealed
    assert len(Manifest.model_validate(revealed["manifest"]).zipcodes) == 20

    stale_status, stale = outcome["stale"]
    assert stale_status == 200 and stale["status"] == "rejected"
    assert "not current" in stale["error"]

    # One line for A's 150 refusals, naming it; not one per request.
    alice = miner["people"]["alice"].hotkey
    lines = [line for line in miner["log"].read_text().splitlines() if "quota:" in line]
    assert len(lines) == 1 and alice in lines[0] and "uid 0" in lines[0], lines
