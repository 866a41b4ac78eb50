"""What the validator's own source says, turned into evidence about records and miners.

Head counts decide most listings, but a head count can be bought: coldkeys
cost nothing, so a pool of hotkeys serving one answer, or leaving the same
listings out everywhere, can outvote independent miners. The validator's own
source is the one voice a pool cannot buy. Three things follow from its
verdicts, all pure functions of the draft, the verdicts and the cycle seed:

1. ``uncertain_checks``: the records that no group accepted yet two or more
   coldkeys reported (``Comparison.uncertain_keys``) are checked too, a
   seeded few per batch. They are where a bloc's omissions or a cartel's
   inventions show.
2. ``evidence_weights``: every responder of a checked zipcode voted on the
   checked record, by reporting it or by leaving it out. A submission whose
   votes the checks contradicted at least ``evidence_min_wrong`` times, and
   no less often than they bore them out, keeps the square of the share it
   got right of its weight in the tally run again after the checks (a bloc
   that left out real listings, wrong on 7 checks of 8, keeps 1.6%: two
   honest reporters then outvote seven of its members). One honest miss
   among right answers costs nothing.
3. ``verified_resolutions``: a listing the source found is settled present
   with the checked value; one it did not find is settled absent. A tally
   never outvotes the validator's own check.

    requests = uncertain_checks(draft, seed)            # with the other spot checks
    weights, by_hotkey = evidence_weights(draft, verdicts)  # None: nothing to re-tally
    resolved = verified_resolutions(draft, verdicts)    # zkey -> hash, None = absent
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from consensus.antigaming import first_per_run, seeded_rank
from consensus.draft import ZPID_BITS, ConsensusDraft
from consensus.types import SpotCheckRequest, Verdict

UNCERTAIN_REASON = "uncertain"


def uncertain_checks(draft: ConsensusDraft, seed: bytes) -> list[SpotCheckRequest]:
    """Up to ``spot_checks_per_uncertain_batch`` uncertain records per batch, seeded.

    Each carries the value most of its reporters gave (the lowest hash on a tie).
    """
    cfg = draft.config
    keys = draft.comparison.uncertain_keys
    if keys.size == 0 or cfg.spot_checks_per_uncertain_batch <= 0:
        return []
    gc = draft.groups
    nz = draft.n_zipcodes
    zi = keys >> ZPID_BITS
    zpid = keys & ((1 << ZPID_BITS) - 1)
    batch = draft.zipcode_batch[zi]
    rank = seeded_rank(seed + b"uncertain", draft.zipcode_number[zi], zpid)
    chosen = first_per_run((rank, batch), cfg.spot_checks_per_uncertain_batch)

    # The value to check: the group key with the most support among the batch's groups.
    group_zkey = ((gc.key_cell % nz) << ZPID_BITS) | gc.key_zpid
    by_zkey = np.lexsort((-gc.support, group_zkey))
    sorted_zkey = group_zkey[by_zkey]
    requests = []
    for i in chosen.tolist():
        k = int(by_zkey[np.searchsorted(sorted_zkey, keys[i])])
        zipcode_index = int(zi[i])
        requests.append(
            SpotCheckRequest(
                draft.zipcodes[zipcode_index],
                int(zpid[i]),
                int(gc.value_hash[k]),
                draft.row_fields(int(gc.representative_row[k])),
                int(batch[i]),
                UNCERTAIN_REASON,
            )
        )
    return requests


def _own(
    verdicts: Sequence[tuple[SpotCheckRequest, Verdict]],
) -> list[tuple[SpotCheckRequest, Verdict]]:
    """Verdicts that say something: the source answered about the listing."""
    return [
        (r, v) for r, v in verdicts if v in (Verdict.MATCH, Verdict.MISMATCH, Verdict.NOT_FOUND)
    ]


def votes_on_checks(
    draft: ConsensusDraft, verdicts: Sequence[tuple[SpotCheckRequest, Verdict]]
) -> tuple[np.ndarray, np.ndarray]:
    """(right, wrong) per submission: its votes on the checked records.

    Reporting the checked value of a listing the source found is right,
    leaving it out or giving another value is wrong; reporting a listing the
    source did not find is wrong, leaving it out is right; a value the
    source contradicted (``MISMATCH``) is wrong for whoever reported it and
    says nothing of the others. Empty answers that abstained do not vote.
    """
    n = len(draft.submissions)
    right = np.zeros(n, np.int64)
    wrong = np.zeros(n, np.int64)
    if not draft.response_answers:
        return right, wrong
    voting = ~draft.empty_abstains if draft.empty_abstains.size else None
    responses_of: dict[int, np.ndarray] = {}
    for request, verdict in _own(verdicts):
        zi = draft.zipcode_index.get(request.zipcode)
        if zi is None:
            continue
        responses = responses_of.get(zi)
        if responses is None:
            mask = draft.response_zipcode == zi
            if voting is not None:
                mask &= voting
            responses = responses_of[zi] = np.flatnonzero(mask)
        for r in responses.tolist():
            start, end = int(draft.response_start[r]), int(draft.response_start[r + 1])
            zpids = draft.row_zpid[start:end]
            hit = np.flatnonzero(zpids == request.zpid)
            reported = hit.size > 0
            same_value = (
                reported and int(draft.row_hash[start + int(hit[0])]) == request.record_hash
            )
            s = int(draft.response_submission[r])
            if verdict is Verdict.MATCH:
                if same_value:
                    right[s] += 1
                else:
                    wrong[s] += 1
            elif verdict is Verdict.NOT_FOUND:
                if reported:
                    wrong[s] += 1
                else:
                    right[s] += 1
            elif same_value:
                wrong[s] += 1
    return right, wrong


def _kept_share(right: np.ndarray, wrong: np.ndarray, min_wrong: int) -> np.ndarray:
    """Per voter, the share of its weight the checks leave it (1 when not contradicted)."""
    contradicted = (wrong >= min_wrong) & (wrong >= right)
    share = right / np.maximum(right + wrong, 1)
    return np.where(contradicted, share**2, 1.0)


def evidence_weights(
    draft: ConsensusDraft, verdicts: Sequence[tuple[SpotCheckRequest, Verdict]]
) -> tuple[np.ndarray | None, dict[str, float]]:
    """(per submission, per hotkey): the share of tally weight the checks leave each.

    The per-submission array weighs the re-tally (None: nobody was
    contradicted, the first tally stands). The per-hotkey map, over all of a
    miner's submissions, weighs its tie-break votes: tie-breakers are miners
    too, and a pool can be drawn as tie-breakers. Only contradicted miners
    appear in it.
    """
    right, wrong = votes_on_checks(draft, verdicts)
    min_wrong = draft.config.evidence_min_wrong
    per_submission = _kept_share(right, wrong, min_wrong)
    hotkeys = sorted({s.miner.hotkey for s in draft.submissions})
    index = {hk: i for i, hk in enumerate(hotkeys)}
    owner = np.array([index[s.miner.hotkey] for s in draft.submissions], np.int64)
    per_miner = _kept_share(
        np.bincount(owner, weights=right, minlength=len(hotkeys)),
        np.bincount(owner, weights=wrong, minlength=len(hotkeys)),
        min_wrong,
    )
    by_hotkey = {hk: float(per_miner[i]) for hk, i in index.items() if per_miner[i] < 1.0}
    return (per_submission if (per_submission < 1.0).any() else None), by_hotkey


def verified_resolutions(
    draft: ConsensusDraft, verdicts: Sequence[tuple[SpotCheckRequest, Verdict]]
) -> dict[int, int | None]:
    """zkey -> the checked hash (found) or None (not found), from the validator's own source."""
    out: dict[int, int | None] = {}
    for request, verdict in _own(verdicts):
        zi = draft.zipcode_index.get(request.zipcode)
        if zi is None or verdict is Verdict.MISMATCH:
            continue
        zkey = (zi << ZPID_BITS) | request.zpid
        out[zkey] = request.record_hash if verdict is Verdict.MATCH else None
    return out
