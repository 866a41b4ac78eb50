"""A validator store that cannot be trusted stops the real entry point with one line (issue 15, 6).

Incidents: a corrupt or truncated ``validator.sqlite`` exited with a 40-line
traceback, a restart loop under pm2; an existing but empty one was silently
treated as new, so all scoring history was gone without a word. Now each
stops ``python -m neurons.validator`` at start with one line naming the file,
exit code 4, and the file's bytes as they were; ``reset-state`` moves it
aside and the next start begins fresh.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from consensus.assignment import MinerInfo
from consensus.scoring import ScoringState
from tests.integration.neurons import ROOT
from vali_utils.store import ValidatorStore

pytestmark = pytest.mark.integration

EXIT_STORE_UNUSABLE = 4
RUN_TIMEOUT_S = 60


def validator(tmp_path: Path, *command: str) -> subprocess.CompletedProcess:
    """The real entry point, in a process of its own, with only the flags a store needs."""
    argv = [
        sys.executable,
        "-m",
        "neurons.validator",
        *command,
        "--env-file",
        "/dev/null",
        "--workdir",
        str(tmp_path / "work"),
        "--wallet.name",
        "v",
        "--wallet.hotkey",
        "default",
        "--wallet.path",
        str(tmp_path / "wallets"),  # none there: a start that gets past the store stops here
        "--chain.file",
        str(tmp_path / "chain.json"),
    ]
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), "HOME": str(tmp_path)}
    return subprocess.run(
        argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S
    )


def store_path(tmp_path: Path) -> Path:
    return tmp_path / "work" / "validator-v-default" / "validator.sqlite"


def real_store(path: Path) -> bytes:
    """A store with history (a cycle and a scoring state), closed; returns its bytes."""

    async def fill() -> None:
        store = await ValidatorStore.open(path)
        await store.begin_cycle(7, [MinerInfo(1, "hk", "ck")], {"hk": "127.0.0.1:1"})
        await store.save_scoring(ScoringState())
        await store.close()

    asyncio.run(fill())
    return path.read_bytes()


def truncated(path: Path) -> None:
    data = real_store(path)
    path.write_bytes(data[: len(data) // 2])


def garbage(path: Path) -> None:
    path.write_bytes(random.Random(15).randbytes(8192))


def empty(path: Path) -> None:
    path.write_bytes(b"")


def damaged_inside(path: Path) -> None:
    """A sound header and length, pages after the first overwritten."""
    data = bytearray(real_store(path))
    page = int.from_bytes(data[16:18], "big")
    data[page : 3 * page] = random.Random(6).randbytes(2 * page)
    path.write_bytes(bytes(data))


def no_tables(path: Path) -> None:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE unrelated (x)")
    db.commit()
    db.close()


def history_gone(path: Path) -> None:
    """The schema is there; the cycles and scores it held are not."""
    real_store(path)
    db = sqlite3.connect(path)
    db.execute("DELETE FROM cycles")
    db.execute("DELETE FROM scoring")
    db.commit()
    db.close()


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (truncated, "truncated"),
        (garbage, "not an SQLite database"),
        (empty, "empty (0 bytes)"),
        (damaged_inside, "damaged"),
        (no_tables, "without the validator's tables"),
        (history_gone, "holds no cycles and no scores"),
    ],
)
def test_an_unusable_store_stops_the_validator_with_one_line_and_is_left_as_it_is(
    tmp_path, make, problem
):
    path = store_path(tmp_path)
    path.parent.mkdir(parents=True)
    make(path)
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    files_before = sorted(os.listdir(path.parent))

    run = validator(tmp_path)

    lines = run.stderr.strip().splitlines()
    assert run.returncode == EXIT_STORE_UNUSABLE, run.stderr
    assert len(lines) == 1 and run.stdout == "", run.stderr
    assert str(path) in lines[0] and problem in lines[0] and "reset-state" in lines[0]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    assert sorted(os.listdir(path.parent)) == files_before  # no WAL files left beside it


def test_reset_state_moves_the_store_aside_and_the_next_start_begins_fresh(tmp_path):
    path = store_path(tmp_path)
    path.parent.mkdir(parents=True)
    garbage(path)
    original = path.read_bytes()

    reset = validator(tmp_path, "reset-state")

    assert reset.returncode == 0, reset.stderr
    assert not path.exists()
    (moved,) = path.parent.glob("validator.sqlite.reset-*")
    assert moved.read_bytes() == original and str(moved) in reset.stdout

    start = validator(tmp_path)  # stops at the missing wallet, after the store
    assert "unusable" not in start.stderr and start.returncode != EXIT_STORE_UNUSABLE
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    assert db.execute("SELECT COUNT(*) FROM cycles").fetchone() == (0,)
    db.close()


def test_reset_state_help_explains_it(tmp_path):
    run = validator(tmp_path, "reset-state", "--help")
    text = " ".join(run.stdout.split())  # argparse wraps the description
    assert run.returncode == 0
    assert "aside" in text and "no history" in text and "Stop the validator first" in text


def test_a_new_path_starts_fresh_silently_and_a_store_with_history_opens(tmp_path):
    """No file: a new store, no refusal. The store then written with history opens again."""
    start = validator(tmp_path)
    path = store_path(tmp_path)
    assert "unusable" not in start.stderr and path.exists()
    assert "a new state store" in start.stderr  # one INFO line: a new store is never a surprise
    assert not list(path.parent.glob("*.new*"))  # made aside and renamed into place
    real_store(path)  # opens the fresh store and writes history into it
    again = validator(tmp_path)
    assert "unusable" not in again.stderr and again.returncode != EXIT_STORE_UNUSABLE
