"""Validator entry point: consensus cycles on epoch boundaries, scores, weights.

    python -m neurons.validator --wallet.name validator --wallet.hotkey default
    python -m neurons.validator status --wallet.name validator --workdir ./workdir
    python -m neurons.validator reset-state --wallet.name validator --workdir ./workdir
    python -m neurons.validator --help

Each epoch (``--cycle.seconds``, aligned to multiples of it on the wall clock
so every validator works on the same epoch) it takes the epoch's block, builds
the plan, dispatches assignments, collects manifests until
``--collect.fraction`` of the epoch has passed, settles the groups'
disagreements with tie-break lookups by fresh miners (until half of the rest
of the epoch has passed), runs consensus and scoring, and sets weights
through the chain adapter (``vali_utils/evaluator.py``). Its state lives in
``<workdir>/validator-<wallet>-<hotkey>/validator.sqlite``: killed at any
point, it resumes the cycle it was in. ``status`` prints that state without
touching the running process; ``--status.port`` serves it read-only as a web
page (``vali_utils/status_server.py``).

A state store that cannot be trusted (corrupt, truncated, not a database, an
existing file with no schema, or one whose history is gone) stops the
validator at start with one line naming the file and exit code 4, and the file
is left as it is: a restart under pm2 cannot lose the scoring history. After a
look at it (or a backup restored), ``reset-state`` moves the store aside
(timestamped) and the next start begins with no history.
"""

from __future__ import annotations

import asyncio
import logging
import sys

import aiohttp

from common.chain import open_chain
from common.epochs import EpochClock
from common.http_server import RunningServer, ServerLimits
from common.memory import pin_mmap_threshold
from common.metagraph import MetagraphSync
from common.runner import run_neuron
from common.signed_http import SignedClient
from common.wallet import load_wallet
from common.watchdog import Watchdog
from config.consensus import AssignmentConfig, ConsensusConfig
from config.settings import Settings, SettingsError
from consensus.assignment import ZipcodeAssignmentManager
from consensus.engine import ConsensusEngine
from data_api.universe import load_universe
from scraping.registry import source_from_settings
from scraping.source import PropertyLookup
from vali_utils.api_blocks import ApiBlocks
from vali_utils.blocks import EpochBlock, LocalBlockSource
from vali_utils.cycle import ConsensusCycle
from vali_utils.data_api_client import ValidatorDataAPI
from vali_utils.dataset.cycle_export import dataset_export
from vali_utils.evaluator import EnhancedMinerEvaluator
from vali_utils.metrics import ValidatorMetrics
from vali_utils.s3_evaluation_pass import S3EvaluationPass, open_s3
from vali_utils.spot_check import SourceVerifier, SpotChecker
from vali_utils.status_server import serve_status
from vali_utils.status_view import StatusReader
from vali_utils.storage_watch import build_watch
from vali_utils.store import ValidatorStore
from vali_utils.store_file import StoreUnusable

logger = logging.getLogger("neurons.validator")

EXIT_STORE_UNUSABLE = 4  # the state store cannot be used as it is (see StoreUnusable)
DESCRIPTION = (
    "Validator: consensus cycles on epoch boundaries, scores, weights. Commands:"
    " `status` prints what the validator is doing, from its state store;"
    " `reset-state` moves a state store aside so the next start begins with no history"
    " (each takes the same flags; `status --help`, `reset-state --help`)."
)
WATCHDOG_EPOCHS = 3.0  # default watchdog limit, in epochs
S3_PASSES_PER_EPOCH = 24  # at most one S3 evaluation round per 1/24 epoch (10 min at 4 h)


class LocalBlocks:
    """Blocks derived locally from (netuid, epoch), until the Data API serves them."""

    def __init__(self, source: LocalBlockSource) -> None:
        self.source = source

    async def block(self, epoch: int) -> EpochBlock:
        return self.source.block(epoch)


