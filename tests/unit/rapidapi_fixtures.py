"""The zillow-com1 answers in tests/fixtures/rapidapi, written from the API reference."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "rapidapi"


def fixture(name: str) -> Any:
    """A JSON answer from tests/fixtures/rapidapi (``name`` without ``.json``)."""
    return json.loads((FIXTURES / f"{name}.json").read_text())
