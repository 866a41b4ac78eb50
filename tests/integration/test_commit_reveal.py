"""Commit, then reveal, against hostile miners on loopback (real signed HTTP both ways).

Guards against two incidents of the collect phase before protocol v2:

- a miner answered "completed" with an empty manifest right after assign (the
  validator records completion once), swapped in a real manifest at the
  deadline and was still paid the fast-completion bonus: now completion is
  the first time the *final* commitment was seen completed;
- a miner could show one manifest while the epoch ran and another after:
  now only a revealed manifest that hashes to the last commitment counts.

And an old (protocol v1) miner meeting this validator is told to upgrade, in
a log line, instead of scoring a silent zero.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import aiohttp
import pytest
from aiohttp import web
from bittensor.sp_core import Keypair
from pydantic import ConfigDict, create_model

from common.chain import MetagraphSnapshot, NeuronInfo
from common.manifest import Manifest, manifest_commitment, new_salt
from common.protocol import ROUTE, AssignmentStatus, DataAssignmentRequest, commitment_message
from common.signed_http import AccessPolicy, SignedClient, signed_endpoint
from consensus.assignment import MinerInfo
from tests.unit import manifest_builders as builders
from vali_utils.assignments import SOURCE, Assignment
from vali_utils.exchange import MinerExchange

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

ZIPCODES = ["10001", "10002", "10003"]
DEADLINE_S = 2.0
POLL_S = 0.1
SWITCH_AT_POLL = 5  # the hostile miner changes its manifest from this poll on

VALIDATOR = Keypair.create_from_uri("//Alice")
MINER = Keypair.create_from_uri("//Bob")


def manifest_of(zipcodes: list[str], records_each: int) -> Manifest:
    """The miner's manifest for epoch 1: zpids that start with their zipcode."""
    return builders.manifest_of(
        zipcodes,
        records_each,
        zpid=lambda zipcode, i: f"{zipcode}{i:03d}",
        epoch_id="epoch-1",
        miner_hotkey=MINER.ss58_address,
    )


class HostileMiner:
    """Commits a thin manifest (M1) first and the real one (M2) from poll ``SWITCH_AT_POLL``.

    ``claims_early``: M1 already comes with status completed (the early claim);
    otherwise M1 is in progress and M2 comes completed. ``reveal`` says what it
    shows after the deadline: ``"committed"`` (the manifest of the commitment
    the validator names), ``"latest"`` (M2 whatever was committed) or
    ``"other"`` (M1 under M2's commitment). It also sends M1 itself in its
    early collect answers, which must not count.
    """

    def __init__(self, reveal: str, claims_early: bool = False) -> None:
        self.reveal = reveal
        self.claims_early = claims_early
        self.salt = new_salt()
        self.early = manifest_of(ZIPCODES[:1], 0)
        self.final = manifest_of(ZIPCODES, 3)
        self.polls = 0
        self.first_served: dict[str, float] = {}  # commitment -> wall time first sent

    def commitment(self, manifest: Manifest) -> str:
        return manifest_commitment(manifest, self.salt)

    async def handle(self, caller: NeuronInfo, request: DataAssignmentRequest):
        done = {"accepted": True, "status": AssignmentStatus.COMPLETED}
        if request.phase == "assign":
            self.key = request.assignment_key()  # a real miner keys its store by this
            return request.model_copy(update=done)
        if request.phase == "collect":
            self.polls += 1
            switched = self.polls >= SWITCH_AT_POLL
            manifest = self.final if switched else self.early
            status = (
                AssignmentStatus.COMPLETED
                if switched or self.claims_early
                else AssignmentStatus.IN_PROGRESS
            )
            commitment = self.commitment(manifest)
            self.first_served.setdefault(commitment, time.time())
            leak = self.early if manifest is self.early else None
            # Signed like a real miner's: validators keep no unsigned commitment.
            signature = MINER.sign(commitment_message(self.key, request.epoch_id, commitment))
            return request.model_copy(
                update={
                    "accepted": True,
                    "status": status,
                    "commitment": commitment,
                    "commitment_signature": "0x" + bytes(signature).hex(),
                    "manifest": leak,
                }
            )
        if self.reveal == "committed":
            shown = self.early if request.commitment == self.commitment(self.early) else self.final
        else:
            shown = self.final if self.reveal == "latest" else self.early
        return request.model_copy(update=done | {"manifest": shown, "salt": self.salt})


