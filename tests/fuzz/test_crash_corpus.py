"""Every input the fuzzers ever crashed on (``tests/fuzz/crashes/<target>/``) is replayed:
it must now end in a documented typed error, or parse."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from fuzz.targets import crash_inputs, targets

CASES = crash_inputs()


@pytest.mark.skipif(not CASES, reason="no crash inputs kept")
@pytest.mark.parametrize(("name", "path"), CASES, ids=[f"{n}/{p.name}" for n, p in CASES])
def test_kept_crash_input_now_gives_a_typed_error(name: str, path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        targets()[name].check(path.read_bytes())


def test_every_crash_directory_names_a_target() -> None:
    assert {n for n, _ in CASES} <= set(targets())
