"""Issue 16, finding 2: rollback protection is declared by the caller and exact.

The host can kill the VM at any instant, fail any write and keep copies of every file it ever
saw; none of that may make an older or a failed version open.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from veritee.errors import SealingError
from veritee.platform.emulated.measurement import simple_guest_image
from veritee.platform.emulated.snp import (
    EmulatedAmdVendor,
    EmulatedSnpGuest,
    InsecureEmulatedSnpMachine,
)
from veritee.sealing import (
    Sealer,
    SealingPolicy,
    counter_id_for,
    seal,
    seal_to_path,
    unseal_path,
)

IMAGE = simple_guest_image(b"R" * 4096)
POLICY = SealingPolicy.measurement()


class Crash(BaseException):
    """The host stops the VM here (nothing after this line runs)."""


class CrashingCounters:
    """The machine's counters, with the VM killed at the ``crash_at``-th advance."""

    def __init__(self, machine: InsecureEmulatedSnpMachine, crash_at: int) -> None:
        self.machine, self.crash_at, self.advances = machine, crash_at, 0

    def counter_create(self, counter_id: bytes | None = None) -> bytes:
        return self.machine.counter_create(counter_id)

    def counter_read(self, counter_id: bytes) -> int:
        return self.machine.counter_read(counter_id)

    def counter_advance(self, counter_id: bytes, to: int) -> int:
        self.advances += 1
        if self.advances == self.crash_at:
            raise Crash
        return self.machine.counter_advance(counter_id, to)


def open_path(guest: EmulatedSnpGuest, path: Path, counters: object) -> bytes:
    return unseal_path(guest, path, POLICY, counters=counters)  # type: ignore[arg-type]


def refused(fn: Callable[[], object]) -> None:
    with pytest.raises(SealingError) as exc:
        fn()
    assert str(exc.value) == SealingError.MESSAGE


@pytest.fixture
def machine(vendor: EmulatedAmdVendor) -> InsecureEmulatedSnpMachine:
    return InsecureEmulatedSnpMachine(vendor)


@pytest.mark.parametrize("crash_at", [1, 2, 3])
def test_restored_file_after_crash_window_refused(machine: InsecureEmulatedSnpMachine,
                                                  tmp_path: Path, crash_at: int) -> None:
    guest = machine.launch(IMAGE)
    path = tmp_path / "state.sealed"
    seal_to_path(guest, path, b"balance=100", POLICY, counters=machine)
    old = path.read_bytes()
    crashing = CrashingCounters(machine, crash_at)
    with contextlib.suppress(Crash):
        seal_to_path(guest, path, b"balance=0", POLICY, counters=crashing)  # type: ignore[arg-type]
    if path.read_bytes() != old:
        # The new version became visible: from then on the old one must never open, even if
        # the new one is never read and the host puts the old file back.
        path.write_bytes(old)
        refused(lambda: open_path(guest, path, machine))


def test_failed_write_is_never_accepted_later(machine: InsecureEmulatedSnpMachine,
                                              tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    guest = machine.launch(IMAGE)
    path = tmp_path / "state.sealed"
    seal_to_path(guest, path, b"balance=100", POLICY, counters=machine)
    captured: list[bytes] = []
    real_replace = os.replace

    def failing_replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        if Path(dst) == path:
            captured.append(Path(src).read_bytes())  # the host keeps a copy ...
            raise OSError(errno.EIO, "I/O error")  # ... and fails the rename
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError):
        seal_to_path(guest, path, b"balance=0", POLICY, counters=machine)
    monkeypatch.setattr(os, "replace", real_replace)
    assert captured
    path.write_bytes(captured[0])  # the failed write, substituted later
    refused(lambda: open_path(guest, path, machine))


def test_unprotected_seal_refused_where_rollback_declared(machine: InsecureEmulatedSnpMachine,
                                                          tmp_path: Path) -> None:
    guest = machine.launch(IMAGE)
    path = tmp_path / "state.sealed"
    seal_to_path(guest, path, b"balance=100", POLICY)  # no counter
    stale = path.read_bytes()
    seal_to_path(guest, path, b"balance=0", POLICY, counters=machine)
    assert open_path(guest, path, machine) == b"balance=0"
    path.write_bytes(stale)  # a copy sealed without a counter, same workload, same path
    refused(lambda: open_path(guest, path, machine))


def test_file_from_a_replaced_counter_refused(machine: InsecureEmulatedSnpMachine,
                                              tmp_path: Path) -> None:
    """The host deletes the file so the writer would start a new counter, then restores the
    old file, which still matches its own (abandoned) counter: a declared counter id stops
    it."""
    guest = machine.launch(IMAGE)
    path = tmp_path / "state.sealed"
    cid = counter_id_for(b"test-namespace", str(path))
    seal_to_path(guest, path, b"balance=100", POLICY, counters=machine, counter_id=cid)
    shutil.copy(path, tmp_path / "copy")
    path.unlink()
    seal_to_path(guest, path, b"balance=0", POLICY, counters=machine, counter_id=cid)
    assert unseal_path(guest, path, POLICY, counters=machine, counter_id=cid) == b"balance=0"
    shutil.copy(tmp_path / "copy", path)
    refused(lambda: unseal_path(guest, path, POLICY, counters=machine, counter_id=cid))


def test_sealer_declares_its_counters(machine: InsecureEmulatedSnpMachine,
                                      tmp_path: Path) -> None:
    """What the key store uses: the Sealer picks the counter, not the file's header."""
    guest = machine.launch(IMAGE)
    sealer = Sealer(guest, POLICY, counters=machine)
    path = tmp_path / "meta.sealed"
    sealer.seal_to_path(path, b"destroyed=false", rollback=True)
    shutil.copy(path, tmp_path / "copy")
    path.unlink()  # the host hides the file: a writer without a declared id starts afresh
    sealer.seal_to_path(path, b"destroyed=true", rollback=True)
    shutil.copy(tmp_path / "copy", path)
    refused(lambda: sealer.unseal_path(path, rollback=True))
    # A file made under another (random) counter, current there, is refused as well.
    path.write_bytes(seal(guest, b"destroyed=false", POLICY, counters=machine))
    refused(lambda: sealer.unseal_path(path, rollback=True))


def test_declared_counter_survives_a_crash_after_commit(machine: InsecureEmulatedSnpMachine,
                                                        tmp_path: Path) -> None:
    guest = machine.launch(IMAGE)
    sealer = Sealer(guest, POLICY, counters=machine)
    path = tmp_path / "s"
    sealer.seal_to_path(path, b"v1", rollback=True)
    crashing = CrashingCounters(machine, crash_at=0)  # never crashes: count the advances
    real_replace = os.replace

    def killed_before_rename(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        if Path(dst) == path:
            raise Crash
        real_replace(src, dst)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(os, "replace", killed_before_rename)
        with contextlib.suppress(Crash):
            seal_to_path(guest, path, b"v2", POLICY, counters=crashing,  # type: ignore[arg-type]
                         counter_id=sealer.counter_for(path))
    assert crashing.advances == 2  # reserved and committed, then killed
    assert sealer.unseal_path(path, rollback=True) == b"v2"  # the pending version opens
