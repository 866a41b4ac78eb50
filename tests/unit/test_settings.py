"""Unit tests for ``config.settings``: presets, precedence, .env, validation, ``--help``."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from config.setting import ROLES
from config.settings import (
    PRESETS,
    SETTINGS,
    Settings,
    SettingsError,
    build_parser,
    load_settings,
)
from tests.unit.cli_runs import run_module

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
ALL_ENV_NAMES = sorted({s.env for s in SETTINGS} | {"PRESET"})
BY_NAME = {s.name: s for s in SETTINGS}


def load(role: str, argv: list[str] | None = None, **env: str) -> Settings:
    """load_settings with an explicit environment (the .env file is not read)."""
    environ = {"CHAIN_FILE": "/tmp/chain.json", **env}
    settings, _ = load_settings(role, list(argv or []), environ=environ)
    return settings


def settings_error(role: str, argv: list[str] | None = None, **env: str) -> str:
    environ = {"CHAIN_FILE": "/tmp/chain.json", **env}
    with pytest.raises(SettingsError) as info:
        load_settings(role, list(argv or []), environ=environ)
    return str(info.value)


@pytest.fixture
def clean_os_environ(monkeypatch):
    """Remove every settings variable from os.environ and restore it afterwards,
    including variables that load_dotenv adds behind monkeypatch's back."""
    for name in ALL_ENV_NAMES:
        monkeypatch.setenv(name, "placeholder")  # records the original state
        monkeypatch.delenv(name)
    return monkeypatch


# --- defaults -------------------------------------------------------------------------


def test_local_preset_defaults_for_validator():
    s = load("validator")
    assert s.role == "validator"
    assert s.preset == "local"
    assert s.network == "localfile"
    assert s.netuid == 1
    assert s.cycle_seconds == 20.0
    assert s.chain_file == Path("/tmp/chain.json")
    assert s.wallet_name == "default"
    assert s.wallet_hotkey == "default"
    assert s.wallet_path == Path("~/.bittensor/wallets")
    assert s.host == "127.0.0.1"
    assert s.port == 8091
    assert s.external_ip is None
    assert s.workdir == Path("./workdir")
    assert s.debug is False
    assert s.collect_fraction == 0.75
    assert s.zipcodes_per_cycle == 1000
    assert s.dispatch_concurrency == 64
    assert s.request_timeout_s == 5.0
    assert s.metagraph_refresh_s == 60.0
    assert s.max_cycles == 0
    assert s.max_body_bytes == 4 * 1024 * 1024


def test_local_preset_defaults_for_miner():
    s = load("miner")
    assert (s.role, s.preset, s.network, s.netuid) == ("miner", "local", "localfile", 1)
    assert s.scraper == "synthetic"
    assert s.synthetic_seed == 7
    assert s.scrape_delay_s == 0.0
    assert s.scrape_concurrency == 4
    assert s.behaviour == "honest"
    assert s.min_validator_stake == 1000.0  # what the local chain gives validators
    assert s.requests_per_minute == 600
    assert s.port == 8091


def test_types_are_converted():
    s = load(
        "validator",
        ["--netuid", "3", "--cycle.seconds", "30", "--workdir", "/tmp/w", "--port", "9000"],
    )
    assert isinstance(s.netuid, int)
    assert isinstance(s.cycle_seconds, float)
    assert isinstance(s.workdir, Path)
    assert isinstance(s.port, int)
    assert s.chain_file == Path("/tmp/chain.json")


# Real networks scrape the real source; its key is all a preset cannot provide.
KEY = {"RAPIDAPI_KEY": "k" * 32}


@pytest.mark.parametrize("preset", ["test", "finney"])
def test_network_presets(preset):
    s, _ = load_settings("validator", ["--preset", preset], environ=KEY)
    assert s.preset == preset
    assert s.network == preset
    assert s.cycle_seconds == 4 * 3600.0
    assert s.chain_file is None  # only the localfile network needs one
    assert s.scraper == "rapidapi_zillow" and s.sources.rapidapi is not None


@pytest.mark.parametrize("role", ["miner", "validator"])
def test_a_network_preset_without_the_source_key_stops_with_one_line(role):
    with pytest.raises(SettingsError, match="RAPIDAPI_KEY is not set"):
        load_settings(role, ["--preset", "finney"], environ={})
    # The simulated market stays one setting away, and says so.
    s, _ = load_settings(role, ["--preset", "finney", "--scraper", "synthetic"], environ={})
    assert s.scraper == "synthetic"


