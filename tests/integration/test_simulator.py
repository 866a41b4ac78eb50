"""The attack simulator's must-show figures, run through its command line.

Each scenario is a real `scripts/simulate.py` run (64 miners, 400 zipcodes,
3 cycles, 10% offline) writing its JSON report; the assertions are the
acceptance figures of the consensus-core issue.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SIMULATE = ROOT / "scripts" / "simulate.py"
BASE_ARGS = [
    "--miners",
    "64",
    "--zipcodes",
    "400",
    "--cycles",
    "3",
    "--seed",
    "7",
    "--offline-fraction",
    "0.1",
]


def simulate(tmp_path: Path, *extra: str) -> dict:
    out = tmp_path / "out.json"
    proc = subprocess.run(
        [sys.executable, str(SIMULATE), *BASE_ARGS, *extra, "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(out.read_text())


def test_honest_network_reaches_confidence_and_responders(tmp_path):
    report = simulate(tmp_path)
    assert report["batch_confidence_rate"] >= 0.9
    assert report["responders_per_batch_mean"] >= 8
    # Even counted per group (10 miners each) the responders stay above 8.
    assert report["responders_per_group_mean"] >= 8
    assert report["honest_false_flag_rate"] < 0.01
    assert report["weight_share_by_behavior"]["offline"] < 0.01
    for key in (
        "batches",
        "population_share_by_behavior",
        "weight_share_by_behavior",
        "flagged_by_behavior",
        "runtime_s",
    ):
        assert key in report


@pytest.mark.parametrize("behaviour", ["fabricate", "inflate", "cartel"])
def test_inventing_miners_get_under_five_percent(tmp_path, behaviour):
    report = simulate(tmp_path, "--adversary", f"{behaviour}=0.3")
    assert report["population_share_by_behavior"][behaviour] >= 0.29
    assert report["weight_share_by_behavior"][behaviour] < 0.05
    assert report["honest_false_flag_rate"] < 0.01


@pytest.mark.parametrize("behaviour", ["lazy", "stale", "copycat"])
def test_freeloaders_get_under_half_their_share(tmp_path, behaviour):
    report = simulate(tmp_path, "--adversary", f"{behaviour}=0.3")
    population = report["population_share_by_behavior"][behaviour]
    assert report["weight_share_by_behavior"][behaviour] < population / 2
    assert report["honest_false_flag_rate"] < 0.01


def test_sybil_never_shares_a_group_and_earns_no_more_than_its_share(tmp_path):
    report = simulate(tmp_path, "--adversary", "sybil=0.3")
    sybils = [m for m in report["miners"] if m["behavior"] == "sybil"]
    assert len({m["coldkey"] for m in sybils}) == 1
    assert report["max_miners_per_coldkey_in_group"] == 1
    population = report["population_share_by_behavior"]["sybil"]
    assert report["weight_share_by_behavior"]["sybil"] <= population
    assert report["honest_false_flag_rate"] < 0.01


def test_plugin_behaviour_is_loaded_from_a_file(tmp_path):
    plugin = ROOT / "tests" / "fixtures" / "plugin_adversary.py"
    report = simulate(tmp_path, "--cycles", "2", "--adversary", f"{plugin}:Shader=0.3")
    population = report["population_share_by_behavior"]["shader"]
    assert population >= 0.29
    # Shaded prices are wrong key fields: the plugin's miners lose their share.
    assert report["weight_share_by_behavior"]["shader"] < population / 2


def test_bad_adversary_spec_fails_with_one_clear_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(SIMULATE), "--adversary", "nosuchthing=0.3", "--cycles", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert proc.returncode == 2
    assert "unknown behaviour 'nosuchthing'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_tiebreakers_resolve_the_disputes_a_cartel_raises(tmp_path):
    """Tie-breakers resolve the cartel's disputes and never lower confidence.

    Since the validator's own checks weigh a cartel down in the re-tally, its
    groups need no tie-break to recover (confidence is already full without
    them); tie-breaks settle the disputed records themselves.
    """
    with_tiebreak = simulate(tmp_path, "--adversary", "cartel=0.3")
    without = simulate(tmp_path, "--adversary", "cartel=0.3", "--no-tiebreak")
    assert with_tiebreak["disputes"] > 0
    assert with_tiebreak["disputes_resolved"] >= 0.9 * with_tiebreak["disputes"]
    assert without["disputes"] == without["disputes_resolved"] == 0
    assert (
        with_tiebreak["batch_confidence_rate_before_tiebreak"]
        <= with_tiebreak["batch_confidence_rate"]
    )
    assert with_tiebreak["batch_confidence_rate"] >= without["batch_confidence_rate"] >= 0.9
    assert with_tiebreak["weight_share_by_behavior"]["cartel"] < 0.05
    assert with_tiebreak["honest_false_flag_rate"] < 0.01


# --- incentives v2: each behaviour at 40%, through the acceptance table's own limits ---------

sys.path.insert(0, str(ROOT / "scripts"))
from attack_matrix import BEHAVIOURS, failures  # noqa: E402


@pytest.mark.parametrize("behaviour", BEHAVIOURS)
def test_every_behaviour_at_forty_percent_holds_its_limits(tmp_path, behaviour):
    """Guards against a strategy earning more per hotkey than its limit, or framing the honest.

    The limits are ``scripts/attack_matrix.py``'s (the whole table runs both
    fractions and both seeds): honest false flags under 1%, batch confidence
    at least 0.9, earnings per hotkey against an honest hotkey under 0.05
    (inventors, copiers), at most 1.0 (pools, early claims), under 0.5
    (slackers), no fast bonus for an early claim, and a pool's left-out
    listings confirmed where independent miners report them.
    """
    report = simulate(tmp_path, "--seed", "11", "--adversary", f"{behaviour}=0.4")
    assert report["population_share_by_behavior"][behaviour] >= 0.39
    assert failures(behaviour, report) == []


def test_noise_free_honest_miners_are_identical_yet_never_flagged(tmp_path):
    """Guards against identical answers being a penalty in themselves.

    Without noise every honest miner gives the same answer (as when all call
    the same API at once): nobody may be flagged, and a pool serving the same
    view as everyone else earns what an honest hotkey does, not more.
    """
    alone = simulate(tmp_path, "--honest-noise-free")
    assert alone["honest_false_flag_rate"] == 0.0
    assert alone["batch_confidence_rate"] >= 0.9
    honest = [m for m in alone["miners"] if m["behavior"] == "honest"]
    weights = [m["weight"] for m in honest]
    assert min(weights) > 0.5 * max(weights)  # everyone earns a share, spread by speed only
    with_pool = simulate(tmp_path, "--honest-noise-free", "--adversary", "pool=0.4")
    assert with_pool["honest_false_flag_rate"] == 0.0
    assert with_pool["earnings_ratio_by_behavior"]["pool"] <= 1.02
