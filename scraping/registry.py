"""Choosing a property source by name: ``SCRAPER=rapidapi_zillow|synthetic|module.path:Class``.

Built-in names map to builders; anything with a colon is a third-party class,
imported from a module (``my_scrapers.redfin:RedfinSource``) or a file
(``/opt/scrapers/redfin.py:RedfinSource``). A class is built with its
``from_context(context)`` classmethod when it has one, else with no
arguments; the instance needs a ``name`` string and an
``async scrape_zipcode(zipcode, source, *, deadline)`` method.

    context = SourceContext(environ=settings.sources.environ, observer=hotkey, synthetic_seed=7)
    source = build_source(settings.scraper, context)      # ValueError, one line
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from config.sources import RapidApiConfig
from scraping.source import PropertySource, SyntheticSource
from scraping.synthetic import SyntheticWorld


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


def _synthetic(context: SourceContext) -> PropertySource:
    world = SyntheticWorld(context.synthetic_seed)
    return SyntheticSource(world, observer=context.observer, delay_s=context.synthetic_delay_s)


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
