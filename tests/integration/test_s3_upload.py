"""Miner uploads against a real S3 protocol server (moto) on loopback.

Direct and presigned (POST and PUT) uploads land under the layout's key with
the manifest's content hash; an uploader killed with SIGKILL in the middle
of an upload finishes every file after a restart; an S3 outage is retried
with backoff until S3 is back; attempts are bounded.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import select
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from common.manifest import Manifest, ZipcodeManifest
from common.s3_layout import ObjectKey, parse_key
from consensus.s3_audit import VerdictStatus
from scraping.upload_ledger import FAILED, PENDING, UPLOADED
from scraping.upload_targets import DirectS3Target, PresignedTarget, UploadError
from scraping.uploads import LEDGER_FILE, SPOOL_DIR, Uploader
from tests.integration.s3_server import S3Server
from tests.unit.s3_builders import NONCE, SOURCE, encoded, hotkey, records, zipcodes
from vali_utils.s3_audit import verify_manifests
from vali_utils.s3_reader import DirectS3Reader

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
HK = hotkey(1)
EPOCH = 7
ZIPS = zipcodes(8)


def objects(server: S3Server, bucket: str) -> dict[str, bytes]:
    client = server.client()
    listed = client.list_objects_v2(Bucket=bucket).get("Contents", [])
    return {o["Key"]: client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listed}


def ledger_states(workdir: Path) -> dict[str, int]:
    with sqlite3.connect(f"file:{workdir / LEDGER_FILE}?mode=ro", uri=True) as db:
        return dict(db.execute("SELECT state, COUNT(*) FROM uploads GROUP BY state").fetchall())


def fast(server: S3Server, bucket: str, **overrides):
    values = {"upload_backoff_base_s": 0.05, "upload_backoff_cap_s": 0.2} | overrides
    return server.settings(bucket, **values)


@pytest.mark.asyncio
async def test_direct_upload_lands_under_the_layout_and_feeds_the_manifest(s3, tmp_path):
    bucket = s3.create_bucket()
    settings = fast(s3, bucket)
    target = DirectS3Target.from_settings(settings)
    uploader = await Uploader.open(tmp_path, target, HK, settings)
    await uploader.start()
    try:
        pairs = [(SOURCE, z) for z in ZIPS[:4]]
        made = {
            z: await uploader.enqueue(f"epoch-{EPOCH}", SOURCE, z, records(z), NONCE)
            for z in ZIPS[:4]
        }
        assert await uploader.wait_idle(20)
        files = await uploader.manifest_files(f"epoch-{EPOCH}", [*pairs, (SOURCE, "00000")])
    finally:
        await uploader.close()
        await target.close()
    stored = objects(s3, bucket)
    assert len(stored) == 4
    for (source, zipcode), [file] in files.items():
        assert parse_key(file.key, "data") == ObjectKey(
            HK, EPOCH, source, zipcode, file.content_hash
        )
        assert hashlib.sha256(stored[file.key]).hexdigest() == file.content_hash
        assert file.content_hash == made[zipcode].content_hash
        assert file.record_count == len(made[zipcode].records) and file.size == len(
            stored[file.key]
        )
    assert set(files) == set(pairs)
    assert not any((tmp_path / SPOOL_DIR).iterdir())  # uploaded files leave the spool

    # The manifest a miner answers collect with verifies against what it uploaded.
    entries = [
        ZipcodeManifest(
            zipcode=z,
            source=s,
            record_count=len(made[z].records),
            records=list(made[z].records),
            files=files[(s, z)],
        )
        for s, z in pairs
    ]
    answer = Manifest(
        epoch_id=f"epoch-{EPOCH}", epoch_nonce=NONCE, miner_hotkey=HK, zipcodes=entries
    )
    reader = DirectS3Reader.from_settings(settings)
    try:
        verdicts = await verify_manifests(
            reader, b"seed", {HK: [answer]}, settings, expected_epoch=EPOCH, per_miner=4
        )
    finally:
        await reader.close()
    assert verdicts[HK].status is VerdictStatus.OK and verdicts[HK].checked == 4


def presigner(server: S3Server, bucket: str, *, method: str, seen: list):
    client = server.client()

    async def get_url(request):
        seen.append(dict(request))
        key = ObjectKey(
            HK, request["epoch_id"], request["source"], request["zipcode"], request["content_hash"]
        ).key("data")
        if method == "POST":
            post = client.generate_presigned_post(
                bucket, key, Conditions=[["content-length-range", 1, 1 << 20]], ExpiresIn=60
            )
            return {"method": "POST", "url": post["url"], "fields": post["fields"], "key": key}
        url = client.generate_presigned_url(
            "put_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=60
        )
        return {"method": "PUT", "url": url, "key": key}

    return get_url


@pytest.mark.asyncio
@pytest.mark.parametrize("method", ["POST", "PUT"])
async def test_presigned_uploads(s3, tmp_path, method):
    bucket = s3.create_bucket()
    settings = fast(s3, bucket, upload_mode="presigned")
    seen: list = []
    async with aiohttp.ClientSession() as session:
        target = PresignedTarget(session, presigner(s3, bucket, method=method, seen=seen))
        uploader = await Uploader.open(tmp_path, target, HK, settings)
        await uploader.start()
        try:
            file = await uploader.enqueue(EPOCH, SOURCE, ZIPS[0], records(ZIPS[0]), NONCE)
            assert await uploader.wait_idle(20)
        finally:
            await uploader.close()
    [(key, body)] = objects(s3, bucket).items()
    assert body == file.body and key.endswith(f"/{file.content_hash}.jsonl.gz")
    assert seen == [
        {
            "epoch_id": EPOCH,
            "source": SOURCE,
            "zipcode": ZIPS[0],
            "content_hash": file.content_hash,
            "size_bytes": len(file.body),
        }
    ]


@pytest.mark.asyncio
async def test_a_grant_for_another_key_is_refused(s3):
    bucket = s3.create_bucket()

    async def wrong(request):
        return {
            "url": s3.endpoint,
            "key": ObjectKey(hotkey(2), EPOCH, SOURCE, ZIPS[0], "0" * 64).key("data"),
        }

    file = encoded(ZIPS[0])
    async with aiohttp.ClientSession() as session:
        target = PresignedTarget(session, wrong)
        with pytest.raises(UploadError) as caught:
            await target.put(ObjectKey(HK, EPOCH, SOURCE, ZIPS[0], file.content_hash), file.body)
    assert caught.value.permanent
    assert objects(s3, bucket) == {}


def test_upload_resumes_after_kill_mid_upload(s3, tmp_path):
    """SIGKILL while a put is in flight: after a restart every file is in S3, none twice."""
    bucket = s3.create_bucket()
    zips = ZIPS[:8]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-m", "tests.integration.s3_upload_child", str(tmp_path), s3.endpoint]
    child = subprocess.Popen(
        [*argv, bucket, HK, ",".join(zips), "0.5"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        ready, _, _ = select.select([child.stdout], [], [], 30)  # never block on a stuck child
        assert ready and child.stdout.readline().strip() == "enqueued"
        deadline = time.monotonic() + 30
        while ledger_states(tmp_path).get(UPLOADED, 0) < 2:  # another process: poll its ledger
            assert time.monotonic() < deadline and child.poll() is None
            time.sleep(0.05)
        time.sleep(0.2)  # into the next put's 0.5 s hold
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    before = ledger_states(tmp_path)
    assert before.get(PENDING, 0) >= 1 and before.get(UPLOADED, 0) >= 2
    assert len(objects(s3, bucket)) == before[UPLOADED]

    async def resume() -> dict:
        settings = fast(s3, bucket)
        target = DirectS3Target.from_settings(settings)
        uploader = await Uploader.open(tmp_path, target, HK, settings)
        await uploader.start()
        try:
            assert await uploader.wait_idle(20)
            return await uploader.manifest_files(EPOCH, [(SOURCE, z) for z in zips])
        finally:
            await uploader.close()
            await target.close()

    files = asyncio.run(resume())
    assert ledger_states(tmp_path) == {UPLOADED: len(zips)}
    stored = objects(s3, bucket)
    assert sorted(f.key for [f] in files.values()) == sorted(stored)
    for [file] in files.values():
        assert hashlib.sha256(stored[file.key]).hexdigest() == file.content_hash
    assert not any((tmp_path / SPOOL_DIR).iterdir())


class Watched:
    """A target that reports every failure, so a test can await the first one."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.failures = 0
        self.failed = asyncio.Event()

    async def put(self, parts: ObjectKey, body: bytes) -> str:
        try:
            return await self.inner.put(parts, body)
        except Exception:
            self.failures += 1
            self.failed.set()
            raise


