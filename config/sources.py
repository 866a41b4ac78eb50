"""Settings of the property sources a miner or validator scrapes through.

``RapidApiConfig`` holds the Zillow API on RapidAPI (host zillow-com1): the
key, where to call, and the limits that keep a plan's bill predictable. Code
receives the object; ``from_environ`` parses a mapping of variables and names
the variable in every error. ``SourceSettings`` is the sources' section of the
settings: ``load_settings`` builds it from the environment it read (``.env``
included), so sources never read the environment themselves.

    settings, _ = load_settings("miner", argv)          # SettingsError, one line
    settings.sources.rapidapi                           # RapidApiConfig | None
    settings.sources.environ["MY_SCRAPER_TOKEN"]        # a third-party source's own variable
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from urllib.parse import urlsplit

from config.env_vars import EnvSection, EnvVariable, check_bounds

DEFAULT_ZILLOW_BASE_URL = "https://zillow-com1.p.rapidapi.com"
DEFAULT_ZILLOW_HOST = "zillow-com1.p.rapidapi.com"


@dataclass(frozen=True, slots=True)
class RapidApiConfig(EnvSection):
    """The RapidAPI Zillow source: credentials, endpoint, limits and cost."""

    api_key: str = ""  # X-RapidAPI-Key; required by from_environ
    base_url: str = DEFAULT_ZILLOW_BASE_URL  # http(s)://host[:port][/path]; tests use loopback
    host: str = DEFAULT_ZILLOW_HOST  # X-RapidAPI-Host: RapidAPI routes on it, not on the URL
    # calls/s, shared by every zipcode in flight: RapidAPI plans cap calls per
    # second and answer 429 beyond; 2/s is below the usual per-second caps.
    calls_per_second: float = 2.0
    burst: int = 1  # calls allowed back to back; 1 spaces calls evenly (per-second windows)
    # calls per calendar month (UTC) before the source refuses to call: a guard
    # against a surprise bill, set it to your plan's quota.
    calls_per_month: int = 50_000
    max_pages_per_zipcode: int = 5  # pages of ~41 listings; 5 pages cover 200 listings
    call_timeout_s: float = 20.0  # seconds per HTTP call; the API answers in ~1-3 s
    max_retries: int = 3  # extra attempts after a 429, a 5xx, a timeout or a dropped connection
    backoff_base_s: float = 1.0  # first retry waits ~this; doubles per attempt (jittered)
    backoff_cap_s: float = 30.0  # no single backoff wait is longer
    cost_per_call_usd: float = 0.003  # for the running estimate only: plan price / plan calls

    def __post_init__(self) -> None:
        check_bounds(self, _VARIABLES)
        if not self.api_key.strip():
            raise ValueError(
                "RAPIDAPI_KEY is not set: subscribe to the zillow-com1 API on rapidapi.com "
                "and put the key in .env"
            )
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(
                f"RAPIDAPI_ZILLOW_BASE_URL: {self.base_url!r} is not an http(s)://host URL"
            )
        if self.backoff_cap_s < self.backoff_base_s:
            raise ValueError("RAPIDAPI_BACKOFF_CAP_S: must be >= RAPIDAPI_BACKOFF_BASE_S")

    def secrets(self) -> dict[str, object]:
        return {"RAPIDAPI_KEY": f"...{self.api_key[-4:]}" if len(self.api_key) > 8 else "(set)"}


# Environment variable per field, with the smallest value that makes sense.
_VARIABLES: tuple[EnvVariable, ...] = (
    EnvVariable("api_key", "RAPIDAPI_KEY"),
    EnvVariable("base_url", "RAPIDAPI_ZILLOW_BASE_URL"),
    EnvVariable("host", "RAPIDAPI_ZILLOW_HOST"),
    EnvVariable("calls_per_second", "RAPIDAPI_CALLS_PER_SECOND", 0.01),
    EnvVariable("burst", "RAPIDAPI_BURST", 1),
    EnvVariable("calls_per_month", "RAPIDAPI_CALLS_PER_MONTH", 1),
    EnvVariable("max_pages_per_zipcode", "RAPIDAPI_MAX_PAGES", 1),
    EnvVariable("call_timeout_s", "RAPIDAPI_TIMEOUT_S", 0.05),
    EnvVariable("max_retries", "RAPIDAPI_MAX_RETRIES", 0),
    EnvVariable("backoff_base_s", "RAPIDAPI_BACKOFF_BASE_S", 0.0),
    EnvVariable("backoff_cap_s", "RAPIDAPI_BACKOFF_CAP_S", 0.0),
    EnvVariable("cost_per_call_usd", "RAPIDAPI_COST_PER_CALL_USD", 0.0),
)
RapidApiConfig.VARIABLES = _VARIABLES
ENVIRONMENT_VARIABLES: tuple[str, ...] = tuple(spec.env for spec in _VARIABLES)


RAPIDAPI_SOURCE = "rapidapi_zillow"  # the SCRAPER name of the source RapidApiConfig configures


@dataclass(frozen=True, slots=True)
class SourceSettings:
    """What the property sources are built from (``scraping.registry.SourceContext``)."""

    # The variables as load_settings read them (environment over .env), read-only:
    # third-party sources (SCRAPER=module.path:Class) take their own from here.
    environ: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    # Parsed and checked at start when SCRAPER is rapidapi_zillow, else None.
    rapidapi: RapidApiConfig | None = None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], scraper: str) -> SourceSettings:
        """The section for the source ``scraper`` names; ValueError naming a bad variable."""
        rapidapi = None
        if scraper.strip() == RAPIDAPI_SOURCE:
            rapidapi = RapidApiConfig.from_environ(environ)
        return cls(MappingProxyType(dict(environ)), rapidapi)
