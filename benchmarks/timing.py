"""How ``benchmarks.wrappers`` times a wrapped call against its baseline, and its report rows.

Both variants run in the same process on the same inputs, interleaved (A B, then B A, …), best
of N each, so drift in the machine's load falls on both sides; read the ratio.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

# Calls faster than this are looped and averaged, so a short burst of other load on the
# machine is diluted and the clock resolves millisecond calls.
MIN_TIMED_S = 1.0


@dataclass(frozen=True)
class BenchRow:
    """One line of the report: best-of-N seconds of the wrapped path and of its baseline."""

    name: str
    size: str
    wrapped_s: float
    baseline_s: float
    notes: str = ""

    @property
    def ratio(self) -> float:
        return self.wrapped_s / self.baseline_s if self.baseline_s > 0 else math.inf

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": self.ratio}


def markdown_table(rows: list[BenchRow]) -> str:
    lines = [
        "| benchmark | size | wrapped s | baseline s | ratio | notes |",
        "|---|---|---:|---:|---:|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row.name} | {row.size} | {row.wrapped_s:.4g} | {row.baseline_s:.4g} | "
            f"{row.ratio:.2f} | {row.notes} |"
        )
    return "\n".join(lines)


def per_call(fn: Callable[[], Any]) -> float:
    """Seconds per call of ``fn``; a call under MIN_TIMED_S is looped and averaged."""
    start = time.perf_counter()
    fn()
    elapsed = time.perf_counter() - start
    if elapsed >= MIN_TIMED_S:
        return elapsed
    loops = min(2000, max(2, math.ceil(MIN_TIMED_S / max(elapsed, 1e-6))))
    start = time.perf_counter()
    for _ in range(loops):
        fn()
    return (time.perf_counter() - start) / loops


def interleaved(variants: dict[str, Callable[[], Any]], repeats: int) -> dict[str, float]:
    """Best-of-``repeats`` seconds per variant; the order flips every repetition."""
    names = list(variants)
    best = dict.fromkeys(names, math.inf)
    for rep in range(repeats):
        for name in names if rep % 2 == 0 else names[::-1]:
            best[name] = min(best[name], per_call(variants[name]))
    return best


@contextlib.contextmanager
def quiet_threads() -> Iterator[None]:
    """implicit warns when BLAS is threaded under its own pool; the CLI pins BLAS to 1 thread."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*OpenBLAS.*")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        yield
