"""A validator killed with SIGKILL mid-collect and mid-consensus resumes, and ends where
an uninterrupted validator of the same local subnet ends: the same weights, epoch by epoch.

The two validators of the local subnet see the same miners, blocks and seeds,
so the one never interrupted is the reference run.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from tests.scripts import load_script

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
CYCLES = 3


def _phases(store: Path) -> dict[int, str]:
    if not store.exists():
        return {}
    try:
        db = sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=1)
        try:
            return dict(db.execute("SELECT epoch, phase FROM cycles").fetchall())
        finally:
            db.close()
    except sqlite3.Error:
        return {}  # created but not migrated yet


def _wait_for(store: Path, wanted: tuple[str, ...], after: int, process, timeout: float) -> int:
    """Poll the store until a cycle of an epoch > ``after`` is in one of ``wanted``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for epoch, phase in _phases(store).items():
            if epoch > after and phase in wanted:
                return epoch
        assert process.poll() is None, f"validator exited with {process.returncode}"
        time.sleep(0.01)
    raise AssertionError(f"no cycle reached {wanted} within {timeout}s: {_phases(store)}")


def _reports(folder: Path) -> dict[int, dict]:
    return {
        int(p.stem.split("-")[1]): json.loads(p.read_text()) for p in folder.glob("epoch-*.json")
    }


def test_validator_killed_mid_cycle_resumes_to_the_same_weights(tmp_path):
    localnet = load_script("localnet")
    args = localnet.parse_args(
        [
            "--miners",
            "20",
            "--validators",
            "2",
            "--cycles",
            str(CYCLES),
            "--scrape-delay",
            "0.3",  # a collect phase of a few seconds, to be killed in
            "--no-data-api",  # validators derive blocks locally: 30 s epochs
            "--workdir",
            str(tmp_path / "net"),
        ]
    )
    subnet = localnet.Subnet(args)
    try:
        subnet.setup()
        subnet.start_miners()
        victim, reference = subnet.start_validators()
        state_dirs = [
            subnet.workdir / f"validator-{v['wallet']}-{v['wallet_hotkey']}"
            for v in subnet.validators
        ]
        store = state_dirs[0] / "validator.sqlite"

        # Kill 1: while it collects (assignments acknowledged, manifests coming in).
        first = _wait_for(store, ("dispatched",), -1, victim, timeout=90)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        assert _phases(store)[first] == "dispatched"
        restarted = subnet._spawn("neurons.validator", victim.args[3:], "validator-0-restart-1")

        # Kill 2: in the next epoch, after collect, during tie-breaks and consensus.
        second = _wait_for(store, ("collected", "tiebreaks"), first, restarted, timeout=90)
        restarted.send_signal(signal.SIGKILL)
        restarted.wait()
        assert _phases(store)[second] in ("collected", "tiebreaks")
        argv = list(victim.args[3:])
        argv[argv.index("--max.cycles") + 1] = str(CYCLES - (second - first))
        final = subnet._spawn("neurons.validator", argv, "validator-0-restart-2")

        assert final.wait(timeout=120) == 0
        assert reference.wait(timeout=120) == 0
    finally:
        subnet.stop()

    victim_reports = _reports(state_dirs[0] / "cycles")
    reference_reports = _reports(state_dirs[1] / "cycles")
    assert first in victim_reports and second in victim_reports
    assert sorted(victim_reports) == sorted(reference_reports)
    for epoch, report in reference_reports.items():
        mine = victim_reports[epoch]
        assert mine["plan_hash"] == report["plan_hash"]
        assert mine["completed"] == report["completed"] == report["assignments"]
        assert {m["hotkey"]: m["weight"] for m in mine["miners"]} == {
            m["hotkey"]: m["weight"] for m in report["miners"]
        }, f"epoch {epoch}"
    ledger = json.loads(subnet.chain_file.read_text())["weights"]
    victim_hotkey, reference_hotkey = (v["hotkey"] for v in subnet.validators)
    assert ledger[victim_hotkey]["weights"] == ledger[reference_hotkey]["weights"]
    # Every assignment acknowledged before the first kill was not sent again.
    log = (subnet.workdir / "logs" / "validator-0-restart-1.log").read_text()
    assert f"epoch {first}: resumed after a restart" in log
    resumed_line = next(line for line in log.splitlines() if "resumed after a restart" in line)
    acknowledged, total = resumed_line.split(": ")[-1].split(" assignments")[0].split(" of ")
    assert acknowledged == total
    # Each epoch was scored once: one "done" line per epoch over the three processes.
    logs = "".join(
        (subnet.workdir / "logs" / name).read_text()
        for name in ("validator-0.log", "validator-0-restart-1.log", "validator-0-restart-2.log")
    )
    for epoch in victim_reports:
        assert logs.count(f"epoch {epoch} done:") == 1
    store_db = sqlite3.connect(store)
    assert {p for _, p in store_db.execute("SELECT epoch, phase FROM cycles")} == {"done"}
    store_db.close()
