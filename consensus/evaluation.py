"""Per-miner evaluation against the final consensus, and the flags that follow from it.

Only evidence zipcodes (confidence >= ``zipcode_confidence_threshold``, or a
revealed honeypot) judge anyone. On them, each answered zipcode gets

- precision: the miner's records that match the consensus (1 each; a record
  wrong in a key field 0; otherwise the share of equal fields), over its
  records that are not disputed between groups;
- recall: consensus records it reported / consensus records;
- quality = precision ** ``precision_exponent`` x recall.

A zipcode's volume is its confirmed record count (bounded by
``max_volume_factor`` x expected), so reward grows with confirmed volume. A
group's earnings are scaled by the share of its zipcodes answered and get the
fast-completion bonus only when complete and fast by the validator's clock.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping

import numpy as np

from common.records import KEY_FIELD_INDEXES
from consensus.antigaming import detect_copies
from consensus.assignment import MinerInfo
from consensus.draft import ZPID_BITS, Comparison, ConsensusDraft, lookup
from consensus.types import (
    CycleResult,
    Flag,
    FlagKind,
    Honeypot,
    HoneypotKind,
    MinerCycleResult,
    ZipcodeOutcome,
    ZipcodeVerdict,
)

_MISS_SALT = np.int64(0x5BD1E995)
_MIX = np.int64(0x9E3779B97F4A7C15 - (1 << 64))


def miner_index(draft: ConsensusDraft) -> tuple[dict[str, int], list[MinerInfo]]:
    miners = sorted({m for g in draft.plan.groups for m in g.miners}, key=lambda m: m.hotkey)
    return {m.hotkey: i for i, m in enumerate(miners)}, miners


def partial_credit(claimed: tuple | None, consensus: tuple | None) -> float:
    """Credit for a record whose hash differs from consensus: 0 if a key field differs."""
    if claimed is None or consensus is None or len(claimed) != len(consensus):
        return 0.0
    if any(claimed[i] != consensus[i] for i in KEY_FIELD_INDEXES):
        return 0.0
    others = [i for i in range(len(claimed)) if i not in KEY_FIELD_INDEXES]
    return sum(claimed[i] == consensus[i] for i in others) / len(others)


def zipcode_verdict(answered: bool, evidence: bool, disputed_records: int) -> str:
    """The ``ZipcodeVerdict`` of one miner's assigned zipcode."""
    if not answered:
        return ZipcodeVerdict.NOT_ANSWERED.value
    if disputed_records:
        return ZipcodeVerdict.DISPUTED.value
    return (ZipcodeVerdict.CONFIRMED if evidence else ZipcodeVerdict.NO_EVIDENCE).value


def _consensus_before_honeypots(
    draft: ConsensusDraft, comparison: Comparison, honeypot_zi: Mapping[int, Honeypot]
) -> tuple[np.ndarray, np.ndarray]:
    """Per zipcode (confidence, disputed records) as the groups saw it, for the verdicts.

    The final comparison gives a honeypot the owner's reference (confidence 1,
    no dispute), so a verdict made from it would read "confirmed" where any
    other zipcode of the same consensus reads "no evidence" or "disputed", and
    the status page would name the honeypot. A honeypot's verdict therefore
    comes from the draft's first comparison, made before any honeypot was
    revealed; every other zipcode keeps the final one.
    """
    confidence, disputed = comparison.confidence, comparison.disputed_count
    before = draft.comparison
    if not honeypot_zi or before is None:
        return confidence, disputed
    idx = list(honeypot_zi)
    confidence, disputed = confidence.copy(), disputed.copy()
    confidence[idx] = before.confidence[idx]
    disputed[idx] = before.disputed_count[idx]
    return confidence, disputed


