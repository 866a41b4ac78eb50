"""The S3 audit, in-cycle, pure: which manifest files to sample and how to judge them.

The audit checks revealed manifests during a consensus cycle (its I/O side:
``vali_utils/s3_audit.py``); the between-cycle S3 evaluation is
``consensus/s3_evaluation.py``.

During a consensus cycle the validator checks a seeded sample of each
miner's manifest files against the objects in S3 before the miner's records
count. This module has no I/O: the validator fetches and decodes the sampled
objects (``vali_utils/s3_audit.py``) and hands the outcomes here.

- ``select_manifest_samples``: per miner, ``per_miner`` files ranked by a
  blake2b of (seed, hotkey, source, zipcode, file position). The rank uses
  only values the miner cannot grind (its assignment, not its content), and
  the seed is the cycle's block seed, which every validator has and miners
  do not, so any validator can reproduce the sample.
- ``check_sample``: one file against its manifest entry: key layout and
  owner, object present, content hash, records parse, record count, epoch
  nonce, and the ``(zpid, record_hash)`` set.
- ``combine``: per miner, ``mismatch`` (with evidence) beats ``unavailable``
  (S3 failed: no evidence either way) beats ``ok``; ``no_files`` when the
  manifests list nothing uploaded.
- ``apply_s3_verdicts``: a mismatch is a ``fabrication`` flag carrying the
  evidence (the manifest lied about its data); an unavailable miner is left
  out of the cycle's scoring, so its score is unchanged.

The cycle drops the submissions of ``rejected_hotkeys(verdicts)`` before
consensus, so a lying manifest's records never count.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

from common.manifest import Manifest, ZipcodeManifest
from common.s3_files import DecodedFile, Rejection
from common.s3_layout import InvalidKey, parse_epoch_id, parse_key
from consensus.s3_sampling import sample_rank
from consensus.types import CycleResult, Flag, FlagKind

MAX_EVIDENCE_ITEMS = 5  # zpids quoted per finding: enough to reproduce, small enough to log
MAX_EVIDENCE_PER_MINER = 4  # findings kept per miner


class VerdictStatus(StrEnum):
    OK = "ok"  # every sampled file matched its manifest entry
    MISMATCH = "mismatch"  # a sampled file contradicts the manifest; evidence attached
    UNAVAILABLE = "unavailable"  # S3 failed for a sample and nothing contradicted: no evidence
    NO_FILES = "no_files"  # the manifests list no uploaded file to check


@dataclass(frozen=True, slots=True)
class ManifestSample:
    """One manifest file chosen for checking, with the entry it must agree with."""

    hotkey: str
    epoch_id: str | None  # as the manifest says
    epoch_nonce: str | None  # as the manifest says
    entry: ZipcodeManifest
    key: str
    content_hash: str
    record_count: int  # the file's own count (the entry's for single-file entries)
    whole_entry: bool  # the entry's only file: its records must equal the entry's
    position: int = 0  # the file's place in the entry's list


@dataclass(frozen=True, slots=True)
class FileCheck:
    sample: ManifestSample
    status: VerdictStatus  # OK, MISMATCH or UNAVAILABLE
    evidence: Mapping[str, object]


@dataclass(frozen=True, slots=True)
class ManifestVerdict:
    hotkey: str
    status: VerdictStatus
    checked: int  # files compared with their objects
    unavailable: int  # files S3 could not deliver
    evidence: tuple[Mapping[str, object], ...] = ()


def verification_seed(block_seed: bytes) -> bytes:
    """The cycle's sampling seed, derived so it differs from the spot-check seed."""
    return hashlib.blake2b(b"s3-verify\x00" + block_seed, digest_size=32).digest()


def _samples_of(hotkey: str, manifest: Manifest) -> list[ManifestSample]:
    out = []
    for entry in manifest.zipcodes:
        files = [(f.key, f.content_hash, f.record_count) for f in entry.files]
        if not files and entry.s3_key and entry.content_hash:  # the older single-file form
            files = [(entry.s3_key, entry.content_hash, entry.record_count)]
        for position, (key, content_hash, count) in enumerate(files):
            out.append(
                ManifestSample(
                    hotkey,
                    manifest.epoch_id,
                    manifest.epoch_nonce,
                    entry,
                    key,
                    content_hash,
                    count,
                    whole_entry=len(files) == 1,
                    position=position,
                )
            )
    return out


