"""Issue 16, finding 4: the DRBG honours prediction resistance, survives fork, and health-
tests every reseed input."""

from __future__ import annotations

import os
import sys

import pytest

from veritee.crypto.random import (
    EntropyHealthError,
    HealthTestedSource,
    InsecureDeterministicSourceForTests,
    OsEntropySource,
    ctr_drbg,
    hmac_drbg,
)
from veritee.errors import PlatformError


class CountingSource:
    """The OS source, counting reads; ``dead`` makes every later read fail."""

    name = "counting"
    min_entropy_per_sample = 8.0

    def __init__(self) -> None:
        self.reads = 0
        self.dead = False
        self.stuck: bytes | None = None

    def read(self, n: int) -> bytes:
        if self.dead:
            raise PlatformError("entropy source gone")
        self.reads += 1
        if self.stuck is not None:
            return (self.stuck * n)[:n]
        return os.urandom(n)


def _in_child(fn: object) -> bytes:
    """Run ``fn()`` in a forked child; return the bytes it produced."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            os.close(r)
            os.write(w, fn())  # type: ignore[operator]
        finally:
            os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 4096):
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    return data


@pytest.mark.skipif(not hasattr(os, "fork") or sys.platform == "darwin", reason="needs fork")
@pytest.mark.parametrize("pr", [False, True])
def test_forked_drbg_outputs_differ(pr: bool) -> None:
    # The CLI's construction (prediction resistance on) and a plain one.
    drbg = ctr_drbg(HealthTestedSource(OsEntropySource()), prediction_resistance=pr)
    drbg.random_bytes(16)
    child = _in_child(lambda: drbg.random_bytes(32))
    assert len(child) == 32
    assert drbg.random_bytes(32) != child


@pytest.mark.skipif(not hasattr(os, "fork") or sys.platform == "darwin", reason="needs fork")
def test_forked_drbg_outputs_differ_even_from_a_deterministic_source() -> None:
    drbg = hmac_drbg(InsecureDeterministicSourceForTests(b"seed"))
    child = _in_child(lambda: drbg.random_bytes(32))
    assert drbg.random_bytes(32) != child


def test_prediction_resistance_honoured_by_random_bytes() -> None:
    src = CountingSource()
    drbg = ctr_drbg(src, prediction_resistance=True)
    before = src.reads
    drbg.random_bytes(16)
    drbg.random_bytes(16)
    assert src.reads == before + 2  # one reseed per request


def test_dead_source_after_seeding_is_noticed() -> None:
    src = CountingSource()
    drbg = ctr_drbg(src, prediction_resistance=True)
    src.dead = True
    with pytest.raises(PlatformError):
        drbg.random_bytes(16)


def test_stuck_reseed_input_halts_the_drbg() -> None:
    src = CountingSource()
    drbg = hmac_drbg(src)  # not wrapped in HealthTestedSource by the caller
    src.stuck = b"\x00"
    with pytest.raises(EntropyHealthError):
        drbg.reseed()
    with pytest.raises(EntropyHealthError):
        drbg.generate(16)


def test_repeated_reseed_input_halts_the_drbg() -> None:
    src = CountingSource()
    drbg = hmac_drbg(src)
    src.stuck = os.urandom(64)  # random-looking, but the same block every time
    drbg.reseed()
    with pytest.raises(EntropyHealthError):
        drbg.reseed()
