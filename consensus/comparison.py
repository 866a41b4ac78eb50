"""Across groups: each batch's trusted groups compared into per-zipcode confidence.

A record is *confirmed* when every valid group of its batch accepted it with
the same value, *disputed* when only some did; ``agreement`` = confirmed /
(confirmed + disputed), and ``confidence`` = agreement x (0.5 + 0.5 x support
margin) x responder factor. Honeypot zipcodes take the owner's reference
answer instead.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from config.consensus import ConsensusConfig
from consensus.answers import hash_to_int
from consensus.draft import ZPID_BITS, Comparison, ConsensusDraft, lookup, run_boundaries
from consensus.types import Honeypot


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
    starts = run_boundaries(zkey)
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

    confidence = zipcode_confidence(cfg, agreement, margin, responders)

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


def zipcode_confidence(
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
    """Zipcode keys no valid group accepted, yet reported by two or more coldkeys.

    A listing that independent owners both report is not an invention of
    either, whatever the head count against it (a bloc that leaves real
    listings out must not make the miners who report them look like
    fabricators): it judges nobody until the validator's own source settles
    it. A listing only one coldkey reports stays unconfirmed.
    """
    nz = draft.n_zipcodes
    if draft.row_zpid.size == 0:
        return np.zeros(0, np.int64)
    response_cell = draft.submission_group[draft.response_submission] * nz + draft.response_zipcode
    voting = valid_cell[response_cell]
    if draft.empty_abstains.size:
        voting &= ~draft.empty_abstains
    # Only rows of keys no group accepted can be uncertain: a few percent of a
    # cycle's rows, so the sort below stays small.
    gc = draft.groups
    row_cell = response_cell[draft.row_response]
    at, found = lookup(
        (gc.key_cell << ZPID_BITS) | gc.key_zpid, (row_cell << ZPID_BITS) | draft.row_zpid
    )
    rows = np.flatnonzero(voting[draft.row_response] & ~(found & gc.accepted[at]))
    row_zi = draft.response_zipcode[draft.row_response[rows]]
    zkey = (row_zi << ZPID_BITS) | draft.row_zpid[rows]
    coldkey = draft.coldkey_id[draft.response_submission[draft.row_response[rows]]]
    order = np.lexsort((coldkey, zkey))
    pair_zkey = zkey[order][run_boundaries(zkey[order], coldkey[order])]  # one per (key, owner)
    starts = run_boundaries(pair_zkey)
    owners = np.diff(np.append(starts, pair_zkey.size))
    contested = pair_zkey[starts][owners >= 2]
    return contested[~lookup(accepted_keys, contested)[1]]


def _apply_honeypots(
    draft: ConsensusDraft, comparison: Comparison, honeypots: Mapping[str, Honeypot]
) -> None:
    """Replace honeypot zipcodes' consensus with the owner's reference answer."""
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
