"""The consensus engine: group consensus per zipcode, compared across groups.

Pure: plain data in, plain data out; no network, disk or clock. The validator,
the simulator and the benchmark drive these same functions.

    engine = ConsensusEngine(ConsensusConfig())
    draft = engine.evaluate(plan, submissions, credibility)       # group consensus
    requests = engine.spot_check_requests(draft, seed)             # verify these...
    tiebreaks = engine.tiebreak_requests(draft, seed, pool)        # ...ask these miners...
    result = engine.finalize(draft, verdicts, honeypots, (tiebreaks, answers))  # ...then score

How a zipcode is decided:

1. Inside each group, a record (zpid) is accepted when the credibility-weighted
   share of the group's responders who reported it reaches
   ``consensus_threshold``; its value is the record hash that carries the same
   share among those reporters (else the value is unresolved: presence only).
   A group with fewer than ``min_group_responders`` gives no consensus.
2. Across the batch's valid groups, a record is *confirmed* when every valid
   group accepted it with the same value, *disputed* when only some did.
   ``agreement`` = confirmed / (confirmed + disputed).
3. ``confidence`` = agreement x (0.5 + 0.5 x support margin) x responder
   factor. Zipcodes under ``zipcode_confidence_threshold`` are no evidence:
   nobody gains or loses on them.
4. Spot-check verdicts (the validator's own source) mark a group whose accepted
   records fail as *captured*; it is dropped for the whole batch and the batch
   is compared again. A batch left with one group is only trusted as far as
   that group's own records passed their spot checks.
5. Tie-breaks (``consensus/tiebreak.py``): disputed records re-checked in the
   same cycle by five miners of neither group. A resolved dispute counts as a
   check of the groups (as in 4) and settles the record: present joins the
   consensus, absent becomes an unconfirmed record of whoever reported it;
   agreement counts settled disputes as agreed. Unresolved ones stay disputed.

Performance: all records of a cycle live in flat numpy arrays; the one sort of
(group, zipcode, zpid, hash) keys does the counting, so cost is one
O(n log n) sort plus linear passes (1000 zipcodes x 20 miners x 50 records in
well under a second).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from config.consensus import ConsensusConfig
from consensus.answers import ZipcodeAnswer
from consensus.assignment import AssignmentPlan, MinerInfo
from consensus.types import CycleResult, GroupSubmission, Honeypot, SpotCheckRequest, Verdict

if TYPE_CHECKING:
    from consensus.tiebreak import TiebreakAnswer, TiebreakRequest

ZPID_BITS = 40  # zpids are at most 12 digits (< 2**40); the rest of an int64 key holds the cell
_EPS = 1e-9


@dataclass(slots=True)
class GroupConsensus:
    """Per (group, zipcode, zpid) key: who reported it, with what weight and value."""

    key_cell: np.ndarray  # group_index * n_zipcodes + zipcode_index
    key_zpid: np.ndarray
    support: np.ndarray  # weighted share of the cell's responders reporting the zpid
    value_hash: np.ndarray  # winning hash (valid where value_resolved)
    value_resolved: np.ndarray
    representative_row: np.ndarray  # a row carrying the winning hash (for its fields)
    accepted: np.ndarray  # support >= threshold and the cell has enough responders
    cell_responders: np.ndarray  # per cell
    cell_weight: np.ndarray  # per cell, summed credibility weight of its responders
    cell_margin: np.ndarray  # per cell, mean |2 x support - 1| over its keys


@dataclass(slots=True)
class Comparison:
    """Cross-group outcome for every zipcode, given which groups are trusted."""

    valid_cell: np.ndarray  # per cell: trusted and with enough responders
    valid_groups: np.ndarray  # per zipcode
    responders: np.ndarray  # per zipcode, over valid groups
    margin: np.ndarray  # per zipcode
    agreement: np.ndarray  # per zipcode
    confidence: np.ndarray  # per zipcode
    confirmed_keys: np.ndarray  # sorted zipcode_index << ZPID_BITS | zpid
    confirmed_hash: np.ndarray
    confirmed_resolved: np.ndarray
    confirmed_row: np.ndarray  # representative row, -1 when none (honeypot reference)
    disputed_keys: np.ndarray  # sorted
    # Accepted by no valid group, yet reported by at least 1 - threshold of the
    # batch's weight: too contested to call fabricated, so nobody is judged on it.
    uncertain_keys: np.ndarray  # sorted
    confirmed_count: np.ndarray  # per zipcode
    disputed_count: np.ndarray  # per zipcode


@dataclass(slots=True)
class ConsensusDraft:
    """A cycle's submissions flattened into arrays, with group consensus computed."""

    plan: AssignmentPlan
    config: ConsensusConfig
    zipcodes: list[str]
    zipcode_index: dict[str, int]
    zipcode_batch: np.ndarray
    expected: np.ndarray  # expected listings per zipcode (volume of work)
    group_batch: np.ndarray
    submissions: list[GroupSubmission]
    submission_group: np.ndarray
    submission_weight: np.ndarray  # credibility, floored
    effective_weight: np.ndarray  # credibility x agreement with the group majority
    response_submission: np.ndarray
    response_zipcode: np.ndarray
    response_start: np.ndarray  # first row of each response; len = responses + 1
    response_answers: list[ZipcodeAnswer]
    row_zpid: np.ndarray
    row_hash: np.ndarray
    row_response: np.ndarray
    groups: GroupConsensus
    comparison: Comparison
    dropped: Counter
    credibility: Mapping[str, float] = field(default_factory=dict)  # as passed to evaluate
    # The comparison after spot checks, tie-breaks and honeypots (set by finalize):
    # the consensus the S3 evaluation checks miners' files against.
    final_comparison: Comparison | None = None

    @property
    def n_zipcodes(self) -> int:
        return len(self.zipcodes)

    def row_fields(self, row: int) -> tuple | None:
        response = int(self.row_response[row])
        answer = self.response_answers[response]
        if answer.fields is None:
            return None
        return answer.fields[row - int(self.response_start[response])]