async def validate(settings: Settings, stop: asyncio.Event) -> None:
    pin_mmap_threshold()  # each cycle's big arrays go back to the OS, not into the heap
    # The store first: a store that cannot be used stops the validator before it
    # talks to anyone, and nothing it would do could then touch the file.
    store = await open_store(settings)
    try:
        await _validate(settings, stop, store)
    finally:
        await store.close()


async def open_store(settings: Settings) -> ValidatorStore:
    """The validator's state store; exits with one line for a store that cannot be used."""
    path = settings.state_dir / "validator.sqlite"
    try:
        return await ValidatorStore.open(
            path, legacy_state=settings.state_dir / "scoring_state.json"
        )
    except StoreUnusable as exc:
        print(
            f"validator: state store {exc.path} is unusable: {exc.problem}. The file is left"
            " as it is: restore a backup, or run `python -m neurons.validator reset-state`"
            " with the same flags to move it aside and start with no history",
            file=sys.stderr,
        )
        raise SystemExit(EXIT_STORE_UNUSABLE) from None


async def _validate(settings: Settings, stop: asyncio.Event, store: ValidatorStore) -> None:
    wallet, keypair = load_wallet(settings)
    hotkey = keypair.ss58_address
    chain = open_chain(settings.network, settings.netuid, settings.chain_file, wallet, hotkey)
    sync = MetagraphSync(chain, settings.metagraph_refresh_s)
    graph = await sync.refresh()
    me = graph.by_hotkey(hotkey)
    if me is None or not me.validator_permit:
        logger.warning("hotkey %s has no validator permit on netuid %s", hotkey, settings.netuid)
    sync.on_change(lambda old, new: logger.info("metagraph changed: %d neurons", len(new.neurons)))

    # Spot checks through the validator's own source (the synthetic market's
    # only for --scraper synthetic: a spot check reads one listing, so a few
    # zipcodes of its cache are plenty and it stays a few MB however long it runs).
    source = source_from_settings(settings, hotkey, synthetic_cache_zipcodes=16)
    if not isinstance(source, PropertyLookup):
        raise SettingsError(f"--scraper {settings.scraper} cannot fetch single properties")
    verifier = SourceVerifier(source, settings.request_timeout_s * 6)
    metrics = ValidatorMetrics()
    metrics.serve(settings.metrics_port, settings.host)
    # One checker for the cycle and the S3 pass: a verifier's bugs are counted, not swallowed.
    checker = SpotChecker(verifier, failures=metrics.spot_check_failures)
    watchdog = Watchdog(
        settings.watchdog_s or WATCHDOG_EPOCHS * settings.cycle_seconds,
        "consensus cycle, S3 evaluation pass or weight-set",
    )
    watchdog.start()
    refresher = asyncio.create_task(sync.run(), name="metagraph-sync")
    status = await start_status_page(settings)
    connector = aiohttp.TCPConnector(limit=settings.dispatch_concurrency)
    try:
        async with aiohttp.ClientSession(connector=connector) as session:
            blocks, honeypots = _blocks(settings, keypair, session)
            api = blocks.api if isinstance(blocks, ApiBlocks) else None
            report_status = blocks.report_status if api is not None else None
            s3 = open_s3(settings, api, session)
            schedule = EpochClock(settings.cycle_seconds, settings.collect_fraction)
            watch = build_watch(settings.cycle_seconds, api, s3, metrics, settings.s3_eval)
            s3_pass = (
                S3EvaluationPass(
                    s3,
                    checker,
                    config=settings.s3_eval,
                    reports_dir=settings.state_dir / "s3",
                    metrics=metrics,
                    watch=watch,
                    upload_window=lambda e: (schedule.start(e), schedule.deadline(e)),
                )
                if s3 is not None
                else None
            )
            cycle = ConsensusCycle(
                SignedClient(keypair, session, settings.request_timeout_s),
                ConsensusEngine(ConsensusConfig()),
                # Local settings: a Data API block's settings override them (logged once).
                ZipcodeAssignmentManager(
                    AssignmentConfig(miners_per_group=settings.miners_per_group)
                ),
                checker,
                concurrency=settings.dispatch_concurrency,
                poll_s=max(0.5, min(10.0, settings.cycle_seconds / 20)),
                request_timeout_s=settings.request_timeout_s,
                store=store,
                honeypots=honeypots,
                s3=s3,
                provenance=settings.dataset_export,
            )
            evaluator = EnhancedMinerEvaluator(
                chain,
                sync,
                cycle,
                blocks,
                store,
                schedule,
                reports_dir=settings.state_dir / "cycles",
                metrics=metrics,
                max_cycles=settings.max_cycles,
                watchdog=watchdog,
                report_status=report_status,
                dataset=dataset_export(settings, s3, hotkey),
                s3_pass=s3_pass,
                s3_pass_interval_s=max(1.0, settings.cycle_seconds / S3_PASSES_PER_EPOCH),
                s3_config=settings.s3_eval,
            )
            watching = watch and asyncio.create_task(watch.run(stop), name="storage-watch")
            try:
                await evaluator.run(stop)
            finally:
                if watching:
                    watching.cancel()  # and gone before the session its probes use closes
                    await asyncio.gather(watching, return_exceptions=True)
            if settings.max_cycles and evaluator.cycles_run >= settings.max_cycles:
                logger.info("ran %d cycles; stopping as asked", evaluator.cycles_run)
    finally:
        if status is not None:
            await status.close()
        watchdog.stop()
        refresher.cancel()
        await chain.close()


