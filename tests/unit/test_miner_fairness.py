"""Pure logic of serving validators fairly: quotas, turns, refusal logs, the epoch gate.

Guards against the incident of issue 15: one validator's 500 assignments in
8 s filled the miner's one global queue, and the other validator's work was
neither accepted nor scraped for two epochs.
"""

from __future__ import annotations

import asyncio

import pytest

from common.chain import MetagraphSnapshot, NeuronInfo
from common.epochs import EpochClock
from scraping.epoch_gate import EpochGate, NonceBook
from scraping.fairness import (
    FairSlots,
    OpenAssignments,
    QuotaPolicy,
    RefusalLog,
    RoundRobin,
    assignment_quota,
    validator_stakes,
)

pytestmark = pytest.mark.unit


def snapshot(*rows: tuple[str, float, bool]) -> MetagraphSnapshot:
    return MetagraphSnapshot(
        1,
        0,
        tuple(NeuronInfo(i, hk, f"ck{i}", st, vp, None) for i, (hk, st, vp) in enumerate(rows)),
    )


def test_quota_is_the_stake_share_of_the_capacity_with_a_floor():
    assert assignment_quota(900.0, 1000.0, 500, 50) == 450
    assert assignment_quota(100.0, 1000.0, 500, 50) == 50
    assert assignment_quota(1.0, 1000.0, 500, 50) == 50  # a small validator is still served
    assert assignment_quota(0.0, 0.0, 500, 50) == 50
    assert assignment_quota(float("nan"), 1000.0, 500, 50) == 50


def test_one_validator_at_its_quota_leaves_the_others_their_share():
    stakes = validator_stakes(
        snapshot(("A", 5000.0, True), ("B", 5000.0, True), ("poor", 10.0, True), ("m", 9e9, False)),
        min_stake=1000.0,
    )
    assert stakes == {"A": 5000.0, "B": 5000.0}  # no permit or too little stake: not served
    policy = QuotaPolicy(lambda: None, 1000.0, 500, 50)
    graph = snapshot(("A", 5000.0, True), ("B", 5000.0, True))
    policy.snapshot = lambda: graph
    assert policy.quota("A") == policy.quota("B") == 250
    assert policy.quota("A") + policy.quota("B") <= 500
    assert policy.quota("stranger") == 50


def test_round_robin_takes_one_item_of_each_validator_in_turn():
    turns = RoundRobin()
    for n in range(3):
        turns.add("A", f"a{n}", [f"a{n}-{z}" for z in range(40)])  # a flood, first in line
    turns.add("B", "b0", ["b0-0", "b0-1"])
    taken = [turns.pop() for _ in range(4)]
    assert [item for _, item in taken] == ["a0-0", "b0-0", "a0-1", "b0-1"]
    assert len(turns) == 3 * 40 - 2
    rest = [turns.pop() for _ in range(len(turns))]
    assert [item for _, item in rest[:2]] == ["a0-2", "a0-3"]  # B done: A goes on alone
    assert turns.pop() is None


def test_shared_work_is_served_in_each_sharing_validators_turn():
    turns = RoundRobin()
    turns.add("A", "flood", [f"f{z}" for z in range(10)])
    turns.add("B", "shared", ["s0", "s1", "s2"])
    turns.share("shared", "C")
    turns.share("shared", "C")  # asking twice counts once
    items = [turns.pop()[1] for _ in range(6)]
    # A, B, C in turn; B's and C's turns both take the shared assignment's items.
    assert items == ["f0", "s0", "s1", "f1", "s2", "f2"]


def test_fair_slots_start_a_late_validators_work_before_an_earlier_flood():
    async def scenario() -> list[str]:
        slots = FairSlots(concurrency=1)
        started: list[str] = []
        gate = asyncio.Event()

        async def job(validator: str, key: str, name: str) -> None:
            async with slots.lane(key, {validator}):
                started.append(name)
                await gate.wait()

        first = asyncio.create_task(job("A", "a", "a-first"))
        await asyncio.sleep(0)  # let it take the only slot
        flood = [asyncio.create_task(job("A", f"a{n}", f"a{n}")) for n in range(20)]
        late = asyncio.create_task(job("B", "b", "b"))
        cancelled = asyncio.create_task(job("A", "x", "never"))
        await asyncio.sleep(0)
        cancelled.cancel()
        gate.set()
        await asyncio.gather(first, late, *flood)
        assert slots.waiting == 0
        return started

    started = asyncio.run(scenario())
    assert started[:3] == ["a-first", "a0", "b"]  # B's one job waits one turn, not twenty
    assert "never" not in started and len(started) == 22


def test_refusals_are_logged_once_per_interval_with_the_count_in_between():
    log = RefusalLog(60.0)
    assert log.due("A", 0.0) == 0
    assert [log.due("A", t) for t in (1.0, 2.0, 59.0)] == [None, None, None]
    assert log.due("B", 3.0) == 0  # another validator has its own line
    assert log.due("A", 60.0) == 3
    assert log.due("A", 61.0) is None


def test_epoch_gate_takes_the_current_epoch_and_refuses_others():
    clock = EpochClock(3600.0, 0.75)
    gate = EpochGate(clock, slack_s=30.0, nonces=NonceBook())
    now = 100 * 3600.0 + 1000.0
    deadline = clock.deadline(100)
    assert gate.refusal("epoch-100", "ab" * 8, deadline, now) is None
    assert gate.refusal("epoch-100", None, None, now) is None
    assert "not current" in gate.refusal("epoch-99", None, None, now)
    assert "not current" in gate.refusal("epoch-101", None, None, now)
    assert "not an epoch id" in gate.refusal(None, None, None, now)
    assert "not an epoch id" in gate.refusal("tomorrow", None, None, now)
    assert "after the end" in gate.refusal("epoch-100", None, clock.end(100) + 3600, now)
    # A validator whose clock is a few seconds ahead at the boundary is still served.
    assert gate.refusal("epoch-101", None, None, clock.end(100) - 5.0) is None


def test_a_nonce_other_than_the_data_apis_is_refused_an_unknown_one_taken():
    gate = EpochGate(None, slack_s=30.0, nonces=NonceBook(keep=2))
    assert gate.refusal("epoch-7", "ab" * 8, None, 0.0) is None  # Data API not heard yet
    gate.nonces.learn(7, "cd" * 8)
    assert gate.refusal("epoch-7", "cd" * 8, None, 0.0) is None
    assert "nonce" in gate.refusal("epoch-7", "ab" * 8, None, 0.0)
    assert gate.refusal("epoch-7", None, None, 0.0) is None  # tie-break lookups carry none
    gate.nonces.learn(8, "ee" * 8)
    gate.nonces.learn(9, "ff" * 8)
    assert gate.nonces.get(7) is None  # only the last few epochs are kept


def test_open_work_counts_once_for_each_validator_that_asked_until_it_finishes():
    open_work = OpenAssignments()
    assert open_work.own("k1", "A") and open_work.own("k2", "A")
    assert not open_work.own("k1", "A")  # re-sent: still one
    assert open_work.own("k1", "B")  # the same content from B counts for B too
    assert (open_work.held("A"), open_work.held("B")) == (2, 1)
    assert open_work.owners("k1") == {"A", "B"}
    open_work.finish("k1")
    assert (open_work.held("A"), open_work.held("B")) == (1, 0)
    assert not open_work.holds("A", "k1")
    open_work.disown("k2", "A")
    assert open_work.held("A") == 0
