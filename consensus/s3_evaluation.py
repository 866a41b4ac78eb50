"""The S3 evaluation, between cycles, pure: a miner's uploaded files -> an ``S3Evaluation``.

Not the in-cycle audit of revealed manifests (``consensus/s3_audit.py``).

Between consensus cycles the validator samples each miner's files of the last
epoch (``vali_utils/s3_evaluation.py`` lists, fetches and decodes them) and judges
them here. No network, disk or clock: ``now`` and every input are passed in.

Components, each in [0, 1] (None when there is nothing to judge)::

    integrity   sampled files that exist, match the content hash in their name,
                decode within the caps and carry the epoch nonce
    schema      lines of intact files that are valid records
    duplicates  unique zpids / records, within a file and across the sampled
                files of one source (a listing sits in one zipcode)
    freshness   records scraped within ``freshness_max_age_s`` of ``now`` and
                not after the S3 server's upload time (+ clock skew); a record
                without ``scraped_at`` is dated by its file's upload time
    coverage    assigned (source, zipcode) pairs with a file in the listing
    agreement   F1 of a file's (zpid, record_hash) set against the last
                consensus of that zipcode, averaged over files that have one
    spot_check  sampled records the validator's own source confirmed
    folder      0 when the miner's folder is padded past the listing cap
                (an honest folder stays far under it: the Data API caps
                uploads per zipcode), absent otherwise

    reward = product of the components that are not None

A product, because each component measures a different way to be worthless:
fresh duplicates or unique stale records are both bad data. A miner with
nothing to judge (no assignments, no files) or whose files S3 could not
deliver gets ``reward None``: no evidence, the scoring state is not touched.
An outage is never evidence: when a share of at least
``S3EvalConfig.outage_share`` of a round's miners could not be read
(``is_outage``), the whole round is made evidence-free (``without_evidence``).

Sampling (``select_files``, ``select_spot_checks``) ranks by a keyed blake2b
of (seed, hotkey, key or zpid). The seed must be a value every validator
knows and the miner did not when it uploaded (e.g. the block seed of a later
epoch), so others can reproduce the sample and the miner cannot aim at it.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from common.s3_files import DecodedFile, Rejection
from common.s3_layout import ObjectKey
from config.storage import S3EvalConfig
from consensus.answers import hash_to_int
from consensus.draft import ZPID_BITS, Comparison
from consensus.s3_sampling import sample_rank
from consensus.types import SpotCheckRequest, Verdict

COMPONENTS = (
    "integrity",
    "schema",
    "duplicates",
    "freshness",
    "coverage",
    "agreement",
    "spot_check",
    "folder",
)
NO_BATCH = -1  # SpotCheckRequest.batch_id of an S3-evaluation check (not from a batch)


@dataclass(frozen=True, slots=True)
class ListedFile:
    """A key from the miner's listing that follows the layout."""

    key: str
    parts: ObjectKey
    size: int
    last_modified: float | None  # S3 server's clock, unix seconds


@dataclass(frozen=True, slots=True)
class SampledFile:
    """A sampled file and what fetching it gave (None: it vanished after the listing)."""

    listed: ListedFile
    outcome: DecodedFile | Rejection | None


@dataclass(frozen=True, slots=True)
class S3Evaluation:
    """One miner's S3 evaluation round."""

    hotkey: str
    reward: float | None  # None: no evidence (S3 unavailable, or nothing to judge)
    components: Mapping[str, float] = field(default_factory=dict)
    files_listed: int = 0
    files_checked: int = 0
    records_checked: int = 0
    reasons: tuple[str, ...] = ()


def evaluation_seed(epoch_seed: bytes, round_index: int) -> bytes:
    """The sampling seed of one evaluation round, from a seed every validator knows."""
    return hashlib.blake2b(
        b"s3-eval\x00" + epoch_seed + round_index.to_bytes(8, "big", signed=False),
        digest_size=32,
    ).digest()


