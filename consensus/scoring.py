"""Scoring: cycle results -> credibility, score and weights, as a versioned state object.

Pure: ``apply_cycle`` returns a new state; writing it to disk (atomically) is
the caller's job. Applying the same cycle twice changes nothing, so a
validator that restarts mid-cycle cannot count a penalty or a reward twice.

Per cycle, for a miner that had assignments::

    raw     = earned + prior_quality x volume of its answered no-evidence zipcodes
    reward  = raw / typical assigned volume this cycle      (about 1 for a good miner)
    reward *= 1 - penalty                                     (penalty 1 when flagged, then decays)
    score   = EMA(score, reward, score_alpha)

Answered no-evidence zipcodes are credited at the miner's own running
quality, so they neither raise nor lower it; unanswered ones earn nothing.
A miner the state knows that is not in the cycle's plan (no endpoint, not
serving) earns nothing for it: its score decays as if its reward were 0, so
serving one cycle in K cannot keep the score of every cycle. A miner the
cycle excuses (``CycleResult.excused``: its S3 check could not be made)
keeps its score.
``credibility`` (the vote weight in consensus) is an EMA of precision on
evidence zipcodes, halved on a flag; it starts neutral. Weights are scores normalised to sum to 1.

S3 evaluation (between cycles, ``consensus/s3_evaluation.py``) has its own
component, applied by ``apply_s3_evaluation`` once per round id::

    s3_quality     = EMA(s3_quality, reward, quality_alpha)   (the first round sets it)
    s3_credibility = EMA(s3_credibility, 1, credibility_alpha) per round with evidence
    weight        ~= score x (1 - s3_weight x s3_credibility x (1 - s3_quality))

``s3_credibility`` says how much S3 evidence backs ``s3_quality``: it starts
at 0, so a miner never evaluated keeps its full score, and bad uploads cost
at most ``s3_weight`` (0.3) of what consensus earned. A round without
evidence (S3 unavailable) changes nothing. Consensus credibility (the vote
weight) is not touched by S3 results.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace

from config.consensus import ScoringConfig
from config.storage import S3EvalConfig
from consensus.s3_evaluation import S3Evaluation
from consensus.types import CycleResult

STATE_VERSION = 1
MAX_REMEMBERED_CYCLES = 64  # enough to refuse a replay of any cycle a restart could repeat


@dataclass(frozen=True, slots=True)
class MinerScore:
    uid: int
    score: float = 0.0
    credibility: float = 0.5
    quality: float = 0.5
    penalty: float = 0.0
    cycles: int = 0
    last_flags: tuple[str, ...] = ()
    s3_quality: float = 1.0  # EMA of S3 evaluation rewards
    s3_credibility: float = 0.0  # how much S3 evidence backs s3_quality (0 = none yet)

    def s3_factor(self, s3_weight: float) -> float:
        """The share of the score the miner keeps given its S3 data, in [1 - s3_weight, 1]."""
        return 1.0 - s3_weight * self.s3_credibility * (1.0 - self.s3_quality)


@dataclass(frozen=True, slots=True)
class ScoringState:
    version: int = STATE_VERSION
    applied_cycles: tuple[str, ...] = ()
    miners: Mapping[str, MinerScore] = field(default_factory=dict)
    applied_s3_rounds: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {
            "version": self.version,
            "applied_cycles": list(self.applied_cycles),
            "applied_s3_rounds": list(self.applied_s3_rounds),
            "miners": {
                hk: asdict(m) | {"last_flags": list(m.last_flags)} for hk, m in self.miners.items()
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> ScoringState:
        """Rebuild a state; raises ValueError for an unknown version or bad content."""
        if not isinstance(data, Mapping):
            raise ValueError(f"scoring state must be an object, not {type(data).__name__}")
        if data.get("version") != STATE_VERSION:
            raise ValueError(
                f"scoring state version {data.get('version')!r} is not {STATE_VERSION}"
            )
        cycles = data.get("applied_cycles")
        if not isinstance(cycles, list) or not all(isinstance(c, str) for c in cycles):
            raise ValueError("scoring state applied_cycles must be a list of strings")
        if not isinstance(data.get("miners"), Mapping):
            raise ValueError("scoring state miners must be an object")
        s3_rounds = data.get("applied_s3_rounds", [])  # absent in files written before S3
        if not isinstance(s3_rounds, list) or not all(isinstance(r, str) for r in s3_rounds):
            raise ValueError("scoring state applied_s3_rounds must be a list of strings")
        try:
            miners = {
                str(hk): MinerScore(
                    uid=int(m["uid"]),
                    score=float(m["score"]),
                    credibility=float(m["credibility"]),
                    quality=float(m["quality"]),
                    penalty=float(m["penalty"]),
                    cycles=int(m["cycles"]),
                    last_flags=tuple(str(f) for f in m.get("last_flags", ())),
                    s3_quality=float(m.get("s3_quality", 1.0)),
                    s3_credibility=float(m.get("s3_credibility", 0.0)),
                )
                for hk, m in dict(data["miners"]).items()
            }
            return cls(
                STATE_VERSION,
                tuple(str(c) for c in data["applied_cycles"]),
                miners,
                tuple(s3_rounds),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"malformed scoring state: {exc}") from exc

    def credibility(self) -> dict[str, float]:
        return {hk: m.credibility for hk, m in self.miners.items()}


def apply_cycle(
    state: ScoringState, cycle_id: str, result: CycleResult, config: ScoringConfig | None = None
) -> ScoringState:
    """Fold one cycle's results into the state; a cycle already applied is a no-op."""
    cfg = config or ScoringConfig()
    if cycle_id in state.applied_cycles:
        return state
    assigned_volume = [
        r.evidence_volume + r.neutral_volume + r.unanswered_volume
        for r in result.miners.values()
        if r.assigned_zipcodes
    ]
    typical = statistics.median(assigned_volume) if assigned_volume else 1.0
    typical = typical if typical > 0 else 1.0

    miners = dict(state.miners)
    for hotkey, previous in state.miners.items():
        if hotkey not in result.miners:
            excused = hotkey in result.excused
            miners[hotkey] = replace(
                previous,
                score=previous.score if excused else (1 - cfg.score_alpha) * previous.score,
                penalty=previous.penalty * cfg.penalty_decay,
            )
    for hotkey, r in result.miners.items():
        prev = miners.get(hotkey) or MinerScore(
            uid=r.uid, credibility=cfg.initial_credibility, quality=cfg.initial_quality
        )
        flagged = bool(r.flags)
        penalty = max(prev.penalty * cfg.penalty_decay, 1.0 if flagged else 0.0)
        score, credibility, quality = prev.score, prev.credibility, prev.quality
        if r.assigned_zipcodes:
            raw = r.earned + prev.quality * r.neutral_volume
            reward = raw / typical * (1.0 - penalty)
            score = (1 - cfg.score_alpha) * score + cfg.score_alpha * reward
        if r.precision is not None:
            credibility = (
                1 - cfg.credibility_alpha
            ) * credibility + cfg.credibility_alpha * r.precision
        if r.quality is not None:
            quality = (1 - cfg.score_alpha) * quality + cfg.score_alpha * min(1.0, r.quality)
        if flagged:
            credibility *= cfg.flag_credibility_factor
        miners[hotkey] = replace(  # replace keeps the S3 component as it was
            prev,
            uid=r.uid,
            score=score,
            credibility=min(1.0, max(0.0, credibility)),
            quality=quality,
            penalty=penalty,
            cycles=prev.cycles + 1,
            last_flags=tuple(sorted({f.kind.value for f in r.flags})),
        )
    applied = (*state.applied_cycles, cycle_id)[-MAX_REMEMBERED_CYCLES:]
    return ScoringState(STATE_VERSION, applied, miners, state.applied_s3_rounds)


