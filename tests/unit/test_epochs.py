"""The one epoch clock (common/epochs.py) the Data API, miners and validators share.

It used to be written twice (the Data API's ``EpochClock`` and the validator's
``Schedule``); these are the tests of both, merged.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.epochs import EpochClock

pytestmark = pytest.mark.unit


def test_epoch_boundaries_and_deadlines():
    clock = EpochClock(14400, 0.75)
    assert clock.epoch_at(14400 * 10 + 5) == 10
    assert clock.epoch_at(14400 * 10) == 10  # a boundary belongs to the epoch it starts
    assert clock.epoch_at(14400 * 10 - 0.001) == 9
    assert clock.start(10) == 144000
    assert clock.deadline(10) == 144000 + 10800
    assert clock.tiebreak_deadline(10) == 144000 + 10800 + 1800
    assert clock.end(10) == 158400 == clock.start(11)


def test_epochs_align_to_the_wall_clock():
    clock = EpochClock(20.0, 0.75)
    assert clock.epoch_at(1000.0) == 50
    assert clock.deadline(50) == 1015.0
    assert clock.tiebreak_deadline(50) == 1017.5
    # Early in an epoch: join it; late: wait for the next boundary.
    assert clock.next_cycle(1001.0) == (50, 1000.0)
    assert clock.next_cycle(1012.0) == (51, 1020.0)


def test_joining_needs_half_the_collect_window():
    clock = EpochClock(20.0, 0.75)  # collect window 15 s: join while 7.5 s of it are left
    assert clock.next_cycle(1007.5) == (50, 1000.0)  # exactly half left: joined
    assert clock.next_cycle(1007.5001) == (51, 1020.0)
    assert clock.next_cycle(1000.0) == (50, 1000.0)
    assert clock.next_cycle(1019.999) == (51, 1020.0)


def test_a_full_collect_window_leaves_no_tiebreak_time():
    clock = EpochClock(60.0, 1.0)
    assert clock.deadline(3) == clock.tiebreak_deadline(3) == clock.end(3) == 240.0


@pytest.mark.parametrize(
    ("seconds", "fraction"),
    [(0, 0.5), (-1, 0.5), (math.inf, 0.5), (math.nan, 0.5), (10, 0), (10, 1.5), (10, -0.1)],
)
def test_nonsense_clocks_are_refused(seconds, fraction):
    with pytest.raises(ValueError):
        EpochClock(seconds, fraction)


def test_the_clock_is_a_frozen_value():
    clock = EpochClock(20.0, 0.75)
    assert clock == EpochClock(20.0, 0.75)
    with pytest.raises(AttributeError):
        clock.epoch_seconds = 30.0  # type: ignore[misc]


@given(
    epoch_seconds=st.sampled_from([3.0, 20.0, 60.0, 14400.0]),
    fraction=st.floats(min_value=0.05, max_value=1.0),
    now=st.floats(min_value=0, max_value=4e9),
)
def test_phases_are_ordered_and_the_next_cycle_is_never_missed(epoch_seconds, fraction, now):
    clock = EpochClock(epoch_seconds, fraction)
    epoch = clock.epoch_at(now)
    assert clock.start(epoch) <= now < clock.end(epoch) + 1e-6 * epoch_seconds
    assert clock.start(epoch) < clock.deadline(epoch) <= clock.tiebreak_deadline(epoch)
    assert clock.tiebreak_deadline(epoch) <= clock.end(epoch)
    joined, start = clock.next_cycle(now)
    assert joined in (epoch, epoch + 1) and start == clock.start(joined)
    if joined == epoch:  # joined late: at least half the collect window is left
        assert clock.deadline(epoch) - now >= fraction * epoch_seconds / 2
