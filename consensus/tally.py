"""Group consensus: inside each group, which records its responders agree on.

A record (zpid) is accepted when the credibility-weighted share of the
group's responders who reported it reaches ``consensus_threshold``; its value
is the record hash carrying the same share among those reporters (else the
value is unresolved: presence only). Every row is sorted once by (cell, zpid,
hash); every tally reuses that order (kept on the draft, so the re-tally
after spot checks costs no sort).

An empty answer where the group's majority reports listings is no vote: it
neither lowers the support of the listings others found nor counts as a
responder (a miner cannot thin a zipcode's consensus by answering nothing).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from consensus.draft import EPS, ZPID_BITS, ConsensusDraft, GroupConsensus, run_boundaries


@dataclass(slots=True)
class _SortedRows:
    """Every row sorted once by (cell, zpid, hash); each tally reuses the order."""

    order: np.ndarray
    key_sorted: np.ndarray
    hash_sorted: np.ndarray
    response_sorted: np.ndarray
    key_starts: np.ndarray
    run_starts: np.ndarray
    run_key: np.ndarray
    row_key: np.ndarray  # key index of each sorted row
    response_cell: np.ndarray
    n_cells: int


def _sort_rows(draft: ConsensusDraft) -> _SortedRows:
    n_cells = len(draft.plan.groups) * draft.n_zipcodes
    if n_cells >= 1 << (63 - ZPID_BITS):
        raise ValueError(f"{n_cells} group-zipcode cells do not fit the packed key")
    response_cell = (
        draft.submission_group[draft.response_submission] * draft.n_zipcodes
        + draft.response_zipcode
    )
    key = (response_cell[draft.row_response] << ZPID_BITS) | draft.row_zpid
    order = np.lexsort((draft.row_hash, key))
    key_sorted = key[order]
    hash_sorted = draft.row_hash[order]
    key_starts = run_boundaries(key_sorted)
    run_starts = run_boundaries(key_sorted, hash_sorted)
    row_key = np.zeros(key_sorted.size, np.int64)
    if key_starts.size:
        row_key[key_starts[1:]] = 1
        row_key = np.cumsum(row_key)
    return _SortedRows(
        order=order,
        key_sorted=key_sorted,
        hash_sorted=hash_sorted,
        response_sorted=draft.row_response[order],
        key_starts=key_starts,
        run_starts=run_starts,
        run_key=np.searchsorted(key_starts, run_starts, side="right") - 1,
        row_key=row_key,
        response_cell=response_cell,
        n_cells=n_cells,
    )


def _tally(
    draft: ConsensusDraft,
    rows: _SortedRows,
    response_weight: np.ndarray,
    counted: np.ndarray | None = None,
) -> GroupConsensus:
    """Weighted support and winning value of every (cell, zpid) key.

    ``counted`` marks the responses that vote (all when None); the others
    have no weight and are not responders.
    """
    cfg = draft.config
    n_cells = rows.n_cells
    if counted is not None:
        response_weight = np.where(counted, response_weight, 0.0)
    cell_weight = np.bincount(rows.response_cell, weights=response_weight, minlength=n_cells)
    cell_responders = np.bincount(
        rows.response_cell[counted] if counted is not None else rows.response_cell,
        minlength=n_cells,
    )
    weight_sorted = response_weight[rows.response_sorted]
    key_starts, run_starts, run_key = rows.key_starts, rows.run_starts, rows.run_key
    if key_starts.size:
        key_weight = np.add.reduceat(weight_sorted, key_starts)
        run_weight = np.add.reduceat(weight_sorted, run_starts)
        best_weight = np.maximum.reduceat(run_weight, np.searchsorted(run_starts, key_starts))
    else:
        key_weight = run_weight = best_weight = np.zeros(0)
    # First run per key reaching the key's best weight: the lowest hash wins ties.
    best_runs = np.flatnonzero(run_weight >= best_weight[run_key] - EPS)
    first_best = best_runs[run_boundaries(run_key[best_runs])]

    keys = rows.key_sorted[key_starts]
    key_cell = keys >> ZPID_BITS
    support = key_weight / np.maximum(cell_weight[key_cell], EPS)
    accepted = (support >= cfg.consensus_threshold - EPS) & (
        cell_responders[key_cell] >= cfg.min_group_responders
    )
    margin_sum = np.bincount(key_cell, weights=np.abs(2 * support - 1), minlength=n_cells)
    key_count = np.bincount(key_cell, minlength=n_cells)
    return GroupConsensus(
        key_cell=key_cell,
        key_zpid=keys & ((1 << ZPID_BITS) - 1),
        support=support,
        value_hash=rows.hash_sorted[run_starts[first_best]],
        value_resolved=best_weight >= cfg.consensus_threshold * key_weight - EPS,
        representative_row=rows.order[run_starts[first_best]],
        accepted=accepted,
        cell_responders=cell_responders,
        cell_weight=cell_weight,
        cell_margin=np.where(key_count > 0, margin_sum / np.maximum(key_count, 1), 1.0),
    )


def _majority_agreement(
    draft: ConsensusDraft, rows: _SortedRows, first: GroupConsensus
) -> tuple[np.ndarray, np.ndarray]:
    """(per submission: mean Jaccard of its answers with its group's majority sets,
    per response: an empty answer where the majority reports listings).

    A miner who answers with listings nobody else found (or leaves out most
    of what others found) abstains rather than votes in the second tally:
    its silence on real listings says nothing about them. Empty answers that
    abstain are left out of the mean: they are unanswered zipcodes, which
    scoring charges on their own.
    """
    majority_key = first.support >= 0.5
    majority_row = majority_key[rows.row_key]
    n_responses = len(draft.response_answers)
    rows_per_response = np.diff(draft.response_start)
    in_majority = np.bincount(rows.response_sorted, weights=majority_row, minlength=n_responses)
    majority_size = np.bincount(first.key_cell, weights=majority_key, minlength=rows.n_cells)
    empty_abstains = (rows_per_response == 0) & (majority_size[rows.response_cell] > 0)
    union = rows_per_response + majority_size[rows.response_cell] - in_majority
    jaccard = np.where(union > 0, in_majority / np.maximum(union, 1), 1.0)
    n_submissions = len(draft.submissions)
    voting = ~empty_abstains
    total = np.bincount(
        draft.response_submission[voting], weights=jaccard[voting], minlength=n_submissions
    )
    count = np.bincount(draft.response_submission[voting], minlength=n_submissions)
    return np.where(count > 0, total / np.maximum(count, 1), 1.0), empty_abstains


def group_consensus(draft: ConsensusDraft, evidence: np.ndarray | None = None) -> GroupConsensus:
    """Two tallies: credibility weights, then weights scaled by agreement with the majority.

    The second tally keeps a minority of fabricators (who leave real listings
    out) from dragging honest listings under the threshold in the cycle
    before their credibility has fallen. A colluding majority or bloc is not
    stopped here: spot checks are, and ``evidence`` (per submission, in
    [0, 1]: how far its votes held up against this cycle's checks, see
    ``consensus/evidence.py``) scales the second tally's weights when the
    tally is run again after them.
    """
    if draft.sorted_rows is None:
        draft.sorted_rows = _sort_rows(draft)
    rows = draft.sorted_rows
    # Evidence scales both tallies: the majority a miner's agreement is measured
    # against must not be the bloc the checks contradicted.
    weight = draft.submission_weight if evidence is None else draft.submission_weight * evidence
    first = _tally(draft, rows, weight[draft.response_submission])
    agreement, draft.empty_abstains = _majority_agreement(draft, rows, first)
    weight = weight * agreement
    draft.effective_weight = np.maximum(draft.config.min_credibility_weight * 0.1, weight)
    return _tally(
        draft, rows, draft.effective_weight[draft.response_submission], ~draft.empty_abstains
    )
