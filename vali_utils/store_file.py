"""Whether the validator's state store file can be trusted, before anything opens it.

``check_store_file`` reads a store without writing to it and raises
``StoreUnusable`` (``StoreCorrupt``: not a database, truncated, damaged;
``StoreWithoutHistory``: an existing file with no schema, or a store that
had cycles and scores and holds none now; ``StoreTooNew``) for a file that
exists but cannot be used, leaving its bytes as they are. ``move_aside``
(the validator's ``reset-state``) renames a store so the next start begins
with no history.

    if not check_store_file(path, SCHEMA_VERSION):   # False: no file, a new store
        ...
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

# The first 100 bytes of an SQLite file: magic, page size (2 bytes at 16, 1 means
# 65536), and the page count at 28, valid when the change counter at 24 equals the
# version-valid-for number at 92 (https://www.sqlite.org/fileformat.html).
SQLITE_MAGIC = b"SQLite format 3\x00"
SQLITE_HEADER_BYTES = 100
SIDECARS = ("-wal", "-shm")  # SQLite's WAL files beside the store
HISTORY_KEY = "history_since"  # meta row: the store has held cycles or scores since then


class StoreUnusable(RuntimeError):
    """The store file cannot be used as it is; it was left untouched."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


class StoreCorrupt(StoreUnusable):
    """Not an SQLite database, truncated, or damaged inside."""


class StoreWithoutHistory(StoreUnusable):
    """An existing file with no validator schema, or a store whose history is gone."""


class StoreTooNew(StoreUnusable):
    """Written by a newer version of the validator."""


def check_store_file(path: Path, schema_version: int) -> bool:
    """Whether a usable store exists at ``path`` (False: no file, a new store).

    Reads the file without writing to it, and raises StoreCorrupt,
    StoreWithoutHistory or StoreTooNew for a file that exists but cannot be
    used as the validator's history (``schema_version``: the code's).
    """
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return False
    if size == 0:
        raise StoreWithoutHistory(path, "the file exists but is empty (0 bytes)")
    with path.open("rb") as file:
        header = file.read(SQLITE_HEADER_BYTES)
    if not header.startswith(SQLITE_MAGIC):
        raise StoreCorrupt(path, "not an SQLite database")
    expected = _expected_size(header)
    # A crash in the middle of a checkpoint may leave the header ahead of the file;
    # the WAL still holds those pages, and the read-only look below replays it.
    wal = Path(f"{path}-wal")
    pending = wal.exists() and wal.stat().st_size > 0
    if expected is None or (size < expected and not pending):
        raise StoreCorrupt(path, f"truncated ({size} bytes of {expected or '?'})")
    sidecars = [Path(f"{path}{s}") for s in SIDECARS if not Path(f"{path}{s}").exists()]
    try:
        version, tables, history = _read_only_survey(path)
    except sqlite3.DatabaseError as exc:
        _remove_new(sidecars)  # a read-only look leaves empty WAL files; not ours to keep
        raise StoreCorrupt(path, f"damaged ({exc})") from None
    if version > schema_version:
        _remove_new(sidecars)
        raise StoreTooNew(
            path, f"schema version {version} is newer than this code ({schema_version})"
        )
    if version == 0 or "cycles" not in tables:
        _remove_new(sidecars)
        raise StoreWithoutHistory(path, "an SQLite file without the validator's tables")
    if history is not None:
        _remove_new(sidecars)
        raise StoreWithoutHistory(
            path,
            f"holds no cycles and no scores, though it has held them since "
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(history))}",
        )
    return True


def _expected_size(header: bytes) -> int | None:
    """The file size the header promises, or None when the header itself is cut short."""
    if len(header) < SQLITE_HEADER_BYTES:
        return None
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    if header[24:28] != header[92:96] or pages == 0:
        return page_size  # an older writer's header: at least its first page
    return page_size * pages


def _read_only_survey(path: Path) -> tuple[int, set[str], float | None]:
    """(schema version, table names, the history mark when the history is gone)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        if db.execute("PRAGMA quick_check").fetchone()[0] != "ok":
            raise sqlite3.DatabaseError("quick_check failed")
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if version == 0 or not {"cycles", "scoring", "meta"} <= tables:
            return version, tables, None
        mark = db.execute("SELECT value FROM meta WHERE key=?", (HISTORY_KEY,)).fetchone()
        if mark is None or has_history(db):
            return version, tables, None
        return version, tables, float(mark[0])
    finally:
        db.close()


def has_history(db: sqlite3.Connection) -> bool:
    """Cycles or a scoring state: what a restarted validator carries on from."""
    return bool(
        db.execute("SELECT 1 FROM cycles LIMIT 1").fetchone()
        or db.execute("SELECT 1 FROM scoring LIMIT 1").fetchone()
    )


def _remove_new(paths: list[Path]) -> None:
    for p in paths:
        p.unlink(missing_ok=True)


def move_aside(path: Path, now: float | None = None) -> list[Path]:
    """Rename the store (and its WAL files) to ``<name>.reset-<UTC time>``; returns the new paths.

    The next start begins with no history. The file is not opened, so a
    corrupt store moves as it is.
    """
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))
    moved = []
    for suffix in ("", *SIDECARS):
        source = Path(f"{path}{suffix}")
        if source.exists():
            target = Path(f"{path}.reset-{stamp}{suffix}")
            os.replace(source, target)
            moved.append(target)
    return moved
