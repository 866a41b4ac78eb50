"""The validator's side of one assignment, in a process of its own (test_reveal_bounds).

    python -m tests.integration.reveal_bounds_child ENDPOINT MINER_HOTKEY STORE DEADLINE_S

Sends one assignment of ``ZIPCODES`` to the miner at ENDPOINT with the
validator's ``MinerExchange`` (real ``SignedClient``, real ``ValidatorStore``
at STORE), collects its commitment until the deadline, then resets the
kernel's peak-RSS mark and asks the reveal. Prints one JSON line: how far the
peak resident memory rose during the reveal (MB), the seconds the reveal took
past the moment it could be asked, the drops, the zipcodes of the manifest
kept and those of the manifest in the store.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
from bittensor.sp_core import Keypair

from common.manifest import Manifest
from common.protocol import DataAssignmentRequest
from common.signed_client import SignedClient
from consensus.assignment import MinerInfo
from vali_utils.assignments import SOURCE, Assignment
from vali_utils.exchange import REVEAL_MARGIN_S, MinerExchange
from vali_utils.store import ValidatorStore

ZIPCODES = [f"{10001 + i:05d}" for i in range(20)]  # a batch: 20 zipcodes
EPOCH = 1
VALIDATOR_URI = "//reveal-bounds-validator"
REQUEST_TIMEOUT_S = 5.0


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


async def main(endpoint: str, miner_hotkey: str, store_path: Path, deadline_s: float) -> None:
    deadline_wall = time.time() + deadline_s
    request = DataAssignmentRequest(
        request_id=f"e{EPOCH}-b0-g0",
        phase="assign",
        zipcode_assignments={SOURCE: ZIPCODES},
        expected_properties_per_zipcode=50,
        batch_id=0,
        overlap_group=0,
        epoch_id=f"epoch-{EPOCH}",
        expires_at=datetime.fromtimestamp(deadline_wall, UTC),
    )
    a = Assignment(None, MinerInfo(1, miner_hotkey, "ck-m"), endpoint, request)
    store = await ValidatorStore.open(store_path)
    await store.begin_cycle(EPOCH, [a.miner], {miner_hotkey: endpoint})
    async with aiohttp.ClientSession() as session:
        client = SignedClient(Keypair.create_from_uri(VALIDATOR_URI), session, REQUEST_TIMEOUT_S)
        exchange = MinerExchange(client, poll_s=0.1, request_timeout_s=REQUEST_TIMEOUT_S)
        exchange.store = store
        await exchange.dispatch([a])
        await exchange.collect([a], deadline_wall, EPOCH)
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
        before_kb = _status_kb("VmRSS:")
        dropped = await exchange.reveal([a], deadline_wall, EPOCH)
        reveal_s = time.time() - (deadline_wall + REVEAL_MARGIN_S)
        growth_mb = (_status_kb("VmHWM:") - before_kb) / 1024
    stored = (await store.progress(EPOCH))[(request.request_id, miner_hotkey)]
    await store.close()
    stored_zipcodes = (
        [z.zipcode for z in Manifest.model_validate_json(stored.answer_json).zipcodes]
        if stored.answer_json
        else []
    )
    line = {
        "mb": growth_mb,
        "reveal_s": reveal_s,
        "dropped": dict(dropped),
        "commitment": a.commitment,
        "kept": [z.zipcode for z in a.manifest.zipcodes] if a.manifest else None,
        "stored": stored_zipcodes,
        "error": a.error,
    }
    print(json.dumps(line), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], Path(sys.argv[3]), float(sys.argv[4])))
