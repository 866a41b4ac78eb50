"""Unit and property tests for ``consensus.assignment`` (zipcodes + metagraph -> plan)."""

from __future__ import annotations

import random
import re
from collections import Counter
from dataclasses import fields, replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config.consensus import AssignmentConfig as ConfigAssignmentConfig
from consensus.assignment import (
    AssignmentConfig,
    AssignmentPlan,
    MinerGroup,
    MinerInfo,
    Relaxation,
    ZipcodeAssignmentManager,
    batch_is_independent,
    group_rules_hold,
)

pytestmark = pytest.mark.unit

# Plans of many miners are slow to build and draw large examples: both are expected here.
SLOW_AND_LARGE = [HealthCheck.too_slow, HealthCheck.data_too_large]
PROPERTY_SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=SLOW_AND_LARGE)


# ---------------------------------------------------------------------- strategies


def distinct_miners(n: int) -> list[MinerInfo]:
    return [MinerInfo(uid=i, hotkey=f"hk{i:04d}", coldkey=f"ck{i:04d}") for i in range(n)]


def zipcodes(n: int, offset: int = 10000) -> list[str]:
    return [f"{offset + i:05d}" for i in range(n)]


@st.composite
def configs(draw) -> AssignmentConfig:
    if draw(st.booleans()):
        return AssignmentConfig()
    return AssignmentConfig(
        zipcodes_per_batch=draw(st.integers(1, 30)),
        miners_per_group=draw(st.integers(1, 12)),
        overlap_factor=draw(st.integers(1, 4)),
        max_batches_per_cycle=draw(st.integers(1, 60)),
        max_miners_per_coldkey=draw(st.integers(1, 3)),
        min_different_coldkeys=draw(st.integers(1, 8)),
    )


@st.composite
def metagraphs(draw, max_miners: int = 300) -> list[MinerInfo]:
    """1..max_miners miners; coldkeys shared at random, a few 'whale' coldkeys own many."""
    # small metagraphs (where rules are at their limits) as often as large ones
    n = draw(st.one_of(st.integers(1, 40), st.integers(1, max_miners)))
    rng = random.Random(draw(st.integers(0, 2**32 - 1)))
    n_coldkeys = draw(st.one_of(st.integers(1, min(n, 25)), st.integers(1, n)))
    n_whales = draw(st.integers(0, 3))
    whale_share = draw(st.sampled_from([0.0, 0.1, 0.3, 0.6, 0.9])) if n_whales else 0.0
    uids = rng.sample(range(4 * max_miners), n)
    miners = []
    for i, uid in enumerate(uids):
        if rng.random() < whale_share:
            coldkey = f"whale{rng.randrange(n_whales)}"
        else:
            coldkey = f"ck{rng.randrange(n_coldkeys)}"
        miners.append(
            MinerInfo(uid=uid, hotkey=f"5H{rng.getrandbits(64):016x}{i}", coldkey=coldkey)
        )
    return miners


@st.composite
def zipcode_lists(draw, max_zipcodes: int = 1200) -> list[str]:
    n = draw(st.integers(0, max_zipcodes))
    rng = random.Random(draw(st.integers(0, 2**32 - 1)))
    return [f"{z:05d}" for z in rng.sample(range(100_000), n)]


SEEDS = st.binary(min_size=1, max_size=32)
SOFT_RULES = {"miners_per_group", "min_different_coldkeys", "overlap_factor", "load_balance"}


@st.composite
def scenarios(draw):
    return draw(configs()), draw(metagraphs()), draw(zipcode_lists()), draw(SEEDS)


def plan_for(cfg, miners, zips, seed) -> AssignmentPlan:
    return ZipcodeAssignmentManager(cfg).create_plan(zips, miners, seed)


def load_spread(plan: AssignmentPlan) -> int:
    loads = list(plan.assignments_per_miner.values())
    return max(loads) - min(loads) if loads else 0


# ------------------------------------------------------------------- rule checkers