def select_files(
    seed: bytes,
    hotkey: str,
    listed: Sequence[ListedFile],
    k: int,
    *,
    cutoff: float | None = None,
) -> list[ListedFile]:
    """The ``k`` files to fetch: seeded, and only those uploaded by ``cutoff`` when given.

    Files the miner uploaded after the cutoff (the moment the seed became
    known) are not eligible, so uploading after the fact cannot steer the sample.
    """
    eligible = [
        f
        for f in listed
        if cutoff is None or (f.last_modified is not None and f.last_modified <= cutoff)
    ]
    eligible.sort(key=lambda f: (sample_rank(seed, hotkey, f.key), f.key))
    return eligible[: max(0, k)]


def select_spot_checks(
    seed: bytes, hotkey: str, sampled: Sequence[SampledFile], k: int
) -> list[SpotCheckRequest]:
    """Up to ``k`` records of the intact sampled files, seeded, as spot-check requests."""
    candidates = {}
    for file in sampled:
        if isinstance(file.outcome, DecodedFile):
            for record in file.outcome.records:
                candidates.setdefault((record.zipcode, record.zpid), record)
    ranked = sorted(
        candidates.items(),
        key=lambda kv: (sample_rank(seed, hotkey, kv[0][0], str(kv[0][1])), kv[0]),
    )
    return [
        SpotCheckRequest(
            zipcode=record.zipcode,
            zpid=record.zpid,
            record_hash=hash_to_int(record.record_hash),
            fields=record.fields,
            batch_id=NO_BATCH,
            reason="s3_eval",
        )
        for _, record in ranked[: max(0, k)]
    ]


def no_evidence(hotkey: str, reason: str, files_listed: int = 0) -> S3Evaluation:
    """An evaluation that says nothing (S3 unavailable): the scoring state ignores it."""
    return S3Evaluation(hotkey, None, {}, files_listed, 0, 0, (reason,))


def folder_padded(hotkey: str, files_listed: int, detail: str) -> S3Evaluation:
    """A miner whose folder hides a sampled key past the listing cap: reward 0, evidence."""
    return S3Evaluation(
        hotkey, 0.0, {"folder": 0.0}, files_listed, 0, 0, (f"listing_capped: {detail[:120]}",)
    )


def is_outage(unavailable: int, total: int, share: float) -> bool:
    """Whether ``unavailable`` failed reads out of ``total`` miners say S3 itself was failing."""
    return unavailable > 0 and total > 0 and unavailable / total >= share


def outage_in_window(
    probes: Sequence[tuple[float, bool]], start: float, end: float, in_a_row: int
) -> tuple[float, float] | None:
    """The first outage seen in ``[start, end]``: (first, last) failed probe, or None.

    ``probes`` are (wall time, storage reachable) in time order, from the
    validator's watch of the Data API and S3 while miners upload. An outage
    is ``in_a_row`` or more failed probes with no success between them: one
    failed probe is the validator's own glitch as often as the storage's.
    A run that starts before the window and lasts into it counts.
    """
    run: list[float] = []
    for at, ok in probes:
        if at > end:
            break
        if ok:
            run = []
            continue
        run.append(at)
        if len(run) >= in_a_row and run[-1] >= start:
            return run[0], run[-1]
    return None


def without_evidence(
    evaluations: Mapping[str, S3Evaluation], reason: str
) -> dict[str, S3Evaluation]:
    """The same miners, every one with ``reward None`` and ``reason`` last: a void round."""
    return {
        hotkey: S3Evaluation(
            hotkey, None, {}, e.files_listed, e.files_checked, 0, (*e.reasons, reason)
        )
        for hotkey, e in evaluations.items()
    }


