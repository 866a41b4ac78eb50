"""Choosing a property source and an answering strategy by name.

Sources: ``SCRAPER=rapidapi_zillow|synthetic|module.path:Class``.

Built-in names map to builders; anything with a colon is a third-party class,
imported from a module (``my_scrapers.redfin:RedfinSource``) or a file
(``/opt/scrapers/redfin.py:RedfinSource``). A class is built with its
``from_context(context)`` classmethod when it has one, else with no
arguments; the instance needs a ``name`` string and an
``async scrape_zipcode(zipcode, source, *, deadline)`` method.

    context = SourceContext(environ=settings.sources.environ, observer=hotkey, synthetic_seed=7)
    source = build_source(settings.scraper, context)      # ValueError, one line
    source = source_from_settings(settings, hotkey)       # SettingsError, one line
    answering = build_answering(settings.behaviour, source, hotkey)   # HonestAnswers()

``synthetic`` (the simulation's market) and every ``--behaviour`` but
``honest`` are plugins of the ``sim`` package, named here by string and
imported only when asked for: a production miner or validator never loads the
simulation (``tests/unit/test_layers.py``).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from config.settings import Settings, SettingsError
from config.sources import RapidApiConfig
from scraping.answering import AnswerStrategy, HonestAnswers
from scraping.source import PropertySource

# The simulation's plugins, imported by name only when a run asks for them.
SYNTHETIC_SOURCE = "sim.source:SyntheticSource"
BEHAVIOUR_ANSWERS = "sim.answers:BehaviourAnswers"


@dataclass(frozen=True)
class SourceContext:
    """What a source may be built from: settings and secrets, and who is scraping."""

    # Variables such as RAPIDAPI_KEY (the environment and .env, as the entry point read them).
    environ: Mapping[str, str] = field(default_factory=dict)
    # The RapidAPI source's settings as load_settings checked them; None: parsed from environ.
    rapidapi: RapidApiConfig | None = None
    observer: str = "operator"  # the miner's hotkey: the synthetic source's honest eyes
    synthetic_seed: int | str = 7  # the synthetic world's seed (SYNTHETIC_SEED)
    synthetic_delay_s: float = 0.0  # seconds the synthetic source waits per zipcode
    # Zipcodes of listings the synthetic world keeps in memory; None: the world's default.
    synthetic_cache_zipcodes: int | None = None


def _synthetic(context: SourceContext) -> PropertySource:
    return build_source(SYNTHETIC_SOURCE, context)


def _rapidapi_zillow(context: SourceContext) -> PropertySource:
    from scraping.rapidapi import RapidApiZillowSource  # aiohttp only when asked for

    return RapidApiZillowSource(context.rapidapi or RapidApiConfig.from_environ(context.environ))


BUILTIN_SOURCES: dict[str, Callable[[SourceContext], PropertySource]] = {
    "synthetic": _synthetic,
    "rapidapi_zillow": _rapidapi_zillow,
}


def build_source(spec: str, context: SourceContext) -> PropertySource:
    """The source named by ``spec``: a built-in name, ``module.path:Class`` or ``file.py:Class``.

    Builds no connection (sources open them on first use). Raises ValueError
    with a one-line reason: unknown name, import failure, missing class, a
    class that is not a source, or a setting the source rejects.
    """
    spec = spec.strip()
    if spec in BUILTIN_SOURCES:
        return BUILTIN_SOURCES[spec](context)
    if ":" not in spec:
        known = ", ".join(sorted(BUILTIN_SOURCES))
        raise ValueError(
            f"unknown source {spec!r}: use one of {known} or module.path:Class for your own"
        )
    cls = _load_class(spec)
    try:
        factory = getattr(cls, "from_context", None)
        source = factory(context) if callable(factory) else cls()
    except ValueError as exc:
        raise ValueError(f"source {spec!r}: {exc}") from exc
    except TypeError as exc:
        raise ValueError(
            f"source {spec!r} could not be built: {exc} (give it from_context(context) "
            "or a constructor without arguments)"
        ) from exc
    _check_source(spec, source)
    return source


def _load_class(spec: str) -> type:
    target, class_name = spec.rsplit(":", 1)
    try:
        if target.endswith(".py"):
            path = Path(target).expanduser()
            if not path.is_file():
                raise ValueError(f"no such file {target}")
            module_spec = importlib.util.spec_from_file_location(f"source_{path.stem}", path)
            if module_spec is None or module_spec.loader is None:
                raise ValueError(f"cannot import {target}")
            module = importlib.util.module_from_spec(module_spec)
            module_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(target)
    except ValueError as exc:
        raise ValueError(f"cannot load source {spec!r}: {exc}") from exc
    except (ImportError, OSError, SyntaxError) as exc:
        raise ValueError(f"cannot load source {spec!r}: {type(exc).__name__}: {exc}") from exc
    cls = getattr(module, class_name, None)
    if not inspect.isclass(cls):
        raise ValueError(f"cannot load source {spec!r}: {target} has no class {class_name!r}")
    return cls


def _check_source(spec: str, source: object) -> None:
    if not isinstance(getattr(source, "name", None), str):
        raise ValueError(f"source {spec!r} needs a 'name' string attribute")
    if not inspect.iscoroutinefunction(getattr(source, "scrape_zipcode", None)):
        raise ValueError(
            f"source {spec!r} needs an 'async def scrape_zipcode(zipcode, source, *, deadline)'"
        )


def source_from_settings(
    settings: Settings, hotkey: str, *, synthetic_cache_zipcodes: int | None = None
) -> PropertySource:
    """The source ``--scraper`` names; its own settings come from the environment (.env).

    Raises SettingsError with a one-line reason.
    """
    context = SourceContext(
        environ=settings.sources.environ,  # as load_settings read it (.env included)
        rapidapi=settings.sources.rapidapi,
        observer=hotkey,
        synthetic_seed=settings.synthetic_seed,
        synthetic_delay_s=settings.scrape_delay_s,
        synthetic_cache_zipcodes=synthetic_cache_zipcodes,
    )
    try:
        return build_source(settings.scraper, context)
    except ValueError as exc:
        raise SettingsError(f"invalid --scraper / SCRAPER: {exc}") from exc


def build_answering(spec: str, source: PropertySource, hotkey: str) -> AnswerStrategy:
    """How the miner answers: honestly from ``source``, or as the behaviour ``spec`` names.

    Every ``spec`` but ``honest`` is the local subnet's (``sim/answers.py``,
    which needs the synthetic source). Raises SettingsError with a one-line reason.
    """
    if spec == "honest":
        return HonestAnswers()
    try:
        return _load_class(BEHAVIOUR_ANSWERS).from_spec(spec, source, hotkey)
    except ValueError as exc:
        raise SettingsError(f"invalid --behaviour / MINER_BEHAVIOUR: {exc}") from exc
