"""Fixtures for the emulated platform: one emulated vendor per product and session."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from veritee.formats.sevsnp import Product
from veritee.platform.emulated.snp import EmulatedAmdVendor

NOW = datetime(2026, 6, 1, tzinfo=UTC)


@pytest.fixture(scope="session")
def milan_vendor() -> EmulatedAmdVendor:
    """An emulated AMD vendor for Milan (RSA-2048 roots: fast; the verifier path is the same)."""
    return EmulatedAmdVendor.generate(Product.MILAN, key_size=2048, now=NOW)


@pytest.fixture(scope="session")
def turin_vendor() -> EmulatedAmdVendor:
    """An emulated AMD vendor for Turin (FMC in the TCB, 8-byte hwID)."""
    return EmulatedAmdVendor.generate(Product.TURIN, key_size=2048, now=NOW)