def assert_hard_rules(plan: AssignmentPlan, cfg: AssignmentConfig) -> None:
    for group in plan.groups:
        hotkeys = [m.hotkey for m in group.miners]
        assert len(hotkeys) == len(set(hotkeys)), "a miner twice in one group"
        per_coldkey = Counter(m.coldkey for m in group.miners)
        assert max(per_coldkey.values(), default=0) <= cfg.max_miners_per_coldkey
    for batch_id, groups in plan.batches.items():
        seen_hotkeys: set[str] = set()
        seen_coldkeys: set[str] = set()
        for group in groups:
            hotkeys = {m.hotkey for m in group.miners}
            assert not hotkeys & seen_hotkeys, f"batch {batch_id}: a miner in two groups"
            assert not group.coldkeys & seen_coldkeys, f"batch {batch_id}: coldkey in two groups"
            seen_hotkeys |= hotkeys
            seen_coldkeys |= group.coldkeys


def expected_relaxations(plan: AssignmentPlan, cfg: AssignmentConfig) -> dict[tuple, float]:
    """(rule, batch_id, overlap_group) -> achieved, recomputed from the plan's groups."""
    expected: dict[tuple, float] = {}
    for batch_id, groups in plan.batches.items():
        non_empty = [g for g in groups if g.miners]
        if len(non_empty) < cfg.overlap_factor:
            expected[("overlap_factor", batch_id, None)] = len(non_empty)
        for group in non_empty:
            if len(group.miners) < cfg.miners_per_group:
                expected[("miners_per_group", batch_id, group.overlap_group)] = len(group.miners)
            if len(group.coldkeys) < cfg.min_different_coldkeys:
                expected[("min_different_coldkeys", batch_id, group.overlap_group)] = len(
                    group.coldkeys
                )
    spread = load_spread(plan)
    if spread > 1:
        expected[("load_balance", None, None)] = spread
    return expected


def assert_relaxations_complete(plan: AssignmentPlan, cfg: AssignmentConfig) -> None:
    required = {
        "overlap_factor": cfg.overlap_factor,
        "miners_per_group": cfg.miners_per_group,
        "min_different_coldkeys": cfg.min_different_coldkeys,
        "load_balance": 1,
    }
    reported = {(r.rule, r.batch_id, r.overlap_group): r for r in plan.relaxations}
    assert len(reported) == len(plan.relaxations), "a relaxation reported twice"
    expected = expected_relaxations(plan, cfg)
    assert set(reported) == set(expected)
    for key, achieved in expected.items():
        relaxation = reported[key]
        assert relaxation.achieved == achieved
        assert relaxation.required == required[relaxation.rule]
        assert relaxation.shortfall == abs(relaxation.required - achieved)


def assert_assignments_consistent(plan: AssignmentPlan, miners: list[MinerInfo]) -> None:
    counted = Counter(m.hotkey for g in plan.groups for m in g.miners)
    assert set(plan.assignments_per_miner) == {m.hotkey for m in miners}
    for hotkey, n in plan.assignments_per_miner.items():
        assert n == counted[hotkey]


def assert_all_rules_hold(plan: AssignmentPlan, cfg: AssignmentConfig) -> None:
    for group in plan.groups:
        assert len(group.miners) == cfg.miners_per_group
        assert group_rules_hold(group, cfg)
    for groups in plan.batches.values():
        assert batch_is_independent(groups, cfg)
    assert load_spread(plan) <= 1


# ------------------------------------------------------------- property tests (a)-(f)


@PROPERTY_SETTINGS
@given(scenario=scenarios())
def test_hard_rules_never_relaxed(scenario):
    """(a)+(b): one coldkey never exceeds its per-group cap, and groups of a batch are
    disjoint in miners and coldkeys, whatever the metagraph."""
    cfg, miners, zips, seed = scenario
    plan = plan_for(cfg, miners, zips, seed)
    assert_hard_rules(plan, cfg)
    assert_assignments_consistent(plan, miners)
    # only the soft rules may appear as relaxations, never the coldkey cap
    assert {r.rule for r in plan.relaxations} <= SOFT_RULES


@PROPERTY_SETTINGS
@given(scenario=scenarios())
def test_every_shortfall_is_reported_and_only_shortfalls(scenario):
    """(c): a rule that gave way without a Relaxation entry (or with a wrong achieved
    figure) would let a validator trust a weak group; empty relaxations means all held."""
    cfg, miners, zips, seed = scenario
    plan = plan_for(cfg, miners, zips, seed)
    assert_relaxations_complete(plan, cfg)
    if not plan.relaxations:
        assert_all_rules_hold(plan, cfg)


