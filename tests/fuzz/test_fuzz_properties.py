"""A hypothesis property per parser: only the documented typed errors ever come out.

The targets are those of the atheris harness (``fuzz/targets.py``): the same contract is
checked here on random bytes and on mutations of the real samples and the emulated
platform's output (seeds), and there at scale (docs/limits.md).
"""

from __future__ import annotations

import warnings

import pytest
from fuzz.targets import Target, targets
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

PARSE = sorted(n for n, t in targets().items() if t.kind == "parse")
VERIFY = sorted(n for n, t in targets().items() if t.kind == "verify")


@st.composite
def _mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    """A seed with a few bytes flipped, inserted, deleted or the tail cut."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(("flip", "insert", "delete", "cut")))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[pos] ^= draw(st.integers(1, 255))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete" and data:
            del data[pos:pos + draw(st.integers(1, 8))]
        elif op == "cut":
            del data[pos:]
    return bytes(data)


def _inputs(target: Target) -> st.SearchStrategy[bytes]:
    seeds = target.seeds()
    return st.one_of(st.binary(max_size=512), _mutated(seeds))


def _check(target: Target, data: bytes) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # cryptography's deprecation warnings on mutants
        target.check(data)


@pytest.mark.parametrize("name", PARSE)
def test_parser_raises_only_typed_errors(name: str) -> None:
    target = targets()[name]

    @settings(max_examples=40, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(_inputs(target))
    def prop(data: bytes) -> None:
        _check(target, data)

    prop()


@pytest.mark.parametrize("name", VERIFY)
def test_verify_path_raises_only_typed_errors_and_accepts_no_changed_signed_bytes(
        name: str) -> None:
    target = targets()[name]

    @settings(max_examples=25, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(_mutated(target.seeds()))
    def prop(data: bytes) -> None:
        _check(target, data)

    prop()


def test_every_seed_passes_its_own_target() -> None:
    for target in targets().values():
        for seed in target.seeds():
            _check(target, seed)
