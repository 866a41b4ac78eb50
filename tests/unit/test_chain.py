"""Unit tests for ``common.chain``: the local chain file, its readers and writers."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import asdict
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from common.chain import (
    CHAIN_FILE_VERSION,
    LOCAL_BLOCK_SECONDS,
    ChainUnavailable,
    LocalFileChain,
    MetagraphSnapshot,
    NeuronInfo,
    create_chain_file,
    open_chain,
    read_chain_file,
)

pytestmark = pytest.mark.unit

NETUID = 7

NEURONS = [
    NeuronInfo(0, "hk-validator", "ck-0", 1000.0, True, None),
    NeuronInfo(1, "hk-miner-1", "ck-1", 1.5, False, "127.0.0.1:8091"),
    NeuronInfo(2, "hk-miner-2", "ck-2", 0.0, False, None, active=False),
    NeuronInfo(3, "hk-validator-2", "ck-3", 50.0, True, "10.0.0.3:9000"),
]


def run(coro):
    return asyncio.run(coro)


@pytest.fixture
def chain_file(tmp_path: Path) -> Path:
    path = tmp_path / "chain" / "chain.json"
    create_chain_file(path, NETUID, NEURONS)
    return path


# --- the chain file --------------------------------------------------------------------


def test_create_chain_file_document(chain_file):
    before = time.time()
    document = read_chain_file(chain_file)
    assert document["version"] == CHAIN_FILE_VERSION
    assert document["netuid"] == NETUID
    assert document["block_seconds"] == LOCAL_BLOCK_SECONDS
    assert document["weights"] == {}
    assert document["neurons"] == [asdict(n) for n in NEURONS]
    assert before - 60 < document["genesis_time"] <= before
    # The sidecar lock file is next to it and no temp file is left behind.
    names = sorted(p.name for p in chain_file.parent.iterdir())
    assert names == ["chain.json", "chain.json.lock"]


def test_metagraph_round_trip(chain_file):
    graph = run(LocalFileChain(chain_file).metagraph())
    assert isinstance(graph, MetagraphSnapshot)
    assert graph.netuid == NETUID
    assert graph.neurons == tuple(NEURONS)
    assert graph.block == 0
    n = graph.neurons[2]
    assert (n.uid, n.hotkey, n.coldkey, n.stake, n.validator_permit, n.endpoint, n.active) == (
        2,
        "hk-miner-2",
        "ck-2",
        0.0,
        False,
        None,
        False,
    )


def test_by_hotkey_and_index(chain_file):
    graph = run(LocalFileChain(chain_file).metagraph())
    assert graph.by_hotkey("hk-miner-1") == NEURONS[1]
    assert graph.by_hotkey("nobody") is None
    index = graph.hotkey_index()
    assert set(index) == {n.hotkey for n in NEURONS}
    assert index["hk-validator-2"].uid == 3


def test_create_overwrites_existing_file(chain_file):
    run(LocalFileChain(chain_file, "hk-miner-1").publish_endpoint("1.2.3.4", 1))
    create_chain_file(chain_file, 9, NEURONS[:1])
    graph = run(LocalFileChain(chain_file).metagraph())
    assert graph.netuid == 9
    assert graph.neurons == (NEURONS[0],)


def test_current_block_grows_with_time(chain_file, monkeypatch):
    genesis = read_chain_file(chain_file)["genesis_time"]
    chain = LocalFileChain(chain_file)
    for seconds, block in [(0, 0), (11.9, 0), (12.0, 1), (12 * 100 + 5, 100), (86400, 7200)]:
        monkeypatch.setattr(time, "time", lambda s=seconds: genesis + s)
        assert run(chain.current_block()) == block
        assert run(chain.metagraph()).block == block


# --- publish_endpoint ------------------------------------------------------------------


def test_publish_endpoint_updates_only_that_hotkey(chain_file):
    run(LocalFileChain(chain_file, "hk-miner-2").publish_endpoint("192.168.1.5", 8095))
    graph = run(LocalFileChain(chain_file).metagraph())
    assert graph.by_hotkey("hk-miner-2").endpoint == "192.168.1.5:8095"
    # Everything else is unchanged.
    assert graph.by_hotkey("hk-miner-1") == NEURONS[1]
    assert graph.by_hotkey("hk-validator") == NEURONS[0]
    # Publishing again replaces the endpoint.
    run(LocalFileChain(chain_file, "hk-miner-2").publish_endpoint("127.0.0.1", 1))
    assert run(LocalFileChain(chain_file).metagraph()).by_hotkey("hk-miner-2").endpoint == (
        "127.0.0.1:1"
    )


def test_publish_endpoint_unregistered_hotkey(chain_file):
    before = chain_file.read_bytes()
    with pytest.raises(ChainUnavailable, match="not registered"):
        run(LocalFileChain(chain_file, "hk-stranger").publish_endpoint("127.0.0.1", 8091))
    assert chain_file.read_bytes() == before


def test_publish_endpoint_without_hotkey(chain_file):
    with pytest.raises(ChainUnavailable):
        run(LocalFileChain(chain_file).publish_endpoint("127.0.0.1", 8091))
    with pytest.raises(ChainUnavailable):
        run(LocalFileChain(chain_file, None).publish_endpoint("127.0.0.1", 8091))


def test_publish_endpoint_missing_file(tmp_path):
    with pytest.raises(ChainUnavailable):
        run(LocalFileChain(tmp_path / "none.json", "hk").publish_endpoint("127.0.0.1", 1))


# --- set_weights -----------------------------------------------------------------------


def test_set_weights_normalises_and_records(chain_file, monkeypatch):
    genesis = read_chain_file(chain_file)["genesis_time"]
    now = genesis + 12 * 42 + 3
    monkeypatch.setattr(time, "time", lambda: now)
    chain = LocalFileChain(chain_file, "hk-validator")
    run(chain.set_weights({1: 2.0, 2: 6.0, 3: 0.0, 0: -1.0}))
    ledger = run(chain.weights())
    assert set(ledger) == {"hk-validator"}
    entry = ledger["hk-validator"]
    assert entry["block"] == 42
    assert entry["set_at"] == now
    assert entry["weights"] == {"1": 0.25, "2": 0.75}
    assert ledger == read_chain_file(chain_file)["weights"]


def test_set_weights_replaces_previous_entry_and_keeps_others(chain_file):
    run(LocalFileChain(chain_file, "hk-validator").set_weights({1: 1.0}))
    run(LocalFileChain(chain_file, "hk-validator-2").set_weights({2: 1.0}))
    run(LocalFileChain(chain_file, "hk-validator").set_weights({2: 3.0, 1: 1.0}))
    ledger = run(LocalFileChain(chain_file).weights())
    assert ledger["hk-validator"]["weights"] == {"1": 0.25, "2": 0.75}
    assert ledger["hk-validator-2"]["weights"] == {"2": 1.0}
    # Neurons are untouched by weight setting.
    assert run(LocalFileChain(chain_file).metagraph()).neurons == tuple(NEURONS)


def test_set_weights_all_zero_records_empty(chain_file):
    run(LocalFileChain(chain_file, "hk-validator").set_weights({1: 0.0, 2: -3.0}))
    assert run(LocalFileChain(chain_file).weights())["hk-validator"]["weights"] == {}
    run(LocalFileChain(chain_file, "hk-validator").set_weights({}))
    assert run(LocalFileChain(chain_file).weights())["hk-validator"]["weights"] == {}


def test_set_weights_uid_keys_become_strings_of_ints(chain_file):
    run(LocalFileChain(chain_file, "hk-validator").set_weights({1: 1.0, 2: 1.0}))
    weights = run(LocalFileChain(chain_file).weights())["hk-validator"]["weights"]
    assert weights == {"1": 0.5, "2": 0.5}


def test_set_weights_refused_without_validator_permit(chain_file):
    before = chain_file.read_bytes()
    with pytest.raises(ChainUnavailable, match="validator permit"):
        run(LocalFileChain(chain_file, "hk-miner-1").set_weights({1: 1.0}))
    with pytest.raises(ChainUnavailable):
        run(LocalFileChain(chain_file, "hk-stranger").set_weights({1: 1.0}))
    assert chain_file.read_bytes() == before


def test_set_weights_without_hotkey(chain_file):
    with pytest.raises(ChainUnavailable):
        run(LocalFileChain(chain_file).set_weights({1: 1.0}))


@given(
    st.dictionaries(
        st.integers(min_value=0, max_value=255),
        st.floats(min_value=0, max_value=1e6, allow_nan=False),
        max_size=30,
    )
)
@hsettings(max_examples=40, deadline=None)
def test_set_weights_normalised_sum_is_one(tmp_path_factory, weights):
    path = tmp_path_factory.mktemp("w") / "chain.json"
    create_chain_file(path, 1, NEURONS)
    run(LocalFileChain(path, "hk-validator").set_weights(weights))
    recorded = read_chain_file(path)["weights"]["hk-validator"]["weights"]
    positive = {str(u): w for u, w in weights.items() if w > 0}
    assert set(recorded) == set(positive)
    if positive:
        assert sum(recorded.values()) == pytest.approx(1.0)
        total = sum(positive.values())
        for uid, w in positive.items():
            assert recorded[uid] == pytest.approx(w / total)


def test_concurrent_writers_in_one_process_lose_nothing(tmp_path):
    """Threads (asyncio.to_thread) of one process also serialise on the lock file."""
    neurons = [NeuronInfo(i, f"hk{i}", f"ck{i}", 1.0, True, None) for i in range(16)]
    path = tmp_path / "chain.json"
    create_chain_file(path, 1, neurons)

    async def everyone():
        jobs = []
        for i in range(16):
            chain = LocalFileChain(path, f"hk{i}")
            jobs.append(chain.publish_endpoint("127.0.0.1", 9000 + i))
            jobs.append(chain.set_weights({i: 1.0}))
        await asyncio.gather(*jobs)

    run(everyone())
    document = read_chain_file(path)
    assert {n["hotkey"]: n["endpoint"] for n in document["neurons"]} == {
        f"hk{i}": f"127.0.0.1:{9000 + i}" for i in range(16)
    }
    assert {hk: e["weights"] for hk, e in document["weights"].items()} == {
        f"hk{i}": {str(i): 1.0} for i in range(16)
    }


# --- read_chain_file -------------------------------------------------------------------


def test_read_missing_file(tmp_path):
    with pytest.raises(ChainUnavailable, match="cannot read"):
        read_chain_file(tmp_path / "absent.json")


@pytest.mark.parametrize(
    "content",
    [b"", b"{", b'{"version": 1, "netuid"', b"not json at all", b"\xff\xfe\x00garbage"],
)
def test_read_corrupt_file(tmp_path, content):
    path = tmp_path / "chain.json"
    path.write_bytes(content)
    with pytest.raises(ChainUnavailable):
        read_chain_file(path)
    with pytest.raises(ChainUnavailable):
        run(LocalFileChain(path).metagraph())
    with pytest.raises(ChainUnavailable):
        run(LocalFileChain(path, "hk").publish_endpoint("127.0.0.1", 1))


@pytest.mark.parametrize("version", [None, 0, 2, "1"])
def test_read_wrong_version(chain_file, version):
    document = read_chain_file(chain_file)
    if version is None:
        del document["version"]
    else:
        document["version"] = version
    chain_file.write_text(json.dumps(document))
    with pytest.raises(ChainUnavailable, match="version"):
        read_chain_file(chain_file)
    with pytest.raises(ChainUnavailable):
        run(LocalFileChain(chain_file).current_block())


def test_read_directory_is_unavailable(tmp_path):
    with pytest.raises(ChainUnavailable):
        read_chain_file(tmp_path)


@pytest.mark.parametrize("content", ["[]", "null", "42", '"chain"'])
def test_read_non_object_json_is_unavailable(tmp_path, content):
    path = tmp_path / "chain.json"
    path.write_text(content)
    with pytest.raises(ChainUnavailable):
        read_chain_file(path)


@pytest.mark.parametrize(
    "document",
    [
        {"version": 1, "netuid": 1, "genesis_time": 0.0, "block_seconds": 12.0, "weights": {}},
        {
            "version": 1,
            "netuid": 1,
            "genesis_time": 0.0,
            "block_seconds": 12.0,
            "weights": {},
            "neurons": [{"uid": 0, "hotkey": "hk"}],
        },
    ],
    ids=["no-neurons", "short-neuron-row"],
)
def test_metagraph_of_malformed_document_is_unavailable(tmp_path, document):
    path = tmp_path / "chain.json"
    path.write_text(json.dumps(document))
    with pytest.raises(ChainUnavailable):
        run(LocalFileChain(path).metagraph())


# --- open_chain ------------------------------------------------------------------------


def test_open_chain_localfile(chain_file):
    chain = open_chain("localfile", NETUID, chain_file, None, "hk-validator")
    assert isinstance(chain, LocalFileChain)
    assert chain.path == chain_file
    assert chain.hotkey == "hk-validator"
    assert run(chain.metagraph()).netuid == NETUID


def test_open_chain_localfile_needs_a_file():
    with pytest.raises(ChainUnavailable):
        open_chain("localfile", NETUID, None, None, "hk")
