"""Tie-breaks: records the two groups of a batch disagree on, re-checked by fresh miners.

Pure functions of the draft and the cycle seed, so every validator asks the
same miners about the same zpids:

    requests = plan_tiebreaks(draft, seed)          # who is asked about what
    # ... send DataAssignmentRequest(assignment_mode="property_ids") and collect ...
    outcome = resolve_disputes(draft, requests, answers)

1. Disputes are the comparison's disputed keys (a record one group accepted
   and the other did not, or accepted with another value). A seeded sample is
   taken, disputes of zipcodes under the confidence threshold first; batches
   take turns, at most ``tiebreak_max_per_miner`` zpids per
   batch (every tie-breaker of a batch is asked about all of them) and
   ``tiebreak_max_per_cycle`` in all.
2. Each disputed batch gets ``tiebreak_miners`` miners from neither of its
   groups, one per coldkey and of no coldkey present in either group, ranked
   by ``seeded_rank`` (the order of the miner list does not matter). A miner
   is not asked about more than ``tiebreak_max_per_miner`` zpids per cycle.
3. A dispute is resolved when at least ``tiebreak_min_answers`` tie-breakers
   answered it and one value (a record hash, or "does not exist") carries
   ``tiebreak_threshold`` of the answering credibility weight. Otherwise it
   stays unresolved: no evidence either way.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from consensus.antigaming import seeded_rank
from consensus.assignment import MinerInfo
from consensus.comparison import zipcode_confidence
from consensus.draft import EPS, ZPID_BITS, Comparison, ConsensusDraft, lookup
from consensus.types import MinerCycleResult


@dataclass(frozen=True, slots=True)
class TiebreakRequest:
    """The disputed properties of one batch and the miners asked to re-check them."""

    batch_id: int
    miners: tuple[MinerInfo, ...]
    properties: tuple[tuple[str, int], ...]  # (zipcode, zpid)


@dataclass(frozen=True, slots=True)
class TiebreakAnswer:
    """One tie-breaker's answer: zpid -> hash_to_int(record_hash), None = does not exist.

    A zpid left out was not answered (the miner's source failed or it did not try).
    """

    miner: MinerInfo
    batch_id: int
    records: Mapping[int, int | None]


@dataclass(slots=True)
class TiebreakOutcome:
    """Resolved disputes by zipcode key, and how each tie-breaker fared."""

    resolved: dict[int, int | None] = field(default_factory=dict)  # zkey -> hash, None = absent
    unresolved: set[int] = field(default_factory=set)  # zkeys asked about and not resolved
    correct: Counter = field(default_factory=Counter)  # hotkey -> answers matching a resolution
    wrong: Counter = field(default_factory=Counter)  # hotkey -> answers contradicting one
    unanswered: Counter = field(default_factory=Counter)  # hotkey -> resolved zpids not answered
    miners: dict[str, MinerInfo] = field(default_factory=dict)  # tie-breakers by hotkey


def disputed_zpids(draft: ConsensusDraft, seed: bytes) -> dict[int, list[tuple[str, int]]]:
    """The disputed (zipcode, zpid) pairs to re-check, by batch, bounded and seeded."""
    cfg = draft.config
    keys = draft.comparison.disputed_keys
    if keys.size == 0 or cfg.tiebreak_max_per_cycle <= 0 or cfg.tiebreak_max_per_miner <= 0:
        return {}
    zi = keys >> ZPID_BITS
    zpid = keys & ((1 << ZPID_BITS) - 1)
    batch = draft.zipcode_batch[zi]
    zipcode_number = draft.zipcode_number
    rank = seeded_rank(seed + b"tiebreak", zipcode_number[zi], zpid)
    # Disputes of zipcodes under the confidence threshold come first: settling
    # them is what turns a zipcode into evidence.
    settled = draft.comparison.confidence[zi] >= cfg.zipcode_confidence_threshold - EPS
    order = np.lexsort((rank, settled, batch))
    batch_sorted = batch[order]
    change = np.ones(order.size, bool)
    change[1:] = batch_sorted[1:] != batch_sorted[:-1]
    run_start = np.maximum.accumulate(np.where(change, np.arange(order.size), 0))
    position = np.arange(order.size) - run_start  # rank within its batch
    batch_ids = np.unique(batch_sorted)
    batch_rank = seeded_rank(seed + b"tiebreak-batch", batch_ids)
    turn = np.argsort(np.argsort(batch_rank, kind="stable"), kind="stable")
    batch_turn = turn[np.searchsorted(batch_ids, batch_sorted)]
    keep = position < cfg.tiebreak_max_per_miner
    # Batches take turns: every batch's first dispute, then every batch's second...
    chosen = np.flatnonzero(keep)
    chosen = chosen[np.lexsort((batch_turn[chosen], position[chosen]))]
    chosen = chosen[: cfg.tiebreak_max_per_cycle]
    out: dict[int, list[tuple[str, int]]] = defaultdict(list)
    for i in sorted(chosen.tolist()):  # batch, then rank order
        k = int(order[i])
        out[int(batch[k])].append((draft.zipcodes[int(zi[k])], int(zpid[k])))
    return dict(out)


def select_tiebreakers(
    draft: ConsensusDraft,
    disputes: Mapping[int, Sequence[tuple[str, int]]],
    seed: bytes,
    pool: Iterable[MinerInfo] | None = None,
) -> dict[int, tuple[MinerInfo, ...]]:
    """Per disputed batch, up to ``tiebreak_miners`` miners of neither group, one per coldkey.

    ``pool`` defaults to every miner of the plan. A miner whose coldkey is in
    either group of the batch is never chosen. Deterministic in (plan, pool
    set, disputes, seed).
    """
    cfg = draft.config
    candidates = sorted(
        set(pool) if pool is not None else {m for g in draft.plan.groups for m in g.miners}
    )
    if not candidates or not disputes:
        return {}
    uids = np.array([m.uid for m in candidates], np.int64)
    members: dict[int, list[MinerInfo]] = defaultdict(list)
    for group in draft.plan.groups:
        members[group.batch_id].extend(group.miners)
    batch_ids = np.array(sorted(b for b, d in disputes.items() if d), np.int64)
    batch_order = batch_ids[
        np.argsort(seeded_rank(seed + b"tiebreak-batch", batch_ids), kind="stable")
    ]
    load: Counter[str] = Counter()
    out: dict[int, tuple[MinerInfo, ...]] = {}
    for batch_id in batch_order.tolist():
        need = len(disputes[batch_id])
        banned_hot = {m.hotkey for m in members.get(batch_id, [])}
        banned_cold = {m.coldkey for m in members.get(batch_id, [])}
        rank = seeded_rank(seed + b"tiebreaker", np.full(uids.size, batch_id, np.int64), uids)
        chosen: list[MinerInfo] = []
        used_cold: set[str] = set()
        for i in np.argsort(rank, kind="stable").tolist():
            miner = candidates[i]
            if (
                miner.hotkey in banned_hot
                or miner.coldkey in banned_cold
                or miner.coldkey in used_cold
                or load[miner.hotkey] + need > cfg.tiebreak_max_per_miner
            ):
                continue
            chosen.append(miner)
            used_cold.add(miner.coldkey)
            if len(chosen) >= cfg.tiebreak_miners:
                break
        for miner in chosen:
            load[miner.hotkey] += need
        if chosen:
            out[batch_id] = tuple(chosen)
    return out


def plan_tiebreaks(
    draft: ConsensusDraft, seed: bytes, pool: Iterable[MinerInfo] | None = None
) -> list[TiebreakRequest]:
    """The cycle's tie-break requests: disputed zpids and the fresh miners asked, per batch.

    Batches that cannot get ``tiebreak_min_answers`` miners are left out: their
    disputes could not be resolved anyway.
    """
    disputes = disputed_zpids(draft, seed)
    chosen = select_tiebreakers(draft, disputes, seed, pool)
    return [
        TiebreakRequest(batch_id, miners, tuple(disputes[batch_id]))
        for batch_id, miners in sorted(chosen.items())
        if len(miners) >= draft.config.tiebreak_min_answers
    ]


def resolve_disputes(
    draft: ConsensusDraft,
    requests: Sequence[TiebreakRequest],
    answers: Sequence[TiebreakAnswer],
    evidence: Mapping[str, float] | None = None,
) -> TiebreakOutcome:
    """Credibility-weighted vote of each dispute's tie-breakers (others' answers are ignored).

    ``evidence`` scales the weight of tie-breakers whose answers this cycle
    the validator's own checks contradicted (``consensus/evidence.py``).
    """
    evidence = evidence or {}
    cfg = draft.config
    by_miner: dict[tuple[int, str], TiebreakAnswer] = {}
    for a in answers:
        by_miner.setdefault((a.batch_id, a.miner.hotkey), a)  # first answer counts
    outcome = TiebreakOutcome()
    for request in requests:
        asked = [m for m in request.miners]
        for miner in asked:
            outcome.miners[miner.hotkey] = miner
        for zipcode, zpid in request.properties:
            zi = draft.zipcode_index.get(zipcode)
            if zi is None:
                continue
            zkey = (zi << ZPID_BITS) | int(zpid)
            votes: dict[int | None, float] = defaultdict(float)
            voters: dict[str, int | None] = {}
            for miner in asked:
                a = by_miner.get((request.batch_id, miner.hotkey))
                if a is None or a.miner != miner or int(zpid) not in a.records:
                    continue
                value = a.records[int(zpid)]
                value = None if value is None else int(value)
                voters[miner.hotkey] = value
                weight = max(
                    cfg.min_credibility_weight, float(draft.credibility.get(miner.hotkey, 0.5))
                ) * evidence.get(miner.hotkey, 1.0)
                votes[value] += weight
            total = sum(votes.values())
            winner, best = None, -1.0
            for value, weight in votes.items():
                if weight > best:
                    winner, best = value, weight
            if (
                len(voters) >= cfg.tiebreak_min_answers
                and best >= cfg.tiebreak_threshold * total - EPS
            ):
                outcome.resolved[zkey] = winner
                for miner in asked:
                    if miner.hotkey not in voters:
                        outcome.unanswered[miner.hotkey] += 1
                    elif voters[miner.hotkey] == winner:
                        outcome.correct[miner.hotkey] += 1
                    else:
                        outcome.wrong[miner.hotkey] += 1
            else:
                outcome.unresolved.add(zkey)
    return outcome


def apply_resolution(
    draft: ConsensusDraft, comparison: Comparison, outcome: TiebreakOutcome
) -> int:
    """Settle still-disputed keys in place; returns how many were settled.

    A record resolved present joins the confirmed set with the winning value;
    one resolved absent leaves the disputed set, so whoever reported it holds
    an unconfirmed record. Agreement counts settled disputes as agreed.
    """
    if not outcome.resolved:
        return 0
    nz = draft.n_zipcodes
    keys = np.array(sorted(outcome.resolved), np.int64)
    multi = comparison.valid_groups[keys >> ZPID_BITS] >= 2
    in_disputed = lookup(comparison.disputed_keys, keys)[1]
    in_uncertain = lookup(comparison.uncertain_keys, keys)[1]
    settle = keys[multi & (in_disputed | in_uncertain)]
    if settle.size == 0:
        return 0
    present = np.array([outcome.resolved[int(k)] is not None for k in settle], bool)
    add_keys = settle[present]
    add_hash = np.array([outcome.resolved[int(k)] for k in add_keys], np.int64)
    add_row = np.array(
        [_row_with_value(draft, int(k), int(h)) for k, h in zip(add_keys, add_hash, strict=True)],
        np.int64,
    )
    keep_c = (
        ~lookup(add_keys, comparison.confirmed_keys)[1]
        if add_keys.size
        else np.ones(comparison.confirmed_keys.size, bool)
    )
    all_keys = np.concatenate([comparison.confirmed_keys[keep_c], add_keys])
    order = np.argsort(all_keys, kind="stable")
    comparison.confirmed_keys = all_keys[order]
    comparison.confirmed_hash = np.concatenate([comparison.confirmed_hash[keep_c], add_hash])[order]
    comparison.confirmed_resolved = np.concatenate(
        [comparison.confirmed_resolved[keep_c], np.ones(add_keys.size, bool)]
    )[order]
    comparison.confirmed_row = np.concatenate([comparison.confirmed_row[keep_c], add_row])[order]
    comparison.disputed_keys = comparison.disputed_keys[
        ~lookup(settle, comparison.disputed_keys)[1]
    ]
    comparison.uncertain_keys = comparison.uncertain_keys[
        ~lookup(settle, comparison.uncertain_keys)[1]
    ]
    absent = np.bincount(settle[~present] >> ZPID_BITS, minlength=nz)
    comparison.confirmed_count = np.bincount(comparison.confirmed_keys >> ZPID_BITS, minlength=nz)
    comparison.disputed_count = np.bincount(comparison.disputed_keys >> ZPID_BITS, minlength=nz)
    touched = np.zeros(nz, bool)
    touched[settle >> ZPID_BITS] = True
    agreed = comparison.confirmed_count + absent
    union = agreed + comparison.disputed_count
    agreement = np.where(union > 0, agreed / np.maximum(union, 1), 1.0)
    comparison.agreement = np.where(touched, agreement, comparison.agreement)
    comparison.confidence = np.where(
        touched,
        zipcode_confidence(
            draft.config, comparison.agreement, comparison.margin, comparison.responders
        ),
        comparison.confidence,
    )
    return int(settle.size)


def _row_with_value(draft: ConsensusDraft, zkey: int, value: int) -> int:
    """A row some group accepted with this value (its fields judge near-misses), else -1."""
    gc = draft.groups
    nz = draft.n_zipcodes
    zi, zpid = zkey >> ZPID_BITS, zkey & ((1 << ZPID_BITS) - 1)
    key_sorted = (gc.key_cell << ZPID_BITS) | gc.key_zpid
    for gi, group in enumerate(draft.plan.groups):
        if group.batch_id != int(draft.zipcode_batch[zi]):
            continue
        key = ((gi * nz + zi) << ZPID_BITS) | zpid
        k = int(np.searchsorted(key_sorted, key))
        if k < key_sorted.size and key_sorted[k] == key and int(gc.value_hash[k]) == value:
            return int(gc.representative_row[k])
    return -1


def score_tiebreakers(
    draft: ConsensusDraft, outcome: TiebreakOutcome, results: dict[str, MinerCycleResult]
) -> None:
    """Credit tie-breakers like any evidence: right answers earn, wrong ones cost precision."""
    volume = draft.config.tiebreak_record_volume
    for hotkey, miner in sorted(outcome.miners.items()):
        right, wrong = outcome.correct[hotkey], outcome.wrong[hotkey]
        missed = outcome.unanswered[hotkey]
        if right + wrong + missed == 0:
            continue
        result = results.get(hotkey)
        if result is None:
            result = results[hotkey] = MinerCycleResult(miner.uid, miner.hotkey, miner.coldkey)
        result.evidence_volume += (right + wrong + missed) * volume
        result.answered_evidence_volume += (right + wrong) * volume
        result.precision_sum += right * volume
        result.recall_sum += right * volume
        result.quality_sum += right * volume
        result.earned += right * volume