def evaluate_miners(
    draft: ConsensusDraft,
    comparison: Comparison,
    captured: set[int],
    missing: set[int],
    honeypots: Mapping[str, Honeypot],
    verified: Mapping[int, int | None] | None = None,
) -> CycleResult:
    """Score every miner of the plan against the final comparison, and flag with evidence.

    ``missing`` holds the listings the validator's own source did not find;
    ``verified`` every listing it checked (zkey -> hash found, None: not
    found): a copy flag needs one of the pair's shared deviations among them.
    """
    cfg = draft.config
    verified = verified or {}
    index_of, miners = miner_index(draft)
    honeypot_zi = {
        draft.zipcode_index[z]: h for z, h in honeypots.items() if z in draft.zipcode_index
    }
    evidence = comparison.confidence >= cfg.zipcode_confidence_threshold - 1e-9
    shown_confidence, shown_disputed = _consensus_before_honeypots(draft, comparison, honeypot_zi)
    shown_evidence = shown_confidence >= cfg.zipcode_confidence_threshold - 1e-9
    if honeypot_zi:
        evidence[list(honeypot_zi)] = True
    volume = np.where(
        evidence,
        np.clip(comparison.confirmed_count, 1, cfg.max_volume_factor * draft.expected),
        draft.expected,
    )

    # --- classify every record of every answer against the final consensus
    row_zi = draft.response_zipcode[draft.row_response]
    row_zkey = (row_zi << ZPID_BITS) | draft.row_zpid
    row_evidence = evidence[row_zi]
    pos, in_confirmed = lookup(comparison.confirmed_keys, row_zkey)
    resolved = (
        comparison.confirmed_resolved[pos]
        if pos.size and comparison.confirmed_resolved.size
        else np.zeros(pos.size, bool)
    )
    chash = (
        comparison.confirmed_hash[pos]
        if pos.size and comparison.confirmed_hash.size
        else np.zeros(pos.size, np.int64)
    )
    match = in_confirmed & (~resolved | (chash == draft.row_hash)) & row_evidence
    mismatch = in_confirmed & ~match & row_evidence
    _, in_disputed = lookup(comparison.disputed_keys, row_zkey)
    _, in_uncertain = lookup(comparison.uncertain_keys, row_zkey)
    in_disputed |= in_uncertain
    disputed = ~in_confirmed & in_disputed & row_evidence
    unconfirmed = ~in_confirmed & ~in_disputed & row_evidence

    credit = match.astype(np.float64)
    for row in np.flatnonzero(mismatch).tolist():
        rep = int(comparison.confirmed_row[pos[row]])
        credit[row] = partial_credit(
            draft.row_fields(row), draft.row_fields(rep) if rep >= 0 else None
        )

    n_responses = len(draft.response_answers)

    def per_response(mask_or_weights: np.ndarray) -> np.ndarray:
        return np.bincount(draft.row_response, weights=mask_or_weights, minlength=n_responses)

    judged = per_response((row_evidence & ~disputed).astype(np.float64))
    credit_sum = per_response(credit)
    present = per_response((match | mismatch).astype(np.float64))
    unconfirmed_count = per_response(unconfirmed.astype(np.float64))
    consensus_size = comparison.confirmed_count[draft.response_zipcode]
    precision = np.where(judged > 0, credit_sum / np.maximum(judged, 1), 1.0)
    recall = np.where(consensus_size > 0, present / np.maximum(consensus_size, 1), 1.0)
    quality = precision**cfg.precision_exponent * recall

    # --- per miner, per group: volume, earnings, completeness, speed
    results = {m.hotkey: MinerCycleResult(m.uid, m.hotkey, m.coldkey) for m in miners}
    submission_of = {
        (int(gi), s.miner.hotkey): si
        for si, (gi, s) in enumerate(zip(draft.submission_group, draft.submissions, strict=True))
    }
    # An empty answer counts as answered only where the consensus found no
    # listing: elsewhere it is a zipcode left undone, whatever it claims.
    settled_empty = (comparison.confirmed_count == 0) & (comparison.disputed_count == 0)
    rows_per_response = np.diff(draft.response_start)
    responses_of: dict[int, dict[int, int]] = defaultdict(dict)
    for r, (si, zi) in enumerate(
        zip(draft.response_submission.tolist(), draft.response_zipcode.tolist(), strict=True)
    ):
        if rows_per_response[r] > 0 or settled_empty[zi]:
            responses_of[si][zi] = r
    completion: dict[tuple[int, int], float | None] = {}
    fabricated_by_miner: Counter[str] = Counter()
    judged_by_miner: Counter[str] = Counter()
    for gi, group in enumerate(draft.plan.groups):
        zis = [draft.zipcode_index[z] for z in group.zipcodes]
        for miner in group.miners:
            result = results[miner.hotkey]
            si = submission_of.get((gi, miner.hotkey))
            answered = responses_of.get(si, {}) if si is not None else {}
            sub = draft.submissions[si] if si is not None else None
            completion[(index_of[miner.hotkey], group.batch_id)] = (
                sub.completed_after_s if sub is not None else None
            )
            earned = 0.0
            for zi in zis:
                result.assigned_zipcodes += 1
                r = answered.get(zi)
                if r is not None:
                    result.answered_zipcodes += 1
                result.zipcodes[draft.zipcodes[zi]] = zipcode_verdict(
                    r is not None, bool(shown_evidence[zi]), int(shown_disputed[zi])
                )
                v = float(volume[zi])
                if not evidence[zi]:
                    # No evidence: an answer is credited at the miner's own running
                    # quality; no answer is the miner's doing and earns nothing.
                    if r is not None:
                        result.neutral_volume += v
                    else:
                        result.unanswered_volume += v
                    continue
                result.evidence_zipcodes += 1
                result.evidence_volume += v
                if r is None:
                    continue
                earned += float(quality[r]) * v
                result.quality_sum += float(quality[r]) * v
                result.precision_sum += float(precision[r]) * v
                result.recall_sum += float(recall[r]) * v
                result.answered_evidence_volume += v
                fabricated_by_miner[miner.hotkey] += int(unconfirmed_count[r])
                judged_by_miner[miner.hotkey] += int(judged[r])
            completeness = len(answered) / len(zis) if zis else 0.0
            factor = completeness**cfg.partial_answer_exponent
            fast = (
                sub is not None
                and completeness == 1.0
                and sub.completed_after_s is not None
                and sub.completed_after_s <= cfg.fast_completion_s
            )
            if fast:
                factor *= cfg.fast_completion_bonus
                result.fast_groups += 1
            result.earned += earned * factor

    flags: list[Flag] = []
    flags += _fabrication_flags(cfg, fabricated_by_miner, judged_by_miner)
    flags += _honeypot_flags(draft, honeypot_zi, match, miners)
    flags += _spot_check_flags(draft, missing, row_zkey)
    flags += _copy_flags(
        draft,
        comparison,
        evidence,
        honeypot_zi,
        in_confirmed,
        pos,
        mismatch,
        unconfirmed,
        completion,
        index_of,
        miners,
        verified,
    )
    for flag in flags:
        results[flag.hotkey].flags.append(flag)

    zipcodes = {
        z: ZipcodeOutcome(
            zipcode=z,
            batch_id=int(draft.zipcode_batch[zi]),
            confidence=float(comparison.confidence[zi]),
            agreement=float(comparison.agreement[zi]),
            margin=float(comparison.margin[zi]),
            responders=int(comparison.responders[zi]),
            valid_groups=int(comparison.valid_groups[zi]),
            confirmed=int(comparison.confirmed_count[zi]),
            disputed=int(comparison.disputed_count[zi]),
            honeypot=zi in honeypot_zi,
        )
        for zi, z in enumerate(draft.zipcodes)
    }
    captured_groups = sorted(
        (draft.plan.groups[gi].batch_id, draft.plan.groups[gi].overlap_group) for gi in captured
    )
    return CycleResult(zipcodes, results, flags, captured_groups, dict(draft.dropped))


