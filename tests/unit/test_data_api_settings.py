"""The Data API's settings: the ``data_api`` role, its defaults, the secret rule, ``--help``."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.settings import SETTINGS, SettingsError, load_settings
from data_api.routes import ApiOptions
from data_api.secret import local_secret_path, resolve_secret

pytestmark = pytest.mark.unit

SECRET = "s" * 32


def load(argv=(), **env):
    settings, _ = load_settings("data_api", list(argv), environ={"CHAIN_FILE": "/c.json", **env})
    return settings


def test_defaults_and_options():
    s = load()
    assert (s.role, s.preset, s.network) == ("data_api", "local", "localfile")
    assert (s.api_host, s.api_port, s.api_db, s.api_secret) == ("127.0.0.1", 8092, None, None)
    assert s.cycle_seconds == 20.0  # the local preset's epochs, as the validators'
    options = ApiOptions.from_settings(s)
    assert options.epoch.epoch_seconds == 20.0 and options.epoch.collect_fraction == 0.75
    assert options.blocks.zipcodes_per_block == 1000
    assert options.blocks.zipcodes_per_batch == 20
    assert options.blocks.miners_per_group == 10
    assert (options.blocks.max_miners_per_coldkey, options.blocks.min_different_coldkeys) == (1, 5)
    assert options.requests_per_minute == 600


def test_environment_and_flags():
    s = load(
        ["--api.port", "9000", "--block.zipcodes", "200", "--block.max.per.coldkey", "2"],
        DATA_API_SECRET=SECRET,
        S3_BUCKET="subnet-data",
        S3_ENDPOINT_URL="http://127.0.0.1:9000",
        DATA_API_MAX_STATE_SHARE="0.2",
        DATA_API_MIN_COLDKEYS_PER_GROUP="3",
        CYCLE_SECONDS="60",
    )
    assert (s.api_port, s.block_zipcodes, s.api_secret) == (9000, 200, SECRET)
    blocks = ApiOptions.from_settings(s).blocks
    assert (blocks.max_miners_per_coldkey, blocks.min_different_coldkeys) == (2, 3)
    assert (s.s3_bucket, s.s3_endpoint_url, s.max_state_share) == (
        "subnet-data",
        "http://127.0.0.1:9000",
        0.2,
    )
    assert s.cycle_seconds == 60.0


@pytest.mark.parametrize(
    ("argv", "env", "needle"),
    [
        (["--preset", "test"], {}, "--api.secret / DATA_API_SECRET is required"),
        ([], {"DATA_API_SECRET": "short"}, "at least 32"),
        (["--api.port", "70000"], {}, "--api.port / DATA_API_PORT"),
        (["--block.max.state.share", "1.5"], {}, "DATA_API_MAX_STATE_SHARE"),
        (["--block.batch.size", "50", "--block.zipcodes", "40"], {}, "DATA_API_ZIPCODES_PER_BATCH"),
        (["--block.honeypots", "40", "--block.zipcodes", "40"], {}, "HONEYPOTS_PER_BLOCK"),
        (["--api.rate.limit", "0"], {}, "DATA_API_REQUESTS_PER_MINUTE"),
    ],
)
def test_invalid_values_are_one_line(argv, env, needle):
    with pytest.raises(SettingsError) as info:
        load(argv, **env)
    assert needle in str(info.value)
    assert "\n" not in str(info.value)


def test_flags_of_neurons_are_not_the_apis(capsys):
    with pytest.raises(SystemExit):
        load(["--scrape.delay", "1"])
    with pytest.raises(SystemExit):
        load_settings("validator", ["--api.port", "1"], environ={"CHAIN_FILE": "c"})
    capsys.readouterr()


def test_help_lists_every_data_api_flag(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit):
        load_settings("data_api", ["--help"], environ={})
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m data_api")
    for setting in SETTINGS:
        if "data_api" in setting.roles:
            assert setting.flag in out and f"[{setting.env}]" in out, setting.flag


def test_local_preset_generates_a_secret_once(tmp_path):
    s = load(["--workdir", str(tmp_path)])
    first = resolve_secret(s)
    assert len(first) >= 32
    assert resolve_secret(s) == first
    assert local_secret_path(Path(tmp_path)).read_text().strip().encode() == first
    given = load(["--workdir", str(tmp_path)], DATA_API_SECRET=SECRET)
    assert resolve_secret(given) == SECRET.encode()


def test_a_postgresql_url_selects_the_shared_store_and_anything_else_is_refused():
    assert (load().api_database_url, load().api_database_pool) == (None, 10)  # SQLite
    url = "postgresql://api:pw@db.internal:5432/data_api"
    s = load(["--api.database.pool", "4"], DATA_API_DATABASE_URL=url)
    assert (s.api_database_url, s.api_database_pool) == (url, 4)
    with pytest.raises(SettingsError, match="DATA_API_DATABASE_URL"):
        load(DATA_API_DATABASE_URL="mysql://api@db/data_api")


def test_the_database_password_never_reaches_the_log():
    from data_api.server import redacted

    assert redacted("postgresql://api:s3cr:et@db:5432/x") == "postgresql://api:***@db:5432/x"
    assert redacted("postgresql://db.internal/x") == "postgresql://db.internal/x"
    # An empty user, a password in the query, a "@" in the password, several hosts.
    assert redacted("postgresql://:s3cret@db/x") == "postgresql://:***@db/x"
    assert redacted("postgresql://api@db/x?password=s3cret") == "postgresql://api@db/x"
    assert redacted("postgres://api:p@ss@db/x?sslmode=require") == "postgres://api:***@db/x"
    assert (
        redacted("postgresql://api:pw@h1:5432,h2:5433/x")
        == "postgresql://api:***@h1:5432,h2:5433/x"
    )
    assert "s3cret" not in redacted("postgresql://api:s3/cret@db/x")
    assert "s3cret" not in redacted("postgresql:///x?host=/run/pg&password=s3cret")
