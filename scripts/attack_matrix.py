#!/usr/bin/env python3
"""Every gaming behaviour against the consensus core: the incentives' acceptance table.

Runs ``scripts/simulate.py`` (64 miners, 400 zipcodes, 3 cycles, 10% offline)
for each behaviour at each fraction and seed, two runs at a time, and prints
one row per run: batch confidence, honest false flags, the behaviour's
earnings per hotkey against an honest hotkey's, its fast-bonus share and,
for a coalition that leaves listings out, the share of those listings that
ended confirmed. Exits 1 when a row breaks its limit.

    .venv/bin/python scripts/attack_matrix.py                       # the whole table
    .venv/bin/python scripts/attack_matrix.py --behaviour pool --fraction 0.4 --seed 7
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SIMULATE = ROOT / "scripts" / "simulate.py"
BASE = ["--miners", "64", "--zipcodes", "400", "--cycles", "3", "--offline-fraction", "0.1"]

# Earnings per hotkey against an honest hotkey: (limit, strict). Sybils keep
# their old limit: no more weight than their share of the hotkeys.
EARNINGS_LIMITS: dict[str, tuple[float, bool]] = {
    "fabricate": (0.05, True),
    "inflate": (0.05, True),
    "cartel": (0.05, True),
    "copycat": (0.05, True),
    "pool": (1.0, False),
    "pool_omit": (1.0, True),
    "early_claim": (1.0, False),
    "lazy": (0.5, True),
    "stale": (0.5, True),
    "empty": (0.5, True),
    "silent": (0.5, True),
    "unserve": (0.5, True),
    "sybil": (1.0, False),
}
BEHAVIOURS = list(EARNINGS_LIMITS)
MIN_OMITTED_CONFIRMED = 0.9  # pool_omit: its left-out listings that independents report


def run(behaviour: str, fraction: float, seed: int, out_dir: Path) -> dict:
    out = out_dir / f"{behaviour}-{seed}-{fraction}.json"
    args = [*BASE, "--seed", str(seed), "--adversary", f"{behaviour}={fraction}"]
    proc = subprocess.run(
        [sys.executable, str(SIMULATE), *args, "--json", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=900,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"simulate {' '.join(args)} failed: {proc.stderr.strip()[-500:]}")
    return json.loads(out.read_text())


def failures(behaviour: str, report: dict) -> list[str]:
    """The limits a run breaks, in words (empty: it holds)."""
    broken = []
    if report["honest_false_flag_rate"] >= 0.01:
        broken.append(f"honest false flags {report['honest_false_flag_rate']:.3f}")
    if report["batch_confidence_rate"] < 0.9:
        broken.append(f"batch confidence {report['batch_confidence_rate']:.3f}")
    ratio = report["earnings_ratio_by_behavior"].get(behaviour) or 0.0
    limit, strict = EARNINGS_LIMITS[behaviour]
    if ratio > limit or (strict and ratio >= limit):
        broken.append(f"earnings {ratio:.3f} over {limit}")
    if behaviour == "early_claim" and report["fast_bonus_share_by_behavior"].get(behaviour, 0) > 0:
        broken.append("early_claim was paid a fast bonus")
    omitted = report["omitted_listings_confirmed_by_behavior"].get(behaviour)
    if omitted is not None and omitted < MIN_OMITTED_CONFIRMED:
        broken.append(f"omitted listings confirmed {omitted:.3f}")
    return broken


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--behaviour", action="append", choices=BEHAVIOURS)
    parser.add_argument("--fraction", type=float, action="append")
    parser.add_argument("--seed", type=int, action="append")
    parser.add_argument("--jobs", type=int, default=2, help="simulations run at once")
    parser.add_argument("--json", type=Path, help="write every report's figures here")
    args = parser.parse_args(argv)
    runs = [
        (b, f, s)
        for b in args.behaviour or BEHAVIOURS
        for s in args.seed or [7, 11]
        for f in args.fraction or [0.3, 0.4]
    ]
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(args.jobs) as pool:
        reports = list(pool.map(lambda r: run(*r, Path(tmp)), runs))
    rows, bad = [], 0
    header = f"{'behaviour':<12}{'seed':>5}{'frac':>6}{'conf':>7}{'false':>7}{'earn':>7}"
    print(header + f"{'fast':>7}{'omit':>7}  limits")
    for (behaviour, fraction, seed), report in zip(runs, reports, strict=True):
        broken = failures(behaviour, report)
        bad += bool(broken)
        ratio = report["earnings_ratio_by_behavior"].get(behaviour) or 0.0
        fast = report["fast_bonus_share_by_behavior"].get(behaviour)
        omitted = report["omitted_listings_confirmed_by_behavior"].get(behaviour)
        print(
            f"{behaviour:<12}{seed:>5}{fraction:>6.1f}{report['batch_confidence_rate']:>7.3f}"
            f"{report['honest_false_flag_rate']:>7.3f}{ratio:>7.3f}"
            f"{'-' if fast is None else format(fast, '.2f'):>7}"
            f"{'-' if omitted is None else format(omitted, '.2f'):>7}  "
            + ("; ".join(broken) or "hold")
        )
        rows.append(
            {
                "behaviour": behaviour,
                "seed": seed,
                "fraction": fraction,
                "batch_confidence_rate": report["batch_confidence_rate"],
                "honest_false_flag_rate": report["honest_false_flag_rate"],
                "earnings_ratio": ratio,
                "fast_bonus_share": fast,
                "omitted_listings_confirmed": omitted,
                "broken": broken,
            }
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    print(f"{len(runs) - bad}/{len(runs)} runs hold every limit")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
