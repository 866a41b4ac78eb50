"""A validator-side client in a process of its own, asking a hostile miner (test_client_limits).

    python -m tests.integration.hostile_answer_child http://127.0.0.1:PORT TIMEOUT_S path...

For each path it resets the kernel's peak-RSS mark, posts a signed collect
request with ``SignedClient`` (the validator's client, default answer cap),
and prints one JSON line: path, status, error code, seconds taken, and how far
the peak resident memory rose above the resident memory before the call.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import aiohttp
from bittensor.sp_core import Keypair

from common.protocol import DataAssignmentRequest
from common.signed_client import SignedClient


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS


async def main(base_url: str, timeout_s: float, paths: list[str]) -> None:
    signer = Keypair.create_from_uri("//hostile-test-validator")
    miner = Keypair.create_from_uri("//hostile-test-miner").ss58_address
    request = DataAssignmentRequest(request_id="hostile-1", phase="collect")
    async with aiohttp.ClientSession() as session:
        client = SignedClient(signer, session, timeout_s)
        for path in paths:
            _reset_peak()
            before = _status_kb("VmRSS:")
            started = time.monotonic()
            status, answer = await client.post(
                base_url, miner, path, request, DataAssignmentRequest
            )
            elapsed = time.monotonic() - started
            growth_mb = (_status_kb("VmHWM:") - before) / 1024
            code = getattr(answer, "code", None)
            line = {"path": path, "status": status, "code": code, "s": elapsed, "mb": growth_mb}
            print(json.dumps(line), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], float(sys.argv[2]), sys.argv[3:]))
