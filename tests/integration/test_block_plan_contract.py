"""The Data API block is the plan's contract (issue 16, item 1).

Incident guarded against: validators dropped the block's batches and
settings and re-batched its zipcodes with their own ``MINERS_PER_GROUP`` and
batch size, so two validators with different settings (or an owner changing
the batch size) built different plans for one epoch, and nothing said so.
Here two validators with different local settings read one epoch's block from
a real Data API on loopback and must build the same plan, the one the block
describes, each logging its disagreement once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace

import aiohttp
import pytest

from common.chain import MetagraphSnapshot, NeuronInfo
from common.signed_http import SignedClient
from config.consensus import AssignmentConfig, ConsensusConfig
from config.data_api import BlockConfig
from consensus.assignment import ZipcodeAssignmentManager
from consensus.engine import ConsensusEngine
from tests.integration.data_api_harness import EPOCH_S, free_port, make_subnet, running
from vali_utils.api_blocks import ApiBlocks
from vali_utils.blocks import BlockTimes, EpochBlock
from vali_utils.cycle import ConsensusCycle, eligible_miners
from vali_utils.data_api_client import RetryPolicy, ValidatorDataAPI

pytestmark = pytest.mark.integration

# The owner's settings, none of them the validators' defaults.
OWNER = BlockConfig(
    zipcodes_per_block=60,
    zipcodes_per_batch=12,
    groups_per_batch=2,
    miners_per_group=4,
    min_different_coldkeys=3,
    honeypots_per_block=2,
)
LOCAL_A = AssignmentConfig(miners_per_group=10)  # MINERS_PER_GROUP=10, default batch size
LOCAL_B = AssignmentConfig(miners_per_group=6, zipcodes_per_batch=7, max_batches_per_cycle=3)
FOLLOWS_BLOCK = AssignmentConfig(
    zipcodes_per_batch=12,
    miners_per_group=4,
    overlap_factor=2,
    max_batches_per_cycle=5,
    min_different_coldkeys=3,
)


@pytest.fixture(scope="module")
def subnet(tmp_path_factory):
    return make_subnet(tmp_path_factory.mktemp("block-plan"))


def graph() -> MetagraphSnapshot:
    neurons = [NeuronInfo(0, "validator-hk", "validator-ck", 1000.0, True, None)]
    neurons += [
        NeuronInfo(uid, f"hk{uid}", f"ck{uid}", 1.0, False, f"127.0.0.1:{9000 + uid}")
        for uid in range(1, 31)
    ]
    return MetagraphSnapshot(1, 100, tuple(neurons))


async def served_blocks(subnet, tmp_path) -> tuple[EpochBlock, EpochBlock]:
    """The epoch's block as each of two validators reads it from the Data API."""
    clock = subnet.clock(into_epoch_s=120)
    async with (
        aiohttp.ClientSession() as session,
        running(subnet, tmp_path / "api.sqlite", clock, blocks=OWNER) as api,
    ):
        out = []
        for name in ("validator", "validator2"):
            client = ValidatorDataAPI(
                api.url,
                subnet.owner.hotkey,
                subnet.people[name].keypair,
                session,
                cache_path=tmp_path / name / "block.json",
                timeout_s=2.0,
                retry=RetryPolicy(attempts=2, base_s=0.01, cap_s=0.05),
                now=clock,
            )
            out.append(await ApiBlocks(client).block(subnet.epoch))
        return out[0], out[1]


def disagreement_logs(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if "disagree with the Data API block" in r.getMessage()]


def test_validators_with_different_settings_follow_the_block(subnet, tmp_path, caplog):
    first, second = asyncio.run(served_blocks(subnet, tmp_path))
    assert first == second and first.layout is not None
    assert len(first.layout.batches) == 5 and {len(b) for b in first.layout.batches} == {12}

    a = ConsensusCycle(None, None, ZipcodeAssignmentManager(LOCAL_A), None)
    b = ConsensusCycle(None, None, ZipcodeAssignmentManager(LOCAL_B), None)
    with caplog.at_level(logging.WARNING, logger="vali_utils.block_plan"):
        plan_a, _ = a.plan(first, graph())
        plan_b, _ = b.plan(second, graph())
        again, _ = a.plan(first, graph())  # the same disagreement is not told twice
    assert plan_a.plan_hash == plan_b.plan_hash == again.plan_hash

    # The plan the block describes: its batches, in its order, with its settings.
    expected = ZipcodeAssignmentManager(FOLLOWS_BLOCK).plan_batches(
        first.layout.batches, eligible_miners(graph())[0], first.seed
    )
    assert plan_a.plan_hash == expected.plan_hash
    assert plan_a.config == FOLLOWS_BLOCK
    by_batch = plan_a.batches
    assert [by_batch[i][0].zipcodes for i in range(5)] == [
        tuple(sorted(b)) for b in first.layout.batches
    ]
    assert all(len(groups) == 2 for groups in by_batch.values())
    assert all(len(g.miners) == 4 for g in plan_a.groups)
    assert not plan_a.unassigned_zipcodes

    told = disagreement_logs(caplog)
    assert len(told) == 2  # once per validator
    assert "'miners_per_group': (10, 4)" in told[0].getMessage()
    assert "'min_different_coldkeys': (5, 3)" in told[0].getMessage()  # the owner's rule
    assert "'zipcodes_per_batch': (7, 12)" in told[1].getMessage()


