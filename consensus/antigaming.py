"""Anti-gaming: seeded spot checks, captured-group detection, copy and cartel detection.

Everything here is a pure function of the draft and values every validator
knows (the cycle seed), so two validators choose the same records to verify.

- Spot checks anchor truth when a colluding majority captures a group: records
  one group accepted and the other did not are checked first, then a seeded
  sample of confirmed records per batch. The caller verifies them through its
  own source and passes verdicts back; a source failure is ``no_evidence``.
- Copying shows in shared idiosyncrasies: two miners of different coldkeys
  with the same misses and the same wrong values in a batch. Honest noise is
  independent, so honest miners share almost none. The later of the two
  (validator's clock) is the copier; when the clock cannot tell, nobody is
  penalised and the pair is still reported.
- A cartel shows as identical *unconfirmed* records (listings nobody else
  found) across coldkeys: every member is flagged.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from consensus.assignment import MinerInfo
from consensus.types import Flag, FlagKind, SpotCheckRequest, Verdict

if TYPE_CHECKING:
    from consensus.engine import ConsensusDraft

_FAIL = (Verdict.MISMATCH, Verdict.NOT_FOUND)


def _order_key(seed: bytes, *parts: object) -> bytes:
    h = hashlib.blake2b(seed, digest_size=8)
    for part in parts:
        h.update(b"\x00" + str(part).encode())
    return h.digest()


def select_spot_checks(draft: ConsensusDraft, seed: bytes) -> list[SpotCheckRequest]:
    """Choose the cycle's spot checks: disputed records first, then a seeded sample.

    Deterministic in (draft, seed). At most ``spot_checks_per_disputed_batch``
    disputed records per batch (alternating between the groups that accepted
    them) and ``spot_checks_per_batch`` confirmed records per batch, capped at
    ``spot_checks_per_cycle`` in all.
    """
    from consensus.engine import ZPID_BITS

    cfg = draft.config
    gc, comparison = draft.groups, draft.comparison
    nz = draft.n_zipcodes
    take = gc.accepted & comparison.valid_cell[gc.key_cell]
    zkey = ((gc.key_cell % nz) << ZPID_BITS) | gc.key_zpid
    disputed = take & np.isin(zkey, comparison.disputed_keys)

    per_batch_group: dict[int, dict[int, list]] = defaultdict(lambda: defaultdict(list))
    for k in np.flatnonzero(disputed).tolist():
        cell = int(gc.key_cell[k])
        gi, zi = divmod(cell, nz)
        zpid, value = int(gc.key_zpid[k]), int(gc.value_hash[k])
        entry = (_order_key(seed, draft.zipcodes[zi], zpid, value), zi, zpid, value, k)
        per_batch_group[int(draft.zipcode_batch[zi])][gi].append(entry)

    chosen: list[SpotCheckRequest] = []
    seen: set[tuple[int, int, int]] = set()
    for batch_id in sorted(per_batch_group, key=lambda b: _order_key(seed, "batch", b)):
        queues = [sorted(q) for _, q in sorted(per_batch_group[batch_id].items())]
        picked = 0
        while picked < cfg.spot_checks_per_disputed_batch and any(queues):
            for queue in queues:
                if queue and picked < cfg.spot_checks_per_disputed_batch:
                    _, zi, zpid, value, k = queue.pop(0)
                    if (zi, zpid, value) in seen:
                        continue
                    seen.add((zi, zpid, value))
                    row = int(gc.representative_row[k])
                    chosen.append(
                        SpotCheckRequest(
                            draft.zipcodes[zi],
                            zpid,
                            value,
                            draft.row_fields(row),
                            batch_id,
                            "disputed",
                        )
                    )
                    picked += 1

    sample: dict[int, list] = defaultdict(list)
    keys = comparison.confirmed_keys
    for i, key in enumerate(keys.tolist()):
        zi, zpid = key >> ZPID_BITS, key & ((1 << ZPID_BITS) - 1)
        value = int(comparison.confirmed_hash[i])
        sample[int(draft.zipcode_batch[zi])].append(
            (_order_key(seed, "sample", draft.zipcodes[zi], zpid), zi, zpid, value, i)
        )
    for batch_id in sorted(sample, key=lambda b: _order_key(seed, "sample-batch", b)):
        for _, zi, zpid, value, i in sorted(sample[batch_id])[: cfg.spot_checks_per_batch]:
            if (zi, zpid, value) in seen:
                continue
            seen.add((zi, zpid, value))
            row = int(comparison.confirmed_row[i])
            fields = draft.row_fields(row) if row >= 0 else None
            chosen.append(
                SpotCheckRequest(draft.zipcodes[zi], zpid, value, fields, batch_id, "sample")
            )
    disputed_first = [r for r in chosen if r.reason == "disputed"]
    samples = [r for r in chosen if r.reason == "sample"]
    return (disputed_first + samples)[: cfg.spot_checks_per_cycle]


def apply_verdicts(
    draft: ConsensusDraft, verdicts: Sequence[tuple[SpotCheckRequest, Verdict]]
) -> tuple[set[int], dict[int, float], set[int]]:
    """Turn verdicts into captured groups, single-group trust and non-existent listings.

    A group fails a check when it accepted the checked value and the source
    disagrees (or the listing does not exist), or accepted another value of a
    listing the source confirmed. Returns (captured group indexes, {group
    index: share of its checks passed}, {zipcode_index << ZPID_BITS | zpid of
    listings found not to exist}). Only non-existence flags individual miners:
    a wrong value can be honest staleness, an invented listing cannot.
    """
    from consensus.engine import ZPID_BITS

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
    captured = {
        gi for gi, n in failures.items() if n >= cfg.capture_min_failures or n > passes.get(gi, 0)
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
    deviation_unconfirmed: np.ndarray,
    completion: dict[tuple[int, int], float | None],
) -> list[Flag]:
    """Flag copiers and cartels from deviations shared across coldkeys.

    Takes one entry per deviation (a miss, a wrong value or an unconfirmed
    record, on an evidence zipcode): the miner's index into ``miners``, its batch, a key that is
    equal for identical deviations, and whether it is an unconfirmed record.
    ``completion`` maps (miner index, batch) to the validator-measured
    completion time. Returns flags with the pair, batch and counts as evidence.
    """
    cfg = draft.config
    per_miner_batch = Counter(zip(deviation_miner.tolist(), deviation_batch.tolist(), strict=True))
    order = np.lexsort((deviation_miner, deviation_key))
    keys = deviation_key[order]
    owners = deviation_miner[order]
    batches = deviation_batch[order]
    unconfirmed = deviation_unconfirmed[order]
    shared: Counter[tuple[int, int, int]] = Counter()
    shared_unconfirmed: Counter[tuple[int, int, int]] = Counter()
    if keys.size:
        bounds = np.flatnonzero(np.diff(keys)) + 1
        starts = np.concatenate(([0], bounds))
        ends = np.concatenate((bounds, [keys.size]))
        sizes = ends - starts
        for s, e in zip(
            starts[(sizes >= 2) & (sizes <= cfg.max_copy_group_size)].tolist(),
            ends[(sizes >= 2) & (sizes <= cfg.max_copy_group_size)].tolist(),
            strict=True,
        ):
            group = owners[s:e].tolist()
            batch = int(batches[s])
            is_unconfirmed = bool(unconfirmed[s])
            for i in range(len(group)):
                for j in range(i + 1, len(group)):
                    a, b = group[i], group[j]
                    if miners[a].coldkey == miners[b].coldkey:
                        continue  # sybils are handled by assignment, not here
                    pair = (min(a, b), max(a, b), batch)
                    shared[pair] += 1
                    if is_unconfirmed:
                        shared_unconfirmed[pair] += 1

    flags: list[Flag] = []
    for (a, b, batch), count in sorted(shared.items()):
        unconfirmed_count = shared_unconfirmed.get((a, b, batch), 0)
        union = per_miner_batch[(a, batch)] + per_miner_batch[(b, batch)] - count
        jaccard = count / union if union else 0.0
        evidence = {
            "batch_id": batch,
            "pair": [miners[a].hotkey, miners[b].hotkey],
            "shared_deviations": count,
            "shared_unconfirmed": unconfirmed_count,
            "jaccard": round(jaccard, 3),
        }
        if unconfirmed_count >= cfg.cartel_min_shared:
            for m in (a, b):
                flags.append(Flag(miners[m].hotkey, FlagKind.CARTEL, evidence))
            continue
        if count < cfg.copy_min_shared or jaccard < cfg.copy_min_jaccard:
            continue
        ta, tb = completion.get((a, batch)), completion.get((b, batch))
        if ta is None or tb is None or abs(ta - tb) <= cfg.copy_tie_window_s:
            continue  # the clock cannot say who copied whom: no penalty
        copier = a if ta > tb else b
        flags.append(
            Flag(
                miners[copier].hotkey, FlagKind.COPYING, evidence | {"copier_later_s": abs(ta - tb)}
            )
        )
    return flags
