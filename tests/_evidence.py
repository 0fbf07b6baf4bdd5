"""Helpers for tests that read real evidence from ../shared/evidence (never copied here).

Import as ``from _evidence import ...`` (``tests/`` is on pytest's pythonpath).
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

_REPO = Path(__file__).resolve().parent.parent
EVIDENCE_DIR = Path(os.environ.get("VERITEE_EVIDENCE_DIR", _REPO.parent / "shared" / "evidence"))


def evidence_available() -> bool:
    """True when the shared evidence corpus is present (absent in a user's fresh clone)."""
    return (EVIDENCE_DIR / "MANIFEST.json").is_file()


def load_manifest(name: str = "MANIFEST.json") -> dict[str, Any]:
    """The evidence manifest, or skip the calling test when the corpus is absent."""
    if not evidence_available():
        pytest.skip(f"shared evidence not present at {EVIDENCE_DIR}")
    data: dict[str, Any] = json.loads((EVIDENCE_DIR / name).read_text())
    return data


def manifest_samples(family_prefix: str, name: str = "MANIFEST.json") -> list[dict[str, Any]]:
    """Samples whose ``dir`` starts with ``family_prefix`` (for parametrize; [] when absent)."""
    if not evidence_available():
        return []
    data = json.loads((EVIDENCE_DIR / name).read_text())
    return [s for s in data["samples"] if s["dir"].startswith(family_prefix)]


def sample_time(sample: dict[str, Any]) -> datetime:
    """The time at which the manifest says the sample verifies."""
    runs = sample.get("checked", {}).get("runs", [])
    for run in runs:
        if run.get("evaluated_at"):
            return datetime.fromisoformat(run["evaluated_at"])
    raise AssertionError(f"sample {sample['id']} has no evaluation time")
