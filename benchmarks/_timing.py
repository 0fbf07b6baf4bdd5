"""Shared timing for the benchmarks (run as ``python benchmarks/bench_*.py``)."""

from __future__ import annotations

import time
from collections.abc import Callable


def window(fn: Callable[[], object], seconds: float,
           clock: Callable[[], float] = time.perf_counter) -> float:
    """Calls per second of ``fn`` over one window of ``seconds`` on ``clock``."""
    n, t0 = 0, clock()
    deadline = t0 + seconds
    while True:
        fn()
        n += 1
        now = clock()
        if now >= deadline:
            return n / (now - t0)


def rate(fn: Callable[[], object], seconds: float) -> float:
    """Calls per second of ``fn``: the best of three timed windows, which filters out most of
    the noise from other load on a small shared machine."""
    return max(window(fn, seconds / 3) for _ in range(3))
