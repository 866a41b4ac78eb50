"""What the status page shows, read from the validator's store: plain, bounded documents.

The store is opened read-only (``mode=ro``) for each read, so the page never
locks, writes or slows the running validator; S3 evaluation rounds come from
the JSON reports under ``<state_dir>/s3/``. Every list is bounded (pages of
miners and zipcodes, a fixed number of cycles, flags and rounds) and every
string a miner could have sent is cut to ``TEXT_LIMIT`` characters; escaping
is the renderer's (``vali_utils/status_html.py``). No secret and no host path
is ever read into a document.

    reader = StatusReader(state_dir, EpochClock(14400, 0.75))
    overview = reader.overview(now=time.time(), page=1, query="")
    miner = reader.miner(uid=3, now=time.time())   # None: no such miner
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from common.epochs import EpochClock

CYCLES_SHOWN = 12  # the store keeps this many cycles' details (vali_utils/store.py KEEP_EPOCHS)
MINERS_PER_PAGE = 256
ZIPCODES_PER_PAGE = 100
FLAGS_SHOWN = 50
ANSWERS_SHOWN = 20
S3_ROUNDS_SHOWN = 12
S3_REPORT_MAX_BYTES = 4 << 20  # a round's summary is a few hundred bytes per miner
TEXT_LIMIT = 200  # characters of any string a miner could have put in a field
QUERY_LIMIT = 64
COLDKEY_SHOWN = 8
EVIDENCE_ITEMS = 12  # items of a list in a flag's evidence

# Flag kinds whose evidence the page never shows, only that the flag was raised:
# which zipcodes were honeypots stays with validators (docs/architecture.md §3.3),
# even after the epoch, and any count of a honeypot's records names it to a miner
# that knows how many it sent for each of its zipcodes.
WITHHELD_EVIDENCE = frozenset({"honeypot"})

# What the validator is doing, by the stored phase of the current epoch's cycle.
PHASE_NAMES = {
    "planned": "assign",
    "dispatched": "collect",
    "collected": "reveal",
    "tiebreaks": "consensus",
    "scored": "consensus",
    "done": "S3 evaluation",
}


# The last scored cycles' reports (bound: CYCLES_SHOWN), newest first.
LAST_REPORTS = (
    "(SELECT epoch, report_json FROM cycles WHERE report_json IS NOT NULL"
    " ORDER BY epoch DESC LIMIT ?)"
)


class StatusUnavailable(RuntimeError):
    """The store cannot be read now (missing, locked past the timeout, damaged)."""


def clip(text: object, limit: int = TEXT_LIMIT) -> str:
    """``text`` as a string of at most ``limit`` characters (an ellipsis marks a cut)."""
    value = str(text)
    return value if len(value) <= limit else value[: limit - 1] + "…"


def bounded(value: object, depth: int = 0) -> object:
    """A flag's evidence made safe to show: strings clipped, lists and dicts shortened."""
    if isinstance(value, bool | int | float) or value is None:
        return value
    if depth >= 3:
        return clip(json.dumps(value, default=str), 80)
    if isinstance(value, dict):
        items = list(value.items())[:EVIDENCE_ITEMS]
        return {clip(k, 40): bounded(v, depth + 1) for k, v in items}
    if isinstance(value, list | tuple):
        shown = [bounded(v, depth + 1) for v in value[:EVIDENCE_ITEMS]]
        return shown + (
            [f"… {len(value) - EVIDENCE_ITEMS} more"] if len(value) > EVIDENCE_ITEMS else []
        )
    return clip(value)


def current_phase(clock: EpochClock, now: float, stored: str | None) -> tuple[str, float]:
    """(phase name, seconds left in it) from the current epoch's stored cycle phase.

    Before the collect deadline a cycle not yet planned is "assign"; after it,
    dispatched or collected cycles are revealing, then consensus until the
    tie-break deadline; a finished cycle (or none) leaves the rest of the
    epoch to S3 evaluation.
    """
    epoch = clock.epoch_at(now)
    deadline, tiebreaks, end = (
        clock.deadline(epoch),
        clock.tiebreak_deadline(epoch),
        clock.end(epoch),
    )
    if stored in (None, "done") and (stored == "done" or now >= deadline):
        return "S3 evaluation", end - now
    if stored in (None, "planned"):
        return "assign", max(0.0, deadline - now)
    if stored == "dispatched" and now < deadline:
        return "collect", deadline - now
    if stored in ("dispatched", "collected"):
        return "reveal", max(0.0, tiebreaks - now)
    return PHASE_NAMES.get(stored, "consensus"), max(0.0, tiebreaks - now)


