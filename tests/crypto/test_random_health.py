"""SP 800-90B section 4.3/4.4 health tests: cutoffs, a stuck and a biased source, a healthy run."""

from __future__ import annotations

import itertools
import math
import os
from fractions import Fraction

import pytest

from veritee.crypto.random import (
    STARTUP_SAMPLES,
    EntropyHealthError,
    HealthTestedSource,
    InsecureDeterministicSourceForTests,
    OsEntropySource,
    apt_cutoff,
    rct_cutoff,
)
from veritee.errors import PlatformError


class ListSource:
    """A test source replaying a fixed sample sequence, with a chosen min-entropy claim."""

    def __init__(self, samples: bytes, h: float) -> None:
        self._data = samples
        self._pos = 0
        self.min_entropy_per_sample = h
        self.name = "list"

    def read(self, n: int) -> bytes:
        out = self._data[self._pos : self._pos + n]
        self._pos += n
        assert len(out) == n, "test source exhausted"
        return out


class StuckSource(ListSource):
    """Always the same byte."""

    def __init__(self, value: int, h: float) -> None:
        super().__init__(b"", h)
        self._value = value

    def read(self, n: int) -> bytes:
        return bytes([self._value]) * n


def biased_samples(count: int) -> bytes:
    """0x00 in every other position, a varying non-zero byte in between.

    P(0x00) = 1/2, far above 2^-H for any claim H > 1, but no value ever repeats back to back,
    so the Repetition Count Test cannot fire: only the Adaptive Proportion Test can.
    """
    fill = itertools.cycle(range(1, 256))
    return bytes(b for _ in range(count // 2) for b in (0, next(fill)))


# ---------------------------------------------------------------------------- cutoffs


@pytest.mark.parametrize(
    ("h", "rct", "apt"),
    [
        # H: RCT 1 + ceil(20/H) (4.4.1); APT 1 + CRITBINOM(512, 2^-H, 1 - 2^-20) (4.4.2).
        (0.5, 41, 410),
        (1, 21, 311),
        (2, 11, 177),
        (4, 6, 62),
        (6, 5, 25),
        (8, 4, 13),
    ],
)
def test_cutoffs_for_alpha_2_to_minus_20(h: float, rct: int, apt: int) -> None:
    assert rct_cutoff(h) == rct
    assert apt_cutoff(h) == apt


@pytest.mark.parametrize("h", [0.5, 1, 2, 3, 4, 5, 6, 7, 8])
def test_apt_cutoff_is_the_smallest_with_binomial_tail_at_most_alpha(h: float) -> None:
    # Independent brute-force check of the definition: P(X >= C) <= 2^-20 < P(X >= C-1),
    # X ~ Binomial(512, 2^-H), in exact rational arithmetic.
    p, w, alpha = Fraction(2.0**-h), 512, Fraction(1, 2**20)

    def tail(c: int) -> Fraction:
        return sum(
            (math.comb(w, k) * p**k * (1 - p) ** (w - k) for k in range(c, w + 1)), Fraction(0)
        )

    c = apt_cutoff(h)
    assert tail(c) <= alpha < tail(c - 1)


def test_rct_cutoff_bounds_the_false_positive_rate() -> None:
    for h in (0.5, 1, 2, 4, 8):
        c = rct_cutoff(h)
        assert 2.0 ** (-h * (c - 1)) <= 2.0**-20 < 2.0 ** (-h * (c - 2))


@pytest.mark.parametrize("h", [0, -1, 8.5])
def test_impossible_entropy_claims_are_rejected(h: float) -> None:
    with pytest.raises(ValueError, match="min-entropy"):
        rct_cutoff(h)


# ---------------------------------------------------------------------------- failures


@pytest.mark.parametrize("h", [1, 2, 4, 8])
def test_stuck_source_is_caught_by_rct_at_the_cutoff(h: float) -> None:
    source = HealthTestedSource(StuckSource(0xA5, h))
    with pytest.raises(EntropyHealthError) as info:
        source.read(16)
    err = info.value
    assert err.test == "RCT"
    assert err.phase == "startup"  # caught before any output was used (4.3)
    assert err.cutoff == rct_cutoff(h)
    assert err.sample_index == rct_cutoff(h)  # the C-th identical sample fires the test
    assert err.value == 0xA5
    assert isinstance(err, PlatformError)


@pytest.mark.parametrize("h", [2, 4, 8])
def test_biased_source_is_caught_by_apt_at_the_cutoff(h: float) -> None:
    c = apt_cutoff(h)
    source = HealthTestedSource(ListSource(biased_samples(4096), h))
    with pytest.raises(EntropyHealthError) as info:
        source.read(16)
    err = info.value
    assert err.test == "APT"
    assert err.cutoff == c
    assert err.value == 0
    # The window opens on a 0x00 (B = 1) and every other sample is 0x00, so B reaches C at
    # sample 2C - 1: exactly when the C-th occurrence arrives, not one sample later.
    assert err.sample_index == 2 * c - 1
    assert err.sample_index < 512  # inside the first window


def test_stuck_source_is_caught_after_startup_too() -> None:
    # Healthy for the start-up samples, then stuck: the continuous RCT fires at the cutoff.
    healthy = InsecureDeterministicSourceForTests(b"seed").read(STARTUP_SAMPLES + 100)
    h = 4.0
    # Make sure the healthy prefix itself passes (no accidental run of 6 or APT hit).
    source = HealthTestedSource(ListSource(healthy + bytes([7]) * 100, h))
    assert source.read(100) == healthy[STARTUP_SAMPLES:]
    with pytest.raises(EntropyHealthError) as info:
        source.read(50)
    err = info.value
    assert (err.test, err.phase) == ("RCT", "continuous")
    assert healthy[-1] != 7  # so the run of 7s starts at the first stuck sample
    assert err.sample_index == STARTUP_SAMPLES + 100 + rct_cutoff(h)


def test_failed_source_stays_failed_until_reset() -> None:
    inner = ListSource(bytes([1]) * 64 + os.urandom(8192), 8)
    source = HealthTestedSource(inner)
    with pytest.raises(EntropyHealthError):
        source.read(1)
    assert source.failed
    for _ in range(3):  # no silent recovery, however often it is asked
        with pytest.raises(EntropyHealthError):
            source.read(1)
    source.reset()
    assert not source.failed
    assert len(source.read(32)) == 32  # start-up re-ran on fresh samples and passed
    assert source.samples_tested == STARTUP_SAMPLES + 32


def test_startup_needs_at_least_1024_samples() -> None:
    with pytest.raises(ValueError, match="1024"):
        HealthTestedSource(OsEntropySource(), startup_samples=512)


def test_healthy_os_source_passes_a_long_run() -> None:
    # 2^20 samples from getrandom(2). A claim of H = 6 (below the true 8 bits per byte) keeps
    # the run's own false-positive probability ~2^20 * 2^-32 (RCT) + negligible (APT).
    source = HealthTestedSource(OsEntropySource(min_entropy_per_sample=6.0))
    total = 0
    for _ in range(64):
        total += len(source.read(16384))
    assert total == 2**20
    assert not source.failed
    assert source.samples_tested == STARTUP_SAMPLES + 2**20
