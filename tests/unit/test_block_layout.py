"""A Data API block as the validator's plan contract: its batches, settings and times.

What a block carries must reach the plan: the batches as they are, in their
order, and the settings, whatever the validator's own; a block no plan can be
built from (a zipcode twice) is refused, not re-batched into something else.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from common.data_api_models import BlockBatch, BlockSettings, BlockZipcode, ZipcodeBlock
from config.consensus import AssignmentConfig
from consensus.assignment import MinerInfo, ZipcodeAssignmentManager
from vali_utils.api_blocks import ApiBlocks
from vali_utils.blocks import BlockTimes, EpochBlock, block_deadlines, config_disagreements
from vali_utils.data_api_client import epoch_block
from vali_utils.evaluator import BlocksUnavailable

pytestmark = pytest.mark.unit

MINERS = [MinerInfo(uid, f"hk{uid}", f"ck{uid}") for uid in range(1, 21)]
START = 1_800_000_000.0


def wire_block(batches: list[list[str]], per_batch: int = 3, miners_per_group: int = 3):
    def at(offset: float) -> datetime:
        return datetime.fromtimestamp(START + offset, UTC)

    return ZipcodeBlock(
        block_id="e5-abc",
        epoch_id=5,
        issued_at=at(0),
        expires_at=at(3600),
        ends_at=at(7200),
        seed=12345,
        nonce="0" * 32,
        batches=[
            BlockBatch(
                batch_id=i,
                zipcodes=[
                    BlockZipcode(zipcode=z, state="TX", lat=30.0, lng=-95.0, expected_properties=35)
                    for z in batch
                ],
            )
            for i, batch in enumerate(batches)
        ],
        config=BlockSettings(
            zipcodes_per_batch=per_batch, groups_per_batch=2, miners_per_group=miners_per_group
        ),
    )


BATCHES = [["77494", "10001", "94103"], ["60601", "30301", "02108"], ["98101"]]


def test_the_plan_keeps_the_blocks_batches_in_order():
    block = epoch_block(wire_block(BATCHES))
    assert block.layout is not None and block.times is not None
    assert block.times.expires_at == START + 3600
    config = block.layout.assignment_config(AssignmentConfig())
    plan = ZipcodeAssignmentManager(config).plan_batches(block.layout.batches, MINERS, block.seed)
    assert [plan.batches[i][0].zipcodes for i in range(3)] == [tuple(sorted(b)) for b in BATCHES]
    assert config.max_batches_per_cycle == 3 and config.miners_per_group == 3
    assert all(len(g.miners) == 3 for g in plan.groups) and len(plan.groups) == 6


def test_the_plan_does_not_depend_on_the_order_zipcodes_are_listed_in_a_batch():
    shuffled = [list(reversed(b)) for b in BATCHES]
    plans = [
        ZipcodeAssignmentManager().plan_batches(batches, MINERS, b"seed")
        for batches in (BATCHES, shuffled)
    ]
    assert plans[0].plan_hash == plans[1].plan_hash


def test_batches_past_the_cap_are_left_unassigned():
    plan = ZipcodeAssignmentManager(AssignmentConfig(max_batches_per_cycle=2)).plan_batches(
        BATCHES, MINERS, b"seed"
    )
    assert plan.unassigned_zipcodes == ("98101",)
    assert sorted(plan.batches) == [0, 1]


@pytest.mark.parametrize(
    "batches",
    [
        [["77494", "10001"], ["10001", "60601"]],  # a zipcode in two batches
        [["77494", "77494"]],  # twice in one batch
        [["77494"], []],  # an empty batch
        [["7749"]],  # not a zipcode
    ],
)
def test_malformed_batches_are_refused(batches):
    with pytest.raises(ValueError):
        ZipcodeAssignmentManager().plan_batches(batches, MINERS, b"seed")


def test_a_block_repeating_a_zipcode_is_unavailable_not_rebatched():
    class OneBlock:
        async def block(self, epoch: int) -> ZipcodeBlock:
            return wire_block([["77494", "10001"], ["10001", "60601"]])

    with pytest.raises(ValueError):
        epoch_block(wire_block([["77494", "10001"], ["10001", "60601"]]))
    with pytest.raises(BlocksUnavailable):
        asyncio.run(ApiBlocks(OneBlock()).block(5))


def test_disagreements_name_each_setting_with_local_and_followed_values():
    local = AssignmentConfig(miners_per_group=6)
    followed = epoch_block(wire_block(BATCHES)).layout.assignment_config(local)
    assert config_disagreements(local, followed) == {
        "zipcodes_per_batch": (20, 3),
        "miners_per_group": (6, 3),
        "max_batches_per_cycle": (50, 3),
    }
    assert config_disagreements(followed, followed) == {}


def test_a_local_block_keeps_the_local_deadlines():
    local = EpochBlock(5, "local-1-5", ("77494",), b"seed")
    assert block_deadlines(local, START + 10, START + 20) == (START + 10, START + 20)
    served = epoch_block(wire_block(BATCHES))
    assert block_deadlines(served, START + 5400, START + 6300) == (START + 3600, START + 5400)
    assert block_deadlines(served, START + 5400, None) == (START + 3600, None)


def test_block_times_out_of_order_are_not_followed():
    served = epoch_block(wire_block(BATCHES))
    backwards = replace(served, times=BlockTimes(START, START + 7200, START + 3600))
    assert block_deadlines(backwards, START + 5400, START + 6300) == (START + 5400, START + 6300)


def test_the_blocks_coldkey_rules_are_followed_whatever_the_local_ones():
    wire = wire_block(BATCHES)
    rules = {"max_miners_per_coldkey": 2, "min_different_coldkeys": 3}
    wire = wire.model_copy(update={"config": wire.config.model_copy(update=rules)})
    local = AssignmentConfig()  # one miner per coldkey, five coldkeys a group
    followed = epoch_block(wire).layout.assignment_config(local)
    assert (followed.max_miners_per_coldkey, followed.min_different_coldkeys) == (2, 3)
    disagreements = config_disagreements(local, followed)
    assert disagreements["max_miners_per_coldkey"] == (1, 2)
    assert disagreements["min_different_coldkeys"] == (5, 3)


def test_a_block_from_before_the_coldkey_rules_means_the_defaults():
    sent = wire_block(BATCHES).model_dump(mode="json")
    for name in ("max_miners_per_coldkey", "min_different_coldkeys"):
        del sent["config"][name]
    followed = epoch_block(ZipcodeBlock.model_validate(sent)).layout.assignment_config(
        AssignmentConfig(max_miners_per_coldkey=3, min_different_coldkeys=2)
    )
    assert (followed.max_miners_per_coldkey, followed.min_different_coldkeys) == (1, 5)
