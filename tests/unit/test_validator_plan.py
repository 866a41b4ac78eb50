"""Two validators build the same plan from the same epoch and metagraph, whatever the order."""

from __future__ import annotations

import random

import pytest

from common.chain import MetagraphSnapshot, NeuronInfo
from consensus.assignment import ZipcodeAssignmentManager
from vali_utils.blocks import LocalBlockSource
from vali_utils.cycle import ConsensusCycle, eligible_miners

pytestmark = pytest.mark.unit

UNIVERSE = [f"{n:05d}" for n in range(1001, 6001)]


def graph(order_seed: int) -> MetagraphSnapshot:
    neurons = [NeuronInfo(0, "validator-hk", "validator-ck", 1000.0, True, None)]
    neurons += [
        NeuronInfo(uid, f"hk{uid}", f"ck{uid % 17}", 1.0, False, f"127.0.0.1:{9000 + uid}")
        for uid in range(1, 41)
    ]
    neurons.append(NeuronInfo(41, "silent-hk", "silent-ck", 1.0, False, None))  # not serving
    random.Random(order_seed).shuffle(neurons)
    return MetagraphSnapshot(1, 100, tuple(neurons))


def plan_of(order_seed: int, epoch: int) -> str:
    cycle = ConsensusCycle(None, None, ZipcodeAssignmentManager(), None)
    block = LocalBlockSource(1, UNIVERSE, 200).block(epoch)
    plan, endpoints = cycle.plan(block, graph(order_seed))
    assert "silent-hk" not in endpoints and "validator-hk" not in endpoints
    return plan.plan_hash


def test_two_validators_compute_identical_plans():
    assert plan_of(order_seed=1, epoch=5) == plan_of(order_seed=2, epoch=5)
    assert plan_of(order_seed=1, epoch=5) != plan_of(order_seed=1, epoch=6)


def test_only_serving_non_validators_are_eligible():
    miners, endpoints = eligible_miners(graph(0))
    assert len(miners) == 40
    assert set(endpoints) == {m.hotkey for m in miners}


def test_local_blocks_are_drawn_from_the_residential_universe():
    """No Data API: every validator draws the same real residential zipcodes, no simulation."""
    from neurons.validator import local_universe

    universe = local_universe()
    first = LocalBlockSource(1, universe, 200).block(5)
    again = LocalBlockSource(1, list(reversed(universe)), 200).block(5)
    assert first == again and len(first.zipcodes) == 200
    assert set(first.zipcodes) <= set(universe)
    assert LocalBlockSource(1, universe, 200).block(6).zipcodes != first.zipcodes
    assert LocalBlockSource(2, universe, 200).block(5).zipcodes != first.zipcodes
