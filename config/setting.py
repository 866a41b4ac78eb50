"""One operator setting: its flag, environment variable, type, roles and bounds.

The tables of settings are ``config/settings_neurons.py`` (the neurons') and
``config/settings_api.py`` (the Data API's); ``config.settings.load_settings``
reads them.
"""

from __future__ import annotations

from dataclasses import dataclass

ROLES = ("miner", "validator")  # the neurons: ``python -m neurons.<role>``
# Services run by the subnet owner, started with ``python -m <role>``.
SERVICE_ROLES = ("data_api",)
ALL_ROLES = ROLES + SERVICE_ROLES


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