@pytest.mark.asyncio
async def test_s3_outage_is_retried_until_s3_is_back(tmp_path):
    server = S3Server.start()
    try:
        bucket = server.create_bucket()
        # Enough attempts to outlast a slow restart on a loaded machine.
        settings = fast(server, bucket, connect_timeout_s=0.2, upload_max_attempts=200)
        inner = DirectS3Target.from_settings(settings)
        target = Watched(inner)
        uploader = await Uploader.open(tmp_path, target, HK, settings)
        server.kill()
        await uploader.start()
        for z in ZIPS[:3]:
            assert await uploader.enqueue(EPOCH, SOURCE, z, records(z), NONCE) is not None
        await asyncio.wait_for(target.failed.wait(), 10)
        assert ledger_states(tmp_path) == {PENDING: 3}
        await asyncio.to_thread(server.restart)
        assert await uploader.wait_idle(20)
        await uploader.close()
        await inner.close()
        assert ledger_states(tmp_path) == {UPLOADED: 3}
        assert len(objects(server, bucket)) == 3 and target.failures >= 1
    finally:
        server.stop()


@pytest.mark.asyncio
async def test_attempts_are_bounded_and_a_failed_file_is_dropped_from_the_spool(tmp_path, s3):
    class Refusing:
        async def put(self, parts, body):
            raise UploadError("HTTP 503: slow down")

    settings = fast(s3, "unused-bucket", upload_max_attempts=3, upload_backoff_base_s=0.01)
    uploader = await Uploader.open(tmp_path, Refusing(), HK, settings)
    await uploader.start()
    try:
        await uploader.enqueue(EPOCH, SOURCE, ZIPS[0], records(ZIPS[0]), NONCE)
        assert await uploader.wait_idle(10)
        assert await uploader.manifest_files(EPOCH, [(SOURCE, ZIPS[0])]) == {}
        assert await uploader.enqueue(EPOCH, "NOT_A_SOURCE", ZIPS[0], records(ZIPS[0])) is None
        assert await uploader.enqueue("yesterday", SOURCE, ZIPS[0], records(ZIPS[0])) is None
    finally:
        await uploader.close()
    assert ledger_states(tmp_path) == {FAILED: 1}
    with sqlite3.connect(tmp_path / LEDGER_FILE) as db:
        assert db.execute("SELECT attempts FROM uploads").fetchone() == (3,)
    assert not any((tmp_path / SPOOL_DIR).iterdir())
