"""One test per cell of the isolation matrix, named after the attack, the mode and the guest.

Every test launches a fresh emulated machine with a small guest (16 pages) that keeps a
secret under a careful or a naive guest policy, runs the attack through the hardware rules
and the guest's own code, and checks the observed outcome. The expected outcomes are written
here, independently of the code: a change in a hardware rule or in the guest's code that
moves a cell fails the cell's test.
"""

from __future__ import annotations

import pytest

from veritee.platform.emulated.isolation import Attack, Mode, Outcome, run_attack

A = Attack
O = Outcome  # noqa: E741 - short table
PLAIN, SEV, SNP, SGXC, SGXS, TDX = (Mode.PLAIN, Mode.SEV, Mode.SEV_SNP, Mode.SGX_CLIENT,
                                    Mode.SGX_SCALABLE, Mode.TDX)


def _run(attack: Attack, mode: Mode, guest: str = "careful", **kw: bool) -> Outcome:
    result = run_attack(attack, mode, pages=16, guest=guest, **kw)
    assert result.attack is attack and result.mode is mode and result.guest == guest
    assert result.trace, "every attempt records what happened"
    assert result.rule and result.source, "every cell names its rule and the rule's source"
    return result.outcome


# -- SEV-SNP: detection is the guest's code, not the hardware's ---------------------------

def test_snp_remap_detected_by_careful_guest() -> None:
    """#NPF, RMPUPDATE of the substitute, #VC 0x404 on a page the bitmap says is validated:
    the careful guest terminates."""
    assert _run(A.REMAP, SNP, "careful") is O.DETECTED_BY_GUEST


def test_snp_remap_undetected_by_naive_guest() -> None:
    """The naive guest re-validates on #VC: PVALIDATE of the substitute succeeds and the
    guest reads the attacker's frame."""
    assert _run(A.REMAP, SNP, "naive") is O.UNDETECTED_CORRUPTION


def test_snp_swap_detected_by_careful_guest() -> None:
    assert _run(A.SWAP, SNP, "careful") is O.DETECTED_BY_GUEST


def test_snp_swap_undetected_by_naive_guest() -> None:
    """The swapped frame decrypts cleanly (the tweak is the physical address)."""
    assert _run(A.SWAP, SNP, "naive") is O.UNDETECTED_CORRUPTION


def test_snp_double_validation_alias_detected_by_careful_guest() -> None:
    assert _run(A.ALIAS, SNP, "careful") is O.DETECTED_BY_GUEST


def test_snp_double_validation_alias_replays_stale_data_for_naive_guest() -> None:
    """Two frames validated at one GPA: the hypervisor points back at the old one and the
    guest reads stale data with no fault at all."""
    assert _run(A.ALIAS, SNP, "naive") is O.UNDETECTED_CORRUPTION


def test_snp_page_state_flip_detected_by_careful_guest() -> None:
    assert _run(A.PAGE_STATE, SNP, "careful") is O.DETECTED_BY_GUEST


def test_snp_page_state_flip_undetected_by_naive_guest() -> None:
    assert _run(A.PAGE_STATE, SNP, "naive") is O.UNDETECTED_CORRUPTION


def test_snp_psc_substitution_detected_by_careful_guest() -> None:
    """The rescind hits the substitute and reports no update: the careful guest stops."""
    assert _run(A.PSC_SUBSTITUTION, SNP, "careful") is O.DETECTED_BY_GUEST


def test_snp_psc_substitution_undetected_by_naive_guest() -> None:
    assert _run(A.PSC_SUBSTITUTION, SNP, "naive") is O.UNDETECTED_CORRUPTION


def test_snp_service_leak_detected_by_careful_guest() -> None:
    assert _run(A.SERVICE_LEAK, SNP, "careful") is O.DETECTED_BY_GUEST


def test_snp_service_leak_reveals_plaintext_through_naive_guest() -> None:
    """SEVered on SNP: the naive guest validates the secret's frame at the service's GPA and
    its service decrypts and sends it."""
    assert _run(A.SERVICE_LEAK, SNP, "naive") is O.OBSERVED_PLAINTEXT


