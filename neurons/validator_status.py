"""``python -m neurons.validator status``: what the validator is doing, from its state store.

Opens ``validator.sqlite`` read-only (the running validator is not touched,
not even locked) and prints the current epoch, the last cycles and their
phase, the last weights and the top and bottom miners with their reasons.
Takes the validator's own flags (``--workdir``, ``--wallet.name``,
``--wallet.hotkey``, ``--cycle.seconds``) to find the store; ``--json`` prints
the same as JSON.

``python -m neurons.validator reset-state`` moves the store (and its WAL
files) aside, renamed ``validator.sqlite.reset-<UTC time>``, so the next start
begins with no history: what to do after a start refused a corrupt or empty
store and the file was looked at or backed up. Stop the validator first.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from pathlib import Path

from config.settings import SettingsError, load_settings
from vali_utils.store_file import move_aside

SHOWN = 5  # miners at each end of the ranking


def read_status(path: Path, cycle_seconds: float, now: float | None = None) -> dict:
    """The status document from the store at ``path`` (raises FileNotFoundError)."""
    if not path.exists():
        raise FileNotFoundError(f"no validator state at {path}")
    now = time.time() if now is None else now
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        cycles = db.execute(
            "SELECT epoch, phase, plan_hash, started_at, updated_at, report_json FROM cycles"
            " ORDER BY epoch DESC LIMIT 5"
        ).fetchall()
        weights = db.execute(
            "SELECT epoch, weights_json, attempted_at, set_at FROM weights"
            " ORDER BY attempted_at DESC LIMIT 1"
        ).fetchone()
        last_ok = db.execute("SELECT MAX(set_at) FROM weights").fetchone()[0]
        scoring = db.execute("SELECT state_json, updated_at FROM scoring WHERE id=1").fetchone()
    finally:
        db.close()
    report = next((json.loads(c[5]) for c in cycles if c[5]), None)
    return {
        "store": str(path),
        "current_epoch": int(now // cycle_seconds),
        "cycles": [
            {
                "epoch": c[0],
                "phase": c[1],
                "plan_hash": c[2],
                "started_at": c[3],
                "updated_at": c[4],
            }
            for c in cycles
        ],
        "last_weights": None
        if weights is None
        else {
            "epoch": weights[0],
            "uids": len(json.loads(weights[1])),
            "attempted_at": weights[2],
            "set": weights[3] is not None,
            "last_success_at": last_ok,
        },
        "miners": _ranked(json.loads(scoring[0]) if scoring else None, report),
    }


def _ranked(state: dict | None, report: dict | None) -> dict:
    if not state:
        return {"top": [], "bottom": [], "count": 0}
    last = {m["hotkey"]: m for m in (report or {}).get("miners", [])}
    rows = []
    for hotkey, m in state["miners"].items():
        seen = last.get(hotkey, {})
        reasons = list(m.get("last_flags", []))
        if seen and seen.get("answered_zipcodes", 0) < seen.get("assigned_zipcodes", 0):
            reasons.append(
                f"answered {seen['answered_zipcodes']}/{seen['assigned_zipcodes']} zipcodes"
            )
        if seen.get("quality") is not None:
            reasons.append(f"quality {seen['quality']:.3f}")
        rows.append(
            {
                "uid": m["uid"],
                "hotkey": hotkey,
                "score": round(m["score"], 6),
                "credibility": round(m["credibility"], 4),
                "penalty": round(m["penalty"], 4),
                "reasons": reasons or ["no findings"],
            }
        )
    rows.sort(key=lambda r: (-r["score"], r["uid"]))
    return {"top": rows[:SHOWN], "bottom": rows[-SHOWN:][::-1], "count": len(rows)}


def render(status: dict) -> str:
    lines = [f"store {status['store']}", f"current epoch {status['current_epoch']}"]
    for c in status["cycles"]:
        updated = time.strftime("%H:%M:%S", time.localtime(c["updated_at"]))
        lines.append(f"  epoch {c['epoch']}: {c['phase']} (updated {updated})")
    w = status["last_weights"]
    if w is None:
        lines.append("weights: never set")
    else:
        when = (
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(w["last_success_at"]))
            if w["last_success_at"]
            else "never"
        )
        lines.append(
            f"weights: epoch {w['epoch']}, {w['uids']} uids, "
            f"{'set' if w['set'] else 'NOT set'}; last success {when}"
        )
    miners = status["miners"]
    for title in ("top", "bottom"):
        lines.append(f"{title} miners (of {miners['count']}):")
        for m in miners[title]:
            lines.append(
                f"  uid {m['uid']:>4} score {m['score']:.4f} cred {m['credibility']:.3f}"
                f"  {'; '.join(m['reasons'])}"
            )
    return "\n".join(lines)


def status_main(argv: list[str]) -> int:
    as_json = "--json" in argv
    argv = [a for a in argv if a != "--json"]
    try:
        settings, _ = load_settings("validator", argv, description="validator status")
    except SettingsError as exc:
        print(f"validator status: {exc}", file=sys.stderr)
        return 2
    try:
        status = read_status(settings.state_dir / "validator.sqlite", settings.cycle_seconds)
    except (FileNotFoundError, sqlite3.Error) as exc:
        print(f"validator status: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(status, indent=1) if as_json else render(status))
    return 0


RESET_DESCRIPTION = (
    "Move the validator's state store (validator.sqlite and its WAL files) aside,"
    " renamed validator.sqlite.reset-<UTC time>, so the next start begins with no"
    " history: scores, credibility and cycles start over. Use it after the validator"
    " refused to start on a corrupt or empty store, once the file is backed up or looked"
    " at. Stop the validator first. Takes the validator's flags to find the store."
)


def reset_main(argv: list[str]) -> int:
    try:
        settings, _ = load_settings("validator", argv, description=RESET_DESCRIPTION)
    except SettingsError as exc:
        print(f"validator reset-state: {exc}", file=sys.stderr)
        return 2
    path = settings.state_dir / "validator.sqlite"
    try:
        moved = move_aside(path)
    except OSError as exc:
        print(f"validator reset-state: {path} not moved: {exc}", file=sys.stderr)
        return 1
    if not moved:
        print(f"validator reset-state: no state store at {path}; nothing to reset")
        return 0
    print(
        f"validator reset-state: moved {path} to {moved[0]}; the next start begins with no history"
    )
    return 0
