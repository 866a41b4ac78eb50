"""The watchdog exits a process whose work stopped succeeding, even with its loop blocked."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from common.watchdog import EXIT_CODE, Watchdog

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def test_beats_keep_it_quiet_and_silence_exits():
    now = [0.0]
    exits: list[int] = []
    dog = Watchdog(10.0, "cycle", clock=lambda: now[0], exit=exits.append)
    now[0] = 9.0
    assert dog.check() is False
    dog.beat()
    now[0] = 18.0
    assert dog.check() is False and exits == []
    now[0] = 19.5
    assert dog.check() is True
    assert exits == [EXIT_CODE]


def test_a_stuck_process_really_exits():
    # The main thread blocks (as a hung event loop would); the watchdog thread ends it.
    code = (
        "import time, logging\n"
        "from common.watchdog import Watchdog\n"
        "logging.basicConfig()\n"
        "Watchdog(0.5, 'test work').start()\n"
        "time.sleep(60)\n"
    )
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == EXIT_CODE
    assert time.monotonic() - started < 10
    assert "no successful test work" in proc.stderr


def test_limit_must_be_positive():
    with pytest.raises(ValueError):
        Watchdog(0, "x")
