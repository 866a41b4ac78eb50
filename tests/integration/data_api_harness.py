"""Shared by the Data API's integration tests: a subnet of real wallets, the service, S3.

subnet = make_subnet(tmp)                     # wallets, chain.json, who is who
async with running(subnet, db, clock, s3=endpoint, requests_per_minute=5) as api:
    status, payload, headers = await call(session, api, subnet.people["validator"], "GET", path)
endpoint, stop = start_s3()                   # moto's S3 server on loopback, bucket made
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import aiohttp
import yarl
from bittensor import http_auth

from common.chain import LocalFileChain
from common.data_api_models import UploadUrlRequest
from common.epochs import EpochClock
from common.metagraph import MetagraphSync
from config.data_api import BlockConfig
from config.storage import S3Settings
from data_api.app import RunningApi, start_data_api
from data_api.routes import ApiOptions
from data_api.s3 import S3Gateway
from sim.processes import Identity, free_port, make_wallet, write_chain

SECRET = b"integration-test-secret-32-characters"
EPOCH_S = 3600.0
BUCKET = "subnet-data"
S3_KEY = "testing"


class Clock:
    """The service's epoch clock (signatures are always checked against the real one)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Subnet:
    root: Path
    chain: Path
    people: dict[str, Identity]
    epoch: int = field(default_factory=lambda: int(time.time() // EPOCH_S))

    @property
    def owner(self) -> Identity:
        return self.people["owner"]

    def clock(self, into_epoch_s: float = 60.0) -> Clock:
        return Clock(self.epoch * EPOCH_S + into_epoch_s)


ROLES = {  # name: (stake, validator permit); the owner is deliberately not registered
    "validator": (1000.0, True),
    "validator2": (1000.0, True),
    "poor": (1.0, True),
    "nopermit": (1000.0, False),
    "miner": (1.0, False),
    "miner2": (1.0, False),
}


def make_subnet(root: Path) -> Subnet:
    wallets = root / "wallets"
    people = {n: make_wallet(wallets, n) for n in [*ROLES, "owner", "stranger"]}
    chain = root / "chain.json"
    write_chain(chain, [(people[n], stake, permit) for n, (stake, permit) in ROLES.items()])
    return Subnet(root, chain, people)


def start_s3() -> tuple[str, Callable[[], None]]:
    """A real S3 protocol server (moto) on loopback with the subnet's bucket: (endpoint, stop)."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    gateway(endpoint).client.create_bucket(Bucket=BUCKET)
    return endpoint, server.stop


def gateway(endpoint: str) -> S3Gateway:
    return S3Gateway.create(
        S3Settings(
            endpoint_url=endpoint,
            bucket=BUCKET,
            prefix="data",
            access_key_id=S3_KEY,
            secret_access_key=S3_KEY,
        )
    )


def options(**overrides) -> ApiOptions:
    blocks = overrides.pop("blocks", BlockConfig())
    base = ApiOptions(
        epoch=EpochClock(EPOCH_S, 0.5),
        blocks=blocks,
        min_validator_stake=10.0,
        requests_per_minute=10_000,
        max_body_bytes=64 * 1024,
        upload_max_bytes=1024 * 1024,
        url_expiry_s=600,
    )
    return replace(base, **overrides)


@contextlib.asynccontextmanager
async def running(
    subnet: Subnet,
    db: Path,
    clock: Clock | None = None,
    s3: str | None = None,
    secret: bytes = SECRET,
    **option_overrides,
) -> AsyncIterator[RunningApi]:
    sync = MetagraphSync(LocalFileChain(subnet.chain))
    await sync.refresh()
    api = await start_data_api(
        subnet.owner.hotkey,
        lambda: sync.snapshot,
        options(**option_overrides),
        db,
        secret,
        gateway(s3) if s3 else None,
        now=clock or subnet.clock(),
    )
    try:
        yield api
    finally:
        await api.close()


async def call(
    session: aiohttp.ClientSession,
    api: RunningApi,
    signer: Identity | None,
    method: str,
    path: str,
    body: bytes = b"",
    *,
    receiver: str | None = None,
    nonce_ns: int | None = None,
    headers: dict | None = None,
) -> tuple[int, dict, Mapping[str, str]]:
    """Send ``body`` signed by ``signer`` (unsigned when None); (status, json, headers)."""
    if headers is None:
        headers = {}
        if signer is not None:
            kwargs = {"nonce_ns": nonce_ns} if nonce_ns is not None else {}
            headers = http_auth.sign(
                signer.keypair,
                method=method,
                path=path,
                body=body,
                receiver_ss58=receiver or api.owner_hotkey,
                **kwargs,
            )
    url = yarl.URL(api.url + path, encoded=True)
    async with session.request(method, url, data=body or None, headers=headers) as response:
        raw = await response.read()
        try:
            payload = json.loads(raw)
        except ValueError:
            payload = {"raw": raw.decode(errors="replace")}
        return response.status, payload, response.headers.copy()  # case-insensitive


def assert_json_error(status: int, payload: dict, code: str | None = None) -> None:
    assert set(payload) == {"error"}, payload
    assert set(payload["error"]) == {"code", "message", "request_id"}, payload
    assert payload["error"]["request_id"]
    assert "Traceback" not in json.dumps(payload)
    assert SECRET.decode() not in json.dumps(payload)
    if code is not None:
        assert payload["error"]["code"] == code, payload


def model(body: object) -> bytes:
    return body.model_dump_json(exclude_none=True).encode()  # type: ignore[attr-defined]


def upload_request(epoch: int, zipcode: str, data: bytes, **overrides) -> UploadUrlRequest:
    values = {
        "epoch_id": epoch,
        "source": "ZILLOW_SOLD",
        "zipcode": zipcode,
        "content_hash": hashlib.sha256(data).hexdigest(),
        "size_bytes": len(data),
    }
    return UploadUrlRequest.model_validate(values | overrides)


async def post_presigned(session: aiohttp.ClientSession, upload: dict, data: bytes) -> int:
    form = aiohttp.FormData()
    for name, value in upload["fields"].items():
        form.add_field(name, value)
    form.add_field("file", data, filename="records.jsonl.gz")
    async with session.post(upload["url"], data=form) as response:
        return response.status
