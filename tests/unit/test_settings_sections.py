"""One settings loader: typed S3, sources and S3-evaluation sections; each limit defined once.

Issue 16 found settings read three ways (``config/settings.py``,
``config/storage.py`` and ``os.environ`` read inside ``vali_utils/s3_evaluation_pass.py``
and ``scraping/upload_setup.py``), with different validation and different
limits: the Data API presigned 64 MiB uploads that miners and validators cap
at 4 MiB, the 5,000-record cap was written four times and ``S3EvalConfig()``
was built twice. These tests keep it from coming back.
"""

from __future__ import annotations

import ast
import asyncio
from pathlib import Path
from types import SimpleNamespace

import aiohttp
import pytest

from config.limits import MAX_FILE_BYTES, MAX_RECORDS_PER_ZIPCODE
from config.settings import SettingsError, load_settings
from config.sources import RapidApiConfig
from config.storage import ENVIRONMENT_VARIABLES as S3_VARIABLES
from config.storage import S3EvalConfig, S3Settings
from data_api import cli
from data_api.routes import ApiOptions
from scraping.registry import source_from_settings
from scraping.upload_setup import open_uploader
from vali_utils.s3_evaluation_pass import open_s3
from vali_utils.s3_reader import DirectS3Reader

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("common", "consensus", "scraping", "vali_utils", "data_api", "neurons")
PLUGIN_FILE = ROOT / "tests" / "fixtures" / "rapidapi" / "plugin_source.py"
HOTKEY = "5" + "C" * 47
SECRET = "s" * 32
BUCKET_ENV = {
    "S3_BUCKET": "subnet-data",
    "S3_ENDPOINT_URL": "http://127.0.0.1:9",  # nothing listens: no test here calls S3
    "S3_ACCESS_KEY_ID": "key",
    "S3_SECRET_ACCESS_KEY": "secret",
}


def load(role: str, argv: list[str] | None = None, **env: str):
    settings, _ = load_settings(role, list(argv or []), environ={"CHAIN_FILE": "/c.json", **env})
    return settings


@pytest.fixture
def no_s3_environment(monkeypatch):
    """os.environ without S3_* or RAPIDAPI_* variables: values must come from settings.

    Restored afterwards, including variables a dotenv file adds behind monkeypatch's back.
    """
    for name in (*S3_VARIABLES, "RAPIDAPI_KEY", "STATIC_PRICE", "DATA_API_DB", "WORKDIR"):
        monkeypatch.setenv(name, "placeholder")  # records the original state
        monkeypatch.delenv(name)
    return monkeypatch


# --- nothing outside config/ reads the environment ---------------------------------------


def environment_reads(source: str, where: str) -> list[str]:
    """``os.environ`` / ``os.getenv`` / ``os.putenv`` uses and dotenv imports in one file."""
    tree = ast.parse(source, filename=where)
    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "os"
            and node.attr in ("environ", "environb", "getenv", "putenv", "unsetenv")
        ):
            found.append(f"{where}:{node.lineno}: os.{node.attr}")
        elif isinstance(node, ast.ImportFrom) and node.module == "os":
            names = {alias.name for alias in node.names} & {"environ", "getenv", "putenv"}
            found += [f"{where}:{node.lineno}: from os import {n}" for n in names]
        elif isinstance(node, ast.ImportFrom | ast.Import):
            modules = [node.module] if isinstance(node, ast.ImportFrom) else []
            modules += [alias.name for alias in getattr(node, "names", [])]
            if any(m and m.split(".")[0] == "dotenv" for m in modules):
                found.append(f"{where}:{node.lineno}: imports dotenv")
    return found


def test_nothing_outside_config_reads_the_environment():
    files = [p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))]
    assert len(files) > 50  # the scan sees the packages
    reads = [
        read
        for path in files
        for read in environment_reads(path.read_text(), str(path.relative_to(ROOT)))
    ]
    assert reads == []