def _intact(
    file: SampledFile, expected_nonce: str | None, reasons: Counter[str]
) -> DecodedFile | None:
    outcome = file.outcome
    if outcome is None:
        reasons["vanished"] += 1
        return None
    if isinstance(outcome, Rejection):
        reasons[f"rejected_{outcome.reason.value}"] += 1
        return None
    if outcome.content_hash != file.listed.parts.content_hash:
        reasons["content_hash_mismatch"] += 1
        return None
    # A file of no records has no lines, hence no nonce; it claims nothing.
    if expected_nonce is not None and outcome.nonces and outcome.nonces != {expected_nonce}:
        reasons["wrong_epoch_nonce"] += 1
        return None
    return outcome


def consensus_records(
    zipcodes: Sequence[str], comparison: Comparison, *, source: str, min_confidence: float
) -> dict[str, dict[str, dict[int, int | None]]]:
    """The ``last_consensus`` argument of the evaluation from a consensus comparison.

    Takes the cycle's zipcodes (the engine's order), a ``Comparison`` (the
    engine's cross-group outcome), the source the cycle scraped and the
    confidence below which a zipcode is no evidence. Returns source ->
    zipcode -> zpid -> ``hash_to_int`` of the confirmed record hash, or None
    when only the listing's presence was agreed. Zipcodes under the
    confidence threshold are left out: they say nothing about anyone.
    """
    confident = comparison.confidence >= min_confidence
    out: dict[str, dict[int, int | None]] = {
        z: {} for z, ok in zip(zipcodes, confident.tolist(), strict=True) if ok
    }
    keys = comparison.confirmed_keys
    for key, value, resolved in zip(
        keys.tolist(),
        comparison.confirmed_hash.tolist(),
        comparison.confirmed_resolved.tolist(),
        strict=True,
    ):
        zipcode = zipcodes[key >> ZPID_BITS]
        if zipcode in out:
            out[zipcode][key & ((1 << ZPID_BITS) - 1)] = value if resolved else None
    return {source: out}


def _f1(found: Mapping[int, int], consensus: Mapping[int, int | None]) -> float:
    if not found and not consensus:
        return 1.0
    agree = sum(
        1
        for zpid, h in found.items()
        if zpid in consensus and consensus[zpid] in (None, h)  # None: presence agreed only
    )
    if agree == 0:
        return 0.0
    precision, recall = agree / len(found), agree / len(consensus)
    return 2 * precision * recall / (precision + recall)