def select_manifest_samples(
    seed: bytes, manifests: Mapping[str, Sequence[Manifest]], per_miner: int
) -> dict[str, list[ManifestSample]]:
    """Up to ``per_miner`` files per miner, the same on every validator for the same seed.

    Takes the seed, each miner's manifests of the cycle (by hotkey; a manifest
    whose ``miner_hotkey`` is another miner's is skipped) and the sample size.
    Returns hotkey -> samples, in rank order; miners without files map to [].
    """
    chosen: dict[str, list[ManifestSample]] = {}
    for hotkey in sorted(manifests):
        candidates = [
            sample
            for manifest in manifests[hotkey]
            if manifest.miner_hotkey == hotkey
            for sample in _samples_of(hotkey, manifest)
        ]
        ranked = sorted(
            enumerate(candidates),
            key=lambda pair: (
                sample_rank(
                    seed, hotkey, pair[1].entry.source, pair[1].entry.zipcode, str(pair[1].position)
                ),
                pair[0],
            ),
        )
        chosen[hotkey] = [sample for _, sample in ranked[: max(0, per_miner)]]
    return chosen


def _mismatch(sample: ManifestSample, check: str, **details: object) -> FileCheck:
    evidence = {"check": check, "key": sample.key[:300], "zipcode": sample.entry.zipcode}
    return FileCheck(sample, VerdictStatus.MISMATCH, evidence | details)


def unavailable(sample: ManifestSample, reason: str) -> FileCheck:
    """A sample S3 could not deliver (outage, timeout, refused read): no evidence."""
    return FileCheck(sample, VerdictStatus.UNAVAILABLE, {"reason": reason[:200]})


def folder_padded(sample: ManifestSample, detail: str) -> FileCheck:
    """A sample hidden in a folder padded past the listing cap: evidence against its miner.

    An honest miner's folder stays far under the cap (the Data API caps
    uploads per zipcode); padding it is how a miner would turn "not found"
    into "could not look".
    """
    return _mismatch(sample, "folder_padded", detail=detail[:200])


def check_key(
    sample: ManifestSample, *, prefix: str | None, expected_epoch: int | None
) -> FileCheck | None:
    """A mismatch when the key is not this miner's file for this entry; None when it is.

    Run before fetching: a key under another miner's prefix would let a miner
    claim someone else's upload, and a malformed key is not worth a request.
    """
    try:
        parts = parse_key(sample.key, prefix)
    except InvalidKey as exc:
        return _mismatch(sample, "key_layout", detail=str(exc)[:200])
    epoch = expected_epoch
    if epoch is None and sample.epoch_id is not None:
        try:
            epoch = parse_epoch_id(sample.epoch_id)
        except ValueError:
            epoch = None
    expected = {
        "hotkey": sample.hotkey,
        "source": sample.entry.source,
        "zipcode": sample.entry.zipcode,
        "content_hash": sample.content_hash,
    }
    if epoch is not None:
        expected["epoch"] = epoch
    wrong = {
        name: {"manifest": value, "key": getattr(parts, name)}
        for name, value in expected.items()
        if getattr(parts, name) != value
    }
    return _mismatch(sample, "key_mismatch", fields=wrong) if wrong else None