def test_preset_from_environment():
    s, _ = load_settings("miner", [], environ={"PRESET": "test", **KEY})
    assert s.network == "test"


def test_preset_flag_beats_preset_environment():
    s, _ = load_settings("miner", ["--preset", "finney"], environ={"PRESET": "test", **KEY})
    assert s.preset == "finney"
    assert s.network == "finney"


def test_state_dir():
    s = load("miner", ["--wallet.name", "cold", "--wallet.hotkey", "hot", "--workdir", "/w"])
    assert s.state_dir == Path("/w/miner-cold-hot")


def test_returns_namespace():
    settings, args = load_settings("miner", ["--netuid", "4"], environ={"CHAIN_FILE": "c"})
    assert args.netuid == "4"
    assert settings.netuid == 4
    assert args.env_file == Path(".env")


def test_unknown_role():
    with pytest.raises(SettingsError, match="unknown role"):
        load_settings("owner", [], environ={})


# --- precedence: preset < environment < flag -----------------------------------------


@pytest.mark.parametrize(
    ("role", "name", "preset_value", "env_raw", "env_value", "flag_raw", "flag_value"),
    [
        ("miner", "netuid", 1, "5", 5, "9", 9),
        ("validator", "cycle_seconds", 20.0, "60", 60.0, "7.5", 7.5),
        ("miner", "port", 8091, "9001", 9001, "9002", 9002),
        ("validator", "network", "localfile", "test", "test", "finney", "finney"),
        ("miner", "wallet_name", "default", "env-w", "env-w", "flag-w", "flag-w"),
        ("validator", "collect_fraction", 0.75, "0.5", 0.5, "0.25", 0.25),
        ("miner", "min_validator_stake", 1000.0, "10", 10.0, "2.5", 2.5),
    ],
)
def test_precedence(role, name, preset_value, env_raw, env_value, flag_raw, flag_value):
    flag, env = BY_NAME[name].flag, BY_NAME[name].env
    assert getattr(load(role), name) == preset_value
    assert getattr(load(role, **{env: env_raw}), name) == env_value
    assert getattr(load(role, [flag, flag_raw]), name) == flag_value
    assert getattr(load(role, [flag, flag_raw], **{env: env_raw}), name) == flag_value


def test_environment_overrides_preset_value():
    # The local preset sets cycle_seconds=20 and netuid=1; the environment wins.
    s = load("validator", CYCLE_SECONDS="45", NETUID="12")
    assert (s.cycle_seconds, s.netuid) == (45.0, 12)


def test_empty_environment_value_counts_as_unset():
    s = load("validator", NETUID="", CYCLE_SECONDS="")
    assert (s.netuid, s.cycle_seconds) == (1, 20.0)


def test_invalid_environment_value_ignored_when_flag_given():
    s = load("miner", ["--netuid", "3"], NETUID="not-a-number")
    assert s.netuid == 3


def test_other_roles_environment_is_ignored():
    # ZIPCODES_PER_CYCLE is validator-only: a miner does not read (or validate) it.
    s = load("miner", ZIPCODES_PER_CYCLE="garbage", SCRAPE_DELAY_S="0.5")
    assert s.scrape_delay_s == 0.5
    v = load("validator", SCRAPE_DELAY_S="garbage")
    assert v.scrape_delay_s == 0.0


@pytest.mark.parametrize("raw", ["1", "true", "TRUE", "yes", "on", " True "])
def test_debug_true_from_environment(raw):
    assert load("miner", LOGGING_DEBUG=raw).debug is True


@pytest.mark.parametrize("raw", ["0", "false", "False", "no", "off", " "])
def test_debug_false_from_environment(raw):
    assert load("miner", LOGGING_DEBUG=raw).debug is False


def test_debug_flag():
    assert load("validator").debug is False
    assert load("validator", ["--logging.debug"]).debug is True
    # The flag wins over the environment, even over an invalid value there.
    assert load("validator", ["--logging.debug"], LOGGING_DEBUG="false").debug is True
    assert load("validator", ["--logging.debug"], LOGGING_DEBUG="garbage").debug is True


