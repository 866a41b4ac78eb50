"""The epoch block derivation (pure): determinism, rotation, state spread, honeypots, tiers.

Guards against the seed's mock, which reshuffled zipcodes on every call so no
two validators ever agreed on a block.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import fields

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from common.data_api_models import BlockZipcode, ZipcodeBlock
from common.epochs import EpochClock
from config.data_api import SIZE_TIERS, BlockConfig
from data_api.blocks import NO_RESIDENTIAL, REFERENCE, BlockEntry, derive_block, epoch_key
from data_api.service import block_model
from data_api.universe import build_universe, load_universe, tier_of

pytestmark = pytest.mark.unit

SECRET = b"unit-test-secret-of-32-characters!!"
CONFIG = BlockConfig()


@pytest.fixture(scope="module")
def universe():
    return load_universe()


def _row(zipcode, state, lat, lng, kind="STANDARD", active=True):
    return {
        "zip_code": zipcode,
        "zip_code_type": kind,
        "active": active,
        "state": state,
        "lat": str(lat),
        "long": str(lng),
    }


def small_universe(n_states: int = 5, per_state: int = 10, empties: int = 6):
    rows = []
    for s in range(n_states):
        state = ["TX", "CA", "NY", "FL", "OH", "PA", "IL", "GA"][s]
        for i in range(per_state):
            rows.append(_row(f"{s}{i:04d}", state, 30 + s, -90 + i * 0.01))
    for i in range(empties):
        rows.append(_row(f"9{i:04d}", "WA", 47, -122 + i, kind="PO BOX"))
    return build_universe(rows)


# --- the universe ----------------------------------------------------------------------


def test_real_universe_is_standard_active_zipcodes_of_the_states(universe):
    assert len(universe.residential) > 25_000
    assert len(universe.no_residential) > 5_000
    states = {z.state for z in universe.residential}
    assert len(states) == 51  # 50 states and DC, no territories
    assert "PR" not in states and "GU" not in states
    assert universe.by_zipcode["77494"].state == "TX"  # Katy, TX: standard and residential
    assert abs(sum(universe.tier_shares) - 1) < 1e-9
    assert all(share > 0.05 for share in universe.tier_shares)
    assert {z.zipcode for z in universe.residential}.isdisjoint(
        z.zipcode for z in universe.no_residential
    )


def test_universe_filters_rows():
    u = build_universe(
        [
            _row("10001", "NY", 40.75, -73.99),
            _row("10002", "NY", 40.71, -73.98, active=False),  # inactive
            _row("00601", "PR", 18.18, -66.75),  # territory
            _row("10003", "NY", 0, 0),  # no coordinates
            _row("10004", "NY", "", -74.0),  # unparseable
            _row("10005", "NY", 40.7, -74.0, kind="MILITARY"),
            _row("10006", "NY", 40.7, -74.0, kind="PO BOX"),
            _row("1000x", "NY", 40.7, -74.0),
        ]
    )
    assert [z.zipcode for z in u.residential] == ["10001"]
    assert [z.zipcode for z in u.no_residential] == ["10006"]


def test_tiers_follow_the_thresholds():
    assert tier_of(0) == 0
    for index, tier in enumerate(SIZE_TIERS):
        assert tier_of(tier.min_neighbours) == index
        if index:
            assert tier_of(tier.min_neighbours - 1) == index - 1


def test_dense_places_get_bigger_tiers(universe):
    manhattan = universe.by_zipcode["10001"]
    rural = universe.by_zipcode["59001"]  # Absarokee, MT
    assert SIZE_TIERS[manhattan.tier].name == "urban"
    assert manhattan.expected_properties > rural.expected_properties


# --- the block -----------------------------------------------------------------------


def test_same_inputs_same_block(universe):
    a = derive_block(SECRET, 100, universe, CONFIG, [], ["77494"])
    b = derive_block(SECRET, 100, universe, CONFIG, [], ["77494"])
    assert a == b


def test_epoch_and_secret_change_everything(universe):
    base = derive_block(SECRET, 100, universe, CONFIG)
    other_epoch = derive_block(SECRET, 101, universe, CONFIG)
    other_secret = derive_block(b"another secret of thirty-two chars!", 100, universe, CONFIG)
    for other in (other_epoch, other_secret):
        assert other.seed != base.seed and other.nonce != base.nonce
        assert other.block_id != base.block_id
        overlap = set(other.zipcodes) & set(base.zipcodes)
        assert len(overlap) < 150  # chance overlap of two 1000-draws from ~30k


def test_block_shape(universe):
    block = derive_block(SECRET, 7, universe, CONFIG)
    assert len(block.batches) == 50
    assert all(len(batch) == 20 for batch in block.batches)
    assert len(set(block.zipcodes)) == 1000
    assert 0 <= block.seed < 2**63
    assert len(block.nonce) == 32 and int(block.nonce, 16) >= 0
    assert block.relaxed == ()
    assert epoch_key(SECRET, 7) != epoch_key(SECRET, 8)


def test_no_state_above_its_share(universe):
    for epoch in range(5):
        block = derive_block(SECRET, epoch, universe, CONFIG)
        per_state = Counter(e.state for batch in block.batches for e in batch)
        assert max(per_state.values()) <= int(CONFIG.max_state_share * 1000)
    tight = BlockConfig(max_state_share=0.03)
    block = derive_block(SECRET, 1, universe, tight)
    per_state = Counter(e.state for batch in block.batches for e in batch)
    assert max(per_state.values()) <= 30
    assert len(per_state) >= 34  # spread over many states, as it must be


def test_consecutive_epochs_rotate(universe):
    history: list[frozenset[str]] = []
    for epoch in range(10, 10 + CONFIG.rotation_epochs + 2):
        block = derive_block(SECRET, epoch, universe, CONFIG, history[::-1])
        window = history[-CONFIG.rotation_epochs :]
        for earlier in window:
            assert earlier.isdisjoint(block.zipcodes)
        assert "rotation" not in block.relaxed
        history.append(frozenset(block.zipcodes))


def test_rotation_gives_way_least_recently_used_first():
    u = small_universe(n_states=4, per_state=10, empties=4)  # 40 residential
    config = BlockConfig(
        zipcodes_per_block=16, zipcodes_per_batch=8, honeypots_per_block=0, rotation_epochs=5
    )
    first = derive_block(SECRET, 1, u, config)
    second = derive_block(SECRET, 2, u, config, [frozenset(first.zipcodes)])
    assert set(first.zipcodes).isdisjoint(second.zipcodes)
    recent = [frozenset(second.zipcodes), frozenset(first.zipcodes)]
    third = derive_block(SECRET, 3, u, config, recent)  # 8 unused left: 8 must come back
    assert "rotation" in third.relaxed
    reused = set(third.zipcodes) - (set(u.by_zipcode) - set(first.zipcodes) - set(second.zipcodes))
    assert len(reused) == 8
    assert reused <= set(first.zipcodes)  # the oldest block's zipcodes come back first
    assert len(third.zipcodes) == 16


def test_too_few_states_relaxes_the_share_and_says_so():
    u = small_universe(n_states=2, per_state=30, empties=0)
    config = BlockConfig(zipcodes_per_block=40, zipcodes_per_batch=20, honeypots_per_block=0)
    block = derive_block(SECRET, 1, u, config)
    assert len(block.zipcodes) == 40
    assert "state_share" in block.relaxed


def test_honeypots_are_mixed_in_and_look_like_the_rest(universe):
    references = ["77494", "10001", "94103"]
    block = derive_block(SECRET, 3, universe, CONFIG, [], references)
    kinds = Counter(kind for _, kind in block.honeypots)
    assert sum(kinds.values()) == CONFIG.honeypots_per_block
    assert kinds[REFERENCE] == 3  # all references fit in half of 10
    assert kinds[NO_RESIDENTIAL] == 7
    entries = {e.zipcode: e for batch in block.batches for e in batch}
    allowed = {t.expected_properties for t in SIZE_TIERS}
    for zipcode, kind in block.honeypots:
        entry = entries[zipcode]
        assert isinstance(entry, BlockEntry)
        assert entry.expected_properties in allowed
        if kind == NO_RESIDENTIAL:
            assert zipcode in {z.zipcode for z in universe.no_residential}
    # On the wire, a honeypot is a BlockZipcode like any other: the same keys, nothing more.
    model = block_model(block, EpochClock(14400, 0.75), CONFIG)
    wire = {z.zipcode: z.model_dump() for b in model.batches for z in b.zipcodes}
    keys = {tuple(sorted(v)) for v in wire.values()}
    assert keys == {tuple(sorted(BlockZipcode.model_fields))}
    assert {f.name for f in fields(BlockEntry)} == set(BlockZipcode.model_fields)


def test_reference_zipcodes_only_appear_as_honeypots(universe):
    references = [z.zipcode for z in universe.residential[:400:20]]  # 20 references
    for epoch in range(6):
        block = derive_block(SECRET, epoch, universe, CONFIG, [], references)
        chosen = {z for z, kind in block.honeypots if kind == REFERENCE}
        assert len(chosen) == 5  # reference_share of 10
        assert (set(block.zipcodes) & set(references)) == chosen


def test_honeypot_expected_counts_follow_the_tier_distribution(universe):
    drawn = Counter()
    for epoch in range(12):
        block = derive_block(SECRET, epoch, universe, BlockConfig(honeypots_per_block=200))
        entries = {e.zipcode: e for batch in block.batches for e in batch}
        for zipcode, _ in block.honeypots:
            drawn[entries[zipcode].expected_properties] += 1
    total = sum(drawn.values())
    for tier, share in zip(SIZE_TIERS, universe.tier_shares, strict=True):
        assert abs(drawn[tier.expected_properties] / total - share) < 0.04, (tier, drawn)


def test_model_of_a_block_round_trips(universe):
    block = derive_block(SECRET, 5, universe, CONFIG)
    model = block_model(block, EpochClock(14400, 0.75), CONFIG)
    again = ZipcodeBlock.model_validate_json(model.model_dump_json())
    assert again == model
    assert again.zipcodes() == block.zipcodes
    assert again.expires_at.timestamp() == 5 * 14400 + 10800
    assert again.config.zipcodes_per_batch == 20 and again.config.groups_per_batch == 2


@given(
    n_states=st.integers(1, 8),
    per_state=st.integers(1, 12),
    empties=st.integers(0, 5),
    total=st.integers(1, 60),
    batch=st.integers(1, 25),
    honeypots=st.integers(0, 6),
    share=st.floats(0.05, 1.0),
    epoch=st.integers(0, 10**9),
    history=st.integers(0, 3),
)
@hsettings(max_examples=60, deadline=None)
def test_invariants_on_small_universes(
    n_states, per_state, empties, total, batch, honeypots, share, epoch, history
):
    u = small_universe(n_states, per_state, empties)
    size = len(u.residential) + min(len(u.no_residential), min(honeypots, total - 1))
    config = BlockConfig(
        zipcodes_per_block=total,
        zipcodes_per_batch=batch,
        honeypots_per_block=min(honeypots, total - 1),
        max_state_share=share,
    )
    recent = []
    for back in range(history):
        recent.append(frozenset(derive_block(SECRET, epoch - back - 1, u, config).zipcodes))
    block = derive_block(SECRET, epoch, u, config, recent)
    assert len(block.zipcodes) == min(total, size)
    assert len(set(block.zipcodes)) == len(block.zipcodes)
    assert all(1 <= len(b) <= batch for b in block.batches)
    assert all(len(b) == batch for b in block.batches[:-1])
    if "state_share" not in block.relaxed:
        per_state = Counter(e.state for b in block.batches for e in b)
        assert max(per_state.values()) <= max(1, int(share * min(total, size)))
    assert block == derive_block(SECRET, epoch, u, config, recent)
