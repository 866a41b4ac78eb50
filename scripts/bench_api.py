#!/usr/bin/env python3
"""Data API figures for ``scripts/bench.py``: signed block requests from 50 clients on loopback.

The service runs as its own process (``python -m data_api``, temp SQLite,
local chain file with 50 registered validators, access logs on, rate limit
raised above the load); 50 clients, each with its own hotkey, send
``GET /v1/epochs/current`` signed afresh for every request (nothing
pre-signed: signing is ~0.1 ms of client CPU and stays in the loop).

- ``api_rps``: throughput with the 50 clients in a closed loop (each sends
  its next request as soon as the last one is answered) for ``duration_s``.
- ``api_p99_ms`` (and ``api_p50_ms``): latency on the wire (from the send,
  after signing, to the last byte) when the 50 clients together offer
  ``offered_rps`` (500/s, the target of docs/architecture.md §8), each on a steady schedule.
- ``api_saturated_p99_ms``: the closed loop's p99, where 50 requests are
  always queued (Little's law makes it ~50 / api_rps).

With ``--store postgresql`` the same load runs against ``--instances`` N
service processes sharing one PostgreSQL (a throw-away cluster with its
durable defaults, ``sim/pg_cluster.py``); client i talks to instance
i mod N, as behind a load balancer. The figures are then named
``api_pg{N}_rps``, ``api_pg{N}_p99_ms`` and so on.

    python scripts/bench_api.py                 # one run, prints the figures as JSON
    python scripts/bench_api.py --runs 3        # medians of three runs
    python scripts/bench_api.py --runs 3 --store postgresql --instances 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
from bittensor import http_auth  # noqa: E402

from common.chain import NeuronInfo, create_chain_file  # noqa: E402
from sim.processes import spawn_data_api  # noqa: E402

CLIENTS = 50
PATH = "/v1/epochs/current"
START_TIMEOUT_S = 90.0
SECRET = "bench-api-instances-share-this-secret-0123456789"


def _keypair(uri: str):
    from bittensor.sp_core import Keypair

    return Keypair.create_from_uri(uri)


def _owner_wallet(wallets: Path):
    import bittensor as bt

    wallet = bt.Wallet(name="owner", hotkey="default", path=str(wallets))
    wallet.create_new_coldkey(use_password=False, suppress=True, overwrite=True)
    wallet.create_new_hotkey(use_password=False, suppress=True, overwrite=True)
    return wallet.hotkey.ss58_address


def _spawn(tmp: Path, chain: Path, workdir: Path, *flags: str) -> subprocess.Popen:
    (workdir / "data_api.log").unlink(missing_ok=True)  # a log of this run only
    unlimited = ("--api.rate.limit", "1000000", "--cycle.seconds", "14400")
    return spawn_data_api(chain, tmp / "wallets", workdir, *unlimited, *flags)


async def _wait_for_endpoint(tmp: Path, process: subprocess.Popen) -> dict:
    path = tmp / "data_api" / "endpoint.json"  # tmp: the instance's workdir
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = (tmp / "data_api.log").read_text()[-2000:]
            raise RuntimeError(f"data_api exited with {process.returncode}:\n{tail}")
        if path.is_file():
            return json.loads(path.read_text())
        await asyncio.sleep(0.1)  # another process's readiness cannot be awaited
    raise TimeoutError("data_api did not start")


async def _request(session: aiohttp.ClientSession, url: str, signer, api_hotkey: str) -> float:
    """One signed block request; its latency on the wire in seconds (signing excluded)."""
    headers = http_auth.sign(signer, method="GET", path=PATH, receiver_ss58=api_hotkey)
    started = time.perf_counter()
    async with session.get(url, headers=headers) as response:
        await response.read()
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status} from the Data API")
    return time.perf_counter() - started


async def _closed_loop(session, clients, api_hotkey, duration_s) -> tuple[int, float, list]:
    """``clients``: (instance URL, signer) pairs."""
    latencies: list[float] = []
    stop_at = time.perf_counter() + duration_s

    async def client(url, signer) -> None:
        while time.perf_counter() < stop_at:
            latencies.append(await _request(session, url, signer, api_hotkey))

    started = time.perf_counter()
    await asyncio.gather(*(client(url, s) for url, s in clients))
    return len(latencies), time.perf_counter() - started, latencies


async def _open_loop(session, clients, api_hotkey, offered_rps, duration_s) -> list[float]:
    """Each client sends on its own steady schedule; together they offer ``offered_rps``."""
    interval = len(clients) / offered_rps
    latencies: list[float] = []
    in_flight: set[asyncio.Task] = set()

    async def one(url, signer) -> None:
        latencies.append(await _request(session, url, signer, api_hotkey))

    async def client(index: int, url, signer) -> None:
        next_at = time.perf_counter() + interval * index / len(clients)  # staggered starts
        stop_at = time.perf_counter() + duration_s
        while next_at < stop_at:
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
            task = asyncio.create_task(one(url, signer))  # a slow answer does not delay it
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
            next_at += interval

    await asyncio.gather(*(client(i, url, s) for i, (url, s) in enumerate(clients)))
    await asyncio.gather(*list(in_flight))
    return latencies


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def bench_api(
    clients: int = CLIENTS,
    duration_s: float = 5.0,
    offered_rps: float = 500.0,
    store: str = "sqlite",
    instances: int = 1,
) -> dict:
    """Start the Data API as processes, load them, stop them; the figures (see module doc).

    ``store="postgresql"`` needs the ``postgres`` extra and Debian's postgresql
    (raises ``sim.pg_cluster.PostgresMissing`` without it).
    """
    signers = [_keypair(f"//bench-api-validator-{i}") for i in range(clients)]
    cluster = None
    flags: tuple[str, ...] = ()
    if store == "postgresql":
        from sim.pg_cluster import PostgresCluster

        cluster = PostgresCluster.start(fsync=True)  # what an operator's database does
        flags = ("--api.database.url", cluster.create_database("bench"), "--api.secret", SECRET)
    elif instances != 1:
        raise ValueError("several instances need a shared store: store='postgresql'")
    processes: list[subprocess.Popen] = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-api-") as name:
            tmp = Path(name)
            _owner_wallet(tmp / "wallets")
            chain = tmp / "chain.json"
            create_chain_file(
                chain,
                1,
                [
                    NeuronInfo(i, s.ss58_address, f"cold-{i}", 1000.0, True, None)
                    for i, s in enumerate(signers)
                ],
            )
            workdirs = [tmp / f"instance-{n}" for n in range(instances)]
            try:
                processes = [_spawn(tmp, chain, w, *flags) for w in workdirs]
                endpoints = [
                    await _wait_for_endpoint(w, p) for w, p in zip(workdirs, processes, strict=True)
                ]
                api_hotkey = endpoints[0]["hotkey"]
                urls = [e["url"] + PATH for e in endpoints]
                pairs = [(urls[i % len(urls)], s) for i, s in enumerate(signers)]
                connector = aiohttp.TCPConnector(limit=clients, force_close=False)
                async with aiohttp.ClientSession(connector=connector) as session:
                    # Warm-up: the first request derives and persists the block; connections open.
                    await asyncio.gather(*(_request(session, u, s, api_hotkey) for u, s in pairs))
                    count, elapsed, saturated = await _closed_loop(
                        session, pairs, api_hotkey, duration_s
                    )
                    paced = await _open_loop(session, pairs, api_hotkey, offered_rps, duration_s)
            finally:
                for process in processes:
                    _stop(process)
    finally:
        if cluster is not None:
            cluster.stop()
    prefix = "api" if store == "sqlite" else f"api_pg{instances}"
    return {
        f"{prefix}_rps": round(count / elapsed, 1),
        f"{prefix}_p99_ms": round(_percentile(paced, 0.99) * 1000, 2),
        f"{prefix}_p50_ms": round(_percentile(paced, 0.50) * 1000, 2),
        f"{prefix}_saturated_p99_ms": round(_percentile(saturated, 0.99) * 1000, 2),
        f"{prefix}_requests": count + len(paced),
    }


def _stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1, help="runs; medians are printed")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per phase")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--instances", type=int, default=1, help="service processes (postgresql)")
    args = parser.parse_args(argv)
    runs = [
        asyncio.run(bench_api(duration_s=args.duration, store=args.store, instances=args.instances))
        for _ in range(args.runs)
    ]
    for number, run in enumerate(runs, start=1):
        print(f"run {number}: {json.dumps(run)}", file=sys.stderr)
    figures = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    print(json.dumps(figures, indent=1))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
