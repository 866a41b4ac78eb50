"""The simulator's report: figures by behaviour, per cycle and per miner (``simulate.py``).

``earnings_ratio_by_behavior`` is a behaviour's weight share per hotkey over
an honest hotkey's; ``fast_bonus_share_by_behavior`` the share of its
answered groups paid the fast bonus; ``omitted_listings_confirmed_by_behavior``
the share of the listings a coalition left out everywhere (and three or more
independent coldkeys reported) that ended confirmed.
"""

from __future__ import annotations

import argparse
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence

from sim_miners import SimMiner

from consensus.draft import ZPID_BITS, ConsensusDraft
from consensus.scoring import ScoringState, compute_weights
from consensus.types import CycleResult, GroupSubmission

HONEST = "honest"


def fast_bonus(
    result: CycleResult, submissions: list[GroupSubmission], by_hotkey: Mapping[str, SimMiner]
) -> dict[str, list[int]]:
    """Per behaviour: [groups paid the fast bonus, groups answered] this cycle."""
    answered: Counter[str] = Counter(s.miner.hotkey for s in submissions)
    out: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for hotkey, n in answered.items():
        kind = by_hotkey[hotkey].kind
        out[kind][0] += result.miners[hotkey].fast_groups if hotkey in result.miners else 0
        out[kind][1] += n
    return dict(out)


def omitted_listings(
    draft: ConsensusDraft,
    submissions: list[GroupSubmission],
    miners: Sequence[SimMiner],
    threshold: float,
) -> dict[str, list[int]]:
    """Listings a coalition left out everywhere, reported by 3+ independent miners.

    For behaviours with ``omitted(zpid)``: how many such listings there were
    and how many ended confirmed, on zipcodes that are evidence.
    """
    by_hotkey = {m.info.hotkey: m for m in miners}
    comparison = draft.final_comparison or draft.comparison
    evidence = comparison.confidence >= threshold
    confirmed = set(comparison.confirmed_keys.tolist())
    reporters: dict[tuple[int, int], set[str]] = defaultdict(set)
    for sub in submissions:
        if by_hotkey[sub.miner.hotkey].coalition:
            continue
        for zipcode, answer in sub.answers.items():
            zi = draft.zipcode_index[zipcode]
            for zpid in answer.zpids.tolist():
                reporters[(zi, zpid)].add(sub.miner.coldkey)
    out: dict[str, list[int]] = {}
    for kind in sorted({m.kind for m in miners}):
        behaviour = next(m.behaviour for m in miners if m.kind == kind)
        omitted = getattr(behaviour, "omitted", None)
        if omitted is None:
            continue
        total = hit = 0
        for (zi, zpid), coldkeys in reporters.items():
            if len(coldkeys) < 3 or not evidence[zi] or not omitted(str(zpid)):
                continue
            total += 1
            hit += ((zi << ZPID_BITS) | zpid) in confirmed
        out[kind] = [hit, total]
    return out


def build_report(
    args: argparse.Namespace,
    miners: Sequence[SimMiner],
    state: ScoringState,
    cycles: list[dict],
    flagged: set[str],
    runtime: float,
) -> dict:
    """The JSON report: the run's figures by behaviour, per cycle and per miner."""
    weights = compute_weights(state, {m.info.hotkey: m.info.uid for m in miners})
    population = Counter(m.kind for m in miners)
    weight_share: Counter[str] = Counter()
    for m in miners:
        weight_share[m.kind] += weights.get(m.info.uid, 0.0)
    flagged_share = {
        kind: sum(1 for m in miners if m.kind == kind and m.info.hotkey in flagged) / count
        for kind, count in population.items()
    }
    batch_rates = [(c["batches"], c["batch_confidence_rate"]) for c in cycles]
    total_batches = sum(n for n, _ in batch_rates)
    rates_before = [(c["batches"], c["batch_confidence_rate_before_tiebreak"]) for c in cycles]
    per_batch = [r for c in cycles for r in c["responders_per_batch"]]
    per_group = [r for c in cycles for r in c["group_responders"]]
    honest = [m for m in miners if m.kind == HONEST]
    per_hotkey = {k: weight_share[k] / n for k, n in population.items()}
    honest_per_hotkey = per_hotkey.get(HONEST, 0.0)
    fast: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    omitted: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for c in cycles:
        for kind, (paid, groups) in c["fast_bonus"].items():
            fast[kind][0] += paid
            fast[kind][1] += groups
        for kind, (hit, total) in c["omitted"].items():
            omitted[kind][0] += hit
            omitted[kind][1] += total
    return {
        "args": {k: v for k, v in vars(args).items() if k != "json"},
        "batches": total_batches,
        "batch_confidence_rate": sum(n * r for n, r in batch_rates) / max(1, total_batches),
        "batch_confidence_rate_before_tiebreak": sum(n * r for n, r in rates_before)
        / max(1, total_batches),
        "disputes": sum(c["tiebreak"]["disputes"] for c in cycles),
        "disputes_resolved": sum(c["tiebreak"]["resolved"] for c in cycles),
        "disputes_settled": sum(c["tiebreak"]["settled"] for c in cycles),
        "responders_per_batch_mean": sum(per_batch) / max(1, len(per_batch)),
        "responders_per_group_mean": sum(per_group) / max(1, len(per_group)),
        "population_share_by_behavior": {k: v / len(miners) for k, v in sorted(population.items())},
        "weight_share_by_behavior": {k: round(weight_share[k], 6) for k in sorted(population)},
        "flagged_by_behavior": dict(sorted(flagged_share.items())),
        # weight share per hotkey of a behaviour / that of an honest hotkey
        "earnings_ratio_by_behavior": {
            k: round(v / honest_per_hotkey, 4) if honest_per_hotkey > 0 else None
            for k, v in sorted(per_hotkey.items())
        },
        # share of the groups a behaviour answered that were paid the fast bonus
        "fast_bonus_share_by_behavior": {
            k: round(paid / groups, 4) for k, (paid, groups) in sorted(fast.items()) if groups
        },
        # listings a coalition left out that independent miners reported: share confirmed
        "omitted_listings_confirmed_by_behavior": {
            k: round(hit / total, 4) if total else None
            for k, (hit, total) in sorted(omitted.items())
        },
        "honest_false_flag_rate": share(m.info.hotkey in flagged for m in honest),
        "max_miners_per_coldkey_in_group": max(
            c["max_miners_per_coldkey_in_group"] for c in cycles
        ),
        "cycles": cycles,
        "miners": [
            {
                "uid": m.info.uid,
                "hotkey": m.info.hotkey,
                "coldkey": m.info.coldkey,
                "behavior": m.kind,
                "weight": round(weights.get(m.info.uid, 0.0), 6),
                "score": round(state.miners[m.info.hotkey].score, 6)
                if m.info.hotkey in state.miners
                else 0.0,
                "credibility": round(state.miners[m.info.hotkey].credibility, 4)
                if m.info.hotkey in state.miners
                else None,
                "flagged": m.info.hotkey in flagged,
            }
            for m in miners
        ],
        "runtime_s": round(runtime, 3),
    }


def share(flags) -> float:
    flags = list(flags)
    return sum(flags) / len(flags) if flags else 0.0
