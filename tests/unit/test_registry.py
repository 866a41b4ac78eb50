"""Choosing and configuring a property source: the registry, RapidApiConfig, SyntheticSource.

An operator selects a source by name (``SCRAPER``); a miner's own scraper
plugs in as ``module.path:Class`` or ``file.py:Class``; every mistake is a
one-line ValueError naming what is wrong.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from common.records import PropertyRecord
from config.sources import DEFAULT_ZILLOW_BASE_URL, ENVIRONMENT_VARIABLES, RapidApiConfig
from scraping.rapidapi import RapidApiZillowSource
from scraping.registry import BUILTIN_SOURCES, SourceContext, build_source
from scraping.source import PropertyLookup, ScrapeResult
from sim.source import SyntheticSource
from sim.world import SyntheticWorld

pytestmark = pytest.mark.unit

PLUGIN_FILE = Path(__file__).resolve().parents[1] / "fixtures" / "rapidapi" / "plugin_source.py"
KEYED = SourceContext(environ={"RAPIDAPI_KEY": "k" * 20})


def scrape(source, zipcode="77494", status="ZILLOW_SOLD") -> ScrapeResult:
    return asyncio.run(source.scrape_zipcode(zipcode, status, deadline=time.monotonic() + 5))


# -- built-in sources -------------------------------------------------------


def test_builtin_names():
    assert set(BUILTIN_SOURCES) == {"synthetic", "rapidapi_zillow"}


def test_synthetic_by_name_uses_the_context():
    context = SourceContext(observer="hotkey-1", synthetic_seed=11, synthetic_delay_s=0.0)
    source = build_source("synthetic", context)
    assert isinstance(source, SyntheticSource)
    assert source.observer == "hotkey-1"
    direct = SyntheticSource(SyntheticWorld(11), observer="hotkey-1")
    assert scrape(source).records == scrape(direct).records


def test_rapidapi_by_name_reads_its_settings_and_opens_nothing():
    source = build_source(
        " rapidapi_zillow ",
        SourceContext(environ={"RAPIDAPI_KEY": "secret-key", "RAPIDAPI_CALLS_PER_SECOND": "5"}),
    )
    assert isinstance(source, RapidApiZillowSource)
    assert source.config.calls_per_second == 5.0
    assert source.config.base_url == DEFAULT_ZILLOW_BASE_URL
    assert source._session is None  # the session opens on the first call
    assert source.stats()["calls"] == 0


def test_rapidapi_without_a_key_is_a_clear_error():
    with pytest.raises(ValueError, match="RAPIDAPI_KEY is not set") as caught:
        build_source("rapidapi_zillow", SourceContext(environ={}))
    assert "\n" not in str(caught.value)


def test_unknown_name_lists_the_choices():
    with pytest.raises(ValueError) as caught:
        build_source("zillow", KEYED)
    message = str(caught.value)
    assert "unknown source 'zillow'" in message
    assert "rapidapi_zillow" in message and "synthetic" in message
    assert "module.path:Class" in message


# -- plugins ----------------------------------------------------------------


def test_plugin_from_a_module_path(tmp_path, monkeypatch):
    package = tmp_path / "my_scrapers"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "redfin.py").write_text(PLUGIN_FILE.read_text())
    monkeypatch.syspath_prepend(str(tmp_path))
    source = build_source(
        "my_scrapers.redfin:StaticSource", SourceContext(environ={"STATIC_PRICE": "250000"})
    )
    assert source.name == "static"
    result = scrape(source, "10001")
    assert result.records[0]["price"] == 250_000
    assert PropertyRecord.model_validate(result.records[0]).zipcode == "10001"


def test_plugin_from_a_file_without_from_context():
    source = build_source(f"{PLUGIN_FILE}:NoArguments", KEYED)
    assert source.name == "no-arguments"
    assert scrape(source) == ScrapeResult()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no_such_module_xyz:Source", "cannot load source.*ModuleNotFoundError"),
        ("/no/such/file.py:Source", "no such file"),
        (f"{PLUGIN_FILE}:Missing", "has no class 'Missing'"),
        (f"{PLUGIN_FILE}:NotASource", "async def scrape_zipcode"),
        (f"{PLUGIN_FILE}:NeedsArguments", "could not be built.*from_context"),
    ],
)
def test_plugin_errors_are_one_line_value_errors(spec, message):
    with pytest.raises(ValueError, match=message) as caught:
        build_source(spec, KEYED)
    assert "\n" not in str(caught.value)


# -- SyntheticSource keeps its constructor and gains fetch_property ---------


def test_synthetic_source_constructor_and_lookup():
    world = SyntheticWorld(7)
    source = SyntheticSource(world, "observer", 0.0)
    assert isinstance(source, PropertyLookup)
    truth = world.listings("77494")[0]
    found = asyncio.run(source.fetch_property(truth["zpid"], deadline=time.monotonic() + 1))
    assert found == truth
    missing = asyncio.run(source.fetch_property("77494999", deadline=time.monotonic() + 1))
    assert missing is None
    assert asyncio.run(source.fetch_property("abc", deadline=time.monotonic() + 1)) is None


def test_scrape_result_stays_compatible():
    result = ScrapeResult(records=[{"zpid": "1"}], pages=1, calls=1)
    assert result.errors == [] and result.dropped == {}


# -- RapidApiConfig ---------------------------------------------------------


def test_config_defaults_and_environment():
    config = RapidApiConfig.from_environ(
        {
            "RAPIDAPI_KEY": "abc123456789",
            "RAPIDAPI_ZILLOW_BASE_URL": "http://127.0.0.1:9999/zillow",
            "RAPIDAPI_CALLS_PER_MONTH": "1000",
            "RAPIDAPI_MAX_PAGES": "",  # empty means the default
            "RAPIDAPI_COST_PER_CALL_USD": "0.01",
            "UNRELATED": "x",
        }
    )
    assert config.base_url == "http://127.0.0.1:9999/zillow"
    assert config.calls_per_month == 1000
    assert config.max_pages_per_zipcode == 5  # the default
    assert config.cost_per_call_usd == 0.01
    assert "abc123456789" not in str(config.describe())
    assert set(config.describe()) == set(ENVIRONMENT_VARIABLES)


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("RAPIDAPI_CALLS_PER_SECOND", "fast", "RAPIDAPI_CALLS_PER_SECOND: 'fast' is not a valid"),
        ("RAPIDAPI_CALLS_PER_SECOND", "0", "RAPIDAPI_CALLS_PER_SECOND: 0.0 is below"),
        ("RAPIDAPI_CALLS_PER_SECOND", "nan", "RAPIDAPI_CALLS_PER_SECOND: nan is not a finite"),
        ("RAPIDAPI_CALLS_PER_MONTH", "1.5", "RAPIDAPI_CALLS_PER_MONTH: '1.5' is not a valid int"),
        ("RAPIDAPI_MAX_PAGES", "0", "RAPIDAPI_MAX_PAGES: 0 is below 1"),
        ("RAPIDAPI_MAX_RETRIES", "-1", "RAPIDAPI_MAX_RETRIES: -1 is below 0"),
        ("RAPIDAPI_TIMEOUT_S", "0", "RAPIDAPI_TIMEOUT_S"),
        ("RAPIDAPI_ZILLOW_BASE_URL", "zillow-com1.p.rapidapi.com", "RAPIDAPI_ZILLOW_BASE_URL"),
        ("RAPIDAPI_BACKOFF_CAP_S", "0.1", "RAPIDAPI_BACKOFF_CAP_S: must be >="),
    ],
)
def test_config_errors_name_the_variable(variable, value, message):
    with pytest.raises(ValueError) as caught:
        RapidApiConfig.from_environ({"RAPIDAPI_KEY": "key", variable: value})
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)