@pytest.mark.parametrize("guest", ["careful", "naive"])
def test_snp_hypervisor_write_faults(guest: str) -> None:
    assert _run(A.WRITE, SNP, guest) is O.FAULT_TO_HYPERVISOR


@pytest.mark.parametrize("guest", ["careful", "naive"])
def test_snp_hypervisor_replay_faults(guest: str) -> None:
    assert _run(A.REPLAY, SNP, guest) is O.FAULT_TO_HYPERVISOR


# -- ciphertext side channel ----------------------------------------------------------------

def test_sev_ciphertext_pattern_leaks() -> None:
    """XTS with the address as tweak: the same value at the same address encrypts the
    same, so the ciphertext of one variable spells out the secret bits."""
    assert _run(A.CIPHERTEXT_COMPARE, SEV) is O.CIPHERTEXT_PATTERN_LEAKED


def test_snp_ciphertext_pattern_leaks_without_ciphertext_hiding() -> None:
    assert _run(A.CIPHERTEXT_COMPARE, SNP) is O.CIPHERTEXT_PATTERN_LEAKED


def test_snp_ciphertext_hiding_blocks_the_hypervisor_compare() -> None:
    assert _run(A.CIPHERTEXT_COMPARE, SNP, ciphertext_hiding=True) is O.BLOCKED
    assert _run(A.READ, SNP, ciphertext_hiding=True) is O.BLOCKED


def test_snp_ciphertext_hiding_does_not_stop_the_dram_compare() -> None:
    """Ciphertext hiding filters CPU reads; DRAM still holds deterministic ciphertext."""
    assert (_run(A.DRAM_CIPHERTEXT_COMPARE, SNP, ciphertext_hiding=True)
            is O.CIPHERTEXT_PATTERN_LEAKED)


def test_sgx_client_dram_ciphertext_changes_on_every_write() -> None:
    """The MEE's counter is seeded by address and version: no pattern."""
    assert _run(A.DRAM_CIPHERTEXT_COMPARE, SGXC) is O.OBSERVED_CIPHERTEXT_ONLY


def test_sgx_scalable_dram_ciphertext_pattern_leaks() -> None:
    """TME-MK is XTS: equal data at one address, equal ciphertext."""
    assert _run(A.DRAM_CIPHERTEXT_COMPARE, SGXS) is O.CIPHERTEXT_PATTERN_LEAKED


# -- client and scalable SGX apart ----------------------------------------------------------

def test_sgx_client_dram_replay_locks_the_platform() -> None:
    """The integrity tree catches the replay; the MEE drops and locks, the enclave is not
    told."""
    assert _run(A.DRAM_REPLAY, SGXC) is O.PLATFORM_LOCKED


def test_sgx_scalable_dram_replay_undetected() -> None:
    assert _run(A.DRAM_REPLAY, SGXS) is O.UNDETECTED_CORRUPTION


def test_sgx_eaug_substitution_detected_by_careful_enclave() -> None:
    """SGX2: EREMOVE + EAUG at the secret's linear page: a PENDING page the careful enclave
    never asked for."""
    assert _run(A.PAGE_STATE, SGXC, "careful") is O.DETECTED_BY_GUEST


def test_sgx_eaug_substitution_undetected_by_naive_enclave() -> None:
    """An enclave that EACCEPTs every pending fault accepts a zero page for its secret."""
    assert _run(A.PAGE_STATE, SGXS, "naive") is O.UNDETECTED_CORRUPTION


def test_sgx_eaug_alias_undetected_by_naive_enclave() -> None:
    """The EPCM does not stop two valid frames at one linear page: stale data."""
    assert _run(A.ALIAS, SGXC, "naive") is O.UNDETECTED_CORRUPTION


# -- TDX: the Secure EPT and logical integrity ---------------------------------------------

@pytest.mark.parametrize("attack", [A.REMAP, A.SWAP, A.ALIAS, A.SERVICE_LEAK])
def test_tdx_remapping_is_refused_by_the_secure_ept(attack: Attack) -> None:
    """The host cannot write the Secure EPT; AUG at a mapped GPA fails."""
    assert _run(attack, TDX, "naive") is O.FAULT_TO_HYPERVISOR


