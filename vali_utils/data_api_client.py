"""Client of the Data API for validators: blocks, honeypots, read URLs and reports.

    api = ValidatorDataAPI(url, api_hotkey, keypair, session, cache_path=state_dir / "block.json")
    try:
        block = await api.block(epoch_id)          # cached per epoch: a block never changes
        cycle_block = epoch_block(block)           # what ConsensusCycle.run takes
    except DataAPIUnavailable:
        ...                                        # api.reachable is False: fall back
    reveal = await api.honeypots(epoch_id)         # after the deadline; DataAPIRefused before
    page, token = await api.read_url_page(hotkey, epoch_id, 200, None)   # after the deadline too

Retries and refusals are ``common/data_api_calls.py``'s (shared with the
miner's upload URLs): connection failures, timeouts, 5xx and 429 are retried
with exponential backoff and jitter, each retry signed afresh. Then
``DataAPIUnavailable`` says the API could not be used; any other refusal
(401, 403, 404, 409, 422) is ``DataAPIRefused`` at once, since asking again
would not change the answer. Honeypots (403
``honeypots_hidden``) and read URLs (403 ``read_urls_hidden``) of an epoch
are refused before its deadline: "not yet", never an outage (``reachable``
stays True).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import aiohttp
from pydantic import BaseModel, ValidationError

from common.data_api_calls import (
    DataAPIRefused,
    DataAPIUnavailable,
    RetryPolicy,
    call_with_retries,
)
from common.data_api_models import (
    Health,
    HoneypotReveal,
    ReadUrls,
    ReadUrlsRequest,
    StatusAccepted,
    StatusReport,
    ZipcodeBlock,
)
from common.protocol import ErrorBody
from common.signed_http import SignedAnswer, SignedClient
from vali_utils.blocks import BlockLayout, BlockTimes, EpochBlock

logger = logging.getLogger(__name__)

Model = TypeVar("Model", bound=BaseModel)
DEFAULT_RETRY = RetryPolicy()
CACHED_BLOCKS = 4  # the current epoch and the few before it a late cycle may still need


class ValidatorDataAPI:
    """A validator's view of the Data API, with a per-epoch block cache in memory and on disk."""

    def __init__(
        self,
        url: str,
        api_hotkey: str,
        signer: Any,
        session: aiohttp.ClientSession,
        *,
        cache_path: Path | None = None,
        timeout_s: float = 10.0,
        retry: RetryPolicy = DEFAULT_RETRY,
        now: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"Data API url {url!r} is not http(s)://host[:port]")
        self.url = url.rstrip("/")
        self.api_hotkey = api_hotkey
        self.client = SignedClient(signer, session, timeout_s)
        self.cache_path = Path(cache_path) if cache_path is not None else None
        self.retry = retry
        self.reachable: bool | None = None  # None until the first call
        self.last_error: str | None = None
        self._now = now
        self._sleep = sleep
        self._blocks: OrderedDict[int, ZipcodeBlock] = OrderedDict()

    # --- transport ------------------------------------------------------------------

    async def _call(
        self, method: str, path: str, body: BaseModel | None, answer_model: type[Model]
    ) -> Model:
        raw = body.model_dump_json(exclude_none=True).encode() if body is not None else b""

        def send() -> Awaitable[SignedAnswer]:
            return self.client.send(method, self.url, self.api_hotkey, path, raw, answer_model)

        try:
            answer = await call_with_retries(send, f"{method} {path}", self.retry, self._sleep)
        except DataAPIUnavailable as exc:
            self.reachable, self.last_error = False, str(exc)
            logger.warning("Data API unavailable: %s", exc)
            raise
        except DataAPIRefused as exc:
            self.reachable, self.last_error = True, str(exc)
            raise
        self.reachable, self.last_error = True, None
        return answer.answer

    # --- blocks -----------------------------------------------------------------------

    def cached_block(self, epoch_id: int | None = None) -> ZipcodeBlock | None:
        """The cached block of ``epoch_id`` (memory, then disk), or the latest when None."""
        if epoch_id is not None and epoch_id in self._blocks:
            return self._blocks[epoch_id]
        if epoch_id is None and self._blocks:
            return next(reversed(self._blocks.values()))
        block = self._read_disk_cache()
        if block is not None and (epoch_id is None or block.epoch_id == epoch_id):
            self._remember(block, write=False)
            return block
        return None

    async def current_block(self) -> ZipcodeBlock:
        """The block of the epoch running now (from the cache while it is still current)."""
        now = self._now()
        latest = self.cached_block()
        if latest is not None and latest.issued_at.timestamp() <= now < latest.ends_at.timestamp():
            return latest
        block = await self._call("GET", "/v1/epochs/current", None, ZipcodeBlock)
        self._remember(block)
        return block

    async def block(self, epoch_id: int) -> ZipcodeBlock:
        """The block of ``epoch_id``; fetched once, since a block never changes."""
        cached = self.cached_block(epoch_id)
        if cached is not None:
            return cached
        block = await self._call("GET", f"/v1/epochs/{int(epoch_id)}/block", None, ZipcodeBlock)
        if block.epoch_id != epoch_id:
            raise DataAPIRefused(
                200, ErrorBody(code="bad_answer", message=f"asked epoch {epoch_id}, got another")
            )
        self._remember(block)
        return block

    def _remember(self, block: ZipcodeBlock, write: bool = True) -> None:
        self._blocks[block.epoch_id] = block
        self._blocks.move_to_end(block.epoch_id)
        while len(self._blocks) > CACHED_BLOCKS:
            self._blocks.popitem(last=False)
        if write and self.cache_path is not None:
            latest = self._read_disk_cache()
            if latest is None or latest.epoch_id <= block.epoch_id:
                self._write_disk_cache(block)

    def _read_disk_cache(self) -> ZipcodeBlock | None:
        if self.cache_path is None:
            return None
        try:
            return ZipcodeBlock.model_validate_json(self.cache_path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValidationError) as exc:
            logger.warning("ignoring unreadable block cache %s: %s", self.cache_path, exc)
            return None

    def _write_disk_cache(self, block: ZipcodeBlock) -> None:
        path = self.cache_path
        assert path is not None
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(block.model_dump_json())
        os.replace(tmp, path)  # a reader sees the old block or the new one, never half

    # --- after the deadline, S3, reports ---------------------------------------------------

    async def honeypots(self, epoch_id: int) -> HoneypotReveal:
        """The epoch's honeypots; DataAPIRefused (403 honeypots_hidden) before its deadline."""
        return await self._call(
            "GET", f"/v1/epochs/{int(epoch_id)}/honeypots", None, HoneypotReveal
        )

    async def read_urls(
        self,
        miner_hotkey: str,
        epoch_id: int | None = None,
        *,
        source: str | None = None,
        zipcode: str | None = None,
        max_keys: int = 200,
        continuation_token: str | None = None,
    ) -> ReadUrls:
        """One page of presigned GETs for a miner's files of an epoch (narrowed as far as given).

        Raises DataAPIRefused: 403 ``read_urls_hidden`` before the epoch's
        deadline (commit, then reveal), 422 ``epoch_required`` without an epoch.
        """
        body = ReadUrlsRequest(
            miner_hotkey=miner_hotkey,
            epoch_id=epoch_id,
            source=source,
            zipcode=zipcode,
            max_keys=max_keys,
            continuation_token=continuation_token,
        )
        return await self._call("POST", "/v1/s3/read-urls", body, ReadUrls)

    async def read_url_page(
        self, hotkey: str, epoch_id: int, max_keys: int, token: str | None
    ) -> tuple[list[dict], str | None]:
        """``read_urls`` shaped as ``vali_utils.s3_reader.ReadUrlLister``."""
        page = await self.read_urls(
            hotkey, epoch_id, max_keys=min(max_keys, 1000), continuation_token=token
        )
        return [o.model_dump() for o in page.objects], page.next_token

    async def report_status(self, epoch_id: int, report: StatusReport) -> StatusAccepted:
        """Send the cycle's summary (replaces an earlier report for the same epoch)."""
        return await self._call(
            "POST", f"/v1/epochs/{int(epoch_id)}/status", report, StatusAccepted
        )

    async def storage_health(self, timeout_s: float) -> str | None:
        """One look at ``/v1/health``: None when the Data API and its S3 answer, else why not.

        A probe of the storage watch (``vali_utils/storage_watch.py``): one
        attempt, no retries, and it does not touch ``reachable``.
        """
        answer = await self.client.send(
            "GET", self.url, self.api_hotkey, "/v1/health", b"", Health, timeout_s=timeout_s
        )
        if answer.status != 200 or not isinstance(answer.answer, Health):
            return f"Data API health: HTTP {answer.status or '-'}"
        if answer.answer.storage == "failing":
            return "Data API health: S3 does not answer"
        return None