def test_debug_flag_takes_no_value():
    with pytest.raises(SystemExit) as info:
        load_settings("miner", ["--logging.debug", "true"], environ={"CHAIN_FILE": "c"})
    assert info.value.code == 2


def test_debug_garbage_environment_is_an_error():
    message = settings_error("miner", LOGGING_DEBUG="garbage")
    assert "--logging.debug" in message
    assert "LOGGING_DEBUG" in message
    assert "garbage" in message
    assert "\n" not in message


# --- .env files ------------------------------------------------------------------------


def test_env_file_is_loaded_without_overriding_environment(tmp_path, clean_os_environ):
    env_file = tmp_path / "settings.env"
    env_file.write_text(
        "NETUID=9\nWALLET_NAME=from-dotenv\nCHAIN_FILE=/dotenv/chain.json\nPORT=9100\n"
    )
    clean_os_environ.setenv("NETUID", "5")  # already set: the .env does not override it
    settings, _ = load_settings("miner", ["--env-file", str(env_file)])
    assert settings.netuid == 5
    assert settings.wallet_name == "from-dotenv"
    assert settings.chain_file == Path("/dotenv/chain.json")
    assert settings.port == 9100
    # load_dotenv fills os.environ (override=False): the existing value stays.
    assert os.environ["NETUID"] == "5"
    assert os.environ["WALLET_NAME"] == "from-dotenv"


def test_flag_beats_env_file(tmp_path, clean_os_environ):
    env_file = tmp_path / ".env"
    env_file.write_text("NETUID=9\nCHAIN_FILE=/c.json\nCYCLE_SECONDS=99\n")
    settings, _ = load_settings(
        "validator", ["--env-file", str(env_file), "--netuid", "2", "--cycle.seconds", "3"]
    )
    assert (settings.netuid, settings.cycle_seconds) == (2, 3.0)


def test_env_file_preset(tmp_path, clean_os_environ):
    env_file = tmp_path / ".env"
    env_file.write_text(f"PRESET=test\nRAPIDAPI_KEY={KEY['RAPIDAPI_KEY']}\n")
    settings, _ = load_settings("miner", ["--env-file", str(env_file)])
    assert (settings.preset, settings.network) == ("test", "test")


def test_missing_env_file_is_ignored(tmp_path, clean_os_environ):
    clean_os_environ.setenv("CHAIN_FILE", str(tmp_path / "chain.json"))
    settings, _ = load_settings("miner", ["--env-file", str(tmp_path / "absent.env")])
    assert settings.netuid == 1


def test_env_file_invalid_value_is_reported(tmp_path, clean_os_environ):
    env_file = tmp_path / ".env"
    env_file.write_text("CHAIN_FILE=/c.json\nPORT=http\n")
    with pytest.raises(SettingsError) as info:
        load_settings("miner", ["--env-file", str(env_file)])
    assert "--port / PORT" in str(info.value)


def test_explicit_environ_does_not_read_env_file(tmp_path, clean_os_environ):
    env_file = tmp_path / ".env"
    env_file.write_text("NETUID=9\n")
    settings, _ = load_settings("miner", ["--env-file", str(env_file)], environ={"CHAIN_FILE": "c"})
    assert settings.netuid == 1
    assert "NETUID" not in os.environ


