"""A hostile miner's answer cannot exhaust the validator that asked (issue 15).

Incident: ``SignedClient`` read whole answers into memory, let the session
inflate gzip and parsed on the event loop. An endless answer added 637 MB in
5 s; a 1 MB gzip answer inflated to 1 GB took the client to 4.3 GB and 25 s,
past its 5 s timeout.

The hostile miner here is an aiohttp server on loopback; the client is the
validator's ``SignedClient`` in a process of its own
(``hostile_answer_child.py``), whose peak resident memory is read from the
kernel (VmHWM) around each call.
"""

from __future__ import annotations

import asyncio
import json
import sys
import zlib

import pytest
from aiohttp import web

from tests.integration.neurons import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CLIENT_TIMEOUT_S = 2.0
MAX_GROWTH_MB = 50
CHUNK = b"0" * (64 * 1024)
BOMB_INFLATED_BYTES = 1024**3


def gzip_bomb() -> bytes:
    """1 GiB of zeros, gzip-compressed to about 1 MB."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = bytes(1024 * 1024)
    parts = [packer.compress(block) for _ in range(BOMB_INFLATED_BYTES // len(block))]
    return b"".join(parts) + packer.flush()


def hostile_app(bomb: bytes) -> web.Application:
    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        try:
            await response.write(b'{"request_id": "hostile-1", "error": "')
            while True:
                await response.write(CHUNK)
        except ConnectionError:
            return response  # the client hung up: what we want

    async def gzip(_request: web.Request) -> web.Response:
        headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
        return web.Response(body=bomb, headers=headers)

    async def oversized(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = 2 * 1024**3
        await response.prepare(request)
        try:
            while True:
                await response.write(CHUNK)
        except ConnectionError:
            return response

    async def drip(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        try:
            while True:
                await response.write(b" ")
                await asyncio.sleep(0.05)  # the attack itself: a trickle, not a wait
        except ConnectionError:
            return response

    app = web.Application()
    for path, handler in {
        "/endless": endless,
        "/gzip": gzip,
        "/oversized": oversized,
        "/drip": drip,
    }.items():
        app.router.add_post(path, handler)
    return app


async def run_client(port: int, paths: list[str]) -> list[dict]:
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.integration.hostile_answer_child",
        f"http://127.0.0.1:{port}",
        str(CLIENT_TIMEOUT_S),
        *paths,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(child.communicate(), timeout=60)
    assert child.returncode == 0, err.decode()[-2000:]
    return [json.loads(line) for line in out.decode().splitlines()]


def test_hostile_answers_leave_the_client_small_and_on_time():
    bomb = gzip_bomb()
    assert len(bomb) < 2 * 1024 * 1024  # a small answer on the wire...

    async def scenario() -> list[dict]:
        runner = web.AppRunner(hostile_app(bomb), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        try:
            return await run_client(port, ["/endless", "/gzip", "/oversized", "/drip"])
        finally:
            await runner.cleanup()

    results = {r["path"]: r for r in asyncio.run(scenario())}
    assert results["/endless"]["code"] == "answer_too_large", results
    assert results["/gzip"]["code"] == "compressed_answer", results  # ...never inflated
    assert results["/oversized"]["code"] == "answer_too_large", results
    assert (results["/drip"]["status"], results["/drip"]["code"]) == (0, "timeout"), results
    for path, result in results.items():
        assert result["mb"] < MAX_GROWTH_MB, (path, result)
        assert result["s"] < CLIENT_TIMEOUT_S + 0.5, (path, result)
