"""The one boto3 boundary: clients built from S3Settings, errors sorted once, pages read once."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ParamValidationError

from common.s3_client import (
    PROBE_TIMEOUT_S,
    BucketCalls,
    S3Outcome,
    classify,
    listed_objects,
    make_client,
    make_probe_client,
    next_token,
)
from config.storage import S3Settings
from scraping.upload_targets import DirectS3Target, UploadError
from vali_utils.s3_reader import ObjectMissing, StorageUnavailable, _translate

pytestmark = pytest.mark.unit

SETTINGS = S3Settings(
    endpoint_url="http://127.0.0.1:9",
    bucket="subnet-data",
    access_key_id="k",
    secret_access_key="s",
    connect_timeout_s=3.0,
    read_timeout_s=7.0,
    max_attempts=5,
)


def client_error(code: str, status: int) -> ClientError:
    return ClientError(
        {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "GetObject"
    )


def test_clients_take_timeouts_retries_and_addressing_from_settings() -> None:
    config = make_client(SETTINGS, pool=3).meta.config
    assert (config.connect_timeout, config.read_timeout) == (3.0, 7.0)
    assert config.retries["total_max_attempts"] == 6  # botocore: retries + the first call
    assert config.max_pool_connections == 3
    assert config.s3 == {"addressing_style": "path"}  # custom endpoints want path-style keys
    assert make_client(S3Settings(bucket="subnet-data")).meta.config.s3 is None  # AWS picks


def test_probe_client_answers_fast_and_once() -> None:
    config = make_probe_client(SETTINGS).meta.config
    assert config.connect_timeout == min(3.0, PROBE_TIMEOUT_S)
    assert config.read_timeout == PROBE_TIMEOUT_S
    assert config.retries["total_max_attempts"] == 2


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        (client_error("NoSuchKey", 404), S3Outcome.MISSING),
        (client_error("", 404), S3Outcome.MISSING),
        (client_error("NoSuchBucket", 404), S3Outcome.UNAVAILABLE),  # our bucket, not the object
        (client_error("AccessDenied", 403), S3Outcome.UNAVAILABLE),  # our credentials
        (client_error("SlowDown", 503), S3Outcome.UNAVAILABLE),
        (client_error("EntityTooLarge", 400), S3Outcome.REFUSED),
        (client_error("MissingContentLength", 411), S3Outcome.REFUSED),
        (EndpointConnectionError(endpoint_url="http://127.0.0.1:9"), S3Outcome.UNAVAILABLE),
        (ConnectionResetError("reset"), S3Outcome.UNAVAILABLE),
    ],
)
def test_every_boto_error_has_one_outcome(error: Exception, outcome: S3Outcome) -> None:
    failure = classify(error)
    assert failure is not None and failure.outcome is outcome


def test_a_bug_is_not_an_s3_failure() -> None:
    assert classify(KeyError("Body")) is None
    assert classify(ParamValidationError(report="bad")).outcome is S3Outcome.UNAVAILABLE


def test_reader_and_uploader_read_the_same_outcomes() -> None:
    """A 404 is a missing object to the validator; a 400 is permanent to the miner's uploader."""
    assert isinstance(_translate(client_error("NoSuchKey", 404), "get k"), ObjectMissing)
    refused = _translate(client_error("EntityTooLarge", 400), "get k")
    assert isinstance(refused, StorageUnavailable) and "EntityTooLarge" in str(refused)
    bug = KeyError("x")
    assert _translate(bug, "get k") is bug

    class Refusing:
        def put_object(self, **_: object) -> None:
            raise client_error("EntityTooLarge", 400)

    class Throttled:
        def put_object(self, **_: object) -> None:
            raise client_error("SlowDown", 503)

    def put(client: object) -> UploadError:
        calls = BucketCalls(client, "b", "data", call_timeout_s=5, threads=1, name="t")
        try:
            with pytest.raises(UploadError) as caught:
                DirectS3Target(calls)._put("data/k", b"x")
            return caught.value
        finally:
            asyncio.run(calls.close())

    assert put(Refusing()).permanent
    assert not put(Throttled()).permanent


def test_listing_pages_are_read_once() -> None:
    when = datetime(2024, 5, 1, 12, tzinfo=UTC)
    page = {
        "Contents": [
            {"Key": "a", "Size": 3, "LastModified": when},
            {"Key": 7, "Size": 3},  # not a key: dropped
            {"Key": "b", "Size": 5},
            {"Key": "c", "Size": 1},
        ],
        "IsTruncated": True,
        "NextContinuationToken": "t",
    }
    objects = listed_objects(page, 3)
    assert [(o.key, o.size, o.last_modified) for o in objects] == [
        ("a", 3, when.timestamp()),
        ("b", 5, None),
    ]
    assert next_token(page) == "t"
    assert next_token({**page, "IsTruncated": False}) is None


def test_bucket_calls_time_out_as_a_whole() -> None:
    release = threading.Event()

    async def main() -> None:
        calls = BucketCalls(object(), "b", "data", call_timeout_s=0.2, threads=1, name="t")
        try:
            with pytest.raises(TimeoutError):
                await calls.run(lambda: release.wait(5))
        finally:
            release.set()
            await calls.close()

    asyncio.run(main())


def test_no_bucket_is_a_setting_error_naming_its_use() -> None:
    with pytest.raises(ValueError, match="direct uploads need a bucket"):
        DirectS3Target.from_settings(S3Settings())