def apply_s3_evaluation(
    state: ScoringState,
    round_id: str,
    evaluations: Mapping[str, S3Evaluation],
    config: S3EvalConfig | None = None,
) -> ScoringState:
    """Fold one S3 evaluation round into the state; a round already applied is a no-op.

    Takes the state, the round's id (the same on every validator, e.g.
    "s3-epoch-12-round-3"), the evaluations by hotkey and the config. Only
    miners the state already knows (they have a uid from consensus) and
    evaluations with a reward (evidence) change; the rest stay as they were.
    """
    cfg = config or S3EvalConfig()
    if round_id in state.applied_s3_rounds:
        return state
    miners = dict(state.miners)
    for hotkey, evaluation in evaluations.items():
        prev = miners.get(hotkey)
        if prev is None or evaluation.reward is None:
            continue
        reward = min(1.0, max(0.0, evaluation.reward))
        quality = (
            reward
            if prev.s3_credibility <= 0.0
            else (1 - cfg.quality_alpha) * prev.s3_quality + cfg.quality_alpha * reward
        )
        credibility = (1 - cfg.credibility_alpha) * prev.s3_credibility + cfg.credibility_alpha
        miners[hotkey] = replace(prev, s3_quality=quality, s3_credibility=min(1.0, credibility))
    rounds = (*state.applied_s3_rounds, round_id)[-MAX_REMEMBERED_CYCLES:]
    return ScoringState(STATE_VERSION, state.applied_cycles, miners, rounds)


def compute_weights(
    state: ScoringState, uid_by_hotkey: Mapping[str, int], s3: S3EvalConfig | None = None
) -> dict[int, float]:
    """Normalised weights for the hotkeys registered now; {} when nobody has a score.

    Each score is scaled by the miner's S3 factor (1 until S3 evaluations say otherwise).
    """
    s3_weight = (s3 or S3EvalConfig()).s3_weight
    scores = {
        uid: max(0.0, state.miners[hk].score) * state.miners[hk].s3_factor(s3_weight)
        for hk, uid in uid_by_hotkey.items()
        if hk in state.miners
    }
    total = sum(scores.values())
    if total <= 0:
        return {}
    return {uid: s / total for uid, s in sorted(scores.items()) if s > 0}
