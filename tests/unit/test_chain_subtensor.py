"""Unit tests for ``common.chain``: the bittensor 11 adapter against an in-memory substrate."""

from __future__ import annotations

import asyncio
from typing import ClassVar

import pytest

from common.chain import (
    ChainUnavailable,
    MetagraphSnapshot,
    SubtensorChain,
    open_chain,
    snapshot_from_metagraph,
)

pytestmark = pytest.mark.unit

NETUID = 7


def run(coro):
    return asyncio.run(coro)


# --- SubtensorChain against an in-memory substrate -------------------------------------


N = 5


def _ip(a: int, b: int, c: int, d: int) -> int:
    return int.from_bytes(bytes([a, b, c, d]), "big")


@pytest.fixture(scope="module")
def keys():
    from bittensor.sp_core import Keypair

    hot = [Keypair.create_from_uri(f"//hot{i}") for i in range(N)]
    cold = [Keypair.create_from_uri(f"//cold{i}") for i in range(N)]
    return hot, cold


def metagraph_record(hot, cold) -> dict:
    return {
        "block": 4321,
        "tempo": 360,
        "last_step": 4000,
        "blocks_since_last_step": 321,
        "owner_hotkey": hot[0].ss58_address,
        "owner_coldkey": cold[0].ss58_address,
        "network_registered_at": 1,
        "num_uids": N,
        "max_uids": 256,
        "name": "zip",
        "symbol": "Z",
        "hotkeys": [k.ss58_address for k in hot],
        "coldkeys": [k.ss58_address for k in cold],
        "active": [i != 4 for i in range(N)],
        "validator_permit": [i in (0, 2) for i in range(N)],
        "alpha_stake": [10**9] * N,
        "total_stake": [1000 * 10**9, 1_500_000_000, 250 * 10**9, 0, 123_456_789],
        "tao_stake": [0] * N,
        "axons": [
            {"ip": _ip(127, 0, 0, 1), "port": 8090, "ip_type": 4},
            {"ip": _ip(10, 1, 2, 3), "port": 8091, "ip_type": 4},
            {"ip": 0, "port": 0, "ip_type": 4},  # not serving
            {"ip": _ip(192, 168, 0, 9), "port": 65535, "ip_type": 4},
            {"ip": 0, "port": 8094, "ip_type": 4},
        ],
    }


class FakeSubstrate:
    """The read/compose surface bittensor 11's Client touches, in memory."""

    token_symbols: ClassVar[dict] = {}

    def __init__(self, graph: dict | None, *, block: int = 1000, fail: Exception | None = None):
        self.graph = graph
        self.block = block
        self.fail = fail
        self.calls: list[tuple] = []
        self.composed: list = []
        self.closed = False

    def balance(self, rao, netuid=0):
        import bittensor as bt

        return bt.Balance.from_rao(rao, netuid) if netuid else bt.Balance.from_rao(rao)

    async def connect(self):
        self.calls.append(("connect",))

    async def close(self):
        self.closed = True

    async def block_number(self):
        if self.fail is not None:
            raise self.fail
        return self.block

    async def block_hash(self, block=None):
        return "0x" + "00" * 32

    async def block_time(self):
        return 12.0

    async def runtime_call(self, api, method, params, block_hash=None):
        self.calls.append((api, method, params))
        if self.fail is not None:
            raise self.fail
        if (api, method) == ("SubnetInfoRuntimeApi", "get_metagraph"):
            return None if self.graph is None else dict(self.graph)
        raise NotImplementedError((api, method))

    async def query_map(self, module, fn, params=None, block_hash=None):
        self.calls.append((module, fn, params))
        return []

    async def query(self, module, fn, params=None, block_hash=None):
        self.calls.append((module, fn, params))
        return {
            "Uids": 0,
            "CommitRevealWeightsEnabled": False,
            "WeightsSetRateLimit": 100,
            "LastUpdate": [0] * N,
            "MinAllowedWeights": 1,
            "MaxWeightsLimit": 65535,
            "SubnetEpochConsensus": "Yuma",
        }.get(fn)

    async def compose(self, call):
        self.composed.append(call)
        return call


@pytest.fixture(autouse=True)
def _token_symbols_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BTCLI_TOKEN_SYMBOLS_CACHE", str(tmp_path / "token_symbols.json"))


def test_subtensor_metagraph(keys):
    hot, cold = keys
    fake = FakeSubstrate(metagraph_record(hot, cold))
    chain = SubtensorChain("local", NETUID, substrate=fake)

    async def go():
        try:
            return await chain.metagraph()
        finally:
            await chain.close()

    graph = run(go())
    assert isinstance(graph, MetagraphSnapshot)
    assert graph.netuid == NETUID
    assert graph.block == 4321
    assert [n.uid for n in graph.neurons] == list(range(N))
    assert [n.hotkey for n in graph.neurons] == [k.ss58_address for k in hot]
    assert [n.coldkey for n in graph.neurons] == [k.ss58_address for k in cold]
    assert [n.validator_permit for n in graph.neurons] == [True, False, True, False, False]
    assert [n.active for n in graph.neurons] == [True, True, True, True, False]
    assert [n.endpoint for n in graph.neurons] == [
        "127.0.0.1:8090",
        "10.1.2.3:8091",
        None,
        "192.168.0.9:65535",
        None,
    ]
    stakes = [n.stake for n in graph.neurons]
    assert all(type(s) is float for s in stakes)
    assert stakes == pytest.approx([1000.0, 1.5, 250.0, 0.0, 0.123456789])
    assert graph.by_hotkey(hot[2].ss58_address).uid == 2
    assert ("SubnetInfoRuntimeApi", "get_metagraph", [NETUID]) in fake.calls
    assert fake.closed