def test_the_scan_finds_what_it_looks_for():
    sample = (
        "import os\nfrom os import getenv\nfrom dotenv import load_dotenv\n"
        "a = os.environ.get('X')\nb = os.getenv('Y')\n"
    )
    reads = environment_reads(sample, "sample.py")
    assert sorted(r.split(": ", 1)[1] for r in reads) == [
        "from os import getenv",
        "imports dotenv",
        "os.environ",
        "os.getenv",
    ]


# --- one upload cap for the Data API, miners and validators ------------------------------


def upload_caps(**env: str) -> tuple[int, int, int]:
    api = ApiOptions.from_settings(load("data_api", **env)).upload_max_bytes
    return api, load("miner", **env).s3.max_file_bytes, load("validator", **env).s3.max_file_bytes


def test_data_api_presigns_what_miners_and_validators_accept():
    assert upload_caps() == (MAX_FILE_BYTES,) * 3
    assert MAX_FILE_BYTES == 4 * 1024 * 1024


def test_one_variable_moves_the_cap_for_all_three():
    assert upload_caps(S3_MAX_FILE_BYTES="2097152") == (2097152,) * 3


def test_data_api_upload_cap_may_only_be_lowered():
    lowered = load("data_api", ["--s3.upload.max.bytes", "1048576"])
    assert ApiOptions.from_settings(lowered).upload_max_bytes == 1048576
    with pytest.raises(SettingsError) as info:
        load("data_api", S3_UPLOAD_MAX_BYTES=str(64 * 1024 * 1024))
    message = str(info.value)
    assert "S3_UPLOAD_MAX_BYTES" in message and "S3_MAX_FILE_BYTES" in message
    assert "\n" not in message


def test_the_record_cap_is_one_number():
    from common import manifest, s3_files
    from consensus import answers

    assert manifest.MAX_RECORDS_PER_ZIPCODE is MAX_RECORDS_PER_ZIPCODE
    assert s3_files.DEFAULT_MAX_RECORDS is MAX_RECORDS_PER_ZIPCODE
    assert answers.DEFAULT_MAX_RECORDS_PER_ZIPCODE is MAX_RECORDS_PER_ZIPCODE
    assert S3Settings().max_records_per_file is MAX_RECORDS_PER_ZIPCODE
    assert s3_files.DEFAULT_MAX_COMPRESSED is MAX_FILE_BYTES


def test_no_record_or_file_cap_is_written_as_a_number_outside_config():
    """A module-level ``*MAX_RECORDS*`` or ``*MAX_COMPRESSED*`` number is a second copy."""
    copies = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.parse(path.read_text()).body:
                if not isinstance(node, ast.Assign) or len(node.targets) != 1:
                    continue
                target = node.targets[0]
                name = target.id if isinstance(target, ast.Name) else ""
                literal = isinstance(node.value, ast.Constant | ast.BinOp)
                if literal and any(k in name for k in ("MAX_RECORDS", "MAX_COMPRESSED")):
                    copies.append(f"{path.relative_to(ROOT)}:{node.lineno}: {name}")
    assert copies == []


# --- the S3 section --------------------------------------------------------------------


def test_s3_section_comes_from_the_loaded_environment():
    s = load("validator", S3_BUCKET="subnet-data", S3_EVAL_FILES_PER_MINER="3")
    assert (s.s3.bucket, s.s3.eval_files_per_miner) == ("subnet-data", 3)
    assert load("miner", S3_UPLOAD_MODE="direct", S3_BUCKET="b-1").s3.upload_mode == "direct"


@pytest.mark.parametrize("role", ["miner", "validator", "data_api"])
def test_an_invalid_s3_variable_stops_every_role_at_load(role):
    with pytest.raises(SettingsError) as info:
        load(role, S3_CALL_TIMEOUT_S="soon", DATA_API_SECRET=SECRET)
    assert str(info.value).startswith("invalid S3_CALL_TIMEOUT_S")
    assert "\n" not in str(info.value)


def test_data_api_flags_go_through_the_same_s3_checks():
    s = load("data_api", ["--s3.bucket", "subnet-data", "--s3.prefix", "miners/v1"])
    assert (s.s3.bucket, s.s3.prefix) == ("subnet-data", "miners/v1")
    assert (s.s3_bucket, s.s3_prefix) == ("subnet-data", "miners/v1")  # names kept
    with pytest.raises(SettingsError, match="S3_BUCKET"):
        load("data_api", ["--s3.bucket", "Not_A_Bucket"])
    with pytest.raises(SettingsError, match="S3_ENDPOINT_URL"):
        load("data_api", ["--s3.endpoint", "ftp://somewhere"])


