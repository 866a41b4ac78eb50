"""``python -m neurons.validator status`` reads the store without touching the validator."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from consensus.scoring import MinerScore, ScoringState
from neurons.validator_status import read_status, render
from vali_utils.evaluator import write_report
from vali_utils.store import REPORT_EPOCHS, ValidatorStore

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def _populate(path: Path) -> None:
    async def main():
        store = await ValidatorStore.open(path)
        await store.begin_cycle(50, [], {})
        state = ScoringState(
            miners={
                "good": MinerScore(uid=3, score=0.9, credibility=0.8),
                "bad": MinerScore(uid=4, score=0.0, credibility=0.1, last_flags=("fabrication",)),
            }
        )
        report = {
            "miners": [
                {
                    "hotkey": "good",
                    "answered_zipcodes": 20,
                    "assigned_zipcodes": 20,
                    "quality": 1.0,
                },
                {"hotkey": "bad", "answered_zipcodes": 5, "assigned_zipcodes": 20, "quality": 0.0},
            ]
        }
        await store.commit_cycle(50, state, report)
        await store.record_weights(50, {3: 1.0}, ok=True)
        await store.begin_cycle(51, [], {})
        await store.set_phase(51, "dispatched")
        await store.close()

    asyncio.run(main())


def test_status_ranks_miners_with_reasons(tmp_path):
    path = tmp_path / "validator.sqlite"
    _populate(path)
    status = read_status(path, cycle_seconds=20.0, now=51 * 20.0 + 3)
    assert status["current_epoch"] == 51
    assert [(c["epoch"], c["phase"]) for c in status["cycles"]] == [
        (51, "dispatched"),
        (50, "done"),
    ]
    assert status["last_weights"]["set"] is True and status["last_weights"]["uids"] == 1
    top, bottom = status["miners"]["top"], status["miners"]["bottom"]
    assert top[0]["uid"] == 3 and bottom[0]["uid"] == 4
    assert "fabrication" in bottom[0]["reasons"]
    assert "answered 5/20 zipcodes" in bottom[0]["reasons"]
    text = render(status)
    assert "epoch 51: dispatched" in text and "uid    4" in text


def test_status_command_line(tmp_path):
    state_dir = tmp_path / "validator-v-default"
    state_dir.mkdir()
    _populate(state_dir / "validator.sqlite")
    argv = [
        sys.executable, "-m", "neurons.validator", "status", "--json",
        "--workdir", str(tmp_path), "--wallet.name", "v", "--env-file", "/dev/null",
        "--chain.file", str(tmp_path / "chain.json"),
    ]  # fmt: skip
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["miners"]["count"] == 2
    missing = subprocess.run(
        [*argv[:6], str(tmp_path / "nowhere"), *argv[7:]],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 1 and "no validator state" in missing.stderr


def test_reports_older_than_the_report_window_leave_the_store_and_their_cycles_stay(tmp_path):
    async def main():
        store = await ValidatorStore.open(tmp_path / "validator.sqlite")
        last = 100 + REPORT_EPOCHS + 5
        for epoch in range(100, last + 1):
            await store.begin_cycle(epoch, [], {})
            await store.commit_cycle(epoch, ScoringState(), {"epoch": epoch, "miners": []})
        rows = await store.run(
            lambda db: db.execute(
                "SELECT epoch, report_json IS NOT NULL FROM cycles ORDER BY epoch"
            ).fetchall()
        )
        await store.close()
        return last, rows

    last, rows = asyncio.run(main())
    assert [epoch for epoch, _ in rows] == list(range(100, last + 1))  # every cycle's row
    kept = [epoch for epoch, has_report in rows if has_report]
    assert kept == list(range(last - REPORT_EPOCHS, last + 1))


def test_report_files_keep_the_store_s_report_window(tmp_path):
    folder = tmp_path / "cycles"
    last = 100 + REPORT_EPOCHS + 5
    for epoch in range(100, last + 1):
        write_report(folder, epoch, {"epoch": epoch})
    (folder / "epoch-notes.json").write_text("{}")  # not a report of ours: left alone
    kept = sorted(int(p.stem.split("-")[1]) for p in folder.glob("epoch-[0-9]*.json"))
    assert kept == list(range(last - REPORT_EPOCHS, last + 1))
    assert json.loads((folder / f"epoch-{last}.json").read_text()) == {"epoch": last}
    assert (folder / "epoch-notes.json").exists()
