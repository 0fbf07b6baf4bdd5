"""Helpers for the NIST ACVP vectors kept outside the project, in ../shared/vectors/acvp.

The vectors are never copied into the repository (see ../shared/vectors/acvp/README.md for
their provenance: usnistgov/ACVP-Server ``gen-val/json-files``). Tests that need them call
:func:`load_acvp`, which skips the test when the directory or file is absent.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import pytest

#: ../shared/vectors/acvp relative to the repository root (tests/ is one level below it).
ACVP_DIR = Path(__file__).resolve().parents[1] / ".." / "shared" / "vectors" / "acvp"


def acvp_available(folder: str, file: str = "internalProjection.json") -> bool:
    """True when ``folder/file`` exists under :data:`ACVP_DIR`."""
    return (ACVP_DIR / folder / file).is_file()


@lru_cache(maxsize=16)
def _load(folder: str, file: str) -> dict[str, Any]:
    data = json.loads((ACVP_DIR / folder / file).read_text())
    # Some ACVP files are [ {"acvVersion": ...}, {vector set} ]; these are the bare vector set.
    if isinstance(data, list):
        data = data[-1]
    assert isinstance(data, dict)
    return data


def load_acvp(folder: str, file: str = "internalProjection.json") -> dict[str, Any]:
    """The parsed vector set ``folder/file``; skips the calling test when it is absent."""
    if not acvp_available(folder, file):
        pytest.skip(f"ACVP vectors not present at {ACVP_DIR / folder / file}")
    return _load(folder, file)


def acvp_group_ids(folder: str, file: str = "internalProjection.json") -> list[int]:
    """tgIds of ``folder/file`` for parametrization; ``[0]`` (a skipping id) when absent."""
    if not acvp_available(folder, file):
        return [0]
    return [int(g["tgId"]) for g in _load(folder, file)["testGroups"]]


def acvp_group(folder: str, tg_id: int, file: str = "internalProjection.json") -> dict[str, Any]:
    """The test group ``tg_id`` of ``folder/file``; skips the test when the file is absent."""
    data = load_acvp(folder, file)
    for group in data["testGroups"]:
        if group["tgId"] == tg_id:
            return dict(group)
    raise KeyError(f"{folder}: no test group {tg_id}")


def unhex(value: str) -> bytes:
    """ACVP upper-case hex to bytes (``""`` is the empty string)."""
    return bytes.fromhex(value)
