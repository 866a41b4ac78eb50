"""The validator's reading of the Data API: honeypot reveals and cycle status reports."""

from __future__ import annotations

import pytest

from common.data_api_models import HoneypotReveal
from common.protocol import Source
from consensus.types import HoneypotKind
from vali_utils.api_blocks import honeypots_from_reveal, status_report

pytestmark = pytest.mark.unit

HASH = "ab" * 16
H1, H3 = "5" + "A" * 47, "5" + "B" * 47  # ss58-shaped hotkeys


def test_honeypots_by_kind_and_source():
    reveal = HoneypotReveal.model_validate(
        {
            "epoch_id": 7,
            "block_id": "b" * 16,
            "honeypots": [
                {"zipcode": "00501", "kind": "no_residential"},
                {
                    "zipcode": "10001",
                    "kind": "reference",
                    "references": {"ZILLOW_SOLD": [["123", HASH]]},
                },
                {"zipcode": "10002", "kind": "reference", "references": {"ZILLOW": [["9", HASH]]}},
            ],
        }
    )
    pots = honeypots_from_reveal(reveal, Source.ZILLOW_SOLD)
    assert pots["00501"].kind == HoneypotKind.NO_RESIDENTIAL
    assert pots["10001"].kind == HoneypotKind.REFERENCE and pots["10001"].reference == {123: HASH}
    assert "10002" not in pots  # no reference for the source asked about: cannot judge


def test_status_report_summarises_the_cycle():
    report = {
        "plan_hash": "ab12" * 4,
        "groups": 6,
        "assignments": 30,
        "acknowledged": 30,
        "completed": 29,
        "batch_confidence": {"0": 0.9, "1": 0.5},
        "flags": [
            {"hotkey": "h1", "kind": "honeypot"},
            {"hotkey": "h1", "kind": "fabrication"},
            {"hotkey": "h2", "kind": "fabrication"},
        ],
        "spot_checks": 12,
        "spot_check_failures": {"unavailable": 5, "error": 2},
        "spot_checks_mostly_failed": True,
        "weights_set": True,
        "miners": [
            {"uid": 1, "hotkey": H1, "weight": 0.0, "score": 0.0, "flags": ["honeypot"]},
            {"uid": 2, "hotkey": H3, "weight": 1.0, "score": 0.4, "flags": []},
        ],
    }
    status = status_report(report)
    assert (status.batches, status.confident_batches) == (2, 1)
    assert status.mean_batch_confidence == pytest.approx(0.7)
    assert (status.flagged_miners, status.honeypot_flags) == (2, 1)
    assert [m.uid for m in status.miners] == [2, 1]
    # A cycle whose spot checks mostly failed says so to the Data API.
    assert (status.spot_checks, status.spot_checks_failed) == (12, 7)
    assert status.spot_checks_mostly_failed is True
