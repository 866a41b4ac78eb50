"""Unit tests of scoring: cycle results -> credibility, score, penalties and weights."""

from __future__ import annotations

import itertools
import json

import pytest

from config.consensus import ScoringConfig
from consensus.scoring import (
    STATE_VERSION,
    MinerScore,
    ScoringState,
    apply_cycle,
    compute_weights,
)
from consensus.types import CycleResult, Flag, FlagKind, MinerCycleResult

pytestmark = pytest.mark.unit

CFG = ScoringConfig()
VOLUME = 100.0  # every miner's assigned volume in these cycles: reward = earned / 100


def miner(
    hotkey: str,
    *,
    uid: int | None = None,
    earned: float = 0.0,
    evidence: float = VOLUME,
    neutral: float = 0.0,
    unanswered: float = 0.0,
    precision: float | None = 1.0,
    flags: tuple[FlagKind, ...] = (),
    assigned: int = 4,
) -> MinerCycleResult:
    """A hand-made per-miner result: ``evidence`` volume answered at ``precision``."""
    r = MinerCycleResult(
        uid if uid is not None else int(hotkey[2:]),
        hotkey,
        f"ck-{hotkey}",
        assigned_zipcodes=assigned,
        answered_zipcodes=assigned,
        evidence_zipcodes=assigned if evidence else 0,
        evidence_volume=evidence,
        neutral_volume=neutral,
        unanswered_volume=unanswered,
        earned=earned,
    )
    if precision is not None and evidence:
        r.precision_sum = precision * evidence
        r.recall_sum = evidence
        r.answered_evidence_volume = evidence
    r.flags.extend(Flag(hotkey, kind, {"reason": "test"}) for kind in flags)
    return r


def cycle(*miners: MinerCycleResult) -> CycleResult:
    return CycleResult(
        zipcodes={},
        miners={m.hotkey: m for m in miners},
        flags=[f for m in miners for f in m.flags],
        captured_groups=[],
        dropped={},
    )


# --------------------------------------------------------------------------- idempotence


def test_applying_a_cycle_twice_equals_applying_it_once():
    """Guards against a validator restart counting a cycle's reward or penalty twice."""
    result = cycle(
        miner("hk01", earned=80.0),
        miner("hk02", earned=90.0, flags=(FlagKind.COPYING,)),
    )
    once = apply_cycle(ScoringState(), "cycle-1", result, CFG)
    twice = apply_cycle(once, "cycle-1", result, CFG)
    assert twice == once
    assert once.applied_cycles == ("cycle-1",)
    flagged = once.miners["hk02"]
    assert flagged.cycles == 1
    assert flagged.penalty == 1.0
    assert flagged.credibility == pytest.approx(
        ((1 - CFG.credibility_alpha) * CFG.initial_credibility + CFG.credibility_alpha)
        * CFG.flag_credibility_factor
    )

    later = apply_cycle(once, "cycle-2", cycle(miner("hk01", earned=80.0)), CFG)
    assert apply_cycle(later, "cycle-1", result, CFG) == later
    assert apply_cycle(later, "cycle-2", result, CFG) == later


def test_apply_cycle_does_not_mutate_its_input():
    """Guards against apply_cycle editing the state a caller still holds (pure function)."""
    state = apply_cycle(ScoringState(), "c1", cycle(miner("hk01", earned=50.0)), CFG)
    snapshot = state.to_dict()
    apply_cycle(state, "c2", cycle(miner("hk01", flags=(FlagKind.HONEYPOT,))), CFG)
    assert state.to_dict() == snapshot


# --------------------------------------------------------------------------- new miners, EMA


def test_new_miner_starts_neutral_with_zero_score():
    """Guards against newcomers starting trusted, distrusted or with a free score."""
    cfg = ScoringConfig(initial_credibility=0.42, initial_quality=0.3)
    idle = miner("hk01", assigned=0, evidence=0.0, precision=None)
    worker = miner("hk02", earned=VOLUME)
    peer = miner("hk03", earned=VOLUME)
    state = apply_cycle(ScoringState(), "c1", cycle(idle, worker, peer), cfg)

    fresh = state.miners["hk01"]
    assert fresh.score == 0.0
    assert fresh.credibility == pytest.approx(0.42)
    assert fresh.quality == pytest.approx(0.3)
    assert fresh.penalty == 0.0 and fresh.last_flags == ()
    assert fresh.uid == 1 and fresh.cycles == 1
    # From 0, one cycle of reward 1 moves the score by exactly score_alpha.
    assert state.miners["hk02"].score == pytest.approx(cfg.score_alpha)
    assert state.miners["hk02"].credibility == pytest.approx(
        (1 - cfg.credibility_alpha) * 0.42 + cfg.credibility_alpha * 1.0
    )