def _fabrication_flags(cfg, fabricated: Counter, judged: Counter) -> list[Flag]:
    flags = []
    for hotkey, count in sorted(fabricated.items()):
        total = judged[hotkey]
        rate = count / total if total else 0.0
        if count >= cfg.fabrication_min_records and rate > cfg.fabrication_tolerance:
            flags.append(
                Flag(
                    hotkey,
                    FlagKind.FABRICATION,
                    {"unconfirmed": count, "judged": total, "rate": round(rate, 3)},
                )
            )
    return flags


def _honeypot_flags(
    draft: ConsensusDraft,
    honeypot_zi: dict[int, Honeypot],
    match: np.ndarray,
    miners: list[MinerInfo],
) -> list[Flag]:
    cfg = draft.config
    flags = []
    for r, zi in enumerate(draft.response_zipcode.tolist()):
        honeypot = honeypot_zi.get(zi)
        if honeypot is None:
            continue
        start, end = int(draft.response_start[r]), int(draft.response_start[r + 1])
        n_rows = end - start
        hotkey = draft.submissions[int(draft.response_submission[r])].miner.hotkey
        evidence = {"zipcode": honeypot.zipcode, "kind": honeypot.kind.value, "records": n_rows}
        if honeypot.kind is HoneypotKind.NO_RESIDENTIAL:
            if n_rows > cfg.honeypot_empty_max_records:
                flags.append(Flag(hotkey, FlagKind.HONEYPOT, evidence))
        elif n_rows >= cfg.honeypot_min_records:
            matched = int(match[start:end].sum())
            if matched / n_rows < cfg.honeypot_min_precision:
                flags.append(Flag(hotkey, FlagKind.HONEYPOT, evidence | {"matched": matched}))
    return flags


