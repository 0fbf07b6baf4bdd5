"""The TCB tables agree with what the attacks show, and every cell cites its source."""

from __future__ import annotations

import pytest

from veritee.platform.emulated.isolation import (
    ATTACKS,
    ATTESTATION_TCB,
    ISOLATION_TCB,
    Attack,
    Component,
    Mode,
    Outcome,
    Technology,
    Trust,
    run_matrix,
)
from veritee.platform.emulated.isolation.stack import Machine, TcbRow

HARMFUL = {Outcome.OBSERVED_PLAINTEXT, Outcome.UNDETECTED_CORRUPTION}
MATRIX = run_matrix(pages=16)
HYPERVISOR_ATTACKS = [a for a in ATTACKS if not a.physical]
PHYSICAL_ATTACKS = [a for a in ATTACKS if a.physical]


def _row(rows: tuple[TcbRow, ...], tech: Technology) -> TcbRow:
    return next(r for r in rows if r.technology is tech)


@pytest.mark.parametrize("row", [r for r in ISOLATION_TCB if r.mode is not None],
                         ids=lambda r: r.technology.value)
def test_isolation_tcb_hypervisor_matches_the_careful_guest_matrix(row: TcbRow) -> None:
    assert row.mode is not None
    outcomes = {MATRIX.outcome(a, row.mode, "careful") for a in HYPERVISOR_ATTACKS}
    if row.trust[Component.HYPERVISOR] is Trust.UNTRUSTED:  # it can neither read nor corrupt
        assert not outcomes & HARMFUL
    else:  # inside: it sees and changes guest data
        assert outcomes >= HARMFUL


@pytest.mark.parametrize("row", [r for r in ISOLATION_TCB if r.mode is not None],
                         ids=lambda r: r.technology.value)
def test_isolation_tcb_dram_matches_the_physical_attacks(row: TcbRow) -> None:
    assert row.mode is not None
    outcomes = {MATRIX.outcome(a, row.mode) for a in PHYSICAL_ATTACKS}
    trust = row.trust[Component.DRAM]
    if trust is Trust.UNTRUSTED:
        assert not outcomes & (HARMFUL | {Outcome.CIPHERTEXT_PATTERN_LEAKED})
    elif trust is Trust.PARTIAL:  # confidential, but replay or patterns get through
        assert Outcome.OBSERVED_PLAINTEXT not in outcomes
        assert outcomes & {Outcome.UNDETECTED_CORRUPTION, Outcome.CIPHERTEXT_PATTERN_LEAKED}
    else:
        assert Outcome.OBSERVED_PLAINTEXT in outcomes


def test_sev_hypervisor_is_inside_the_isolation_tcb() -> None:
    """Regression: SEV's hypervisor was 'partial'; SEVered remapping leaks plaintext."""
    assert _row(ISOLATION_TCB, Technology.SEV).trust[Component.HYPERVISOR] is Trust.TRUSTED
    assert MATRIX.outcome(Attack.SERVICE_LEAK, Mode.SEV) is Outcome.OBSERVED_PLAINTEXT


def test_snp_hypervisor_is_outside_only_for_the_careful_guest() -> None:
    """The TCB row says 'no', and its note says why: the naive guest's column has harmful
    outcomes from the hypervisor."""
    row = _row(ISOLATION_TCB, Technology.SEV_SNP)
    assert row.trust[Component.HYPERVISOR] is Trust.UNTRUSTED
    assert row.mode is not None
    naive = {MATRIX.outcome(a, row.mode, "naive") for a in HYPERVISOR_ATTACKS}
    assert naive >= HARMFUL
    assert any("validates each GPA once" in note for note in row.notes)


def test_vendor_enclaves_are_in_the_attestation_tcb_only() -> None:
    """SGX's QE/PCE and TDX's TD Quoting Enclave sign quotes; they isolate nothing."""
    for tech in (Technology.SGX_CLIENT, Technology.SGX_SCALABLE, Technology.TDX):
        assert _row(ATTESTATION_TCB, tech).trust[Component.VENDOR_ENCLAVES] is Trust.TRUSTED
        assert _row(ISOLATION_TCB, tech).trust[Component.VENDOR_ENCLAVES] is Trust.ABSENT


def test_isolation_and_attestation_tcbs_differ() -> None:
    differ = [t for t in Technology
              if _row(ISOLATION_TCB, t).inside() != _row(ATTESTATION_TCB, t).inside()]
    assert {Technology.SGX_CLIENT, Technology.TDX, Technology.SEV} <= set(differ)


def test_tdx_hypervisor_outside_and_dram_partial_as_the_tdx_column_shows() -> None:
    row = _row(ISOLATION_TCB, Technology.TDX)
    assert row.mode is Mode.TDX
    assert row.trust[Component.HYPERVISOR] is Trust.UNTRUSTED
    assert row.trust[Component.DRAM] is Trust.PARTIAL
    assert MATRIX.outcome(Attack.DRAM_REPLAY, Mode.TDX) is Outcome.UNDETECTED_CORRUPTION


def test_tdx_module_is_software_in_seam_mode_not_a_secure_processor() -> None:
    cell = _row(ISOLATION_TCB, Technology.TDX).cells[Component.SECURITY_MODULE]
    assert cell.trust is Trust.TRUSTED and "SEAM" in cell.source
    assert "TD Quoting Enclave" in _row(ATTESTATION_TCB, Technology.TDX).cells[
        Component.VENDOR_ENCLAVES].source


def test_guest_firmware_has_a_column() -> None:
    snp = _row(ISOLATION_TCB, Technology.SEV_SNP).cells[Component.GUEST_FIRMWARE]
    assert snp.trust is Trust.TRUSTED and "SVSM" in snp.source


@pytest.mark.parametrize("rows", [ISOLATION_TCB, ATTESTATION_TCB], ids=["isolation", "attest"])
def test_every_tcb_cell_cites_a_source(rows: tuple[TcbRow, ...]) -> None:
    assert {r.technology for r in rows} == set(Technology)
    for row in rows:
        assert set(row.cells) == set(Component)
        assert all(len(cell.source) > 20 for cell in row.cells.values())


def test_every_emulated_mode_has_a_tcb_row() -> None:
    assert {Machine.for_guest(m, 4).tcb().mode for m in MATRIX.modes} == set(MATRIX.modes)


def test_guest_os_is_outside_only_for_sgx() -> None:
    outside = {r.technology for r in ISOLATION_TCB
               if r.trust[Component.GUEST_OS] is not Trust.TRUSTED}
    assert outside == {Technology.SGX_CLIENT, Technology.SGX_SCALABLE}
