"""Isolation on the emulated platform: who can read and corrupt guest memory, per technology.

INSECURE BY NAME, like the rest of :mod:`veritee.platform.emulated`: the "hardware" is
Python in one process. What it gives is a faithful *model* of the isolation rules, so their
effect can be run and measured:

* :mod:`.memory`: DRAM (:class:`PhysicalMemory`) and the memory encryption engine (AES-XTS,
  physical-address tweak).
* :mod:`.modes`, :mod:`.rmp`, :mod:`.epc` (+ :mod:`.integrity`): the hardware rules of
  ``plain``, ``sev``, ``sev-snp`` (RMP, PVALIDATE, VMPLs) and ``sgx`` (EPC, EPCM, MEE
  integrity tree, EWB/ELDU).
* :mod:`.stack`: the component stack, its trust per technology (:data:`TCB_TABLE`) and the
  :class:`Machine` that wires it.
* :mod:`.hypervisor`: the honest and the malicious hypervisor, and a physical attacker.
* :mod:`.workload`: a guest that keeps a secret, and the scan of all DRAM for it.
* :mod:`.matrix`: runs every attack on every mode (:func:`run_matrix`).
"""

from __future__ import annotations

from veritee.platform.emulated.isolation.faults import (
    GuestException,
    HardwareFault,
    HypervisorFault,
    IntegrityViolation,
    Outcome,
)
from veritee.platform.emulated.isolation.guest import Guest, Mode
from veritee.platform.emulated.isolation.hypervisor import (
    Attack,
    AttackResult,
    Hypervisor,
    MaliciousHypervisor,
    PhysicalAttacker,
)
from veritee.platform.emulated.isolation.matrix import (
    ATTACKS,
    MODES,
    OutcomeMatrix,
    run_attack,
    run_matrix,
    secret_scan,
)
from veritee.platform.emulated.isolation.memory import (
    PAGE_SIZE,
    MemoryEncryptionEngine,
    PhysicalMemory,
)
from veritee.platform.emulated.isolation.stack import (
    TCB_TABLE,
    Component,
    Machine,
    Technology,
    Trust,
)
from veritee.platform.emulated.isolation.workload import (
    SecretKeepingWorkload,
    p384_private_key_secret,
    scan_physical_memory,
    snp_sealing_key_secret,
)

__all__ = [
    "ATTACKS",
    "MODES",
    "PAGE_SIZE",
    "TCB_TABLE",
    "Attack",
    "AttackResult",
    "Component",
    "Guest",
    "GuestException",
    "HardwareFault",
    "Hypervisor",
    "HypervisorFault",
    "IntegrityViolation",
    "Machine",
    "MaliciousHypervisor",
    "MemoryEncryptionEngine",
    "Mode",
    "Outcome",
    "OutcomeMatrix",
    "PhysicalAttacker",
    "PhysicalMemory",
    "SecretKeepingWorkload",
    "Technology",
    "Trust",
    "demo_lines",
    "p384_private_key_secret",
    "run_attack",
    "run_matrix",
    "scan_physical_memory",
    "secret_scan",
    "snp_sealing_key_secret",
]


def demo_lines(attack: Attack = Attack.REMAP,
               modes: tuple[Mode, ...] = (Mode.SEV, Mode.SEV_SNP)) -> list[str]:
    """Run one hypervisor attack on a small guest per mode; describe it in a few lines."""
    lines = [f"A malicious hypervisor attacks a guest that keeps a P-384 private key in "
             f"memory: {attack.description}."]
    secret = p384_private_key_secret()
    for mode in modes:
        result = run_attack(attack, mode, pages=8, secret=secret)
        lines.append(f"  {mode.value}: {result.outcome.name}")
        lines += [f"    {step}" for step in result.trace]
    return lines
