"""The TCB table agrees with what the attacks show: trust is not just asserted."""

from __future__ import annotations

import pytest

from veritee.platform.emulated.isolation import (
    ATTACKS,
    TCB_TABLE,
    Component,
    Outcome,
    Trust,
    run_matrix,
)
from veritee.platform.emulated.isolation.stack import Machine

HARMFUL = {Outcome.OBSERVED_PLAINTEXT, Outcome.UNDETECTED_CORRUPTION}
MATRIX = run_matrix(pages=16)
HYPERVISOR_ATTACKS = [a for a in ATTACKS if not a.physical]


@pytest.mark.parametrize("row", [r for r in TCB_TABLE if r.mode is not None],
                         ids=lambda r: r.technology.value)
def test_tcb_row_matches_the_hypervisor_attacks(row: object) -> None:
    from veritee.platform.emulated.isolation.stack import TcbRow

    assert isinstance(row, TcbRow) and row.mode is not None
    outcomes = {MATRIX.outcome(a, row.mode) for a in HYPERVISOR_ATTACKS}
    trust = row.trust[Component.HYPERVISOR]
    if trust is Trust.UNTRUSTED:  # outside the TCB: it can neither read nor corrupt
        assert not outcomes & HARMFUL
    elif trust is Trust.PARTIAL:  # SEV: cannot read, can corrupt
        assert Outcome.OBSERVED_PLAINTEXT not in outcomes
        assert Outcome.UNDETECTED_CORRUPTION in outcomes
    else:  # inside: it sees and changes everything
        assert {Outcome.OBSERVED_PLAINTEXT, Outcome.UNDETECTED_CORRUPTION} <= outcomes


def test_every_emulated_mode_has_a_tcb_row() -> None:
    assert {Machine.for_guest(m, 4).tcb().mode for m in MATRIX.modes} == set(MATRIX.modes)


def test_guest_os_is_outside_only_for_sgx() -> None:
    outside = {r.technology.value for r in TCB_TABLE
               if r.trust[Component.GUEST_OS] is not Trust.TRUSTED}
    assert outside == {"SGX"}
