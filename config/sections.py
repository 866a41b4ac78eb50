"""The one read of the environment, and the settings' typed sections built from it.

``load_settings`` (``config/settings.py``) resolves the table of flags; the
sections below come from the same variables in the same pass, so a miner, a
validator and the Data API each hold one ``Settings`` whose ``s3``,
``sources`` and ``s3_eval`` are all their code receives. Nothing outside
``config/`` reads ``os.environ``.

    environ = read_environment(Path(".env"))         # the environment over .env
    settings = with_sections(flat, environ, given)   # SettingsError, one line
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Set
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from dotenv import load_dotenv

from config.setting import SettingsError
from config.sources import SourceSettings
from config.storage import S3Settings

if TYPE_CHECKING:
    from config.settings import Settings

# Roles that build a property source (SCRAPER): miners scrape, validators spot-check.
SOURCE_ROLES = ("miner", "validator")


def read_environment(env_file: Path | None) -> dict[str, str]:
    """The process environment with ``env_file`` (dotenv) loaded under it.

    What the environment already sets wins over the file; a missing file is
    no error. The project's one reader of ``os.environ``.
    """
    if env_file is not None and env_file.is_file():
        load_dotenv(env_file, override=False)
    return dict(os.environ)


def with_sections(settings: Settings, environ: Mapping[str, str], given: Set[str]) -> Settings:
    """``settings`` with its S3 and sources sections built from ``environ``.

    ``given`` names the settings a flag or a variable set (not a default).
    Raises SettingsError with one line naming the variable that is wrong.
    """
    s3 = s3_section(settings, environ)
    sources = SourceSettings()
    if settings.role in SOURCE_ROLES:
        try:
            sources = SourceSettings.from_environ(environ, settings.scraper)
        except ValueError as exc:
            raise SettingsError(f"invalid --scraper / SCRAPER: {exc}") from None
    upload_cap = settings.s3_upload_max_bytes
    if settings.role == "data_api":
        upload_cap = data_api_upload_cap(settings, s3, "s3_upload_max_bytes" in given)
    return replace(settings, s3=s3, sources=sources, s3_upload_max_bytes=upload_cap)


def s3_section(settings: Settings, environ: Mapping[str, str]) -> S3Settings:
    """The S3 section: the S3_* variables, and for the Data API its --s3.* flags.

    The Data API names its bucket with flags as well as variables; both go
    through S3Settings' checks (bucket name, endpoint URL, prefix, key pairs),
    the same a miner's and a validator's values go through.
    """
    try:
        s3 = S3Settings.from_environ(environ)
        if settings.role == "data_api":
            s3 = replace(
                s3,
                endpoint_url=settings.s3_endpoint_url or "",
                bucket=settings.s3_bucket or "",
                region=settings.s3_region,
                prefix=settings.s3_prefix,
                access_key_id=settings.s3_access_key_id or "",
                secret_access_key=settings.s3_secret_access_key or "",
            )
    except ValueError as exc:
        raise SettingsError(f"invalid {exc}") from None
    return s3


def data_api_upload_cap(settings: Settings, s3: S3Settings, given: bool) -> int:
    """The largest upload the Data API presigns: what miners and validators accept.

    Unset, it is S3_MAX_FILE_BYTES (default ``config.limits.MAX_FILE_BYTES``);
    S3_UPLOAD_MAX_BYTES may lower it, never raise it: a miner would upload a
    file that every validator then refuses to read.
    """
    if not given:
        return s3.max_file_bytes
    if settings.s3_upload_max_bytes > s3.max_file_bytes:
        raise SettingsError(
            f"invalid --s3.upload.max.bytes / S3_UPLOAD_MAX_BYTES: {settings.s3_upload_max_bytes}"
            f" is above S3_MAX_FILE_BYTES {s3.max_file_bytes}, the largest file miners and"
            " validators accept"
        )
    return settings.s3_upload_max_bytes