async def start_status_page(settings: Settings) -> RunningServer | None:
    """The read-only status page on ``--status.port`` (None when 0: off)."""
    if not settings.status_port:
        return None
    reader = StatusReader(
        settings.state_dir, EpochClock(settings.cycle_seconds, settings.collect_fraction)
    )
    return await serve_status(
        reader, settings.host, settings.status_port, ServerLimits.from_settings(settings)
    )


def _blocks(settings: Settings, keypair, session):
    """Blocks and honeypots from the Data API when one is configured, else derived locally."""
    if not settings.data_api_url:
        logger.info("no --data_api.url: blocks derived locally from (netuid, epoch), no honeypots")
        source = LocalBlockSource(settings.netuid, local_universe(), settings.zipcodes_per_cycle)
        return LocalBlocks(source), None
    if not settings.data_api_hotkey:
        raise SettingsError(
            "--data_api.url / DATA_API_URL needs --data_api.hotkey / DATA_API_HOTKEY"
        )
    try:
        api = ValidatorDataAPI(
            settings.data_api_url,
            settings.data_api_hotkey,
            keypair,
            session,
            cache_path=settings.state_dir / "block.json",
            timeout_s=settings.request_timeout_s * 2,
        )
    except ValueError as exc:
        raise SettingsError(f"invalid --data_api.url / DATA_API_URL: {exc}") from exc
    logger.info("blocks and honeypots from the Data API at %s", settings.data_api_url)
    blocks = ApiBlocks(api)
    return blocks, blocks.honeypots


def local_universe() -> list[str]:
    """The zipcodes local blocks are drawn from: the Data API's residential universe.

    Raises SettingsError when the ``zipcodes`` package (the ``api`` or
    ``local`` extra) is not installed.
    """
    try:
        return [info.zipcode for info in load_universe().residential]
    except ImportError as exc:
        raise SettingsError(
            "no --data_api.url: blocks derived locally draw from the zipcodes package;"
            f" install the api extra (pip install '.[api]') ({exc})"
        ) from exc


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["status"]:
        from neurons.validator_status import status_main

        return status_main(argv[1:])
    if argv[:1] == ["reset-state"]:
        from neurons.validator_status import reset_main

        return reset_main(argv[1:])
    return run_neuron("validator", validate, argv, DESCRIPTION)


if __name__ == "__main__":
    raise SystemExit(main())
