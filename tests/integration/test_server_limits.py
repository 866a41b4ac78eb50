"""Hostile peers cannot exhaust a miner or the Data API through their HTTP servers (issue 15).

Incidents, measured against a served local subnet:
- bodies were read before the signature was checked: 200 connections of
  unsigned 4 MB bodies took a miner from 197 MB to 1.24 GB, and it stayed there;
  each dropped connection logged a 20-line traceback;
- no read deadlines and no connection cap: with the common open-file limit of
  1,024, 1,000 slow-header or slow-body connections were never closed, and the
  miner answered 0 of 5 requests from the honest validator.

Real processes on loopback; the server's memory is read from
``/proc/PID/status`` (its peak, VmHWM, reset before each attack).
"""

from __future__ import annotations

import asyncio
import resource
import signal
import time
from pathlib import Path

import aiohttp
import pytest

from common.protocol import ROUTE
from sim.processes import LoopbackMiner, start_miner
from tests.integration.data_api_harness import make_subnet
from tests.integration.neurons import collect_body, post_signed, sign_body
from tests.integration.test_data_api_process import spawn as spawn_data_api
from tests.integration.test_data_api_process import wait_for_endpoint as wait_for_data_api

pytestmark = [pytest.mark.integration, pytest.mark.slow]

OPEN_FILE_LIMIT = 1024
HEADER_TIMEOUT_S = 2.0
BODY_TIMEOUT_S = 2.0
UNSIGNED_BODIES = 200
UNSIGNED_BODY_BYTES = 4_000_000  # under the 4 MiB body cap: refused for its headers alone
MAX_SERVER_GROWTH_MB = 100
SLOW_CONNECTIONS = 1000
HONEST_WITHIN_S = 1.0
# 1,000 connections on a shared 2-core machine: the server closes them at the
# deadline, and the last of them is seen closed a little later.
CLOSE_SLACK_S = 3.0


def memory_kb(pid: int) -> dict[str, int]:
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            found[name] = int(value.split()[0])
    return found


def reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS


def signed_collect_headers(miner: LoopbackMiner, request_id: str) -> dict[str, str]:
    """The validator's btauth/1 headers for a collect of ``request_id`` sent to ``miner``."""
    return sign_body(miner.people["validator"].keypair, miner.hotkey, collect_body(request_id))


def _limit_open_files() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (OPEN_FILE_LIMIT, OPEN_FILE_LIMIT))


@pytest.fixture(scope="module")
def miner(tmp_path_factory):
    """A miner process with an open-file limit of 1,024 and 2 s header and body deadlines."""
    deadlines = ("--http.header.timeout", str(HEADER_TIMEOUT_S))
    deadlines += ("--http.body.timeout", str(BODY_TIMEOUT_S))
    started = start_miner(
        tmp_path_factory.mktemp("server-limits"),
        {"validator": (1000.0, True)},
        *deadlines,
        preexec_fn=_limit_open_files,
    )
    try:
        yield started
    finally:
        started.stop()


async def honest_call(miner: LoopbackMiner, request_id: str) -> tuple[int, float]:
    """A registered validator's signed request on a new connection: (status, seconds)."""
    people = miner.people
    started = time.monotonic()
    async with aiohttp.ClientSession() as session:
        status, _, _ = await post_signed(
            session,
            miner.endpoint,
            people["validator"].keypair,
            people["miner"].hotkey,
            collect_body(request_id),
        )
    return status, time.monotonic() - started


async def send_unsigned(host: str, port: int, path: str, size: int) -> bytes:
    """POST ``size`` bytes without auth headers; the status line, or b"" if the server reset."""
    reader, writer = await asyncio.open_connection(host, port)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {size}\r\n\r\n"
    )
    chunk = b"x" * (64 * 1024)

    async def send_body() -> None:
        writer.write(head.encode())
        for _ in range(size // len(chunk)):
            writer.write(chunk)
            await writer.drain()  # pace with the server, so this process holds no 4 MB copy
        writer.write(b"x" * (size % len(chunk)))
        await writer.drain()

    sender = asyncio.create_task(send_body())
    try:
        answer = await reader.readline()
    except ConnectionError:
        answer = b""
    sender.cancel()
    await asyncio.gather(sender, return_exceptions=True)
    writer.close()
    return answer


def flood_and_measure(pid: int, host: str, port: int, path: str) -> tuple[float, list[bytes]]:
    """200 unsigned 4 MB bodies at once: (the server's peak growth in MB, status lines)."""
    reset_peak(pid)
    before = memory_kb(pid)["VmRSS"]

    async def flood() -> list[bytes]:
        sends = [
            send_unsigned(host, port, path, UNSIGNED_BODY_BYTES) for _ in range(UNSIGNED_BODIES)
        ]
        return await asyncio.wait_for(asyncio.gather(*sends), timeout=30)

    answers = asyncio.run(flood())
    return (memory_kb(pid)["VmHWM"] - before) / 1024, answers


def test_unsigned_bodies_leave_the_miner_small(miner):
    host, port = miner.endpoint.rsplit(":", 1)
    growth_mb, answers = flood_and_measure(miner.process.pid, host, int(port), ROUTE)
    assert growth_mb < MAX_SERVER_GROWTH_MB, growth_mb
    # Refused for their headers (some clients see the reset before the answer).
    assert all(a.startswith(b"HTTP/1.1 401") or a == b"" for a in answers), set(answers)
    assert any(a.startswith(b"HTTP/1.1 401") for a in answers)
    status, elapsed = asyncio.run(honest_call(miner, "after-flood"))
    assert status == 200 and elapsed < HONEST_WITHIN_S
    log = miner.log.read_text()
    assert "Traceback" not in log


def test_unsigned_bodies_leave_the_data_api_small(tmp_path):
    subnet = make_subnet(tmp_path / "subnet")
    workdir = tmp_path / "work"
    workdir.mkdir()
    process = spawn_data_api(subnet, workdir)
    try:
        endpoint = wait_for_data_api(workdir, process)
        host, port = endpoint["url"].removeprefix("http://").rsplit(":", 1)
        growth_mb, answers = flood_and_measure(process.pid, host, int(port), "/v1/s3/upload-url")
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=20)
    assert growth_mb < MAX_SERVER_GROWTH_MB, growth_mb
    assert any(a.startswith(b"HTTP/1.1 401") for a in answers)
    assert "Traceback" not in (workdir / "data_api.log").read_text()