def snapshot(port: int) -> MetagraphSnapshot:
    return MetagraphSnapshot(
        1,
        1,
        (
            NeuronInfo(0, VALIDATOR.ss58_address, "ck-v", 1000.0, True, None),
            NeuronInfo(1, MINER.ss58_address, "ck-m", 1.0, False, f"127.0.0.1:{port}"),
        ),
    )


@contextlib.asynccontextmanager
async def serving(handler, model=DataAssignmentRequest) -> AsyncIterator[str]:
    """A miner endpoint on loopback behind the real signed-HTTP checks: its address, until
    the block ends."""
    graph: list[MetagraphSnapshot] = []
    policy = AccessPolicy(self_hotkey=MINER.ss58_address, metagraph=lambda: graph[0])
    app = web.Application()
    app.router.add_post(ROUTE, signed_endpoint(policy, model, handler))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    graph.append(snapshot(port))
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def assignment(endpoint: str, deadline_wall: float) -> Assignment:
    request = DataAssignmentRequest(
        request_id="e1-b0-g0",
        phase="assign",
        zipcode_assignments={SOURCE: ZIPCODES},
        batch_id=0,
        overlap_group=0,
        epoch_id="epoch-1",
        expires_at=datetime.fromtimestamp(deadline_wall, UTC),
    )
    return Assignment(None, MinerInfo(1, MINER.ss58_address, "ck-m"), endpoint, request)


async def exchange_with(handler) -> tuple[Assignment, dict]:
    """One assignment through dispatch, collect and reveal against a miner answering with
    ``handler``: (the assignment, what the reveal dropped)."""
    deadline_wall = time.time() + DEADLINE_S
    async with serving(handler) as endpoint, aiohttp.ClientSession() as session:
        a = assignment(endpoint, deadline_wall)
        exchange = MinerExchange(SignedClient(VALIDATOR, session), poll_s=POLL_S)
        await exchange.dispatch([a])
        await exchange.collect([a], deadline_wall, 1)
        assert a.manifest is None  # a manifest sent before the deadline is never taken
        dropped = await exchange.reveal([a], deadline_wall, 1)
    return a, dict(dropped)


async def test_a_manifest_changed_after_an_early_claim_earns_nothing():
    """The early claim binds: the validator stops polling at a completed commitment, so the
    real manifest committed later is never seen, and revealing it does not match."""
    miner = HostileMiner(reveal="latest", claims_early=True)
    a, dropped = await exchange_with(miner.handle)
    assert miner.polls == 1  # nothing asked after the completed commitment
    assert a.commitment == miner.commitment(miner.early) and a.commitment_completed
    assert a.manifest is None and dropped == {"reveal_mismatch": 1}


async def test_the_early_claim_revealed_as_committed_is_all_it_gets():
    """Revealing what it claimed early counts, and is only the thin manifest it claimed."""
    miner = HostileMiner(reveal="committed", claims_early=True)
    a, dropped = await exchange_with(miner.handle)
    assert a.manifest == miner.early and dropped == {}


async def test_a_manifest_changed_before_completion_is_timed_at_the_change():
    miner = HostileMiner(reveal="committed")
    a, dropped = await exchange_with(miner.handle)
    early, final = miner.commitment(miner.early), miner.commitment(miner.final)
    assert miner.polls == SWITCH_AT_POLL  # polled until the completed commitment, no further
    assert a.commitment == final and a.commitment_completed
    # Timed from the first sight of the completed commitment, not from the first answer.
    assert a.commitment_seen_wall >= miner.first_served[final]
    assert a.completed_after_s == pytest.approx(a.commitment_seen_wall - a.dispatched_wall)
    assert a.completed_after_s >= miner.first_served[final] - a.dispatched_wall
    assert a.completed_after_s > miner.first_served[early] - a.dispatched_wall + 3 * POLL_S
    assert a.manifest == miner.final and dropped == {}


