"""The allocator settings that keep the validator's memory flat from cycle to cycle."""

from __future__ import annotations

import ctypes
from types import SimpleNamespace

import pytest

from common import memory

pytestmark = pytest.mark.unit

glibc = pytest.mark.skipif(memory._LIBC is None, reason="glibc only")


class MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",  # bytes in mmapped blocks
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _mmapped_bytes() -> int:
    libc = memory._LIBC
    libc.mallinfo2.restype = MallInfo2
    return libc.mallinfo2().hblkhd


@glibc
def test_a_pinned_threshold_keeps_serving_big_blocks_by_mmap_after_one_is_freed():
    assert memory.pin_mmap_threshold()
    size = 4 * memory.MMAP_THRESHOLD_BYTES
    first = bytearray(size)
    del first  # with glibc's dynamic threshold, this free would move big blocks to the heap
    before = _mmapped_bytes()
    second = bytearray(size)
    assert _mmapped_bytes() - before >= size  # mmapped: handed back to the OS on free
    del second


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
