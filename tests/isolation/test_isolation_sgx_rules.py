"""SGX's rules (abort-page semantics, EPCM, EWB/ELDU, SGX2, the MEE) and TDX's (Secure EPT,
logical integrity, PENDING pages)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from veritee.platform.emulated.isolation import (
    PAGE_SIZE,
    GuestException,
    HypervisorFault,
    IntegrityViolation,
    Machine,
    MachineCheck,
    Mode,
    PhysicalMemory,
    PlatformLocked,
)
from veritee.platform.emulated.isolation.epc import ABORT_PAGE, EpcPerm, SgxRules
from veritee.platform.emulated.isolation.integrity import CounterTree
from veritee.platform.emulated.isolation.tdx import TdxRules

PAGES = 16
DATA = bytes(range(256)) * (PAGE_SIZE // 256)


def _sgx(mode: Mode = Mode.SGX_CLIENT) -> tuple[Machine, SgxRules]:
    machine = Machine.for_guest(mode, PAGES)
    machine.launch(PAGES)
    assert isinstance(machine.rules, SgxRules)
    return machine, machine.rules


def test_sgx_enclave_round_trip_and_abort_page_for_the_host() -> None:
    machine, rules = _sgx()
    enclave = machine.guests[0]
    machine.guest_store(enclave, 1, DATA)
    assert machine.guest_load(enclave, 1) == DATA
    frame = enclave.table[1]
    assert frame is not None
    assert rules.host_load(frame) == ABORT_PAGE
    rules.host_store(frame, bytes(PAGE_SIZE))  # dropped
    assert machine.guest_load(enclave, 1) == DATA


def test_sgx_enclave_pages_live_only_in_the_epc() -> None:
    machine, rules = _sgx()
    assert all(rules.in_epc(f) for f in machine.guests[0].table if f is not None)


def test_sgx_ewb_eldu_round_trip_then_replay_fails() -> None:
    machine, rules = _sgx()
    enclave = machine.guests[0]
    machine.guest_store(enclave, 2, DATA)
    frame = enclave.table[2]
    assert frame is not None
    blob = rules.ewb(frame)
    with pytest.raises(HypervisorFault, match="EPCM"):
        machine.guest_load(enclave, 2)  # evicted: the EPCM entry is invalid
    rules.eldu(blob, frame)
    assert machine.guest_load(enclave, 2) == DATA
    with pytest.raises(HypervisorFault, match="in use"):
        rules.eldu(blob, frame)
    rules.ewb(frame)
    with pytest.raises(HypervisorFault, match="VA slot"):
        rules.eldu(blob, frame)


def test_sgx_eldu_rejects_a_modified_blob() -> None:
    machine, rules = _sgx()
    frame = machine.guests[0].table[3]
    assert frame is not None
    blob = rules.ewb(frame)
    flipped = bytes([blob.ciphertext[0] ^ 1]) + blob.ciphertext[1:]
    with pytest.raises(HypervisorFault, match="MAC compare failed"):
        rules.eldu(replace(blob, ciphertext=flipped), frame)


def test_sgx_client_flipped_ciphertext_bit_in_dram_locks_the_platform() -> None:
    """Drop and lock: the MAC fails, and every later EPC access fails too (nothing runs)."""
    machine, rules = _sgx()
    enclave = machine.guests[0]
    frame = enclave.table[0]
    assert frame is not None
    raw = bytearray(machine.memory.load(frame))
    raw[100] ^= 0x80
    machine.memory.store(frame, bytes(raw))
    with pytest.raises(PlatformLocked, match="MAC mismatch"):
        machine.guest_load(enclave, 0)
    assert rules.locked
    with pytest.raises(PlatformLocked):
        machine.guest_load(enclave, 1)


def test_sgx_scalable_flipped_ciphertext_bit_goes_undetected() -> None:
    """TME-MK has no MAC: the enclave reads a corrupted 16-byte block, silently."""
    machine, rules = _sgx(Mode.SGX_SCALABLE)
    assert rules.tree is None and machine.memory.metadata_size == 0
    enclave = machine.guests[0]
    machine.guest_store(enclave, 0, DATA)
    frame = enclave.table[0]
    assert frame is not None
    raw = bytearray(machine.memory.load(frame))
    raw[100] ^= 0x80
    machine.memory.store(frame, bytes(raw))
    got = machine.guest_load(enclave, 0)
    assert got != DATA and got[:96] == DATA[:96] and got[112:] == DATA[112:]


def test_sgx_client_mee_rewriting_the_same_data_changes_the_ciphertext() -> None:
    machine, _ = _sgx()
    enclave = machine.guests[0]
    frame = enclave.table[2]
    assert frame is not None
    machine.guest_store(enclave, 2, DATA)
    first = machine.memory.load(frame)
    machine.guest_store(enclave, 2, DATA)
    assert machine.memory.load(frame) != first


def test_sgx_scalable_rewriting_the_same_data_gives_the_same_ciphertext() -> None:
    machine, _ = _sgx(Mode.SGX_SCALABLE)
    enclave = machine.guests[0]
    frame = enclave.table[2]
    assert frame is not None
    machine.guest_store(enclave, 2, DATA)
    first = machine.memory.load(frame)
    machine.guest_store(enclave, 2, DATA)
    assert machine.memory.load(frame) == first


def test_sgx2_eaug_page_is_pending_until_the_enclave_eaccepts() -> None:
    machine, rules = _sgx()
    enclave = machine.guests[0]
    (frame,) = machine.hypervisor.allocate(1, protected=True)
    rules.eaug(enclave, frame, 3)
    enclave.table[3] = frame
    with pytest.raises(GuestException, match="PENDING"):
        machine.guest_load(enclave, 3)
    rules.eaccept(enclave, 3)
    assert machine.guest_load(enclave, 3) == bytes(PAGE_SIZE)


def test_sgx2_eaccept_refuses_a_page_that_is_not_pending() -> None:
    machine, rules = _sgx()
    with pytest.raises(GuestException, match="neither PENDING nor MODIFIED"):
        rules.eaccept(machine.guests[0], 1)


def test_sgx2_emodpr_restricts_permissions_after_eaccept() -> None:
    machine, rules = _sgx()
    enclave = machine.guests[0]
    frame = enclave.table[4]
    assert frame is not None
    rules.emodpr(frame, EpcPerm.R)
    with pytest.raises(GuestException, match="MODIFIED"):
        machine.guest_load(enclave, 4)
    rules.eaccept(enclave, 4)
    machine.guest_load(enclave, 4)
    with pytest.raises(HypervisorFault, match="W not permitted"):
        machine.guest_store(enclave, 4, DATA)


def test_sgx2_eremove_frees_the_page() -> None:
    machine, rules = _sgx()
    frame = machine.guests[0].table[5]
    assert frame is not None
    rules.eremove(frame)
    with pytest.raises(HypervisorFault, match="EPCM"):
        machine.guest_load(machine.guests[0], 5)


def test_integrity_tree_detects_a_replayed_node() -> None:
    memory = PhysicalMemory(1)
    tree = CounterTree(memory, 4096, key=b"k" * 32)
    assert tree.depth == 3  # 512, 64 and 8 nodes; 8 counters on die
    old = memory.meta_load(0, memory.metadata_size)
    assert tree.advance(77) == 1
    assert tree.version(77) == 1
    memory.meta_store(0, old)  # every node in DRAM back to its old state
    with pytest.raises(IntegrityViolation, match="integrity tree"):
        tree.version(77)


def test_integrity_tree_detects_a_forged_counter() -> None:
    memory = PhysicalMemory(1)
    tree = CounterTree(memory, 64, key=b"k" * 32)
    raw = bytearray(memory.meta_load(0, 8))
    raw[0] = 5
    memory.meta_store(0, bytes(raw))
    with pytest.raises(IntegrityViolation):
        tree.version(0)
    assert tree.version(8) == 0  # another node is untouched


# -- TDX (the same Secure-EPT / PENDING discipline, different integrity) --------------------

def _tdx() -> tuple[Machine, TdxRules]:
    machine = Machine.for_guest(Mode.TDX, PAGES)
    machine.launch(PAGES)
    assert isinstance(machine.rules, TdxRules)
    return machine, machine.rules


def test_tdx_host_reads_zeros_and_its_write_poisons_the_td_read() -> None:
    machine, rules = _tdx()
    td = machine.guests[0]
    machine.guest_store(td, 1, DATA)
    frame = td.table[1]
    assert frame is not None
    assert rules.host_load(frame) == bytes(PAGE_SIZE)
    rules.host_store(frame, DATA)
    with pytest.raises(MachineCheck, match="TD-owner bit"):
        machine.guest_load(td, 1)


def test_tdx_aug_at_a_mapped_gpa_is_refused() -> None:
    machine, rules = _tdx()
    (spare,) = machine.hypervisor.allocate(1, protected=False)
    with pytest.raises(HypervisorFault, match="Secure EPT"):
        rules.page_aug(machine.guests[0], 2, spare)


def test_tdx_removed_then_augmented_page_is_pending_until_accepted_once() -> None:
    machine, rules = _tdx()
    td = machine.guests[0]
    frame = rules.page_remove(td, 3)
    rules.page_aug(td, 3, frame)
    with pytest.raises(GuestException, match="#VE"):
        machine.guest_load(td, 3)
    assert rules.accept(td, 3) is True
    assert rules.accept(td, 3) is False  # TDX_PAGE_ALREADY_ACCEPTED
    assert machine.guest_load(td, 3) == bytes(PAGE_SIZE)


def test_careful_td_refuses_an_accept_of_a_page_it_already_accepted() -> None:
    from veritee.platform.emulated.isolation import CarefulGuest, GuestKernel, GuestTerminated

    machine, _ = _tdx()
    kernel = GuestKernel(machine, machine.guests[0], CarefulGuest())
    with pytest.raises(GuestTerminated, match="ALREADY_ACCEPTED"):
        kernel.accept(0)