# --- invalid values -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "argv", "env", "flag", "var"),
    [
        ("miner", ["--netuid", "abc"], {}, "--netuid", "NETUID"),
        ("miner", [], {"NETUID": "abc"}, "--netuid", "NETUID"),
        ("miner", ["--netuid=-1"], {}, "--netuid", "NETUID"),
        ("miner", ["--netuid", "1.5"], {}, "--netuid", "NETUID"),
        ("miner", ["--port=-1"], {}, "--port", "PORT"),
        ("validator", [], {"PORT": "-80"}, "--port", "PORT"),
        ("miner", ["--port", "70000"], {}, "--port", "PORT"),
        ("validator", [], {"PORT": "65536"}, "--port", "PORT"),
        ("validator", ["--collect.fraction", "1.5"], {}, "--collect.fraction", "COLLECT_FRACTION"),
        ("validator", ["--collect.fraction", "1"], {}, "--collect.fraction", "COLLECT_FRACTION"),
        ("validator", ["--collect.fraction", "0.01"], {}, "--collect.fraction", "COLLECT_FRACTION"),
        ("validator", [], {"COLLECT_FRACTION": "x"}, "--collect.fraction", "COLLECT_FRACTION"),
        ("validator", ["--cycle.seconds", "0.5"], {}, "--cycle.seconds", "CYCLE_SECONDS"),
        ("validator", [], {"CYCLE_SECONDS": "soon"}, "--cycle.seconds", "CYCLE_SECONDS"),
        ("validator", ["--request.timeout", "0"], {}, "--request.timeout", "REQUEST_TIMEOUT_S"),
        ("validator", ["--max.cycles=-1"], {}, "--max.cycles", "MAX_CYCLES"),
        ("miner", ["--scrape.concurrency", "0"], {}, "--scrape.concurrency", "SCRAPE_CONCURRENCY"),
        ("miner", ["--rate.limit", "0"], {}, "--rate.limit", "REQUESTS_PER_MINUTE"),
        ("miner", ["--max.body.bytes", "100"], {}, "--max.body.bytes", "MAX_BODY_BYTES"),
        ("miner", [], {"LOGGING_DEBUG": "maybe"}, "--logging.debug", "LOGGING_DEBUG"),
        ("miner", [], {"PRESET": "mainnet"}, "--preset", "PRESET"),
        ("miner", [], {"CHAIN_FILE": ""}, "--chain.file", "CHAIN_FILE"),
        (
            "validator",
            ["--subtensor.network", "localfile"],
            {"PRESET": "test", "CHAIN_FILE": ""},
            "--chain.file",
            "CHAIN_FILE",
        ),
        ("miner", [], {"NETUID": "1\n2"}, "--netuid", "NETUID"),
    ],
)
def test_invalid_value_is_one_line_naming_flag_and_variable(role, argv, env, flag, var):
    message = settings_error(role, argv, **env)
    assert "\n" not in message and "\r" not in message
    assert flag in message
    assert var in message


def test_error_says_where_the_value_came_from():
    assert "(flag)" in settings_error("miner", ["--netuid", "x"])
    assert "(environment)" in settings_error("miner", NETUID="x")


def test_unknown_preset_flag_is_an_argparse_error():
    with pytest.raises(SystemExit) as info:
        load_settings("miner", ["--preset", "mainnet"], environ={})
    assert info.value.code == 2


def test_localfile_without_chain_file():
    with pytest.raises(SettingsError, match=r"--chain\.file / CHAIN_FILE is required"):
        load_settings("validator", [], environ={})
    # And with --chain.file it is fine.
    s, _ = load_settings("validator", ["--chain.file", "/x/chain.json"], environ={})
    assert s.chain_file == Path("/x/chain.json")


def test_port_boundaries_accepted():
    assert load("miner", ["--port", "0"]).port == 0
    assert load("miner", ["--port", "65535"]).port == 65535


@pytest.mark.parametrize(
    ("role", "flag"),
    [
        ("validator", "--cycle.seconds"),
        ("validator", "--request.timeout"),
        ("validator", "--metagraph.refresh"),
        ("miner", "--scrape.delay"),
        ("miner", "--min.validator.stake"),
    ],
)
def test_nan_float_setting_is_rejected(role, flag):
    with pytest.raises(SettingsError):
        load(role, [flag, "nan"])


def test_nan_min_validator_stake_from_environment_is_rejected():
    with pytest.raises(SettingsError):
        load("miner", MIN_VALIDATOR_STAKE="nan")


@given(st.integers(min_value=0, max_value=2**31))
@hsettings(max_examples=50, deadline=None)
def test_netuid_environment_round_trips(n):
    assert load("miner", NETUID=str(n)).netuid == n
    assert load("miner", ["--netuid", str(n)]).netuid == n


def a_valid_port(settings: Settings) -> None:
    assert isinstance(settings.port, int)
    assert 0 <= settings.port <= 65535


def a_valid_collect_fraction(settings: Settings) -> None:
    assert 0 < settings.collect_fraction < 1
    assert not math.isnan(settings.collect_fraction)


