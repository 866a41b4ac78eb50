"""Network figures for ``scripts/bench.py``: dispatch to 256 miners, acknowledgement latency.

- ``dispatch_s``: one validator sends an assignment to each of 256 miner
  endpoints on loopback (miners hosted 128 to a process in 2 other
  processes, each running the real signed endpoint, miner service and SQLite
  store); median of 4 rounds after a connection warm-up round.
- ``ack_p99_ms``: a miner in its own process; 50 validators send an
  assignment at the same moment, 20 rounds; p99 and median of the
  acknowledgement latency on the wire.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from common.chain import MetagraphSnapshot, NeuronInfo, create_chain_file
from common.protocol import ROUTE, DataAssignmentRequest
from common.signed_http import AccessPolicy, SignedClient
from consensus.assignment import MinerGroup, MinerInfo
from scraping.assignments import MinerService
from scraping.store import MinerStore
from sim.processes import make_wallet, serve_in_process, spawn_miner, wait_for_endpoint
from sim.source import SyntheticSource
from sim.world import SyntheticWorld
from vali_utils.assignments import Assignment
from vali_utils.exchange import MinerExchange

ROOT = Path(__file__).resolve().parent.parent
DISPATCH_MINERS = 256
ACK_VALIDATORS = 50
ACK_REQUESTS_EACH = 20


def _keypair(uri: str):
    from bittensor.sp_core import Keypair

    return Keypair.create_from_uri(uri)


def _request(request_id: str, zipcodes: list[str]) -> DataAssignmentRequest:
    return DataAssignmentRequest(
        request_id=request_id,
        phase="assign",
        zipcode_assignments={"ZILLOW_SOLD": zipcodes},
        batch_id=0,
        overlap_group=0,
        epoch_id="epoch-1",
    )


SERVER_PROCESSES = 2  # miners are spread over separate processes, as on real machines


def _bench_graph() -> tuple[object, list, MetagraphSnapshot]:
    validator = _keypair("//bench-validator")
    miners = [_keypair(f"//bench-miner-{i}") for i in range(DISPATCH_MINERS)]
    neurons = [NeuronInfo(0, validator.ss58_address, "cold-v", 1000.0, True, None)] + [
        NeuronInfo(i + 1, m.ss58_address, f"cold-{i}", 1.0, False, None)
        for i, m in enumerate(miners)
    ]
    return validator, miners, MetagraphSnapshot(1, 0, tuple(neurons))


async def _host_miners(first: int, count: int, tmp: Path, ready: Path) -> None:
    """Serve miners first..first+count-1 (signed endpoint, service, SQLite) until killed."""
    _, miners, graph = _bench_graph()
    world = SyntheticWorld(1)
    endpoints = {}
    for i in range(first, first + count):
        miner = miners[i]
        store = await MinerStore.open(tmp / f"m{i}.sqlite")
        # A long scrape delay keeps scraping off the CPU: this measures acknowledgement.
        source = SyntheticSource(world, miner.ss58_address, delay_s=600)
        service = MinerService(store, source, miner.ss58_address)
        policy = AccessPolicy(miner.ss58_address, lambda: graph)
        _, endpoints[i] = await serve_in_process(service, policy)
    ready.write_text(json.dumps(endpoints))
    await asyncio.Event().wait()


async def _dispatch_rounds(endpoints: dict[int, str], rounds: int = 5) -> list[float]:
    validator, miners, _ = _bench_graph()
    times = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as session:
        exchange = MinerExchange(SignedClient(validator, session), concurrency=64)
        for r in range(rounds):
            assignments = [
                Assignment(
                    MinerGroup(0, 0, ("10001",), ()),
                    MinerInfo(i + 1, m.ss58_address, f"cold-{i}"),
                    endpoints[i],
                    _request(f"round{r}-{i}", [f"{10001 + r:05d}"]),
                )
                for i, m in enumerate(miners)
            ]
            started = time.perf_counter()
            await exchange.dispatch(assignments)
            times.append(time.perf_counter() - started)
            acked = sum(a.accepted for a in assignments)
            if acked != len(assignments):
                raise RuntimeError(f"only {acked}/{len(assignments)} acknowledged")
    return times[1:]  # the first round also opens the 256 connections


def bench_dispatch() -> dict:
    per_process = DISPATCH_MINERS // SERVER_PROCESSES
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        hosts, ready_files = [], []
        for p in range(SERVER_PROCESSES):
            ready = tmp / f"ready-{p}.json"
            ready_files.append(ready)
            hosts.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        __file__,
                        "--host-miners",
                        str(p * per_process),
                        str(per_process),
                        str(tmp),
                        str(ready),
                    ],
                    cwd=ROOT,
                    env=env,
                )
            )
        try:
            deadline = time.monotonic() + 120
            while not all(f.exists() for f in ready_files):
                if time.monotonic() > deadline or any(h.poll() is not None for h in hosts):
                    raise RuntimeError("bench miner hosts did not start")
                time.sleep(0.2)
            endpoints = {
                int(k): v for f in ready_files for k, v in json.loads(f.read_text()).items()
            }
            times = asyncio.run(_dispatch_rounds(endpoints))
        finally:
            for host in hosts:
                host.terminate()
                host.wait(timeout=15)
    return {
        "dispatch_s": round(statistics.median(times), 4),
        "dispatch_s_runs": [round(t, 4) for t in times],
        "dispatch_miners": DISPATCH_MINERS,
        "dispatch_server_processes": SERVER_PROCESSES,
    }


async def _ack_load(endpoint: str, miner_hotkey: str, validators: list) -> list[float]:
    """Rounds in which every validator sends one assignment at the same moment.

    Requests are signed before the clock starts: the figure is the miner's
    acknowledgement as seen on the wire, not the load generator's own signing
    (in the field, 50 validators sign on 50 machines).
    """
    from bittensor import http_auth

    latencies: list[float] = []
    connector = aiohttp.TCPConnector(limit=ACK_VALIDATORS)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def send(raw: bytes, headers: dict) -> None:
            started = time.perf_counter()
            async with session.post(
                f"http://{endpoint}{ROUTE}", data=raw, headers=headers
            ) as response:
                body = await response.read()
                if response.status != 200:
                    raise RuntimeError(f"{response.status}: {body[:200]!r}")
            latencies.append(time.perf_counter() - started)

        for i in range(ACK_REQUESTS_EACH):
            signed = []
            for v, keypair in enumerate(validators):
                raw = (
                    _request(f"v{v}-a{i}", [f"{30001 + i:05d}"])
                    .model_dump_json(exclude_none=True)
                    .encode()
                )
                headers = http_auth.sign(
                    keypair, method="POST", path=ROUTE, body=raw, receiver_ss58=miner_hotkey
                )
                signed.append((raw, {**headers, "Content-Type": "application/json"}))
            await asyncio.gather(*(send(raw, headers) for raw, headers in signed))
            await asyncio.sleep(0.05)  # validators send in bursts, not in a closed loop
    return latencies


def bench_ack() -> dict:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        wallets = tmp / "wallets"
        miner = make_wallet(wallets, "miner")
        validators = [_keypair(f"//bench-ack-validator-{v}") for v in range(ACK_VALIDATORS)]
        chain = tmp / "chain.json"
        create_chain_file(
            chain,
            1,
            [
                NeuronInfo(v, k.ss58_address, f"cold-{v}", 1000.0, True, None)
                for v, k in enumerate(validators)
            ]
            + [NeuronInfo(ACK_VALIDATORS, miner.hotkey, "cold-m", 1.0, False, None)],
        )
        flags = ("--scrape.delay", "600", "--rate.limit", "100000")
        process = spawn_miner(tmp, wallets, chain, "miner", *flags)
        try:
            endpoint = wait_for_endpoint(chain, miner.hotkey, process, timeout=60)
            # Warm-up: every validator opens its keep-alive connection first.
            asyncio.run(_ack_load(endpoint, miner.hotkey, validators))
            latencies = sorted(asyncio.run(_ack_load(endpoint, miner.hotkey, validators)))
        finally:
            process.terminate()
            process.wait(timeout=15)
    p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
    return {
        "ack_p99_ms": round(p99 * 1e3, 2),
        "ack_median_ms": round(statistics.median(latencies) * 1e3, 2),
        "ack_requests": len(latencies),
        "ack_validators": ACK_VALIDATORS,
    }


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--host-miners":
        asyncio.run(
            _host_miners(int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4]), Path(sys.argv[5]))
        )
