"""Fixtures for attested certificates: one emulated machine and two guests per session."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from veritee.formats.sevsnp import GuestPolicy, Product
from veritee.platform.emulated.measurement import simple_guest_image
from veritee.platform.emulated.snp import (
    EmulatedAmdVendor,
    EmulatedSnpGuest,
    InsecureEmulatedSnpMachine,
)

NOW = datetime(2026, 6, 1, tzinfo=UTC)
GOOD_IMAGE = bytes(range(256)) * 16 * 4
OTHER_IMAGE = bytes(reversed(range(256))) * 16 * 4


@pytest.fixture(scope="session")
def ratls_machine() -> InsecureEmulatedSnpMachine:
    """An emulated Milan machine (RSA-2048 vendor roots for speed) with a fixed clock."""
    vendor = EmulatedAmdVendor.generate(Product.MILAN, key_size=2048, now=NOW)
    return InsecureEmulatedSnpMachine(vendor, clock=NOW)


@pytest.fixture(scope="session")
def good_guest(ratls_machine: InsecureEmulatedSnpMachine) -> EmulatedSnpGuest:
    return ratls_machine.launch(simple_guest_image(GOOD_IMAGE))


@pytest.fixture(scope="session")
def other_guest(ratls_machine: InsecureEmulatedSnpMachine) -> EmulatedSnpGuest:
    """Same machine, another workload (a different launch measurement)."""
    return ratls_machine.launch(simple_guest_image(OTHER_IMAGE))


@pytest.fixture(scope="session")
def debug_guest(ratls_machine: InsecureEmulatedSnpMachine) -> EmulatedSnpGuest:
    return ratls_machine.launch(simple_guest_image(GOOD_IMAGE),
                                policy=GuestPolicy(smt=True, debug=True))
