"""Every tampering, truncation and rollback fails with the one SealingError."""

from __future__ import annotations

from pathlib import Path

import pytest

from veritee.errors import SealingError
from veritee.formats.sealed import HEADER_SIZE
from veritee.platform.emulated.measurement import simple_guest_image
from veritee.platform.emulated.snp import EmulatedAmdVendor, InsecureEmulatedSnpMachine
from veritee.sealing import (
    SealingPolicy,
    inspect,
    seal,
    seal_to_path,
    unseal,
    unseal_path,
)
from veritee.sealing._core import RollbackSlot
from veritee.sealing.stream import existing_counter

IMAGE = simple_guest_image(b"W" * 4096)
P = SealingPolicy.measurement()


@pytest.fixture
def machine(vendor: EmulatedAmdVendor) -> InsecureEmulatedSnpMachine:
    return InsecureEmulatedSnpMachine(vendor)


def _refused(fn: object, *args: object, **kw: object) -> None:
    with pytest.raises(SealingError) as exc:
        fn(*args, **kw)  # type: ignore[operator]
    assert str(exc.value) == SealingError.MESSAGE


def test_every_single_byte_flip_is_rejected(machine: InsecureEmulatedSnpMachine) -> None:
    guest = machine.launch(IMAGE)
    blob = seal(guest, b"0123456789abcdef" * 2, SealingPolicy.measurement())
    for i in range(len(blob)):
        for flip in (0x01, 0x80):
            bad = bytearray(blob)
            bad[i] ^= flip
            _refused(unseal, guest, bytes(bad), P)


def test_every_truncation_is_rejected(machine: InsecureEmulatedSnpMachine) -> None:
    guest = machine.launch(IMAGE)
    blob = seal(guest, b"x" * 40, SealingPolicy.measurement())
    for n in range(len(blob)):
        _refused(unseal, guest, blob[:n], P)
    _refused(unseal, guest, blob + b"\0", P)


def test_header_is_readable_without_the_key(machine: InsecureEmulatedSnpMachine) -> None:
    blob = seal(machine.launch(IMAGE), b"x", SealingPolicy.measurement())
    header = inspect(blob)
    assert header.policy.name == "MEASUREMENT" and not header.rollback_protected
    assert header.to_bytes() == blob[:HEADER_SIZE]


def test_rollback_to_older_version_is_refused(machine: InsecureEmulatedSnpMachine,
                                              tmp_path: Path) -> None:
    guest = machine.launch(IMAGE)
    path = tmp_path / "state.sealed"
    seal_to_path(guest, path, b"balance=100", SealingPolicy.measurement(), counters=machine)
    old = path.read_bytes()
    seal_to_path(guest, path, b"balance=0", SealingPolicy.measurement(), counters=machine)
    assert inspect(path.read_bytes()).counter_value == 2
    assert unseal_path(guest, path, P, counters=machine) == b"balance=0"
    path.write_bytes(old)  # the host restores yesterday's file
    _refused(unseal_path, guest, path, P, counters=machine)


def test_rollback_protected_blob_needs_the_counter(machine: InsecureEmulatedSnpMachine) -> None:
    guest = machine.launch(IMAGE)
    blob = seal(guest, b"v1", SealingPolicy.measurement(), counters=machine)
    _refused(unseal, guest, blob, P)  # no counter service given: cannot check freshness
    assert unseal(guest, blob, P, counters=machine) == b"v1"


def test_counter_on_another_machine_is_refused(vendor: EmulatedAmdVendor,
                                               machine: InsecureEmulatedSnpMachine) -> None:
    guest = machine.launch(IMAGE)
    blob = seal(guest, b"v1", SealingPolicy.measurement(), counters=machine)
    _refused(unseal, guest, blob, P, counters=InsecureEmulatedSnpMachine(vendor))


def test_crash_after_commit_opens_the_pending_version(
        machine: InsecureEmulatedSnpMachine, tmp_path: Path) -> None:
    """A writer killed between the counter commit and the rename left the new version
    pending: it opens (and the rename is completed), the old file never does again."""
    guest = machine.launch(IMAGE)
    path = tmp_path / "s"
    seal_to_path(guest, path, b"v1", P, counters=machine)
    v1 = path.read_bytes()
    from veritee.sealing import _seal  # type: ignore[attr-defined]
    from veritee.sealing._core import pending_path

    slot = RollbackSlot.next_for(machine, existing_counter(path))
    pending_path(path).write_bytes(_seal(guest, b"v2", P, b"", slot))
    assert unseal_path(guest, path, P, counters=machine) == b"v1"  # not committed yet
    slot.commit()  # ... and the VM dies before the rename
    assert unseal_path(guest, path, P, counters=machine) == b"v2"
    assert not pending_path(path).exists() and inspect(path.read_bytes()).counter_value == 2
    path.write_bytes(v1)
    _refused(unseal_path, guest, path, P, counters=machine)


def test_version_far_ahead_of_counter_is_refused(machine: InsecureEmulatedSnpMachine) -> None:
    guest = machine.launch(IMAGE)
    cid = machine.counter_create()
    from veritee.sealing import _seal  # type: ignore[attr-defined]

    blob = _seal(guest, b"x", P, b"", RollbackSlot(machine, cid, 5))
    _refused(unseal, guest, blob, P, counters=machine)


def test_counters_persist_across_machine_reload(vendor: EmulatedAmdVendor,
                                                tmp_path: Path) -> None:
    state = tmp_path / "machine"
    m1 = InsecureEmulatedSnpMachine.open(state, key_size=2048)
    path = tmp_path / "s"
    seal_to_path(m1.launch(IMAGE), path, b"v1", SealingPolicy.measurement(), counters=m1)
    old = path.read_bytes()
    seal_to_path(m1.launch(IMAGE), path, b"v2", SealingPolicy.measurement(), counters=m1)
    m2 = InsecureEmulatedSnpMachine.load(state)
    assert m2.chip_id == m1.chip_id
    assert unseal_path(m2.launch(IMAGE), path, P, counters=m2) == b"v2"
    path.write_bytes(old)
    _refused(unseal_path, m2.launch(IMAGE), path, P, counters=m2)