@PROPERTY_SETTINGS
@given(
    cfg=configs(),
    extra=st.integers(0, 60),
    zips=zipcode_lists(),
    seed=SEEDS,
    shuffle_seed=st.integers(0, 2**32 - 1),
)
def test_enough_distinct_coldkeys_need_no_relaxation(cfg, extra, zips, seed, shuffle_seed):
    """(d): with >= overlap_factor * miners_per_group distinct coldkeys the plan meets
    every rule, including a load spread of at most 1."""
    n = cfg.overlap_factor * cfg.miners_per_group + extra
    miners = distinct_miners(n)
    random.Random(shuffle_seed).shuffle(miners)
    if cfg.min_different_coldkeys > cfg.miners_per_group:  # unsatisfiable by construction
        cfg = replace(cfg, min_different_coldkeys=cfg.miners_per_group)
    plan = plan_for(cfg, miners, zips, seed)
    assert plan.relaxations == ()
    assert load_spread(plan) <= 1
    assert_all_rules_hold(plan, cfg)


@PROPERTY_SETTINGS
@given(
    hotkeys_per_coldkey=st.integers(1, 4),
    extra_coldkeys=st.integers(0, 15),
    zips=zipcode_lists(max_zipcodes=400),
    seed=SEEDS,
)
def test_enough_coldkeys_need_no_group_relaxation(hotkeys_per_coldkey, extra_coldkeys, zips, seed):
    """(d'): with enough coldkeys, each owning a few hotkeys, no group or batch rule gives
    way (only load balance may, since a coldkey's hotkeys share its one seat a batch)."""
    cfg = AssignmentConfig()
    n_coldkeys = cfg.overlap_factor * cfg.miners_per_group + extra_coldkeys
    miners = [
        MinerInfo(uid=c * 10 + h, hotkey=f"hk{c}-{h}", coldkey=f"ck{c}")
        for c in range(n_coldkeys)
        for h in range(hotkeys_per_coldkey)
    ]
    plan = plan_for(cfg, miners, zips, seed)
    assert {r.rule for r in plan.relaxations} <= {"load_balance"}
    for group in plan.groups:
        assert len(group.miners) == cfg.miners_per_group
        assert group_rules_hold(group, cfg)
    for groups in plan.batches.values():
        assert batch_is_independent(groups, cfg)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario=scenarios(), data=st.data())
def test_plan_is_deterministic_and_order_independent(scenario, data):
    """(e): every validator must compute the same plan from the same inputs, whatever
    order its metagraph and zipcode lists come in."""
    cfg, miners, zips, seed = scenario
    plan = plan_for(cfg, miners, zips, seed)
    again = plan_for(cfg, list(miners), list(zips), bytes(seed))
    assert again == plan
    assert again.assignments_per_miner == plan.assignments_per_miner

    shuffled_miners = data.draw(st.permutations(miners))
    shuffled_zips = data.draw(st.permutations(zips))
    reordered = plan_for(cfg, list(shuffled_miners), list(shuffled_zips), bytearray(seed))
    assert reordered.plan_hash == plan.plan_hash
    assert reordered.groups == plan.groups
    assert reordered.relaxations == plan.relaxations
    assert reordered.unassigned_zipcodes == plan.unassigned_zipcodes

    other_seed = seed + b"\x01"
    assert plan_for(cfg, miners, zips, other_seed).plan_hash != plan.plan_hash
    assert re.fullmatch(r"[0-9a-f]{64}", plan.plan_hash)
    assert plan.seed_hex == seed.hex()


