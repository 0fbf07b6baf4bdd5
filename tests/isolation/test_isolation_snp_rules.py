"""SEV-SNP's RMP rules one by one: ownership, PVALIDATE, VMPL permissions, page-state changes."""

from __future__ import annotations

import pytest

from veritee.platform.emulated.isolation import (
    PAGE_SIZE,
    GuestException,
    HypervisorFault,
    Machine,
    Mode,
)
from veritee.platform.emulated.isolation.rmp import SnpRules, VmplPerm

PAGES = 16
DATA = bytes(range(256)) * (PAGE_SIZE // 256)


def _snp(vmpl: int = 0) -> tuple[Machine, SnpRules]:
    machine = Machine.for_guest(Mode.SEV_SNP, PAGES)
    machine.launch(PAGES, vmpl=vmpl)
    assert isinstance(machine.rules, SnpRules)
    return machine, machine.rules


def test_snp_launch_assigns_and_validates_every_page() -> None:
    machine, rules = _snp()
    guest = machine.guests[0]
    for page in range(PAGES):
        entry = rules.rmp[guest.table[page] or 0]
        assert (entry.asid, entry.gpn, entry.validated) == (guest.guest_id, page, True)
    machine.guest_store(guest, 3, DATA)
    assert machine.guest_load(guest, 3) == DATA


def test_snp_unvalidated_page_raises_vc_to_the_guest() -> None:
    machine, rules = _snp()
    guest = machine.guests[0]
    frame = guest.table[2]
    assert frame is not None
    rules.rmpupdate(frame, asid=guest.guest_id, gpn=2)  # same owner, Validated cleared
    with pytest.raises(GuestException, match="#VC"):
        machine.guest_load(guest, 2)
    assert rules.pvalidate(guest, 2) is True
    machine.guest_store(guest, 2, DATA)


def test_snp_pvalidate_twice_reports_no_update() -> None:
    machine, rules = _snp()
    assert rules.pvalidate(machine.guests[0], 0) is False


def test_snp_pvalidate_of_a_page_owned_elsewhere_faults() -> None:
    machine, rules = _snp()
    guest = machine.guests[0]
    (spare,) = machine.hypervisor.allocate(1, protected=False)
    guest.table[4] = spare
    with pytest.raises(HypervisorFault, match="RMP violation"):
        rules.pvalidate(guest, 4)


def test_snp_host_write_to_own_frame_is_allowed() -> None:
    machine, rules = _snp()
    (spare,) = machine.hypervisor.allocate(1, protected=False)
    rules.host_store(spare, DATA)
    assert rules.host_load(spare) == DATA


def test_snp_vmpl1_needs_permission_granted_by_vmpl0() -> None:
    machine, rules = _snp(vmpl=1)
    guest = machine.guests[0]
    with pytest.raises(HypervisorFault, match="VMPL permission"):
        machine.guest_load(guest, 5)
    guest.vmpl = 0  # the VMPL0 firmware (an SVSM) grants read access
    rules.rmpadjust(guest, 5, 1, VmplPerm.READ)
    machine.guest_store(guest, 5, DATA)
    guest.vmpl = 1
    assert machine.guest_load(guest, 5) == DATA
    with pytest.raises(HypervisorFault, match="VMPL permission"):
        machine.guest_store(guest, 5, DATA)


def test_snp_rmpadjust_cannot_raise_a_more_privileged_vmpl() -> None:
    machine, rules = _snp(vmpl=1)
    with pytest.raises(GuestException, match="RMPADJUST"):
        rules.rmpadjust(machine.guests[0], 0, 0, VmplPerm.ALL)


def test_snp_guest_requested_page_state_change_round_trip() -> None:
    """Private -> shared on the guest's request: the host may then read and write it."""
    machine, rules = _snp()
    guest = machine.guests[0]
    frame = guest.table[6]
    assert frame is not None
    machine.guest_set_shared(guest, 6, True)
    machine.guest_store(guest, 6, DATA)
    assert rules.host_load(frame) == DATA  # shared pages are plaintext, by design
    rules.host_store(frame, bytes(PAGE_SIZE))
    machine.guest_set_shared(guest, 6, False)
    assert rules.rmp[frame].validated
    machine.guest_store(guest, 6, DATA)
    assert machine.guest_load(guest, 6) == DATA
    with pytest.raises(HypervisorFault, match="RMP violation"):
        rules.host_store(frame, bytes(PAGE_SIZE))


def test_snp_shared_access_to_a_private_page_faults() -> None:
    machine, _ = _snp()
    guest = machine.guests[0]
    guest.shared.add(7)  # the guest clears the C-bit without asking the hypervisor
    with pytest.raises(HypervisorFault, match="shared access"):
        machine.guest_load(guest, 7)
