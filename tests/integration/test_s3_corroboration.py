"""A missing S3 object counts against a miner only when corroborated; a padded folder counts.

Guards against issue 15's "a single missing S3 object counts as fabrication
with no corroboration": one 404 from a failing node flagged an honest miner
for fabrication. Now a 404 is evidence only when the object is missing again
after ``missing_recheck_s`` and the miner's folder, listed in full, does not
hold it. Against a real S3 server (moto) behind a proxy that can lie like a
failing node: a 404 the listing contradicts, or a 404 while listings fail, is
"unavailable" (no evidence; the miner's score is left as it was); a 404 that
goes away is read; an object that is really not there is a mismatch. And
issue 15's padding hole: a folder padded past the listing cap is evidence
against its miner (``folder_padded``), not "unavailable".
"""

from __future__ import annotations

import time

import pytest

from common.s3_layout import build_key
from consensus.s3_audit import VerdictStatus, apply_s3_verdicts
from consensus.types import CycleResult
from tests.integration.s3_fault_proxy import FaultProxy
from tests.integration.s3_server import S3Server
from tests.unit.s3_builders import (
    NONCE,
    SOURCE,
    encoded,
    hotkey,
    manifest,
    manifest_entry,
    zipcodes,
)
from vali_utils.s3_audit import verify_manifests
from vali_utils.s3_evaluation import evaluate_miners
from vali_utils.s3_reader import DirectS3Reader

pytestmark = pytest.mark.integration

EPOCH = 7
SEED = b"block-seed-of-epoch-7"
ZIPS = zipcodes(3)
RECHECK_S = 0.2


def upload(server: S3Server, bucket: str, miner: str, *, skip: int | None = None):
    """An honest miner's manifest of three files; the file at ``skip`` never reached S3."""
    client = server.client()
    entries = []
    for i, z in enumerate(ZIPS):
        file = encoded(z)
        entry = manifest_entry(miner, EPOCH, z, file)
        if i != skip:
            client.put_object(Bucket=bucket, Key=entry.files[0].key, Body=file.body)
        entries.append(entry)
    return manifest(miner, EPOCH, entries)


async def verify_through(endpoint: str, server: S3Server, bucket: str, manifests, **overrides):
    settings = server.settings(
        bucket,
        endpoint_url=endpoint,
        missing_recheck_s=RECHECK_S,
        verify_files_per_miner=3,
        call_timeout_s=5.0,
        **overrides,
    )
    reader = DirectS3Reader.from_settings(settings)
    try:
        return await verify_manifests(
            reader, SEED, manifests, settings, expected_epoch=EPOCH, expected_nonce=NONCE
        )
    finally:
        await reader.close()


def excused_and_unflagged(verdicts) -> None:
    result = CycleResult(zipcodes={}, miners={}, flags=[], captured_groups=[], dropped={})
    after = apply_s3_verdicts(result, verdicts)
    assert after.flags == [] and after.excused == frozenset(verdicts)


@pytest.mark.asyncio
async def test_a_404_the_listing_contradicts_is_no_evidence(s3):
    bucket = s3.create_bucket()
    miner = hotkey(1)
    manifests = {miner: [upload(s3, bucket, miner)]}
    proxy = await FaultProxy.start(s3.endpoint)
    try:
        proxy.missing_gets = True  # a failing node: every GET 404s, the objects are fine
        verdicts = await verify_through(proxy.endpoint, s3, bucket, manifests)
    finally:
        await proxy.stop()
    assert verdicts[miner].status is VerdictStatus.UNAVAILABLE, verdicts[miner]
    assert verdicts[miner].unavailable == 3
    assert all(count == 2 for count in proxy.gets.values())  # fetched, then again
    assert proxy.lists >= 1  # and the listing, which holds the keys, was read
    excused_and_unflagged(verdicts)


@pytest.mark.asyncio
async def test_a_404_while_the_listing_fails_is_no_evidence(s3):
    bucket = s3.create_bucket()
    miner = hotkey(2)
    manifests = {miner: [upload(s3, bucket, miner, skip=0)]}  # one file really missing
    proxy = await FaultProxy.start(s3.endpoint)
    try:
        proxy.missing_gets = True
        proxy.failing_lists = True  # nothing can corroborate the 404s
        verdicts = await verify_through(proxy.endpoint, s3, bucket, manifests)
    finally:
        await proxy.stop()
    assert verdicts[miner].status is VerdictStatus.UNAVAILABLE, verdicts[miner]
    excused_and_unflagged(verdicts)


