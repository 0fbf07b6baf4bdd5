"""AMD SEV-SNP: SEV encryption plus the Reverse Map Table (RMP).

Modelled on the AMD64 Architecture Programmer's Manual Vol. 2 (pub. 24593), section "Secure
Nested Paging (SEV-SNP)" (RMP, RMP checks, PVALIDATE, RMPUPDATE, RMPADJUST, VMPLs) and the
whitepaper "AMD SEV-SNP: Strengthening VM Isolation with Integrity Protection and More"
(2020), sections "Reverse Map Table" and "Page Validation". The rules, as emulated here:

1. One RMP entry per physical frame: hypervisor-owned, or assigned to an ASID at a
   guest-physical address, with a Validated bit and per-VMPL permissions.
2. Host (hypervisor) *writes* to a frame assigned to a guest fault (#PF, RMP violation);
   host reads are allowed and see ciphertext (the host uses no guest key).
3. A guest's private access (C-bit set) to GPA *g* that the nested page table maps to frame
   *f* must find RMP[*f*] assigned to its ASID at GPA *g*, else #NPF to the hypervisor; then
   RMP[*f*].Validated must be set, else #VC to the guest; then the guest's VMPL must have the
   permission, else #NPF. A shared access (C-bit clear) to a guest-assigned frame is #NPF.
4. RMPUPDATE (hypervisor) may set any entry, and always clears Validated and gives VMPL0 full
   permission, the others none. So the hypervisor *can* reassign a page or flip it between
   private and shared, but cannot make the guest use the page without the guest noticing: the
   guest PVALIDATEd each page once, and the #VC on a page it already validated tells it the
   page changed behind its back (the whitepaper's remapping scenario).
5. PVALIDATE (guest, VMPL0) sets or clears Validated; it reports "no update" when the bit
   already had that value. RMPADJUST lets a VMPL grant lower-privileged VMPLs (numerically
   higher) at most its own permissions.

Integrity here is access control by the CPU, not cryptography: SNP targets software
attackers (the hypervisor). A physical attacker writing DRAM directly bypasses the RMP, and
the model shows that too (see :mod:`.hypervisor`'s ``PhysicalAttacker``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntFlag

from veritee.errors import PlatformError
from veritee.platform.emulated.isolation.faults import GuestException, HypervisorFault
from veritee.platform.emulated.isolation.guest import Guest, Mode
from veritee.platform.emulated.isolation.memory import MemoryEncryptionEngine, PhysicalMemory
from veritee.platform.emulated.isolation.modes import SevRules

__all__ = ["VMPLS", "RmpEntry", "SnpRules", "VmplPerm"]

VMPLS = 4  # VMPL0 (most privileged) .. VMPL3


class VmplPerm(IntFlag):
    """Per-VMPL page permissions in an RMP entry (APM Vol. 2, RMPADJUST: read, write,
    execute-user, execute-supervisor)."""

    NONE = 0
    READ = 1
    WRITE = 2
    EXEC_USER = 4
    EXEC_SUPERVISOR = 8
    ALL = 15


@dataclass(slots=True)
class RmpEntry:
    """One RMP entry: the owner of a physical frame and what may be done with it."""

    asid: int | None = None  # None: hypervisor-owned (shared)
    gpn: int = 0  # guest page number (GPA >> 12) the frame is assigned at
    validated: bool = False
    perms: list[VmplPerm] = field(default_factory=lambda: [VmplPerm.NONE] * VMPLS)

    @property
    def assigned(self) -> bool:
        """Whether the frame belongs to a guest."""
        return self.asid is not None

    def describe(self) -> str:
        """Short text for fault messages."""
        if self.asid is None:
            return "hypervisor-owned"
        return f"assigned to ASID {self.asid} at GPA page {self.gpn:#x}"


class SnpRules(SevRules):
    """SEV-SNP: SEV encryption, plus RMP checks on every access (see the module docstring)."""

    mode = Mode.SEV_SNP

    def __init__(self, memory: PhysicalMemory, engine: MemoryEncryptionEngine) -> None:
        super().__init__(memory, engine)
        self.rmp = [RmpEntry() for _ in range(memory.frames)]

    # -- launch: the hypervisor assigns (RMPUPDATE); the guest validates at boot -----------
    def launch(self, guest: Guest, frames: list[int]) -> None:
        """Map the frames and assign each to the guest's ASID at its GPA (not validated)."""
        super().launch(guest, frames)
        for page, frame in enumerate(frames):
            self.rmpupdate(frame, asid=guest.guest_id, gpn=page)

    # -- host instructions -----------------------------------------------------------------
    def rmpupdate(self, frame: int, *, asid: int | None, gpn: int = 0) -> None:
        """RMPUPDATE: set the owner and GPA of a frame; Validated is always cleared.

        APM Vol. 2 "RMPUPDATE": the new entry's Validated bit is 0, VMPL0 gets full
        permissions and VMPL1-3 none.
        """
        entry = self.rmp[frame]
        entry.asid, entry.gpn, entry.validated = asid, gpn, False
        entry.perms = [VmplPerm.ALL] + [VmplPerm.NONE] * (VMPLS - 1)

    def host_store(self, frame: int, data: bytes) -> None:
        """Host writes to a guest-assigned frame are an RMP violation (#PF to the host)."""
        entry = self.rmp[frame]
        if entry.assigned:
            raise HypervisorFault(f"#PF (RMP violation): host write to frame {frame:#x}, "
                                  f"{entry.describe()}")
        super().host_store(frame, data)

    # -- guest instructions ----------------------------------------------------------------
    def pvalidate(self, guest: Guest, page: int, *, validate: bool = True) -> bool:
        """PVALIDATE: set (or rescind) Validated; False when the bit already had that value.

        Only VMPL0 may validate; the entry must be assigned to this guest at this GPA.
        """
        if guest.vmpl != 0:
            raise GuestException(f"#GP: PVALIDATE at VMPL{guest.vmpl} (VMPL0 only)")
        frame = self.translate(guest, page)
        entry = self._owned(guest, page, frame)
        if entry.validated == validate:
            return False  # FAIL_NOUPDATE (rFLAGS.CF=1)
        entry.validated = validate
        return True

    def rmpadjust(self, guest: Guest, page: int, target_vmpl: int, perms: VmplPerm) -> None:
        """RMPADJUST: grant a less privileged VMPL at most the caller's own permissions."""
        if not guest.vmpl < target_vmpl < VMPLS:
            raise GuestException(f"#GP: RMPADJUST from VMPL{guest.vmpl} to VMPL{target_vmpl}")
        frame = self.translate(guest, page)
        entry = self._owned(guest, page, frame)
        if perms & ~entry.perms[guest.vmpl]:
            raise GuestException(f"RMPADJUST: VMPL{guest.vmpl} cannot grant {perms!r}")
        entry.perms[target_vmpl] = perms

    # -- the guest's accesses --------------------------------------------------------------
    def _owned(self, guest: Guest, page: int, frame: int) -> RmpEntry:
        entry = self.rmp[frame]
        if entry.asid != guest.guest_id or entry.gpn != page:
            raise HypervisorFault(f"#NPF (RMP violation): ASID {guest.guest_id} GPA page "
                                  f"{page:#x} maps frame {frame:#x}, {entry.describe()}")
        return entry

    def _check(self, guest: Guest, page: int, need: VmplPerm) -> None:
        frame = self.translate(guest, page)
        entry = self.rmp[frame]
        if page in guest.shared:
            if entry.assigned:
                raise HypervisorFault(f"#NPF (RMP violation): shared access to frame "
                                      f"{frame:#x}, {entry.describe()}")
            return
        entry = self._owned(guest, page, frame)
        if not entry.validated:
            raise GuestException(f"#VC (page not validated): GPA page {page:#x} -> frame "
                                 f"{frame:#x}")
        if not entry.perms[guest.vmpl] & need:
            raise HypervisorFault(f"#NPF (VMPL permission): VMPL{guest.vmpl} lacks "
                                  f"{need.name} on GPA page {page:#x}")

    def guest_load(self, guest: Guest, page: int) -> bytes:
        """RMP check, then SEV decryption."""
        self._check(guest, page, VmplPerm.READ)
        return super().guest_load(guest, page)

    def guest_store(self, guest: Guest, page: int, data: bytes) -> None:
        """RMP check, then SEV encryption."""
        self._check(guest, page, VmplPerm.WRITE)
        super().guest_store(guest, page, data)


def check_vmpl(vmpl: int) -> int:
    """Validate a VMPL number."""
    if not 0 <= vmpl < VMPLS:
        raise PlatformError(f"VMPL must be 0..{VMPLS - 1}, got {vmpl}")
    return vmpl
