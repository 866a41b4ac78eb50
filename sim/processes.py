"""Real neuron processes on loopback: wallets, a local chain file, a miner among validators.

For the tests, the benchmarks and the miner soak, which all start the real
``python -m neurons.miner`` and talk to it over signed HTTP:

    miner = start_miner(tmp, {"alice": (1000.0, True)}, "--scrape.delay", "0.1")
    try:
        ...  # miner.endpoint, miner.people["alice"].keypair
    finally:
        miner.stop()
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from common.chain import NeuronInfo, create_chain_file, read_chain_file
from common.protocol import ROUTE, DataAssignmentRequest
from common.signed_http import AccessPolicy, signed_endpoint

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Identity:
    name: str
    hotkey: str
    coldkey: str
    keypair: object


def free_port() -> int:
    """A TCP port free on loopback now (a server started on it soon after will get it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_wallet(wallets: Path, name: str) -> Identity:
    import bittensor as bt

    wallet = bt.Wallet(name=name, hotkey="default", path=str(wallets))
    wallet.create_new_coldkey(use_password=False, suppress=True, overwrite=True)
    wallet.create_new_hotkey(use_password=False, suppress=True, overwrite=True)
    return Identity(name, wallet.hotkey.ss58_address, wallet.coldkeypub.ss58_address, wallet.hotkey)


def write_chain(path: Path, rows: list[tuple[Identity, float, bool]]) -> None:
    """A local chain file: one neuron per (identity, stake, validator permit), uid in order."""
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
    argv = [sys.executable, "-m", "neurons.miner", "--env-file", "/dev/null"]
    argv += ["--subtensor.network", "localfile", "--chain.file", str(chain)]
    argv += ["--wallet.path", str(wallets), "--wallet.name", name, "--wallet.hotkey", "default"]
    argv += ["--workdir", str(workdir), "--port", "0", "--metagraph.refresh", "1", *extra]
    return subprocess.Popen(
        argv, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env, preexec_fn=preexec_fn
    )


def data_api_env() -> dict[str, str]:
    """This environment without the operator's Data API and S3 settings: a test's own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATA_API_", "S3_"))}
    return env | {"PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}


def spawn_data_api(chain: Path, wallets: Path, workdir: Path, *extra: str) -> subprocess.Popen:
    """``python -m data_api`` as wallet ``owner`` on a free port, logging to
    ``workdir/data_api.log`` (it writes ``workdir/data_api/endpoint.json`` once serving)."""
    workdir.mkdir(parents=True, exist_ok=True)
    log = open(workdir / "data_api.log", "a")  # noqa: SIM115 - closed with the process by the OS
    argv = [sys.executable, "-m", "data_api", "--env-file", "/dev/null"]
    argv += ["--subtensor.network", "localfile", "--chain.file", str(chain)]
    argv += ["--wallet.path", str(wallets), "--wallet.name", "owner", "--wallet.hotkey", "default"]
    argv += ["--workdir", str(workdir), "--api.port", "0", *extra]
    return subprocess.Popen(
        argv, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=data_api_env()
    )


def wait_for_endpoint(
    chain: Path, hotkey: str, process: subprocess.Popen, timeout: float = 30.0
) -> str:
    """The endpoint the miner published on the chain file, once it serves."""
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
    """Forget a neuron's endpoint, so that the next one it publishes can be waited for."""
    document = read_chain_file(chain)
    for neuron in document["neurons"]:
        if neuron["hotkey"] == hotkey:
            neuron["endpoint"] = None
    chain.write_text(json.dumps(document))


@dataclass
class LoopbackMiner:
    """A running miner process, the wallets of everyone on its chain, and where it logs."""

    endpoint: str
    people: dict[str, Identity]
    process: subprocess.Popen
    chain: Path
    log: Path

    @property
    def hotkey(self) -> str:
        return self.people["miner"].hotkey

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)


def start_miner(
    workdir: Path,
    others: Mapping[str, tuple[float, bool] | None],
    *extra: str,
    preexec_fn: Callable[[], None] | None = None,
) -> LoopbackMiner:
    """A miner (wallet ``miner``, stake 1, uid last) among ``others``: name -> (stake,
    permit), or None for a wallet that is not on the chain.

    Returns once the miner has published its endpoint; a miner that exits or
    never serves is killed and the error raised.
    """
    wallets = workdir / "wallets"
    people = {name: make_wallet(wallets, name) for name in [*others, "miner"]}
    chain = workdir / "chain.json"
    on_chain = [(people[n], *row) for n, row in others.items() if row is not None]
    write_chain(chain, [*on_chain, (people["miner"], 1.0, False)])
    process = spawn_miner(workdir, wallets, chain, "miner", *extra, preexec_fn=preexec_fn)
    try:
        endpoint = wait_for_endpoint(chain, people["miner"].hotkey, process)
    except (RuntimeError, TimeoutError):
        process.kill()
        raise
    return LoopbackMiner(endpoint, people, process, chain, workdir / "miner.log")


async def serve_in_process(service, policy: AccessPolicy) -> tuple[web.AppRunner, str]:
    """A miner's ``service`` behind the real signed endpoint, in this process, on a free
    loopback port: (the runner to clean up, its endpoint)."""
    app = web.Application()
    app.router.add_post(ROUTE, signed_endpoint(policy, DataAssignmentRequest, service.handle))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
