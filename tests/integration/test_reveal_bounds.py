"""A hostile miner's reveal is bounded by the assignment it answers (issue 15, item 2).

Incident: a revealed manifest could list 200 zipcodes x 5,000 records whatever
the miner was assigned, and the validator kept and stored it as received:
one miner added 1.1 GB of validator memory, 8.5 s of CPU and 156 MB of
SQLite rows per epoch. Now the validator reads a reveal up to a cap derived
from the assignment (its zipcodes x their record bound), and keeps and
stores only the assigned zipcodes, each within its bound.

The hostile miner is an aiohttp server on loopback in this process; the
validator is ``MinerExchange`` with its real client and store in a process
of its own (``reveal_bounds_child.py``), whose peak resident memory during
the reveal is read from the kernel (VmHWM).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator, Callable

import pytest
from aiohttp import web
from bittensor.sp_core import Keypair

from common.manifest import (
    MAX_RECORDS_PER_ZIPCODE,
    MAX_ZIPCODES_PER_MANIFEST,
    Manifest,
    ZipcodeManifest,
    manifest_commitment,
    new_salt,
)
from common.protocol import AssignmentStatus, DataAssignmentRequest, commitment_message
from tests.integration.neurons import ROOT
from tests.integration.reveal_bounds_child import REQUEST_TIMEOUT_S, ZIPCODES
from vali_utils.assignments import MIN_RECORD_BOUND, SOURCE

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.asyncio]

MINER = Keypair.create_from_uri("//reveal-bounds-miner")
DEADLINE_S = 1.5
MAX_GROWTH_MB = 50
CHILD_TIMEOUT_S = 60
UNASSIGNED = [f"{90001 + i:05d}" for i in range(MAX_ZIPCODES_PER_MANIFEST - len(ZIPCODES))]


def records(zipcode: str, count: int) -> list[tuple[str, str]]:
    return [(f"{zipcode}{i:05d}", f"{i:032x}") for i in range(count)]


def entry(zipcode: str, count: int) -> ZipcodeManifest:
    return ZipcodeManifest(
        zipcode=zipcode, source=SOURCE.value, record_count=count, records=records(zipcode, count)
    )


class HostileRevealer:
    """Accepts, commits (signed, completed) at once, and reveals what ``reveal`` streams."""

    def __init__(self, commitment: str, reveal: Callable[[], AsyncIterator[bytes]]) -> None:
        self.commitment = commitment
        self.reveal = reveal
        self.reveal_bytes_sent = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        ask = DataAssignmentRequest.model_validate_json(await request.read())
        update: dict = {"accepted": True, "status": AssignmentStatus.COMPLETED}
        if ask.phase == "assign":
            self.key = ask.assignment_key()
        if ask.phase == "collect":
            message = commitment_message(self.key, ask.epoch_id, self.commitment)
            signature = "0x" + bytes(MINER.sign(message)).hex()
            update |= {"commitment": self.commitment, "commitment_signature": signature}
        if ask.phase != "reveal":
            return web.json_response(text=ask.model_copy(update=update).model_dump_json())
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()  # no Content-Length: the client must count
        await response.prepare(request)
        try:
            async for chunk in self.reveal():
                await response.write(chunk)
                self.reveal_bytes_sent += len(chunk)
            await response.write_eof()
        except ConnectionError:
            pass  # the validator hung up at its cap: what we want
        return response


async def run_validator(miner: HostileRevealer, tmp_path) -> dict:
    app = web.Application(client_max_size=1024**2)
    app.router.add_post("/DataAssignmentRequest", miner.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.integration.reveal_bounds_child",
            f"127.0.0.1:{port}",
            MINER.ss58_address,
            str(tmp_path / "validator.sqlite"),
            str(DEADLINE_S),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(child.communicate(), CHILD_TIMEOUT_S)
    finally:
        await runner.cleanup()
    assert child.returncode == 0, err.decode()[-2000:]
    return json.loads(out.decode().strip().splitlines()[-1])


async def test_an_oversized_reveal_is_refused_at_the_assignments_cap(tmp_path):
    """200 zipcodes x 5,000 records (about 60 MB, streamed without a length) for 20 assigned."""
    commitment = secrets.token_hex(32)

    async def oversized() -> AsyncIterator[bytes]:
        head = {"request_id": "e1-b0-g0", "phase": "reveal", "commitment": commitment}
        yield (json.dumps(head)[:-1] + f', "salt": "{new_salt()}", "manifest": ').encode()
        yield f'{{"miner_hotkey": "{MINER.ss58_address}", "zipcodes": ['.encode()
        for i, zipcode in enumerate(ZIPCODES + UNASSIGNED):
            one = entry(zipcode, MAX_RECORDS_PER_ZIPCODE).model_dump_json()
            yield (("," if i else "") + one).encode()
        yield b"]}}"

    miner = HostileRevealer(commitment, oversized)
    seen = await run_validator(miner, tmp_path)

    assert seen["mb"] < MAX_GROWTH_MB, seen
    assert seen["reveal_s"] < REQUEST_TIMEOUT_S, seen
    assert seen["dropped"] == {"not_revealed": 1} and "answer_too_large" in seen["error"]
    assert seen["kept"] is None and seen["stored"] == []
    assert miner.reveal_bytes_sent < 40 * 1024**2  # it stopped reading long before the end


async def test_a_reveal_padded_with_unassigned_zipcodes_keeps_only_the_assignment(tmp_path):
    """Within the cap and matching its commitment: 180 unassigned zipcodes and one assigned
    zipcode over its record bound are dropped before anything is kept or stored."""
    over = ZIPCODES[0]
    manifest = Manifest(
        epoch_id="epoch-1",
        miner_hotkey=MINER.ss58_address,
        zipcodes=[entry(over, MIN_RECORD_BOUND + 1)]
        + [entry(z, 10) for z in ZIPCODES[1:]]
        + [entry(z, 200) for z in UNASSIGNED],
    )
    salt = new_salt()
    commitment = manifest_commitment(manifest, salt)
    answer = DataAssignmentRequest(
        request_id="e1-b0-g0",
        phase="reveal",
        commitment=commitment,
        salt=salt,
        manifest=manifest,
        accepted=True,
        status=AssignmentStatus.COMPLETED,
    ).model_dump_json(exclude_none=True)

    async def padded() -> AsyncIterator[bytes]:
        yield answer.encode()

    miner = HostileRevealer(commitment, padded)
    seen = await run_validator(miner, tmp_path)

    assert seen["commitment"] == commitment  # the hash was checked on what was received
    assert seen["mb"] < MAX_GROWTH_MB, seen
    assert seen["reveal_s"] < REQUEST_TIMEOUT_S, seen
    assert seen["dropped"] == {"unassigned_zipcode": len(UNASSIGNED), "over_record_bound": 1}
    assert seen["kept"] == ZIPCODES[1:] and seen["stored"] == ZIPCODES[1:]
