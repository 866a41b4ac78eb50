"""Neuron settings: one typed object from presets, ``.env`` and command-line flags.

Precedence, lowest first: the preset's defaults (``--preset local|test|finney``),
the environment (a ``.env`` file is loaded into it without overriding what is
already set), then command-line flags. Flags follow the Bittensor convention
(``--netuid``, ``--subtensor.network``, ``--wallet.name``, ...); each has an
environment variable named in ``--help``. An invalid value stops the neuron at
start with one line naming the flag, the variable and what is wrong.

    settings = load_settings("miner", argv)       # raises SettingsError
"""

from __future__ import annotations

import argparse
import math
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from dotenv import load_dotenv

ROLES = ("miner", "validator")


class SettingsError(ValueError):
    """A setting is missing or invalid; the message is one line for the operator."""


@dataclass(frozen=True, slots=True)
class Setting:
    name: str  # attribute on Settings
    flag: str
    env: str
    kind: type
    help: str
    roles: tuple[str, ...] = ROLES
    choices: tuple[str, ...] | None = None
    minimum: float | None = None


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
    min_validator_stake: float = 0.0
    requests_per_minute: int = 600
    max_body_bytes: int = 4 * 1024 * 1024
    # Validator
    cycle_seconds: float = 4 * 3600.0
    collect_fraction: float = 0.75
    zipcodes_per_cycle: int = 1000
    miners_per_group: int = 10
    dispatch_concurrency: int = 64
    request_timeout_s: float = 5.0
    metagraph_refresh_s: float = 60.0
    max_cycles: int = 0

    @property
    def state_dir(self) -> Path:
        return self.workdir / f"{self.role}-{self.wallet_name}-{self.wallet_hotkey}"


# One row per setting: flag, environment variable, type, meaning.
SETTINGS: tuple[Setting, ...] = (
    Setting("netuid", "--netuid", "NETUID", int, "subnet id on the chain", minimum=0),
    Setting(
        "network",
        "--subtensor.network",
        "SUBTENSOR_NETWORK",
        str,
        "chain: 'localfile' (the local subnet's chain.json), local, test, finney or ws://...",
    ),
    Setting("chain_file", "--chain.file", "CHAIN_FILE", Path, "local chain registry (localfile)"),
    Setting("wallet_name", "--wallet.name", "WALLET_NAME", str, "coldkey wallet name"),
    Setting("wallet_hotkey", "--wallet.hotkey", "WALLET_HOTKEY", str, "hotkey name"),
    Setting("wallet_path", "--wallet.path", "WALLET_PATH", Path, "wallets directory"),
    Setting("host", "--host", "HOST", str, "address the HTTP server binds"),
    Setting("port", "--port", "PORT", int, "port the HTTP server binds", minimum=0),
    Setting("external_ip", "--external.ip", "EXTERNAL_IP", str, "address published on chain"),
    Setting("workdir", "--workdir", "WORKDIR", Path, "where state, databases and logs live"),
    Setting("debug", "--logging.debug", "LOGGING_DEBUG", bool, "log at DEBUG level"),
    Setting(
        "scraper",
        "--scraper",
        "SCRAPER",
        str,
        "property source: synthetic, rapidapi_zillow or module.path:Class (docs/miner.md)",
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
        minimum=1024,
    ),
    Setting(
        "cycle_seconds",
        "--cycle.seconds",
        "CYCLE_SECONDS",
        float,
        "length of a consensus epoch; every validator aligns on multiples of it",
        roles=("validator",),
        minimum=1,
    ),
    Setting(
        "collect_fraction",
        "--collect.fraction",
        "COLLECT_FRACTION",
        float,
        "share of the epoch miners get to finish before consensus runs",
        roles=("validator",),
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
        roles=("validator",),
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
)

PRESETS: dict[str, dict[str, Any]] = {
    "local": {"network": "localfile", "netuid": 1, "cycle_seconds": 20.0},
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
        prog=f"python -m neurons.{role}",
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
    if role not in ROLES:
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