@dataclass(frozen=True, slots=True)
class StatusReader:
    """Reads the status documents from a validator's state folder (``settings.state_dir``)."""

    state_dir: Path
    clock: EpochClock

    @property
    def store_path(self) -> Path:
        return self.state_dir / "validator.sqlite"

    def _connect(self) -> sqlite3.Connection:
        if not self.store_path.exists():
            raise StatusUnavailable("the validator has no state yet")
        try:
            return sqlite3.connect(f"file:{self.store_path}?mode=ro", uri=True, timeout=2)
        except sqlite3.Error as exc:
            raise StatusUnavailable(f"state store unreadable: {exc}") from exc

    def _read(self, work):
        db = self._connect()
        try:
            return work(db)
        except sqlite3.Error as exc:
            raise StatusUnavailable(f"state store unreadable: {exc}") from exc
        finally:
            db.close()

    # The overview -------------------------------------------------------------

    def overview(self, now: float, page: int = 1, query: str = "") -> dict:
        """Epoch, phase, the last cycles and one page of the miners table."""
        query = query.strip()[:QUERY_LIMIT]

        def work(db: sqlite3.Connection) -> dict:
            epoch = self.clock.epoch_at(now)
            row = db.execute("SELECT phase FROM cycles WHERE epoch=?", (epoch,)).fetchone()
            phase, left = current_phase(self.clock, now, row[0] if row else None)
            cycles = _cycle_summaries(db)
            last = db.execute(
                "SELECT epoch, report_json, miners_json FROM cycles"
                " WHERE report_json IS NOT NULL ORDER BY epoch DESC LIMIT 1"
            ).fetchone()
            rows = _miner_rows(json.loads(last[1]), json.loads(last[2])) if last else []
            return {
                "epoch": epoch,
                "phase": phase,
                "phase_seconds_left": round(left, 1),
                "cycles": cycles,
                "scored_epoch": last[0] if last else None,
                "miners": _page_of(rows, page, query),
            }

        return self._read(work)

    # One miner ----------------------------------------------------------------

    def miner(self, uid: int, now: float, page: int = 1) -> dict | None:
        """One miner's page: its last cycles, zipcode outcomes, flags, answers, S3 rounds."""

        def work(db: sqlite3.Connection) -> dict | None:
            # Only the last CYCLES_SHOWN reports are ever parsed, whatever the uid asked:
            # an unknown one costs the same as a known one, however long the history.
            history = db.execute(
                f"SELECT c.epoch, j.value FROM {LAST_REPORTS} c, json_each(c.report_json,"
                " '$.miners') j WHERE json_extract(j.value, '$.uid') = ? ORDER BY c.epoch DESC",
                (CYCLES_SHOWN, uid),
            ).fetchall()
            if not history:
                return None
            latest_epoch, latest = history[0][0], json.loads(history[0][1])
            hotkey = latest["hotkey"]
            flags = db.execute(
                f"SELECT c.epoch, j.value FROM {LAST_REPORTS} c, json_each(c.report_json,"
                " '$.flags') j WHERE json_extract(j.value, '$.hotkey') = ?"
                " ORDER BY c.epoch DESC LIMIT ?",
                (CYCLES_SHOWN, hotkey, FLAGS_SHOWN),
            ).fetchall()
            answers = db.execute(
                "SELECT epoch, request_id, kind, status, completed_after_s, error"
                " FROM assignments WHERE hotkey=? ORDER BY epoch DESC, request_id LIMIT ?",
                (hotkey, ANSWERS_SHOWN),
            ).fetchall()
            coldkey = db.execute(
                "SELECT json_extract(j.value, '$.coldkey') FROM cycles c,"
                " json_each(c.miners_json) j"
                " WHERE c.epoch=? AND json_extract(j.value, '$.hotkey')=?",
                (latest_epoch, hotkey),
            ).fetchone()
            return {
                "uid": uid,
                "hotkey": clip(hotkey),
                "coldkey": clip(coldkey[0]) if coldkey and coldkey[0] else None,
                "epoch": self.clock.epoch_at(now),
                "latest_epoch": latest_epoch,
                "cycles": [_miner_cycle(e, json.loads(m)) for e, m in history],
                "zipcodes": _zipcode_page(latest.get("zipcodes") or {}, page),
                "flags": [_flag(e, json.loads(v)) for e, v in flags],
                "answers": [
                    {
                        "epoch": a[0],
                        "request_id": clip(a[1], 80),
                        "kind": a[2],
                        "status": None if a[3] is None else clip(a[3], 40),
                        "completed_after_s": None if a[4] is None else round(a[4], 2),
                        "error": None if a[5] is None else clip(a[5]),
                    }
                    for a in answers
                ],
            }

        found = self._read(work)
        if found is not None:
            found["s3_rounds"] = self.s3_rounds(found["hotkey"])
        return found

    def s3_rounds(self, hotkey: str) -> list[dict]:
        """This miner's last S3 evaluation rounds: reward (None: no evidence) and reasons."""
        folder = self.state_dir / "s3"
        try:
            files = sorted(folder.glob("s3-e*-r*.json"), key=_round_order, reverse=True)
        except OSError:
            return []
        rounds = []
        for path in files[:S3_ROUNDS_SHOWN]:
            try:
                if path.stat().st_size > S3_REPORT_MAX_BYTES:
                    continue
                summary = json.loads(path.read_text())
            except (OSError, ValueError):
                continue  # being written, or removed meanwhile
            rewards = summary.get("rewards") or {}
            if hotkey not in rewards:
                continue
            reward = rewards[hotkey]
            rounds.append(
                {
                    "round": clip(summary.get("round"), 40),
                    "epoch": summary.get("epoch"),
                    "reward": reward if isinstance(reward, int | float) else None,
                    "reasons": [clip(r) for r in (summary.get("reasons") or {}).get(hotkey, [])][
                        :EVIDENCE_ITEMS
                    ],
                }
            )
        return rounds


