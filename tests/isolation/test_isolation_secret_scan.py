"""A guest keeps a real secret in memory; a scan of all DRAM finds it only under ``plain``."""

from __future__ import annotations

import pytest

from veritee.formats.sevsnp import Product
from veritee.platform.emulated.isolation import (
    PAGE_SIZE,
    Machine,
    Mode,
    SecretKeepingWorkload,
    p384_private_key_secret,
    scan_physical_memory,
    snp_sealing_key_secret,
)
from veritee.platform.emulated.isolation.workload import SECRET_OFFSET
from veritee.platform.emulated.measurement import simple_guest_image
from veritee.platform.emulated.snp import EmulatedAmdVendor, InsecureEmulatedSnpMachine

PAGES = 64


@pytest.fixture(scope="module")
def sealing_key() -> bytes:
    """A key the emulated AMD-SP derives for a launched guest (RSA-2048 roots: fast)."""
    vendor = EmulatedAmdVendor.generate(Product.MILAN, key_size=2048)
    snp = InsecureEmulatedSnpMachine(vendor)
    guest = snp.launch(simple_guest_image(bytes(4096)))
    return snp_sealing_key_secret(guest)


def _scan(mode: Mode, secret: bytes) -> tuple[list[int], SecretKeepingWorkload]:
    machine = Machine.for_guest(mode, PAGES)
    victim = SecretKeepingWorkload(machine, machine.launch(PAGES), secret)
    assert victim.use_secret() == secret  # the guest itself still has it
    return scan_physical_memory(machine, secret), victim


def test_plain_secret_scan_finds_the_sealing_key(sealing_key: bytes) -> None:
    hits, victim = _scan(Mode.PLAIN, sealing_key)
    assert hits == [victim.secret_frame() * PAGE_SIZE + SECRET_OFFSET]


@pytest.mark.parametrize("mode", [Mode.SEV, Mode.SEV_SNP, Mode.SGX_CLIENT, Mode.SGX_SCALABLE],
                         ids=lambda m: m.value)
def test_encrypted_secret_scan_never_finds_the_sealing_key(mode: Mode,
                                                           sealing_key: bytes) -> None:
    hits, _ = _scan(mode, sealing_key)
    assert hits == []


@pytest.mark.parametrize("mode", list(Mode), ids=lambda m: m.value)
def test_secret_scan_of_a_tls_private_key(mode: Mode) -> None:
    secret = p384_private_key_secret()
    hits, _ = _scan(mode, secret)
    assert bool(hits) is (mode is Mode.PLAIN)


def test_secret_scan_covers_hardware_metadata_too() -> None:
    """The scan reads every byte of DRAM, including MACs and integrity-tree nodes."""
    machine = Machine.for_guest(Mode.SGX_CLIENT, PAGES)
    assert machine.memory.metadata_size > 0
    assert machine.memory.size == machine.memory.frames * PAGE_SIZE + machine.memory.metadata_size
    needle = machine.memory.meta_load(machine.memory.metadata_size - 40, 40)
    assert scan_physical_memory(machine, needle)[-1] >= machine.memory.frames * PAGE_SIZE
