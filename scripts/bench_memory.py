#!/usr/bin/env python3
"""Validator memory over shortened cycles, for ``scripts/bench.py`` (``validator_memory``).

Starts the local subnet's chain, 64 real miner processes and one real validator
process (``scripts/localnet.py``; no Data API and no S3 emulator: blocks are
derived locally, since 4,000 uploads an epoch are far past what the emulator
takes in a short epoch), runs 5 cycles and watches the validator's resident
memory. Two figures per epoch:

- the peak RSS over the epoch (its consensus cycle and what follows it), read
  from the kernel's high-water mark (``VmHWM``), which the bench resets at
  each epoch boundary (``/proc/PID/clear_refs``). The cycle's peak is a
  sub-second burst of consensus arrays; sampling ``VmRSS`` would catch it at
  a different height each epoch. Where the reset is refused, sampled ``VmRSS``
  is used and ``validator_rss_peak_source`` says so.
  ``validator_rss_growth`` = (highest peak of epochs 2..5) / (peak of epoch 1) - 1.
- the idle RSS, the last sample before the next epoch starts: the cycle is
  done and its memory released, so this is what the validator keeps.
  ``validator_rss_idle_growth`` = (highest idle of epochs 2..5) / (idle after
  the first cycle) - 1: what a leak would make climb epoch after epoch.

    python scripts/bench_memory.py --miners 64 --cycles 5 --cycle-seconds 40
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _memory_mb(pid: int) -> tuple[float, float]:
    """(resident now, resident high-water mark since the last reset), in MB."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            found[line[:5]] = int(line.split()[1]) / 1024
    if len(found) < 2:
        raise RuntimeError(f"no VmRSS/VmHWM for pid {pid}")
    return found["VmRSS"], found["VmHWM"]


def _reset_peak(pid: int) -> bool:
    """Reset the process's RSS high-water mark to its current RSS (Linux 4.0+)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def bench_validator_memory(
    miners: int = 64, cycles: int = 5, cycle_seconds: float = 40.0, zipcodes: int = 200
) -> dict:
    import localnet  # scripts/ is on the path of a script run from it

    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        args = localnet.parse_args(
            [
                "--miners",
                str(miners),
                "--validators",
                "1",
                "--cycles",
                str(cycles),
                "--cycle-seconds",
                str(cycle_seconds),
                "--zipcodes",
                str(zipcodes),
                "--workdir",
                str(Path(tmp) / "net"),
            ]
        )
        subnet = localnet.Subnet(args)
        try:
            subnet.setup()
            subnet.start_miners()
            (validator,) = subnet.start_validators()
            v = subnet.validators[0]
            reports = subnet.workdir / f"validator-{v['wallet']}-{v['wallet_hotkey']}" / "cycles"
            peaks: dict[int, float] = {}  # epoch -> peak RSS
            idle: dict[int, float] = {}  # epoch -> last RSS sample of the epoch
            high_water = _reset_peak(validator.pid)
            watched = None  # the epoch the high-water mark covers
            deadline = time.monotonic() + cycle_seconds * (cycles + 3) + 60
            while validator.poll() is None and time.monotonic() < deadline:
                epoch = int(time.time() // cycle_seconds)
                try:
                    rss, hwm = _memory_mb(validator.pid)
                except (OSError, RuntimeError):
                    break  # the process is gone
                if high_water and watched is not None and epoch != watched:
                    # The mark still covers the epoch that just ended: credit it there.
                    peaks[watched] = max(peaks.get(watched, 0.0), hwm)
                    high_water = _reset_peak(validator.pid)
                    hwm = rss
                watched = epoch
                peaks[epoch] = max(peaks.get(epoch, 0.0), hwm if high_water else rss)
                idle[epoch] = rss
                time.sleep(0.1)
            validator.wait(timeout=cycle_seconds * 2 + 30)
            scored = sorted(
                json.loads(p.read_text())["epoch"] for p in reports.glob("epoch-*.json")
            )
            samples = [round(peaks[e], 1) for e in scored if e in peaks]
            # The last cycle's epoch ends with the process stopping: no idle figure.
            idle_samples = [round(idle[e], 1) for e in scored[:-1] if e in idle]
            work = [
                {
                    k: r.get(k)
                    for k in ("epoch", "assignments", "completed", "spot_checks", "tiebreak")
                }
                for r in (json.loads(p.read_text()) for p in sorted(reports.glob("epoch-*.json")))
            ]
        finally:
            subnet.stop()
    if len(samples) < 2:
        raise RuntimeError(f"only {len(samples)} cycles completed; see the validator log")
    growth = max(samples[1:]) / samples[0] - 1.0
    idle_growth = max(idle_samples[1:]) / idle_samples[0] - 1.0 if len(idle_samples) > 1 else None
    return {
        "validator_rss_peak_mb_per_epoch": samples,
        "validator_rss_growth": round(growth, 4),
        "validator_rss_peak_source": "VmHWM" if high_water else "sampled VmRSS",
        "validator_rss_idle_mb_per_epoch": idle_samples,
        "validator_rss_idle_growth": None if idle_growth is None else round(idle_growth, 4),
        "validator_memory_miners": miners,
        "validator_memory_cycles": work,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--miners", type=int, default=64)
    parser.add_argument("--cycles", type=int, default=5)
    parser.add_argument("--cycle-seconds", type=float, default=40.0)
    parser.add_argument("--zipcodes", type=int, default=200)
    args = parser.parse_args(argv)
    print(
        json.dumps(
            bench_validator_memory(args.miners, args.cycles, args.cycle_seconds, args.zipcodes),
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
