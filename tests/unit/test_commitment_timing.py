"""When a validator counts a miner as done: the first sight of its final commitment, completed.

Regression for the early-claim incident: a miner answered "completed" with an
empty manifest right after assign, swapped in a real one at the deadline and
was still paid the fast-completion bonus.
"""

from __future__ import annotations

import pytest

from common.protocol import DataAssignmentRequest, Source
from consensus.assignment import MinerInfo
from vali_utils.assignments import Assignment, protocol_refusal
from vali_utils.store import Progress

pytestmark = pytest.mark.unit

C1, C2 = "1" * 64, "2" * 64


def _assignment() -> Assignment:
    request = DataAssignmentRequest(
        request_id="e1-b0-g0", phase="assign", zipcode_assignments={Source.ZILLOW_SOLD: ["10001"]}
    )
    a = Assignment(None, MinerInfo(3, "hk3", "ck3"), "x:1", request, dispatched_wall=100.0)
    a.accepted = True
    return a


def test_a_changed_commitment_restarts_the_clock():
    a = _assignment()
    assert a.see_commitment(C1, None, completed=False, now=101.0)
    assert a.completed_after_s is None
    assert a.see_commitment(C2, None, completed=True, now=150.0)
    assert a.completed_after_s == 50.0 and a.commitment_seen_wall == 150.0


def test_a_completed_commitment_binds():
    """An early claim earns what it claimed: a later commitment is not taken, nor its time."""
    a = _assignment()
    assert a.see_commitment(C1, None, completed=True, now=101.0)
    assert not a.see_commitment(C2, None, completed=True, now=150.0)
    assert a.commitment == C1 and a.completed_after_s == 1.0


def test_completion_is_the_first_completed_sight_of_the_same_commitment():
    a = _assignment()
    a.see_commitment(C1, None, completed=False, now=110.0)
    assert a.completed_after_s is None
    assert a.see_commitment(C1, None, completed=True, now=120.0)
    assert a.completed_after_s == 20.0
    # Seen again later, completed or not: nothing moves.
    assert not a.see_commitment(C1, None, completed=True, now=130.0)
    assert not a.see_commitment(C1, None, completed=False, now=140.0)
    assert a.completed_after_s == 20.0 and a.commitment_seen_wall == 110.0


def test_commitment_state_survives_the_store_round_trip():
    a = _assignment()
    a.see_commitment(C2, "0x" + "ab" * 64, completed=True, now=105.0)
    stored = a.progress()
    assert isinstance(stored, Progress)
    b = _assignment()
    b.restore(stored)
    assert (b.commitment, b.commitment_signature, b.commitment_seen_wall) == (
        C2,
        "0x" + "ab" * 64,
        105.0,
    )
    assert b.commitment_completed and b.completed_after_s == 5.0


class _Error:
    def __init__(self, code: str, message: str) -> None:
        self.code, self.message = code, message


def test_protocol_refusals_are_told_apart_from_other_refusals():
    old = _Error("invalid_body", "protocol_version: Extra inputs are not permitted")
    assert "miner must upgrade" in protocol_refusal(422, old, 2)
    newer = _Error("unsupported_protocol", "request speaks protocol v2; this miner speaks v3")
    assert protocol_refusal(426, newer, 2) == newer.message
    assert protocol_refusal(422, _Error("invalid_body", "zipcode: bad"), 2) is None
    assert protocol_refusal(403, _Error("forbidden", "no permit"), 2) is None