class ConsensusEngine:
    """Computes consensus, confidence and per-miner results for one cycle."""

    def __init__(self, config: ConsensusConfig | None = None) -> None:
        self.config = config or ConsensusConfig()

    def evaluate(
        self,
        plan: AssignmentPlan,
        submissions: Sequence[GroupSubmission],
        credibility: Mapping[str, float],
        expected_counts: Mapping[str, int] | None = None,
    ) -> ConsensusDraft:
        """Flatten submissions and compute every group's consensus and the comparison.

        Takes the plan the submissions answer, the submissions (any order,
        anything not matching the plan is dropped with a reason), credibility
        by hotkey (missing = neutral) and optional expected listing counts by
        zipcode. Returns a draft for ``spot_check_requests`` and ``finalize``.
        """
        draft = _flatten(plan, submissions, credibility, expected_counts or {}, self.config)
        draft.groups = _group_consensus(draft)
        draft.comparison = compare_groups(draft, captured=set(), single_group_trust={})
        return draft

    def spot_check_requests(self, draft: ConsensusDraft, seed: bytes) -> list[SpotCheckRequest]:
        """The records to verify through the validator's own source (seeded, deterministic)."""
        from consensus.antigaming import select_spot_checks

        return select_spot_checks(draft, seed)

    def tiebreak_requests(
        self, draft: ConsensusDraft, seed: bytes, pool: Sequence[MinerInfo] | None = None
    ) -> list[TiebreakRequest]:
        """Disputed zpids and the fresh miners to re-check them (seeded, deterministic)."""
        from consensus.tiebreak import plan_tiebreaks

        return plan_tiebreaks(draft, seed, pool)

    def finalize(
        self,
        draft: ConsensusDraft,
        verdicts: Sequence[tuple[SpotCheckRequest, Verdict]] = (),
        honeypots: Mapping[str, Honeypot] | None = None,
        tiebreaks: tuple[Sequence[TiebreakRequest], Sequence[TiebreakAnswer]] | None = None,
    ) -> CycleResult:
        """Apply spot-check verdicts, tie-breaks and honeypot references, then score every miner.

        ``tiebreaks`` is (the cycle's ``tiebreak_requests``, the answers
        collected). A resolved dispute counts as a check of the groups that
        accepted it (repeated failures capture a group, as spot checks do) and
        settles the record in the final consensus; tie-breakers are scored on
        their answers. Returns the cycle result: per-zipcode outcomes,
        per-miner results with flags and their evidence, the groups found
        captured, and ``tiebreak`` counts.
        """
        from consensus.antigaming import apply_verdicts
        from consensus.evaluation import evaluate_miners
        from consensus.tiebreak import (
            apply_resolution,
            resolution_checks,
            resolve_disputes,
            score_tiebreakers,
        )

        outcome = resolve_disputes(draft, *tiebreaks) if tiebreaks else None
        extra = resolution_checks(draft, outcome) if outcome else []
        captured, trust, missing = apply_verdicts(draft, verdicts, extra)
        comparison = compare_groups(draft, captured, trust, honeypots or {})
        settled = apply_resolution(draft, comparison, outcome) if outcome else 0
        draft.final_comparison = comparison
        result = evaluate_miners(draft, comparison, captured, missing, honeypots or {})
        if outcome is not None:
            score_tiebreakers(draft, outcome, result.miners)
            result.tiebreak.update(
                disputes=len(outcome.resolved) + len(outcome.unresolved),
                resolved=len(outcome.resolved),
                settled=settled,
            )
        return result


