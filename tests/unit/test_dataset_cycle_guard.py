"""A bug in the optional dataset code never stops weights (issue 17 review, item 4).

Incident guarded against: ``confirmed_records`` ran unguarded inside the
construction of the cycle's outcome, before weights: an exception there would
have ended the cycle, and the validator would set no weights for an optional
export. Now it is logged with its traceback and the outcome has no dataset input.
"""

from __future__ import annotations

import logging

import pytest

import vali_utils.cycle as cycle_module
from consensus.engine import ConsensusEngine
from tests.unit import consensus_builders as cb
from vali_utils.cycle import ConsensusCycle

pytestmark = pytest.mark.unit


def finalized():
    plan = cb.make_plan(zipcodes_per_batch=2, miners_per_group=3)
    truth = cb.make_truth(plan, n_records=4)
    engine = ConsensusEngine()
    draft = engine.evaluate(plan, cb.submissions(plan, cb.honest(truth)), {})
    return draft, engine.finalize(draft, [], {})


def test_a_raising_confirmed_records_is_logged_and_the_cycle_goes_on(monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise IndexError("a bug in the dataset's input")

    monkeypatch.setattr(cycle_module, "confirmed_records", broken)
    draft, result = finalized()
    cycle = ConsensusCycle(None, None, None, None, provenance=True)
    with caplog.at_level(logging.ERROR, logger="vali_utils.cycle"):
        assert cycle._confirmed(draft, [], result, 7) is None
    (record,) = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert record.exc_info is not None and record.exc_info[0] is IndexError
    assert "epoch 7" in record.getMessage()


def test_the_real_confirmed_records_when_on_none_when_off():
    draft, result = finalized()
    on = ConsensusCycle(None, None, None, None, provenance=True)
    assert on._confirmed(draft, [], result, 7).records
    off = ConsensusCycle(None, None, None, None)
    assert off._confirmed(draft, [], result, 7) is None
