"""SEV-SNP's RMP rules one by one: ownership, PVALIDATE, VMPL permissions, page-state changes."""

from __future__ import annotations

import pytest

from veritee.platform.emulated.isolation import (
    PAGE_SIZE,
    CarefulGuest,
    GuestException,
    GuestKernel,
    GuestTerminated,
    HypervisorFault,
    Machine,
    Mode,
    NaiveGuest,
    VcCode,
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
    with pytest.raises(GuestException, match="#VC") as exc:
        machine.guest_load(guest, 2)
    assert exc.value.code == VcCode.NOT_VALIDATED == 0x404
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


def test_snp_launch_pages_are_validated_by_the_firmware_not_by_pvalidate() -> None:
    """SNP_LAUNCH_UPDATE validates launch pages; the guest's own PVALIDATE would be a second
    validation and reports no update."""
    machine, rules = _snp()
    guest = machine.guests[0]
    assert guest.validated == set(range(PAGES))  # the guest knows its launch pages
    assert rules.rmp[guest.table[0] or 0].state == "Guest-Valid"
    assert rules.pvalidate(guest, 0) is False


def test_snp_rmpadjust_on_an_unvalidated_page_raises_vc() -> None:
    """Regression: RMPADJUST used to hand out VMPL permissions on a page not validated."""
    machine, rules = _snp()
    guest = machine.guests[0]
    frame = guest.table[5]
    assert frame is not None
    rules.rmpupdate(frame, asid=guest.guest_id, gpn=5)  # Validated cleared
    with pytest.raises(GuestException, match="NOT_VALIDATED") as exc:
        rules.rmpadjust(guest, 5, 1, VmplPerm.READ)
    assert exc.value.code == VcCode.NOT_VALIDATED
    assert rules.rmp[frame].perms[1] is VmplPerm.NONE


def test_snp_rmpupdate_refused_on_an_immutable_firmware_page() -> None:
    machine, rules = _snp()
    (spare,) = machine.hypervisor.allocate(1, protected=False)
    rules.mark_firmware(spare)
    assert rules.rmp[spare].state == "Firmware"
    with pytest.raises(HypervisorFault, match="Immutable"):
        rules.rmpupdate(spare, asid=None)
    with pytest.raises(HypervisorFault, match="RMP violation"):
        rules.host_store(spare, DATA)


def test_snp_page_states_follow_the_rmp_entry() -> None:
    machine, rules = _snp()
    (spare,) = machine.hypervisor.allocate(1, protected=False)
    assert rules.rmp[spare].state == "Hypervisor"
    rules.rmpupdate(spare, asid=1, gpn=3)
    assert rules.rmp[spare].state == "Guest-Invalid"


def test_snp_substituted_frame_leaves_the_old_one_validated() -> None:
    """The hardware does not remember that a GPA was validated: after RMPUPDATE of a second
    frame at the same GPA, the old frame is still Guest-Valid there."""
    machine, rules = _snp()
    guest = machine.guests[0]
    old = guest.table[2]
    assert old is not None
    (new,) = machine.hypervisor.allocate(1, protected=False)
    rules.rmpupdate(new, asid=guest.guest_id, gpn=2)
    guest.table[2] = new
    assert rules.pvalidate(guest, 2) is True  # no "already validated" for the GPA
    assert rules.rmp[old].validated and rules.rmp[new].validated


def _kernel(policy: CarefulGuest | NaiveGuest) -> tuple[Machine, SnpRules, GuestKernel]:
    machine, rules = _snp()
    return machine, rules, GuestKernel(machine, machine.guests[0], policy)


def test_careful_guest_refuses_a_second_validation_of_a_launch_page() -> None:
    _, _, kernel = _kernel(CarefulGuest())
    with pytest.raises(GuestTerminated, match="no update"):
        kernel.accept(0)


def test_naive_guest_ignores_pvalidate_no_update() -> None:
    _, _, kernel = _kernel(NaiveGuest())
    kernel.accept(0)
    assert any("FAIL_NOUPDATE" in line for line in kernel.log)


def test_careful_guest_terminates_on_vc_for_a_page_in_its_bitmap() -> None:
    _machine, rules, kernel = _kernel(CarefulGuest())
    frame = kernel.guest.table[4]
    assert frame is not None
    rules.rmpupdate(frame, asid=kernel.guest.guest_id, gpn=4)
    with pytest.raises(GuestTerminated, match="already validated"):
        kernel.load(4)


def test_careful_guest_validates_a_page_it_never_validated_once() -> None:
    """Lazy acceptance is legitimate: a #VC on a page outside the bitmap is validated."""
    _machine, rules, kernel = _kernel(CarefulGuest())
    frame = kernel.guest.table[4]
    assert frame is not None
    kernel.guest.validated.discard(4)
    rules.rmpupdate(frame, asid=kernel.guest.guest_id, gpn=4)
    kernel.store(4, DATA)
    assert kernel.load(4) == DATA and 4 in kernel.guest.validated


def test_naive_guest_revalidates_on_vc_like_the_kvm_selftest_handler() -> None:
    _machine, rules, kernel = _kernel(NaiveGuest())
    frame = kernel.guest.table[4]
    assert frame is not None
    rules.rmpupdate(frame, asid=kernel.guest.guest_id, gpn=4)
    kernel.load(4)
    assert rules.rmp[frame].validated


def test_guest_terminates_on_an_unhandled_vc_code() -> None:
    machine, _rules, kernel = _kernel(NaiveGuest())

    def raise_other(guest: object, page: int) -> bytes:
        raise GuestException("#VC 0x72 (CPUID)", code=0x72)

    machine.guest_load = raise_other  # type: ignore[method-assign, assignment]
    with pytest.raises(GuestTerminated, match="unhandled"):
        kernel.load(1)


def test_snp_launch_update_of_a_vmsa_page_gives_the_context_state() -> None:
    machine = Machine.for_guest(Mode.SEV_SNP, 4)
    rules = machine.rules
    assert isinstance(rules, SnpRules)
    guest = machine.launch(2)
    frame = guest.table[1]
    assert frame is not None
    rules.rmpupdate(frame, asid=guest.guest_id, gpn=1)
    rules.snp_launch_update(guest, 1, vmsa=True)
    assert rules.rmp[frame].state == "Context"
    with pytest.raises(HypervisorFault, match="Pre-Guest"):
        rules.snp_launch_update(guest, 1)


def test_snp_refuses_to_run_on_zen1_or_zen2() -> None:
    from veritee.errors import PlatformError
    from veritee.platform.emulated.isolation import CpuGeneration

    for gen in (CpuGeneration.NAPLES, CpuGeneration.ROME):
        with pytest.raises(PlatformError, match="SEV-SNP needs"):
            Machine.for_guest(Mode.SEV_SNP, 4, generation=gen)
    assert Machine.for_guest(Mode.SEV, 4, generation=CpuGeneration.NAPLES).engine.key_bytes == 16
