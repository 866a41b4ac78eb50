"""Settings of the S3 storage layer: where the bucket is, and the bounds on everything read.

``S3Settings`` is what miners (uploads), validators (manifest checks, S3
evaluation) and the Data API (presigned URLs) need to reach the bucket, plus
the caps that keep an untrusted object from costing more than a few megabytes
or a few seconds. ``S3EvalConfig`` holds the S3 evaluation's scoring tunables
(pure, like ``config/consensus.py``). Code does not build either itself: it
receives ``settings.s3`` and ``settings.s3_eval``, which ``load_settings``
builds once from the same environment as every other setting
(``config/sections.py``). ``from_environ`` parses a mapping of variables and
names the variable in every error.

    settings, _ = load_settings("validator", argv)   # SettingsError, one line
    settings.s3.max_file_bytes, settings.s3_eval.s3_weight
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from config.env_vars import EnvSection, EnvVariable, check_bounds
from config.limits import MAX_DECOMPRESSED_BYTES, MAX_FILE_BYTES, MAX_RECORDS_PER_ZIPCODE

UPLOAD_MODES = ("presigned", "direct")
# Key prefix inside the bucket: path segments of safe characters, each starting
# with a letter or digit (no "." or ".." segments), no leading or trailing slash
# (the layout adds its own); empty for the bucket root.
_SEGMENT = r"[A-Za-z0-9][A-Za-z0-9._\-]{0,63}"
PREFIX_PATTERN = re.compile(rf"{_SEGMENT}(/{_SEGMENT}){{0,7}}")
# S3 bucket names: 3-63 lower-case letters, digits, dots and hyphens.
BUCKET_PATTERN = re.compile(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]")


@dataclass(frozen=True, slots=True)
class S3Settings(EnvSection):
    """The bucket, credentials for owners who run their own, and the caps on every call."""

    endpoint_url: str = ""  # http(s)://host[:port]; empty means AWS itself
    bucket: str = ""  # required for direct uploads and for validators reading directly
    region: str = "us-east-1"
    # Direct access (owners with their own bucket, validators reading); miners
    # normally upload through presigned URLs from the Data API and leave these empty.
    access_key_id: str = ""
    secret_access_key: str = ""
    prefix: str = "data"  # every key starts with it
    upload_mode: str = "presigned"  # presigned (Data API URLs) | direct (credentials above)
    connect_timeout_s: float = 5.0  # per TCP connect; S3 answers in milliseconds
    read_timeout_s: float = 20.0  # per socket read; a 4 MiB object needs ~1 s on a slow link
    call_timeout_s: float = 60.0  # whole call incl. retries: nothing waits on S3 longer
    max_attempts: int = 3  # botocore attempts per call (throttling, 5xx, dropped connections)
    # The caps on one zipcode file, and their reasons: config/limits.py.
    max_file_bytes: int = MAX_FILE_BYTES
    max_decompressed_bytes: int = MAX_DECOMPRESSED_BYTES
    max_records_per_file: int = MAX_RECORDS_PER_ZIPCODE
    # Keys listed per miner and epoch before the listing stops: one epoch is
    # at most a few hundred zipcode files; a miner with millions is capped here.
    max_keys_per_miner: int = 5000
    upload_concurrency: int = 4  # files in flight per miner
    upload_max_attempts: int = 10  # then the file is marked failed (data stays in the store)
    upload_backoff_base_s: float = 2.0  # first retry after ~this; doubles per attempt, jittered
    upload_backoff_cap_s: float = 600.0  # no wait between attempts is longer
    verify_files_per_miner: int = 2  # manifest files checked per miner per consensus cycle
    eval_files_per_miner: int = 8  # files sampled per miner per S3 evaluation round
    eval_concurrency: int = 32  # S3 calls in flight during an evaluation round
    # A 404 counts against a miner only when corroborated: fetched again after
    # this many seconds, and absent from its folder's listing read in full. S3
    # is read-after-write consistent, so a 404 that goes away is a failing node
    # or proxy; misses are rare, so the wait costs honest miners nothing
    # (S3_MISSING_RECHECK_S).
    missing_recheck_s: float = 2.0

    def __post_init__(self) -> None:
        check_bounds(self, _VARIABLES)
        if self.endpoint_url:
            parts = urlsplit(self.endpoint_url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValueError(
                    f"S3_ENDPOINT_URL: {self.endpoint_url!r} is not an http(s)://host URL"
                )
        if self.bucket and not BUCKET_PATTERN.fullmatch(self.bucket):
            raise ValueError(f"S3_BUCKET: {self.bucket!r} is not a valid bucket name")
        if self.prefix and not PREFIX_PATTERN.fullmatch(self.prefix):
            raise ValueError(
                f"S3_PREFIX: {self.prefix!r} must be '/'-separated segments of letters,"
                " digits and '._-', each starting with a letter or digit"
            )
        if self.upload_mode not in UPLOAD_MODES:
            raise ValueError(f"S3_UPLOAD_MODE: {self.upload_mode!r} is not one of {UPLOAD_MODES}")
        if bool(self.access_key_id) != bool(self.secret_access_key):
            raise ValueError("S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY must be set together")
        if self.upload_mode == "direct" and not self.bucket:
            raise ValueError("S3_BUCKET is not set but S3_UPLOAD_MODE is direct")
        if not 0.0 <= self.missing_recheck_s <= 60.0:
            raise ValueError("S3Settings.missing_recheck_s must be in [0, 60] seconds")
        if self.upload_backoff_cap_s < self.upload_backoff_base_s:
            raise ValueError("S3_UPLOAD_BACKOFF_CAP_S: must be >= S3_UPLOAD_BACKOFF_BASE_S")

    def secrets(self) -> dict[str, object]:
        return {"S3_SECRET_ACCESS_KEY": "(set)" if self.secret_access_key else ""}


@dataclass(frozen=True, slots=True)
class S3EvalConfig:
    """How the S3 evaluation judges a miner's files and how its reward enters the weights."""

    # Records must have been scraped within this long before the evaluation:
    # an epoch is 4 h, and the evaluation of an epoch runs during the next ones.
    freshness_max_age_s: float = 48 * 3600.0
    # scraped_at may run this far ahead of the S3 server's upload time (clock skew).
    clock_skew_s: float = 300.0
    spot_checks_per_miner: int = 2  # records per miner verified through the validator's source
    # Share of a miner's weight that rides on its S3 data: weight = score x
    # (1 - s3_weight x s3_credibility x (1 - s3_quality)). 0.3 makes bad
    # uploads cost up to 30 % of what consensus earned, never more.
    s3_weight: float = 0.3
    quality_alpha: float = 0.3  # EMA step of s3_quality per evaluation round
    # EMA step of s3_credibility towards 1 per round with evidence: about four
    # rounds before S3 results carry most of their weight.
    credibility_alpha: float = 0.25
    # An outage is never evidence. When at least this share of the miners of a
    # round (or of the epoch's manifest checks during its consensus cycle)
    # could not be read, S3 or the Data API was failing, not those miners: the
    # whole round (the whole epoch) gives no evidence, because reads that did
    # answer may have been degraded too. One miner's failed read is a glitch
    # and only that miner goes without evidence. A quarter: well above the
    # odd timeout, well below what a real outage does (every read fails).
    outage_share: float = 0.25
    # An outage while miners upload loses honest files that nothing read
    # afterwards can tell from missing work: the validator probes the Data API
    # and S3 this often (at most; a twenty-fifth of a short epoch) through each
    # upload window, and an epoch whose window saw this many failed probes in
    # a row gives no S3 evidence (vali_utils/storage_watch.py).
    watch_interval_s: float = 30.0
    watch_failures_in_a_row: int = 2

    def __post_init__(self) -> None:
        for name in ("s3_weight", "quality_alpha", "credibility_alpha", "outage_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"S3EvalConfig.{name} must be in [0, 1]")
        if self.freshness_max_age_s <= 0 or self.clock_skew_s < 0:
            raise ValueError("S3EvalConfig: freshness_max_age_s > 0 and clock_skew_s >= 0")
        if self.spot_checks_per_miner < 0:
            raise ValueError("S3EvalConfig.spot_checks_per_miner must be >= 0")
        if self.watch_interval_s <= 0 or self.watch_failures_in_a_row < 1:
            raise ValueError("S3EvalConfig: watch_interval_s > 0 and watch_failures_in_a_row >= 1")


# Environment variable per field, with the smallest value that makes sense.
_VARIABLES: tuple[EnvVariable, ...] = (
    EnvVariable("endpoint_url", "S3_ENDPOINT_URL"),
    EnvVariable("bucket", "S3_BUCKET"),
    EnvVariable("region", "S3_REGION"),
    EnvVariable("access_key_id", "S3_ACCESS_KEY_ID"),
    EnvVariable("secret_access_key", "S3_SECRET_ACCESS_KEY"),
    EnvVariable("prefix", "S3_PREFIX"),
    EnvVariable("upload_mode", "S3_UPLOAD_MODE"),
    EnvVariable("connect_timeout_s", "S3_CONNECT_TIMEOUT_S", 0.05),
    EnvVariable("read_timeout_s", "S3_READ_TIMEOUT_S", 0.05),
    EnvVariable("call_timeout_s", "S3_CALL_TIMEOUT_S", 0.1),
    EnvVariable("max_attempts", "S3_MAX_ATTEMPTS", 1),
    EnvVariable("max_file_bytes", "S3_MAX_FILE_BYTES", 1024),
    EnvVariable("max_decompressed_bytes", "S3_MAX_DECOMPRESSED_BYTES", 1024),
    EnvVariable("max_records_per_file", "S3_MAX_RECORDS_PER_FILE", 1),
    EnvVariable("max_keys_per_miner", "S3_MAX_KEYS_PER_MINER", 1),
    EnvVariable("upload_concurrency", "S3_UPLOAD_CONCURRENCY", 1),
    EnvVariable("missing_recheck_s", "S3_MISSING_RECHECK_S", 0.0),
    EnvVariable("upload_max_attempts", "S3_UPLOAD_MAX_ATTEMPTS", 1),
    EnvVariable("upload_backoff_base_s", "S3_UPLOAD_BACKOFF_BASE_S", 0.0),
    EnvVariable("upload_backoff_cap_s", "S3_UPLOAD_BACKOFF_CAP_S", 0.0),
    EnvVariable("verify_files_per_miner", "S3_VERIFY_FILES_PER_MINER", 0),
    EnvVariable("eval_files_per_miner", "S3_EVAL_FILES_PER_MINER", 1),
    EnvVariable("eval_concurrency", "S3_EVAL_CONCURRENCY", 1),
)
S3Settings.VARIABLES = _VARIABLES
ENVIRONMENT_VARIABLES: tuple[str, ...] = tuple(spec.env for spec in _VARIABLES)
