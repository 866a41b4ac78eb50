"""Reading a frozen settings dataclass from environment-style variables.

Each field that an operator may set has an ``EnvVariable``: the variable's
name and the smallest value that makes sense. ``read_variables`` parses what
is set (unset or empty means the field's default) and ``check_bounds``
rejects non-finite numbers and values under the minimum. Both raise a one-line
``ValueError`` that names the variable.

    VARIABLES = (EnvVariable("call_timeout_s", "S3_CALL_TIMEOUT_S", 0.1), ...)
    settings = S3Settings(**read_variables(os.environ, VARIABLES, field_kinds(S3Settings)))
    # and S3Settings.__post_init__ calls check_bounds(self, VARIABLES)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar


@dataclass(frozen=True, slots=True)
class EnvVariable:
    field: str
    env: str
    minimum: float | None = None


def field_kinds(settings_class: type) -> dict[str, type]:
    """Each field's type, taken from its default (str, int, float)."""
    return {f.name: type(f.default) for f in fields(settings_class)}


def read_variables(
    environ: Mapping[str, str], variables: Iterable[EnvVariable], kinds: Mapping[str, type]
) -> dict[str, object]:
    """The fields whose variables are set, parsed to the field's type."""
    values: dict[str, object] = {}
    for spec in variables:
        raw = environ.get(spec.env)
        if raw is None or raw.strip() == "":
            continue
        kind = kinds[spec.field]
        try:
            values[spec.field] = kind(raw.strip())
        except ValueError:
            raise ValueError(
                f"{spec.env}: {raw.strip()[:40]!r} is not a valid {kind.__name__}"
            ) from None
    return values


def check_bounds(settings: object, variables: Iterable[EnvVariable]) -> None:
    """Reject non-finite numbers and values under each variable's minimum."""
    for spec in variables:
        value = getattr(settings, spec.field)
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{spec.env}: {value!r} is not a finite number")
        if spec.minimum is not None and value < spec.minimum:
            raise ValueError(f"{spec.env}: {value} is below {spec.minimum}")


class EnvSection:
    """A settings dataclass read from its ``VARIABLES`` (set on the class after its fields).

    ``from_environ`` raises ValueError with one line naming the variable that
    is wrong; ``describe`` is every setting with ``secrets()`` masked.
    """

    __slots__ = ()
    VARIABLES: ClassVar[tuple[EnvVariable, ...]] = ()

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Any:
        """Build from environment-style variables (unset or empty means the default)."""
        return cls(**read_variables(environ, cls.VARIABLES, field_kinds(cls)))

    def describe(self) -> dict[str, object]:
        """Every setting, secrets masked (safe to log or print)."""
        out: dict[str, object] = {spec.env: getattr(self, spec.field) for spec in self.VARIABLES}
        return out | self.secrets()

    def secrets(self) -> dict[str, object]:
        """The masked form of each secret variable."""
        return {}
