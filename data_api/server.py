"""The Data API: epoch zipcode blocks, honeypots and S3 URLs, run by the subnet owner.

Builds the process from settings: the owner's hotkey, the chain and its
metagraph sync, the block secret, the store, the S3 gateway, the server.

    python -m data_api --wallet.name owner --wallet.hotkey default --api.port 8092
    python -m data_api --help

Once serving, it writes ``endpoint.json`` (url, hotkey, pid) next to its
database, so a launcher that asked for ``--api.port 0`` learns the port.
Exit codes as the neurons: 0 stopped, 2 invalid setting, 3 chain unavailable;
and 4 when the PostgreSQL store cannot be reached at start.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
from pathlib import Path

from common.chain import open_chain
from common.http_server import ServerLimits
from common.metagraph import MetagraphSync
from common.runner import run_neuron, serve_until_stopped
from common.s3_layout import InvalidKey, check_prefix
from common.wallet import load_wallet
from config.settings import Settings, SettingsError
from data_api.app import start_data_api
from data_api.routes import ApiOptions
from data_api.s3 import S3Gateway
from data_api.secret import resolve_secret
from data_api.store import default_db_path
from data_api.stores import StoreUnavailable

logger = logging.getLogger("data_api.server")

ENDPOINT_FILE = "endpoint.json"
EXIT_STORE_UNAVAILABLE = 4  # PostgreSQL did not answer at start (a supervisor retries)


def redacted(url: str | None) -> str:
    """A database URL for the log: scheme, user, hosts, ports and database name only.

    A password, wherever the URL holds it (after the user, even an empty one, or
    in a ``?password=`` parameter), shows as ``***`` or not at all; the query
    string is dropped whole, since libpq takes any setting there.
    """
    if not url:
        return ""
    scheme, _, rest = url.partition("://")
    authority, _, path = rest.partition("/")
    # The last "@" ends the credentials: a password may hold "@" itself.
    credentials, at, hosts = authority.rpartition("@")
    user, colon, _password = credentials.partition(":")
    dbname = re.split(r"[?#]", path, maxsplit=1)[0]
    if "@" in dbname:  # a "/" in an unescaped password: no telling what is what
        return f"{scheme}://(unparsed URL)"
    shown = f"{user}{':***' if colon else ''}{at}"
    return f"{scheme}://{shown}{hosts}/{dbname}" if path else f"{scheme}://{shown}{hosts}"


def s3_gateway(settings: Settings) -> S3Gateway | None:
    if not settings.s3_bucket:
        logger.warning("no S3 bucket set (S3_BUCKET): the S3 endpoints answer 503")
        return None
    try:
        check_prefix(settings.s3_prefix)
    except InvalidKey as exc:
        raise SettingsError(f"invalid --s3.prefix / S3_PREFIX: {exc}") from None
    return S3Gateway.create(settings.s3)  # the --s3.* flags are in settings.s3 too


def _check_bucket(gateway: S3Gateway, create: bool) -> None:
    """Warn when the bucket is missing; the local preset creates it (an emulator starts empty)."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        gateway.client.head_bucket(Bucket=gateway.bucket)
        return
    except (ClientError, BotoCoreError) as exc:
        if not create:
            logger.warning("S3 bucket %s is not reachable: %s", gateway.bucket, exc)
            return
    try:
        gateway.client.create_bucket(Bucket=gateway.bucket)
        logger.info("local preset: created S3 bucket %s", gateway.bucket)
    except (ClientError, BotoCoreError) as exc:
        logger.warning("could not create S3 bucket %s: %s", gateway.bucket, exc)


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    wallet, keypair = load_wallet(settings)
    owner = keypair.ss58_address
    secret = resolve_secret(settings)
    chain = open_chain(settings.network, settings.netuid, settings.chain_file, wallet, owner)
    sync = MetagraphSync(chain, settings.metagraph_refresh_s)
    await sync.refresh()
    gateway = s3_gateway(settings)
    if gateway is not None:
        await asyncio.to_thread(_check_bucket, gateway, settings.preset == "local")
    db_path = Path(settings.api_db or default_db_path(settings.workdir))
    # endpoint.json goes beside the SQLite file even when the store is PostgreSQL.
    database = settings.api_database_url or db_path
    try:
        api = await start_data_api(
            owner,
            lambda: sync.snapshot,
            ApiOptions.from_settings(settings),
            database,
            secret,
            gateway,
            settings.api_host,
            settings.api_port,
            reuse_port=settings.api_reuse_port,
            limits=ServerLimits.from_settings(settings),
            pool_size=settings.api_database_pool,
        )
    except StoreUnavailable as exc:
        logger.error("database unreachable at start: %s", exc.detail)
        await chain.close()
        raise SystemExit(EXIT_STORE_UNAVAILABLE) from None
    endpoint = db_path.parent / ENDPOINT_FILE
    endpoint.parent.mkdir(parents=True, exist_ok=True)  # not made by a PostgreSQL store
    document = {"url": api.url, "hotkey": owner, "pid": os.getpid(), "netuid": settings.netuid}
    tmp = endpoint.with_name(f".{ENDPOINT_FILE}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(document))
    os.replace(tmp, endpoint)  # a launcher polling for it never reads half a file
    logger.info(
        "Data API serving on %s as %s (netuid %s, epochs of %gs, %s store %s)",
        api.url,
        owner,
        settings.netuid,
        settings.cycle_seconds,
        api.store.kind,
        db_path if api.store.kind == "sqlite" else redacted(settings.api_database_url),
    )
    try:
        await serve_until_stopped(stop, sync, "Data API")
    finally:
        with contextlib.suppress(OSError):
            endpoint.unlink()
        await api.close()
        await chain.close()


def main(argv: list[str] | None = None) -> int:
    return run_neuron("data_api", serve, argv, __doc__.split("\n\n")[0])
