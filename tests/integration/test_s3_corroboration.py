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

from consensus.s3_audit import VerdictStatus, apply_s3_verdicts
from consensus.types import CycleResult
from tests.integration import s3_scenarios
from tests.integration.s3_fault_proxy import FaultProxy
from tests.integration.s3_server import S3Server
from tests.unit.s3_builders import NONCE, encoded, hotkey, zipcodes
from vali_utils.s3_audit import verify_manifests
from vali_utils.s3_reader import DirectS3Reader

pytestmark = pytest.mark.integration

EPOCH = 7
SEED = b"block-seed-of-epoch-7"
ZIPS = zipcodes(3)
RECHECK_S = 0.2


def upload(server: S3Server, bucket: str, miner: str, *, missing: str | None = None):
    """An honest manifest of three files; the file of zipcode ``missing`` never reached S3."""
    return s3_scenarios.upload_with_manifest(
        server.client(), bucket, miner, ZIPS, epoch=EPOCH, missing=missing
    )


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


def assert_no_evidence(verdicts, miner: str) -> None:
    """``miner``'s verdict is "unavailable": the cycle flags nobody and excuses the miner."""
    assert verdicts[miner].status is VerdictStatus.UNAVAILABLE, verdicts[miner]
    result = CycleResult(zipcodes={}, miners={}, flags=[], captured_groups=[], dropped={})
    after = apply_s3_verdicts(result, verdicts)
    assert after.flags == [] and after.excused == frozenset(verdicts)


async def verify_behind_a_proxy(
    s3: S3Server,
    miner: str,
    *,
    missing: str | None = None,
    missing_gets=False,
    missing_first_get=False,
    failing_lists=False,
):
    """``miner``'s honest manifest verified through a FaultProxy failing as told
    (see ``tests.integration.s3_fault_proxy``): the verdicts, the proxy (what it
    was asked) and how long the verification took."""
    bucket = s3.create_bucket()
    manifests = {miner: [upload(s3, bucket, miner, missing=missing)]}
    proxy = await FaultProxy.start(s3.endpoint)
    proxy.missing_gets, proxy.missing_first_get = missing_gets, missing_first_get
    proxy.failing_lists = failing_lists
    try:
        started = time.monotonic()
        verdicts = await verify_through(proxy.endpoint, s3, bucket, manifests)
        return verdicts, proxy, time.monotonic() - started
    finally:
        await proxy.stop()


@pytest.mark.asyncio
async def test_a_404_the_listing_contradicts_is_no_evidence(s3):
    miner = hotkey(1)
    # A failing node: every GET 404s, the objects are fine.
    verdicts, proxy, _ = await verify_behind_a_proxy(s3, miner, missing_gets=True)
    assert_no_evidence(verdicts, miner)
    assert verdicts[miner].unavailable == 3
    assert all(count == 2 for count in proxy.gets.values())  # fetched, then again
    assert proxy.lists >= 1  # and the listing, which holds the keys, was read


@pytest.mark.asyncio
async def test_a_404_while_the_listing_fails_is_no_evidence(s3):
    miner = hotkey(2)
    verdicts, _, _ = await verify_behind_a_proxy(
        s3,
        miner,
        missing=ZIPS[0],  # one file really missing
        missing_gets=True,
        failing_lists=True,  # nothing can corroborate the 404s
    )
    assert_no_evidence(verdicts, miner)


@pytest.mark.asyncio
async def test_a_404_that_goes_away_is_read_on_the_second_try(s3):
    miner = hotkey(3)
    verdicts, proxy, elapsed = await verify_behind_a_proxy(s3, miner, missing_first_get=True)
    assert verdicts[miner].status is VerdictStatus.OK, verdicts[miner]
    assert verdicts[miner].checked == 3
    assert proxy.lists == 0  # the second GET answered: no listing needed
    assert elapsed < RECHECK_S + 3.0  # the three rechecks wait side by side


@pytest.mark.asyncio
async def test_a_corroborated_missing_object_is_evidence(s3):
    bucket = s3.create_bucket()
    miner = hotkey(4)
    manifests = {miner: [upload(s3, bucket, miner, missing=ZIPS[1])]}
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
    s3_scenarios.pad_folder(client, bucket, miner, EPOCH, 30, encoded(ZIPS[0]).body)
    manifests = {miner: [upload(s3, bucket, miner, missing=ZIPS[2])]}
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
    s3_scenarios.pad_folder(client, bucket, miner, EPOCH, 30, encoded(ZIPS[0]).body)
    s3_scenarios.put_honest(
        client, bucket, [honest], ZIPS, epoch=EPOCH, scraped_at=time.time() - 1800
    )
    settings = s3.settings(bucket, max_keys_per_miner=25, eval_files_per_miner=3)
    reader = DirectS3Reader.from_settings(settings)
    try:
        results = await s3_scenarios.evaluate_round(
            reader, [miner, honest], epoch=EPOCH, seed=SEED, settings=settings, assigned=ZIPS,
            expected_nonce=NONCE,
        )  # fmt: skip
    finally:
        await reader.close()
    assert results[miner].reward == 0.0
    assert results[miner].components["folder"] == 0.0
    assert "listing_capped: 1" in results[miner].reasons
    assert results[honest].reward == pytest.approx(1.0)
    assert "folder" not in results[honest].components
