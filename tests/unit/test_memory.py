"""The allocator settings that keep the validator's memory flat from cycle to cycle."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from common import memory

pytestmark = pytest.mark.unit

glibc = pytest.mark.skipif(memory._LIBC is None, reason="glibc only")


# Run in a fresh interpreter, as the validator pins the threshold at start: in a
# long test process other tests' threads and allocations move glibc's counters
# between the two readings (the assertion failed once in a full run, never alone).
_PROBE = """
import ctypes
from common import memory

class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
        "fsmblks", "uordblks", "fordblks", "keepcost")]

memory._LIBC.mallinfo2.restype = MallInfo2
assert memory.pin_mmap_threshold()
size = 4 * memory.MMAP_THRESHOLD_BYTES
first = bytearray(size)
del first  # with glibc's dynamic threshold, this free would move big blocks to the heap
before = memory._LIBC.mallinfo2().hblkhd  # bytes in mmapped blocks
second = bytearray(size)
print(memory._LIBC.mallinfo2().hblkhd - before, size)
"""


@glibc
def test_a_pinned_threshold_keeps_serving_big_blocks_by_mmap_after_one_is_freed():
    out = subprocess.run(
        [sys.executable, "-c", _PROBE],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
        check=True,
    ).stdout.split()
    grown, size = int(out[0]), int(out[1])
    assert grown >= size  # mmapped: handed back to the OS on free


def test_release_memory_runs_a_collection_and_a_trim(monkeypatch):
    calls = []
    monkeypatch.setattr(memory.gc, "collect", lambda: calls.append("collect"))
    libc = SimpleNamespace(malloc_trim=lambda pad: calls.append(("trim", pad)))
    monkeypatch.setattr(memory, "_LIBC", libc)
    memory.release_memory()
    assert calls == ["collect", ("trim", 0)]


def test_without_glibc_both_are_no_ops(monkeypatch):
    monkeypatch.setattr(memory, "_LIBC", None)
    assert memory.pin_mmap_threshold() is False
    calls = []
    monkeypatch.setattr(memory.gc, "collect", lambda: calls.append("collect"))
    memory.release_memory()
    assert calls == ["collect"]
