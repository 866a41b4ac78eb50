"""Neuron settings: one typed object from presets, ``.env`` and command-line flags.

Precedence, lowest first: the preset's defaults (``--preset local|test|finney``),
the environment (a ``.env`` file is loaded into it without overriding what is
already set), then command-line flags. Flags follow the Bittensor convention
(``--netuid``, ``--subtensor.network``, ``--wallet.name``, ...); each has an
environment variable named in ``--help``. An invalid value stops the neuron at
start with one line naming the flag, the variable and what is wrong.

    settings = load_settings("miner", argv)       # raises SettingsError

The table below holds the neurons' settings; the Data API's are in
``config/settings_api.py`` and one setting's shape in ``config/setting.py``.
"""

from __future__ import annotations

import argparse
import math
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from dotenv import load_dotenv

from config.setting import ALL_ROLES, SERVICE_ROLES, Setting, SettingsError
from config.settings_api import DATA_API_SETTINGS, check_data_api

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
# A validator over its quota, or sending another epoch's work, is logged at most
# once per this many seconds (with the count of refusals in between), not per request.
REFUSAL_LOG_INTERVAL_S = 60.0
# Clock difference tolerated between a miner and validators at epoch boundaries.
# NTP-synced hosts agree within a second; signed requests already need 10 s.
EPOCH_CLOCK_SLACK_S = 30.0


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
    workdir: Path = Path("./workdir")
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
    data_api_url: str | None = None
    data_api_hotkey: str | None = None
    watchdog_s: float = 0.0
    # Data API (the subnet owner's service, docs/data_api.md)
    api_host: str = "127.0.0.1"
    api_port: int = 8092
    api_reuse_port: bool = False
    api_db: Path | None = None  # default: <workdir>/data_api/data_api.sqlite
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
    s3_endpoint_url: str | None = None
    s3_bucket: str | None = None
    s3_region: str = "us-east-1"
    s3_prefix: str = "data"
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = None
    s3_upload_max_bytes: int = 64 * 1024 * 1024
    s3_url_expiry_s: float = 900.0

    @property
    def state_dir(self) -> Path:
        return self.workdir / f"{self.role}-{self.wallet_name}-{self.wallet_hotkey}"


