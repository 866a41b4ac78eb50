"""The Data API caps uploads per miner, epoch, source and zipcode, across worker processes.

Guards against the padding hole of issue 15: a miner asked for presigned
URLs without limit, padded its S3 folder past the validators' listing cap of
5,000 keys, and its manifest check read "unavailable" instead of finding the
file it hid. Past ``UploadLimits.files_per_zipcode`` distinct files a presign
is refused with 409 ``upload_cap``; a retry of a file already granted is not
a new file. Two services on one database (what ``DATA_API_REUSE_PORT``
workers are) share the count, also when requests race.
"""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from common.data_api_models import ZipcodeBlock
from config.data_api import UploadLimits
from tests.integration.data_api_harness import (
    Subnet,
    assert_json_error,
    call,
    make_subnet,
    model,
    running,
    upload_request,
)

pytestmark = pytest.mark.integration

CAP = 3


@pytest.fixture(scope="module")
def subnet(tmp_path_factory) -> Subnet:
    return make_subnet(tmp_path_factory.mktemp("upload-cap"))


def test_presigns_past_the_cap_are_refused_across_workers(subnet, database, s3_endpoint):
    miner, other = subnet.people["miner"], subnet.people["miner2"]
    clock = subnet.clock(into_epoch_s=60)
    db = database
    limits = UploadLimits(files_per_zipcode=CAP)

    async def scenario():
        async with (
            running(subnet, db, clock, s3=s3_endpoint, uploads=limits) as first,
            running(subnet, db, clock, s3=s3_endpoint, uploads=limits) as second,
            aiohttp.ClientSession() as s,
        ):
            workers = [first, second]
            status, payload, _ = await call(
                s, first, subnet.people["validator"], "GET", "/v1/epochs/current"
            )
            zipcodes = ZipcodeBlock.model_validate(payload).zipcodes()
            zipcode = zipcodes[0]

            async def ask(who, n: int, where=zipcode, worker=0):
                body = model(upload_request(subnet.epoch, where, f"file {n}".encode()))
                api = workers[worker % 2]
                return await call(s, api, who, "POST", "/v1/s3/upload-url", body)

            # Distinct files alternate between the two workers: the count is shared.
            for n in range(CAP):
                status, payload, _ = await ask(miner, n, worker=n)
                assert status == 200, payload
            for worker in (0, 1):
                status, payload, _ = await ask(miner, CAP, worker=worker)
                assert status == 409, payload
                assert_json_error(status, payload, "upload_cap")
                assert f"at most {CAP} files" in payload["error"]["message"]
            # A retry of a file already granted gets its URL again (an honest miner's
            # upload that failed half-way), on either worker.
            for worker in (0, 1):
                status, payload, _ = await ask(miner, 0, worker=worker)
                assert status == 200, payload
            # The cap is per miner and per zipcode.
            status, payload, _ = await ask(other, CAP)
            assert status == 200, payload
            status, payload, _ = await ask(miner, CAP, where=zipcodes[1])
            assert status == 200, payload

            # Racing requests for one fresh zipcode, spread over both workers: the
            # count and the insert are one step, so exactly CAP are granted.
            racing = await asyncio.gather(
                *(ask(miner, 100 + n, where=zipcodes[2], worker=n) for n in range(12))
            )
            statuses = sorted(status for status, _, _ in racing)
            assert statuses == [200] * CAP + [409] * (12 - CAP), statuses

    asyncio.run(scenario())
