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
4. Spot-check verdicts (the validator's own source: disputed records, records
   two or more coldkeys reported that no group accepted, a sample) are
   evidence. Each responder's votes on the checked records weigh it in a
   second tally (a bloc the checks contradicted loses its weight, so a pool
   cannot outvote independent miners by head count); a checked record is
   settled as the source says. A group whose accepted records fail is
   *captured*; it is dropped for the whole batch and the batch is compared
   again. A batch left with one group is only trusted as far as that group's
   own records passed their spot checks.
5. Tie-breaks (``consensus/tiebreak.py``): disputed records re-checked in the
   same cycle by five miners of neither group, weighted like their tally
   votes. A resolved dispute settles the record: present joins the
   consensus, absent becomes an unconfirmed record of whoever reported it;
   agreement counts settled disputes as agreed. Unresolved ones stay
   disputed. Tie-breakers never capture a group: they are miners too.

Where each step lives: ``draft.py`` flattens the submissions into arrays,
``tally.py`` is step 1, ``comparison.py`` steps 2-3, ``evidence.py`` and
``antigaming.py`` step 4 (and copy detection), ``tiebreak.py`` step 5,
``evaluation.py`` the scoring.

Performance: all records of a cycle live in flat numpy arrays; the one sort of
(group, zipcode, zpid, hash) keys does the counting, so cost is one
O(n log n) sort plus linear passes (1000 zipcodes x 20 miners x 50 records in
well under a second).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from config.consensus import ConsensusConfig
from consensus.antigaming import apply_verdicts, select_spot_checks
from consensus.assignment import AssignmentPlan, MinerInfo
from consensus.comparison import compare_groups
from consensus.draft import ConsensusDraft, flatten
from consensus.evaluation import evaluate_miners
from consensus.evidence import (
    evidence_weights,
    uncertain_checks,
    verified_resolutions,
)
from consensus.tally import group_consensus
from consensus.tiebreak import (
    TiebreakAnswer,
    TiebreakOutcome,
    TiebreakRequest,
    apply_resolution,
    plan_tiebreaks,
    resolve_disputes,
    score_tiebreakers,
)
from consensus.types import CycleResult, GroupSubmission, Honeypot, SpotCheckRequest, Verdict


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
        draft = flatten(plan, submissions, credibility, expected_counts or {}, self.config)
        draft.groups = group_consensus(draft)
        draft.initial_tally = (draft.groups, draft.empty_abstains, draft.effective_weight)
        # ~40 MB at a full cycle, not held through the checks: a re-tally sorts again.
        draft.sorted_rows = None
        draft.comparison = compare_groups(draft, captured=set(), single_group_trust={})
        return draft

    def spot_check_requests(self, draft: ConsensusDraft, seed: bytes) -> list[SpotCheckRequest]:
        """The records to verify through the validator's own source (seeded, deterministic)."""
        return select_spot_checks(draft, seed, uncertain_checks(draft, seed))

    def tiebreak_requests(
        self, draft: ConsensusDraft, seed: bytes, pool: Sequence[MinerInfo] | None = None
    ) -> list[TiebreakRequest]:
        """Disputed zpids and the fresh miners to re-check them (seeded, deterministic)."""
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
        collected). A resolved dispute settles the record in the final
        consensus (the validator's own checks settle theirs first);
        tie-breakers are scored on their answers. Returns the cycle result: per-zipcode outcomes,
        per-miner results with flags and their evidence, the groups found
        captured, and ``tiebreak`` counts.
        """
        # From the first tally every time: finalize may be called more than once.
        draft.groups, draft.empty_abstains, draft.effective_weight = draft.initial_tally
        weights, by_hotkey = evidence_weights(draft, verdicts)
        outcome = resolve_disputes(draft, *tiebreaks, by_hotkey) if tiebreaks else None
        if weights is not None:
            # The tally again, each submission weighted by how its votes held up
            # against the validator's own checks.
            draft.groups = group_consensus(draft, weights)
            draft.sorted_rows = None
        # Only the validator's own source can void a group: tie-breakers are
        # miners, and a pool drawn as tie-breakers could void an honest one.
        captured, trust, missing = apply_verdicts(draft, verdicts)
        comparison = compare_groups(draft, captured, trust, honeypots or {})
        verified = verified_resolutions(draft, verdicts)
        # The validator's own source settles what it checked; tie-breakers the rest.
        resolution = TiebreakOutcome(resolved={**(outcome.resolved if outcome else {}), **verified})
        settled = apply_resolution(draft, comparison, resolution)
        draft.final_comparison = comparison
        draft.final_settlement = (captured, trust, resolution)
        result = evaluate_miners(draft, comparison, captured, missing, honeypots or {}, verified)
        if outcome is not None:
            score_tiebreakers(draft, outcome, result.miners)
            result.tiebreak.update(
                disputes=len(outcome.resolved) + len(outcome.unresolved),
                resolved=len(outcome.resolved),
                settled=settled,
            )
        return result
