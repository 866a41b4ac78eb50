"""The Data API's handlers: one method per endpoint, each given an authenticated ``SignedCall``.

Authentication, authorisation, rate limits and body parsing happen before a
handler runs (``common.signed_http.signed_route``); handlers enforce the
epoch rules and refuse with ``RequestRefused``. Routes and policies are wired
in ``data_api.app``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web

from common.chain import MetagraphSnapshot
from common.data_api_models import (
    MAX_EPOCH_ID,
    Health,
    HoneypotReference,
    ReadUrl,
    ReadUrls,
    ReadUrlsRequest,
    ReferenceList,
    ReferenceSummary,
    StatusAccepted,
    StatusReport,
    UploadUrl,
    UploadUrlRequest,
)
from common.epochs import EpochClock
from common.s3_layout import InvalidKey
from common.signed_http import RequestRefused, SignedCall
from config.data_api import BlockConfig, UploadLimits
from config.limits import MAX_FILE_BYTES
from data_api.metrics import ApiMetrics
from data_api.s3 import (
    BadContinuationToken,
    S3Gateway,
    S3Unavailable,
    StorageProbe,
    TokenSealer,
    object_key,
    read_prefix,
)
from data_api.service import BlockService, CachedBlock, utc
from data_api.store import UploadGrant
from data_api.stores import DataStore
from data_api.universe import Universe

logger = logging.getLogger(__name__)

MIN_UPLOAD_URL_S = 60  # a URL handed out just before the deadline still gets a minute
STATUS_EPOCHS_BACK = 1  # a cycle ends after its epoch's deadline, at most in the next epoch


@dataclass(frozen=True, slots=True)
class ApiOptions:
    """Everything tunable about the service, from settings (``ApiOptions.from_settings``)."""

    epoch: EpochClock
    blocks: BlockConfig
    min_validator_stake: float = 0.0
    requests_per_minute: int = 600
    max_body_bytes: int = 1024 * 1024
    upload_max_bytes: int = MAX_FILE_BYTES  # what miners and validators accept
    url_expiry_s: float = 900.0
    # DATA_API_UPLOADS_PER_ZIPCODE (from_settings); the default and its reason: UploadLimits.
    uploads: UploadLimits = field(default_factory=UploadLimits)

    @classmethod
    def from_settings(cls, settings) -> ApiOptions:
        return cls(
            epoch=EpochClock(settings.cycle_seconds, settings.collect_fraction),
            blocks=BlockConfig(
                zipcodes_per_block=settings.block_zipcodes,
                zipcodes_per_batch=settings.zipcodes_per_batch,
                miners_per_group=settings.miners_per_group,
                max_miners_per_coldkey=settings.max_miners_per_coldkey,
                min_different_coldkeys=settings.min_coldkeys_per_group,
                rotation_epochs=settings.rotation_epochs,
                max_state_share=settings.max_state_share,
                honeypots_per_block=settings.honeypots_per_block,
            ),
            min_validator_stake=settings.api_min_validator_stake,
            requests_per_minute=settings.api_requests_per_minute,
            max_body_bytes=settings.max_body_bytes,
            upload_max_bytes=settings.s3_upload_max_bytes,
            url_expiry_s=settings.s3_url_expiry_s,
            uploads=UploadLimits(files_per_zipcode=settings.api_uploads_per_zipcode),
        )


class Routes:
    def __init__(
        self,
        owner_hotkey: str,
        options: ApiOptions,
        blocks: BlockService,
        store: DataStore,
        s3: S3Gateway | None,
        universe: Universe,
        metrics: ApiMetrics,
        metagraph: Callable[[], MetagraphSnapshot | None],
        tokens: TokenSealer,
    ) -> None:
        self.owner_hotkey = owner_hotkey
        self.tokens = tokens
        self.options = options
        self.blocks = blocks
        self.store = store
        self.s3 = s3
        self.storage = StorageProbe(s3) if s3 is not None else None
        self.universe = universe
        self.metrics = metrics
        self.metagraph = metagraph

    # --- unsigned --------------------------------------------------------------------

    async def health(self, _request: web.Request) -> web.Response:
        graph = self.metagraph()
        body = Health(
            hotkey=self.owner_hotkey,
            epoch_id=self.blocks.current_epoch(),
            metagraph_block=graph.block if graph is not None else None,
            storage=None
            if self.storage is None
            else ("ok" if await self.storage.reachable() else "failing"),
            store=self.store.kind,
            store_status="ok" if await self.store.reachable() else "failing",
        )
        return web.Response(body=body.model_dump_json(), content_type="application/json")

    async def prometheus(self, _request: web.Request) -> web.Response:
        return self.metrics.render()

    # --- blocks (validators) --------------------------------------------------------------

    def _epoch(self, call: SignedCall) -> int:
        """The path's epoch id, refused unless the epoch has started."""
        epoch_id = int(call.request.match_info["epoch_id"])  # the route allows digits only
        if epoch_id > MAX_EPOCH_ID or not self.blocks.has_started(epoch_id):
            raise RequestRefused(403, "epoch_not_started", "epoch has not started")
        return epoch_id

    async def _issued(self, epoch_id: int) -> CachedBlock:
        cached = await self.blocks.block(epoch_id)
        if cached is None:
            raise RequestRefused(404, "no_block", f"no block was issued for epoch {epoch_id}")
        return cached

    async def current_block(self, call: SignedCall) -> bytes:
        cached = await self._issued(self.blocks.current_epoch())
        self.metrics.blocks_served.inc()
        return cached.raw

    async def epoch_block(self, call: SignedCall) -> bytes:
        cached = await self._issued(self._epoch(call))
        self.metrics.blocks_served.inc()
        return cached.raw

    async def honeypots(self, call: SignedCall):
        epoch_id = self._epoch(call)
        if not self.blocks.is_revealed(epoch_id):
            deadline = utc(self.options.epoch.deadline(epoch_id)).isoformat()
            raise RequestRefused(
                403, "honeypots_hidden", f"honeypots are revealed after the deadline {deadline}"
            )
        reveal = await self.blocks.honeypots(epoch_id)
        if reveal is None:
            raise RequestRefused(404, "no_block", f"no block was issued for epoch {epoch_id}")
        logger.info(
            "revealed %d honeypots of epoch %d to %s (request %s)",
            len(reveal.honeypots),
            epoch_id,
            call.caller,
            call.request_id,
        )
        return reveal

    async def status(self, call: SignedCall) -> StatusAccepted:
        epoch_id = self._epoch(call)
        if epoch_id < self.blocks.current_epoch() - STATUS_EPOCHS_BACK:
            raise RequestRefused(409, "epoch_too_old", "reports are taken for recent epochs only")
        report: StatusReport = call.body
        received = await self.store.save_status(epoch_id, call.caller, report.model_dump_json())
        logger.info(
            "status of epoch %d from %s: %d/%d completed, weights %s (request %s)",
            epoch_id,
            call.caller,
            report.completed,
            report.assignments,
            "set" if report.weights_set else "not set",
            call.request_id,
        )
        return StatusAccepted(
            epoch_id=epoch_id, validator_hotkey=call.caller, received_at=utc(received)
        )

    # --- S3 ---------------------------------------------------------------------------

    def _gateway(self) -> S3Gateway:
        if self.s3 is None:
            raise RequestRefused(503, "s3_not_configured", "this Data API has no S3 bucket set")
        return self.s3

    async def upload_url(self, call: SignedCall) -> UploadUrl:
        """A presigned POST for the caller's own prefix, the current epoch, a block zipcode."""
        gateway = self._gateway()
        asked: UploadUrlRequest = call.body
        now = self.blocks.now()
        epoch_id = self.options.epoch.epoch_at(now)
        if asked.epoch_id != epoch_id:
            raise RequestRefused(
                409, "wrong_epoch", f"uploads are for the current epoch ({epoch_id}) only"
            )
        deadline = self.options.epoch.deadline(epoch_id)
        if now >= deadline:
            raise RequestRefused(409, "epoch_closed", "the epoch's deadline has passed")
        if asked.size_bytes > self.options.upload_max_bytes:
            raise RequestRefused(
                422, "too_large", f"size_bytes is over {self.options.upload_max_bytes}"
            )
        cached = await self._issued(epoch_id)
        if asked.zipcode not in cached.zipcodes:
            raise RequestRefused(
                403, "zipcode_not_in_block", "the zipcode is not in this epoch's block"
            )
        try:
            key = object_key(
                gateway.prefix,
                call.caller,
                epoch_id,
                asked.source.value,
                asked.zipcode,
                asked.content_hash,
            )
        except InvalidKey as exc:
            raise RequestRefused(422, "invalid_key", str(exc)) from None
        limits = self.options.uploads
        grant = UploadGrant(
            call.caller, epoch_id, asked.source.value, asked.zipcode, asked.content_hash
        )
        granted = await self.store.grant_upload(grant, limits, now)
        if granted is None:
            logger.info(
                "upload refused to %s for %s/%s of epoch %d: %d files already (request %s)",
                call.caller,
                asked.source.value,
                asked.zipcode,
                epoch_id,
                limits.files_per_zipcode,
                call.request_id,
            )
            raise RequestRefused(
                409,
                "upload_cap",
                f"at most {limits.files_per_zipcode} files per miner, epoch, source and"
                " zipcode; this zipcode has them all",
            )
        expires_s = max(MIN_UPLOAD_URL_S, min(self.options.url_expiry_s, deadline - now))
        url, fields = gateway.presign_upload(
            key, asked.size_bytes, cached.nonce, call.caller, int(expires_s)
        )
        return UploadUrl(
            url=url,
            fields=fields,
            key=key,
            max_bytes=asked.size_bytes,
            expires_at=utc(now + int(expires_s)),
            epoch_nonce=cached.nonce,
        )

    async def read_urls(self, call: SignedCall) -> ReadUrls:
        gateway = self._gateway()
        asked: ReadUrlsRequest = call.body
        # Commit, then reveal (docs/architecture.md §3.7): an epoch's files are readable only after
        # its deadline, so nobody reads a miner's work while others can still copy it.
        # Without an epoch the listing would span the open one too.
        if asked.epoch_id is None:
            raise RequestRefused(
                422, "epoch_required", "read URLs are issued per epoch: give epoch_id"
            )
        if not self.blocks.is_revealed(asked.epoch_id):
            deadline = utc(self.options.epoch.deadline(asked.epoch_id)).isoformat()
            raise RequestRefused(
                403,
                "read_urls_hidden",
                f"read URLs for epoch {asked.epoch_id} are issued after its deadline {deadline}",
            )
        try:
            prefix = read_prefix(
                gateway.prefix,
                asked.miner_hotkey,
                asked.epoch_id,
                asked.source.value if asked.source else None,
                asked.zipcode,
            )
        except InvalidKey as exc:
            raise RequestRefused(422, "invalid_key", str(exc)) from None
        expires_s = int(self.options.url_expiry_s)
        token = None
        if asked.continuation_token is not None:
            try:
                token = self.tokens.open(prefix, asked.continuation_token)
            except BadContinuationToken as exc:
                raise RequestRefused(400, "bad_token", str(exc)) from None
        try:
            objects, token = await asyncio.to_thread(
                gateway.list_and_presign, prefix, asked.max_keys, token, expires_s
            )
        except S3Unavailable as exc:
            raise RequestRefused(503, "s3_unavailable", str(exc), {"Retry-After": "5"}) from None
        return ReadUrls(
            objects=[
                ReadUrl(key=o.key, url=o.url, size=o.size, last_modified=o.last_modified)
                for o in objects
            ],
            next_token=self.tokens.seal(prefix, token) if token else None,
            expires_at=utc(self.blocks.now() + expires_s),
        )

    # --- the owner's references ----------------------------------------------------------

    async def add_reference(self, call: SignedCall) -> ReferenceSummary:
        reference: HoneypotReference = call.body
        if reference.zipcode not in self.universe.by_zipcode:
            raise RequestRefused(422, "unknown_zipcode", "the zipcode is not in the universe")
        zpids = [zpid for zpid, _ in reference.records]
        if len(set(zpids)) != len(zpids):
            raise RequestRefused(422, "duplicate_zpid", "a zpid appears twice in records")
        now = self.blocks.now()
        await self.store.upsert_reference(reference, call.caller, now)
        logger.info(
            "reference for %s/%s stored: %d records (request %s)",
            reference.zipcode,
            reference.source.value,
            len(reference.records),
            call.request_id,
        )
        return ReferenceSummary(
            zipcode=reference.zipcode,
            source=reference.source,
            record_count=len(reference.records),
            added_at=utc(now),
        )

    async def list_references(self, call: SignedCall) -> ReferenceList:
        rows = await self.store.references()
        return ReferenceList(
            references=[
                ReferenceSummary(
                    zipcode=r.zipcode,
                    source=r.source,
                    record_count=r.record_count,
                    added_at=utc(r.added_at),
                )
                for r in rows
            ]
        )