@PROPERTY_SETTINGS
@given(scenario=scenarios())
def test_every_zipcode_in_one_batch_or_unassigned(scenario):
    """(f): a zipcode lost, assigned twice or over the per-cycle capacity would skew
    coverage and the miners' workload."""
    cfg, miners, zips, seed = scenario
    plan = plan_for(cfg, miners, zips, seed)
    batches = plan.batches
    assert sorted(batches) == list(range(len(batches)))
    assert len(batches) <= cfg.max_batches_per_cycle
    placed: list[str] = []
    for batch_id, groups in batches.items():
        assert [g.overlap_group for g in groups] == list(range(cfg.overlap_factor))
        assert len({g.zipcodes for g in groups}) == 1, f"batch {batch_id}: groups disagree"
        batch_zips = groups[0].zipcodes
        assert 1 <= len(batch_zips) <= cfg.zipcodes_per_batch
        assert list(batch_zips) == sorted(batch_zips)
        placed.extend(batch_zips)
    assert len(placed) == len(set(placed))
    assert not set(placed) & set(plan.unassigned_zipcodes)
    assert sorted(placed + list(plan.unassigned_zipcodes)) == sorted(set(zips))
    capacity = cfg.zipcodes_per_batch * cfg.max_batches_per_cycle
    assert len(placed) == min(len(set(zips)), capacity)
    assert all(len(g.miners) <= cfg.miners_per_group for g in plan.groups)


# -------------------------------------------------------------------- plain tests


def test_default_plan_meets_every_rule():
    cfg = AssignmentConfig()
    plan = plan_for(cfg, distinct_miners(64), zipcodes(400), b"epoch-1")
    assert plan.relaxations == ()
    assert len(plan.batches) == 20
    assert len(plan.groups) == 40
    assert_all_rules_hold(plan, cfg)
    assert plan.unassigned_zipcodes == ()
    assert plan.config is cfg


def test_boundary_group_sizes_reported_exactly():
    """Nine distinct coldkeys for two groups of ten: groups of 5 and 4, each shortfall
    reported with its achieved figure (4 coldkeys is one below min_different_coldkeys)."""
    cfg = AssignmentConfig()
    plan = plan_for(cfg, distinct_miners(9), zipcodes(20), b"seed")
    sizes = sorted(len(g.miners) for g in plan.groups)
    assert sizes == [4, 5]
    small = next(g for g in plan.groups if len(g.miners) == 4)
    big = next(g for g in plan.groups if len(g.miners) == 5)
    assert set(plan.relaxations) == {
        Relaxation("miners_per_group", 10, 4, 0, small.overlap_group),
        Relaxation("miners_per_group", 10, 5, 0, big.overlap_group),
        Relaxation("min_different_coldkeys", 5, 4, 0, small.overlap_group),
    }


def test_capacity_overflow_goes_to_unassigned():
    cfg = AssignmentConfig(
        zipcodes_per_batch=3, max_batches_per_cycle=2, miners_per_group=2, min_different_coldkeys=2
    )
    plan = plan_for(cfg, distinct_miners(8), zipcodes(10), b"s")
    assert len(plan.batches) == 2
    assert len(plan.unassigned_zipcodes) == 4
    assert list(plan.unassigned_zipcodes) == sorted(plan.unassigned_zipcodes)


@pytest.mark.parametrize(
    "bad", ["7749", "774944", "abcde", "77494-1234", "", " 77494", 77494, None, b"77494"]
)
def test_malformed_zipcode_raises(bad):
    with pytest.raises(ValueError):
        plan_for(AssignmentConfig(), distinct_miners(5), ["10001", bad], b"seed")


def test_zipcode_with_trailing_newline_raises():
    """'77494\\n' must not be treated as a sixth-character variant of 77494 and assigned twice."""
    manager = ZipcodeAssignmentManager(AssignmentConfig())
    try:
        plan = manager.create_plan(["77494", "77494\n"], distinct_miners(30), b"seed")
    except ValueError:
        return
    raise AssertionError(f"accepted, batch zipcodes {plan.groups[0].zipcodes!r}")


def test_non_ascii_digit_zipcode_raises():
    manager = ZipcodeAssignmentManager(AssignmentConfig())
    try:
        plan = manager.create_plan(["٧٧٤٩٤"], distinct_miners(30), b"seed")
    except ValueError:
        return
    raise AssertionError(f"accepted, batch zipcodes {plan.groups[0].zipcodes!r}")


@pytest.mark.parametrize("seed", [b"", bytearray(), "seed", None, 0])
def test_empty_or_non_bytes_seed_raises(seed):
    with pytest.raises(ValueError):
        plan_for(AssignmentConfig(), distinct_miners(5), zipcodes(5), seed)


def test_bytearray_seed_equals_bytes_seed():
    a = plan_for(AssignmentConfig(), distinct_miners(30), zipcodes(50), b"abc")
    b = plan_for(AssignmentConfig(), distinct_miners(30), zipcodes(50), bytearray(b"abc"))
    assert a == b