def _spot_check_flags(draft: ConsensusDraft, missing: set[int], row_zkey: np.ndarray) -> list[Flag]:
    """Flag miners who reported listings the validator's source says do not exist.

    ``spot_check_flag_min_failures`` such listings flag a miner; when another
    coldkey reported one of them too, the flag is a cartel's (the same
    invention across owners), with the shared zpids as its evidence.
    """
    if not missing:
        return []
    rows = np.flatnonzero(lookup(np.array(sorted(missing), np.int64), row_zkey)[1])
    failures: dict[str, list[int]] = defaultdict(list)
    owners: dict[int, set[int]] = defaultdict(set)
    for row in rows.tolist():
        r = int(draft.row_response[row])
        s = int(draft.response_submission[r])
        failures[draft.submissions[s].miner.hotkey].append(int(row_zkey[row]))
        owners[int(row_zkey[row])].add(int(draft.coldkey_id[s]))
    flags = []
    for hotkey, zkeys in sorted(failures.items()):
        if len(zkeys) < draft.config.spot_check_flag_min_failures:
            continue
        zpids = [z & ((1 << ZPID_BITS) - 1) for z in zkeys]
        shared = [z & ((1 << ZPID_BITS) - 1) for z in zkeys if len(owners[z]) >= 2]
        evidence = {"not_found_zpids": zpids[:10], "failures": len(zkeys)}
        if shared:
            evidence |= {"shared_zpids": shared[:10], "shared": len(shared)}
        flags.append(Flag(hotkey, FlagKind.CARTEL if shared else FlagKind.SPOT_CHECK, evidence))
    return flags