def test_score_is_an_ema_moving_toward_the_reward():
    """Guards against the score jumping to, overshooting or ignoring the reward."""
    state = ScoringState()
    scores = []
    for i in range(12):
        state = apply_cycle(state, f"good-{i}", cycle(miner("hk01", earned=VOLUME)), CFG)
        scores.append(state.miners["hk01"].score)
    for previous, current in zip([0.0, *scores], scores, strict=False):
        assert current == pytest.approx((1 - CFG.score_alpha) * previous + CFG.score_alpha)
    assert all(a < b < 1.0 for a, b in itertools.pairwise(scores))
    assert scores[-1] > 0.95

    state = apply_cycle(state, "half", cycle(miner("hk01", earned=VOLUME / 2)), CFG)
    assert state.miners["hk01"].score == pytest.approx(
        (1 - CFG.score_alpha) * scores[-1] + CFG.score_alpha * 0.5
    )


def test_reward_is_relative_to_the_median_assigned_volume():
    """Guards against rewards that scale with raw volume instead of a typical miner's load."""
    result = cycle(
        miner("hk01", earned=50.0, evidence=50.0),
        miner("hk02", earned=100.0, evidence=100.0),
        miner("hk03", earned=100.0, evidence=200.0),
    )
    state = apply_cycle(ScoringState(), "c1", result, CFG)
    for hotkey, earned in (("hk01", 50.0), ("hk02", 100.0), ("hk03", 100.0)):
        assert state.miners[hotkey].score == pytest.approx(CFG.score_alpha * earned / 100.0)


# --------------------------------------------------------------------------- flags and penalties


def test_flag_zeroes_reward_halves_credibility_and_penalty_decays():
    """Guards against a flagged miner keeping its reward, or a penalty that never fades."""
    start = ScoringState(
        miners={"hk01": MinerScore(uid=1, score=0.8, credibility=0.9, quality=0.9)}
    )
    flagged = apply_cycle(
        start, "c1", cycle(miner("hk01", earned=VOLUME, flags=(FlagKind.CARTEL,))), CFG
    )
    m = flagged.miners["hk01"]
    assert m.score == pytest.approx((1 - CFG.score_alpha) * 0.8)  # reward zeroed
    assert m.credibility == pytest.approx(
        ((1 - CFG.credibility_alpha) * 0.9 + CFG.credibility_alpha * 1.0)
        * CFG.flag_credibility_factor
    )
    assert m.penalty == 1.0
    assert m.last_flags == ("cartel",)

    state, penalty, score = flagged, 1.0, m.score
    for i in range(3):
        state = apply_cycle(state, f"clean-{i}", cycle(miner("hk01", earned=VOLUME)), CFG)
        penalty *= CFG.penalty_decay
        score = (1 - CFG.score_alpha) * score + CFG.score_alpha * (1.0 - penalty)
        assert state.miners["hk01"].penalty == pytest.approx(penalty)
        assert state.miners["hk01"].score == pytest.approx(score)
        assert state.miners["hk01"].last_flags == ()


def test_penalty_decays_while_the_miner_is_absent():
    """Guards against a penalty frozen (or reset) while a miner sits out cycles."""
    state = apply_cycle(
        ScoringState(), "c1", cycle(miner("hk01", flags=(FlagKind.SPOT_CHECK,))), CFG
    )
    state = apply_cycle(state, "c2", cycle(miner("hk02", earned=VOLUME)), CFG)
    assert state.miners["hk01"].penalty == pytest.approx(CFG.penalty_decay)
    assert state.miners["hk01"].cycles == 1


def test_repeat_offender_penalty_is_reset_to_full():
    """Guards against a second flag stacking above 1 or being softened by the earlier decay."""
    state = ScoringState()
    for i in range(2):
        state = apply_cycle(
            state, f"c{i}", cycle(miner("hk01", earned=VOLUME, flags=(FlagKind.FABRICATION,))), CFG
        )
        assert state.miners["hk01"].penalty == 1.0
        assert state.miners["hk01"].score == 0.0


# --------------------------------------------------------------------------- no-evidence zipcodes


def test_answered_no_evidence_volume_is_credited_at_prior_quality():
    """Guards against no-evidence zipcodes changing a miner's standing, or rewarding no answer."""
    state = ScoringState(
        miners={
            hk: MinerScore(uid=uid, score=0.5, credibility=0.7, quality=0.8)
            for hk, uid in (("hk01", 1), ("hk02", 2))
        }
    )
    answered = miner("hk01", evidence=0.0, neutral=VOLUME, precision=None)
    silent = miner("hk02", evidence=0.0, unanswered=VOLUME, precision=None)
    after = apply_cycle(state, "c1", cycle(answered, silent), CFG)

    a, s = after.miners["hk01"], after.miners["hk02"]
    assert a.score == pytest.approx((1 - CFG.score_alpha) * 0.5 + CFG.score_alpha * 0.8)
    assert s.score == pytest.approx((1 - CFG.score_alpha) * 0.5)
    for m in (a, s):  # nothing judged: credibility and quality untouched
        assert m.credibility == pytest.approx(0.7)
        assert m.quality == pytest.approx(0.8)
        assert m.penalty == 0.0