@pytest.mark.parametrize(
    "conflict",
    [
        MinerInfo(uid=0, hotkey="hk0000", coldkey="other"),  # same hotkey+uid, other coldkey
        MinerInfo(uid=99, hotkey="hk0000", coldkey="ck0000"),  # same hotkey, other uid
        MinerInfo(uid=0, hotkey="hk-new", coldkey="ck0000"),  # same uid, other hotkey
    ],
)
def test_conflicting_miner_entries_raise(conflict):
    """Guards against two validators resolving a contradictory metagraph differently."""
    with pytest.raises(ValueError):
        plan_for(AssignmentConfig(), [*distinct_miners(5), conflict], zipcodes(5), b"seed")


def test_exact_duplicate_miners_deduplicated():
    miners = distinct_miners(25)
    with_duplicates = [*miners, *miners[:10], miners[3]]
    plan = plan_for(AssignmentConfig(), with_duplicates, zipcodes(100), b"seed")
    assert plan == plan_for(AssignmentConfig(), miners, zipcodes(100), b"seed")
    assert len(plan.assignments_per_miner) == 25
    assert_hard_rules(plan, AssignmentConfig())


def test_duplicate_zipcodes_deduplicated():
    plan = plan_for(AssignmentConfig(), distinct_miners(25), zipcodes(30) * 2, b"seed")
    placed = [z for groups in plan.batches.values() for z in groups[0].zipcodes]
    assert sorted(placed) == zipcodes(30)


def test_non_miner_info_rejected():
    with pytest.raises((TypeError, ValueError)):
        plan_for(AssignmentConfig(), [("0", "hk", "ck")], zipcodes(5), b"seed")


def _paired_metagraph() -> list[MinerInfo]:
    """Four coldkeys with two hotkeys each."""
    return [
        MinerInfo(uid=c * 2 + h, hotkey=f"hk{c}-{h}", coldkey=f"ck{c}")
        for c in range(4)
        for h in range(2)
    ]


def _paired_config(max_miners_per_coldkey: int) -> AssignmentConfig:
    """Groups of 4 with 2 coldkeys at least, for the paired metagraph's 4 coldkeys."""
    return AssignmentConfig(
        zipcodes_per_batch=5,
        miners_per_group=4,
        overlap_factor=2,
        max_batches_per_cycle=10,
        max_miners_per_coldkey=max_miners_per_coldkey,
        min_different_coldkeys=2,
    )


def test_two_per_coldkey_allowed_but_never_shared_across_groups():
    cfg = _paired_config(max_miners_per_coldkey=2)
    plan = plan_for(cfg, _paired_metagraph(), zipcodes(30), b"seed")
    assert len(plan.batches) == 6
    assert plan.relaxations == ()
    for group in plan.groups:
        per_coldkey = Counter(m.coldkey for m in group.miners)
        assert len(group.miners) == 4
        assert sorted(per_coldkey.values()) == [2, 2]  # two coldkeys, two hotkeys each
    for groups in plan.batches.values():
        assert not groups[0].coldkeys & groups[1].coldkeys
        assert batch_is_independent(groups, cfg)
    assert_hard_rules(plan, cfg)


def test_one_per_coldkey_reports_small_groups_on_same_metagraph():
    cfg = _paired_config(max_miners_per_coldkey=1)
    plan = plan_for(cfg, _paired_metagraph(), zipcodes(10), b"seed")
    assert all(len(g.miners) == 2 for g in plan.groups)
    assert {(r.rule, r.achieved) for r in plan.relaxations} == {("miners_per_group", 2)}
    assert len(plan.relaxations) == 4  # 2 batches x 2 groups
    assert_hard_rules(plan, cfg)


def test_single_whale_coldkey_gets_one_seat_per_batch():
    """Guards against a coldkey with many hotkeys filling a group (Sybil majority)."""
    cfg = AssignmentConfig()
    whale = [MinerInfo(uid=i, hotkey=f"whale-{i}", coldkey="whale") for i in range(200)]
    plan = plan_for(cfg, whale, zipcodes(100), b"seed")
    for groups in plan.batches.values():
        seated = [m for g in groups for m in g.miners]
        assert len(seated) == 1
    rules = {r.rule for r in plan.relaxations}
    assert {"overlap_factor", "miners_per_group", "min_different_coldkeys"} == rules
    assert_relaxations_complete(plan, cfg)


