"""The import layers hold, and production never loads the simulation (docs/architecture.md §1).

``lint-imports`` checks ``.importlinter``'s contracts over every import
statement, those inside functions included. The simulation's plugins are
named by string (``scraping/registry.py``), which no static check sees, so a
fresh interpreter builds a production miner's and validator's parts and
shows that ``sim`` was never loaded, and that the local subnet's settings do
load it (so the check can fail).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION = ["--scraper", "rapidapi_zillow", "--preset", "finney"]

# Builds what serve() and validate() build from settings, then lists the sim modules loaded.
BUILD = """
import json, sys
from config.settings import load_settings
from scraping.registry import build_answering, source_from_settings
import neurons.miner, neurons.validator
miner, _ = load_settings("miner", sys.argv[1:])
source = source_from_settings(miner, "5" + "C" * 47)
answering = build_answering(miner.behaviour, source, "5" + "C" * 47)
validator, _ = load_settings("validator", [a for a in sys.argv[1:] if "behaviour" not in a
                                           and a != "fabricate"])
verifier_source = source_from_settings(validator, "5" + "D" * 47, synthetic_cache_zipcodes=16)
loaded = sorted(m for m in sys.modules if m == "sim" or m.startswith("sim."))
print(json.dumps({"answering": type(answering).__name__, "source": source.name,
                  "verifier_source": verifier_source.name, "sim": loaded}))
"""


def fresh(code: str, *argv: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code, *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def test_the_import_contracts_hold():
    lint = Path(sys.executable).with_name("lint-imports")
    proc = subprocess.run(
        [str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "2 kept, 0 broken" in proc.stdout


def test_importing_the_entry_points_loads_no_simulation():
    proc = fresh(
        "import sys, neurons.miner, neurons.validator, data_api.server\n"
        "assert not any(m == 'sim' or m.startswith('sim.') for m in sys.modules),"
        " sorted(m for m in sys.modules if m.startswith('sim'))"
    )
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_a_production_miner_and_validator_build_their_parts_without_the_simulation(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "RAPIDAPI_KEY": "k" * 20}
    proc = fresh(BUILD, *PRODUCTION, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    built = json.loads(proc.stdout.strip().splitlines()[-1])
    assert built == {
        "answering": "HonestAnswers",
        "source": "rapidapi_zillow",
        "verifier_source": "rapidapi_zillow",
        "sim": [],
    }


def test_the_local_subnet_loads_the_simulation_as_a_plugin(tmp_path):
    """The converse, so the check above can fail: synthetic and a behaviour come from sim."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    local = ["--scraper", "synthetic", "--behaviour", "fabricate", "--chain.file", "chain.json"]
    proc = fresh(BUILD, *local, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    built = json.loads(proc.stdout.strip().splitlines()[-1])
    assert built["answering"] == "BehaviourAnswers"
    assert built["source"] == built["verifier_source"] == "synthetic"
    assert {"sim.source", "sim.answers", "sim.world"} <= set(built["sim"])


def test_a_behaviour_needs_the_synthetic_source(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "RAPIDAPI_KEY": "k" * 20}
    code = (
        "import sys\n"
        "from config.settings import SettingsError, load_settings\n"
        "from scraping.registry import build_answering, source_from_settings\n"
        "s, _ = load_settings('miner', sys.argv[1:])\n"
        "try:\n"
        "    build_answering(s.behaviour, source_from_settings(s, 'hk'), 'hk')\n"
        "except SettingsError as exc:\n"
        "    print(exc)\n"
    )
    proc = fresh(code, *PRODUCTION, "--behaviour", "fabricate", env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "needs --scraper synthetic" in proc.stdout


# scripts/ is not a package, so no contract covers it: its imports are read here.


def test_no_script_imports_the_tests():
    import ast

    offenders = {}
    for path in sorted((ROOT / "scripts").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            if any(name == "tests" or name.startswith("tests.") for name in names):
                offenders.setdefault(path.name, node.lineno)
    assert offenders == {}
