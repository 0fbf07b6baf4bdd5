"""One test per cell of the isolation matrix, named after the attack and what stops it.

Every test launches a fresh emulated machine with a small guest (16 pages) that keeps a
secret, runs the attack through the hardware rules and checks the observed outcome.
"""

from __future__ import annotations

from veritee.platform.emulated.isolation import Attack, Mode, Outcome, run_attack


def _run(attack: Attack, mode: Mode) -> Outcome:
    result = run_attack(attack, mode, pages=16)
    assert result.attack is attack and result.mode is mode
    assert result.trace, "every attempt records what happened"
    return result.outcome


def test_plain_hypervisor_reads_plaintext() -> None:
    """An ordinary VM: the hypervisor reads the secret in the clear."""
    assert _run(Attack.READ, Mode.PLAIN) is Outcome.OBSERVED_PLAINTEXT


def test_sev_hypervisor_sees_only_ciphertext() -> None:
    """SEV: the host load carries no guest key; DRAM holds AES-XTS ciphertext."""
    assert _run(Attack.READ, Mode.SEV) is Outcome.OBSERVED_CIPHERTEXT_ONLY


def test_snp_hypervisor_sees_only_ciphertext() -> None:
    """SEV-SNP: the RMP lets the host read guest pages, but only ciphertext."""
    assert _run(Attack.READ, Mode.SEV_SNP) is Outcome.OBSERVED_CIPHERTEXT_ONLY


def test_sgx_hypervisor_read_is_blocked_by_abort_page() -> None:
    """SGX: software outside the enclave reading the PRM gets all ones."""
    assert _run(Attack.READ, Mode.SGX) is Outcome.BLOCKED


def test_plain_hypervisor_write_goes_undetected() -> None:
    """Plain: the guest consumes the hypervisor's bytes without noticing."""
    assert _run(Attack.WRITE, Mode.PLAIN) is Outcome.UNDETECTED_CORRUPTION


def test_sev_hypervisor_write_goes_undetected() -> None:
    """SEV has no integrity: the guest decrypts the written bytes to garbage, silently."""
    assert _run(Attack.WRITE, Mode.SEV) is Outcome.UNDETECTED_CORRUPTION


def test_snp_hypervisor_write_faults() -> None:
    """SEV-SNP: a host write to a guest-assigned frame is an RMP violation (#PF)."""
    assert _run(Attack.WRITE, Mode.SEV_SNP) is Outcome.FAULT_TO_HYPERVISOR


def test_sgx_hypervisor_write_is_blocked_by_abort_page() -> None:
    """SGX: writes to the PRM from outside enclave mode are dropped."""
    assert _run(Attack.WRITE, Mode.SGX) is Outcome.BLOCKED


def test_plain_hypervisor_remap_goes_undetected() -> None:
    """Plain: the guest reads whatever frame the hypervisor maps."""
    assert _run(Attack.REMAP, Mode.PLAIN) is Outcome.UNDETECTED_CORRUPTION


def test_sev_hypervisor_remap_goes_undetected() -> None:
    """SEV: the hypervisor owns the NPT; the remapped page decrypts to garbage, silently."""
    assert _run(Attack.REMAP, Mode.SEV) is Outcome.UNDETECTED_CORRUPTION


def test_snp_hypervisor_remap_is_detected() -> None:
    """SEV-SNP: #NPF (frame not the guest's); RMPUPDATE to fix it clears Validated -> #VC."""
    assert _run(Attack.REMAP, Mode.SEV_SNP) is Outcome.DETECTED_BY_GUEST


def test_sgx_hypervisor_remap_faults_on_epcm_check() -> None:
    """SGX: an ELRANGE page mapped outside the EPC is a #PF to the OS."""
    assert _run(Attack.REMAP, Mode.SGX) is Outcome.FAULT_TO_HYPERVISOR


def test_plain_hypervisor_swap_goes_undetected() -> None:
    """Plain: the guest reads the other page's data at the secret's address."""
    assert _run(Attack.SWAP, Mode.PLAIN) is Outcome.UNDETECTED_CORRUPTION


def test_sev_hypervisor_swap_goes_undetected() -> None:
    """SEV: a swapped mapping decrypts cleanly (same key, right tweak): silent corruption."""
    assert _run(Attack.SWAP, Mode.SEV) is Outcome.UNDETECTED_CORRUPTION


def test_snp_hypervisor_swap_is_detected() -> None:
    """SEV-SNP: the RMP's GPA check faults; reassigning clears Validated -> #VC."""
    assert _run(Attack.SWAP, Mode.SEV_SNP) is Outcome.DETECTED_BY_GUEST