def test_no_miners_gives_empty_groups_and_overlap_relaxation():
    cfg = AssignmentConfig()
    plan = plan_for(cfg, [], zipcodes(45), b"seed")
    assert len(plan.batches) == 3
    assert all(g.miners == () for g in plan.groups)
    assert plan.relaxations == tuple(
        Relaxation("overlap_factor", cfg.overlap_factor, 0, batch_id=b) for b in range(3)
    )
    assert plan.assignments_per_miner == {}


def test_no_zipcodes_gives_empty_plan():
    plan = plan_for(AssignmentConfig(), distinct_miners(30), [], b"seed")
    assert plan.groups == ()
    assert plan.relaxations == ()
    assert plan.unassigned_zipcodes == ()
    assert set(plan.assignments_per_miner.values()) == {0}


def test_different_seed_gives_different_groups():
    miners, zips = distinct_miners(100), zipcodes(200)
    a = plan_for(AssignmentConfig(), miners, zips, b"epoch-1")
    b = plan_for(AssignmentConfig(), miners, zips, b"epoch-2")
    assert a.plan_hash != b.plan_hash
    assert [g.miners for g in a.groups] != [g.miners for g in b.groups]
    assert [g.zipcodes for g in a.groups] != [g.zipcodes for g in b.groups]


def test_groups_of_lists_a_miners_groups():
    plan = plan_for(AssignmentConfig(), distinct_miners(30), zipcodes(100), b"seed")
    for hotkey, n in plan.assignments_per_miner.items():
        groups = plan.groups_of(hotkey)
        assert len(groups) == n
        assert all(any(m.hotkey == hotkey for m in g.miners) for g in groups)
    assert plan.groups_of("nobody") == []


# --------------------------------------------------------------- config and helpers


def test_config_reexported():
    assert AssignmentConfig is ConfigAssignmentConfig


@pytest.mark.parametrize("name", [f.name for f in fields(AssignmentConfig)])
@pytest.mark.parametrize("value", [0, -1])
def test_config_rejects_non_positive_fields(name, value):
    with pytest.raises(ValueError):
        AssignmentConfig(**{name: value})


def test_config_defaults_valid():
    cfg = AssignmentConfig()
    assert all(getattr(cfg, f.name) >= 1 for f in fields(cfg))


def _group(batch_id, overlap_group, *pairs) -> MinerGroup:
    miners = tuple(MinerInfo(uid=i, hotkey=h, coldkey=c) for i, (h, c) in enumerate(pairs))
    return MinerGroup(batch_id, overlap_group, ("10001",), miners)


def test_group_rules_hold():
    cfg = AssignmentConfig(miners_per_group=3, min_different_coldkeys=2, max_miners_per_coldkey=1)
    assert group_rules_hold(_group(0, 0, ("a", "A"), ("b", "B")), cfg)
    assert not group_rules_hold(_group(0, 0, ("a", "A"), ("b", "A"), ("c", "B")), cfg)
    assert not group_rules_hold(_group(0, 0, ("a", "A")), cfg)
    assert not group_rules_hold(_group(0, 0), cfg)
    two = AssignmentConfig(max_miners_per_coldkey=2, min_different_coldkeys=2)
    assert group_rules_hold(_group(0, 0, ("a", "A"), ("b", "A"), ("c", "B")), two)


def test_batch_is_independent():
    cfg = AssignmentConfig(overlap_factor=2)
    g0 = _group(0, 0, ("a", "A"), ("b", "B"))
    assert batch_is_independent([g0, _group(0, 1, ("c", "C"), ("d", "D"))], cfg)
    assert not batch_is_independent([g0, _group(0, 1, ("c", "C"), ("d", "B"))], cfg)
    assert not batch_is_independent([g0, _group(0, 1, ("a", "A"))], cfg)
    assert not batch_is_independent([g0, _group(0, 1)], cfg)
    assert not batch_is_independent([g0], cfg)


def test_relaxation_shortfall():
    assert Relaxation("miners_per_group", 10, 7, 0, 1).shortfall == 3
    assert Relaxation("load_balance", 1, 4).shortfall == 3
