"""One owner for metagraph syncing: periodic refresh under a deadline, listeners for changes.

sync = MetagraphSync(chain, refresh_s=60)
await sync.refresh()                      # first snapshot, raises ChainUnavailable
task = asyncio.create_task(sync.run())    # keeps it fresh; a failed refresh keeps the old one
sync.snapshot                             # latest MetagraphSnapshot (or None before the first)
sync.on_change(callback)                  # callback(old, new) when hotkeys/endpoints change
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from common.chain import Chain, ChainUnavailable, MetagraphSnapshot

logger = logging.getLogger(__name__)

Listener = Callable[[MetagraphSnapshot | None, MetagraphSnapshot], None]


class MetagraphSync:
    def __init__(self, chain: Chain, refresh_s: float = 60.0, timeout_s: float = 30.0) -> None:
        self.chain = chain
        self.refresh_s = refresh_s
        self.timeout_s = timeout_s
        self.snapshot: MetagraphSnapshot | None = None
        self._listeners: list[Listener] = []

    def on_change(self, listener: Listener) -> None:
        self._listeners.append(listener)

    async def refresh(self) -> MetagraphSnapshot:
        """Fetch a new snapshot (under ``timeout_s``); listeners hear about changes."""
        try:
            new = await asyncio.wait_for(self.chain.metagraph(), self.timeout_s)
        except TimeoutError as exc:
            raise ChainUnavailable(f"metagraph refresh took over {self.timeout_s:g}s") from exc
        old, self.snapshot = self.snapshot, new
        if old is None or _identity(old) != _identity(new):
            for listener in self._listeners:
                try:
                    listener(old, new)
                except Exception:
                    logger.exception("metagraph listener failed")
        return new

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_s)
            try:
                await self.refresh()
            except ChainUnavailable as exc:
                logger.warning("metagraph refresh failed, keeping the last one: %s", exc)


def _identity(graph: MetagraphSnapshot) -> tuple:
    return tuple(
        (n.uid, n.hotkey, n.coldkey, n.endpoint, n.validator_permit) for n in graph.neurons
    )
