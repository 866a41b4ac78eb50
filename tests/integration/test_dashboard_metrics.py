"""Every metric the Grafana dashboard queries is exported by a real process's /metrics.

Starts the Data API, a miner on the RapidAPI source (its call and cost
gauges exist only for a source that counts them; the fake API on loopback
stands in for RapidAPI) and a validator with ``--metrics.port``, scrapes
each, and looks up every metric name in ``docs/grafana/subnet-dashboard.json``.
A labelled metric no event has touched yet is still declared (``# TYPE``),
so it counts as exported under its type's sample names.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from sim.fake_rapidapi import VALID_KEY, FakeRapidApi
from sim.processes import spawn_miner
from tests.integration.data_api_harness import free_port, make_subnet
from tests.integration.neurons import ROOT
from tests.integration.test_data_api_process import clean_env, spawn, wait_for_endpoint

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DASHBOARD = ROOT / "docs" / "grafana" / "subnet-dashboard.json"
PREFIXES = ("validator_", "miner_", "data_api_")
NAME = re.compile(r"\b(?:validator|miner|data_api)_[a-zA-Z0-9_]+")
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("_count", "_sum", "_created"),
}


def dashboard_metrics() -> dict[str, str]:
    """metric name -> the panel title that queries it."""
    document = json.loads(DASHBOARD.read_text())
    used = {}
    for panel in document["panels"]:
        for target in panel.get("targets", []):
            names = NAME.findall(target["expr"])
            assert names, (panel["title"], target["expr"])
            used |= {name: panel["title"] for name in names}
    return used


def exported(text: str) -> set[str]:
    """Every sample name the exposition declares or carries."""
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, family, kind = line.split(" ", 3)
            names |= {family} | {family + s for s in SUFFIXES.get(kind, ())}
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return {n for n in names if n.startswith(PREFIXES)}


def scrape(url: str, process: subprocess.Popen, log: Path, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"exited with {process.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                return answer.read().decode()
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.2)  # another process's readiness cannot be awaited
    raise TimeoutError(f"{url} did not answer")


def spawn_validator(subnet, workdir: Path, port: int, endpoint: dict) -> subprocess.Popen:
    log = open(workdir / "validator.log", "a")  # noqa: SIM115 - closed with the process by the OS
    argv = [
        sys.executable, "-m", "neurons.validator", "--env-file", "/dev/null",
        "--subtensor.network", "localfile", "--chain.file", str(subnet.chain),
        "--wallet.path", str(subnet.root / "wallets"), "--wallet.name", "validator",
        "--wallet.hotkey", "default", "--workdir", str(workdir), "--cycle.seconds", "3600",
        "--metrics.port", str(port), "--data_api.url", endpoint["url"],
        "--data_api.hotkey", endpoint["hotkey"], "--scraper", "synthetic",
    ]  # fmt: skip
    return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=clean_env())


def test_every_dashboard_metric_is_exported(tmp_path, monkeypatch):
    used = dashboard_metrics()
    assert {n.split("_")[0] for n in used} >= {"validator", "miner", "data"}
    subnet = make_subnet(tmp_path / "subnet")
    workdir = tmp_path / "work"
    workdir.mkdir()
    fake = FakeRapidApi()
    loop = asyncio.new_event_loop()
    base_url = loop.run_until_complete(fake.start())
    monkeypatch.setenv("RAPIDAPI_KEY", VALID_KEY)
    monkeypatch.setenv("RAPIDAPI_ZILLOW_BASE_URL", base_url)
    processes = []
    try:
        api = spawn(subnet, workdir)
        processes.append(api)
        endpoint = wait_for_endpoint(workdir, api)
        miner_port, validator_port = free_port(), free_port()
        miner = spawn_miner(
            workdir, subnet.root / "wallets", subnet.chain, "miner",
            "--scraper", "rapidapi_zillow", "--metrics.port", str(miner_port),
        )  # fmt: skip
        processes.append(miner)
        validator = spawn_validator(subnet, workdir, validator_port, endpoint)
        processes.append(validator)
        api_log = workdir / "data_api.log"
        scrape(f"{endpoint['url']}/metrics", api, api_log)  # counts itself from now on
        texts = {
            "data_api": scrape(f"{endpoint['url']}/metrics", api, api_log),
            "miner": scrape(f"http://127.0.0.1:{miner_port}/metrics", miner, workdir / "miner.log"),
            "validator": scrape(
                f"http://127.0.0.1:{validator_port}/metrics", validator, workdir / "validator.log"
            ),
        }
    finally:
        for process in processes:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        loop.run_until_complete(fake.stop())
        loop.close()
    found = set().union(*(exported(t) for t in texts.values()))
    missing = {name: title for name, title in used.items() if name not in found}
    assert not missing, f"dashboard metrics no process exports: {missing}"
    # Each role's metrics come from that role's process.
    for role, text in texts.items():
        mine = {n for n in used if n.startswith(role + "_")}
        assert mine and mine <= exported(text), (role, mine - exported(text))
