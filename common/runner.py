"""The shared life cycle of a neuron process: settings, logging, signals, exit codes.

    raise SystemExit(run_neuron("miner", serve, argv, description))

Exit codes: 0 stopped cleanly, 2 a setting is invalid, 3 the chain is unavailable.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
from collections.abc import Awaitable, Callable

from common.chain import ChainUnavailable
from common.logs import setup_logging
from config.settings import Settings, SettingsError, load_settings

logger = logging.getLogger(__name__)


def run_neuron(
    role: str,
    body: Callable[[Settings, asyncio.Event], Awaitable[None]],
    argv: list[str] | None,
    description: str,
) -> int:
    """Load settings for ``role`` and run ``body(settings, stop)`` until it returns or a signal."""
    try:
        settings, _ = load_settings(role, argv, description=description)
    except SettingsError as exc:
        print(f"{role}: {exc}", file=sys.stderr)
        return 2
    setup_logging(role, settings.debug)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await body(settings, stop)

    try:
        asyncio.run(run())
    except SettingsError as exc:
        print(f"{role}: {exc}", file=sys.stderr)
        return 2
    except ChainUnavailable as exc:
        print(f"{role}: chain unavailable: {exc}", file=sys.stderr)
        return 3
    return 0


async def serve_until_stopped(stop: asyncio.Event, sync, name: str) -> None:
    """Keep the metagraph in sync (``sync.run()``) until ``stop`` is set.

    Everything the caller built lives for the whole run: it leaves the
    collector's generations, so collections stay short on the request path.
    """
    gc.freeze()
    refresher = asyncio.create_task(sync.run(), name="metagraph-sync")
    try:
        await stop.wait()
    finally:
        logger.info("%s stopping", name)
        refresher.cancel()