def _flag(epoch: int, flag: dict) -> dict:
    kind = str(flag.get("kind"))
    if kind in WITHHELD_EVIDENCE:
        return {"epoch": epoch, "kind": clip(kind, 40), "evidence": None}
    evidence = dict(flag.get("evidence") or {})
    return {"epoch": epoch, "kind": clip(kind, 40), "evidence": bounded(evidence)}


def _round_order(path: Path) -> tuple[int, int]:
    # s3-e{epoch}-r{round}.json, newest epoch and round first
    try:
        epoch, number = path.stem.removeprefix("s3-e").split("-r")
        return int(epoch), int(number)
    except ValueError:
        return -1, -1


def _cycle_summaries(db: sqlite3.Connection) -> list[dict]:
    rows = db.execute(
        "SELECT c.epoch, c.phase, c.plan_hash, json_extract(c.report_json, '$.batch_confidence'),"
        " json_extract(c.report_json, '$.completed'), json_array_length(c.report_json, '$.flags'),"
        " w.set_at IS NOT NULL, w.attempted_at IS NOT NULL"
        " FROM cycles c LEFT JOIN weights w ON w.epoch = c.epoch"
        " ORDER BY c.epoch DESC LIMIT ?",
        (CYCLES_SHOWN,),
    ).fetchall()
    out = []
    for epoch, phase, plan_hash, confidence, completed, flags, weights_set, attempted in rows:
        batches = list(json.loads(confidence).values()) if confidence else []
        out.append(
            {
                "epoch": epoch,
                "phase": phase,
                "plan_hash": plan_hash,
                "batches": len(batches),
                "confidence_mean": round(sum(batches) / len(batches), 4) if batches else None,
                "confidence_min": min(batches) if batches else None,
                "submissions": completed,
                "flags": flags or 0,
                "weights_set": bool(weights_set) if attempted else None,
            }
        )
    return out


def _miner_rows(report: dict, miners: list[dict]) -> list[dict]:
    coldkeys = {m["hotkey"]: m.get("coldkey") or "" for m in miners}
    rows = []
    for m in report.get("miners", []):
        coldkey = coldkeys.get(m["hotkey"], "")
        rows.append(
            {
                "uid": m["uid"],
                "hotkey": clip(m["hotkey"]),
                "coldkey": clip(coldkey[:COLDKEY_SHOWN]),
                **_figures(m),
            }
        )
    return sorted(rows, key=lambda r: r["uid"])


def _matches(row: dict, query: str) -> bool:
    q = query.lower()
    return (
        q == str(row["uid"])
        or q in row["hotkey"].lower()
        or q in row["coldkey"].lower()
        or any(q in f for f in row["flags"])
    )


def _page_of(rows: list[dict], page: int, query: str) -> dict:
    if query:
        rows = [r for r in rows if _matches(r, query)]
    pages = max(1, -(-len(rows) // MINERS_PER_PAGE))
    page = min(max(1, page), pages)
    start = (page - 1) * MINERS_PER_PAGE
    return {
        "query": query,
        "total": len(rows),
        "page": page,
        "pages": pages,
        "per_page": MINERS_PER_PAGE,
        "rows": rows[start : start + MINERS_PER_PAGE],
    }


def _miner_cycle(epoch: int, m: dict) -> dict:
    return {"epoch": epoch, **_figures(m)}


def _figures(m: dict) -> dict:
    """A miner's figures of one cycle report, as the table and the miner page show them."""
    return {
        "answered": m.get("answered_zipcodes", 0),
        "assigned": m.get("assigned_zipcodes", 0),
        "quality": m.get("quality"),
        "recall": m.get("recall"),
        "credibility": m.get("credibility"),
        "score": m.get("score"),
        "weight": m.get("weight"),
        "flags": [clip(f, 40) for f in m.get("flags", [])],
    }


def _zipcode_page(outcomes: dict, page: int) -> dict:
    items = sorted(outcomes.items())
    pages = max(1, -(-len(items) // ZIPCODES_PER_PAGE))
    page = min(max(1, page), pages)
    start = (page - 1) * ZIPCODES_PER_PAGE
    return {
        "counts": dict(Counter(outcomes.values())),
        "page": page,
        "pages": pages,
        "rows": [
            {"zipcode": clip(z, 10), "outcome": clip(o, 20)}
            for z, o in items[start : start + ZIPCODES_PER_PAGE]
        ],
    }
