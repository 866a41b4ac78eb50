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

    python scripts/bench_api.py                 # one run, prints the figures as JSON
    python scripts/bench_api.py --runs 3        # medians of three runs
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
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

CLIENTS = 50
PATH = "/v1/epochs/current"
START_TIMEOUT_S = 90.0


def _keypair(uri: str):
    from bittensor.sp_core import Keypair

    return Keypair.create_from_uri(uri)


def _owner_wallet(wallets: Path):
    import bittensor as bt

    wallet = bt.Wallet(name="owner", hotkey="default", path=str(wallets))
    wallet.create_new_coldkey(use_password=False, suppress=True, overwrite=True)
    wallet.create_new_hotkey(use_password=False, suppress=True, overwrite=True)
    return wallet.hotkey.ss58_address


def _spawn(tmp: Path, chain: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATA_API_", "S3_"))}
    env |= {"PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    log = open(tmp / "data_api.log", "w")  # noqa: SIM115 - closed with the process by the OS
    argv = [
        sys.executable,
        "-m",
        "data_api",
        "--env-file",
        "/dev/null",
        "--subtensor.network",
        "localfile",
        "--chain.file",
        str(chain),
        "--wallet.path",
        str(tmp / "wallets"),
        "--wallet.name",
        "owner",
        "--wallet.hotkey",
        "default",
        "--workdir",
        str(tmp),
        "--api.port",
        "0",
        "--api.rate.limit",
        "1000000",
        "--cycle.seconds",
        "14400",
    ]
    return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env)


async def _wait_for_endpoint(tmp: Path, process: subprocess.Popen) -> dict:
    path = tmp / "data_api" / "endpoint.json"
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


async def _closed_loop(session, url, signers, api_hotkey, duration_s) -> tuple[int, float, list]:
    latencies: list[float] = []
    stop_at = time.perf_counter() + duration_s

    async def client(signer) -> None:
        while time.perf_counter() < stop_at:
            latencies.append(await _request(session, url, signer, api_hotkey))

    started = time.perf_counter()
    await asyncio.gather(*(client(s) for s in signers))
    return len(latencies), time.perf_counter() - started, latencies


async def _open_loop(session, url, signers, api_hotkey, offered_rps, duration_s) -> list[float]:
    """Each client sends on its own steady schedule; together they offer ``offered_rps``."""
    interval = len(signers) / offered_rps
    latencies: list[float] = []
    in_flight: set[asyncio.Task] = set()

    async def one(signer) -> None:
        latencies.append(await _request(session, url, signer, api_hotkey))

    async def client(index: int, signer) -> None:
        next_at = time.perf_counter() + interval * index / len(signers)  # staggered starts
        stop_at = time.perf_counter() + duration_s
        while next_at < stop_at:
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
            task = asyncio.create_task(one(signer))  # a slow answer does not delay the schedule
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
            next_at += interval

    await asyncio.gather(*(client(i, s) for i, s in enumerate(signers)))
    await asyncio.gather(*list(in_flight))
    return latencies


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def bench_api(
    clients: int = CLIENTS,
    duration_s: float = 5.0,
    offered_rps: float = 500.0,
) -> dict:
    """Start the Data API as a process, load it, stop it; returns the figures (see module doc)."""
    signers = [_keypair(f"//bench-api-validator-{i}") for i in range(clients)]
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
        process = _spawn(tmp, chain)
        try:
            endpoint = await _wait_for_endpoint(tmp, process)
            url, api_hotkey = endpoint["url"] + PATH, endpoint["hotkey"]
            connector = aiohttp.TCPConnector(limit=clients, force_close=False)
            async with aiohttp.ClientSession(connector=connector) as session:
                # Warm-up: the first request derives and persists the block; connections open.
                await asyncio.gather(*(_request(session, url, s, api_hotkey) for s in signers))
                count, elapsed, saturated = await _closed_loop(
                    session, url, signers, api_hotkey, duration_s
                )
                paced = await _open_loop(session, url, signers, api_hotkey, offered_rps, duration_s)
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
    return {
        "api_rps": round(count / elapsed, 1),
        "api_p99_ms": round(_percentile(paced, 0.99) * 1000, 2),
        "api_p50_ms": round(_percentile(paced, 0.50) * 1000, 2),
        "api_saturated_p99_ms": round(_percentile(saturated, 0.99) * 1000, 2),
        "api_requests": count + len(paced),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1, help="runs; medians are printed")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per phase")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    runs = [asyncio.run(bench_api(duration_s=args.duration)) for _ in range(args.runs)]
    for number, run in enumerate(runs, start=1):
        print(f"run {number}: {json.dumps(run)}", file=sys.stderr)
    figures = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    print(json.dumps(figures, indent=1))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
