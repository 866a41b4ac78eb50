"""The pure rules behind "an outage is never evidence; S3 padding is" (issue 15, item 5)."""

from __future__ import annotations

import pytest

from config.data_api import UploadLimits
from config.storage import S3EvalConfig, S3Settings
from consensus.s3_evaluation import (
    S3Evaluation,
    folder_padded,
    is_outage,
    no_evidence,
    without_evidence,
)
from data_api.store import ApiStore, UploadGrant

pytestmark = pytest.mark.unit


def test_an_outage_is_a_share_of_unread_miners_not_one_glitch():
    share = S3EvalConfig().outage_share
    assert not is_outage(0, 8, share)
    assert not is_outage(1, 8, share)  # one miner's timeout: only that miner goes without
    assert is_outage(2, 8, share)
    assert is_outage(8, 8, share)
    assert not is_outage(0, 0, share)


def test_a_void_round_keeps_who_was_evaluated_and_says_why():
    round_ = {
        "a": S3Evaluation("a", 0.9, {"integrity": 0.9}, 6, 3, 120, ()),
        "b": no_evidence("b", "s3_unavailable: timeout"),
    }
    void = without_evidence(round_, "s3_outage_round: 1 of 2 unread")
    assert {hk: e.reward for hk, e in void.items()} == {"a": None, "b": None}
    assert void["a"].reasons[-1] == "s3_outage_round: 1 of 2 unread"
    assert void["b"].reasons == ("s3_unavailable: timeout", "s3_outage_round: 1 of 2 unread")
    assert void["a"].files_listed == 6


def test_a_padded_folder_is_a_zero_reward_not_no_evidence():
    padded = folder_padded("a", 5000, "key not in the first 5000 keys")
    assert padded.reward == 0.0 and padded.components == {"folder": 0.0}


def test_settings_refuse_nonsense():
    with pytest.raises(ValueError):
        S3Settings(missing_recheck_s=-1.0)
    with pytest.raises(ValueError):
        S3EvalConfig(outage_share=1.5)
    with pytest.raises(ValueError):
        UploadLimits(files_per_zipcode=0)


def test_upload_grants_are_capped_per_zipcode_and_shared_by_connections(tmp_path):
    path = tmp_path / "api.sqlite"
    first, second = ApiStore.open(path), ApiStore.open(path)  # two workers' connections
    try:
        limits = UploadLimits(files_per_zipcode=2, keep_epochs=2)
        assert first.grant_upload(UploadGrant("m", 10, "S", "77494", "h1"), limits) == 1
        assert second.grant_upload(UploadGrant("m", 10, "S", "77494", "h2"), limits) == 2
        assert first.grant_upload(UploadGrant("m", 10, "S", "77494", "h3"), limits) is None
        assert second.grant_upload(UploadGrant("m", 10, "S", "77494", "h1"), limits) == 2  # a retry
        assert first.grant_upload(UploadGrant("m", 10, "S", "77495", "h3"), limits) == 1
        assert first.grant_upload(UploadGrant("other", 10, "S", "77494", "h3"), limits) == 1
        # Two epochs on, the old grants are pruned: the same zipcode starts afresh.
        assert second.grant_upload(UploadGrant("m", 12, "S", "77494", "h3"), limits) == 1
        assert first.grant_upload(UploadGrant("m", 10, "S", "77494", "h3"), limits) == 1
    finally:
        first.close()
        second.close()
