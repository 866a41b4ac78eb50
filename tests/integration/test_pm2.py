"""pm2 for real: the ecosystem file starts the validator, a miner and the Data API
against a local subnet's work directory; they come online and answer; stopping
them leaves nothing running.

pm2 is installed from npm into ``.cache/pm2`` when it is not on the PATH, and
runs with its own ``PM2_HOME`` so the test never touches an operator's pm2.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from sim.processes import free_port
from tests.scripts import load_script

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
ECOSYSTEM = ROOT / "scripts" / "ecosystem.config.js"
APPS = ("zs-validator", "zs-miner", "zs-data-api")


def _pm2_binary() -> str:
    found = shutil.which("pm2")
    if found:
        return found
    prefix = ROOT / ".cache" / "pm2"
    binary = prefix / "node_modules" / ".bin" / "pm2"
    if not binary.exists():
        if shutil.which("npm") is None:
            pytest.fail("neither pm2 nor npm is installed; install Node.js (npm)")
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--prefix", str(prefix), "pm2@5"],
            check=True,
            capture_output=True,
            timeout=300,
        )
    return str(binary)


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""
    except OSError:
        return 0, ""


def _env_file(path: Path, values: dict[str, str]) -> Path:
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    return path


def _ours(workdir: Path) -> list[str]:
    out = subprocess.run(["ps", "-ww", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if str(workdir) in line and "ps -ww" not in line]


def test_ecosystem_starts_answers_and_stops_cleanly(tmp_path):
    pm2 = _pm2_binary()
    localnet = load_script("localnet")
    workdir = tmp_path / "net"
    subnet = localnet.Subnet(
        localnet.parse_args(["--miners", "2", "--validators", "1", "--workdir", str(workdir)])
    )
    subnet.setup()
    common = {
        "PRESET": "local",
        "SUBTENSOR_NETWORK": "localfile",
        "CHAIN_FILE": str(subnet.chain_file),
        "WALLET_PATH": str(workdir / "wallets"),
        "WORKDIR": str(workdir),
        "HOST": "127.0.0.1",
    }
    ports = {name: free_port() for name in ("validator", "miner", "miner_metrics", "api")}
    validator = subnet.validators[0]
    miner = subnet.miners[0]
    env_files = {
        "VALIDATOR_ENV_FILE": _env_file(
            tmp_path / "validator.env",
            common
            | {
                "WALLET_NAME": validator["wallet"],
                "WALLET_HOTKEY": validator["wallet_hotkey"],
                "METRICS_PORT": str(ports["validator"]),
                "CYCLE_SECONDS": "20",
            },
        ),
        "MINER_ENV_FILE": _env_file(
            tmp_path / "miner.env",
            common
            | {
                "WALLET_NAME": miner["wallet"],
                "WALLET_HOTKEY": miner["wallet_hotkey"],
                "PORT": "0",
                "METRICS_PORT": str(ports["miner_metrics"]),
            },
        ),
        "DATA_API_ENV_FILE": _env_file(
            tmp_path / "data_api.env",
            common
            | {
                "WALLET_NAME": validator["wallet"],  # the owner's hotkey, any registered one
                "WALLET_HOTKEY": validator["wallet_hotkey"],
                "DATA_API_PORT": str(ports["api"]),
            },
        ),
    }
    env = {
        **os.environ,
        **{k: str(v) for k, v in env_files.items()},
        "PM2_HOME": str(tmp_path / "pm2-home"),
        "PM2_LOG_DIR": str(tmp_path / "logs"),
    }

    def pm2_run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(
            [pm2, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120,
            check=check,
        )  # fmt: skip

    try:
        pm2_run("start", str(ECOSYSTEM))
        deadline = time.monotonic() + 120
        answers: dict[str, int] = {}
        online: dict[str, str] = {}
        while time.monotonic() < deadline:
            listing = json.loads(pm2_run("jlist").stdout or "[]")
            online = {p["name"]: p["pm2_env"]["status"] for p in listing}
            published = {
                n["hotkey"]: n["endpoint"]
                for n in json.loads(subnet.chain_file.read_text())["neurons"]
            }
            endpoint = published.get(miner["hotkey"])
            answers = {
                "validator": _get(f"http://127.0.0.1:{ports['validator']}/metrics")[0],
                "miner": _get(f"http://{endpoint}/health")[0] if endpoint else 0,
                "miner_metrics": _get(f"http://127.0.0.1:{ports['miner_metrics']}/metrics")[0],
                "data_api": _get(f"http://127.0.0.1:{ports['api']}/v1/health")[0],
            }
            if all(online.get(a) == "online" for a in APPS) and set(answers.values()) == {200}:
                break
            time.sleep(1)
        logs = "\n".join(
            f"--- {p.name}\n{p.read_text()[-2000:]}" for p in (tmp_path / "logs").glob("*.log")
        )
        assert all(online.get(a) == "online" for a in APPS), (online, logs)
        assert set(answers.values()) == {200}, (answers, logs)
        # Nothing restarted while coming up.
        listing = json.loads(pm2_run("jlist").stdout)
        assert all(p["pm2_env"]["restart_time"] == 0 for p in listing), logs
    finally:
        pm2_run("delete", "all", check=False)
        pm2_run("kill", check=False)
    deadline = time.monotonic() + 20
    while _ours(workdir) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _ours(workdir) == []
