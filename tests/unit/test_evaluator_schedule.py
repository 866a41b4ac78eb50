"""The validator's schedule: consensus on epoch boundaries, S3 evaluation in between,
S3 evaluation alone while the Data API is down, and back to consensus when it returns.

Virtual time (tests/unit/virtual_clock.py): the evaluator gets the clock and
the sleep of a ``VirtualClock``, so production-length epochs (4 h) run in
milliseconds and every run is the same. These tests used to run real 3-second
epochs, were re-tuned four times for flakiness on loaded machines, and read a
list of events the evaluator kept for them. Now the cycle, chain, blocks and S3
pass are stand-ins that record what they were asked and when (virtual time),
and the assertions are exact.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
from dataclasses import dataclass, field

import pytest

from common.chain import ChainUnavailable, MetagraphSnapshot, NeuronInfo
from common.epochs import EpochClock
from config.consensus import AssignmentConfig
from consensus.assignment import ZipcodeAssignmentManager
from consensus.scoring import MinerScore, ScoringState
from consensus.types import CycleResult
from tests.unit.virtual_clock import VirtualClock
from vali_utils.blocks import EpochBlock
from vali_utils.cycle import CycleOutcome, eligible_miners
from vali_utils.evaluator import BlocksUnavailable, EnhancedMinerEvaluator
from vali_utils.metrics import ValidatorMetrics
from vali_utils.store import ValidatorStore

pytestmark = pytest.mark.unit

EPOCH_S = 14400.0  # production epochs: in virtual time their length costs nothing
CLOCK = EpochClock(EPOCH_S, 0.75)
S3_INTERVAL_S = EPOCH_S / 24  # as neurons/validator.py: at most 24 S3 rounds an epoch
CYCLE_S = 900.0  # how long the stand-in consensus cycle takes
S3_PASS_S = 30.0  # how long a stand-in S3 pass takes
FIRST = 120_000  # the epoch the runs start in
REAL_TIMEOUT_S = 20.0  # a run that hangs fails instead of holding the suite


@dataclass
class Cycle:
    """The stand-in consensus cycle: records (epoch, started, ended, deadlines)."""

    clock: VirtualClock
    runs: list[tuple[int, float, float, float, float]] = field(default_factory=list)

    async def run(self, block, graph, credibility, deadline, tiebreak_deadline):
        started = self.clock.now
        await self.clock.sleep(CYCLE_S)
        miners, _ = eligible_miners(graph)
        plan = ZipcodeAssignmentManager(AssignmentConfig()).create_plan(
            list(block.zipcodes), miners, block.seed
        )
        self.runs.append((block.epoch, started, self.clock.now, deadline, tiebreak_deadline))
        return CycleOutcome(plan, CycleResult({}, {}, [], [], {}), [], [])

    def epochs(self) -> list[int]:
        return [run[0] for run in self.runs]


@dataclass
class Blocks:
    """The stand-in Data API: records (epoch, when) asked; down for the epochs in ``down``."""

    clock: VirtualClock
    down: set[int]
    asked: list[tuple[int, float]] = field(default_factory=list)

    async def block(self, epoch: int) -> EpochBlock:
        self.asked.append((epoch, self.clock.now))
        if epoch in self.down:
            raise BlocksUnavailable("Data API unreachable")
        return EpochBlock(epoch, f"b{epoch}", ("10001",), epoch.to_bytes(8, "big"))


@dataclass
class S3Pass:
    """The stand-in S3 evaluation: records (epoch, started, ended, deadline, mode);
    ``ended`` is None for a pass cut off (cancelled) at its time limit."""

    clock: VirtualClock
    metrics: ValidatorMetrics
    takes_s: float = S3_PASS_S
    passes: list[tuple[int, float, float | None, float, str]] = field(default_factory=list)

    async def __call__(self, state: ScoringState, epoch: int, deadline: float):
        started = self.clock.now
        mode = "fallback" if self.metrics.mode.labels("fallback")._value.get() else "consensus"
        try:
            await self.clock.sleep(self.takes_s)
        except asyncio.CancelledError:
            self.passes.append((epoch, started, None, deadline, mode))
            raise
        self.passes.append((epoch, started, self.clock.now, deadline, mode))
        return state


@dataclass
class Chain:
    """Records (when, weights) of each weight-setting attempt; the first ``failures`` fail."""

    clock: VirtualClock
    failures: int = 0
    attempts: list[tuple[float, dict]] = field(default_factory=list)

    async def set_weights(self, weights):
        self.attempts.append((self.clock.now, dict(weights)))
        if len(self.attempts) <= self.failures:
            raise ChainUnavailable("subtensor unreachable")


class Sync:
    def __init__(self, graph: MetagraphSnapshot) -> None:
        self.snapshot = graph

    async def refresh(self) -> MetagraphSnapshot:
        return self.snapshot


def _graph(miners: int) -> MetagraphSnapshot:
    neurons = [NeuronInfo(0, "validator", "cv", 1000.0, True, None)]
    neurons += [
        NeuronInfo(i, f"hk{i}", f"ck{i}", 1.0, False, f"127.0.0.1:{9000 + i}")
        for i in range(1, miners + 1)
    ]
    return MetagraphSnapshot(1, 1, tuple(neurons))


@dataclass
class Run:
    clock: VirtualClock
    cycle: Cycle
    blocks: Blocks
    s3: S3Pass
    chain: Chain
    metrics: ValidatorMetrics
    evaluator: EnhancedMinerEvaluator | None = None


def simulate(
    tmp_path,
    start: float,
    *,
    until: float | None = None,
    max_cycles: int = 0,
    down=(),
    miners: int = 6,
    s3_pass_s: float = S3_PASS_S,
    chain_failures: int = 0,
    applied: tuple[str, ...] = (),
    left_unfinished: tuple[int, str] | None = None,
    dataset=None,
) -> Run:
    """Run the evaluator from virtual time ``start`` until it has run ``max_cycles`` or
    ``until`` comes (then it is asked to stop); what its stand-ins saw."""
    clock = VirtualClock(now=start)
    metrics = ValidatorMetrics()
    run = Run(
        clock,
        Cycle(clock),
        Blocks(clock, set(down)),
        S3Pass(clock, metrics, s3_pass_s),
        Chain(clock, chain_failures),
        metrics,
    )

    async def main() -> None:
        store = await ValidatorStore.open(tmp_path / "v.sqlite")
        try:
            # Every miner has a score, so each cycle ends in a weight-setting.
            scores = {f"hk{i}": MinerScore(i, score=1.0) for i in range(1, miners + 1)}
            await store.save_scoring(ScoringState(applied_cycles=applied, miners=scores))
            if left_unfinished is not None:
                epoch, phase = left_unfinished
                await store.begin_cycle(epoch, [], {})
                await store.set_phase(epoch, phase)
            run.evaluator = EnhancedMinerEvaluator(
                run.chain,
                Sync(_graph(miners)),
                run.cycle,
                run.blocks,
                store,
                CLOCK,
                metrics=metrics,
                s3_pass=run.s3,
                s3_pass_interval_s=S3_INTERVAL_S,
                min_eligible_miners=2,
                max_cycles=max_cycles,
                dataset=dataset,
                clock=clock.time,
                sleep=clock.sleep,
            )
            stop = asyncio.Event()
            driven = clock.run(
                run.evaluator.run(stop), until=until or start + 20 * EPOCH_S, stop=stop
            )
            await asyncio.wait_for(driven, REAL_TIMEOUT_S)
        finally:
            await store.close()

    # The evaluator collects garbage after each S3 pass and cycle (common/memory.py);
    # a full collection walks the ~100k objects the test process imported (80 ms,
    # dozens of times a run). Frozen, they are skipped; what the run allocates is not.
    gc.freeze()
    try:
        asyncio.run(main())
    finally:
        gc.unfreeze()
    return run


def _s3_overlaps_no_cycle(run: Run) -> None:
    for _, s3_start, s3_end, _, _ in run.s3.passes:
        for _, c_start, c_end, _, _ in run.cycle.runs:
            assert s3_end <= c_start or s3_start >= c_end, "S3 evaluation overlapped a cycle"


def test_consensus_on_boundaries_and_s3_evaluation_only_between(tmp_path):
    start = CLOCK.start(FIRST) + 0.1 * EPOCH_S  # early enough to join epoch FIRST
    run = simulate(tmp_path, start, max_cycles=3)
    assert run.cycle.epochs() == [FIRST, FIRST + 1, FIRST + 2]
    # The first cycle joins its epoch at once; the later ones start on their boundary,
    # with the epoch's collect and tie-break deadlines.
    starts = [started for _, started, _, _, _ in run.cycle.runs]
    assert starts == [start, CLOCK.start(FIRST + 1), CLOCK.start(FIRST + 2)]
    for epoch, _, _, deadline, tiebreak in run.cycle.runs:
        assert (deadline, tiebreak) == (CLOCK.deadline(epoch), CLOCK.tiebreak_deadline(epoch))
    assert run.blocks.asked == [(epoch, at) for epoch, at, _, _, _ in run.cycle.runs]
    # Weights set once after each cycle, as it ends; the run stops after the third.
    ends = [ended for _, _, ended, _, _ in run.cycle.runs]
    assert [at for at, _ in run.chain.attempts] == ends
    assert run.clock.now == ends[-1]
    # Between cycles: S3 passes of the epoch just scored, one per interval, each
    # allowed the time until the next boundary.
    _s3_overlaps_no_cycle(run)
    for epoch, ended in ((FIRST, ends[0]), (FIRST + 1, ends[1])):
        between = [p for p in run.s3.passes if ended <= p[1] < CLOCK.start(epoch + 1)]
        assert {(p[0], p[3], p[4]) for p in between} == {
            (epoch, CLOCK.start(epoch + 1), "consensus")
        }
        assert between[0][1] == ended
        gaps = {b[1] - a[1] for a, b in itertools.pairwise(between)}
        assert gaps == {S3_PASS_S + S3_INTERVAL_S}
        room = CLOCK.start(epoch + 1) - ended
        assert len(between) == -(-room // (S3_PASS_S + S3_INTERVAL_S))  # the gap is filled


@pytest.mark.parametrize(
    ("into_epoch_s", "first_cycle"),
    [
        (0.0, FIRST),  # on the boundary
        (0.375 * EPOCH_S, FIRST),  # exactly half the collect window left: joined
        (0.375 * EPOCH_S + 1, FIRST + 1),  # less than half left: wait for the next
        (0.9 * EPOCH_S, FIRST + 1),  # past the collect deadline
    ],
)
def test_an_epoch_is_joined_while_half_its_collect_window_is_left(
    tmp_path, into_epoch_s, first_cycle
):
    start = CLOCK.start(FIRST) + into_epoch_s
    run = simulate(tmp_path, start, max_cycles=1)
    assert run.cycle.epochs() == [first_cycle]
    assert run.cycle.runs[0][1] == max(start, CLOCK.start(first_cycle))
    if first_cycle == FIRST + 1:
        # Until then, S3 evaluation of the epoch it did not join.
        assert run.s3.passes and {p[0] for p in run.s3.passes} == {FIRST}
        assert run.s3.passes[0][1] == start
        assert all(p[2] <= CLOCK.start(FIRST + 1) for p in run.s3.passes)
    else:
        assert run.s3.passes == []  # the run stops after its one cycle


def test_fallback_while_the_data_api_is_down_then_back_to_consensus(tmp_path):
    start = CLOCK.start(FIRST)
    run = simulate(tmp_path, start, max_cycles=2, down={FIRST + 1, FIRST + 2})
    assert run.blocks.asked == [(FIRST + i, CLOCK.start(FIRST + i)) for i in range(4)]
    assert run.cycle.epochs() == [FIRST, FIRST + 3]
    assert run.cycle.runs[1][1] == CLOCK.start(FIRST + 3)  # back on the boundary
    # The fallback epochs are spent on S3 evaluation of those very epochs: until
    # their collect deadline in fallback, then until the next boundary.
    for epoch in (FIRST + 1, FIRST + 2):
        passes = [p for p in run.s3.passes if CLOCK.epoch_at(p[1]) == epoch]
        assert passes[0][1] == CLOCK.start(epoch)
        assert {p[0] for p in passes} == {epoch}
        during = {(p[3], p[4]) for p in passes if p[1] < CLOCK.deadline(epoch)}
        assert during == {(CLOCK.deadline(epoch), "fallback")}
        after = {(p[3], p[4]) for p in passes if p[1] >= CLOCK.deadline(epoch)}
        assert after == {(CLOCK.start(epoch + 1), "fallback")}
    _s3_overlaps_no_cycle(run)
    # No weights for the epochs without a cycle; the mode is back to consensus.
    assert [at for at, _ in run.chain.attempts] == [r[2] for r in run.cycle.runs]
    assert run.metrics.mode.labels("consensus")._value.get() == 1.0
    assert run.metrics.mode.labels("fallback")._value.get() == 0.0


def test_too_few_eligible_miners_fall_back(tmp_path):
    start = CLOCK.start(FIRST)
    until = start + 2.5 * EPOCH_S
    run = simulate(tmp_path, start, until=until, miners=1)
    assert run.cycle.runs == [] and run.chain.attempts == []
    assert run.blocks.asked == []  # the metagraph decides before the Data API is asked
    assert {p[0] for p in run.s3.passes} == {FIRST, FIRST + 1, FIRST + 2}
    assert run.metrics.mode.labels("fallback")._value.get() == 1.0
    # Asked to stop mid-epoch, the evaluator returns then, without finishing the epoch.
    assert run.clock.now == until
    assert max(p[2] for p in run.s3.passes) <= until


def test_an_s3_pass_that_overruns_is_cut_off_at_the_next_boundary(tmp_path):
    start = CLOCK.start(FIRST)
    run = simulate(tmp_path, start, max_cycles=2, s3_pass_s=2 * EPOCH_S)
    (epoch, started, ended, deadline, _), *rest = run.s3.passes
    assert rest == []
    assert (epoch, started, ended) == (FIRST, start + CYCLE_S, None)  # cancelled
    assert deadline == CLOCK.start(FIRST + 1)
    # The next cycle still starts on its boundary.
    assert run.cycle.runs[1][:2] == (FIRST + 1, CLOCK.start(FIRST + 1))


def test_weight_setting_is_retried_with_backoff(tmp_path):
    start = CLOCK.start(FIRST)
    run = simulate(tmp_path, start, max_cycles=1, chain_failures=2)
    ended = run.cycle.runs[0][2]
    assert [at for at, _ in run.chain.attempts] == [ended, ended + 1.0, ended + 3.0]
    assert set(run.chain.attempts[-1][1]) == {1, 2, 3, 4, 5, 6}


def test_the_cycle_a_previous_run_left_unfinished_is_finished_first(tmp_path):
    # Late in the epoch (a fresh start would wait for the next one), the cycle a
    # previous run left in "dispatched" is finished at once.
    start = CLOCK.start(FIRST) + 0.6 * EPOCH_S
    run = simulate(tmp_path, start, max_cycles=2, left_unfinished=(FIRST, "dispatched"))
    assert [(e, at) for e, at, _, _, _ in run.cycle.runs] == [
        (FIRST, start),
        (FIRST + 1, CLOCK.start(FIRST + 1)),
    ]


def test_a_cycle_left_scored_only_needs_its_weights(tmp_path):
    start = CLOCK.start(FIRST) + 0.6 * EPOCH_S
    run = simulate(tmp_path, start, max_cycles=2, left_unfinished=(FIRST, "scored"))
    assert run.cycle.epochs() == [FIRST + 1]  # epoch FIRST is not run again
    assert [at for at, _ in run.chain.attempts] == [start, run.cycle.runs[0][2]]


def test_an_unfinished_cycle_of_a_future_epoch_is_not_resumed(tmp_path):
    """A clock that jumped back: the plan for a later epoch is redone in its time."""
    start = CLOCK.start(FIRST)
    run = simulate(tmp_path, start, max_cycles=1, left_unfinished=(FIRST + 2, "dispatched"))
    assert [(e, at) for e, at, _, _, _ in run.cycle.runs] == [(FIRST, start)]


def test_an_epoch_already_scored_is_not_scored_again(tmp_path):
    start = CLOCK.start(FIRST)
    run = simulate(tmp_path, start, max_cycles=1, applied=(f"epoch-{FIRST}",))
    assert run.cycle.epochs() == [FIRST + 1]
    assert run.cycle.runs[0][1] == CLOCK.start(FIRST + 1)
    assert run.s3.passes[0][:2] == (FIRST, start)  # S3 evaluation meanwhile


def test_the_schedule_is_the_same_on_every_run(tmp_path):
    runs = [
        simulate(tmp_path / str(i), CLOCK.start(FIRST) + 123.0, max_cycles=3, down={FIRST + 1})
        for i in range(2)
    ]
    assert runs[0].cycle.runs == runs[1].cycle.runs
    assert runs[0].s3.passes == runs[1].s3.passes
    assert runs[0].blocks.asked == runs[1].blocks.asked
    assert runs[0].chain.attempts == runs[1].chain.attempts


def test_weights_recorded_only_when_set(tmp_path):
    async def main():
        store = await ValidatorStore.open(tmp_path / "v.sqlite")
        try:
            await store.begin_cycle(5, [], {})
            await store.record_weights(5, {1: 1.0}, ok=False)
            failed = await store.last_weights()
            await store.begin_cycle(6, [], {})
            await store.record_weights(6, {1: 1.0}, ok=True)
            return failed, await store.last_weights()
        finally:
            await store.close()

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
