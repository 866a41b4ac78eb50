"""Miner entry point: serve ``POST /DataAssignmentRequest`` over signed HTTP.

    python -m neurons.miner --wallet.name miner --wallet.hotkey default --port 8091
    python -m neurons.miner --help

Parses settings, builds the parts (wallet, chain, metagraph sync, store,
source, service, HTTP server), publishes the endpoint and runs until SIGINT
or SIGTERM.
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp
from aiohttp import web

from common.chain import ChainUnavailable, open_chain
from common.epochs import EpochClock
from common.http_server import BodyGate, ConnectionGate, ServerLimits, serve_app
from common.metagraph import MetagraphSync
from common.protocol import ROUTE, DataAssignmentRequest
from common.runner import run_neuron, serve_until_stopped
from common.signed_http import AccessPolicy, RateLimiter, signed_endpoint
from common.wallet import load_wallet
from config.settings import EPOCH_CLOCK_SLACK_S, Settings
from scraping.assignments import MinerService
from scraping.epoch_gate import EpochGate, NonceBook
from scraping.fairness import QuotaPolicy
from scraping.metrics import MinerMetrics
from scraping.registry import build_answering, source_from_settings
from scraping.retention import FALLBACK_EPOCH_S, Retention
from scraping.store import MinerStore
from scraping.upload_setup import open_uploader

logger = logging.getLogger("neurons.miner")


def epoch_gate(settings: Settings) -> EpochGate:
    """The current-epoch check: the wall clock and CYCLE_SECONDS, unless turned off."""
    clock = (
        EpochClock(settings.cycle_seconds, settings.collect_fraction)
        if settings.check_epochs
        else None
    )
    return EpochGate(clock, EPOCH_CLOCK_SLACK_S, NonceBook())


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    wallet, keypair = load_wallet(settings)
    hotkey = keypair.ss58_address
    chain = open_chain(settings.network, settings.netuid, settings.chain_file, wallet, hotkey)
    sync = MetagraphSync(chain, settings.metagraph_refresh_s)
    await sync.refresh()
    if sync.snapshot.by_hotkey(hotkey) is None:
        logger.warning("hotkey %s is not registered on netuid %s yet", hotkey, settings.netuid)

    store = await MinerStore.open(settings.state_dir / "miner.sqlite")
    source = source_from_settings(settings, hotkey)
    # Honest unless the local subnet asks for a simulator behaviour (--behaviour).
    answering = build_answering(settings.behaviour, source, hotkey)
    session = aiohttp.ClientSession()  # outbound: the Data API and presigned uploads
    epochs = epoch_gate(settings)
    uploader, close_uploader = await open_uploader(
        settings, keypair, session, on_grant=epochs.nonces.learn
    )
    service = MinerService(
        store,
        source,
        hotkey,
        concurrency=settings.scrape_concurrency,
        answering=answering,
        uploader=uploader,
        signer=keypair,  # commitments go out signed by the hotkey (validators require it)
        quotas=QuotaPolicy(
            lambda: sync.snapshot,
            settings.min_validator_stake,
            settings.max_open_assignments,
            settings.min_open_assignments,
        ),
        epochs=epochs,
        # The production epoch when epochs are not checked (the local preset's varies).
        retention=Retention.epochs(
            settings.cycle_seconds if settings.check_epochs else FALLBACK_EPOCH_S,
            settings.retention_epochs,
        ),
    )
    await service.start()
    MinerMetrics(service, source).serve(settings.metrics_port, settings.host)

    limits = ServerLimits.from_settings(settings)
    connections = ConnectionGate(limits)
    policy = AccessPolicy(
        self_hotkey=hotkey,
        metagraph=lambda: sync.snapshot,
        require_validator_permit=True,
        min_stake=settings.min_validator_stake,
        max_body_bytes=settings.max_body_bytes,
        rate_limiter=RateLimiter(settings.requests_per_minute),
        body_gate=BodyGate(limits),
    )
    app = web.Application(
        client_max_size=settings.max_body_bytes + 1024, middlewares=[connections.middleware]
    )
    app.router.add_post(ROUTE, signed_endpoint(policy, DataAssignmentRequest, service.handle))
    app.router.add_get("/health", lambda _r: web.json_response({"status": "ok", "hotkey": hotkey}))
    server = await serve_app(app, connections, settings.host, settings.port)
    port = server.port  # the real port when --port 0
    ip = settings.external_ip or settings.host
    logger.info(
        "miner %s serving on %s:%d (netuid %s); validators need stake %g, share %d open"
        " assignments by stake (at least %d each); epochs %s",
        hotkey,
        settings.host,
        port,
        settings.netuid,
        settings.min_validator_stake,
        settings.max_open_assignments,
        settings.min_open_assignments,
        f"of {settings.cycle_seconds:g}s checked" if settings.check_epochs else "not checked",
    )
    try:
        await chain.publish_endpoint(ip, port)
        logger.info("published endpoint %s:%d", ip, port)
    except ChainUnavailable as exc:
        logger.error("could not publish endpoint %s:%d: %s", ip, port, exc)

    try:
        await serve_until_stopped(stop, sync, "miner")
    finally:
        await service.stop()
        await close_uploader()
        await session.close()
        await server.close()
        await store.close()
        close = getattr(source, "close", None)
        if close is not None:
            await close()
        await chain.close()


def main(argv: list[str] | None = None) -> int:
    return run_neuron("miner", serve, argv, __doc__.split("\n\n")[0])


if __name__ == "__main__":
    raise SystemExit(main())
