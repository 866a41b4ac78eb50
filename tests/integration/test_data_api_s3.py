"""The Data API's S3 side against a real S3 protocol server (moto) on loopback.

A miner's presigned upload can only land under its own hotkey's prefix, in
the current epoch, for a zipcode of the block; validators read miners' files
through presigned GETs, page by page, and only once the epoch's deadline has
passed (commit, then reveal: before it, another miner's files could be copied).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json

import aiohttp
import pytest

from common.data_api_models import ZipcodeBlock
from tests.integration.data_api_harness import (
    BUCKET,
    EPOCH_S,
    Subnet,
    assert_json_error,
    call,
    gateway,
    make_subnet,
    model,
    post_presigned,
    running,
    upload_request,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def subnet(tmp_path_factory) -> Subnet:
    return make_subnet(tmp_path_factory.mktemp("data-api-s3"))


def test_miners_upload_only_under_their_own_prefix(subnet, database, s3_endpoint):
    miner = subnet.people["miner"]
    data = b"gzip bytes of a zipcode file"
    clock = subnet.clock(into_epoch_s=60)

    async def scenario():
        async with (
            running(subnet, database, clock, s3=s3_endpoint) as api,
            aiohttp.ClientSession() as s,
        ):
            status, payload, _ = await call(
                s, api, subnet.people["validator"], "GET", "/v1/epochs/current"
            )
            block = ZipcodeBlock.model_validate(payload)
            zipcode = block.zipcodes()[0]
            body = model(upload_request(subnet.epoch, zipcode, data))
            status, upload, _ = await call(s, api, miner, "POST", "/v1/s3/upload-url", body)
            assert status == 200, upload
            digest = hashlib.sha256(data).hexdigest()
            key = (
                f"data/hotkey={miner.hotkey}/epoch={subnet.epoch}/source=ZILLOW_SOLD/"
                f"zipcode={zipcode}/{digest}.jsonl.gz"
            )
            assert upload["key"] == key
            assert upload["epoch_nonce"] == block.nonce
            assert upload["max_bytes"] == len(data)
            # The signed policy pins the key, the size and the nonce: real S3 enforces it.
            policy = json.loads(base64.b64decode(upload["fields"]["policy"]))
            conditions = policy["conditions"]
            assert {"key": key} in conditions
            assert ["content-length-range", 1, len(data)] in conditions
            assert {"x-amz-meta-epoch-nonce": block.nonce} in conditions
            assert await post_presigned(s, upload, data) == 204
            head = gateway(s3_endpoint).client.head_object(Bucket=BUCKET, Key=key)
            assert head["Metadata"]["epoch-nonce"] == block.nonce
            assert head["Metadata"]["miner-hotkey"] == miner.hotkey

            # No way to name another prefix, epoch or zipcode.
            refusals = [
                (
                    json.dumps(json.loads(body) | {"key": "data/hotkey=x/evil"}).encode(),
                    422,
                    "invalid_body",
                ),
                (
                    json.dumps(
                        json.loads(body) | {"hotkey": subnet.people["miner2"].hotkey}
                    ).encode(),
                    422,
                    "invalid_body",
                ),
                (model(upload_request(subnet.epoch - 1, zipcode, data)), 409, "wrong_epoch"),
                (model(upload_request(subnet.epoch + 1, zipcode, data)), 409, "wrong_epoch"),
                (model(upload_request(subnet.epoch, "99999", data)), 403, "zipcode_not_in_block"),
                (
                    model(upload_request(subnet.epoch, zipcode, data, size_bytes=2 * 1024 * 1024)),
                    422,
                    "too_large",
                ),
                (body.replace(b"ZILLOW_SOLD", b"REDFIN"), 422, "invalid_body"),
                (body.replace(digest.encode(), b"../" * 21 + b"x"), 422, "invalid_body"),
            ]
            for raw, expected, code in refusals:
                status, payload, _ = await call(s, api, miner, "POST", "/v1/s3/upload-url", raw)
                assert status == expected, (raw[:80], payload)
                assert_json_error(status, payload, code)
            status, payload, _ = await call(
                s, api, subnet.people["stranger"], "POST", "/v1/s3/upload-url", body
            )
            assert status == 403
            clock.now = (subnet.epoch + 0.5) * EPOCH_S  # the deadline
            status, payload, _ = await call(s, api, miner, "POST", "/v1/s3/upload-url", body)
            assert status == 409
            assert_json_error(status, payload, "epoch_closed")

    asyncio.run(scenario())


def test_validators_read_a_miners_files_through_presigned_urls(subnet, database, s3_endpoint):
    miner = subnet.people["miner2"]
    files = [f"file {i} of miner2".encode() for i in range(3)]
    clock = subnet.clock(into_epoch_s=60)

    async def scenario():
        async with (
            running(subnet, database, clock, s3=s3_endpoint) as api,
            aiohttp.ClientSession() as s,
        ):
            validator = subnet.people["validator"]
            status, payload, _ = await call(s, api, validator, "GET", "/v1/epochs/current")
            zipcodes = ZipcodeBlock.model_validate(payload).zipcodes()
            keys = {}
            for data, zipcode in zip(files, zipcodes, strict=False):
                body = model(upload_request(subnet.epoch, zipcode, data))
                status, upload, _ = await call(s, api, miner, "POST", "/v1/s3/upload-url", body)
                assert status == 200
                assert await post_presigned(s, upload, data) == 204
                keys[upload["key"]] = data

            def read_body(**fields) -> bytes:
                return json.dumps({"miner_hotkey": miner.hotkey} | fields).encode()

            # Before the epoch's deadline nobody reads its files (commit, then reveal),
            # and a listing without an epoch would span the open one.
            status, payload, _ = await call(
                s, api, validator, "POST", "/v1/s3/read-urls", read_body(epoch_id=subnet.epoch)
            )
            assert status == 403, payload
            assert_json_error(status, payload, "read_urls_hidden")
            assert "deadline" in payload["error"]["message"]
            clock.now = (subnet.epoch + 0.5) * EPOCH_S  # the deadline
            status, payload, _ = await call(
                s, api, validator, "POST", "/v1/s3/read-urls", read_body()
            )
            assert status == 422, payload
            assert_json_error(status, payload, "epoch_required")

            status, page, _ = await call(
                s, api, validator, "POST", "/v1/s3/read-urls", read_body(epoch_id=subnet.epoch)
            )
            assert status == 200, page
            assert {o["key"] for o in page["objects"]} == set(keys)
            assert page.get("next_token") is None
            for item in page["objects"]:
                assert item["size"] == len(keys[item["key"]])
                async with s.get(item["url"]) as response:
                    assert await response.read() == keys[item["key"]]
            # Narrowed down to one zipcode.
            narrowed = read_body(epoch_id=subnet.epoch, source="ZILLOW_SOLD", zipcode=zipcodes[0])
            status, page, _ = await call(s, api, validator, "POST", "/v1/s3/read-urls", narrowed)
            assert [o["key"] for o in page["objects"]] == [
                k for k in keys if f"zipcode={zipcodes[0]}/" in k
            ]
            # Paged: the token continues this listing only.
            status, first, _ = await call(
                s,
                api,
                validator,
                "POST",
                "/v1/s3/read-urls",
                read_body(epoch_id=subnet.epoch, max_keys=2),
            )
            assert len(first["objects"]) == 2 and first["next_token"]
            status, second, _ = await call(
                s,
                api,
                validator,
                "POST",
                "/v1/s3/read-urls",
                read_body(
                    epoch_id=subnet.epoch, max_keys=2, continuation_token=first["next_token"]
                ),
            )
            assert status == 200
            assert {o["key"] for o in first["objects"] + second["objects"]} == set(keys)
            other = json.dumps(
                {
                    "miner_hotkey": subnet.people["miner"].hotkey,
                    "epoch_id": subnet.epoch,
                    "continuation_token": first["next_token"],
                }
            ).encode()
            for raw in (
                other,
                read_body(epoch_id=subnet.epoch, continuation_token="forged.token"),
                read_body(epoch_id=subnet.epoch, continuation_token="%%%"),
            ):
                status, payload, _ = await call(s, api, validator, "POST", "/v1/s3/read-urls", raw)
                assert status == 400, payload
                assert_json_error(status, payload, "bad_token")
            # Narrowing must follow the key layout; miners may not read.
            status, payload, _ = await call(
                s, api, validator, "POST", "/v1/s3/read-urls", read_body(source="ZILLOW")
            )
            assert status == 422
            status, payload, _ = await call(s, api, miner, "POST", "/v1/s3/read-urls", read_body())
            assert status == 403

    asyncio.run(scenario())
