"""AMD SEV-SNP: SEV encryption plus the Reverse Map Table (RMP).

Modelled on the AMD64 Architecture Programmer's Manual Vol. 2 (pub. 24593), section "Secure
Nested Paging (SEV-SNP)" (RMP, RMP checks, PVALIDATE, RMPUPDATE, RMPADJUST, VMPLs), the SNP
firmware ABI (pub. 56860: SNP_LAUNCH_UPDATE, page states) and the whitepaper "AMD SEV-SNP:
Strengthening VM Isolation with Integrity Protection and More" (2020), sections "Reverse Map
Table" and "Page Validation". The rules, as emulated here:

1. One RMP entry per physical frame: hypervisor-owned, or assigned to an ASID at a
   guest-physical address, with a Validated bit, per-VMPL permissions, and the Immutable
   and VMSA bits (firmware and VMSA pages; ABI 56860 "Page States").
2. Host (hypervisor) *writes* to a frame assigned to a guest fault (#PF, RMP violation);
   host reads are allowed and see ciphertext (the host uses no guest key), or all ones
   with ciphertext hiding (Zen 5).
3. A guest's private access (C-bit set) to GPA *g* that the nested page table maps to frame
   *f* must find RMP[*f*] assigned to its ASID at GPA *g*, else #NPF to the hypervisor; then
   RMP[*f*].Validated must be set, else #VC (error code 0x404, NOT_VALIDATED) to the guest;
   then the guest's VMPL must have the permission, else #NPF. A shared access (C-bit
   clear) to a guest-assigned frame is #NPF.
4. RMPUPDATE (hypervisor) may set any entry that is not Immutable, and always clears
   Validated and gives VMPL0 full permission, the others none.
5. PVALIDATE (guest, VMPL0) sets or clears Validated; it reports "no update"
   (FAIL_NOUPDATE, rFLAGS.CF=1) when the bit already had that value. RMPADJUST lets a VMPL
   grant lower-privileged VMPLs at most its own permissions, on a validated page only.
6. Launch pages are not PVALIDATEd by the guest: SNP_LAUNCH_UPDATE encrypts, measures and
   validates them in the firmware.

What the hardware does *not* do is remember that a GPA was validated before. RMPUPDATE of a
new frame at a validated GPA leaves the old frame assigned and validated; the #VC on the new
one is all the guest gets. Whether that is detection is up to the guest's code
(:mod:`.kernel`): a guest that re-validates on #VC accepts the substitute.

Integrity here is access control by the CPU, not cryptography: SNP targets software
attackers (the hypervisor). A physical attacker writing DRAM directly bypasses the RMP, and
the model shows that too (see :mod:`.hypervisor`'s ``PhysicalAttacker``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntFlag

from veritee.errors import PlatformError
from veritee.platform.emulated.isolation import sources
from veritee.platform.emulated.isolation.faults import GuestException, HypervisorFault, VcCode
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
    immutable: bool = False  # firmware pages: RMPUPDATE refused (ABI 56860 "Firmware")
    vmsa: bool = False  # a guest's VMSA (ABI 56860 "Context" state)

    @property
    def assigned(self) -> bool:
        """Whether the frame belongs to a guest."""
        return self.asid is not None

    @property
    def state(self) -> str:
        """The page state (SNP ABI 56860, "Page States"), for the states modelled."""
        if not self.assigned:
            return "HV-Fixed" if self.immutable else "Hypervisor"
        if self.asid == 0:
            return "Firmware" if self.immutable else "Metadata"
        if self.vmsa:
            return "Context"
        return "Guest-Valid" if self.validated else "Guest-Invalid"

    def describe(self) -> str:
        """Short text for fault messages."""
        if self.asid is None:
            return "hypervisor-owned"
        return f"assigned to ASID {self.asid} at GPA page {self.gpn:#x} ({self.state})"


class SnpRules(SevRules):
    """SEV-SNP: SEV encryption, plus RMP checks on every access (see the module docstring)."""

    mode = Mode.SEV_SNP

    def __init__(self, memory: PhysicalMemory, engine: MemoryEncryptionEngine, *,
                 ciphertext_hiding: bool = False) -> None:
        super().__init__(memory, engine)
        self.rmp = [RmpEntry() for _ in range(memory.frames)]
        self.ciphertext_hiding = ciphertext_hiding

    # -- launch: RMPUPDATE by the hypervisor, then SNP_LAUNCH_UPDATE by the firmware ------
    def launch(self, guest: Guest, frames: list[int]) -> None:
        """Map the frames, assign each to the guest's ASID at its GPA, and let the firmware
        validate them (SNP_LAUNCH_UPDATE)."""
        super().launch(guest, frames)
        for page, frame in enumerate(frames):
            self.rmpupdate(frame, asid=guest.guest_id, gpn=page)
            self.snp_launch_update(guest, page)

    def snp_launch_update(self, guest: Guest, page: int, *, vmsa: bool = False) -> None:
        """SNP_LAUNCH_UPDATE (firmware, before LAUNCH_FINISH): encrypt and measure the page
        in place, then set Validated: the guest never PVALIDATEs launch pages (ABI 56860
        SNP_LAUNCH_UPDATE; page type VMSA sets the VMSA bit)."""
        frame = self.translate(guest, page)
        entry = self._owned(guest, page, frame)
        if entry.validated:
            raise HypervisorFault(f"SNP_LAUNCH_UPDATE: frame {frame:#x} is not Pre-Guest",
                                  source=sources.SNP_ABI_LAUNCH)
        entry.validated, entry.vmsa = True, vmsa

    def mark_firmware(self, frame: int) -> None:
        """Give a frame to the firmware (ASID 0, Immutable): RMPUPDATE can no longer touch
        it (ABI 56860 "Firmware" page state, e.g. the firmware's own metadata)."""
        entry = self.rmp[frame]
        entry.asid, entry.gpn, entry.validated, entry.immutable = 0, 0, False, True

    # -- host instructions -----------------------------------------------------------------
    def rmpupdate(self, frame: int, *, asid: int | None, gpn: int = 0) -> None:
        """RMPUPDATE: set the owner and GPA of a frame; Validated is always cleared.

        APM Vol. 2 "RMPUPDATE": the new entry's Validated bit is 0, VMPL0 gets full
        permissions and VMPL1-3 none.
        """
        entry = self.rmp[frame]
        if entry.immutable:
            raise HypervisorFault(f"RMPUPDATE: frame {frame:#x} is Immutable "
                                  f"({entry.state}): FAIL_PERMISSION",
                                  rule="RMPUPDATE refused on an Immutable entry",
                                  source=sources.APM_RMP)
        entry.asid, entry.gpn, entry.validated, entry.vmsa = asid, gpn, False, False
        entry.perms = [VmplPerm.ALL] + [VmplPerm.NONE] * (VMPLS - 1)

    def host_load(self, frame: int) -> bytes:
        """Host reads see ciphertext; with ciphertext hiding, all ones on a guest's page."""
        if self.ciphertext_hiding and self.rmp[frame].assigned:
            return b"\xff" * len(self.memory.load(frame))
        return super().host_load(frame)

    def host_store(self, frame: int, data: bytes) -> None:
        """Host writes to a guest-assigned frame are an RMP violation (#PF to the host)."""
        entry = self.rmp[frame]
        if entry.assigned:
            raise HypervisorFault(f"#PF (RMP violation): host write to frame {frame:#x}, "
                                  f"{entry.describe()}",
                                  rule="RMP: host write to a guest-assigned frame is #PF",
                                  source=sources.APM_RMP)
        super().host_store(frame, data)

    # -- guest instructions ----------------------------------------------------------------
    def pvalidate(self, guest: Guest, page: int, *, validate: bool = True) -> bool:
        """PVALIDATE: set (or rescind) Validated; False when the bit already had that value.

        Only VMPL0 may validate; the entry must be assigned to this guest at this GPA.
        """
        if guest.vmpl != 0:
            raise GuestException(f"#GP: PVALIDATE at VMPL{guest.vmpl} (VMPL0 only)", code=0,
                                 source=sources.APM_PVALIDATE)
        frame = self.translate(guest, page)
        entry = self._owned(guest, page, frame)
        if entry.validated == validate:
            return False  # FAIL_NOUPDATE (rFLAGS.CF=1)
        entry.validated = validate
        return True

    def rmpadjust(self, guest: Guest, page: int, target_vmpl: int, perms: VmplPerm) -> None:
        """RMPADJUST: grant a less privileged VMPL at most the caller's own permissions.

        The target page is checked as for an access: assigned to this guest at this GPA
        (else #NPF) and validated (else #VC NOT_VALIDATED): permissions cannot be handed
        out on a page the guest has not accepted (APM Vol. 3 RMPADJUST). The refusal is
        certain; that the hardware reports it as #VC 0x404 rather than an RAX error code is
        this model's reading, not checked against the APM's pseudocode in this session.
        """
        if not guest.vmpl < target_vmpl < VMPLS:
            raise GuestException(f"#GP: RMPADJUST from VMPL{guest.vmpl} to VMPL{target_vmpl}",
                                 code=0, source=sources.APM_RMPADJUST)
        frame = self.translate(guest, page)
        entry = self._owned(guest, page, frame)
        if not entry.validated:
            raise GuestException(f"#VC (NOT_VALIDATED): RMPADJUST on GPA page {page:#x}, "
                                 f"frame {frame:#x} not validated",
                                 rule="RMPADJUST needs a validated page",
                                 source=sources.APM_RMPADJUST)
        if perms & ~entry.perms[guest.vmpl]:
            raise GuestException(f"RMPADJUST: VMPL{guest.vmpl} cannot grant {perms!r} "
                                 "(FAIL_PERMISSION)", code=0, source=sources.APM_RMPADJUST)
        entry.perms[target_vmpl] = perms

    # -- the guest's accesses --------------------------------------------------------------
    def _owned(self, guest: Guest, page: int, frame: int) -> RmpEntry:
        entry = self.rmp[frame]
        if entry.asid != guest.guest_id or entry.gpn != page:
            raise HypervisorFault(f"#NPF (RMP violation): ASID {guest.guest_id} GPA page "
                                  f"{page:#x} maps frame {frame:#x}, {entry.describe()}",
                                  rule="RMP: the frame must be assigned to the guest at that "
                                  "GPA, else #NPF to the hypervisor", source=sources.APM_RMP)
        return entry

    def _check(self, guest: Guest, page: int, need: VmplPerm) -> None:
        frame = self.translate(guest, page)
        entry = self.rmp[frame]
        if page in guest.shared:
            if entry.assigned:
                raise HypervisorFault(f"#NPF (RMP violation): shared access to frame "
                                      f"{frame:#x}, {entry.describe()}",
                                      rule="RMP: a shared access to a guest-assigned frame "
                                      "is #NPF", source=sources.APM_RMP)
            return
        entry = self._owned(guest, page, frame)
        if not entry.validated:
            raise GuestException(f"#VC {VcCode.NOT_VALIDATED:#x} (NOT_VALIDATED): GPA page "
                                 f"{page:#x} -> frame {frame:#x}",
                                 code=VcCode.NOT_VALIDATED,
                                 rule="RMP: access to an unvalidated page is #VC 0x404",
                                 source=sources.APM_RMP)
        if not entry.perms[guest.vmpl] & need:
            raise HypervisorFault(f"#NPF (VMPL permission): VMPL{guest.vmpl} lacks "
                                  f"{need.name} on GPA page {page:#x}",
                                  rule="RMP: VMPL permission check", source=sources.APM_RMP)

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
