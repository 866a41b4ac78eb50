"""The secret blocks are derived from: from settings, or generated once for the local preset.

Anyone holding it can compute every future block, so it lives in ``.env``
(``DATA_API_SECRET``) outside version control. The local preset, where
nothing is at stake, generates one on first start and keeps it in the
workdir so restarts serve the same blocks.
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

from config.settings import Settings, SettingsError
from config.settings_api import MIN_SECRET_CHARS

logger = logging.getLogger(__name__)


def local_secret_path(workdir: Path) -> Path:
    return Path(workdir) / "data_api" / "secret"


def resolve_secret(settings: Settings) -> bytes:
    """The block secret; raises SettingsError when it is missing outside the local preset."""
    if settings.api_secret:
        return settings.api_secret.encode()
    if settings.preset != "local":
        raise SettingsError("--api.secret / DATA_API_SECRET is required outside the local preset")
    path = local_secret_path(settings.workdir)
    if path.is_file():
        text = path.read_text().strip()
        if len(text) >= MIN_SECRET_CHARS:
            return text.encode()
        raise SettingsError(f"the local Data API secret in {path} is too short; delete it")
    path.parent.mkdir(parents=True, exist_ok=True)
    text = secrets.token_urlsafe(48)
    # Written to a private temporary file (0600 from the start) and linked into
    # place: two workers starting together agree on whichever secret landed first.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text + "\n")
    try:
        os.link(tmp, path)  # fails if another process got there first
    except FileExistsError:
        return path.read_text().strip().encode()
    finally:
        tmp.unlink()
    logger.warning("local preset: generated a Data API block secret in %s", path)
    return text.encode()