def test_subtensor_metagraph_failure_is_chain_unavailable(keys):
    fake = FakeSubstrate(metagraph_record(*keys), fail=ConnectionError("socket closed"))
    chain = SubtensorChain("local", NETUID, substrate=fake)
    with pytest.raises(ChainUnavailable, match="socket closed") as info:
        run(chain.metagraph())
    assert not isinstance(info.value, ConnectionError)
    assert isinstance(info.value.__cause__, ConnectionError)


def test_subtensor_missing_subnet_is_chain_unavailable():
    chain = SubtensorChain("local", 99, substrate=FakeSubstrate(None))
    with pytest.raises(ChainUnavailable):
        run(chain.metagraph())


def test_subtensor_connect_failure_is_chain_unavailable():
    class Unreachable(FakeSubstrate):
        async def connect(self):
            raise OSError("connection refused")

    chain = SubtensorChain("local", NETUID, substrate=Unreachable(None))
    with pytest.raises(ChainUnavailable, match="cannot connect"):
        run(chain.metagraph())
    with pytest.raises(ChainUnavailable):
        run(chain.current_block())


def test_subtensor_current_block():
    chain = SubtensorChain("local", NETUID, substrate=FakeSubstrate(None, block=98765))
    block = run(chain.current_block())
    assert block == 98765
    assert type(block) is int


def test_subtensor_current_block_failure():
    chain = SubtensorChain(
        "local", NETUID, substrate=FakeSubstrate(None, fail=TimeoutError("slow"))
    )
    with pytest.raises(ChainUnavailable, match="current block"):
        run(chain.current_block())


def test_subtensor_close_without_connect_is_a_no_op():
    run(SubtensorChain("local", NETUID).close())


def test_set_weights_intent_builds_offline(keys):
    hot, cold = keys
    fake = FakeSubstrate(metagraph_record(hot, cold))
    chain = SubtensorChain("local", NETUID, substrate=fake)
    intent = chain.set_weights_intent({1: 0.5, 2: 0.5})
    call = run(intent.build(fake, hot[0]))
    assert call is not None
    assert len(fake.composed) == 1
    composed = fake.composed[0]
    assert composed is call
    assert "weights" in composed.function
    assert composed.module == "SubtensorModule"
    assert composed.params["netuid"] == NETUID
    assert composed.params["dests"] == [1, 2]
    assert composed.params["weights"][0] == composed.params["weights"][1] > 0


def test_set_weights_intent_converts_keys_and_values():
    intent = SubtensorChain("local", 3).set_weights_intent({"4": 1, 5.0: "0.25"})
    assert intent.netuid == 3
    assert dict(zip(intent.uids, intent.weights, strict=True)) == {4: 1.0, 5: 0.25}
    assert all(type(u) is int for u in intent.uids)
    assert all(type(w) is float for w in intent.weights)


def test_set_weights_failure_is_chain_unavailable(keys):
    """Submitting through the fake fails (it cannot sign/submit): ChainUnavailable, not raw."""
    hot, cold = keys
    chain = SubtensorChain(
        "local", NETUID, wallet=hot[0], substrate=FakeSubstrate(metagraph_record(hot, cold))
    )
    with pytest.raises(ChainUnavailable, match="set_weights"):
        run(chain.set_weights({1: 1.0}))


def test_publish_endpoint_failure_is_chain_unavailable(keys):
    hot, cold = keys
    chain = SubtensorChain(
        "local", NETUID, wallet=hot[1], substrate=FakeSubstrate(metagraph_record(hot, cold))
    )
    with pytest.raises(ChainUnavailable, match="serve_axon"):
        run(chain.publish_endpoint("127.0.0.1", 8091))


def test_snapshot_from_metagraph_directly(keys):
    from bittensor.metagraph import _build

    hot, cold = keys
    graph = _build(NETUID, metagraph_record(hot, cold), {})
    snapshot = snapshot_from_metagraph(graph)
    assert snapshot.netuid == NETUID
    assert snapshot.block == 4321
    assert snapshot.neurons[0].stake == 1000.0
    assert snapshot.neurons[1].endpoint == "10.1.2.3:8091"


# --- open_chain for a subtensor network -------------------------------------------


@pytest.mark.parametrize("network", ["local", "test", "finney", "ws://127.0.0.1:1"])
def test_open_chain_subtensor_does_not_connect(network):
    wallet = object()
    chain = open_chain(network, 12, None, wallet, "hk")
    assert isinstance(chain, SubtensorChain)
    assert chain.network == network
    assert chain.netuid == 12
    assert chain.wallet is wallet
    assert chain._client is None  # cold: nothing opened yet
    run(chain.close())
