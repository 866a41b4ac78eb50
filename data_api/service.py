"""Epoch blocks as served: derived once, persisted, cached as bytes; honeypots revealed late.

The first request for the current epoch's block derives it
(``blocks.derive_block``, in a thread) from the secret, the persisted history
and the owner's references, and persists it; every later request, from any
validator, any instance sharing the store, and after any restart, gets the
persisted bytes. A past epoch
serves its persisted block or has none. Concurrent first requests share
one derivation (a shared task, not a lock held across awaits).

    service = BlockService(store, universe, secret, clock, config)
    cached = await service.block(epoch_id)      # CachedBlock (raw JSON, nonce, zipcodes) | None
    reveal = await service.honeypots(epoch_id)  # HoneypotReveal | None (no block issued)
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from common.data_api_models import (
    BlockBatch,
    BlockSettings,
    BlockZipcode,
    HoneypotReveal,
    RevealedHoneypot,
    ZipcodeBlock,
)
from common.epochs import EpochClock
from common.protocol import Source
from config.data_api import BlockConfig
from data_api.blocks import REFERENCE, DerivedBlock, derive_block
from data_api.store import IssuedBlock, IssuedHoneypot
from data_api.stores import DataStore
from data_api.universe import Universe

logger = logging.getLogger(__name__)

KNOWN_SOURCES = frozenset(s.value for s in Source)
CACHED_EPOCHS = 8  # the current epoch and a few before it are what validators ask for


@dataclass(frozen=True, slots=True)
class CachedBlock:
    epoch_id: int
    block_id: str
    raw: bytes  # the exact JSON served
    nonce: str
    zipcodes: frozenset[str]


def utc(unix_time: float) -> datetime:
    return datetime.fromtimestamp(unix_time, tz=UTC)


def block_model(derived: DerivedBlock, clock: EpochClock, config: BlockConfig) -> ZipcodeBlock:
    """The wire form of a derived block."""
    epoch = derived.epoch_id
    return ZipcodeBlock(
        block_id=derived.block_id,
        epoch_id=epoch,
        issued_at=utc(clock.start(epoch)),
        expires_at=utc(clock.deadline(epoch)),
        ends_at=utc(clock.end(epoch)),
        seed=derived.seed,
        nonce=derived.nonce,
        batches=[
            BlockBatch(
                batch_id=index,
                zipcodes=[
                    BlockZipcode(
                        zipcode=e.zipcode,
                        state=e.state,
                        lat=e.lat,
                        lng=e.lng,
                        expected_properties=e.expected_properties,
                    )
                    for e in batch
                ],
            )
            for index, batch in enumerate(derived.batches)
        ],
        config=BlockSettings(
            zipcodes_per_batch=config.zipcodes_per_batch,
            groups_per_batch=config.groups_per_batch,
            miners_per_group=config.miners_per_group,
            max_miners_per_coldkey=config.max_miners_per_coldkey,
            min_different_coldkeys=config.min_different_coldkeys,
        ),
    )


class BlockService:
    def __init__(
        self,
        store: DataStore,
        universe: Universe,
        secret: bytes,
        clock: EpochClock,
        config: BlockConfig,
        now: Callable[[], float] = time.time,
        on_issued: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self.universe = universe
        self.clock = clock
        self.config = config
        self.now = now
        self._secret = secret
        self._cache: OrderedDict[int, CachedBlock] = OrderedDict()
        self._pending: dict[int, asyncio.Task] = {}
        self._on_issued = on_issued

    def current_epoch(self) -> int:
        return self.clock.epoch_at(self.now())

    def has_started(self, epoch_id: int) -> bool:
        return epoch_id <= self.current_epoch()

    def is_revealed(self, epoch_id: int) -> bool:
        return self.now() >= self.clock.deadline(epoch_id)

    async def block(self, epoch_id: int) -> CachedBlock | None:
        """The epoch's block, or None for a past epoch that never had one.

        Only the current epoch's block is derived on demand: a past epoch
        nobody asked about had no work done in it, and deriving old epochs on
        request would hand any caller a way to burn CPU. Callers check
        ``has_started`` first.
        """
        cached = self._cache.get(epoch_id)
        if cached is not None:
            return cached
        task = self._pending.get(epoch_id)
        if task is None:
            derive = epoch_id == self.current_epoch()
            task = asyncio.create_task(self._load(epoch_id, derive), name=f"block-{epoch_id}")
            self._pending[epoch_id] = task
            task.add_done_callback(lambda _t: self._pending.pop(epoch_id, None))
        # shield: a caller that goes away must not cancel the others' derivation
        cached = await asyncio.shield(task)
        if cached is not None:
            self._cache[epoch_id] = cached
            while len(self._cache) > CACHED_EPOCHS:
                self._cache.popitem(last=False)
        return cached

    async def _load(self, epoch_id: int, derive: bool) -> CachedBlock | None:
        raw = await self.store.block_json(epoch_id)
        if raw is None:
            if not derive:
                return None
            raw = await self._derive_and_save(epoch_id)
        block = ZipcodeBlock.model_validate_json(raw)
        return CachedBlock(epoch_id, block.block_id, raw, block.nonce, frozenset(block.zipcodes()))

    def _derive(
        self, epoch_id: int, recent: list[frozenset[str]], references: list[str]
    ) -> tuple[DerivedBlock, bytes]:
        """The block and its wire bytes (CPU work: run on a thread)."""
        derived = derive_block(
            self._secret, epoch_id, self.universe, self.config, recent, references
        )
        return derived, block_model(derived, self.clock, self.config).model_dump_json().encode()

    async def _derive_and_save(self, epoch_id: int) -> bytes:
        started = time.perf_counter()
        recent = await self.store.recent_zipcodes(epoch_id, self.config.rotation_epochs)
        references = await self.store.reference_zipcodes()
        derived, raw = await asyncio.to_thread(self._derive, epoch_id, recent, references)
        chosen = [z for z, kind in derived.honeypots if kind == REFERENCE]
        records = await self.store.reference_records(chosen)
        honeypots = [
            IssuedHoneypot(zipcode, kind, records.get(zipcode, {}) if kind == REFERENCE else {})
            for zipcode, kind in derived.honeypots
        ]
        block = IssuedBlock(epoch_id, derived.block_id, raw, derived.zipcodes, honeypots)
        stored, inserted = await self.store.save_block(block, self.now())
        if inserted:
            if self._on_issued is not None:
                self._on_issued()
            logger.info(
                "issued block %s for epoch %d: %d zipcodes in %d batches, %d honeypots%s (%.0f ms)",
                derived.block_id,
                epoch_id,
                len(derived.zipcodes),
                len(derived.batches),
                len(derived.honeypots),
                f", relaxed {','.join(derived.relaxed)}" if derived.relaxed else "",
                (time.perf_counter() - started) * 1000,
            )
        return stored

    async def honeypots(self, epoch_id: int) -> HoneypotReveal | None:
        """The epoch's honeypots with their references; None when no block was issued.

        Callers check ``is_revealed`` first: this does not.
        """
        issued = await self.store.honeypots(epoch_id)
        if issued is None:
            return None
        block_id, honeypots = issued
        return HoneypotReveal(
            epoch_id=epoch_id,
            block_id=block_id,
            honeypots=[
                RevealedHoneypot(
                    zipcode=h.zipcode,
                    kind=h.kind,
                    # a source dropped from the protocol since the block was issued is left out
                    references={s: r for s, r in h.references.items() if s in KNOWN_SOURCES},
                )
                for h in honeypots
            ],
        )
