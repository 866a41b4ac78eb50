"""`.env.example` documents every setting the neurons read."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.settings import SETTINGS
from config.storage import ENVIRONMENT_VARIABLES as STORAGE_VARIABLES

pytestmark = pytest.mark.unit

EXAMPLE = Path(__file__).resolve().parents[2] / ".env.example"


def test_every_setting_is_in_env_example_with_its_flag():
    text = EXAMPLE.read_text()
    for setting in SETTINGS:
        assert f"{setting.env}=" in text, setting.env
        assert setting.flag in text, setting.flag
    assert "PRESET=" in text


def test_every_storage_variable_is_in_env_example():
    text = EXAMPLE.read_text()
    for name in STORAGE_VARIABLES:
        assert f"{name}=" in text, name
