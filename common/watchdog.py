"""A watchdog that ends the process when its work has stopped succeeding.

pm2 (or systemd) restarts a process that exits; it does not restart one that
is alive and stuck. The watchdog runs in its own thread, so a blocked event
loop cannot silence it: when no ``beat()`` came for ``limit_s`` seconds it
logs why and exits the process with ``EXIT_CODE`` at once (``os._exit``, no
cleanup that could hang).

    dog = Watchdog(limit_s=3 * cycle_seconds, what="cycle or weight-set")
    dog.start()
    ...
    dog.beat()       # after each success
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

logger = logging.getLogger(__name__)

EXIT_CODE = 70  # EX_SOFTWARE: the process gave up; its supervisor should restart it


class Watchdog:
    def __init__(
        self,
        limit_s: float,
        what: str,
        clock: Callable[[], float] = time.monotonic,
        exit: Callable[[int], object] = os._exit,
    ) -> None:
        if limit_s <= 0:
            raise ValueError("watchdog limit must be positive")
        self.limit_s = limit_s
        self.what = what
        self._clock = clock
        self._exit = exit
        self._last = clock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def beat(self) -> None:
        self._last = self._clock()

    def overdue(self) -> float:
        """Seconds past the limit (<= 0 while healthy)."""
        return self._clock() - self._last - self.limit_s

    def check(self) -> bool:
        """Exit the process if overdue; True when it asked to exit."""
        late = self.overdue()
        if late <= 0:
            return False
        logger.critical(
            "watchdog: no successful %s for %.0f s (limit %.0f s); exiting with %d so the "
            "supervisor restarts the process",
            self.what,
            late + self.limit_s,
            self.limit_s,
            EXIT_CODE,
        )
        for handler in logging.getLogger().handlers:
            handler.flush()
        self._exit(EXIT_CODE)
        return True

    def start(self) -> None:
        interval = max(0.05, min(30.0, self.limit_s / 10))

        def watch() -> None:
            while not self._stop.wait(interval):
                if self.check():
                    return

        self._thread = threading.Thread(target=watch, name="watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