def test_new_miner_no_evidence_volume_uses_initial_quality():
    """Guards against a newcomer's no-evidence answers being credited at other than the prior."""
    cfg = ScoringConfig(initial_quality=0.25)
    state = apply_cycle(
        ScoringState(),
        "c1",
        cycle(miner("hk01", evidence=0.0, neutral=VOLUME, precision=None)),
        cfg,
    )
    assert state.miners["hk01"].score == pytest.approx(cfg.score_alpha * 0.25)


# --------------------------------------------------------------------------- weights


def test_compute_weights_normalises_and_filters():
    """Guards against weights that do not sum to 1 or go to deregistered hotkeys."""
    state = ScoringState(
        miners={
            "hk01": MinerScore(uid=1, score=0.6),
            "hk02": MinerScore(uid=2, score=0.2),
            "hk03": MinerScore(uid=3, score=0.0),
            "gone": MinerScore(uid=9, score=5.0),  # no longer registered
        }
    )
    weights = compute_weights(state, {"hk01": 1, "hk02": 7, "hk03": 3, "newcomer": 4})
    assert set(weights) == {1, 7}  # uid from the current map; zero scores get no weight
    assert sum(weights.values()) == pytest.approx(1.0)
    assert weights[1] == pytest.approx(0.75)
    assert weights[7] == pytest.approx(0.25)


def test_compute_weights_empty_when_nobody_scores():
    """Guards against dividing by zero or inventing weights when every score is zero."""
    zero = ScoringState(miners={"hk01": MinerScore(uid=1), "hk02": MinerScore(uid=2)})
    assert compute_weights(zero, {"hk01": 1, "hk02": 2}) == {}
    assert compute_weights(ScoringState(), {"hk01": 1}) == {}
    scored = ScoringState(miners={"hk01": MinerScore(uid=1, score=1.0)})
    assert compute_weights(scored, {}) == {}
    negative = ScoringState(miners={"hk01": MinerScore(uid=1, score=-1.0)})
    assert compute_weights(negative, {"hk01": 1}) == {}


# --------------------------------------------------------------------------- persistence


def test_state_round_trips_through_dict_and_json():
    """Guards against losing or altering state (scores, flags, applied cycles) on save/load."""
    state = ScoringState()
    state = apply_cycle(state, "c1", cycle(miner("hk01", earned=70.0), miner("hk02")), CFG)
    state = apply_cycle(
        state,
        "c2",
        cycle(
            miner("hk01", earned=90.0), miner("hk02", flags=(FlagKind.HONEYPOT, FlagKind.COPYING))
        ),
        CFG,
    )
    data = state.to_dict()
    assert ScoringState.from_dict(data) == state
    assert ScoringState.from_dict(json.loads(json.dumps(data))) == state
    assert state.miners["hk02"].last_flags == ("copying", "honeypot")
    assert state.credibility() == {hk: m.credibility for hk, m in state.miners.items()}


def _good_dict() -> dict:
    return ScoringState(
        applied_cycles=("c1",), miners={"hk01": MinerScore(uid=1, score=0.5)}
    ).to_dict()


def _mutated(path: tuple, value) -> dict:
    data = json.loads(json.dumps(_good_dict()))
    target = data
    for key in path[:-1]:
        target = target[key]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return data


_DELETE = object()


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(_mutated(("version",), STATE_VERSION + 1), id="newer-version"),
        pytest.param(_mutated(("version",), "1"), id="version-as-string"),
        pytest.param(_mutated(("version",), _DELETE), id="no-version"),
        pytest.param(_mutated(("miners",), _DELETE), id="no-miners"),
        pytest.param(_mutated(("applied_cycles",), _DELETE), id="no-applied-cycles"),
        pytest.param(_mutated(("applied_cycles",), None), id="applied-cycles-null"),
        pytest.param(_mutated(("miners",), ["hk01"]), id="miners-list"),
        pytest.param(_mutated(("miners", "hk01"), None), id="miner-null"),
        pytest.param(_mutated(("miners", "hk01", "uid"), _DELETE), id="miner-no-uid"),
        pytest.param(_mutated(("miners", "hk01", "uid"), "one"), id="uid-not-int"),
        pytest.param(_mutated(("miners", "hk01", "score"), None), id="score-null"),
        pytest.param(_mutated(("miners", "hk01", "credibility"), "high"), id="credibility-text"),
    ],
)
def test_from_dict_rejects_wrong_version_or_malformed_content(data):
    """Guards against a corrupt or foreign state file loading silently or crashing oddly."""
    with pytest.raises(ValueError):
        ScoringState.from_dict(data)


@pytest.mark.parametrize("data", [[], None, "state"])
def test_from_dict_rejects_non_mapping_state_with_value_error(data):
    """Guards against a state file holding JSON null/list/string crashing with a non-ValueError."""
    with pytest.raises(ValueError):
        ScoringState.from_dict(data)


def test_from_dict_rejects_string_applied_cycles():
    """Guards against a malformed applied_cycles silently disabling idempotence."""
    data = _mutated(("applied_cycles",), "c1")
    try:
        state = ScoringState.from_dict(data)
    except ValueError:
        return
    result = cycle(miner("hk01", earned=VOLUME))
    assert apply_cycle(state, "c1", result, CFG) == state
