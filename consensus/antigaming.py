"""Anti-gaming: seeded spot checks, captured-group detection, copy and cartel detection.

Everything here is a pure function of the draft and values every validator
knows (the cycle seed), so two validators choose the same records to verify.

- Spot checks anchor truth when a colluding majority captures a group: records
  one group accepted and the other did not are checked first, then a seeded
  sample of confirmed records per batch. The caller verifies them through its
  own source and passes verdicts back; a source failure is ``no_evidence``.
- Copying shows in shared idiosyncrasies: two miners of different coldkeys
  with the same misses and the same wrong values in a batch. Honest noise is
  independent, so honest miners share almost none. A pair is flagged only
  when one of its shared deviations is verified false by the validator's own
  source; the later of the two (validator's clock) is the copier; when the
  clock cannot tell, nobody is penalised.
- A cartel is caught by evidence, not by agreement: records several
  coldkeys share that the source does not find (``evaluation.py``).
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Sequence

import numpy as np

from consensus.assignment import MinerInfo
from consensus.draft import ZPID_BITS, ConsensusDraft, coldkey_ids, lookup
from consensus.types import Flag, FlagKind, SpotCheckRequest, Verdict

_FAIL = (Verdict.MISMATCH, Verdict.NOT_FOUND)


def seeded_rank(seed: bytes, *columns: np.ndarray) -> np.ndarray:
    """A uint64 pseudo-random rank per row: a pure function of the seed and the values.

    SplitMix64 over the columns, so every validator ranks the same records
    the same way on any machine, without a random generator's version drift.
    """
    state = int.from_bytes(hashlib.blake2b(seed, digest_size=8).digest())
    x = np.full(columns[0].shape[0], state, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for column in columns:
            x = (x ^ column.astype(np.uint64)) + np.uint64(0x9E3779B97F4A7C15)
            x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
            x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
            x = x ^ (x >> np.uint64(31))
    return x


def first_per_run(order_columns: tuple[np.ndarray, ...], limit: int) -> np.ndarray:
    """Indexes of the first ``limit`` rows of each run of the leading columns, lexsorted.

    ``order_columns`` is (rank, *group columns) as for ``np.lexsort``: rows are
    ordered by the group columns, then by rank.
    """
    if order_columns[0].size == 0:
        return np.zeros(0, np.int64)
    order = np.lexsort(order_columns)
    groups = [c[order] for c in order_columns[1:]]
    change = np.zeros(order.size, bool)
    change[0] = True
    for column in groups:
        change[1:] |= column[1:] != column[:-1]
    run_start = np.maximum.accumulate(np.where(change, np.arange(order.size), 0))
    return order[np.arange(order.size) - run_start < limit]


def select_spot_checks(
    draft: ConsensusDraft, seed: bytes, uncertain: Sequence[SpotCheckRequest] = ()
) -> list[SpotCheckRequest]:
    """Choose the cycle's spot checks: disputed records, then uncertain ones, then a sample.

    Deterministic in (draft, seed). At most ``spot_checks_per_disputed_batch``
    disputed records per batch (alternating between the groups that accepted
    them), the ``uncertain`` checks (``consensus/evidence.py``) and
    ``spot_checks_per_batch`` confirmed records per batch, capped at
    ``spot_checks_per_cycle`` in all; batches take turns in a seeded order.
    """
    cfg = draft.config
    gc, comparison = draft.groups, draft.comparison
    nz = draft.n_zipcodes
    zipcode_number = draft.zipcode_number
    take = gc.accepted & comparison.valid_cell[gc.key_cell]
    zkey = ((gc.key_cell % nz) << ZPID_BITS) | gc.key_zpid
    disputed = np.flatnonzero(take & lookup(comparison.disputed_keys, zkey)[1])
    d_zi = gc.key_cell[disputed] % nz
    d_group = gc.key_cell[disputed] // nz
    d_batch = draft.zipcode_batch[d_zi]
    d_rank = seeded_rank(seed, zipcode_number[d_zi], gc.key_zpid[disputed], gc.value_hash[disputed])
    per_group = cfg.spot_checks_per_disputed_batch
    firsts = disputed[first_per_run((d_rank, d_group, d_batch), per_group)]

    queues: dict[int, dict[int, list[int]]] = defaultdict(lambda: defaultdict(list))
    for k in firsts.tolist():  # already in (batch, group, rank) order
        gi, zi = divmod(int(gc.key_cell[k]), nz)
        queues[int(draft.zipcode_batch[zi])][gi].append(k)
    batch_ids = np.array(sorted(set(draft.zipcode_batch.tolist())), np.int64)
    batch_order = batch_ids[np.argsort(seeded_rank(seed + b"batch", batch_ids), kind="stable")]

    disputed_checks: list[SpotCheckRequest] = []
    seen: set[tuple[int, int, int]] = set()
    for batch_id in batch_order.tolist():
        lanes = [lane for _, lane in sorted(queues.get(batch_id, {}).items())]
        picked = 0
        while picked < per_group and any(lanes):
            for lane in lanes:
                if not lane or picked >= per_group:
                    continue
                k = lane.pop(0)
                zi, zpid, value = (
                    int(gc.key_cell[k] % nz),
                    int(gc.key_zpid[k]),
                    int(gc.value_hash[k]),
                )
                if (zi, zpid, value) in seen:
                    continue
                seen.add((zi, zpid, value))
                fields = draft.row_fields(int(gc.representative_row[k]))
                disputed_checks.append(
                    SpotCheckRequest(draft.zipcodes[zi], zpid, value, fields, batch_id, "disputed")
                )
                picked += 1

    uncertain_checks = []
    for request in uncertain:
        zi = draft.zipcode_index[request.zipcode]
        if (zi, request.zpid, request.record_hash) not in seen:
            seen.add((zi, request.zpid, request.record_hash))
            uncertain_checks.append(request)

    keys = comparison.confirmed_keys
    c_zi = keys >> ZPID_BITS
    c_rank = seeded_rank(seed + b"sample", zipcode_number[c_zi], keys & ((1 << ZPID_BITS) - 1))
    c_batch = draft.zipcode_batch[c_zi]
    chosen = first_per_run((c_rank, c_batch), cfg.spot_checks_per_batch)
    by_batch: dict[int, list[int]] = defaultdict(list)
    for i in chosen.tolist():
        by_batch[int(c_batch[i])].append(i)
    samples: list[SpotCheckRequest] = []
    for batch_id in batch_order.tolist():
        for i in by_batch.get(batch_id, []):
            zi, zpid = int(c_zi[i]), int(keys[i] & ((1 << ZPID_BITS) - 1))
            value = int(comparison.confirmed_hash[i])
            if (zi, zpid, value) in seen:
                continue
            seen.add((zi, zpid, value))
            row = int(comparison.confirmed_row[i])
            fields = draft.row_fields(row) if row >= 0 else None
            samples.append(
                SpotCheckRequest(draft.zipcodes[zi], zpid, value, fields, batch_id, "sample")
            )
    return (disputed_checks + uncertain_checks + samples)[: cfg.spot_checks_per_cycle]


def apply_verdicts(
    draft: ConsensusDraft,
    verdicts: Sequence[tuple[SpotCheckRequest, Verdict]],
) -> tuple[set[int], dict[int, float], set[int]]:
    """Turn verdicts into captured groups, single-group trust and non-existent listings.

    A group fails a check when it accepted the checked value and the source
    disagrees (or the listing does not exist), or accepted another value of a
    listing the source confirmed. Returns (captured group indexes, {group
    index: share of its checks passed}, {zipcode_index << ZPID_BITS | zpid of
    listings found not to exist}). Only non-existence flags individual miners:
    a wrong value can be honest staleness, an invented listing cannot.
    """
    cfg = draft.config
    gc = draft.groups
    nz = draft.n_zipcodes
    key_sorted = (gc.key_cell << ZPID_BITS) | gc.key_zpid  # ascending by construction
    passes: Counter[int] = Counter()
    failures: Counter[int] = Counter()
    missing: set[int] = set()
    for request, verdict in verdicts:
        zi = draft.zipcode_index.get(request.zipcode)
        if zi is None or verdict not in (Verdict.MATCH, *_FAIL):
            continue
        zkey = (zi << ZPID_BITS) | request.zpid
        if verdict is Verdict.NOT_FOUND:
            missing.add(zkey)
        for gi, group in enumerate(draft.plan.groups):
            if group.batch_id != request.batch_id:
                continue
            key = ((gi * nz + zi) << ZPID_BITS) | request.zpid
            k = int(np.searchsorted(key_sorted, key))
            if k >= key_sorted.size or key_sorted[k] != key or not gc.accepted[k]:
                continue
            same_value = not gc.value_resolved[k] or int(gc.value_hash[k]) == request.record_hash
            if verdict is Verdict.MATCH:
                (passes if same_value else failures)[gi] += 1
            elif verdict is Verdict.NOT_FOUND or same_value:
                failures[gi] += 1
    # Capture needs repeated failures that outnumber passes: one stale answer
    # from the validator's own source must not void an honest batch.
    captured = {
        gi for gi, n in failures.items() if n >= cfg.capture_min_failures and n > passes.get(gi, 0)
    }
    trust = {
        gi: passes[gi] / (passes[gi] + failures.get(gi, 0)) for gi in passes if gi not in captured
    }
    return captured, trust, missing


def detect_copies(
    draft: ConsensusDraft,
    miners: Sequence[MinerInfo],
    deviation_miner: np.ndarray,
    deviation_batch: np.ndarray,
    deviation_key: np.ndarray,
    deviation_verified: np.ndarray,
    completion: dict[tuple[int, int], float | None],
) -> list[Flag]:
    """Flag copiers from deviations shared across coldkeys, where the source backs them.

    Takes one entry per deviation (a miss, a wrong value or an unconfirmed
    record, on an evidence zipcode): the miner's index into ``miners``, its
    batch, a key that is equal for identical deviations, and whether the
    validator's own source checked it false. ``completion`` maps (miner
    index, batch) to the validator-measured completion time (None: it never
    said it completed, so it counts as completing at the deadline). A pair
    sharing enough deviations is a copying pair only when at least one of
    them is verified: agreement alone is never evidence (honest miners
    calling the same source can agree on its errors too). Returns flags with
    the pair, batch and counts as evidence.
    """
    cfg = draft.config
    per_miner_batch = Counter(zip(deviation_miner.tolist(), deviation_batch.tolist(), strict=True))
    shared, shared_verified = _shared_deviation_counts(
        cfg.copy_max_sharers,
        coldkey_ids([m.coldkey for m in miners]),
        deviation_miner,
        deviation_batch,
        deviation_key,
        deviation_verified,
    )
    flags: list[Flag] = []
    for a, b, batch in sorted(p for p, n in shared.items() if n >= cfg.copy_min_shared):
        count = shared[(a, b, batch)]
        verified = shared_verified.get((a, b, batch), 0)
        union = per_miner_batch[(a, batch)] + per_miner_batch[(b, batch)] - count
        jaccard = count / union if union else 0.0
        if jaccard < cfg.copy_min_jaccard or verified < 1:
            continue
        deadline = cfg.assignment_timeout_s
        ta = completion.get((a, batch))
        tb = completion.get((b, batch))
        ta = deadline if ta is None else ta
        tb = deadline if tb is None else tb
        if abs(ta - tb) <= cfg.copy_tie_window_s:
            continue  # the clock cannot say who copied whom: no penalty
        copier = a if ta > tb else b
        evidence = {
            "batch_id": batch,
            "pair": [miners[a].hotkey, miners[b].hotkey],
            "shared_deviations": count,
            "verified_false": verified,
            "jaccard": round(jaccard, 3),
            "copier_later_s": abs(ta - tb),
        }
        flags.append(Flag(miners[copier].hotkey, FlagKind.COPYING, evidence))
    return flags


def _shared_deviation_counts(
    copy_max: int,
    coldkey_of: np.ndarray,
    miner: np.ndarray,
    batch: np.ndarray,
    key: np.ndarray,
    verified: np.ndarray,
) -> tuple[Counter, Counter]:
    """Count, per (miner a, miner b, batch), the identical deviations a and b share.

    Returns (all shared deviations, shared verified ones). A deviation shared
    by more than ``copy_max`` miners is common to the batch (a listing posted
    mid-cycle), not a copying fingerprint. Pairs under one coldkey are
    skipped: assignment keeps them apart already.
    """
    order = np.argsort(key, kind="stable")
    key, miner, batch, verified = key[order], miner[order], batch[order], verified[order]
    if key.size == 0:
        return Counter(), Counter()
    bounds = np.flatnonzero(key[1:] != key[:-1]) + 1
    starts = np.concatenate(([0], bounds))
    sizes = np.diff(np.concatenate((starts, [key.size])))
    a_parts, b_parts, batch_parts, verified_parts = [], [], [], []
    for size in range(2, copy_max + 1):
        first = starts[sizes == size]
        if first.size == 0:
            continue
        i, j = np.triu_indices(size, 1)
        a_parts.append(miner[first[:, None] + i].ravel())
        b_parts.append(miner[first[:, None] + j].ravel())
        batch_parts.append(np.repeat(batch[first], i.size))
        verified_parts.append(np.repeat(verified[first], i.size))
    if not a_parts:
        return Counter(), Counter()
    a, b = np.concatenate(a_parts), np.concatenate(b_parts)
    pair_batch, pair_verified = np.concatenate(batch_parts), np.concatenate(verified_parts)
    keep = (a != b) & (coldkey_of[a] != coldkey_of[b])
    lo, hi = np.minimum(a, b)[keep], np.maximum(a, b)[keep]
    pair_batch, pair_verified = pair_batch[keep], pair_verified[keep]
    n = int(coldkey_of.size)
    n_batches = int(pair_batch.max()) + 1 if pair_batch.size else 1
    code = (lo * n + hi) * n_batches + pair_batch

    def count(codes: np.ndarray) -> Counter:
        values, counts = np.unique(codes, return_counts=True)
        out: Counter = Counter()
        for value, c in zip(values.tolist(), counts.tolist(), strict=True):
            pair, pair_batch_id = divmod(value, n_batches)
            out[(*divmod(pair, n), pair_batch_id)] = c
        return out

    return count(code), count(code[pair_verified])
