"""What an attempt on guest memory can end in: outcomes and the hardware's exceptions.

The exceptions are raised by the emulated hardware rules (never by the attacker or the
referee): :class:`HypervisorFault` is an exception delivered to the untrusted host (#PF/#NPF
with an RMP or EPCM cause, an ENCLS error), :class:`GuestException` one delivered to the
guest (#VC on a page that is not validated), :class:`IntegrityViolation` the memory
encryption engine's integrity check failing on a read.
"""

from __future__ import annotations

from enum import Enum

from veritee.errors import PlatformError

__all__ = [
    "GuestException",
    "HardwareFault",
    "HypervisorFault",
    "IntegrityViolation",
    "Outcome",
]


class Outcome(Enum):
    """The observed result of one attack on one protection mode."""

    OBSERVED_PLAINTEXT = "observed plaintext"
    """The attacker read the guest's data in the clear."""
    OBSERVED_CIPHERTEXT_ONLY = "observed ciphertext only"
    """The attacker read the bytes, but they are encrypted under a key it does not have."""
    BLOCKED = "blocked"
    """The hardware silently refused the access and the guest's data is intact (SGX
    abort-page semantics: reads of the PRM return all ones, writes are dropped)."""
    FAULT_TO_HYPERVISOR = "fault to hypervisor"
    """The hardware refused and raised an exception to the host (RMP #PF/#NPF, EPCM #PF,
    ELDU failure); the guest never consumed the attacker's data."""
    DETECTED_BY_GUEST = "detected by guest"
    """The corruption reached the TEE and was detected before use: the guest took a #VC on
    a page it had validated, or the memory encryption engine's integrity check failed."""
    UNDETECTED_CORRUPTION = "undetected corruption"
    """The guest consumed data other than what it last wrote, and nothing told it."""
    NOT_APPLICABLE = "not applicable"
    """The mode has no such mechanism to attack (e.g. no page-state table in plain/sev)."""


class HardwareFault(PlatformError):  # noqa: N818 - "fault" is the hardware term
    """Base of the exceptions the emulated memory hardware raises."""


class HypervisorFault(HardwareFault):
    """An exception delivered to the host: #PF/#NPF (RMP, EPCM) or an ENCLS failure."""


class GuestException(HardwareFault):
    """An exception delivered to the guest: #VC (page not validated) under SEV-SNP."""


class IntegrityViolation(HardwareFault):
    """The memory encryption engine found a MAC or integrity-tree mismatch on a read.

    Real SGX MEEs "drop and lock" (the memory controller locks until reset); the enclave
    never consumes the data, which is what this models.
    """
