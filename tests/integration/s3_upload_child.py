"""A miner-side uploader in its own process, for the kill -9 test.

    python -m tests.integration.s3_upload_child WORKDIR ENDPOINT BUCKET HOTKEY ZIPCODES DELAY_S

Enqueues one file per zipcode (comma-separated), then uploads them one at a
time, each put held back ``DELAY_S`` seconds so the parent can SIGKILL it in
the middle of an upload. Runs until killed.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

from common.s3_layout import ObjectKey
from scraping.upload_targets import DirectS3Target
from scraping.uploads import Uploader
from tests.integration.s3_server import S3Server
from tests.unit.s3_builders import NONCE, SOURCE, records


class SlowTarget:
    """Holds every put back a while: the process is killed while one is in flight."""

    def __init__(self, inner: DirectS3Target, delay_s: float) -> None:
        self.inner = inner
        self.delay_s = delay_s

    async def put(self, parts: ObjectKey, body: bytes) -> str:
        await asyncio.sleep(self.delay_s)
        return await self.inner.put(parts, body)


async def main(
    workdir: str, endpoint: str, bucket: str, hotkey: str, zips: str, delay: str
) -> None:
    server = S3Server(int(endpoint.rsplit(":", 1)[1]))
    settings = server.settings(bucket, upload_concurrency=1)
    target = SlowTarget(DirectS3Target.from_settings(settings), float(delay))
    uploader = await Uploader.open(Path(workdir), target, hotkey, settings)
    for zipcode in zips.split(","):
        await uploader.enqueue(7, SOURCE, zipcode, records(zipcode), NONCE)
    print("enqueued", flush=True)
    await uploader.start()
    await asyncio.Event().wait()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    asyncio.run(main(*sys.argv[1:7]))