def _flatten(
    plan: AssignmentPlan,
    submissions: Sequence[GroupSubmission],
    credibility: Mapping[str, float],
    expected_counts: Mapping[str, int],
    cfg: ConsensusConfig,
) -> ConsensusDraft:
    zipcodes = sorted({z for g in plan.groups for z in g.zipcodes})
    zipcode_index = {z: i for i, z in enumerate(zipcodes)}
    zipcode_batch = np.full(len(zipcodes), -1, np.int64)
    for group in plan.groups:
        for z in group.zipcodes:
            zipcode_batch[zipcode_index[z]] = group.batch_id
    expected = np.array(
        [
            max(1, int(expected_counts.get(z, cfg.expected_properties_per_zipcode)))
            for z in zipcodes
        ],
        dtype=np.float64,
    )
    group_of = {(g.batch_id, g.overlap_group): i for i, g in enumerate(plan.groups)}
    members = [{m.hotkey: m for m in g.miners} for g in plan.groups]

    dropped: Counter = Counter()
    accepted: list[GroupSubmission] = []
    submission_group: list[int] = []
    seen: set[tuple[int, str]] = set()
    response_submission: list[int] = []
    response_zipcode: list[int] = []
    answers: list[ZipcodeAnswer] = []
    for sub in submissions:
        gi = group_of.get((sub.batch_id, sub.overlap_group))
        if gi is None or members[gi].get(sub.miner.hotkey) != sub.miner:
            dropped["submission_not_in_plan"] += 1
            continue
        if (gi, sub.miner.hotkey) in seen:
            dropped["duplicate_submission"] += 1
            continue
        seen.add((gi, sub.miner.hotkey))
        si = len(accepted)
        accepted.append(sub)
        submission_group.append(gi)
        assigned = plan.groups[gi].zipcodes
        for zipcode, answer in sub.answers.items():
            if zipcode not in assigned:
                dropped["unassigned_zipcode"] += 1
                continue
            if not isinstance(answer, ZipcodeAnswer):
                dropped["malformed_answer"] += 1
                continue
            response_submission.append(si)
            response_zipcode.append(zipcode_index[zipcode])
            answers.append(answer)

    lengths = np.fromiter((len(a) for a in answers), np.int64, len(answers))
    response_start = np.zeros(len(answers) + 1, np.int64)
    np.cumsum(lengths, out=response_start[1:])
    empty = np.zeros(0, np.int64)
    row_zpid = np.concatenate([a.zpids for a in answers]) if answers else empty
    row_hash = np.concatenate([a.hashes for a in answers]) if answers else empty
    row_response = np.repeat(np.arange(len(answers), dtype=np.int64), lengths)
    weight = np.array(
        [
            max(cfg.min_credibility_weight, float(credibility.get(s.miner.hotkey, 0.5)))
            for s in accepted
        ],
        dtype=np.float64,
    )
    return ConsensusDraft(
        plan=plan,
        config=cfg,
        zipcodes=zipcodes,
        zipcode_index=zipcode_index,
        zipcode_batch=zipcode_batch,
        expected=expected,
        group_batch=np.array([g.batch_id for g in plan.groups], np.int64),
        submissions=accepted,
        submission_group=np.array(submission_group, np.int64),
        submission_weight=weight,
        effective_weight=weight,
        response_submission=np.array(response_submission, np.int64),
        response_zipcode=np.array(response_zipcode, np.int64),
        response_start=response_start,
        response_answers=answers,
        row_zpid=row_zpid,
        row_hash=row_hash,
        row_response=row_response,
        groups=None,  # type: ignore[arg-type]  # filled by evaluate
        comparison=None,  # type: ignore[arg-type]
        dropped=dropped,
        credibility=dict(credibility),
    )


