"""LocalFileChain under real concurrency: several OS processes write one chain file
while another keeps reading it. The file must never be seen half-written and no
write may be lost (the fcntl lock serialises read-modify-write; os.replace makes
each new version appear atomically)."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import time
from pathlib import Path

import pytest

from common.chain import LocalFileChain, NeuronInfo, create_chain_file, read_chain_file

pytestmark = pytest.mark.integration

WRITERS = 6
WRITES = 30  # per writer: alternately publish_endpoint and set_weights
PADDING_NEURONS = 300  # make the file big (tens of KB) so a torn read would show
JOIN_TIMEOUT_S = 60


def writer_hotkey(index: int) -> str:
    return f"writer-{index}"


def endpoint_for(index: int, step: int) -> str:
    return f"10.0.{index}.1:{10000 + step}"


def weights_for(index: int, step: int) -> dict[int, float]:
    # Two uids so normalisation is visible; the step is recoverable from the weights.
    return {index: float(step + 1), 1000 + index: 1.0}


def step_of_weights(entry: dict, index: int) -> int:
    return round(entry["weights"][str(index)] / entry["weights"][str(1000 + index)]) - 1


def step_of_endpoint(endpoint: str | None) -> int:
    return -1 if endpoint is None else int(endpoint.rsplit(":", 1)[1]) - 10000


def _writer(path: str, index: int, start, results) -> None:
    """Writes WRITES times; before each write, checks its own previous write survived."""
    problems: list[str] = []
    chain = LocalFileChain(Path(path), writer_hotkey(index))
    hotkey = writer_hotkey(index)
    start.wait(30)
    last_endpoint: str | None = None
    last_weights_step: int | None = None
    try:
        for step in range(WRITES):
            document = read_chain_file(Path(path))
            own = next(n for n in document["neurons"] if n["hotkey"] == hotkey)
            if own["endpoint"] != last_endpoint:
                problems.append(f"step {step}: endpoint {own['endpoint']} != {last_endpoint}")
            if last_weights_step is not None:
                entry = document["weights"].get(hotkey)
                if entry is None or step_of_weights(entry, index) != last_weights_step:
                    problems.append(f"step {step}: weights {entry} lost step {last_weights_step}")
            if step % 2 == 0:
                asyncio.run(chain.publish_endpoint(f"10.0.{index}.1", 10000 + step))
                last_endpoint = endpoint_for(index, step)
            else:
                asyncio.run(chain.set_weights(weights_for(index, step)))
                last_weights_step = step
    except Exception as exc:  # reported to the test, which fails on it
        problems.append(f"{type(exc).__name__}: {exc}")
    results.put(("writer", index, problems))


def _reader(path: str, start, stop, results) -> None:
    """Reads the raw file as fast as it can; every read must be a whole, valid document."""
    reads = 0
    problems: list[str] = []
    seen: dict[str, tuple[int, int]] = {}  # hotkey -> (endpoint step, weights step)
    start.wait(30)
    while True:
        finished = stop.is_set()
        try:
            raw = Path(path).read_bytes()
            document = json.loads(raw)
            assert document["version"] == 1, "version"
            assert len(document["neurons"]) == WRITERS + PADDING_NEURONS, "neuron count"
            reads += 1
            for n in document["neurons"][:WRITERS]:
                index = int(n["hotkey"].rsplit("-", 1)[1])
                entry = document["weights"].get(n["hotkey"])
                now = (
                    step_of_endpoint(n["endpoint"]),
                    -1 if entry is None else step_of_weights(entry, index),
                )
                before = seen.get(n["hotkey"], (-1, -1))
                if now[0] < before[0] or now[1] < before[1]:
                    problems.append(f"{n['hotkey']} went back from {before} to {now}")
                seen[n["hotkey"]] = now
        except Exception as exc:
            problems.append(f"read {reads}: {type(exc).__name__}: {exc}")
        if finished or len(problems) > 20:
            break
    results.put(("reader", reads, problems))


def test_many_processes_write_one_chain_file(tmp_path):
    path = tmp_path / "chain.json"
    neurons = [
        NeuronInfo(i, writer_hotkey(i), f"cold-{i}", 10.0, True, None) for i in range(WRITERS)
    ] + [
        NeuronInfo(WRITERS + j, f"padding-{j}", f"cold-p{j}", 1.0, False, None)
        for j in range(PADDING_NEURONS)
    ]
    create_chain_file(path, 1, neurons)
    assert path.stat().st_size > 30_000

    ctx = multiprocessing.get_context("spawn")
    start, stop, results = ctx.Event(), ctx.Event(), ctx.Queue()
    reader = ctx.Process(target=_reader, args=(str(path), start, stop, results))
    writers = [
        ctx.Process(target=_writer, args=(str(path), i, start, results)) for i in range(WRITERS)
    ]
    began = time.monotonic()
    for process in [reader, *writers]:
        process.start()
    try:
        start.set()
        outcomes = [results.get(timeout=JOIN_TIMEOUT_S) for _ in writers]
        stop.set()
        outcomes.append(results.get(timeout=JOIN_TIMEOUT_S))
        for process in [reader, *writers]:
            process.join(JOIN_TIMEOUT_S)
    finally:
        for process in [reader, *writers]:
            if process.is_alive():
                process.kill()
                process.join()
    elapsed = time.monotonic() - began

    for process in [reader, *writers]:
        assert process.exitcode == 0
    writer_problems = {index: p for kind, index, p in outcomes if kind == "writer"}
    assert sorted(writer_problems) == list(range(WRITERS))
    assert writer_problems == {i: [] for i in range(WRITERS)}
    ((_, reads, reader_problems),) = [o for o in outcomes if o[0] == "reader"]
    assert reader_problems == []
    assert reads > 0

    # The final file is valid JSON with every writer's last endpoint and weights.
    document = json.loads(path.read_text())
    assert document == read_chain_file(path)
    by_hotkey = {n["hotkey"]: n for n in document["neurons"]}
    assert len(document["neurons"]) == WRITERS + PADDING_NEURONS
    last_endpoint_step = max(s for s in range(WRITES) if s % 2 == 0)
    last_weights_step = max(s for s in range(WRITES) if s % 2 == 1)
    for i in range(WRITERS):
        hotkey = writer_hotkey(i)
        assert by_hotkey[hotkey]["endpoint"] == endpoint_for(i, last_endpoint_step)
        entry = document["weights"][hotkey]
        expected = weights_for(i, last_weights_step)
        total = sum(expected.values())
        assert entry["weights"] == pytest.approx({str(u): w / total for u, w in expected.items()})
    assert set(document["weights"]) == {writer_hotkey(i) for i in range(WRITERS)}
    # Padding neurons were never touched.
    assert all(by_hotkey[f"padding-{j}"]["endpoint"] is None for j in range(PADDING_NEURONS))
    # No temp files left behind by the atomic replaces.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chain.json", "chain.json.lock"]
    assert elapsed < 30, f"took {elapsed:.1f}s"


def _lock_holder(path: str, held, release) -> None:
    """Holds the chain file's lock (as a writer would) until told to release it."""
    import fcntl

    with open(path + ".lock", "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        held.set()
        release.wait(30)
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def test_writer_waits_for_another_process_holding_the_lock(tmp_path):
    """A write blocks while another process holds the lock, then applies on release."""
    path = tmp_path / "chain.json"
    create_chain_file(path, 1, [NeuronInfo(0, "hk", "ck", 1.0, True, None)])
    ctx = multiprocessing.get_context("spawn")
    held, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_lock_holder, args=(str(path), held, release))
    holder.start()
    try:
        assert held.wait(JOIN_TIMEOUT_S)

        async def publish_while_locked() -> float:
            task = asyncio.create_task(LocalFileChain(path, "hk").publish_endpoint("1.1.1.1", 1))
            await asyncio.sleep(0.5)
            assert not task.done(), "the write did not wait for the lock"
            assert read_chain_file(path)["neurons"][0]["endpoint"] is None
            released = time.monotonic()
            release.set()
            await asyncio.wait_for(task, JOIN_TIMEOUT_S)
            return time.monotonic() - released

        asyncio.run(publish_while_locked())
        assert read_chain_file(path)["neurons"][0]["endpoint"] == "1.1.1.1:1"
    finally:
        release.set()
        holder.join(JOIN_TIMEOUT_S)
        if holder.is_alive():
            holder.kill()
            holder.join()
    assert holder.exitcode == 0
