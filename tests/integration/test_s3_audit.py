"""Consensus-cycle manifest verification against a real S3 protocol server (moto).

A manifest that lies about a hash, a count or a record is caught with
evidence; truncated, oversized and gzip-bomb objects are rejected with
bounded memory; an S3 outage gives "unavailable" (no evidence), leaves the
affected miners' scores as they were, and the validator's reader works again
once S3 is back.
"""

from __future__ import annotations

import asyncio
import json
import os
import tracemalloc

import aiohttp
import pytest

from common.manifest import Manifest, ZipcodeManifest
from config.limits import MAX_FILE_BYTES
from consensus.s3_audit import VerdictStatus, apply_s3_verdicts, rejected_hotkeys
from consensus.scoring import MinerScore, ScoringState, apply_cycle
from consensus.types import CycleResult
from tests.integration.s3_scenarios import put_file, upload_with_manifest
from tests.integration.s3_server import S3Server
from tests.unit.consensus_builders import answered_cycle
from tests.unit.s3_builders import (
    NONCE,
    encoded,
    gzip_bomb,
    hotkey,
    manifest,
    manifest_entry,
    zipcodes,
)
from vali_utils.s3_audit import verify_manifests
from vali_utils.s3_reader import DirectS3Reader, PresignedReader

pytestmark = pytest.mark.integration

EPOCH = 7
SEED = b"block-seed-of-epoch-7"
ZIPS = zipcodes(6)


def upload_honest(server: S3Server, bucket: str, miner: str, zips=ZIPS[:3]) -> Manifest:
    return upload_with_manifest(server.client(), bucket, miner, zips, epoch=EPOCH)


def lie(entry: ZipcodeManifest, **changes) -> ZipcodeManifest:
    data = json.loads(entry.model_dump_json())
    if "records" in changes:
        data["records"] = changes.pop("records")(data["records"])
        data["record_count"] = len(data["records"])
    data["files"][0] |= changes
    return ZipcodeManifest.model_validate(data)


async def verify(reader, manifests, settings, **kwargs):
    return await verify_manifests(
        reader, SEED, manifests, settings, expected_epoch=EPOCH, expected_nonce=NONCE, **kwargs
    )


@pytest.mark.asyncio
async def test_honest_and_lying_manifests(s3):
    bucket = s3.create_bucket()
    settings = s3.settings(bucket)
    honest, hash_liar, count_liar, record_liar = (hotkey(i) for i in range(4))
    client = s3.client()
    manifests = {honest: [upload_honest(s3, bucket, honest)]}

    # The manifest names a content hash; the object under that name holds other bytes.
    real, claimed = encoded(ZIPS[0]), encoded(ZIPS[0], nonce=None)
    entry = manifest_entry(hash_liar, EPOCH, ZIPS[0], claimed)
    client.put_object(Bucket=bucket, Key=entry.files[0].key, Body=real.body)
    manifests[hash_liar] = [manifest(hash_liar, EPOCH, [entry])]

    honest_entry = upload_honest(s3, bucket, count_liar, ZIPS[:1]).zipcodes[0]
    manifests[count_liar] = [manifest(count_liar, EPOCH, [lie(honest_entry, record_count=99)])]

    honest_entry = upload_honest(s3, bucket, record_liar, ZIPS[:1]).zipcodes[0]
    boosted = lie(honest_entry, records=lambda r: [[r[0][0], "0" * 32], *r[1:]])
    manifests[record_liar] = [manifest(record_liar, EPOCH, [boosted])]

    reader = DirectS3Reader.from_settings(settings)
    try:
        verdicts = await verify(reader, manifests, settings, per_miner=3)
    finally:
        await reader.close()
    assert verdicts[honest].status is VerdictStatus.OK and verdicts[honest].checked == 3
    assert rejected_hotkeys(verdicts) == {hash_liar, count_liar, record_liar}
    assert verdicts[hash_liar].evidence[0]["check"] == "content_hash"
    assert verdicts[count_liar].evidence[0]["check"] == "record_count"
    record_evidence = verdicts[record_liar].evidence[0]
    assert record_evidence["check"] == "records"
    assert record_evidence["changed"][0]["manifest"] == "0" * 32


@pytest.mark.asyncio
async def test_missing_and_foreign_objects_are_mismatches(s3):
    bucket = s3.create_bucket()
    settings = s3.settings(bucket)
    ghost, thief, victim = hotkey(10), hotkey(11), hotkey(12)
    file = encoded(ZIPS[1])
    never_uploaded = manifest(ghost, EPOCH, [manifest_entry(ghost, EPOCH, ZIPS[1], file)])
    victims = upload_honest(s3, bucket, victim, ZIPS[1:2])
    stolen = manifest(thief, EPOCH, victims.zipcodes)  # points at the victim's object
    reader = DirectS3Reader.from_settings(settings)
    try:
        verdicts = await verify(reader, {ghost: [never_uploaded], thief: [stolen]}, settings)
    finally:
        await reader.close()
    assert verdicts[ghost].evidence[0]["check"] == "object_missing"
    assert verdicts[thief].evidence[0]["check"] == "key_mismatch"