def check_sample(
    sample: ManifestSample,
    decoded: DecodedFile | Rejection | None,
    *,
    expected_nonce: str | None = None,
) -> FileCheck:
    """Judge one fetched file against its manifest entry (``None``: the object is missing).

    ``None`` must be a corroborated miss (fetched twice, absent from the
    miner's listing read in full): a bare 404 is no evidence. Returns OK or
    a MISMATCH whose evidence names the first failed check:
    ``object_missing``, ``object_rejected``, ``content_hash``,
    ``unparseable_records``, ``record_count``, ``epoch_nonce``,
    ``duplicate_records`` or ``records``.
    """
    if decoded is None:
        return _mismatch(sample, "object_missing")
    if isinstance(decoded, Rejection):
        return _mismatch(
            sample, "object_rejected", reason=decoded.reason.value, detail=decoded.detail[:200]
        )
    if decoded.content_hash != sample.content_hash:
        return _mismatch(
            sample, "content_hash", manifest=sample.content_hash, object=decoded.content_hash
        )
    if decoded.bad_lines:
        return _mismatch(sample, "unparseable_records", lines=dict(decoded.bad_lines))
    if len(decoded.records) != sample.record_count:
        return _mismatch(
            sample, "record_count", manifest=sample.record_count, object=len(decoded.records)
        )
    nonce = expected_nonce if expected_nonce is not None else sample.epoch_nonce
    # A file of no records carries no nonce (it has no lines) and claims nothing.
    if nonce is not None and decoded.nonces and decoded.nonces != {nonce}:
        return _mismatch(sample, "epoch_nonce", expected=nonce, object=sorted(decoded.nonces)[:3])
    in_file: dict[str, str] = {}
    duplicates = []
    for record in decoded.records:
        zpid = str(record.zpid)
        if zpid in in_file:
            duplicates.append(zpid)
        in_file[zpid] = record.record_hash
    if duplicates:
        return _mismatch(sample, "duplicate_records", zpids=duplicates[:MAX_EVIDENCE_ITEMS])
    claimed = dict(sample.entry.records)
    changed = sorted(z for z, h in in_file.items() if z in claimed and claimed[z] != h)
    extra = sorted(z for z in in_file if z not in claimed)
    missing = sorted(z for z in claimed if z not in in_file) if sample.whole_entry else []
    if changed or extra or missing:
        return _mismatch(
            sample,
            "records",
            changed=[
                {"zpid": z, "manifest": claimed[z], "object": in_file[z]}
                for z in changed[:MAX_EVIDENCE_ITEMS]
            ],
            not_in_manifest=extra[:MAX_EVIDENCE_ITEMS],
            not_in_object=missing[:MAX_EVIDENCE_ITEMS],
            counts={"changed": len(changed), "extra": len(extra), "missing": len(missing)},
        )
    return FileCheck(sample, VerdictStatus.OK, {})


def combine(hotkey: str, checks: Sequence[FileCheck]) -> ManifestVerdict:
    """One miner's verdict from its file checks."""
    mismatches = [c.evidence for c in checks if c.status is VerdictStatus.MISMATCH]
    outage = sum(c.status is VerdictStatus.UNAVAILABLE for c in checks)
    checked = len(checks) - outage
    if mismatches:
        status = VerdictStatus.MISMATCH
    elif outage:
        status = VerdictStatus.UNAVAILABLE
    elif checks:
        status = VerdictStatus.OK
    else:
        status = VerdictStatus.NO_FILES
    return ManifestVerdict(
        hotkey, status, checked, outage, tuple(mismatches[:MAX_EVIDENCE_PER_MINER])
    )


def rejected_hotkeys(verdicts: Mapping[str, ManifestVerdict]) -> set[str]:
    """Miners whose manifests were caught lying: their submissions must not count."""
    return {hk for hk, v in verdicts.items() if v.status is VerdictStatus.MISMATCH}


def apply_s3_verdicts(result: CycleResult, verdicts: Mapping[str, ManifestVerdict]) -> CycleResult:
    """The cycle's result with S3 verdicts folded in (a new object; the input is untouched).

    A mismatch adds a ``fabrication`` flag whose evidence says ``check:
    s3_manifest`` and quotes the findings. A miner whose verdict is
    ``unavailable`` is removed from ``miners`` and marked ``excused``:
    ``apply_cycle`` then leaves its score and credibility as they were (an S3
    outage is nobody's fault).
    """
    miners = dict(result.miners)
    flags = list(result.flags)
    excused = set(result.excused)
    for hotkey, verdict in sorted(verdicts.items()):
        if verdict.status is VerdictStatus.UNAVAILABLE:
            miners.pop(hotkey, None)
            excused.add(hotkey)
        elif verdict.status is VerdictStatus.MISMATCH:
            flag = Flag(
                hotkey,
                FlagKind.FABRICATION,
                {"check": "s3_manifest", "findings": list(verdict.evidence)},
            )
            flags.append(flag)
            if hotkey in miners:
                miners[hotkey] = replace(miners[hotkey], flags=[*miners[hotkey].flags, flag])
    return replace(result, miners=miners, flags=flags, excused=frozenset(excused))
