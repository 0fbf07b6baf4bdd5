"""Fixtures for sealing: an emulated vendor shared by the session, fresh machines per test."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from veritee.formats.sevsnp import Product
from veritee.platform.emulated.snp import EmulatedAmdVendor


@pytest.fixture(scope="session")
def vendor() -> EmulatedAmdVendor:
    """RSA-2048 emulated roots (sealing never touches them; speed only)."""
    return EmulatedAmdVendor.generate(Product.MILAN, key_size=2048,
                                      now=datetime(2026, 6, 1, tzinfo=UTC))
