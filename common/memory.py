"""Keeping a long-running process's resident memory flat (glibc's allocator, Linux).

Two habits of glibc malloc make a process that builds and drops tens of MB
per cycle look like it leaks:

- Freed heap stays mapped until ``malloc_trim``: ``release_memory`` collects
  garbage and trims after each unit of work.
- The mmap threshold is dynamic: a large block (a numpy array of a cycle) is
  first served by ``mmap`` and returned to the OS on free, but that free
  raises the threshold, so later cycles' arrays land in the heap and can
  fragment it. ``pin_mmap_threshold`` fixes the threshold, which turns that off
  (``tests/unit/test_memory.py`` shows the difference).

Both are no-ops where glibc is absent (macOS, musl).
"""

from __future__ import annotations

import ctypes
import gc
import logging
import sys

logger = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # mallopt parameter (malloc.h)
MMAP_THRESHOLD_BYTES = 256 * 1024  # blocks from here on are mmapped and given back on free


def _load_libc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim  # noqa: B018 - glibc only (musl has none)
        libc.mallopt  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _load_libc()


def pin_mmap_threshold(threshold: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Serve every block of ``threshold`` bytes or more by mmap, for good. True when set."""
    if _LIBC is None:
        return False
    done = bool(_LIBC.mallopt(M_MMAP_THRESHOLD, ctypes.c_int(threshold)))
    if not done:
        logger.warning("mallopt(M_MMAP_THRESHOLD, %d) refused", threshold)
    return done


def release_memory() -> None:
    """Collect garbage and hand freed heap back to the OS (glibc keeps it otherwise)."""
    gc.collect()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)