def evaluate_miner(
    hotkey: str,
    *,
    listed: Sequence[ListedFile],
    sampled: Sequence[SampledFile],
    assigned: Mapping[str, Sequence[str]],
    consensus: Mapping[str, Mapping[str, Mapping[int, int | None]]],
    now: float,
    config: S3EvalConfig,
    expected_nonce: str | None = None,
    spot_verdicts: Sequence[Verdict] = (),
    foreign_keys: int = 0,
    listing_capped: bool = False,
) -> S3Evaluation:
    """Judge one miner's files of one epoch.

    Takes its listed files (valid keys of the epoch), the sampled files with
    their fetch outcomes, its assignments of the epoch (source -> zipcodes),
    the last consensus (source -> zipcode -> zpid -> ``hash_to_int`` of the
    record hash, None for presence only; see ``consensus_records``), the
    evaluation time, the config, the epoch nonce when known, the spot-check
    verdicts, and the listing's oddities (keys that do not follow the
    layout, a listing stopped at the cap). Returns the ``S3Evaluation``;
    never raises on content.
    """
    reasons: Counter[str] = Counter()
    components: dict[str, float] = {}
    intact = [(f, d) for f in sampled if (d := _intact(f, expected_nonce, reasons)) is not None]
    if sampled:
        components["integrity"] = len(intact) / len(sampled)

    lines = sum(d.lines for _, d in intact)
    valid = sum(len(d.records) for _, d in intact)
    for _, d in intact:
        reasons.update({f"bad_line_{k}": v for k, v in d.bad_lines.items()})
    if lines:
        components["schema"] = valid / lines

    if valid:
        seen: dict[tuple[str, int], str] = {}
        within = across = 0
        for f, d in intact:
            in_file: set[int] = set()
            for record in d.records:
                if record.zpid in in_file:
                    within += 1
                    continue
                in_file.add(record.zpid)
                place = (f.listed.parts.source, record.zpid)
                if place in seen:
                    across += 1
                else:
                    seen[place] = f.listed.key
        if within:
            reasons["duplicates_within_file"] = within
        if across:
            reasons["duplicates_across_files"] = across
        components["duplicates"] = len(seen) / valid

        fresh = 0
        earliest = now - config.freshness_max_age_s
        for f, d in intact:
            # The S3 server's clock bounds the miner's claims: nothing is scraped
            # after its upload. An undated record is as old as its upload.
            uploaded = f.listed.last_modified if f.listed.last_modified is not None else now
            latest = min(now, uploaded) + config.clock_skew_s
            fresh += sum(
                1
                for r in d.records
                if earliest <= (r.scraped_at if r.scraped_at is not None else uploaded) <= latest
            )
        if fresh < valid:
            reasons["stale_records"] = valid - fresh
        components["freshness"] = fresh / valid

    pairs = {(source, z) for source, zipcodes in assigned.items() for z in zipcodes}
    if pairs:
        covered = {(f.parts.source, f.parts.zipcode) for f in listed}
        components["coverage"] = len(pairs & covered) / len(pairs)
        if len(pairs - covered):
            reasons["assigned_zipcodes_without_file"] = len(pairs - covered)
    unassigned = sum(1 for f in listed if (f.parts.source, f.parts.zipcode) not in pairs)
    if unassigned:
        reasons["files_for_unassigned_zipcodes"] = unassigned

    scores = []
    for f, d in intact:
        reference = consensus.get(f.listed.parts.source, {}).get(f.listed.parts.zipcode)
        if reference is None:
            continue
        found = {r.zpid: hash_to_int(r.record_hash) for r in d.records}
        scores.append(_f1(found, reference))
    if scores:
        components["agreement"] = sum(scores) / len(scores)

    judged = [v for v in spot_verdicts if v is not Verdict.NO_EVIDENCE]
    if judged:
        components["spot_check"] = sum(v is Verdict.MATCH for v in judged) / len(judged)
        failed = len(judged) - sum(v is Verdict.MATCH for v in judged)
        if failed:
            reasons["spot_checks_failed"] = failed

    if foreign_keys:
        reasons["keys_outside_layout"] = foreign_keys
    if listing_capped:
        # Only padding gets a folder past the cap; it would hide files from the sample.
        reasons["listing_capped"] = 1
        components["folder"] = 0.0
    return S3Evaluation(
        hotkey=hotkey,
        reward=_reward(components),
        components={name: components[name] for name in COMPONENTS if name in components},
        files_listed=len(listed),
        files_checked=len(sampled),
        records_checked=valid,
        reasons=tuple(f"{name}: {count}" for name, count in sorted(reasons.items())),
    )


def _reward(components: Mapping[str, float]) -> float | None:
    """The product of the components in [0, 1]; None (no evidence) when there are none."""
    if not components:
        return None
    reward = 1.0
    for value in components.values():
        reward *= value
    return min(1.0, max(0.0, reward))


def coverage_excused(evaluation: S3Evaluation, reason: str) -> S3Evaluation:
    """The same judgement without its coverage, for an epoch whose uploads met an outage.

    An outage while miners uploaded loses files, and a lost file looks like a
    zipcode the miner never did: coverage is no evidence then. What the files
    that did land say (integrity, schema, duplicates, freshness, agreement,
    spot checks, a padded folder) still is, since an outage cannot write them.
    """
    if "coverage" not in evaluation.components:
        return evaluation
    components = {k: v for k, v in evaluation.components.items() if k != "coverage"}
    reasons = tuple(r for r in evaluation.reasons if not r.startswith("assigned_zipcodes_without"))
    return replace(
        evaluation,
        reward=_reward(components),
        components=components,
        reasons=(*reasons, reason),
    )
