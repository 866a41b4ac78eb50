"""Neuron settings: one typed object from presets, ``.env`` and command-line flags.

Precedence, lowest first: the preset's defaults (``--preset local|test|finney``),
the environment (a ``.env`` file is loaded into it without overriding what is
already set), then command-line flags. Flags follow the Bittensor convention
(``--netuid``, ``--subtensor.network``, ``--wallet.name``, ...); each has an
environment variable named in ``--help``. An invalid value stops the neuron at
start with one line naming the flag, the variable and what is wrong.

    settings = load_settings("miner", argv)       # raises SettingsError

The neurons' settings are in ``config/settings_neurons.py``, the Data API's
in ``config/settings_api.py`` and one setting's shape in ``config/setting.py``.
The typed sections ``settings.s3`` (S3_* variables), ``settings.sources``
(the property source's) and ``settings.s3_eval`` come from the same read of
the environment (``config/sections.py``): code receives settings, it does not
read the environment.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from config.limits import MAX_FILE_BYTES
from config.sections import read_environment, with_sections
from config.setting import ALL_ROLES, SERVICE_ROLES, Setting, SettingsError
from config.settings_api import DATA_API_SETTINGS, check_data_api
from config.settings_neurons import NEURON_SETTINGS
from config.sources import SourceSettings
from config.storage import S3EvalConfig, S3Settings

# --- Transport limits (docs/limits.md) ------------------------------------------------
# Servers (the miner and the Data API):
# A request's headers must arrive within this long of the connection opening (or of
# the previous answer on a kept-alive connection, so it is also the idle timeout).
# Above aiohttp clients' 15 s keep-alive, so a client never reuses a connection the
# server is closing; honest headers take milliseconds.
HTTP_HEADER_TIMEOUT_S = 20.0
# Waiting for a read slot plus reading the body. Honest bodies are a few KB and
# arrive in milliseconds; the 4 MiB body cap at 10 s is still 400 KB/s.
HTTP_BODY_TIMEOUT_S = 10.0
# Open connections held at once; the server also stays HTTP_FD_RESERVE under the
# process's open-file limit, so accept() never fails with EMFILE. At the cap a new
# connection takes the place of the oldest one that has sent no request.
HTTP_MAX_CONNECTIONS = 1000
# File descriptors kept free of peers: SQLite, logs, outbound sessions, uploads.
HTTP_FD_RESERVE = 128
# Bodies above 64 KiB read at once (smaller ones are already in aiohttp's buffer):
# 16 x the 4 MiB body cap is 64 MiB of request bodies at worst.
HTTP_MAX_BODY_READS = 16
# Clients (SignedClient): the largest answer read when the caller gives no cap of
# its own. An honest collect answer for a 20-zipcode batch is 0.1-1.2 MB (about 60
# bytes a record); callers that know what they asked pass a tighter cap.
DEFAULT_MAX_ANSWER_BYTES = 8 * 1024 * 1024

# --- Serving validators fairly (miner; docs/limits.md) ----------------------------------
# Stake (TAO or alpha, as the chain reports it) a validator needs before a miner
# answers it. A validator's weights count in proportion to its stake, so below
# this a validator moves no miner's incentive measurably; while on a subnet with
# fewer than 64 staked hotkeys a permit costs next to nothing, and every such
# identity could flood miners. The local subnet gives its validators exactly this.
MIN_VALIDATOR_STAKE = 1000.0
# Open (accepted, not yet finished) assignments a miner holds for all validators,
# shared out by stake: the old global cap, now one validator's flood fills its share only.
MAX_OPEN_ASSIGNMENTS = 500
# The least a validator may hold whatever its stake. An honest validator sends a
# miner about 1,000 / N assignments an epoch (N miners; 1,000 zipcodes, 2 groups
# of 10, batches of 20): 16 at 64 miners, 50 at 20.
MIN_OPEN_ASSIGNMENTS_PER_VALIDATOR = 50
# Epochs a miner keeps finished work after its deadline (scraping/retention.py): a
# validator's reveals come within the epoch after the deadline, two more are margin
# for clock skew and a validator restarted mid-epoch.
RETENTION_EPOCHS = 3
# A validator over its quota, or sending another epoch's work, is logged at most
# once per this many seconds (with the count of refusals in between), not per request.
REFUSAL_LOG_INTERVAL_S = 60.0
# Clock difference tolerated between a miner and validators at epoch boundaries.
# NTP-synced hosts agree within a second; signed requests already need 10 s.
EPOCH_CLOCK_SLACK_S = 30.0

DEFAULT_WORKDIR = Path("./workdir")


@dataclass(frozen=True, slots=True)
class Settings:
    role: str
    preset: str = "local"
    netuid: int = 1
    network: str = "local"
    chain_file: Path | None = None
    wallet_name: str = "default"
    wallet_hotkey: str = "default"
    wallet_path: Path = Path("~/.bittensor/wallets")
    host: str = "127.0.0.1"
    port: int = 8091
    external_ip: str | None = None
    workdir: Path = DEFAULT_WORKDIR
    debug: bool = False
    # Miner
    scraper: str = "synthetic"
    synthetic_seed: int = 7
    scrape_delay_s: float = 0.0
    scrape_concurrency: int = 4
    behaviour: str = "honest"
    min_validator_stake: float = MIN_VALIDATOR_STAKE
    max_open_assignments: int = MAX_OPEN_ASSIGNMENTS
    min_open_assignments: int = MIN_OPEN_ASSIGNMENTS_PER_VALIDATOR
    check_epochs: bool = True
    retention_epochs: int = RETENTION_EPOCHS
    requests_per_minute: int = 600
    max_body_bytes: int = 4 * 1024 * 1024
    # HTTP servers (miner, Data API): docs/limits.md
    http_header_timeout_s: float = HTTP_HEADER_TIMEOUT_S
    http_body_timeout_s: float = HTTP_BODY_TIMEOUT_S
    http_max_connections: int = HTTP_MAX_CONNECTIONS
    http_max_body_reads: int = HTTP_MAX_BODY_READS
    # Validator
    cycle_seconds: float = 4 * 3600.0
    collect_fraction: float = 0.75
    zipcodes_per_cycle: int = 1000
    miners_per_group: int = 10
    dispatch_concurrency: int = 64
    request_timeout_s: float = 5.0
    metagraph_refresh_s: float = 60.0
    max_cycles: int = 0
    metrics_port: int = 0
    status_port: int = 0  # the validator's status page (0 = off)
    data_api_url: str | None = None
    data_api_hotkey: str | None = None
    watchdog_s: float = 0.0
    dataset_export: bool = False  # off by default: publishing is opt-in (docs/dataset.md)
    dataset_url: str | None = None
    # Data API (the subnet owner's service, docs/data_api.md)
    api_host: str = "127.0.0.1"
    api_port: int = 8092
    api_reuse_port: bool = False
    api_db: Path | None = None  # default: <workdir>/data_api/data_api.sqlite
    # Several instances share one PostgreSQL store (docs/data_api.md); None: SQLite.
    api_database_url: str | None = None
    api_database_pool: int = 10
    api_secret: str | None = None
    api_min_validator_stake: float = 0.0
    api_requests_per_minute: int = 600
    # Distinct files a miner may upload per epoch, source and zipcode (reason in
    # config/data_api.py UploadLimits): past it a presign gets 409 upload_cap.
    api_uploads_per_zipcode: int = 64
    block_zipcodes: int = 1000
    zipcodes_per_batch: int = 20
    rotation_epochs: int = 6
    max_state_share: float = 0.10
    honeypots_per_block: int = 10
    # The block's coldkey rules for every validator's plan (AssignmentConfig).
    max_miners_per_coldkey: int = 1
    min_coldkeys_per_group: int = 5
    s3_endpoint_url: str | None = None
    s3_bucket: str | None = None
    s3_region: str = "us-east-1"
    s3_prefix: str = "data"
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = None
    # Unset, the S3 section's max_file_bytes: what miners and validators accept
    # (config/sections.py data_api_upload_cap).
    s3_upload_max_bytes: int = MAX_FILE_BYTES
    s3_url_expiry_s: float = 900.0
    # Typed sections, built by load_settings from the same environment.
    s3: S3Settings = field(default_factory=S3Settings)
    sources: SourceSettings = field(default_factory=SourceSettings)
    s3_eval: S3EvalConfig = field(default_factory=S3EvalConfig)

    @property
    def state_dir(self) -> Path:
        return self.workdir / f"{self.role}-{self.wallet_name}-{self.wallet_hotkey}"


# Every setting: the neurons' rows, then the Data API's.
SETTINGS: tuple[Setting, ...] = (*NEURON_SETTINGS, *DATA_API_SETTINGS)

PRESETS: dict[str, dict[str, Any]] = {
    # The local subnet picks its epoch length per run without telling miners.
    "local": {"network": "localfile", "netuid": 1, "cycle_seconds": 20.0, "check_epochs": False},
    # Real networks scrape the real source: the synthetic market (sim/) is for the
    # local subnet and the simulator, and a production neuron never loads it unless
    # SCRAPER=synthetic says so. Without RAPIDAPI_KEY a miner or validator stops at
    # start with one line saying so.
    "test": {"network": "test", "cycle_seconds": 4 * 3600.0, "scraper": "rapidapi_zillow"},
    "finney": {"network": "finney", "cycle_seconds": 4 * 3600.0, "scraper": "rapidapi_zillow"},
}

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _convert(setting: Setting, raw: Any, origin: str) -> Any:
    where = f"{setting.flag} / {setting.env} ({origin})"
    try:
        if setting.kind is bool:
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
            raise ValueError(f"expected true/false, got {raw!r}")
        value = setting.kind(raw)
    except (TypeError, ValueError) as exc:
        raise SettingsError(f"invalid {where}: {exc}") from None
    if isinstance(value, float) and not math.isfinite(value):
        # NaN passes every comparison check below and would disable them.
        raise SettingsError(f"invalid {where}: {raw!r} is not a finite number")
    if setting.minimum is not None and value < setting.minimum:
        raise SettingsError(f"invalid {where}: {value} is below {setting.minimum}")
    if setting.choices and value not in setting.choices:
        raise SettingsError(f"invalid {where}: {value!r} not one of {', '.join(setting.choices)}")
    return value


def build_parser(role: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"python -m {role}" if role in SERVICE_ROLES else f"python -m neurons.{role}",
        allow_abbrev=False,
        description=description,
        epilog="Every flag can also be set in .env or the environment (variable in brackets). "
        "Precedence: preset < .env/environment < flags.",
    )
    parser.add_argument(
        "--preset", choices=sorted(PRESETS), help="defaults for a network [PRESET]; default local"
    )
    parser.add_argument("--env-file", type=Path, default=Path(".env"), help="dotenv file to load")
    for setting in SETTINGS:
        if role not in setting.roles:
            continue
        if setting.kind is bool:
            parser.add_argument(
                setting.flag,
                dest=setting.name,
                action="store_const",
                const=True,
                default=None,
                help=f"{setting.help} [{setting.env}]",
            )
        else:
            parser.add_argument(
                setting.flag,
                dest=setting.name,
                default=None,
                metavar=setting.kind.__name__.upper(),
                help=f"{setting.help} [{setting.env}]",
            )
    return parser


def load_settings(
    role: str,
    argv: list[str] | None = None,
    description: str = "",
    environ: dict[str, str] | None = None,
) -> tuple[Settings, argparse.Namespace]:
    """Resolve settings for ``role`` from preset, environment and flags.

    Returns the settings and the parsed namespace (for role-specific extras).
    Raises SettingsError with a one-line message on an invalid value.
    """
    if role not in ALL_ROLES:
        raise SettingsError(f"unknown role {role!r}")
    parser = build_parser(role, description)
    args = parser.parse_args(argv)
    if environ is None:
        environ = read_environment(args.env_file)
    preset = args.preset or environ.get("PRESET", "local")
    if preset not in PRESETS:
        raise SettingsError(
            f"invalid --preset / PRESET: {preset!r} not one of {', '.join(PRESETS)}"
        )
    values: dict[str, Any] = {"role": role, "preset": preset}
    given: set[str] = set()  # set by a flag or a variable, not by a default
    known = {f.name for f in fields(Settings)}
    for name, value in PRESETS[preset].items():
        values[name] = value
    for setting in SETTINGS:
        if role not in setting.roles:
            continue
        raw_flag = getattr(args, setting.name, None)
        if raw_flag is not None:
            values[setting.name] = _convert(setting, raw_flag, "flag")
            given.add(setting.name)
        elif environ.get(setting.env) not in (None, ""):
            values[setting.name] = _convert(setting, environ[setting.env], "environment")
            given.add(setting.name)
        elif setting.name in values:
            values[setting.name] = _convert(setting, values[setting.name], f"preset {preset}")
    settings = Settings(**{k: v for k, v in values.items() if k in known})
    _check(settings)
    return with_sections(settings, environ, given), args


def setting_from_environment(name: str, environ: Mapping[str, str]) -> Any | None:
    """One setting's value from ``environ`` (None when unset), checked as load_settings does.

    For tools that need a setting or two without a role's full settings
    (``python -m data_api honeypot``). Raises SettingsError.
    """
    setting = next((s for s in SETTINGS if s.name == name), None)
    if setting is None:
        raise SettingsError(f"unknown setting {name!r}")
    raw = environ.get(setting.env)
    return None if raw in (None, "") else _convert(setting, raw, "environment")


def _check(settings: Settings) -> None:
    if settings.network == "localfile" and settings.chain_file is None:
        raise SettingsError(
            "--chain.file / CHAIN_FILE is required with --subtensor.network localfile"
        )
    if not 0 < settings.collect_fraction < 1:
        raise SettingsError(
            "invalid --collect.fraction / COLLECT_FRACTION: must be between 0 and 1"
        )
    if settings.port > 65535:
        raise SettingsError(f"invalid --port / PORT: {settings.port} is above 65535")
    if settings.dataset_export and not settings.dataset_url:
        raise SettingsError("--dataset.export needs --dataset.url / DATASET_URL")
    if settings.role == "data_api":
        check_data_api(settings)