@pytest.mark.asyncio
async def test_truncated_oversized_and_bomb_objects_are_rejected_in_bounded_memory(s3):
    bucket = s3.create_bucket()
    settings = s3.settings(bucket)  # the network's caps (config/limits.py)
    client = s3.client()
    bodies = {
        "truncated": encoded(ZIPS[0]).body[:-40],
        "oversized": os.urandom(MAX_FILE_BYTES + 512 * 1024),
        "zeros_bomb": gzip_bomb(),
        "lines_bomb": gzip_bomb(line_bytes=32 * 1024),
    }
    manifests, miners = {}, {}
    for i, (name, body) in enumerate(bodies.items()):
        miner = hotkey(20 + i)
        miners[name] = miner
        file = encoded(ZIPS[0])
        put_file(client, bucket, miner, EPOCH, ZIPS[0], file, body=body)
        manifests[miner] = [manifest(miner, EPOCH, [manifest_entry(miner, EPOCH, ZIPS[0], file)])]
    reader = DirectS3Reader.from_settings(settings)
    tracemalloc.start()
    try:
        verdicts = await verify(reader, manifests, settings)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        await reader.close()
    reasons = {name: verdicts[m].evidence[0].get("reason") for name, m in miners.items()}
    assert reasons == {
        "truncated": "truncated",
        "oversized": "too_large",
        "zeros_bomb": "line_too_long",
        "lines_bomb": "decompressed_too_large",
    }
    assert all(verdicts[m].evidence[0]["check"] == "object_rejected" for m in miners.values())
    assert peak < 48 * 1024 * 1024, peak  # capped bodies and the client, not 2 GiB inflated

    # A validator that lowered its own cap below the network's judges nobody by it:
    # a file miners may upload is no evidence, whatever this validator accepts.
    lowered = s3.settings(bucket, max_file_bytes=1536 * 1024)
    big = hotkey(29)
    file = encoded(ZIPS[0])
    put_file(client, bucket, big, EPOCH, ZIPS[0], file, body=os.urandom(2 * 1024 * 1024))
    reader = DirectS3Reader.from_settings(lowered)
    try:
        only = {big: [manifest(big, EPOCH, [manifest_entry(big, EPOCH, ZIPS[0], file)])]}
        verdicts = await verify(reader, only, lowered)
    finally:
        await reader.close()
    assert verdicts[big].status is VerdictStatus.UNAVAILABLE


def scored_cycle(*hotkeys: str) -> CycleResult:
    return answered_cycle(hotkeys, zipcodes=3, volume=150.0, earned=40.0, precision_sum=60.0)


@pytest.mark.asyncio
async def test_s3_outage_leaves_scores_unchanged_and_the_validator_running(tmp_path):
    server = S3Server.start()
    try:
        bucket = server.create_bucket()
        settings = server.settings(bucket, connect_timeout_s=0.2, call_timeout_s=3.0)
        miners = [hotkey(30 + i) for i in range(3)]
        manifests = {m: [upload_honest(server, bucket, m)] for m in miners}
        state = ScoringState(
            miners={m: MinerScore(uid=i, score=0.6, credibility=0.7) for i, m in enumerate(miners)}
        )
        reader = DirectS3Reader.from_settings(settings)
        server.kill()
        verdicts = await verify(reader, manifests, settings)
        assert {v.status for v in verdicts.values()} == {VerdictStatus.UNAVAILABLE}
        assert rejected_hotkeys(verdicts) == set()
        after = apply_cycle(state, "epoch-7", apply_s3_verdicts(scored_cycle(*miners), verdicts))
        assert after.miners == state.miners  # no evidence: nobody's score moved
        assert "epoch-7" in after.applied_cycles

        # S3 comes back (with its data): the same reader verifies again.
        await asyncio.to_thread(server.restart)
        for m in miners:
            upload_honest(server, bucket, m)
        verdicts = await verify(reader, manifests, settings)
        assert {v.status for v in verdicts.values()} == {VerdictStatus.OK}
        await reader.close()
    finally:
        server.stop()


@pytest.mark.asyncio
async def test_presigned_reads_verify_and_cap_the_size(s3):
    bucket = s3.create_bucket()
    settings = s3.settings(bucket)  # the network's caps: over them is evidence
    client = s3.client()
    honest, big = hotkey(40), hotkey(41)
    manifests = {honest: [upload_honest(s3, bucket, honest)]}
    file = encoded(ZIPS[0])
    put_file(
        client, bucket, big, EPOCH, ZIPS[0], file, body=os.urandom(MAX_FILE_BYTES + 100 * 1024)
    )
    manifests[big] = [manifest(big, EPOCH, [manifest_entry(big, EPOCH, ZIPS[0], file)])]
    calls = []

    async def read_urls(miner, epoch, max_keys, token):
        calls.append(miner)
        prefix = f"data/hotkey={miner}/epoch={epoch}/"
        page = client.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=max_keys)
        return [
            {
                "key": o["Key"],
                "size": o["Size"],
                "last_modified": o["LastModified"].isoformat(),
                "url": client.generate_presigned_url(
                    "get_object", Params={"Bucket": bucket, "Key": o["Key"]}, ExpiresIn=60
                ),
            }
            for o in page.get("Contents", [])
        ], page.get("NextContinuationToken")

    async with aiohttp.ClientSession() as session:
        reader = PresignedReader(session, read_urls, settings)
        verdicts = await verify(reader, manifests, settings, per_miner=3)
    assert verdicts[honest].status is VerdictStatus.OK and verdicts[honest].checked == 3
    assert verdicts[big].evidence[0]["reason"] == "too_large"
    assert sorted(set(calls)) == sorted({honest, big})  # one listing per miner, then cached