def test_tdx_host_write_is_a_machine_check_for_the_td() -> None:
    """Logical integrity: the write clears the TD-owner bit; the TD's read is a #MC."""
    assert _run(A.WRITE, TDX) is O.MACHINE_CHECK
    assert _run(A.REPLAY, TDX) is O.MACHINE_CHECK


def test_tdx_page_remove_and_aug_detected_by_careful_td() -> None:
    assert _run(A.PAGE_STATE, TDX, "careful") is O.DETECTED_BY_GUEST


def test_tdx_page_remove_and_aug_undetected_by_naive_td() -> None:
    """A TD that accepts every #VE'd pending page takes a zero page for its secret."""
    assert _run(A.PAGE_STATE, TDX, "naive") is O.UNDETECTED_CORRUPTION


def test_tdx_dram_replay_undetected() -> None:
    """No physical replay protection: ciphertext and TD-owner bits restored together."""
    assert _run(A.DRAM_REPLAY, TDX) is O.UNDETECTED_CORRUPTION


def test_tdx_dram_ciphertext_pattern_leaks() -> None:
    assert _run(A.DRAM_CIPHERTEXT_COMPARE, TDX) is O.CIPHERTEXT_PATTERN_LEAKED


# -- every cell -----------------------------------------------------------------------------
# Row: attack -> outcome per (plain, sev, sev-snp, sgx-client, sgx-scalable, tdx), careful guest
# then naive guest where they differ.
CAREFUL = {
    A.READ: (O.OBSERVED_PLAINTEXT, O.OBSERVED_CIPHERTEXT_ONLY, O.OBSERVED_CIPHERTEXT_ONLY,
             O.BLOCKED, O.BLOCKED, O.BLOCKED),
    A.WRITE: (O.UNDETECTED_CORRUPTION, O.UNDETECTED_CORRUPTION, O.FAULT_TO_HYPERVISOR,
              O.BLOCKED, O.BLOCKED, O.MACHINE_CHECK),
    A.REMAP: (O.UNDETECTED_CORRUPTION, O.UNDETECTED_CORRUPTION, O.DETECTED_BY_GUEST,
              O.FAULT_TO_HYPERVISOR, O.FAULT_TO_HYPERVISOR, O.FAULT_TO_HYPERVISOR),
    A.SWAP: (O.UNDETECTED_CORRUPTION, O.UNDETECTED_CORRUPTION, O.DETECTED_BY_GUEST,
             O.FAULT_TO_HYPERVISOR, O.FAULT_TO_HYPERVISOR, O.FAULT_TO_HYPERVISOR),
    A.REPLAY: (O.UNDETECTED_CORRUPTION, O.UNDETECTED_CORRUPTION, O.FAULT_TO_HYPERVISOR,
               O.FAULT_TO_HYPERVISOR, O.FAULT_TO_HYPERVISOR, O.MACHINE_CHECK),
    A.ALIAS: (O.UNDETECTED_CORRUPTION, O.UNDETECTED_CORRUPTION, O.DETECTED_BY_GUEST,
              O.DETECTED_BY_GUEST, O.DETECTED_BY_GUEST, O.FAULT_TO_HYPERVISOR),
    A.PAGE_STATE: (O.NOT_APPLICABLE, O.NOT_APPLICABLE, O.DETECTED_BY_GUEST,
                   O.DETECTED_BY_GUEST, O.DETECTED_BY_GUEST, O.DETECTED_BY_GUEST),
    A.PSC_SUBSTITUTION: (O.NOT_APPLICABLE, O.UNDETECTED_CORRUPTION, O.DETECTED_BY_GUEST,
                         O.NOT_APPLICABLE, O.NOT_APPLICABLE, O.FAULT_TO_HYPERVISOR),
    A.SERVICE_LEAK: (O.OBSERVED_PLAINTEXT, O.OBSERVED_PLAINTEXT, O.DETECTED_BY_GUEST,
                     O.FAULT_TO_HYPERVISOR, O.FAULT_TO_HYPERVISOR, O.FAULT_TO_HYPERVISOR),
    A.CIPHERTEXT_COMPARE: (O.OBSERVED_PLAINTEXT, O.CIPHERTEXT_PATTERN_LEAKED,
                           O.CIPHERTEXT_PATTERN_LEAKED, O.BLOCKED, O.BLOCKED, O.BLOCKED),
    A.DRAM_READ: (O.OBSERVED_PLAINTEXT, O.OBSERVED_CIPHERTEXT_ONLY,
                  O.OBSERVED_CIPHERTEXT_ONLY, O.OBSERVED_CIPHERTEXT_ONLY,
                  O.OBSERVED_CIPHERTEXT_ONLY, O.OBSERVED_CIPHERTEXT_ONLY),
    A.DRAM_CIPHERTEXT_COMPARE: (O.OBSERVED_PLAINTEXT, O.CIPHERTEXT_PATTERN_LEAKED,
                                O.CIPHERTEXT_PATTERN_LEAKED, O.OBSERVED_CIPHERTEXT_ONLY,
                                O.CIPHERTEXT_PATTERN_LEAKED, O.CIPHERTEXT_PATTERN_LEAKED),
    A.DRAM_REPLAY: (O.UNDETECTED_CORRUPTION, O.UNDETECTED_CORRUPTION,
                    O.UNDETECTED_CORRUPTION, O.PLATFORM_LOCKED, O.UNDETECTED_CORRUPTION,
                    O.UNDETECTED_CORRUPTION),
}
NAIVE = dict(CAREFUL) | {
    A.REMAP: (O.UNDETECTED_CORRUPTION, O.UNDETECTED_CORRUPTION, O.UNDETECTED_CORRUPTION,
              O.FAULT_TO_HYPERVISOR, O.FAULT_TO_HYPERVISOR, O.FAULT_TO_HYPERVISOR),
    A.SWAP: (O.UNDETECTED_CORRUPTION, O.UNDETECTED_CORRUPTION, O.UNDETECTED_CORRUPTION,
             O.FAULT_TO_HYPERVISOR, O.FAULT_TO_HYPERVISOR, O.FAULT_TO_HYPERVISOR),
    A.ALIAS: (O.UNDETECTED_CORRUPTION,) * 5 + (O.FAULT_TO_HYPERVISOR,),
    A.PAGE_STATE: (O.NOT_APPLICABLE, O.NOT_APPLICABLE, O.UNDETECTED_CORRUPTION,
                   O.UNDETECTED_CORRUPTION, O.UNDETECTED_CORRUPTION, O.UNDETECTED_CORRUPTION),
    A.PSC_SUBSTITUTION: (O.NOT_APPLICABLE, O.UNDETECTED_CORRUPTION, O.UNDETECTED_CORRUPTION,
                         O.NOT_APPLICABLE, O.NOT_APPLICABLE, O.FAULT_TO_HYPERVISOR),
    A.SERVICE_LEAK: (O.OBSERVED_PLAINTEXT, O.OBSERVED_PLAINTEXT, O.OBSERVED_PLAINTEXT,
                     O.FAULT_TO_HYPERVISOR, O.FAULT_TO_HYPERVISOR, O.FAULT_TO_HYPERVISOR),
}
COLUMNS = (PLAIN, SEV, SNP, SGXC, SGXS, TDX)
CELLS = [(attack, mode, guest, table[attack][i])
         for guest, table in (("careful", CAREFUL), ("naive", NAIVE))
         for attack in Attack for i, mode in enumerate(COLUMNS)]


@pytest.mark.parametrize(("attack", "mode", "guest", "want"), CELLS,
                         ids=[f"{m.value}-{a.value}-{g}-guest-{w.name.lower()}"
                              for a, m, g, w in CELLS])
def test_cell(attack: Attack, mode: Mode, guest: str, want: Outcome) -> None:
    """``<mode>-<attack>-<guest>-guest-<outcome>``: the attack, run, gives that outcome."""
    assert _run(attack, mode, guest) is want


def test_not_applicable_is_computed_from_an_undefined_instruction() -> None:
    """No cell is declared: plain's page-state cell comes from RMPUPDATE raising #UD."""
    result = run_attack(A.PAGE_STATE, PLAIN, pages=4)
    assert result.outcome is O.NOT_APPLICABLE
    assert any("#UD" in line for line in result.trace)