def lookup(sorted_keys: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(position, found) of each key in an ascending array, by binary search."""
    if sorted_keys.size == 0:
        return np.zeros(keys.size, np.int64), np.zeros(keys.size, bool)
    pos = np.minimum(np.searchsorted(sorted_keys, keys), sorted_keys.size - 1)
    return pos, sorted_keys[pos] == keys


def _run_starts(*columns: np.ndarray) -> np.ndarray:
    """Indexes where any of the (sorted) columns changes value; starts with 0."""
    n = columns[0].shape[0]
    if n == 0:
        return np.zeros(0, np.int64)
    change = np.zeros(n, bool)
    change[0] = True
    for column in columns:
        change[1:] |= column[1:] != column[:-1]
    return np.flatnonzero(change)


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
    key_starts = _run_starts(key_sorted)
    run_starts = _run_starts(key_sorted, hash_sorted)
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


def _tally(draft: ConsensusDraft, rows: _SortedRows, response_weight: np.ndarray) -> GroupConsensus:
    """Weighted support and winning value of every (cell, zpid) key."""
    cfg = draft.config
    n_cells = rows.n_cells
    cell_weight = np.bincount(rows.response_cell, weights=response_weight, minlength=n_cells)
    cell_responders = np.bincount(rows.response_cell, minlength=n_cells)
    weight_sorted = response_weight[rows.response_sorted]
    key_starts, run_starts, run_key = rows.key_starts, rows.run_starts, rows.run_key
    if key_starts.size:
        key_weight = np.add.reduceat(weight_sorted, key_starts)
        run_weight = np.add.reduceat(weight_sorted, run_starts)
        best_weight = np.maximum.reduceat(run_weight, np.searchsorted(run_starts, key_starts))
    else:
        key_weight = run_weight = best_weight = np.zeros(0)
    # First run per key reaching the key's best weight: the lowest hash wins ties.
    best_runs = np.flatnonzero(run_weight >= best_weight[run_key] - _EPS)
    first_best = best_runs[_run_starts(run_key[best_runs])]

    keys = rows.key_sorted[key_starts]
    key_cell = keys >> ZPID_BITS
    support = key_weight / np.maximum(cell_weight[key_cell], _EPS)
    accepted = (support >= cfg.consensus_threshold - _EPS) & (
        cell_responders[key_cell] >= cfg.min_group_responders
    )
    margin_sum = np.bincount(key_cell, weights=np.abs(2 * support - 1), minlength=n_cells)
    key_count = np.bincount(key_cell, minlength=n_cells)
    return GroupConsensus(
        key_cell=key_cell,
        key_zpid=keys & ((1 << ZPID_BITS) - 1),
        support=support,
        value_hash=rows.hash_sorted[run_starts[first_best]],
        value_resolved=best_weight >= cfg.consensus_threshold * key_weight - _EPS,
        representative_row=rows.order[run_starts[first_best]],
        accepted=accepted,
        cell_responders=cell_responders,
        cell_weight=cell_weight,
        cell_margin=np.where(key_count > 0, margin_sum / np.maximum(key_count, 1), 1.0),
    )


def _majority_agreement(
    draft: ConsensusDraft, rows: _SortedRows, first: GroupConsensus
) -> np.ndarray:
    """Per submission: mean Jaccard of its answers with its group's simple-majority sets.

    A miner who answers with listings nobody else found (or leaves out most
    of what others found) abstains rather than votes in the second tally:
    its silence on real listings says nothing about them.
    """
    majority_key = first.support >= 0.5
    majority_row = majority_key[rows.row_key]
    n_responses = len(draft.response_answers)
    rows_per_response = np.diff(draft.response_start)
    in_majority = np.bincount(rows.response_sorted, weights=majority_row, minlength=n_responses)
    majority_size = np.bincount(first.key_cell, weights=majority_key, minlength=rows.n_cells)
    union = rows_per_response + majority_size[rows.response_cell] - in_majority
    jaccard = np.where(union > 0, in_majority / np.maximum(union, 1), 1.0)
    n_submissions = len(draft.submissions)
    total = np.bincount(draft.response_submission, weights=jaccard, minlength=n_submissions)
    count = np.bincount(draft.response_submission, minlength=n_submissions)
    return np.where(count > 0, total / np.maximum(count, 1), 1.0)


def _group_consensus(draft: ConsensusDraft) -> GroupConsensus:
    """Two tallies: credibility weights, then weights scaled by agreement with the majority.

    The second tally keeps a minority of fabricators (who leave real listings
    out) from dragging honest listings under the threshold in the cycle
    before their credibility has fallen. A colluding majority is not stopped
    here; spot checks are what catch it.
    """
    rows = _sort_rows(draft)
    first = _tally(draft, rows, draft.submission_weight[draft.response_submission])
    agreement = _majority_agreement(draft, rows, first)
    draft.effective_weight = np.maximum(
        draft.config.min_credibility_weight * 0.1, draft.submission_weight * agreement
    )
    return _tally(draft, rows, draft.effective_weight[draft.response_submission])


def compare_groups(
    draft: ConsensusDraft,
    captured: set[int],
    single_group_trust: Mapping[int, float],
    honeypots: Mapping[str, Honeypot] | None = None,
) -> Comparison:
    """Compare the trusted groups of every batch into per-zipcode confidence.

    ``captured`` holds group indexes to ignore; ``single_group_trust`` maps a
    group index to the share of its spot-checked records that passed (the only
    agreement a batch left with one group can have).
    """
    cfg = draft.config
    gc = draft.groups
    nz = draft.n_zipcodes
    n_groups = len(draft.plan.groups)
    cell_group = np.repeat(np.arange(n_groups), nz)
    cell_zipcode = np.tile(np.arange(nz), n_groups)
    trusted = np.ones(n_groups, bool)
    if captured:
        trusted[list(captured)] = False
    valid_cell = (gc.cell_responders >= cfg.min_group_responders) & trusted[cell_group]
    valid_groups = np.bincount(cell_zipcode, weights=valid_cell, minlength=nz).astype(np.int64)
    responders = np.bincount(
        cell_zipcode, weights=gc.cell_responders * valid_cell, minlength=nz
    ).astype(np.int64)
    margin = np.bincount(cell_zipcode, weights=gc.cell_margin * valid_cell, minlength=nz)
    margin = np.where(valid_groups > 0, margin / np.maximum(valid_groups, 1), 0.0)

    take = gc.accepted & valid_cell[gc.key_cell]
    entry_zipcode = gc.key_cell[take] % nz
    entry_group = gc.key_cell[take] // nz
    entry_zpid = gc.key_zpid[take]
    entry_hash = gc.value_hash[take]
    entry_resolved = gc.value_resolved[take]
    entry_row = gc.representative_row[take]
    zkey = (entry_zipcode << ZPID_BITS) | entry_zpid
    order = np.argsort(zkey, kind="stable")
    zkey, entry_hash, entry_resolved, entry_row, entry_group = (
        zkey[order],
        entry_hash[order],
        entry_resolved[order],
        entry_row[order],
        entry_group[order],
    )
    starts = _run_starts(zkey)
    if starts.size:
        count = np.diff(np.append(starts, zkey.size))
        big = np.iinfo(np.int64).max
        lo = np.minimum.reduceat(np.where(entry_resolved, entry_hash, big), starts)
        hi = np.maximum.reduceat(np.where(entry_resolved, entry_hash, -big - 1), starts)
        any_resolved = np.add.reduceat(entry_resolved.astype(np.int64), starts) > 0
    else:
        count = lo = hi = any_resolved = np.zeros(0, np.int64)
    run_keys = zkey[starts]
    run_zipcode = run_keys >> ZPID_BITS
    confirmed = (count == valid_groups[run_zipcode]) & (~any_resolved | (lo == hi))
    uncertain_keys = _uncertain_keys(draft, valid_cell, cell_zipcode, run_keys)
    confirmed_count = np.bincount(run_zipcode[confirmed], minlength=nz)
    disputed_count = np.bincount(run_zipcode[~confirmed], minlength=nz)

    union = confirmed_count + disputed_count
    agreement = np.where(union > 0, confirmed_count / np.maximum(union, 1), 1.0)
    single = valid_groups == 1
    if single.any():
        # One trusted group: agreement is what its spot checks say, else nothing.
        trust_by_zipcode = np.zeros(nz)
        for gi, trust in single_group_trust.items():
            zips = [draft.zipcode_index[z] for z in draft.plan.groups[gi].zipcodes]
            trust_by_zipcode[zips] = np.maximum(trust_by_zipcode[zips], trust)
        agreement = np.where(single, trust_by_zipcode, agreement)
    agreement = np.where(valid_groups == 0, 0.0, agreement)

    confidence = _confidence(cfg, agreement, margin, responders)

    comparison = Comparison(
        valid_cell=valid_cell,
        valid_groups=valid_groups,
        responders=responders,
        margin=margin,
        agreement=agreement,
        confidence=confidence,
        confirmed_keys=run_keys[confirmed],
        confirmed_hash=np.where(any_resolved, lo, 0)[confirmed],
        confirmed_resolved=any_resolved[confirmed],
        confirmed_row=entry_row[starts][confirmed],
        disputed_keys=run_keys[~confirmed],
        uncertain_keys=uncertain_keys,
        confirmed_count=confirmed_count,
        disputed_count=disputed_count,
    )
    if honeypots:
        _apply_honeypots(draft, comparison, honeypots)
    return comparison


def _confidence(
    cfg: ConsensusConfig, agreement: np.ndarray, margin: np.ndarray, responders: np.ndarray
) -> np.ndarray:
    """agreement x (0.5 + 0.5 x margin) x responder factor, per zipcode."""
    span = max(1, cfg.full_confidence_responders - cfg.min_responders_for_consensus)
    responder_factor = np.where(
        responders >= cfg.min_responders_for_consensus,
        0.75 + 0.25 * np.clip((responders - cfg.min_responders_for_consensus) / span, 0, 1),
        0.0,
    )
    return agreement * (0.5 + 0.5 * margin) * responder_factor


def _uncertain_keys(
    draft: ConsensusDraft,
    valid_cell: np.ndarray,
    cell_zipcode: np.ndarray,
    accepted_keys: np.ndarray,
) -> np.ndarray:
    """Zipcode keys no valid group accepted but the batch's weight did not reject either."""
    gc = draft.groups
    nz = draft.n_zipcodes
    in_valid = valid_cell[gc.key_cell]
    cells = gc.key_cell[in_valid]
    zkey = ((cells % nz) << ZPID_BITS) | gc.key_zpid[in_valid]
    weight = gc.support[in_valid] * gc.cell_weight[cells]
    order = np.argsort(zkey, kind="stable")
    zkey, weight = zkey[order], weight[order]
    starts = _run_starts(zkey)
    if not starts.size:
        return np.zeros(0, np.int64)
    keys = zkey[starts]
    reported = np.add.reduceat(weight, starts)
    zipcode_weight = np.bincount(cell_zipcode, weights=gc.cell_weight * valid_cell, minlength=nz)
    share = reported / np.maximum(zipcode_weight[keys >> ZPID_BITS], _EPS)
    contested = share >= 1 - draft.config.consensus_threshold - _EPS
    return keys[contested & ~lookup(accepted_keys, keys)[1]]


def _apply_honeypots(
    draft: ConsensusDraft, comparison: Comparison, honeypots: Mapping[str, Honeypot]
) -> None:
    """Replace honeypot zipcodes' consensus with the owner's reference answer."""
    from consensus.answers import hash_to_int

    indexes = [draft.zipcode_index[z] for z in honeypots if z in draft.zipcode_index]
    if not indexes:
        return
    idx = np.array(indexes, np.int64)
    keep_c = ~np.isin(comparison.confirmed_keys >> ZPID_BITS, idx)
    keep_d = ~np.isin(comparison.disputed_keys >> ZPID_BITS, idx)
    ref_keys, ref_hashes = [], []
    for zipcode, honeypot in honeypots.items():
        zi = draft.zipcode_index.get(zipcode)
        if zi is None:
            continue
        for zpid, record_hash in honeypot.reference.items():
            ref_keys.append((zi << ZPID_BITS) | int(zpid))
            ref_hashes.append(hash_to_int(record_hash))
    keys = np.concatenate([comparison.confirmed_keys[keep_c], np.array(ref_keys, np.int64)])
    order = np.argsort(keys, kind="stable")
    n_ref = len(ref_keys)
    comparison.confirmed_keys = keys[order]
    comparison.confirmed_hash = np.concatenate(
        [comparison.confirmed_hash[keep_c], np.array(ref_hashes, np.int64)]
    )[order]
    comparison.confirmed_resolved = np.concatenate(
        [comparison.confirmed_resolved[keep_c], np.ones(n_ref, bool)]
    )[order]
    comparison.confirmed_row = np.concatenate(
        [comparison.confirmed_row[keep_c], np.full(n_ref, -1, np.int64)]
    )[order]
    comparison.disputed_keys = comparison.disputed_keys[keep_d]
    comparison.uncertain_keys = comparison.uncertain_keys[
        ~np.isin(comparison.uncertain_keys >> ZPID_BITS, idx)
    ]
    nz = draft.n_zipcodes
    comparison.confirmed_count = np.bincount(comparison.confirmed_keys >> ZPID_BITS, minlength=nz)
    comparison.disputed_count = np.bincount(comparison.disputed_keys >> ZPID_BITS, minlength=nz)
    comparison.confidence[idx] = 1.0
    comparison.agreement[idx] = 1.0
