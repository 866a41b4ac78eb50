"""Replay and rate-limit state in SQLite, so every worker process shares it.

``SqliteNonceStore`` implements ``bittensor.http_auth.NonceStore``: an
accepted ``(hotkey, nonce)`` pair is an ``INSERT OR IGNORE`` into a table
keyed on the pair, so a nonce accepted by one worker is a replay for all.
``SqliteRateLimiter`` counts requests per hotkey in fixed one-minute windows
(``INSERT ... ON CONFLICT DO UPDATE ... RETURNING``): the limit holds across
workers too. A fixed window lets a caller send up to twice the limit across
a window boundary; that is the price of one row per hotkey per minute.

Both run on the event loop's thread: each call is one indexed write of a few
tens of microseconds (WAL, synchronous=NORMAL, no fsync per commit), cheaper
than a hop to a thread; checkpoints happen elsewhere (``guard_connection``).
Old rows are swept every ``SWEEP_INTERVAL_S``.

    conn = guard_connection(db_path)
    nonces, limiter = SqliteNonceStore(conn), SqliteRateLimiter(conn, per_minute=600)
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

from data_api.store import connect

NONCE_RETENTION_S = 60.0  # > btauth's freshness window (10 s back, 2 s ahead)
RATE_WINDOW_S = 60
SWEEP_INTERVAL_S = 10.0
# The event loop waits on this at worst when another worker holds the write
# lock; writes are tiny, so a long wait means something is wrong.
GUARD_BUSY_TIMEOUT_MS = 1_000


def guard_connection(path: Path) -> sqlite3.Connection:
    """A connection for the guards (separate from the store's, used on the loop's thread).

    It never checkpoints: a checkpoint copies the WAL into the database and
    syncs it, tens of milliseconds that would stall every request in flight.
    ``ApiStore.checkpoint`` does that work on a thread instead.
    """
    conn = connect(path, busy_timeout_ms=GUARD_BUSY_TIMEOUT_MS)
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    return conn


class SqliteNonceStore:
    """``NonceStore`` shared by every process that opens the same database."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        retention: float = NONCE_RETENTION_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.retention = retention  # read by http_auth.verify to check the window fits
        self._conn = conn
        self._clock = clock
        self._lock = threading.Lock()
        self._next_sweep = 0.0

    def check_and_store(self, hotkey_ss58: str, nonce_ns: int) -> bool:
        """True (and remembered) the first time a pair is seen, False for a replay."""
        now = self._clock()
        with self._lock:
            if now >= self._next_sweep:
                self._conn.execute("DELETE FROM nonces WHERE expires_at < ?", (now,))
                self._next_sweep = now + SWEEP_INTERVAL_S
            cursor = self._conn.execute(
                "INSERT OR IGNORE INTO nonces (hotkey, nonce_ns, expires_at) VALUES (?, ?, ?)",
                (hotkey_ss58, int(nonce_ns), now + self.retention),
            )
            return cursor.rowcount == 1


class SqliteRateLimiter:
    """``per_minute`` requests per hotkey per fixed minute, counted in SQLite."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        per_minute: int,
        clock: Callable[[], float] = time.time,
        window_s: int = RATE_WINDOW_S,
    ) -> None:
        if per_minute < 1:
            raise ValueError("per_minute must be >= 1")
        self.per_window = per_minute * window_s // RATE_WINDOW_S or 1
        self._conn = conn
        self._clock = clock
        self._window_s = window_s
        self._lock = threading.Lock()
        self._next_sweep = 0.0

    def take(self, key: str) -> float:
        """0.0 when allowed (counted), else seconds until the caller's next window opens."""
        now = self._clock()
        window = int(now // self._window_s)
        with self._lock:
            if now >= self._next_sweep:
                self._conn.execute("DELETE FROM rate_counters WHERE window_id < ?", (window - 1,))
                self._next_sweep = now + SWEEP_INTERVAL_S
            (count,) = self._conn.execute(
                "INSERT INTO rate_counters (hotkey, window_id, count) VALUES (?, ?, 1) "
                "ON CONFLICT (hotkey, window_id) DO UPDATE SET count = count + 1 RETURNING count",
                (key, window),
            ).fetchone()
        if count <= self.per_window:
            return 0.0
        return (window + 1) * self._window_s - now
