"""``python -m data_api`` as a process: starts from flags, survives a restart, owner CLI.

The local preset generates and keeps its block secret in the workdir, so a
restarted service serves the same block, and the owner's ``honeypot`` CLI
writes into the database the service reads.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from common.data_api_models import ZipcodeBlock
from data_api.cli import main as honeypot_cli
from sim.processes import data_api_env, spawn_data_api
from tests.integration.data_api_harness import make_subnet
from tests.integration.neurons import ROOT
from vali_utils.data_api_client import RetryPolicy, ValidatorDataAPI

pytestmark = [pytest.mark.integration, pytest.mark.slow]


clean_env = data_api_env  # the name the other tests import


def spawn(subnet, workdir: Path, *flags: str) -> subprocess.Popen:
    """``python -m data_api`` on a free port for ``subnet``, with ``flags`` added."""
    hourly = ("--cycle.seconds", "3600", "--metagraph.refresh", "1")
    return spawn_data_api(subnet.chain, subnet.root / "wallets", workdir, *hourly, *flags)


def wait_for_endpoint(workdir: Path, process: subprocess.Popen, timeout: float = 60.0) -> dict:
    path = workdir / "data_api" / "endpoint.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log = (workdir / "data_api.log").read_text()
            raise RuntimeError(f"data_api exited with {process.returncode}:\n{log[-2000:]}")
        if path.is_file():
            return json.loads(path.read_text())
        time.sleep(0.1)  # another process's readiness cannot be awaited
    raise TimeoutError("data_api did not write endpoint.json")


def stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 0


async def fetch_block(subnet, endpoint: dict) -> ZipcodeBlock:
    async with aiohttp.ClientSession() as session:
        api = ValidatorDataAPI(
            endpoint["url"],
            endpoint["hotkey"],
            subnet.people["validator"].keypair,
            session,
            retry=RetryPolicy(attempts=5, base_s=0.2),
        )
        return await api.current_block()


def test_the_service_process_restarts_into_the_same_block(tmp_path, capsys):
    subnet = make_subnet(tmp_path / "subnet")
    workdir = tmp_path / "work"
    workdir.mkdir()
    reference = tmp_path / "reference.json"
    reference.write_text(
        json.dumps({"zipcode": "10001", "source": "ZILLOW", "records": [["42", "f" * 32]]})
    )
    db = ["--api.db", str(workdir / "data_api" / "data_api.sqlite")]
    honeypot = [sys.executable, "-m", "data_api", "honeypot", *db]
    added = subprocess.run(
        [*honeypot, "add", str(reference)],
        capture_output=True,
        text=True,
        env=clean_env(),
        cwd=ROOT,
        timeout=60,
    )
    assert added.returncode == 0, added.stderr
    # The rest of the CLI in-process (the same code, without another interpreter start).
    assert honeypot_cli([*db, "list"]) == 0
    assert capsys.readouterr().out.startswith("10001\tZILLOW\t1 records")
    bad = ["add", "--zipcode", "00000", "--source", "ZILLOW", "--records", str(reference)]
    assert honeypot_cli([*db, *bad]) == 2
    assert capsys.readouterr().err.startswith("honeypot: ")

    process = spawn(subnet, workdir)
    try:
        endpoint = wait_for_endpoint(workdir, process)
        assert endpoint["hotkey"] == subnet.owner.hotkey
        first = asyncio.run(fetch_block(subnet, endpoint))
        assert "10001" in first.zipcodes()  # the CLI's reference became a honeypot
    finally:
        stop(process)
    secret = workdir / "data_api" / "secret"
    assert secret.is_file() and oct(secret.stat().st_mode & 0o777) == "0o600"

    process = spawn(subnet, workdir)
    try:
        endpoint = wait_for_endpoint(workdir, process)
        assert asyncio.run(fetch_block(subnet, endpoint)) == first
    finally:
        stop(process)
    log = (workdir / "data_api.log").read_text()
    assert "generated a Data API block secret" in log
    assert log.count("issued block") == 1  # the restart served the persisted one
    assert "request=" in log and "route=/v1/epochs/current status=200" in log  # access log


def test_outside_the_local_preset_the_secret_is_required(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "data_api", "--preset", "test", "--env-file", "/dev/null"],
        capture_output=True,
        text=True,
        env=clean_env(),
        cwd=ROOT,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "data_api: --api.secret / DATA_API_SECRET is required outside the local preset "
        "(blocks are derived from it)"
    ]
