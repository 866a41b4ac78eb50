"""Assembly: routes, who may call each, and a running server on a host and port.

    api = await start_data_api(owner_hotkey, lambda: sync.snapshot, options, database,
                               secret, s3=None, host="127.0.0.1", port=0)
    # database: a SQLite file path, or a "postgresql://..." URL (data_api/stores.py)
    api.url            # "http://127.0.0.1:40123"
    await api.close()

Tests, the benchmark and the local subnet start it this way in-process;
``data_api.server`` does it for ``python -m data_api``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from common.chain import MetagraphSnapshot
from common.data_api_models import (
    HoneypotReference,
    ReadUrlsRequest,
    StatusReport,
    UploadUrlRequest,
)
from common.http_server import BodyGate, ConnectionGate, RunningServer, ServerLimits, serve_app
from common.signed_http import AccessPolicy, Admission, signed_route
from data_api.metrics import ApiMetrics
from data_api.routes import ApiOptions, Routes
from data_api.s3 import S3Gateway, TokenSealer
from data_api.service import BlockService
from data_api.stores import DataStore, StoreUnavailable, open_store
from data_api.universe import Universe, load_universe

logger = logging.getLogger(__name__)

EPOCH = r"{epoch_id:[0-9]{1,13}}"  # 13 digits stay inside int64; more is a 404
MAINTENANCE_INTERVAL_S = 2.0  # SQLite: WAL growth between checkpoints, ~2 pages a request


def build_app(
    routes: Routes,
    owner_hotkey: str,
    metagraph: Callable[[], MetagraphSnapshot | None],
    options: ApiOptions,
    admission: Admission,
    connections: ConnectionGate,
    bodies: BodyGate,
) -> web.Application:
    """The aiohttp application: every route but health and metrics is signed."""

    def policy(**who) -> AccessPolicy:
        return AccessPolicy(
            self_hotkey=owner_hotkey,
            metagraph=metagraph,
            max_body_bytes=options.max_body_bytes,
            admission=admission,
            body_gate=bodies,
            **who,
        )

    validators = policy(require_validator_permit=True, min_stake=options.min_validator_stake)
    miners = policy(require_validator_permit=False, min_stake=0.0)
    owner = policy(only_hotkeys=frozenset({owner_hotkey}))

    # aiohttp's own cap sits above ours, so ours answers first with a JSON 413.
    app = web.Application(
        client_max_size=options.max_body_bytes + 1024,
        middlewares=[connections.middleware, routes.metrics.middleware],
    )
    add = app.router
    add.add_get("/v1/health", routes.health)
    add.add_get("/metrics", routes.prometheus)
    add.add_get("/v1/epochs/current", signed_route(validators, routes.current_block))
    add.add_get(f"/v1/epochs/{EPOCH}/block", signed_route(validators, routes.epoch_block))
    add.add_get(f"/v1/epochs/{EPOCH}/honeypots", signed_route(validators, routes.honeypots))
    add.add_post(
        f"/v1/epochs/{EPOCH}/status", signed_route(validators, routes.status, body=StatusReport)
    )
    add.add_post(
        "/v1/s3/upload-url", signed_route(miners, routes.upload_url, body=UploadUrlRequest)
    )
    add.add_post(
        "/v1/s3/read-urls", signed_route(validators, routes.read_urls, body=ReadUrlsRequest)
    )
    add.add_post(
        "/v1/owner/references", signed_route(owner, routes.add_reference, body=HoneypotReference)
    )
    add.add_get("/v1/owner/references", signed_route(owner, routes.list_references))
    return app


@dataclass
class RunningApi:
    url: str
    port: int
    owner_hotkey: str
    store: DataStore
    blocks: BlockService
    metrics: ApiMetrics
    _server: RunningServer
    _maintenance: asyncio.Task

    async def close(self) -> None:
        self._maintenance.cancel()
        await self._server.close()
        await self.store.close()


async def _maintain_forever(store: DataStore, interval_s: float = MAINTENANCE_INTERVAL_S) -> None:
    """The store's upkeep (SQLite: WAL checkpoints, which the request path never does).

    Runs until cancelled: no failure of one round ends it, or nonces and rate
    counters would never be pruned again while the service went on answering.
    """
    while True:
        await asyncio.sleep(interval_s)
        try:
            await store.maintain()
        except sqlite3.Error as exc:  # busy or locked: the next round catches up
            logger.warning("WAL checkpoint failed: %s", exc)
        except StoreUnavailable:  # logged by the store, once per outage
            pass
        except Exception:  # the loop's boundary: anything else is logged, then retried
            logger.exception("store maintenance failed; retrying in %gs", interval_s)


async def start_data_api(
    owner_hotkey: str,
    metagraph: Callable[[], MetagraphSnapshot | None],
    options: ApiOptions,
    database: Path | str,
    secret: bytes,
    s3: S3Gateway | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    universe: Universe | None = None,
    now: Callable[[], float] = time.time,
    reuse_port: bool = False,
    limits: ServerLimits | None = None,
    pool_size: int = 10,
) -> RunningApi:
    """Open the store, build the app and serve it on ``host:port`` (0: a free port).

    ``now`` is the epoch clock's time source (tests move it; signatures are
    always checked against the real clock). ``limits``: connections, deadlines and
    body slots (``common/http_server.py``; defaults from ``config/settings.py``).
    ``database`` is a SQLite file or a ``postgresql://`` URL (``pool_size``
    connections). Raises OSError when the port is taken, StoreUnavailable
    when PostgreSQL cannot be reached.
    """
    if universe is None:
        universe = await asyncio.to_thread(load_universe)
    store = await open_store(database, options.requests_per_minute, pool_size)
    metrics = ApiMetrics()
    blocks = BlockService(
        store, universe, secret, options.epoch, options.blocks, now, metrics.blocks_issued.inc
    )
    # Listing tokens are sealed with a key of their own, derived from the block secret.
    tokens = TokenSealer(hmac.new(secret, b"read-url-tokens/v1", hashlib.sha256).digest())
    routes = Routes(owner_hotkey, options, blocks, store, s3, universe, metrics, metagraph, tokens)
    limits = limits or ServerLimits()
    connections = ConnectionGate(limits)
    app = build_app(
        routes,
        owner_hotkey,
        metagraph,
        options,
        store,
        connections,
        BodyGate(limits),
    )
    # reuse_port: several service processes (workers) may serve one port on Linux;
    # they, and instances on other hosts sharing a PostgreSQL store, share blocks,
    # nonces and rate counters through the database. Each
    # process holds its own connection cap and body slots.
    try:
        server = await serve_app(app, connections, host, port, reuse_port=reuse_port)
    except OSError:
        await store.close()
        raise
    bound = server.port  # the real port when port=0
    url = f"http://{host}:{bound}"
    maintenance = asyncio.create_task(_maintain_forever(store), name="store-maintenance")
    return RunningApi(url, bound, owner_hotkey, store, blocks, metrics, server, maintenance)
