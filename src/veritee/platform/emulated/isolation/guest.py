"""The protection modes and the hardware's view of a guest (a VM or an enclave)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from veritee.errors import PlatformError

__all__ = ["Guest", "Mode"]


class Mode(Enum):
    """Memory protection modes, selectable per guest."""

    PLAIN = "plain"
    """An ordinary VM: the hypervisor reads and writes guest memory freely."""
    SEV = "sev"
    """AMD SEV: AES-XTS per-guest key, physical-address tweak; no integrity."""
    SEV_SNP = "sev-snp"
    """AMD SEV-SNP: SEV plus the Reverse Map Table (ownership, GPA, Validated, VMPL perms)."""
    SGX_CLIENT = "sgx-client"
    """Client Intel SGX: EPC, EPCM, and the MEE (counter-mode encryption seeded by address
    and version, MACs, an integrity tree; an integrity failure locks the platform)."""
    SGX_SCALABLE = "sgx-scalable"
    """Scalable Intel SGX (3rd-gen Xeon Scalable on): EPC and EPCM, encrypted by TME-MK
    (AES-XTS, address tweak), no MAC, no integrity tree."""

    TDX = "tdx"
    """Intel TDX: private memory under MKTME (AES-XTS-128, TD key ID) with logical
    integrity (a TD-owner bit per line), mapped by the Secure EPT that only the TDX module
    writes; no physical replay protection."""

    @property
    def amd(self) -> bool:
        """Whether the mode runs on an AMD EPYC model (plain VMs included)."""
        return self in (Mode.PLAIN, Mode.SEV, Mode.SEV_SNP)

    @property
    def sgx(self) -> bool:
        """Whether this is one of the SGX modes (an enclave, not a VM)."""
        return self in (Mode.SGX_CLIENT, Mode.SGX_SCALABLE)


@dataclass(eq=False)
class Guest:
    """One guest as the hardware sees it.

    ``guest_id`` is the ASID of a VM (the key ID of its memory encryption key) or the
    enclave's ID (its SECS). ``table`` maps guest page numbers to physical frames; it is
    *host* state: the nested page table (NPT) of a VM or the OS page table that maps an
    enclave's linear pages, and the hypervisor may rewrite it at will. ``shared`` and
    ``validated`` are the guest kernel's own bookkeeping (in its private memory): the pages
    it maps with the C-bit clear, and the pages it knows are validated (PVALIDATEd by it,
    or by the firmware at launch; for an enclave: EADDed or EACCEPTed). The hardware never
    reads them; guest code (:mod:`.kernel`) does.
    """

    guest_id: int
    pages: int
    table: list[int | None]
    vmpl: int = 0
    shared: set[int] = field(default_factory=set)
    validated: set[int] = field(default_factory=set)

    def frame(self, page: int) -> int | None:
        """The frame the host currently maps ``page`` to (None when unmapped)."""
        if not 0 <= page < self.pages:
            raise PlatformError(f"guest page {page} outside 0..{self.pages - 1}")
        return self.table[page]