@pytest.mark.parametrize(
    ("role", "env", "named", "check"),
    [
        ("miner", "PORT", "--port / PORT", a_valid_port),
        ("validator", "COLLECT_FRACTION", "--collect.fraction / COLLECT_FRACTION",
         a_valid_collect_fraction),
    ],
    ids=["port", "collect_fraction"],
)  # fmt: skip
@given(raw=st.text(max_size=20))
@hsettings(max_examples=200, deadline=None)
def test_any_text_gives_a_valid_value_or_a_one_line_error_naming_the_setting(
    role, env, named, check, raw
):
    try:
        s, _ = load_settings(role, [], environ={"CHAIN_FILE": "c", env: raw})
    except SettingsError as exc:
        message = str(exc)
        assert "\n" not in message and "\r" not in message
        assert named in message
    else:
        check(s)


# --- role-specific flags --------------------------------------------------------------


def role_flags(role: str) -> list[str]:
    return [s.flag for s in SETTINGS if role in s.roles]


@pytest.mark.parametrize(
    ("role", "argv"),
    [
        ("miner", ["--zipcodes.per.cycle", "30"]),
        ("miner", ["--collect.fraction", "0.5"]),
        ("miner", ["--max.cycles", "2"]),
        ("validator", ["--scrape.delay", "1"]),
        ("validator", ["--behaviour", "lazy"]),
        ("validator", ["--min.validator.stake", "1"]),
        ("miner", ["--no-such-flag"]),
    ],
)
def test_flag_of_other_role_is_an_argparse_error(role, argv, capsys):
    with pytest.raises(SystemExit) as info:
        load_settings(role, argv, environ={"CHAIN_FILE": "c"})
    assert info.value.code == 2
    assert "unrecognized arguments" in capsys.readouterr().err


def test_role_flags_split():
    miner, validator = set(role_flags("miner")), set(role_flags("validator"))
    assert "--zipcodes.per.cycle" in validator - miner
    assert "--cycle.seconds" in validator & miner  # miners check an assignment's epoch
    assert "--scrape.delay" in miner - validator
    assert {"--netuid", "--subtensor.network", "--wallet.name", "--port"} <= miner & validator


def test_every_setting_is_a_settings_field_and_has_unique_flag_and_env():
    fields = set(Settings.__dataclass_fields__)
    assert {s.name for s in SETTINGS} <= fields
    assert len({s.flag for s in SETTINGS}) == len(SETTINGS)
    assert len({s.env for s in SETTINGS}) == len(SETTINGS)
    for preset in PRESETS.values():
        assert set(preset) <= fields


# --- --help ---------------------------------------------------------------------------


def help_blocks(text: str) -> dict[str, str]:
    """The options section of --help as {flag: its (possibly wrapped) help text}."""
    blocks: dict[str, str] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("  -"):
            current = line.split()[0].rstrip(",")
            blocks[current] = line
        elif current is not None and line.startswith("    "):
            blocks[current] += " " + line.strip()
        else:
            current = None
    return blocks


@pytest.mark.parametrize("role", ROLES)
def test_help_names_every_flag_with_its_variable(role, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    with pytest.raises(SystemExit) as info:
        load_settings(role, ["--help"], description=f"the {role} neuron", environ={})
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert f"the {role} neuron" in out
    blocks = help_blocks(out)
    for setting in SETTINGS:
        if role in setting.roles:
            assert setting.flag in blocks, f"{setting.flag} missing from {role} --help"
            assert f"[{setting.env}]" in blocks[setting.flag], blocks[setting.flag]
        else:
            assert setting.flag not in blocks, f"{setting.flag} should not be in {role} --help"
            assert setting.flag not in out
    assert "[PRESET]" in out
    assert "--env-file" in out
    assert "Precedence" in out


def test_build_parser_prog():
    assert build_parser("validator", "").prog == "python -m neurons.validator"


def _clean_subprocess_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ALL_ENV_NAMES}
    env["PYTHONPATH"] = str(ROOT)
    return env


@pytest.mark.parametrize("role", ROLES)
def test_module_help_runs(role):
    proc = run_module(f"neurons.{role}", "--help", cwd=ROOT, env=_clean_subprocess_env())
    assert proc.returncode == 0, proc.stderr
    assert "--subtensor.network" in proc.stdout
    assert "--wallet.name" in proc.stdout
    assert "[SUBTENSOR_NETWORK]" in proc.stdout


def test_module_invalid_netuid_exits_2_with_one_line():
    argv = ["neurons.miner", "--netuid", "abc", "--env-file", "/dev/null"]
    proc = run_module(*argv, cwd=ROOT, env=_clean_subprocess_env())
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("miner: invalid --netuid")
    assert "NETUID" in lines[0]