class Attack:
    """Counts the attackers' open connections; ``ready`` is set once all are open."""

    def __init__(self, connections: int) -> None:
        self.waiting = connections
        self.ready = asyncio.Event()

    def opened(self) -> None:
        self.waiting -= 1
        if self.waiting == 0:
            self.ready.set()


async def slow_header(host: str, port: int, attack: Attack) -> float:
    """Send a request's headers a line every half second; seconds until the server closes."""
    reader, writer = await asyncio.open_connection(host, port)
    opened = time.monotonic()
    writer.write(f"POST {ROUTE} HTTP/1.1\r\nHost: {host}\r\n".encode())
    attack.opened()

    async def drip() -> None:
        for n in range(1000):
            await asyncio.sleep(0.5)  # the attack's pace, not a wait for a condition
            writer.write(f"X-Drip-{n}: 1\r\n".encode())

    return await _until_closed(reader, writer, drip(), opened)


async def slow_body(host: str, port: int, headers: dict[str, str], attack: Attack) -> float:
    """Valid signed headers of a registered validator, then a body a byte at a time."""
    reader, writer = await asyncio.open_connection(host, port)
    opened = time.monotonic()
    lines = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    writer.write(
        f"POST {ROUTE} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: 2000\r\n{lines}\r\n{{".encode()
    )
    attack.opened()

    async def drip() -> None:
        for _ in range(1000):
            await asyncio.sleep(0.5)  # the attack's pace, not a wait for a condition
            writer.write(b" ")

    return await _until_closed(reader, writer, drip(), opened)


async def _until_closed(reader, writer, drip, opened: float) -> float:
    dripping = asyncio.create_task(drip)
    try:
        while await reader.read(4096):
            pass  # an error answer (408) may come first; the close is what counts
    except ConnectionError:
        pass
    closed = time.monotonic() - opened
    dripping.cancel()
    await asyncio.gather(dripping, return_exceptions=True)
    writer.close()
    return closed


def slow_attack(miner: LoopbackMiner) -> tuple[list[float], list[tuple[int, float]]]:
    """1,000 slow connections, half slow headers, half slow bodies, and 3 honest requests
    meanwhile: (each attacker's seconds until closed, each honest (status, seconds))."""
    host, port = miner.endpoint.rsplit(":", 1)
    # One set of signed headers for every slow body: they pass every check that
    # needs no body (the signature waits for a body that never comes).
    headers = signed_collect_headers(miner, "never-sent")

    async def scenario() -> tuple[list[float], list[tuple[int, float]]]:
        half = SLOW_CONNECTIONS // 2
        attack = Attack(SLOW_CONNECTIONS)
        attackers = [asyncio.create_task(slow_header(host, int(port), attack)) for _ in range(half)]
        attackers += [
            asyncio.create_task(slow_body(host, int(port), headers, attack)) for _ in range(half)
        ]
        # Once every attacker holds a connection (and a file descriptor of the miner's)...
        await asyncio.wait_for(attack.ready.wait(), timeout=20)
        honest = [await honest_call(miner, f"honest-{i}") for i in range(3)]
        lifetimes = await asyncio.wait_for(asyncio.gather(*attackers), timeout=30)
        return lifetimes, honest

    return asyncio.run(scenario())


def test_slow_connections_are_closed_and_the_honest_validator_is_served(miner):
    lifetimes, honest = slow_attack(miner)
    assert len(lifetimes) == SLOW_CONNECTIONS
    assert max(lifetimes) < max(HEADER_TIMEOUT_S, BODY_TIMEOUT_S) + CLOSE_SLACK_S, max(lifetimes)
    for status, elapsed in honest:
        assert status == 200
        assert elapsed < HONEST_WITHIN_S, honest
    log = miner.log.read_text()
    assert "Traceback" not in log
    assert "body not received within" in log  # the slow bodies, one line each


def test_a_dropped_body_is_one_log_line(miner):
    host, port = miner.endpoint.rsplit(":", 1)
    headers = signed_collect_headers(miner, "dropped")

    async def drop() -> None:
        _, writer = await asyncio.open_connection(host, int(port))
        lines = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        head = f"POST {ROUTE} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 2000\r\n{lines}\r\n"
        writer.write(head.encode() + b"{")
        await writer.drain()
        writer.transport.abort()  # gone mid-body, as a crashed or hostile peer

    asyncio.run(drop())
    deadline = time.monotonic() + 10
    while "dropped: " not in miner.log.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)  # another process's log cannot be awaited
    log = miner.log.read_text()
    assert "dropped: " in log
    assert "Traceback" not in log
    status, elapsed = asyncio.run(honest_call(miner, "after-drop"))
    assert status == 200 and elapsed < HONEST_WITHIN_S
