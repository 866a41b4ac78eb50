"""The validator's schedule: consensus on epoch boundaries, S3 evaluation in between,
S3 evaluation alone while the Data API is down, and back to consensus when it returns.

Real asyncio time with epochs of a few seconds; the cycle, chain and blocks are
stand-ins that record what they were asked and when.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from common.chain import MetagraphSnapshot, NeuronInfo
from config.consensus import AssignmentConfig
from consensus.assignment import ZipcodeAssignmentManager
from consensus.scoring import ScoringState
from consensus.types import CycleResult
from vali_utils.blocks import EpochBlock
from vali_utils.cycle import CycleOutcome, eligible_miners
from vali_utils.evaluator import BlocksUnavailable, EnhancedMinerEvaluator, Schedule
from vali_utils.metrics import ValidatorMetrics
from vali_utils.store import ValidatorStore

pytestmark = pytest.mark.unit

# Long enough that what runs between an S3 round and the next cycle on a loaded
# machine (a gc pass, the round's SQLite commit; a 0.6 s delay was seen in a
# full-suite run) stays well inside the join window (half the collect window: 1.1 s).
EPOCH_S = 3.0


def _graph(miners: int = 6) -> MetagraphSnapshot:
    neurons = [NeuronInfo(0, "validator", "cv", 1000.0, True, None)]
    neurons += [
        NeuronInfo(i, f"hk{i}", f"ck{i}", 1.0, False, f"127.0.0.1:{9000 + i}")
        for i in range(1, miners + 1)
    ]
    return MetagraphSnapshot(1, 1, tuple(neurons))


class FakeSync:
    def __init__(self, graph):
        self.snapshot = graph

    async def refresh(self):
        return self.snapshot


class FakeChain:
    def __init__(self):
        self.weights = []

    async def set_weights(self, weights):
        self.weights.append(dict(weights))


class FakeBlocks:
    def __init__(self, down: set[int]):
        self.down = down

    async def block(self, epoch: int) -> EpochBlock:
        if epoch in self.down:
            raise BlocksUnavailable("Data API unreachable")
        return EpochBlock(epoch, f"b{epoch}", ("10001",), epoch.to_bytes(8, "big"))


class FakeCycle:
    """Records each run as (epoch, start, end) and answers an empty result."""

    def __init__(self):
        self.runs: list[tuple[int, float, float]] = []

    async def run(self, block, graph, credibility, deadline, tiebreak_deadline):
        started = time.time()
        await asyncio.sleep(0.05)
        miners, _ = eligible_miners(graph)
        plan = ZipcodeAssignmentManager(AssignmentConfig()).create_plan(
            list(block.zipcodes), miners, block.seed
        )
        self.runs.append((block.epoch, started, time.time()))
        return CycleOutcome(plan, CycleResult({}, {}, [], [], {}), [], [])


def _evaluator(tmp_path, store, down=(), max_cycles=3, miners=6):
    s3_calls: list[tuple[int, float, float]] = []

    async def s3_pass(state: ScoringState, epoch: int, deadline: float):
        started = time.time()
        await asyncio.sleep(0.01)
        s3_calls.append((epoch, started, time.time()))
        return state

    cycle = FakeCycle()
    metrics = ValidatorMetrics()
    evaluator = EnhancedMinerEvaluator(
        FakeChain(),
        FakeSync(_graph(miners)),
        cycle,
        FakeBlocks(set(down)),
        store,
        Schedule(EPOCH_S, 0.75),
        metrics=metrics,
        s3_pass=s3_pass,
        s3_pass_interval_s=0.1,
        min_eligible_miners=2,
        max_cycles=max_cycles,
    )
    return evaluator, cycle, s3_calls, metrics


def _run(evaluator, seconds: float):
    async def main():
        stop = asyncio.Event()
        task = asyncio.create_task(evaluator.run(stop))
        try:
            await asyncio.wait_for(asyncio.shield(task), seconds)
        except TimeoutError:
            stop.set()
            await task

    asyncio.run(main())


def _open(tmp_path):
    return asyncio.run(ValidatorStore.open(tmp_path / "v.sqlite"))


def test_consensus_on_boundaries_and_s3_evaluation_only_between(tmp_path):
    evaluator, cycle, s3_calls, _ = _evaluator(tmp_path, _open(tmp_path), max_cycles=3)
    _run(evaluator, 6 * EPOCH_S)
    assert len(cycle.runs) == 3
    epochs = [e for e, _, _ in cycle.runs]
    # One cycle per epoch, in order (a loaded machine may make it skip one, never repeat).
    assert epochs == sorted(set(epochs))
    for epoch, started, _ in cycle.runs[1:]:
        # Later cycles start at their boundary (the first may join its epoch late): never
        # before it, and early enough to join (half the collect window left); a loaded
        # machine delays the start by a fraction of a second.
        assert 0 <= started - epoch * EPOCH_S < 0.75 * EPOCH_S / 2, (epoch, started)
    assert s3_calls, "S3 evaluation never ran between cycles"
    for _, s3_start, s3_end in s3_calls:
        for _, c_start, c_end in cycle.runs:
            assert s3_end <= c_start or s3_start >= c_end, "S3 evaluation overlapped a cycle"


def test_fallback_while_the_data_api_is_down_then_back_to_consensus(tmp_path):
    schedule = Schedule(EPOCH_S, 0.75)
    first, _ = schedule.next_cycle(time.time())
    down = {first + 1, first + 2}
    evaluator, cycle, s3_calls, metrics = _evaluator(
        tmp_path, _open(tmp_path), down=down, max_cycles=2
    )
    _run(evaluator, 8 * EPOCH_S)
    kinds = [(what, epoch) for what, epoch, _ in evaluator.events if what != "s3_eval"]
    assert kinds[:4] == [
        ("consensus", first),
        ("fallback", first + 1),
        ("fallback", first + 2),
        ("consensus", first + 3),
    ]
    # The fallback epochs were spent on S3 evaluation of those epochs.
    assert {first + 1, first + 2} <= {epoch for epoch, _, _ in s3_calls}
    assert metrics.mode.labels("consensus")._value.get() == 1.0
    assert [e for e, _, _ in cycle.runs] == [first, first + 3]


def test_too_few_eligible_miners_fall_back(tmp_path):
    evaluator, cycle, s3_calls, metrics = _evaluator(
        tmp_path, _open(tmp_path), max_cycles=1, miners=1
    )
    _run(evaluator, 2.5 * EPOCH_S)
    assert cycle.runs == []
    assert any(what == "fallback" for what, _, _ in evaluator.events)
    assert metrics.mode.labels("fallback")._value.get() == 1.0
    assert s3_calls


def test_weights_recorded_only_when_set(tmp_path):
    store = _open(tmp_path)

    async def main():
        await store.begin_cycle(5, [], {})
        await store.record_weights(5, {1: 1.0}, ok=False)
        failed = await store.last_weights()
        await store.begin_cycle(6, [], {})
        await store.record_weights(6, {1: 1.0}, ok=True)
        return failed, await store.last_weights()

    failed, ok = asyncio.run(main())
    assert failed["set_at"] is None and failed["last_success_at"] is None
    assert ok["set_at"] is not None and ok["last_success_at"] == ok["set_at"]


def test_validator_metrics_are_served_in_prometheus_format():
    import socket
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    metrics = ValidatorMetrics()
    metrics.serve(port, "127.0.0.1")
    metrics.phase("collect")
    metrics.weights_set.labels("ok").inc()
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert 'validator_cycle_phase{phase="collect"} 1.0' in text
    assert 'validator_cycle_phase{phase="idle"} 0.0' in text
    assert 'validator_weights_set_total{result="ok"} 1.0' in text
