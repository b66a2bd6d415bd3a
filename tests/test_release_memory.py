"""The features step hands back heap that earlier steps of its process freed (steps of a run
share one process): without it, a range's raw step adds its high-water mark to the next step's."""

from __future__ import annotations

import numpy as np

from assets.common import release_freed_memory


def _rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096 / 2**20


def test_freed_heap_goes_back_to_the_os() -> None:
    # ~400 MiB of small arrays (below glibc's mmap threshold: they live on the heap), then one
    # kept at the end so the freed pages are in the middle of the heap, where free() keeps them.
    small = [np.ones(512) for _ in range(100_000)]
    keep = np.ones(512)
    before_free = _rss_mib()
    del small
    freed = _rss_mib()
    release_freed_memory()
    after = _rss_mib()
    assert before_free - freed < 100, "free() alone returned the heap: the test proves nothing"
    assert freed - after > 200, f"RSS {freed:.0f} → {after:.0f} MiB"
    assert keep.sum() == 512
