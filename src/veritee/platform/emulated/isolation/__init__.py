"""Isolation on the emulated platform: who can read and corrupt guest memory, per technology.

INSECURE BY NAME, like the rest of :mod:`veritee.platform.emulated`: the "hardware" is
Python in one process. What it gives is a faithful *model* of the isolation rules, so their
effect can be run and measured:

* :mod:`.memory`: DRAM (:class:`PhysicalMemory`) and the memory encryption engine, with the
  cipher and key size of each processor generation (:class:`CpuGeneration`).
* :mod:`.modes`, :mod:`.rmp`, :mod:`.epc` (+ :mod:`.integrity`): the hardware rules of
  ``plain``, ``sev``, ``sev-snp`` (RMP, SNP_LAUNCH_UPDATE, PVALIDATE, RMPADJUST, VMPLs,
  ciphertext hiding), ``sgx-client`` (EPC, EPCM, SGX2, the MEE's counter-mode encryption
  and integrity tree, drop-and-lock), ``sgx-scalable`` (the same with TME-MK) and, in
  :mod:`.tdx`, ``tdx`` (Secure EPT, MKTME with logical integrity, PENDING pages).
* :mod:`.kernel`: guest code, where detection is decided: a careful guest (validate each
  page once) and a naive one (re-validate on #VC).
* :mod:`.stack`: the component stack, the isolation and attestation TCBs per technology
  (:data:`ISOLATION_TCB`, :data:`ATTESTATION_TCB`, a source per cell) and the
  :class:`Machine` that wires it.
* :mod:`.hypervisor`: the honest and the malicious hypervisor, and a physical attacker.
* :mod:`.workload`: a guest that keeps a secret, and the scan of all DRAM for it.
* :mod:`.matrix`: runs every attack on every mode and guest (:func:`run_matrix`);
  :mod:`.scope` lists what is not modelled.
"""

from __future__ import annotations

from veritee.platform.emulated.isolation.faults import (
    GuestException,
    GuestTerminated,
    HardwareFault,
    HypervisorFault,
    IntegrityViolation,
    MachineCheck,
    Outcome,
    PlatformLocked,
    UndefinedInstruction,
    VcCode,
)
from veritee.platform.emulated.isolation.guest import Guest, Mode
from veritee.platform.emulated.isolation.hypervisor import (
    Attack,
    AttackResult,
    Hypervisor,
    MaliciousHypervisor,
    PhysicalAttacker,
)
from veritee.platform.emulated.isolation.kernel import (
    GUEST_POLICIES,
    CarefulGuest,
    GuestKernel,
    GuestPolicy,
    NaiveGuest,
)
from veritee.platform.emulated.isolation.matrix import (
    ATTACKS,
    GUESTS,
    MODES,
    OutcomeMatrix,
    run_attack,
    run_matrix,
    secret_scan,
)
from veritee.platform.emulated.isolation.memory import (
    PAGE_SIZE,
    CpuGeneration,
    MemoryEncryptionEngine,
    PhysicalMemory,
)
from veritee.platform.emulated.isolation.scope import NOT_MODELLED
from veritee.platform.emulated.isolation.stack import (
    ATTESTATION_TCB,
    ISOLATION_TCB,
    Component,
    Machine,
    TcbCell,
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
    "ATTESTATION_TCB",
    "GUESTS",
    "GUEST_POLICIES",
    "ISOLATION_TCB",
    "MODES",
    "NOT_MODELLED",
    "PAGE_SIZE",
    "Attack",
    "AttackResult",
    "CarefulGuest",
    "Component",
    "CpuGeneration",
    "Guest",
    "GuestException",
    "GuestKernel",
    "GuestPolicy",
    "GuestTerminated",
    "HardwareFault",
    "Hypervisor",
    "HypervisorFault",
    "IntegrityViolation",
    "Machine",
    "MachineCheck",
    "MaliciousHypervisor",
    "MemoryEncryptionEngine",
    "Mode",
    "NaiveGuest",
    "Outcome",
    "OutcomeMatrix",
    "PhysicalAttacker",
    "PhysicalMemory",
    "PlatformLocked",
    "SecretKeepingWorkload",
    "TcbCell",
    "Technology",
    "Trust",
    "UndefinedInstruction",
    "VcCode",
    "demo_lines",
    "p384_private_key_secret",
    "run_attack",
    "run_matrix",
    "scan_physical_memory",
    "secret_scan",
    "snp_sealing_key_secret",
]


def demo_lines(attack: Attack = Attack.REMAP,
               modes: tuple[Mode, ...] = (Mode.SEV, Mode.SEV_SNP),
               guests: tuple[str, ...] = ("careful", "naive")) -> list[str]:
    """Run one hypervisor attack on a small guest per mode and guest policy; describe it
    in a few lines. Under SEV-SNP the guest's own code decides whether it is detected."""
    lines = [f"A malicious hypervisor attacks a guest that keeps a P-384 private key in "
             f"memory: {attack.description}."]
    secret = p384_private_key_secret()
    for mode in modes:
        for guest in guests if mode is Mode.SEV_SNP else guests[:1]:
            result = run_attack(attack, mode, pages=8, secret=secret, guest=guest)
            label = f"{mode.value} ({guest} guest)" if mode is Mode.SEV_SNP else mode.value
            lines.append(f"  {label}: {result.outcome.name}")
            lines += [f"    {step}" for step in result.trace]
    return lines
