"""The local subnet's status pages: a port per validator, kept up after the cycles with --serve.

Each validator serves its own page (``--status.port``) while it runs; once
the validators have run their cycles and exited, ``serve_pages`` serves the
same stores on the same addresses from the local subnet's process, read-only,
until Ctrl-C.

    port = free_port()  # sim/processes.py
    asyncio.run(serve_pages(validators, workdir, EpochClock(cycle_s, collect_fraction)))
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from common.epochs import EpochClock
from vali_utils.status_server import serve_status
from vali_utils.status_view import StatusReader

HOST = "127.0.0.1"


def address(port: int) -> str:
    return f"http://{HOST}:{port}/"


def state_dir(workdir: Path, validator: dict) -> Path:
    return workdir / f"validator-{validator['wallet']}-{validator['wallet_hotkey']}"


async def serve_pages(validators: list[dict], workdir: Path, clock: EpochClock) -> None:
    """Serve every validator's store on its ``status_port`` until cancelled (Ctrl-C).

    Raises OSError when a port is taken, once the pages already started are closed.
    """
    servers = []
    try:
        for v in validators:
            reader = StatusReader(state_dir(workdir, v), clock)
            servers.append(await serve_status(reader, HOST, v["status_port"]))
        await asyncio.Event().wait()
    finally:
        for server in servers:
            await server.close()
