"""Set-ups the S3 integration tests share: honest uploads, padded folders, the honest
consensus, and one S3 evaluation round.

Every file here is encoded with the epoch nonce of ``tests.unit.s3_builders``
and put under the key the manifest rules give it (``common.s3_layout``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from common.manifest import Manifest
from common.s3_files import EncodedFile, encode_zipcode_file
from common.s3_layout import build_key
from config.storage import S3Settings
from consensus.answers import hash_to_int
from consensus.s3_evaluation import S3Evaluation
from tests.unit.s3_builders import SOURCE, WORLD, encoded, manifest, manifest_entry
from vali_utils.s3_evaluation import evaluate_miners


def put_file(
    client,
    bucket: str,
    miner: str,
    epoch: int,
    zipcode: str,
    file: EncodedFile,
    *,
    body: bytes | None = None,
) -> str:
    """``file`` as ``miner``'s upload for ``zipcode``; ``body``, when given, is stored
    under the file's key instead of its bytes (a bomb, a lie). Returns the key."""
    key = build_key("data", miner, epoch, SOURCE, zipcode, file.content_hash)
    client.put_object(Bucket=bucket, Key=key, Body=file.body if body is None else body)
    return key


def put_honest(
    client,
    bucket: str,
    miners: Sequence[str],
    zips: Sequence[str],
    *,
    epoch: int,
    scraped_at: float,
) -> None:
    """Every miner's honest file of every zipcode in ``zips``, scraped at ``scraped_at``."""
    for miner in miners:
        for z in zips:
            put_file(client, bucket, miner, epoch, z, encoded(z, scraped_at=scraped_at))


def upload_with_manifest(
    client, bucket: str, miner: str, zips: Sequence[str], *, epoch: int, missing: str | None = None
) -> Manifest:
    """``miner``'s honest files of ``zips`` and the manifest that names them; the file of
    zipcode ``missing`` never reached S3 (the manifest still names it)."""
    entries = []
    for z in zips:
        file = encoded(z)
        if z != missing:
            put_file(client, bucket, miner, epoch, z, file)
        entries.append(manifest_entry(miner, epoch, z, file))
    return manifest(miner, epoch, entries)


def pad_folder(client, bucket: str, miner: str, epoch: int, count: int, body: bytes) -> None:
    """``count`` junk objects in ``miner``'s folder of ``epoch``, under made-up zipcodes
    (10000 on) and content hashes, each holding ``body``."""
    for i in range(count):
        key = build_key("data", miner, epoch, SOURCE, f"{10000 + i:05d}", f"{i:064x}")
        client.put_object(Bucket=bucket, Key=key, Body=body)


def honest_consensus(zips: Sequence[str]) -> dict:
    """The last consensus an honest network reached on ``zips``: source -> zipcode ->
    zpid -> ``hash_to_int(record_hash)`` of the synthetic world's listings."""
    truth = {}
    for z in zips:
        file = encode_zipcode_file(z, WORLD.listings(z))
        truth[z] = {int(zpid): hash_to_int(h) for zpid, h in file.records}
    return {SOURCE: truth}


async def evaluate_round(
    reader,
    miners: Sequence[str],
    *,
    epoch: int,
    seed: bytes,
    settings: S3Settings,
    assigned: Sequence[str] = (),
    **options,
) -> dict[str, S3Evaluation]:
    """One S3 evaluation round of ``miners``'s uploads of ``epoch``, each miner assigned
    the zipcodes ``assigned`` (none: no assignments). ``options`` go to
    ``evaluate_miners``; ``now`` is the time of the call and ``last_consensus``
    empty unless given."""
    options.setdefault("now", time.time())
    options.setdefault("last_consensus", {})
    assignments = {m: {SOURCE: list(assigned)} for m in miners} if assigned else {}
    return await evaluate_miners(
        reader,
        list(miners),
        epoch=epoch,
        seed=seed,
        assignments=assignments,
        settings=settings,
        **options,
    )