def test_a_validator_whose_settings_match_the_block_says_nothing(subnet, tmp_path, caplog):
    block, _ = asyncio.run(served_blocks(subnet, tmp_path))
    cycle = ConsensusCycle(None, None, ZipcodeAssignmentManager(FOLLOWS_BLOCK), None)
    with caplog.at_level(logging.WARNING, logger="vali_utils.block_plan"):
        plan, _ = cycle.plan(block, graph())
    assert not disagreement_logs(caplog)
    assert plan.config == FOLLOWS_BLOCK


def test_the_block_deadlines_are_followed_and_a_disagreement_told_once(subnet, tmp_path, caplog):
    block, _ = asyncio.run(served_blocks(subnet, tmp_path))
    start = subnet.epoch * EPOCH_S
    # The harness's Data API is due at half the epoch; this validator's schedule says 0.75.
    local_collect, local_tiebreak = start + 0.75 * EPOCH_S, start + 0.875 * EPOCH_S
    cycle = ConsensusCycle(None, None, ZipcodeAssignmentManager(LOCAL_A), None)
    with caplog.at_level(logging.WARNING, logger="vali_utils.block_plan"):
        first = cycle.planner.deadlines(block, local_collect, local_tiebreak)
        second = cycle.planner.deadlines(block, local_collect, local_tiebreak)
    assert first == second == (start + 0.5 * EPOCH_S, start + 0.75 * EPOCH_S)
    told = [r for r in caplog.records if "collect deadline" in r.getMessage()]
    assert len(told) == 1 and "+900s" in told[0].getMessage()

    # A validator on an epoch clock of another length: the block cannot be followed.
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="vali_utils.block_plan"):
        kept = cycle.planner.deadlines(block, start + 5 * EPOCH_S, start + 6 * EPOCH_S)
    assert kept == (start + 5 * EPOCH_S, start + 6 * EPOCH_S)
    assert any("another length" in r.getMessage() for r in caplog.records)


def test_a_cycle_runs_to_the_blocks_deadline_not_the_local_one(subnet, tmp_path):
    """Through ConsensusCycle.run: the plan is the block's and miners are told its deadline.

    The block's deadline has just passed while the local schedule gives another
    hour: every assignment must carry the block's time, not the local one.
    """
    block, _ = asyncio.run(served_blocks(subnet, tmp_path))
    now = time.time()
    block = replace(block, times=BlockTimes(now - 600, now - 1, now + 7200))
    silent = [  # nothing listens there: dispatch fails fast, nobody answers
        NeuronInfo(uid, f"hk{uid}", f"ck{uid}", 1.0, False, f"127.0.0.1:{free_port()}")
        for uid in range(1, 11)
    ]
    snapshot = MetagraphSnapshot(1, 100, tuple(silent))

    async def scenario():
        async with aiohttp.ClientSession() as session:
            client = SignedClient(subnet.people["validator"].keypair, session, 1.0)
            cycle = ConsensusCycle(
                client,
                ConsensusEngine(ConsensusConfig()),
                ZipcodeAssignmentManager(LOCAL_A),
                None,
                poll_s=0.2,
                request_timeout_s=1.0,
            )
            return await asyncio.wait_for(
                cycle.run(block, snapshot, {}, now + 3600, now + 3600 + 450), 60
            )

    outcome = asyncio.run(scenario())
    assert outcome.plan.config == FOLLOWS_BLOCK
    expires = {a.request.expires_at.timestamp() for a in outcome.assignments}
    assert len(expires) == 1 and expires.pop() == pytest.approx(now - 1, abs=1e-3)
    assert outcome.responders == 0 and not outcome.spot_check_failures
