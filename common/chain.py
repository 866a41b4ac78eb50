"""Chain access behind one interface: the bittensor 11 chain, or the local subnet's file.

    chain = open_chain(settings, signer_wallet)      # LocalFileChain or SubtensorChain
    graph = await chain.metagraph()                  # MetagraphSnapshot
    await chain.set_weights({uid: weight, ...})      # raises ChainUnavailable on failure
    await chain.publish_endpoint("127.0.0.1", 8091)

``LocalFileChain`` is the local subnet's registry and weights ledger: a JSON
file (``chain.json``) that several processes read and write. Writers take an
exclusive ``fcntl`` lock on a sidecar lock file and replace the file
atomically, so a reader never sees half a file and no write is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

logger = logging.getLogger(__name__)

CHAIN_FILE_VERSION = 1
LOCAL_BLOCK_SECONDS = 12.0  # the real chain's block time, so epoch arithmetic matches


class ChainUnavailable(RuntimeError):
    """The chain could not be read or written; the caller retries later."""


@dataclass(frozen=True, slots=True)
class NeuronInfo:
    uid: int
    hotkey: str
    coldkey: str
    stake: float  # in the subnet's stake unit (TAO or alpha)
    validator_permit: bool
    endpoint: str | None  # "ip:port", or None when not serving
    active: bool = True


@dataclass(frozen=True)
class MetagraphSnapshot:
    netuid: int
    block: int
    neurons: tuple[NeuronInfo, ...]

    def by_hotkey(self, hotkey: str) -> NeuronInfo | None:
        return self._index.get(hotkey)

    def hotkey_index(self) -> dict[str, NeuronInfo]:
        return dict(self._index)

    @cached_property
    def _index(self) -> dict[str, NeuronInfo]:
        return {n.hotkey: n for n in self.neurons}


class Chain(Protocol):
    async def metagraph(self) -> MetagraphSnapshot: ...

    async def current_block(self) -> int: ...

    async def set_weights(self, weights: Mapping[int, float]) -> None: ...

    async def publish_endpoint(self, ip: str, port: int) -> None: ...

    async def close(self) -> None: ...


# --- the local subnet's chain file -------------------------------------------------


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    lock_path = path.with_name(path.name + ".lock")
    with open(lock_path, "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _write_atomic(path: Path, document: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(document, indent=1, sort_keys=True))
    os.replace(tmp, path)


def create_chain_file(path: Path, netuid: int, neurons: list[NeuronInfo]) -> None:
    """Write a fresh local chain file (used by the local subnet's launcher)."""
    document = {
        "version": CHAIN_FILE_VERSION,
        "netuid": netuid,
        "genesis_time": time.time(),
        "block_seconds": LOCAL_BLOCK_SECONDS,
        "neurons": [asdict(n) for n in neurons],
        "weights": {},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path):
        _write_atomic(path, document)


def read_chain_file(path: Path) -> dict:
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ChainUnavailable(f"cannot read chain file {path}: {exc}") from exc
    if not isinstance(document, dict) or document.get("version") != CHAIN_FILE_VERSION:
        version = document.get("version") if isinstance(document, dict) else None
        raise ChainUnavailable(
            f"chain file {path} is not a version-{CHAIN_FILE_VERSION} chain file "
            f"(version {version!r})"
        )
    return document


class LocalFileChain:
    """A chain backed by a JSON file, for the local subnet and tests."""

    def __init__(self, path: Path, hotkey: str | None = None) -> None:
        self.path = Path(path)
        self.hotkey = hotkey

    async def metagraph(self) -> MetagraphSnapshot:
        document = await asyncio.to_thread(read_chain_file, self.path)
        try:
            neurons = tuple(NeuronInfo(**n) for n in document["neurons"])
            return MetagraphSnapshot(int(document["netuid"]), self._block(document), neurons)
        except (KeyError, TypeError, ValueError) as exc:
            raise ChainUnavailable(f"chain file {self.path} is malformed: {exc!r}") from exc

    async def current_block(self) -> int:
        return self._block(await asyncio.to_thread(read_chain_file, self.path))

    @staticmethod
    def _block(document: dict) -> int:
        return int((time.time() - document["genesis_time"]) / document["block_seconds"])

    def _update(self, change) -> None:
        with _locked(self.path):
            document = read_chain_file(self.path)
            change(document)
            _write_atomic(self.path, document)

    async def set_weights(self, weights: Mapping[int, float]) -> None:
        if self.hotkey is None:
            raise ChainUnavailable("no hotkey to set weights with")
        total = sum(w for w in weights.values() if w > 0)
        normalised = {str(int(u)): w / total for u, w in weights.items() if w > 0} if total else {}

        def change(document: dict) -> None:
            neuron = next((n for n in document["neurons"] if n["hotkey"] == self.hotkey), None)
            if neuron is None or not neuron["validator_permit"]:
                raise ChainUnavailable(f"{self.hotkey} has no validator permit on the local chain")
            document["weights"][self.hotkey] = {
                "block": self._block(document),
                "set_at": time.time(),
                "weights": normalised,
            }

        await asyncio.to_thread(self._update, change)

    async def publish_endpoint(self, ip: str, port: int) -> None:
        if self.hotkey is None:
            raise ChainUnavailable("no hotkey to publish an endpoint for")

        def change(document: dict) -> None:
            for neuron in document["neurons"]:
                if neuron["hotkey"] == self.hotkey:
                    neuron["endpoint"] = f"{ip}:{port}"
                    return
            raise ChainUnavailable(f"{self.hotkey} is not registered on the local chain")

        await asyncio.to_thread(self._update, change)

    async def weights(self) -> dict[str, dict]:
        """The weights ledger: validator hotkey -> {block, set_at, weights{uid: w}}."""
        return (await asyncio.to_thread(read_chain_file, self.path))["weights"]

    async def close(self) -> None:
        return None


# --- bittensor 11 -----------------------------------------------------------------


class SubtensorChain:
    """The real chain through bittensor 11's async client.

    ``substrate`` is passed through to ``bt.Subtensor`` so tests inject the
    SDK's offline fake. ``wallet`` signs weights and endpoint publication.
    """

    def __init__(
        self, network: str, netuid: int, wallet: Any = None, substrate: Any = None
    ) -> None:
        self.network = network
        self.netuid = netuid
        self.wallet = wallet
        self._substrate = substrate
        self._client: Any = None

    async def _connect(self) -> Any:
        if self._client is None:
            import bittensor as bt

            kwargs = {"substrate": self._substrate} if self._substrate is not None else {}
            try:
                self._client = await bt.Subtensor(self.network, **kwargs)
            except Exception as exc:  # the SDK raises many kinds; all mean "not now"
                raise ChainUnavailable(f"cannot connect to {self.network}: {exc}") from exc
        return self._client

    async def metagraph(self) -> MetagraphSnapshot:
        client = await self._connect()
        try:
            graph = await client.subnets.metagraph(self.netuid, commitments=False)
        except Exception as exc:
            raise ChainUnavailable(f"metagraph of netuid {self.netuid}: {exc}") from exc
        if graph is None:
            raise ChainUnavailable(f"netuid {self.netuid} does not exist on {self.network}")
        return snapshot_from_metagraph(graph)

    async def current_block(self) -> int:
        client = await self._connect()
        try:
            return int(await client.block())
        except Exception as exc:
            raise ChainUnavailable(f"current block: {exc}") from exc

    def set_weights_intent(self, weights: Mapping[int, float]) -> Any:
        import bittensor as bt

        return bt.SetWeights(
            netuid=self.netuid, weights={int(u): float(w) for u, w in weights.items()}
        )

    async def set_weights(self, weights: Mapping[int, float]) -> None:
        client = await self._connect()
        try:
            result = await client.execute(self.set_weights_intent(weights), self.wallet)
            result.raise_for_failure()
        except Exception as exc:
            raise ChainUnavailable(f"set_weights on netuid {self.netuid}: {exc}") from exc

    async def publish_endpoint(self, ip: str, port: int) -> None:
        import bittensor as bt

        client = await self._connect()
        try:
            result = await client.execute(bt.ServeAxon(self.netuid, ip, port), self.wallet)
            result.raise_for_failure()
        except Exception as exc:
            raise ChainUnavailable(f"serve_axon {ip}:{port}: {exc}") from exc

    async def close(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.close()
            self._client = None


def snapshot_from_metagraph(graph: Any) -> MetagraphSnapshot:
    """Our snapshot from a ``bt.Metagraph`` (stakes converted to TAO floats)."""
    neurons = []
    for n in graph.neurons:
        stake = n.total_stake
        # Stake in the subnet's own units (alpha on dynamic subnets): the
        # minimum-stake rules compare amounts within one subnet, so units agree.
        stake_tao = float(stake.amount) if hasattr(stake, "amount") else float(stake)
        neurons.append(
            NeuronInfo(
                uid=int(n.uid),
                hotkey=str(n.hotkey),
                coldkey=str(n.coldkey),
                stake=stake_tao,
                validator_permit=bool(n.validator_permit),
                endpoint=n.axon if n.axon and not str(n.axon).startswith("0.0.0.0") else None,
                active=bool(getattr(n, "active", True)),
            )
        )
    return MetagraphSnapshot(int(graph.netuid), int(graph.block), tuple(neurons))


def open_chain(
    network: str, netuid: int, chain_file: Path | None, wallet: Any, hotkey: str | None
) -> Chain:
    """The chain named by the settings: ``localfile`` or any bittensor network."""
    if network == "localfile":
        if chain_file is None:
            raise ChainUnavailable("the localfile network needs a chain file")
        return LocalFileChain(chain_file, hotkey)
    return SubtensorChain(network, netuid, wallet)
