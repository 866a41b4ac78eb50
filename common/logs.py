"""Logging set-up for the neurons: one format, standard ``logging``, level from settings."""

from __future__ import annotations

import logging
import sys


def setup_logging(name: str, debug: bool = False) -> None:
    """Log to stderr as ``time level name[role] logger: message``; DEBUG when asked."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter(f"%(asctime)s %(levelname)s {name} %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    for noisy in ("aiohttp.access", "bittensor", "websockets"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
