"""What an attempt on guest memory can end in: outcomes and the hardware's exceptions.

The exceptions are raised by the emulated hardware rules (never by the attacker or the
referee): :class:`HypervisorFault` is an exception delivered to the untrusted host (#PF/#NPF
with an RMP or EPCM cause, an ENCLS error), :class:`GuestException` one delivered to the
guest (#VC on a page that is not validated, an SGX2 #PF on a pending page),
:class:`IntegrityViolation` the memory encryption engine's integrity check failing on a
read, :class:`UndefinedInstruction` an instruction the mode does not have (#UD).
:class:`GuestTerminated` is raised by *guest code* (:mod:`.kernel`), never by hardware: the
guest decided something is wrong and stops.

Every exception carries the ``rule`` that fired and its ``source`` (the document it comes
from), so a cell of the matrix can say which rule produced it.
"""

from __future__ import annotations

from enum import Enum, IntEnum

from veritee.errors import PlatformError

__all__ = [
    "GuestException",
    "GuestTerminated",
    "HardwareFault",
    "HypervisorFault",
    "IntegrityViolation",
    "MachineCheck",
    "Outcome",
    "PlatformLocked",
    "UndefinedInstruction",
    "VcCode",
]


class Outcome(Enum):
    """The observed result of one attack on one protection mode."""

    OBSERVED_PLAINTEXT = "observed plaintext"
    """The attacker read the guest's data in the clear."""
    CIPHERTEXT_PATTERN_LEAKED = "ciphertext pattern leaked"
    """The attacker saw only ciphertext, but equal plaintext gave equal ciphertext at the
    same address, so comparing snapshots told it which value the guest wrote (CipherLeaks,
    USENIX Security 2021)."""
    OBSERVED_CIPHERTEXT_ONLY = "observed ciphertext only"
    """The attacker read bytes encrypted under a key it does not have, and comparing them
    across writes taught it nothing."""
    BLOCKED = "blocked"
    """The hardware silently refused the access and the guest's data is intact (SGX
    abort-page semantics, SEV-SNP ciphertext hiding: reads return all ones)."""
    FAULT_TO_HYPERVISOR = "fault to hypervisor"
    """The hardware refused and raised an exception to the host (RMP #PF/#NPF, EPCM #PF,
    ELDU failure); the guest never consumed the attacker's data. The fault itself tells the
    host which page was touched (a controlled channel: not modelled further)."""
    DETECTED_BY_GUEST = "detected by guest"
    """The guest's own code noticed and stopped: a #VC on a page its bitmap says it
    validated, a PVALIDATE that reported no change, an SGX2 pending page it never asked
    for."""
    PLATFORM_LOCKED = "platform locked"
    """The memory encryption engine's integrity check failed and the memory controller
    locked the platform (client SGX "drop and lock"): nothing is consumed, nobody is told,
    the machine needs a reset."""
    MACHINE_CHECK = "machine check"
    """The memory controller flagged the line (TDX: TD-owner bit cleared by a host write)
    and the TD that consumed it took a machine check: it is torn down, nothing consumed."""
    UNDETECTED_CORRUPTION = "undetected corruption"
    """The guest consumed data other than what it last wrote, and nothing told it."""
    NOT_APPLICABLE = "not applicable"
    """The mechanism attacked does not exist in this mode: the attacker's instruction raised
    #UD (RMPUPDATE without SEV-SNP), or the guest has no such protocol (a private/shared
    conversion in a plain VM or an enclave). Computed from that exception, never declared."""


class VcCode(IntEnum):
    """#VC error codes the model raises (the SVM exit codes, APM Vol. 2 Appendix C, "SVM
    Intercept Exit Codes"; 0x404 as in the KVM SEV selftests' ``SVM_EXIT_NOT_VALIDATED``)."""

    NPF = 0x400
    NOT_VALIDATED = 0x404


class HardwareFault(PlatformError):  # noqa: N818 - "fault" is the hardware term
    """Base of the exceptions the emulated memory hardware raises."""

    def __init__(self, message: str, *, rule: str = "", source: str = "") -> None:
        super().__init__(message)
        self.rule = rule or message
        self.source = source


class HypervisorFault(HardwareFault):
    """An exception delivered to the host: #PF/#NPF (RMP, EPCM) or an ENCLS failure."""


class GuestException(HardwareFault):
    """An exception delivered to the guest: #VC under SEV-SNP (with its error ``code``), or
    an SGX2 #PF on an EPCM entry that is PENDING or MODIFIED (reported to the enclave)."""

    def __init__(self, message: str, *, code: int = VcCode.NOT_VALIDATED, rule: str = "",
                 source: str = "") -> None:
        super().__init__(message, rule=rule, source=source)
        self.code = code


class IntegrityViolation(HardwareFault):
    """The memory encryption engine found a MAC or integrity-tree mismatch on a read."""


class PlatformLocked(IntegrityViolation):
    """Client SGX's MEE on an integrity failure: "drop and lock". The memory controller
    locks until reset; the enclave never consumes the data and is not told why."""


class MachineCheck(IntegrityViolation):
    """TDX: a TD read a line whose TD-owner bit is clear (written by non-TD software): the
    line is poisoned and the TD takes a #MC; the TDX module tears the TD down."""


class UndefinedInstruction(HardwareFault):
    """#UD: the mode has no such instruction (RMPUPDATE on a host without SEV-SNP)."""


class GuestTerminated(PlatformError):  # noqa: N818 - what the guest does, not an error
    """Raised by guest code (never hardware): the guest detected tampering and stopped
    (a GHCB termination request under SEV-SNP, an enclave abort under SGX)."""

    def __init__(self, message: str, *, rule: str, source: str) -> None:
        super().__init__(message)
        self.rule = rule
        self.source = source