def epoch_block(block: ZipcodeBlock) -> EpochBlock:
    """The validator cycle's ``EpochBlock`` for a Data API block.

    Zipcodes in the block's order; the seed's 8 bytes (big-endian) as the plan
    seed; the epoch nonce; the expected listings per zipcode (their mean for
    a zipcode without one); the block's batches and settings as its
    ``layout`` and its times, which every validator's plan and deadlines
    follow. Raises ValueError for a block that lists a zipcode twice (no
    plan can be built from it).
    """
    zipcodes = tuple(block.zipcodes())
    if len(set(zipcodes)) != len(zipcodes):
        raise ValueError(f"block {block.block_id} of epoch {block.epoch_id} repeats a zipcode")
    expected = [z.expected_properties for b in block.batches for z in b.zipcodes]
    layout = BlockLayout(
        batches=tuple(tuple(z.zipcode for z in b.zipcodes) for b in block.batches),
        zipcodes_per_batch=block.config.zipcodes_per_batch,
        groups_per_batch=block.config.groups_per_batch,
        miners_per_group=block.config.miners_per_group,
        max_miners_per_coldkey=block.config.max_miners_per_coldkey,
        min_different_coldkeys=block.config.min_different_coldkeys,
    )
    times = BlockTimes(
        block.issued_at.timestamp(), block.expires_at.timestamp(), block.ends_at.timestamp()
    )
    return EpochBlock(
        epoch=block.epoch_id,
        block_id=block.block_id,
        zipcodes=zipcodes,
        seed=block.seed.to_bytes(8, "big"),
        expected_properties_per_zipcode=round(sum(expected) / len(expected)) if expected else 50,
        nonce=block.nonce,
        expected={z.zipcode: z.expected_properties for b in block.batches for z in b.zipcodes},
        states={z.zipcode: z.state for b in block.batches for z in b.zipcodes},
        layout=layout,
        times=times,
    )