# One row per setting: flag, environment variable, type, meaning.
SETTINGS: tuple[Setting, ...] = (
    Setting(
        "netuid",
        "--netuid",
        "NETUID",
        int,
        "subnet id on the chain",
        roles=ALL_ROLES,
        minimum=0,
    ),
    Setting(
        "network",
        "--subtensor.network",
        "SUBTENSOR_NETWORK",
        str,
        "chain: 'localfile' (the local subnet's chain.json), local, test, finney or ws://...",
        roles=ALL_ROLES,
    ),
    Setting(
        "chain_file",
        "--chain.file",
        "CHAIN_FILE",
        Path,
        "local chain registry (localfile)",
        roles=ALL_ROLES,
    ),
    Setting("wallet_name", "--wallet.name", "WALLET_NAME", str, "coldkey wallet name", ALL_ROLES),
    Setting("wallet_hotkey", "--wallet.hotkey", "WALLET_HOTKEY", str, "hotkey name", ALL_ROLES),
    Setting("wallet_path", "--wallet.path", "WALLET_PATH", Path, "wallets directory", ALL_ROLES),
    Setting("host", "--host", "HOST", str, "address the HTTP server binds"),
    Setting("port", "--port", "PORT", int, "port the HTTP server binds", minimum=0),
    Setting("external_ip", "--external.ip", "EXTERNAL_IP", str, "address published on chain"),
    Setting(
        "workdir",
        "--workdir",
        "WORKDIR",
        Path,
        "where state, databases and logs live",
        roles=ALL_ROLES,
    ),
    Setting("debug", "--logging.debug", "LOGGING_DEBUG", bool, "log at DEBUG level", ALL_ROLES),
    Setting(
        "scraper",
        "--scraper",
        "SCRAPER",
        str,
        "property source: synthetic, rapidapi_zillow or module.path:Class (docs/miner.md)",
        roles=("miner", "validator"),
    ),
    Setting(
        "data_api_url",
        "--data_api.url",
        "DATA_API_URL",
        str,
        "the subnet's Data API (blocks for validators, upload URLs for miners); "
        "unset: blocks derived locally, no uploads (local subnet without it)",
        roles=("miner", "validator"),
    ),
    Setting(
        "data_api_hotkey",
        "--data_api.hotkey",
        "DATA_API_HOTKEY",
        str,
        "the Data API's hotkey (ss58; requests are signed to it)",
        roles=("miner", "validator"),
    ),
    Setting("synthetic_seed", "--synthetic.seed", "SYNTHETIC_SEED", int, "synthetic world seed"),
    Setting(
        "scrape_delay_s",
        "--scrape.delay",
        "SCRAPE_DELAY_S",
        float,
        "seconds per zipcode the synthetic source waits (to look like a real scrape)",
        roles=("miner",),
        minimum=0,
    ),
    Setting(
        "scrape_concurrency",
        "--scrape.concurrency",
        "SCRAPE_CONCURRENCY",
        int,
        "zipcodes scraped at once",
        roles=("miner",),
        minimum=1,
    ),
    Setting(
        "behaviour",
        "--behaviour",
        "MINER_BEHAVIOUR",
        str,
        "local subnet only: honest or a simulator behaviour (fabricate, lazy, ..., file.py:Class)",
        roles=("miner",),
    ),
    Setting(
        "min_validator_stake",
        "--min.validator.stake",
        "MIN_VALIDATOR_STAKE",
        float,
        "stake (TAO) a validator needs before this miner answers it",
        roles=("miner",),
        minimum=0,
    ),
    Setting(
        "max_open_assignments",
        "--assignments.max.open",
        "MAX_OPEN_ASSIGNMENTS",
        int,
        "open assignments this miner holds for all validators, shared out by stake "
        "(a validator over its share is refused with 'quota')",
        roles=("miner",),
        minimum=1,
    ),
    Setting(
        "min_open_assignments",
        "--assignments.min.per.validator",
        "MIN_OPEN_ASSIGNMENTS_PER_VALIDATOR",
        int,
        "open assignments any served validator may hold, whatever its stake",
        roles=("miner",),
        minimum=1,
    ),
    Setting(
        "check_epochs",
        "--epoch.check",
        "MINER_EPOCH_CHECK",
        bool,
        "refuse assignments of an epoch other than the current one by this miner's clock "
        "and CYCLE_SECONDS (off in the local preset, whose epoch length varies)",
        roles=("miner",),
    ),
    Setting(
        "requests_per_minute",
        "--rate.limit",
        "REQUESTS_PER_MINUTE",
        int,
        "requests per minute one validator may send (429 beyond)",
        roles=("miner",),
        minimum=1,
    ),
    Setting(
        "max_body_bytes",
        "--max.body.bytes",
        "MAX_BODY_BYTES",
        int,
        "largest request body accepted (413 beyond)",
        roles=ALL_ROLES,
        minimum=1024,
    ),
    Setting(
        "http_header_timeout_s",
        "--http.header.timeout",
        "HTTP_HEADER_TIMEOUT_S",
        float,
        "seconds a connection may take to send a request's headers (also the idle "
        "keep-alive timeout); slower connections are closed",
        roles=("miner", "data_api"),
        minimum=1,
    ),
    Setting(
        "http_body_timeout_s",
        "--http.body.timeout",
        "HTTP_BODY_TIMEOUT_S",
        float,
        "seconds to wait for a read slot and read a request's body (408 or 503 beyond)",
        roles=("miner", "data_api"),
        minimum=0.5,
    ),
    Setting(
        "http_max_connections",
        "--http.max.connections",
        "HTTP_MAX_CONNECTIONS",
        int,
        "connections held at once (also kept 128 under the open-file limit, ulimit -n); "
        "at the cap the oldest connection that sent no request makes room",
        roles=("miner", "data_api"),
        minimum=8,
    ),
    Setting(
        "http_max_body_reads",
        "--http.max.body.reads",
        "HTTP_MAX_BODY_READS",
        int,
        "request bodies over 64 KiB read at once (memory: this x MAX_BODY_BYTES at worst)",
        roles=("miner", "data_api"),
        minimum=1,
    ),
    Setting(
        "cycle_seconds",
        "--cycle.seconds",
        "CYCLE_SECONDS",
        float,
        "length of a consensus epoch; every validator (and the Data API) aligns on multiples "
        "of it; miners refuse other epochs' assignments by it",
        roles=ALL_ROLES,
        minimum=1,
    ),
    Setting(
        "collect_fraction",
        "--collect.fraction",
        "COLLECT_FRACTION",
        float,
        "share of the epoch miners get to finish before consensus runs (the Data API's "
        "block deadline; honeypots are revealed after it)",
        roles=("validator", "data_api"),
        minimum=0.05,
    ),
    Setting(
        "zipcodes_per_cycle",
        "--zipcodes.per.cycle",
        "ZIPCODES_PER_CYCLE",
        int,
        "zipcodes in an epoch's block (until the Data API provides blocks)",
        roles=("validator",),
        minimum=1,
    ),
    Setting(
        "miners_per_group",
        "--miners.per.group",
        "MINERS_PER_GROUP",
        int,
        "miners scraping each batch independently, per group (2 groups per batch)",
        roles=("validator", "data_api"),
        minimum=1,
    ),
    Setting(
        "dispatch_concurrency",
        "--dispatch.concurrency",
        "DISPATCH_CONCURRENCY",
        int,
        "assignment requests in flight at once",
        roles=("validator",),
        minimum=1,
    ),
    Setting(
        "request_timeout_s",
        "--request.timeout",
        "REQUEST_TIMEOUT_S",
        float,
        "seconds before a request to a miner is abandoned",
        roles=("validator",),
        minimum=0.1,
    ),
    Setting(
        "metagraph_refresh_s",
        "--metagraph.refresh",
        "METAGRAPH_REFRESH_S",
        float,
        "seconds between metagraph refreshes",
        roles=ALL_ROLES,
        minimum=0.5,
    ),
    Setting(
        "max_cycles",
        "--max.cycles",
        "MAX_CYCLES",
        int,
        "stop after this many consensus cycles (0 = run forever)",
        roles=("validator",),
        minimum=0,
    ),
    Setting(
        "metrics_port",
        "--metrics.port",
        "METRICS_PORT",
        int,
        "port of the Prometheus /metrics endpoint, on --host (0 = off)",
        minimum=0,
    ),
    Setting(
        "watchdog_s",
        "--watchdog.seconds",
        "WATCHDOG_SECONDS",
        float,
        "exit (for pm2 to restart) when no cycle, S3 pass or weight-set succeeded for this "
        "long (0 = 3 epochs)",
        roles=("validator",),
        minimum=0,
    ),
    *DATA_API_SETTINGS,
)

