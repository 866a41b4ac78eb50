"""The S3 audit, in-cycle: revealed manifests checked against their S3 objects (I/O side).

The audit runs inside a consensus cycle and decides whether a miner's
revealed records count; the S3 evaluation (``vali_utils/s3_evaluation.py``)
runs between cycles and scores what miners uploaded.

Before a miner's records count, a seeded sample of its manifest files is
fetched, decoded within the caps and compared with the manifest
(``consensus/s3_audit.py`` holds the rules). The result per miner is
``ok``, ``mismatch`` (with evidence), ``unavailable`` (S3 failed: no evidence)
or ``no_files``.

A 404 is evidence only when corroborated (``fetch_corroborated``): the
object is missing again after ``missing_recheck_s``, and the miner's folder,
listed in full, does not hold it. A listing that fails, or that holds the
key, makes it "unavailable"; a folder padded past ``max_keys_per_miner``
without the key is a mismatch (``folder_padded``).

    verdicts = await verify_manifests(reader, block.seed, manifests, settings,
                                      expected_epoch=block.epoch)
    drop = rejected_hotkeys(verdicts)               # their submissions do not count
    ...
    result = apply_s3_verdicts(engine.finalize(...), verdicts)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence

from common.manifest import Manifest
from common.s3_files import DecodedFile, Rejection, RejectReason, decode_zipcode_file
from common.s3_layout import InvalidKey, parse_key
from config.limits import MAX_DECOMPRESSED_BYTES, MAX_FILE_BYTES, MAX_RECORDS_PER_ZIPCODE
from config.storage import S3Settings
from consensus.s3_audit import (
    FileCheck,
    ManifestSample,
    ManifestVerdict,
    VerdictStatus,
    check_key,
    check_sample,
    combine,
    folder_padded,
    select_manifest_samples,
    unavailable,
    verification_seed,
)
from vali_utils.s3_reader import (
    BucketReader,
    FetchedObject,
    FolderPadded,
    ObjectMissing,
    ObjectTooLarge,
    StorageUnavailable,
)

logger = logging.getLogger(__name__)


async def fetch_corroborated(reader: BucketReader, key: str, settings: S3Settings) -> FetchedObject:
    """Fetch ``key``; a 404 is believed only when corroborated.

    Raises ``ObjectMissing`` only when a second fetch, ``missing_recheck_s``
    after the first, misses too and the miner's folder, listed in full,
    does not hold the key; ``FolderPadded`` when that listing stops at
    ``max_keys_per_miner`` without the key; ``StorageUnavailable`` when the
    listing fails or holds the key (S3 listed what it would not serve: not
    the miner's doing); ``ObjectTooLarge`` as ``fetch`` does.
    """
    try:
        return await reader.fetch(key, max_bytes=settings.max_file_bytes)
    except ObjectMissing:
        pass
    # A pause before asking again: a node or proxy failing now may not be in a moment.
    await asyncio.sleep(settings.missing_recheck_s)
    try:
        return await reader.fetch(key, max_bytes=settings.max_file_bytes)
    except ObjectMissing:
        pass
    try:
        parts = parse_key(key)
    except InvalidKey:
        raise ObjectMissing(f"{key[:120]}: not a key of the layout") from None
    listing = await reader.list_miner(
        parts.hotkey, parts.epoch, max_keys=settings.max_keys_per_miner
    )  # StorageUnavailable passes through: a listing that fails corroborates nothing
    if any(item.key == key for item in listing.objects):
        raise StorageUnavailable(f"{key[:200]}: listed but not served twice")
    if listing.truncated:
        raise FolderPadded(
            f"{key[:200]}: not in the first {len(listing.objects)} keys of the miner's folder"
        )
    raise ObjectMissing(
        f"{key[:200]}: missing twice and absent from the miner's folder"
        f" ({len(listing.objects)} keys)"
    )


async def fetch_decoded(
    reader: BucketReader, key: str, settings: S3Settings, *, zipcode: str | None = None
) -> tuple[DecodedFile | Rejection | None, float | None]:
    """(decoded file, rejection, or None when missing; S3 last-modified) of one key.

    None means missing and corroborated (``fetch_corroborated``). Raises
    ``StorageUnavailable`` when S3 cannot say and ``FolderPadded`` when the
    miner's folder is over the listing cap. Decoding runs on a worker
    thread: a file of 5000 records is tens of milliseconds of parsing.
    """
    try:
        fetched = await fetch_corroborated(reader, key, settings)
    except ObjectMissing:
        return None, None
    except ObjectTooLarge as exc:
        decoded: DecodedFile | Rejection = Rejection(RejectReason.TOO_LARGE, str(exc)[:200], 0, 0)
        return _over_own_cap(decoded, key, settings), None
    decoded = await asyncio.to_thread(
        decode_zipcode_file,
        fetched.body,
        zipcode=zipcode,
        max_compressed=settings.max_file_bytes,
        max_decompressed=settings.max_decompressed_bytes,
        max_records=settings.max_records_per_file,
    )
    return _over_own_cap(decoded, key, settings), fetched.last_modified


# Each size cap a validator may lower, and the network's limit miners upload to.
_CAPS = {
    RejectReason.TOO_LARGE: ("max_file_bytes", MAX_FILE_BYTES),
    RejectReason.DECOMPRESSED_TOO_LARGE: ("max_decompressed_bytes", MAX_DECOMPRESSED_BYTES),
    RejectReason.TOO_MANY_RECORDS: ("max_records_per_file", MAX_RECORDS_PER_ZIPCODE),
}


def _over_own_cap(
    decoded: DecodedFile | Rejection, key: str, settings: S3Settings
) -> DecodedFile | Rejection:
    """``decoded``, unless it is a file refused only by a cap this validator set lower.

    Miners upload up to the network's limits (``config/limits.py``); a file
    between a validator's lower cap and those limits may be honest, so it is
    no evidence: ``StorageUnavailable``, as when S3 cannot say.
    """
    if isinstance(decoded, Rejection) and decoded.reason in _CAPS:
        name, network = _CAPS[decoded.reason]
        if getattr(settings, name) < network:
            raise StorageUnavailable(
                f"{key}: over this validator's {name} ({getattr(settings, name)}), which is"
                f" below the network's {network}: no evidence"
            )
    return decoded


async def verify_manifests(
    reader: BucketReader,
    seed: bytes,
    manifests: Mapping[str, Sequence[Manifest]],
    settings: S3Settings,
    *,
    expected_epoch: int | None = None,
    expected_nonce: str | None = None,
    per_miner: int | None = None,
    concurrency: int | None = None,
) -> dict[str, ManifestVerdict]:
    """Check a seeded sample of every miner's manifest files against S3.

    Takes the reader (it fetches, and lists to corroborate a 404), the
    cycle's block seed (shared by validators), the manifests by miner
    hotkey, the settings (prefix, caps, sample size), the epoch and nonce
    the files must carry when known, and optional overrides of the sample
    size and concurrency. Returns a verdict for every hotkey in
    ``manifests``. Never raises on what miners or S3 do.
    """
    samples = select_manifest_samples(
        verification_seed(seed),
        manifests,
        settings.verify_files_per_miner if per_miner is None else per_miner,
    )
    semaphore = asyncio.Semaphore(concurrency or settings.eval_concurrency)

    async def check(sample: ManifestSample) -> FileCheck:
        bad_key = check_key(sample, prefix=settings.prefix, expected_epoch=expected_epoch)
        if bad_key is not None:
            return bad_key
        try:
            async with semaphore:
                decoded, _ = await fetch_decoded(
                    reader, sample.key, settings, zipcode=sample.entry.zipcode
                )
        except StorageUnavailable as exc:
            return unavailable(sample, str(exc))
        except FolderPadded as exc:
            return folder_padded(sample, str(exc))
        return check_sample(sample, decoded, expected_nonce=expected_nonce)

    async def miner(hotkey: str, chosen: list[ManifestSample]) -> ManifestVerdict:
        checks = list(await asyncio.gather(*(check(s) for s in chosen)))
        verdict = combine(hotkey, checks)
        for c in checks:
            if c.status is VerdictStatus.MISMATCH:
                logger.warning(
                    "miner %s: manifest file %s fails %s: %s",
                    hotkey,
                    c.sample.key[:200],
                    c.evidence.get("check"),
                    {k: v for k, v in c.evidence.items() if k not in ("check", "key")},
                )
        if verdict.status is VerdictStatus.UNAVAILABLE:
            logger.info(
                "miner %s: %d of %d manifest files unavailable from S3: no evidence",
                hotkey,
                verdict.unavailable,
                len(checks),
            )
        return verdict

    results = await asyncio.gather(*(miner(hk, chosen) for hk, chosen in samples.items()))
    verdicts = {v.hotkey: v for v in results}
    counts: dict[str, int] = {}
    for v in verdicts.values():
        counts[v.status.value] = counts.get(v.status.value, 0) + 1
    logger.info("manifest verification of %d miners: %s", len(verdicts), counts)
    return verdicts