@pytest.mark.asyncio
async def test_a_404_that_goes_away_is_read_on_the_second_try(s3):
    bucket = s3.create_bucket()
    miner = hotkey(3)
    manifests = {miner: [upload(s3, bucket, miner)]}
    proxy = await FaultProxy.start(s3.endpoint)
    try:
        proxy.missing_first_get = True
        started = time.monotonic()
        verdicts = await verify_through(proxy.endpoint, s3, bucket, manifests)
        elapsed = time.monotonic() - started
    finally:
        await proxy.stop()
    assert verdicts[miner].status is VerdictStatus.OK, verdicts[miner]
    assert verdicts[miner].checked == 3
    assert proxy.lists == 0  # the second GET answered: no listing needed
    assert elapsed < RECHECK_S + 3.0  # the three rechecks wait side by side


@pytest.mark.asyncio
async def test_a_corroborated_missing_object_is_evidence(s3):
    bucket = s3.create_bucket()
    miner = hotkey(4)
    manifests = {miner: [upload(s3, bucket, miner, skip=1)]}
    verdicts = await verify_through(s3.endpoint, s3, bucket, manifests)
    verdict = verdicts[miner]
    assert verdict.status is VerdictStatus.MISMATCH, verdict
    assert [e["check"] for e in verdict.evidence] == ["object_missing"]
    assert verdict.evidence[0]["zipcode"] == ZIPS[1]


@pytest.mark.asyncio
async def test_a_folder_padded_past_the_listing_cap_is_evidence(s3):
    bucket = s3.create_bucket()
    miner = hotkey(5)
    client = s3.client()
    # The manifest points at a file that is not there, in a folder padded with 30
    # junk keys: a listing capped at 25 cannot show it is absent.
    body = encoded(ZIPS[0]).body
    for i in range(30):
        key = build_key("data", miner, EPOCH, SOURCE, f"{10000 + i:05d}", f"{i:064x}")
        client.put_object(Bucket=bucket, Key=key, Body=body)
    manifests = {miner: [upload(s3, bucket, miner, skip=2)]}
    verdicts = await verify_through(s3.endpoint, s3, bucket, manifests, max_keys_per_miner=25)
    verdict = verdicts[miner]
    assert verdict.status is VerdictStatus.MISMATCH, verdict
    assert [e["check"] for e in verdict.evidence] == ["folder_padded"]
    assert verdict.evidence[0]["zipcode"] == ZIPS[2]
    after = apply_s3_verdicts(
        CycleResult(zipcodes={}, miners={}, flags=[], captured_groups=[], dropped={}), verdicts
    )
    assert [f.hotkey for f in after.flags] == [miner] and not after.excused


@pytest.mark.asyncio
async def test_a_padded_folder_scores_zero_in_the_s3_evaluation(s3):
    bucket = s3.create_bucket()
    miner, honest = hotkey(6), hotkey(7)
    client = s3.client()
    body = encoded(ZIPS[0]).body
    for i in range(30):
        key = build_key("data", miner, EPOCH, SOURCE, f"{10000 + i:05d}", f"{i:064x}")
        client.put_object(Bucket=bucket, Key=key, Body=body)
    for z in ZIPS:
        file = encoded(z, scraped_at=time.time() - 1800)
        client.put_object(Bucket=bucket, Key=manifest_entry(honest, EPOCH, z, file).files[0].key,
                          Body=file.body)  # fmt: skip
    settings = s3.settings(bucket, max_keys_per_miner=25, eval_files_per_miner=3)
    reader = DirectS3Reader.from_settings(settings)
    try:
        results = await evaluate_miners(
            reader,
            [miner, honest],
            epoch=EPOCH,
            seed=SEED,
            now=time.time(),
            assignments={m: {SOURCE: ZIPS} for m in (miner, honest)},
            last_consensus={},
            settings=settings,
            expected_nonce=NONCE,
        )
    finally:
        await reader.close()
    assert results[miner].reward == 0.0
    assert results[miner].components["folder"] == 0.0
    assert "listing_capped: 1" in results[miner].reasons
    assert results[honest].reward == pytest.approx(1.0)
    assert "folder" not in results[honest].components
