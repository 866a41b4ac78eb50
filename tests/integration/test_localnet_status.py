"""A validator of the local subnet serves its status page; a browser reads why miners score.

Starts ``scripts/localnet.py`` (Data API, S3 emulator, ten miners of which two
fabricate, one validator with ``--status.port``), reads the address it prints,
and once the validator has scored a cycle (while it still runs) loads the
status page and a fabricator's page in headless Chromium against their JSON
twins. With ``--serve`` the page stays up at the same address after the
validator's last cycle. Screenshots: status.png, status-filtered.png,
miner-<uid>.png in the test's folder.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest

from tests.integration.browser import browser_or_skip, chromium
from tests.integration.status_checks import check_flagged_miner, check_overview
from tests.integration.test_localnet import LOCALNET, ROOT, processes_mentioning

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ADDRESS = re.compile(r"validator 0 status page: (http://127\.0\.0\.1:\d+/)")
RUN_TIMEOUT_S = 420.0


class Output:
    """The local subnet's stdout, read line by line in a thread (a pipe cannot be awaited)."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._thread.start()

    def _read(self, process: subprocess.Popen) -> None:
        for line in process.stdout:
            self.lines.append(line)

    def text(self) -> str:
        return "".join(self.lines)


def status(base: str) -> dict | None:
    """The JSON twin of the status page, or None while it does not answer 200."""
    try:
        with urllib.request.urlopen(f"{base}api/status", timeout=5) as answer:
            return json.loads(answer.read())
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


def test_local_subnet_validator_serves_its_status_page(tmp_path):
    browser_or_skip()
    workdir = tmp_path / "net"
    process = subprocess.Popen(
        [
            sys.executable, str(LOCALNET), "--miners", "10", "--validators", "1",
            "--cycles", "2", "--zipcodes", "20", "--adversary", "fabricate=0.2",
            "--workdir", str(workdir), "--serve",
        ],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
    )  # fmt: skip
    output = Output(process)
    try:
        deadline = time.monotonic() + RUN_TIMEOUT_S
        base = None
        while base is None and time.monotonic() < deadline:
            assert process.poll() is None, output.text()
            found = ADDRESS.search(output.text())
            base = found.group(1) if found else None
            time.sleep(0.5)
        assert base, output.text()
        # The validator's own server, once a cycle is scored with a miner flagged.
        scored = None
        while time.monotonic() < deadline and "serving;" not in output.text():
            assert process.poll() is None, output.text()
            scored = status(base)
            if scored and any(m["flags"] for m in scored["miners"]["rows"]):
                break
            time.sleep(1.0)  # another process's progress cannot be awaited
        assert "serving;" not in output.text(), "the validator never served a scored cycle"
        assert scored, output.text()
        fabricators = {
            m["uid"]
            for m in json.loads((workdir / "localnet.json").read_text())["miners"]
            if m["behaviour"] == "fabricate"
        }

        async def browse():
            async with chromium() as browser:
                twin = await check_overview(browser, base, tmp_path)
                rows = [m for m in twin["miners"]["rows"] if m["flags"]]
                flagged = [m["uid"] for m in rows]
                assert set(flagged) <= fabricators and flagged, (flagged, fabricators)
                # Preferably one flagged for more than a honeypot, whose evidence is hidden.
                shown = [m["uid"] for m in rows if set(m["flags"]) - {"honeypot"}]
                miner = await check_flagged_miner(browser, base, (shown or flagged)[0], tmp_path)
                if shown:
                    assert any(f["evidence"] for f in miner["flags"]), miner["flags"]

        asyncio.run(browse())
        # --serve: the page stays up at the same address once the validator is done.
        while "serving;" not in output.text() and time.monotonic() < deadline:
            assert process.poll() is None, output.text()
            time.sleep(1.0)
        assert "serving;" in output.text(), output.text()
        after = status(base)
        assert after is not None and len(after["cycles"]) >= 2
        assert {m["uid"] for m in after["miners"]["rows"] if m["flags"]} <= fabricators
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    assert not processes_mentioning(str(workdir))
    assert (tmp_path / "status.png").stat().st_size > 5000
