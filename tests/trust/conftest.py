"""Trust-test fixtures: fake AMD key sets shared across the session (RSA keygen is slow)."""

from __future__ import annotations

import pytest

from veritee.formats.sevsnp import Product, SigningKey
from veritee.testing.amd import FakeAmd, FakeAmdKeys


@pytest.fixture(scope="session")
def amd_keys() -> FakeAmdKeys:
    """The fake AMD's keys (RSA-2048 for speed; the verifier does not care about the size)."""
    return FakeAmdKeys.generate(key_size=2048)


@pytest.fixture(scope="session")
def other_keys() -> FakeAmdKeys:
    """A second, unrelated key set: another chip, another ARK, an attacker."""
    return FakeAmdKeys.generate(key_size=2048)


@pytest.fixture(scope="session")
def milan(amd_keys: FakeAmdKeys) -> FakeAmd:
    """A fake Milan VCEK chain."""
    return FakeAmd(Product.MILAN, keys=amd_keys)


@pytest.fixture(scope="session")
def milan_vlek(amd_keys: FakeAmdKeys) -> FakeAmd:
    """A fake Milan VLEK chain (ASVK-signed)."""
    return FakeAmd(Product.MILAN, kind=SigningKey.VLEK, keys=amd_keys)


@pytest.fixture(scope="session")
def turin(amd_keys: FakeAmdKeys) -> FakeAmd:
    """A fake Turin VCEK chain (8-byte hwID, fmcSPL)."""
    return FakeAmd(Product.TURIN, keys=amd_keys)
