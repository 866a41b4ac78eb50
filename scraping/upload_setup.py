"""Which way a miner uploads to S3, from its settings.

- ``S3_UPLOAD_MODE=direct`` with ``S3_BUCKET`` (and credentials): straight to
  the bucket (owners who run their own).
- otherwise, with a Data API (``DATA_API_URL``): presigned URLs from it (the
  normal case: the URL only lets the miner write its own files of the
  current epoch).
- neither: no uploads, said once in the log.

    uploader, closer = await open_uploader(settings, keypair, session)
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import aiohttp

from common.data_api_calls import DataAPIRefused, DataAPIUnavailable, request_upload_url
from common.data_api_models import UploadUrlRequest
from common.signed_http import SignedClient
from config.settings import Settings, SettingsError
from scraping.upload_targets import DirectS3Target, PresignedTarget, UploadError
from scraping.uploads import Uploader

logger = logging.getLogger(__name__)

# The Data API's answers that another attempt of the same upload cannot change:
# forbidden, the epoch is over, the zipcode is not in the block, too large.
PERMANENT_REFUSALS = (403, 409, 422)


async def open_uploader(
    settings: Settings,
    keypair,
    session: aiohttp.ClientSession,
    on_grant: Callable[[int, str], None] | None = None,
) -> tuple[Uploader | None, Callable[[], Awaitable[None]]]:
    """The started uploader (or None) and what closes it.

    ``on_grant(epoch, nonce)`` hears the epoch nonce of every upload grant the
    Data API gives (the one place a miner learns it). The bucket, the caps
    and the retry policy are ``settings.s3`` (checked when settings loaded).
    """
    s3 = settings.s3
    hotkey = keypair.ss58_address
    direct: DirectS3Target | None = None
    if s3.upload_mode == "direct":
        if not s3.bucket:
            raise SettingsError("S3_UPLOAD_MODE=direct needs S3_BUCKET (and credentials)")
        direct = DirectS3Target.from_settings(s3)
        target = direct
        how = f"directly to bucket {s3.bucket}"
    elif settings.data_api_url and settings.data_api_hotkey:
        client = SignedClient(keypair, session, settings.request_timeout_s * 2)
        url, api_hotkey = settings.data_api_url, settings.data_api_hotkey

        async def get_url(request: dict) -> dict:
            body = UploadUrlRequest(**request)
            try:
                grant = await request_upload_url(client, url, api_hotkey, body)
            except DataAPIRefused as exc:
                raise UploadError(str(exc), permanent=exc.status in PERMANENT_REFUSALS) from exc
            except DataAPIUnavailable as exc:
                raise UploadError(str(exc)) from exc
            if on_grant is not None:
                on_grant(body.epoch_id, grant.epoch_nonce)
            return grant.model_dump()

        target = PresignedTarget(session, get_url, timeout_s=s3.call_timeout_s)
        how = f"through presigned URLs from the Data API at {url}"
    else:
        logger.warning(
            "no uploads to S3: set DATA_API_URL and DATA_API_HOTKEY (or S3_UPLOAD_MODE=direct "
            "with S3_BUCKET); manifests will point at no files"
        )

        async def nothing() -> None:
            return None

        return None, nothing
    uploader = await Uploader.open(settings.state_dir, target, hotkey, s3)
    await uploader.start()
    logger.info("uploading every scraped zipcode %s", how)

    async def close() -> None:
        await uploader.close()
        if direct is not None:
            await direct.close()

    return uploader, close