PRESETS: dict[str, dict[str, Any]] = {
    # The local subnet picks its epoch length per run without telling miners.
    "local": {"network": "localfile", "netuid": 1, "cycle_seconds": 20.0, "check_epochs": False},
    "test": {"network": "test", "cycle_seconds": 4 * 3600.0},
    "finney": {"network": "finney", "cycle_seconds": 4 * 3600.0},
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
        if args.env_file and args.env_file.is_file():
            load_dotenv(args.env_file, override=False)
        environ = dict(os.environ)
    preset = args.preset or environ.get("PRESET", "local")
    if preset not in PRESETS:
        raise SettingsError(
            f"invalid --preset / PRESET: {preset!r} not one of {', '.join(PRESETS)}"
        )
    values: dict[str, Any] = {"role": role, "preset": preset}
    known = {f.name for f in fields(Settings)}
    for name, value in PRESETS[preset].items():
        values[name] = value
    for setting in SETTINGS:
        if role not in setting.roles:
            continue
        raw_flag = getattr(args, setting.name, None)
        if raw_flag is not None:
            values[setting.name] = _convert(setting, raw_flag, "flag")
        elif environ.get(setting.env) not in (None, ""):
            values[setting.name] = _convert(setting, environ[setting.env], "environment")
        elif setting.name in values:
            values[setting.name] = _convert(setting, values[setting.name], f"preset {preset}")
    settings = Settings(**{k: v for k, v in values.items() if k in known})
    _check(settings)
    return settings, args


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
    if settings.role == "data_api":
        check_data_api(settings)