def test_validator_reads_s3_through_its_settings(no_s3_environment):
    settings = load("validator", **BUCKET_ENV)

    async def opened():
        async with aiohttp.ClientSession() as session:
            return open_s3(settings, None, session)

    access = asyncio.run(opened())
    assert access is not None and isinstance(access.reader, DirectS3Reader)
    assert access.settings is settings.s3
    assert asyncio.run(_open_s3_without_bucket()) is None


async def _open_s3_without_bucket():
    async with aiohttp.ClientSession() as session:
        return open_s3(load("validator"), None, session)


def test_miner_uploads_through_its_settings(no_s3_environment, tmp_path):
    settings = load("miner", ["--workdir", str(tmp_path)], S3_UPLOAD_MODE="direct", **BUCKET_ENV)

    async def opened():
        async with aiohttp.ClientSession() as session:
            uploader, close = await open_uploader(
                settings, SimpleNamespace(ss58_address=HOTKEY), session
            )
            try:
                return uploader
            finally:
                await close()

    uploader = asyncio.run(opened())
    assert uploader is not None and uploader.settings is settings.s3


# --- the sources section ---------------------------------------------------------------


def test_rapidapi_settings_are_checked_at_load():
    s = load("miner", SCRAPER="rapidapi_zillow", RAPIDAPI_KEY="k" * 20, RAPIDAPI_BURST="3")
    assert isinstance(s.sources.rapidapi, RapidApiConfig) and s.sources.rapidapi.burst == 3
    assert load("miner").sources.rapidapi is None
    with pytest.raises(SettingsError) as info:
        load("validator", SCRAPER="rapidapi_zillow")
    assert str(info.value).startswith("invalid --scraper / SCRAPER: RAPIDAPI_KEY is not set")


def test_sources_are_built_from_the_loaded_settings(no_s3_environment):
    s = load("miner", SCRAPER=f"{PLUGIN_FILE}:StaticSource", STATIC_PRICE="123456")
    assert source_from_settings(s, HOTKEY).price == 123456  # os.environ has no STATIC_PRICE
    keyed = load("miner", SCRAPER="rapidapi_zillow", RAPIDAPI_KEY="k" * 20)
    assert source_from_settings(keyed, HOTKEY).config is keyed.sources.rapidapi


def test_sources_environ_is_read_only():
    environ = load("miner", STATIC_PRICE="1").sources.environ
    with pytest.raises(TypeError):
        environ["STATIC_PRICE"] = "2"  # type: ignore[index]


# --- S3 evaluation tunables ------------------------------------------------------------


def test_s3_eval_config_is_a_settings_section():
    s = load("validator")
    assert s.s3_eval == S3EvalConfig()


def test_validator_hands_its_s3_eval_section_to_the_pass_and_the_watch():
    """The S3 pass and the storage watch get ``settings.s3_eval``, not a config of their own."""
    tree = ast.parse((ROOT / "neurons" / "validator.py").read_text())
    handed = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            arguments = [*node.args, *(k.value for k in node.keywords)]
            if any(ast.unparse(a) == "settings.s3_eval" for a in arguments):
                handed.add(node.func.id)
    assert {"S3EvaluationPass", "build_watch"} <= handed


# --- the honeypot CLI's database --------------------------------------------------------


def test_honeypot_cli_finds_its_database_through_config(no_s3_environment, tmp_path):
    env_file = tmp_path / "api.env"
    env_file.write_text(f"WORKDIR={tmp_path / 'work'}\n")
    args = cli._parser().parse_args(["--env-file", str(env_file), "list"])
    assert cli._database(args) == tmp_path / "work" / "data_api" / "data_api.sqlite"
    no_s3_environment.setenv("DATA_API_DB", str(tmp_path / "api.sqlite"))
    assert cli._database(args) == tmp_path / "api.sqlite"
