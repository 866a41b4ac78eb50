"""The validator's scoring state on disk: one JSON file, replaced atomically.

A crash while writing leaves the previous file intact (write to a temporary
file, fsync, rename). An unreadable or foreign-version file is moved aside
and the validator starts from a neutral state, saying so in the log.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

from consensus.scoring import ScoringState

logger = logging.getLogger(__name__)


def save_state(path: Path, state: ScoringState) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as handle:
        json.dump(state.to_dict(), handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def load_state(path: Path) -> ScoringState:
    if not path.exists():
        return ScoringState()
    try:
        return ScoringState.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError) as exc:
        aside = path.with_name(f"{path.name}.bad-{int(time.time())}")
        os.replace(path, aside)
        logger.error(
            "scoring state %s unreadable (%s); moved to %s, starting fresh", path, exc, aside
        )
        return ScoringState()
