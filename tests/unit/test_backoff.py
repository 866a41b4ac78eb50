"""The one retry wait: doubles per attempt, stops at its cap, half of it jittered."""

from __future__ import annotations

import random

import pytest

from common.backoff import backoff_s
from config.sources import RapidApiConfig
from scraping.rapidapi import RapidApiZillowSource
from vali_utils.data_api_client import RetryPolicy

pytestmark = pytest.mark.unit


def test_doubles_until_the_cap() -> None:
    waits = [backoff_s(n, base_s=0.5, cap_s=8.0, jitter=1.0) for n in range(7)]
    assert waits == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


def test_jitter_spreads_the_upper_half_only() -> None:
    assert backoff_s(3, base_s=1.0, cap_s=60.0, jitter=0.0) == 4.0
    assert backoff_s(3, base_s=1.0, cap_s=60.0, jitter=0.5) == 6.0
    rng = random.Random(7)
    waits = [backoff_s(3, base_s=1.0, cap_s=60.0, jitter=rng.random()) for _ in range(200)]
    assert all(4.0 <= w <= 8.0 for w in waits) and len(set(waits)) > 150


def test_out_of_range_inputs_stay_bounded() -> None:
    assert backoff_s(-3, base_s=2.0, cap_s=10.0, jitter=1.0) == 2.0  # "before the first" = first
    assert backoff_s(2, base_s=2.0, cap_s=10.0, jitter=7.0) == 8.0
    assert backoff_s(2, base_s=2.0, cap_s=10.0, jitter=-1.0) == 4.0
    assert backoff_s(10_000, base_s=2.0, cap_s=10.0, jitter=1.0) == 10.0  # no overflow


def test_the_data_api_client_and_the_source_wait_the_same() -> None:
    policy = RetryPolicy(base_s=0.5, cap_s=8.0)
    assert [policy.backoff(n, 0.25) for n in range(6)] == [
        backoff_s(n, base_s=0.5, cap_s=8.0, jitter=0.25) for n in range(6)
    ]
    config = RapidApiConfig(api_key="k", backoff_base_s=0.5, backoff_cap_s=8.0)
    source = RapidApiZillowSource(config, rng=random.Random(1))
    expected = random.Random(1)
    for n in range(6):
        assert source._backoff_s(n) == backoff_s(n, base_s=0.5, cap_s=8.0, jitter=expected.random())