def _copy_flags(
    draft: ConsensusDraft,
    comparison: Comparison,
    evidence: np.ndarray,
    honeypot_zi: dict[int, Honeypot],
    in_confirmed: np.ndarray,
    pos: np.ndarray,
    mismatch: np.ndarray,
    unconfirmed: np.ndarray,
    completion: dict[tuple[int, int], float | None],
    index_of: dict[str, int],
    miners: list[MinerInfo],
    verified: Mapping[int, int | None],
) -> list[Flag]:
    """Deviations (wrong values, unconfirmed records, misses) -> copy flags.

    A deviation is *verified* when the validator's own source checked its
    listing and it is false: a wrong value or a record of a listing the
    source did not find, a miss of one it found.
    """
    nz = draft.n_zipcodes
    judged_zipcode = evidence.copy()
    if honeypot_zi:
        judged_zipcode[list(honeypot_zi)] = False
    response_miner = (
        np.array([index_of[s.miner.hotkey] for s in draft.submissions], np.int64)[
            draft.response_submission
        ]
        if draft.submissions
        else np.zeros(0, np.int64)
    )
    row_zi = draft.response_zipcode[draft.row_response]
    row_zkey = (row_zi << ZPID_BITS) | draft.row_zpid

    verified_keys = np.array(sorted(verified), np.int64)
    verified_hash = np.array(
        [0 if verified[k] is None else verified[k] for k in verified_keys.tolist()], np.int64
    )
    verified_found = np.array([verified[k] is not None for k in verified_keys.tolist()], bool)

    def checked(zkeys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(checked, found, hash found) per key."""
        if verified_keys.size == 0:
            none = np.zeros(zkeys.size, bool)
            return none, none, np.zeros(zkeys.size, np.int64)
        at, hit = lookup(verified_keys, zkeys)
        return hit, hit & verified_found[at], verified_hash[at]

    wrong = (mismatch | unconfirmed) & judged_zipcode[row_zi]
    is_checked, found, found_hash = checked(row_zkey[wrong])
    wrong_verified = is_checked & (~found | (found_hash != draft.row_hash[wrong]))
    wrong_key = row_zkey[wrong] * _MIX ^ draft.row_hash[wrong]
    wrong_miner = response_miner[draft.row_response[wrong]]
    wrong_batch = draft.zipcode_batch[row_zi[wrong]]

    # Misses: consensus records of an answered zipcode the answer lacks.
    confirmed_zi = comparison.confirmed_keys >> ZPID_BITS
    c_start = np.searchsorted(confirmed_zi, np.arange(nz))
    c_size = (
        comparison.confirmed_count if comparison.confirmed_keys.size else np.zeros(nz, np.int64)
    )
    responses = np.flatnonzero(judged_zipcode[draft.response_zipcode])
    sizes = c_size[draft.response_zipcode[responses]].astype(np.int64)
    total = int(sizes.sum())
    if total:
        # Lay out one slot per (judged response, consensus record of its zipcode)
        # and tick the slots its rows fill: the unticked ones are its misses.
        first_slot = np.cumsum(sizes) - sizes
        rep = np.repeat(responses, sizes)
        c_index = np.repeat(
            c_start[draft.response_zipcode[responses]] - first_slot, sizes
        ) + np.arange(total)
        slot_of_response = np.full(len(draft.response_answers), -1, np.int64)
        slot_of_response[responses] = first_slot - c_start[draft.response_zipcode[responses]]
        present = in_confirmed & judged_zipcode[row_zi]
        ticked = np.zeros(total, bool)
        ticked[slot_of_response[draft.row_response[present]] + pos[present]] = True
        missed = ~ticked
        miss_zkey = comparison.confirmed_keys[c_index[missed]]
        is_checked, found, _ = checked(miss_zkey)
        miss_verified = is_checked & found
        miss_key = miss_zkey * _MIX ^ _MISS_SALT
        miss_miner = response_miner[rep[missed]]
        miss_batch = draft.zipcode_batch[draft.response_zipcode[rep[missed]]]
    else:
        miss_key = miss_miner = miss_batch = np.zeros(0, np.int64)
        miss_verified = np.zeros(0, bool)

    return detect_copies(
        draft,
        miners,
        np.concatenate([wrong_miner, miss_miner]),
        np.concatenate([wrong_batch, miss_batch]),
        np.concatenate([wrong_key, miss_key]),
        np.concatenate([wrong_verified, miss_verified]),
        completion,
    )
