"""Helpers for tests that run real neuron processes on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from bittensor import http_auth

from common.chain import NeuronInfo, create_chain_file, read_chain_file
from common.protocol import ROUTE

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Identity:
    name: str
    hotkey: str
    coldkey: str
    keypair: object


def make_wallet(wallets: Path, name: str) -> Identity:
    import bittensor as bt

    wallet = bt.Wallet(name=name, hotkey="default", path=str(wallets))
    wallet.create_new_coldkey(use_password=False, suppress=True, overwrite=True)
    wallet.create_new_hotkey(use_password=False, suppress=True, overwrite=True)
    return Identity(name, wallet.hotkey.ss58_address, wallet.coldkeypub.ss58_address, wallet.hotkey)


def write_chain(path: Path, rows: list[tuple[Identity, float, bool]]) -> None:
    create_chain_file(
        path,
        1,
        [
            NeuronInfo(uid, who.hotkey, who.coldkey, stake, permit, None)
            for uid, (who, stake, permit) in enumerate(rows)
        ],
    )


def spawn_miner(
    workdir: Path,
    wallets: Path,
    chain: Path,
    name: str,
    *extra: str,
    preexec_fn: Callable[[], None] | None = None,
) -> subprocess.Popen:
    """A miner process for wallet ``name`` on the local chain file, logging to
    ``workdir/<name>.log``; ``extra`` flags come last, ``preexec_fn`` runs in the child
    before the miner starts (to lower a resource limit, say)."""
    log = open(workdir / f"{name}.log", "a")  # noqa: SIM115 - closed with the process by the OS
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    argv = [
        sys.executable,
        "-m",
        "neurons.miner",
        "--env-file",
        "/dev/null",
        "--subtensor.network",
        "localfile",
        "--chain.file",
        str(chain),
        "--wallet.path",
        str(wallets),
        "--wallet.name",
        name,
        "--wallet.hotkey",
        "default",
        "--workdir",
        str(workdir),
        "--port",
        "0",
        "--metagraph.refresh",
        "1",
        *extra,
    ]
    return subprocess.Popen(
        argv, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env, preexec_fn=preexec_fn
    )


def wait_for_endpoint(
    chain: Path, hotkey: str, process: subprocess.Popen, timeout: float = 30.0
) -> str:
    """The endpoint the miner published, once it answers /health."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"miner exited with {process.returncode}")
        neuron = next(n for n in read_chain_file(chain)["neurons"] if n["hotkey"] == hotkey)
        if neuron["endpoint"]:
            return neuron["endpoint"]
        time.sleep(0.1)
    raise TimeoutError("miner did not publish an endpoint")


def clear_endpoint(chain: Path, hotkey: str) -> None:
    document = read_chain_file(chain)
    for neuron in document["neurons"]:
        if neuron["hotkey"] == hotkey:
            neuron["endpoint"] = None
    chain.write_text(json.dumps(document))


async def post_signed(
    session: aiohttp.ClientSession,
    endpoint: str,
    signer,
    receiver: str,
    body: bytes,
    *,
    path: str = ROUTE,
    nonce_ns: int | None = None,
    headers: dict | None = None,
) -> tuple[int, dict, dict]:
    """POST raw bytes signed by ``signer``; returns (status, json body, response headers)."""
    if headers is None:
        kwargs = {"nonce_ns": nonce_ns} if nonce_ns is not None else {}
        headers = http_auth.sign(
            signer, method="POST", path=path, body=body, receiver_ss58=receiver, **kwargs
        )
    async with session.post(
        f"http://{endpoint}{path}",
        data=body,
        headers={**headers, "Content-Type": "application/json"},
    ) as response:
        return response.status, await response.json(content_type=None), dict(response.headers)