async def test_a_reveal_other_than_the_commitment_is_dropped(caplog):
    miner = HostileMiner(reveal="other")
    with caplog.at_level(logging.WARNING, logger="vali_utils.exchange"):
        a, dropped = await exchange_with(miner.handle)
    assert a.commitment == miner.commitment(miner.final)
    assert a.manifest is None and a.error == "reveal_mismatch"
    assert dropped == {"reveal_mismatch": 1}
    lines = [r.getMessage() for r in caplog.records if "does not match" in r.getMessage()]
    assert len(lines) == 1
    assert MINER.ss58_address in lines[0] and "e1-b0-g0" in lines[0] and "uid 1" in lines[0]


async def test_a_signed_commitment_is_kept_with_its_proof_and_a_forged_one_is_not():
    """The miner's hotkey signs (assignment key, epoch, commitment); a wrong signer or no
    signature is refused."""
    salt, manifest = new_salt(), manifest_of(ZIPCODES, 2)
    commitment = manifest_commitment(manifest, salt)
    signer = {"key": MINER}
    keys: list[str] = []

    async def handle(caller, request):
        done = {"accepted": True, "status": AssignmentStatus.COMPLETED}
        if request.phase == "assign":
            keys.append(request.assignment_key())  # a real miner keys its store by this
            return request.model_copy(update=done)
        if request.phase == "reveal":
            return request.model_copy(update=done | {"manifest": manifest, "salt": salt})
        if signer["key"] is None:
            return request.model_copy(update=done | {"commitment": commitment})
        message = commitment_message(keys[-1], request.epoch_id, commitment)
        signature = "0x" + bytes(signer["key"].sign(message)).hex()
        return request.model_copy(
            update=done | {"commitment": commitment, "commitment_signature": signature}
        )

    async with serving(handle) as endpoint:
        deadline_wall = time.time() + DEADLINE_S
        honest, forged, unsigned = (assignment(endpoint, deadline_wall) for _ in range(3))
        async with aiohttp.ClientSession() as session:
            exchange = MinerExchange(SignedClient(VALIDATOR, session), poll_s=POLL_S)
            await exchange.dispatch([honest, forged, unsigned])
            await exchange.poll(honest)
            assert honest.commitment == commitment and honest.commitment_signature
            signer["key"] = VALIDATOR  # now signed by another hotkey than the miner's
            await exchange.poll(forged)
            assert forged.commitment is None and forged.error == "bad commitment signature"
            signer["key"] = None  # no signature at all
            await exchange.poll(unsigned)
            assert unsigned.commitment is None and unsigned.error == "bad commitment signature"


async def test_an_old_protocol_miner_is_told_to_upgrade(caplog):
    """A v1 miner refuses the unknown protocol_version field (422): the log says upgrade."""
    fields = {
        name: (field.annotation, field)
        for name, field in DataAssignmentRequest.model_fields.items()
        if name != "protocol_version"
    }
    v1_request = create_model(
        "V1DataAssignmentRequest", __config__=ConfigDict(extra="forbid"), **fields
    )

    async def old_miner(caller, request):
        raise AssertionError("a v2 body must not parse as v1")

    async with serving(old_miner, v1_request) as endpoint:
        a = assignment(endpoint, time.time() + DEADLINE_S)
        async with aiohttp.ClientSession() as session:
            exchange = MinerExchange(SignedClient(VALIDATOR, session), poll_s=POLL_S)
            with caplog.at_level(logging.WARNING, logger="vali_utils.exchange"):
                await exchange.dispatch([a])
    assert not a.accepted and not a.retryable
    assert a.error.startswith("protocol:") and "must upgrade" in a.error
    lines = [r.getMessage() for r in caplog.records if "protocol version" in r.getMessage()]
    assert len(lines) == 1
    assert "miner must upgrade" in lines[0] and "v1" in lines[0] and "v2" in lines[0]
    assert MINER.ss58_address in lines[0]
