"""What a cycle confirmed, record by record, with the evidence behind each: the dataset's input.

Pure, like the rest of ``consensus/``: a finalized draft and the spot-check
verdicts in, plain data out. Every validator that reached the same consensus
gets the same list in the same order, which is what lets two validators
publish byte-identical dataset files (``vali_utils/dataset/``).

    draft = engine.evaluate(...); result = engine.finalize(draft, verdicts, honeypots, tiebreaks)
    confirmed = confirmed_records(draft, verdicts, result.zipcodes)
    confirmed.records[0].miners, confirmed.sources["77494"]   # reporters, best file first

A record is confirmed for the dataset when its zipcode reached
``zipcode_confidence_threshold`` and every valid group accepted it with the
same value, or a tie-break or the validator's own source settled it (the
engine's final comparison). A record whose groups agreed only that the
listing exists, not on its value, is left out: the dataset publishes values,
and nobody agreed on one.

Honeypot zipcodes are treated like any other: their records are what the
miners agreed on, at the confidence the miners' answers earned, never the
owner's reference answer (which the engine scores miners against). Leaving
them out, or publishing the reference, would tell miners which of their
block's zipcodes were honeypots (the manifest lists the zipcodes).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from consensus.comparison import compare_groups
from consensus.draft import ZPID_BITS, Comparison, ConsensusDraft, lookup, run_boundaries
from consensus.tiebreak import apply_resolution
from consensus.types import SpotCheckRequest, Verdict, ZipcodeOutcome

_ZPID_MASK = (1 << ZPID_BITS) - 1


@dataclass(frozen=True, slots=True)
class ConfirmedRecord:
    """One listing the cycle confirmed, and how it was confirmed."""

    zipcode: str
    zpid: int
    record_hash: int  # hash_to_int of the agreed record_hash
    confidence: float  # its zipcode's consensus confidence
    miners: int  # miners of valid groups who reported this value
    coldkeys: int  # distinct coldkeys among them
    spot_checked: bool  # the validator's own source confirmed this value


@dataclass(frozen=True, slots=True)
class ConfirmedSet:
    """The confirmed records (sorted by zipcode, zpid) and where their full fields are."""

    records: tuple[ConfirmedRecord, ...]
    # zipcode -> hotkeys who reported its confirmed values, the one holding the
    # most of them first (ties by hotkey): the files to read the full records from.
    sources: Mapping[str, tuple[str, ...]]


def confirmed_records(
    draft: ConsensusDraft,
    verdicts: Sequence[tuple[SpotCheckRequest, Verdict]],
    outcomes: Mapping[str, ZipcodeOutcome],
) -> ConfirmedSet:
    """The records a finalized draft confirmed, with provenance, sorted by (zipcode, zpid).

    Takes the draft after ``ConsensusEngine.finalize``, the verdicts passed to
    it and the result's per-zipcode outcomes (which zipcodes, which were
    honeypots). Returns the confirmed set; empty when
    nothing was confirmed.
    """
    comparison = draft.final_comparison or draft.comparison
    if any(outcome.honeypot for outcome in outcomes.values()):
        comparison = miners_comparison(draft)
    threshold = draft.config.zipcode_confidence_threshold
    nz = draft.n_zipcodes
    wanted = np.zeros(nz, bool)
    for zipcode in outcomes:
        zi = draft.zipcode_index.get(zipcode)
        if zi is not None and comparison.confidence[zi] >= threshold:
            wanted[zi] = True
    keys = comparison.confirmed_keys
    take = comparison.confirmed_resolved & wanted[keys >> ZPID_BITS]
    keys, hashes = keys[take], comparison.confirmed_hash[take]
    if keys.size == 0 or draft.row_zpid.size == 0:
        return ConfirmedSet((), {})

    # The rows (one miner's report of one record) that carry a confirmed value,
    # in groups the comparison trusted.
    row_sub = draft.response_submission[draft.row_response]
    row_zi = draft.response_zipcode[draft.row_response]
    row_valid = comparison.valid_cell[draft.submission_group[row_sub] * nz + row_zi]
    row_key = (row_zi << ZPID_BITS) | draft.row_zpid
    at, found = lookup(keys, row_key)
    rows = np.flatnonzero(row_valid & found & (draft.row_hash == hashes[at]))
    row_key, row_sub, row_at = row_key[rows], row_sub[rows], at[rows]

    miners = np.bincount(row_at, minlength=keys.size)
    coldkey = draft.coldkey_id[row_sub]
    order = np.lexsort((coldkey, row_at))
    pairs = run_boundaries(row_at[order], coldkey[order])  # one per (record, coldkey)
    coldkeys = np.bincount(row_at[order][pairs], minlength=keys.size)

    checked = {(r.zipcode, r.zpid, r.record_hash) for r, v in verdicts if v is Verdict.MATCH}
    records = tuple(
        ConfirmedRecord(
            zipcode=draft.zipcodes[key >> ZPID_BITS],
            zpid=key & _ZPID_MASK,
            record_hash=value,
            confidence=round(float(comparison.confidence[key >> ZPID_BITS]), 6),
            miners=n_miners,
            coldkeys=n_coldkeys,
            spot_checked=(draft.zipcodes[key >> ZPID_BITS], key & _ZPID_MASK, value) in checked,
        )
        for key, value, n_miners, n_coldkeys in zip(
            keys.tolist(), hashes.tolist(), miners.tolist(), coldkeys.tolist(), strict=True
        )
    )
    return ConfirmedSet(records, _sources(draft, row_key >> ZPID_BITS, row_sub))


def miners_comparison(draft: ConsensusDraft) -> Comparison:
    """The finalized draft's final comparison as it is with no honeypot revealed.

    ``ConsensusEngine.finalize`` replaces honeypot zipcodes' consensus with
    the owner's reference; this compares again from what finalize compared
    with (``draft.final_settlement``: captured groups, trust, the tie-break and
    spot-check resolution) without that step, so every zipcode, honeypot or
    not, holds what the miners agreed on. For a cycle without honeypots it
    equals ``draft.final_comparison`` (``tests/unit/test_provenance.py``).
    """
    if draft.final_settlement is None:
        raise ValueError("miners_comparison needs a draft ConsensusEngine.finalize has run on")
    captured, trust, resolution = draft.final_settlement
    comparison = compare_groups(draft, captured, trust, {})
    apply_resolution(draft, comparison, resolution)
    return comparison


def _sources(
    draft: ConsensusDraft, row_zi: np.ndarray, row_sub: np.ndarray
) -> dict[str, tuple[str, ...]]:
    """Per zipcode, its reporters by how many confirmed values they hold (then hotkey)."""
    n_sub = len(draft.submissions)
    counts = np.bincount(row_zi * n_sub + row_sub, minlength=draft.n_zipcodes * n_sub)
    out: dict[str, tuple[str, ...]] = {}
    for cell in np.flatnonzero(counts).tolist():
        zi, si = divmod(cell, n_sub)
        out.setdefault(draft.zipcodes[zi], []).append(  # type: ignore[arg-type]
            (-int(counts[cell]), draft.submissions[si].miner.hotkey)
        )
    return {z: tuple(dict.fromkeys(hk for _, hk in sorted(v))) for z, v in out.items()}