def test_sgx_hypervisor_swap_faults_on_epcm_check() -> None:
    """SGX: the EPCM records each page's linear address; a mismatch is a #PF."""
    assert _run(Attack.SWAP, Mode.SGX) is Outcome.FAULT_TO_HYPERVISOR


def test_plain_hypervisor_replay_goes_undetected() -> None:
    """Plain: an old copy put back is consumed as current."""
    assert _run(Attack.REPLAY, Mode.PLAIN) is Outcome.UNDETECTED_CORRUPTION


def test_sev_replay_goes_undetected() -> None:
    """SEV's known weakness: the hypervisor puts old ciphertext back at the same address,
    where it decrypts to the old data, silently."""
    assert _run(Attack.REPLAY, Mode.SEV) is Outcome.UNDETECTED_CORRUPTION


def test_snp_hypervisor_replay_faults() -> None:
    """SEV-SNP: the replaying host write is an RMP violation (#PF)."""
    assert _run(Attack.REPLAY, Mode.SEV_SNP) is Outcome.FAULT_TO_HYPERVISOR


def test_sgx_hypervisor_replay_faults_in_eldu() -> None:
    """SGX: ELDU of an old EWB blob fails: its version no longer matches the VA slot."""
    assert _run(Attack.REPLAY, Mode.SGX) is Outcome.FAULT_TO_HYPERVISOR


def test_plain_hypervisor_page_state_change_is_not_applicable() -> None:
    """Plain VMs have no hardware page state to flip."""
    assert _run(Attack.PAGE_STATE, Mode.PLAIN) is Outcome.NOT_APPLICABLE


def test_sev_hypervisor_page_state_change_is_not_applicable() -> None:
    """SEV keeps no hardware page state (the C-bit is in guest page tables)."""
    assert _run(Attack.PAGE_STATE, Mode.SEV) is Outcome.NOT_APPLICABLE


def test_snp_hypervisor_page_state_change_is_detected() -> None:
    """SEV-SNP: private->shared->private via RMPUPDATE clears Validated: #VC."""
    assert _run(Attack.PAGE_STATE, Mode.SEV_SNP) is Outcome.DETECTED_BY_GUEST


def test_sgx_hypervisor_page_state_change_faults_in_eldu() -> None:
    """SGX: reloading an evicted page with altered PCMD fails ELDU's MAC check."""
    assert _run(Attack.PAGE_STATE, Mode.SGX) is Outcome.FAULT_TO_HYPERVISOR


def test_plain_physical_dram_read_sees_plaintext() -> None:
    """A bus/cold-boot attacker reads plaintext off the DRAM chips."""
    assert _run(Attack.DRAM_READ, Mode.PLAIN) is Outcome.OBSERVED_PLAINTEXT


def test_sev_physical_dram_read_sees_only_ciphertext() -> None:
    """SEV encrypts in the memory controller: DRAM holds ciphertext only."""
    assert _run(Attack.DRAM_READ, Mode.SEV) is Outcome.OBSERVED_CIPHERTEXT_ONLY


def test_snp_physical_dram_read_sees_only_ciphertext() -> None:
    """SEV-SNP: same encryption as SEV on the DRAM chips."""
    assert _run(Attack.DRAM_READ, Mode.SEV_SNP) is Outcome.OBSERVED_CIPHERTEXT_ONLY


def test_sgx_physical_dram_read_sees_only_ciphertext() -> None:
    """SGX's MEE encrypts EPC pages before they leave the package."""
    assert _run(Attack.DRAM_READ, Mode.SGX) is Outcome.OBSERVED_CIPHERTEXT_ONLY


def test_plain_physical_dram_replay_goes_undetected() -> None:
    """Plain: physical replay of DRAM goes unnoticed."""
    assert _run(Attack.DRAM_REPLAY, Mode.PLAIN) is Outcome.UNDETECTED_CORRUPTION


def test_sev_physical_dram_replay_goes_undetected() -> None:
    """SEV: no integrity against a physical replay."""
    assert _run(Attack.DRAM_REPLAY, Mode.SEV) is Outcome.UNDETECTED_CORRUPTION


def test_snp_physical_dram_replay_goes_undetected() -> None:
    """SEV-SNP's integrity is the CPU's RMP check: DRAM writes bypass it (out of scope)."""
    assert _run(Attack.DRAM_REPLAY, Mode.SEV_SNP) is Outcome.UNDETECTED_CORRUPTION


def test_sgx_physical_dram_replay_is_detected_by_integrity_tree() -> None:
    """SGX: the MEE's integrity tree has its root on die: replay fails the check."""
    assert _run(Attack.DRAM_REPLAY, Mode.SGX) is Outcome.DETECTED_BY_GUEST
