"""The validator's and the miner's Data API client against a real server on loopback.

A validator must keep its epoch's block when the API goes away, and must be
told plainly that the API is unreachable, not left hanging.
"""

from __future__ import annotations

import asyncio
import hashlib

import aiohttp
import pytest

from common.data_api_calls import request_upload_url
from common.data_api_models import StatusReport, UploadUrlRequest, ZipcodeBlock
from common.signed_http import SignedClient
from tests.integration.data_api_harness import (
    EPOCH_S,
    make_subnet,
    post_presigned,
    running,
)
from vali_utils.data_api_client import (
    DataAPIRefused,
    DataAPIUnavailable,
    RetryPolicy,
    ValidatorDataAPI,
    epoch_block,
)

pytestmark = pytest.mark.integration

FAST = RetryPolicy(attempts=3, base_s=0.01, cap_s=0.05)


@pytest.fixture(scope="module")
def subnet(tmp_path_factory):
    return make_subnet(tmp_path_factory.mktemp("data-api-client"))


def client(api_url, subnet, session, cache, clock) -> ValidatorDataAPI:
    return ValidatorDataAPI(
        api_url,
        subnet.owner.hotkey,
        subnet.people["validator"].keypair,
        session,
        cache_path=cache,
        timeout_s=2.0,
        retry=FAST,
        now=clock,
    )


def test_validator_client_caches_blocks_and_says_when_the_api_is_gone(subnet, tmp_path):
    cache = tmp_path / "vali" / "block.json"
    clock = subnet.clock(into_epoch_s=120)

    async def scenario():
        async with aiohttp.ClientSession() as session:
            async with running(subnet, tmp_path / "api.sqlite", clock) as api:
                vali = client(api.url, subnet, session, cache, clock)
                assert vali.reachable is None
                block = await vali.current_block()
                assert isinstance(block, ZipcodeBlock) and block.epoch_id == subnet.epoch
                assert vali.reachable is True
                assert ZipcodeBlock.model_validate_json(cache.read_bytes()) == block
                assert await vali.block(subnet.epoch) == block
                cycle_block = epoch_block(block)
                assert cycle_block.epoch == subnet.epoch
                assert list(cycle_block.zipcodes) == block.zipcodes()
                assert cycle_block.seed == block.seed.to_bytes(8, "big")
                assert 20 <= cycle_block.expected_properties_per_zipcode <= 80
                with pytest.raises(DataAPIRefused) as refused:
                    await vali.honeypots(subnet.epoch)
                assert refused.value.status == 403 and refused.value.code == "honeypots_hidden"
                accepted = await vali.report_status(subnet.epoch, StatusReport(completed=3))
                assert accepted.epoch_id == subnet.epoch
                url = api.url
            # The API is gone: the block of this epoch is still there, from memory or disk.
            vali = client(url, subnet, session, cache, clock)
            assert await vali.current_block() == block
            assert await vali.block(subnet.epoch) == block
            assert vali.cached_block(subnet.epoch) == block
            with pytest.raises(DataAPIUnavailable):
                await vali.block(subnet.epoch - 1)
            assert vali.reachable is False and vali.last_error
            clock.now += EPOCH_S  # the cached block is no longer current: nothing to fall back on
            with pytest.raises(DataAPIUnavailable):
                await vali.current_block()

    asyncio.run(scenario())


def test_miner_helper_gets_an_upload_url_and_the_validator_reads_it(
    subnet,
    tmp_path,
    s3_endpoint,
):
    data = b"a zipcode file"
    api_clock = subnet.clock()

    async def scenario():
        async with (
            running(subnet, tmp_path / "api.sqlite", api_clock, s3=s3_endpoint) as api,
            aiohttp.ClientSession() as session,
        ):
            vali = client(api.url, subnet, session, None, subnet.clock())
            block = await vali.current_block()
            miner = SignedClient(subnet.people["miner"].keypair, session)
            request = UploadUrlRequest(
                epoch_id=block.epoch_id,
                source="ZILLOW",
                zipcode=block.zipcodes()[5],
                content_hash=hashlib.sha256(data).hexdigest(),
                size_bytes=len(data),
            )
            upload = await request_upload_url(miner, api.url, subnet.owner.hotkey, request, FAST)
            assert upload.epoch_nonce == block.nonce
            assert await post_presigned(session, upload.model_dump(), data) == 204
            with pytest.raises(DataAPIRefused) as refused:
                wrong = request.model_copy(update={"epoch_id": block.epoch_id - 1})
                await request_upload_url(miner, api.url, subnet.owner.hotkey, wrong, FAST)
            assert refused.value.code == "wrong_epoch"
            # Read URLs of an epoch come after its deadline; before it, "not yet",
            # and the API still counts as reachable.
            with pytest.raises(DataAPIRefused) as refused:
                await vali.read_url_page(subnet.people["miner"].hotkey, block.epoch_id, 10, None)
            assert (refused.value.status, refused.value.code) == (403, "read_urls_hidden")
            assert vali.reachable is True
            api_clock.now = block.expires_at.timestamp()
            page, token = await vali.read_url_page(
                subnet.people["miner"].hotkey, block.epoch_id, 10, None
            )
            assert token is None
            assert [item["key"] for item in page] == [upload.key]
            assert set(page[0]) == {"key", "url", "size", "last_modified"}
            async with session.get(page[0]["url"]) as response:
                assert await response.read() == data

    asyncio.run(scenario())
