"""A cycle's submissions as flat arrays: the data every consensus step reads.

``flatten`` turns the plan and the miners' submissions into one row per
(miner, zipcode, record): zpid, 64-bit hash prefix and the answer it came
from, in numpy arrays. Group consensus (``consensus/tally.py``) and the
cross-group comparison (``consensus/comparison.py``) fill in the rest of the
``ConsensusDraft``; scoring, spot checks and tie-breaks read it.

Keys pack (zipcode or group-zipcode cell, zpid) into one int64:
``cell << ZPID_BITS | zpid``, so one sort orders them all.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from config.consensus import ConsensusConfig
from consensus.answers import ZipcodeAnswer
from consensus.assignment import AssignmentPlan
from consensus.types import GroupSubmission

ZPID_BITS = 40  # zpids are at most 12 digits (< 2**40); the rest of an int64 key holds the cell
EPS = 1e-9  # tolerance of the threshold comparisons on float shares


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
    coldkey_id: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # per submission
    # Per zipcode, the zipcode as a number: what seeded ranks mix in.
    zipcode_number: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    # Per response: an empty answer where its group's majority reports listings (no vote).
    empty_abstains: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    sorted_rows: object | None = None  # the tally's sort order while a tally needs it
    # (groups, empty_abstains, effective_weight) of evaluate's tally: finalize starts there.
    initial_tally: tuple | None = None
    # The comparison after spot checks, tie-breaks and honeypots (set by finalize):
    # the consensus the S3 evaluation checks miners' files against.
    final_comparison: Comparison | None = None
    # (captured groups, single-group trust, the tie-break and spot-check resolution)
    # finalize compared with: what the comparison before the honeypot swap is
    # rebuilt from (consensus/provenance.py miners_comparison).
    final_settlement: tuple | None = None

    @property
    def n_zipcodes(self) -> int:
        return len(self.zipcodes)

    def row_fields(self, row: int) -> tuple | None:
        response = int(self.row_response[row])
        answer = self.response_answers[response]
        if answer.fields is None:
            return None
        return answer.fields[row - int(self.response_start[response])]


def flatten(
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
        coldkey_id=coldkey_ids([s.miner.coldkey for s in accepted]),
        zipcode_number=np.array([int(z) for z in zipcodes], np.int64),
    )


def coldkey_ids(coldkeys: Sequence[str]) -> np.ndarray:
    """A small integer per distinct coldkey, in order of first appearance."""
    ids: dict[str, int] = {}
    return np.array([ids.setdefault(c, len(ids)) for c in coldkeys], np.int64)


def lookup(sorted_keys: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(position, found) of each key in an ascending array, by binary search."""
    if sorted_keys.size == 0:
        return np.zeros(keys.size, np.int64), np.zeros(keys.size, bool)
    pos = np.minimum(np.searchsorted(sorted_keys, keys), sorted_keys.size - 1)
    return pos, sorted_keys[pos] == keys


def run_boundaries(*columns: np.ndarray) -> np.ndarray:
    """Indexes where any of the (sorted) columns changes value; starts with 0."""
    n = columns[0].shape[0]
    if n == 0:
        return np.zeros(0, np.int64)
    change = np.zeros(n, bool)
    change[0] = True
    for column in columns:
        change[1:] |= column[1:] != column[:-1]
    return np.flatnonzero(change)
