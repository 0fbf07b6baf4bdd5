"""Shared fixtures. Helpers live in ``tests/_evidence.py`` (import ``from _evidence``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from _evidence import EVIDENCE_DIR, evidence_available, load_manifest, manifest_samples, sample_time

__all__ = ["evidence_dir", "load_manifest", "manifest_samples", "sample_time"]


@pytest.fixture
def evidence_dir() -> Path:
    """Path to ../shared/evidence, skipping the test when it is absent."""
    if not evidence_available():
        pytest.skip(f"shared evidence not present at {EVIDENCE_DIR}")
    return EVIDENCE_DIR
