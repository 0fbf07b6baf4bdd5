"""The component stack, with explicit trust, and the machine that wires it together.

::

    Application 1 .. n          the workload (here: one that keeps a secret)
    VM 1 .. n / enclave         guest OS, or an enclave inside an untrusted process
    Hypervisor (+ host OS)      manages guest memory: page tables, frame allocation
    Firmware                    host BIOS/UEFI (and SMM)
    Physical hardware           CPU package (cores, memory controller with its memory
                                encryption engine, on-die keys), the secure processor
                                (AMD-SP) or its equivalent, and DRAM outside the package

:data:`TCB_TABLE` says, per technology, which components a guest must trust (its trusted
computing base). :class:`Machine` builds the emulated stack for one protection
:class:`~.guest.Mode`: DRAM (:class:`.PhysicalMemory`), the memory encryption engine, the
mode's hardware rules, the secure processor that installs per-guest keys, and the
hypervisor. Every access to guest memory, by the guest or by the hypervisor, goes through the
mode's rules; nothing else touches DRAM except the explicitly physical attacker.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType
from typing import TYPE_CHECKING

from veritee.errors import PlatformError
from veritee.platform.emulated.isolation.epc import SgxRules
from veritee.platform.emulated.isolation.guest import Guest, Mode
from veritee.platform.emulated.isolation.memory import MemoryEncryptionEngine, PhysicalMemory
from veritee.platform.emulated.isolation.modes import MemoryRules, PlainRules, SevRules
from veritee.platform.emulated.isolation.rmp import SnpRules, check_vmpl

if TYPE_CHECKING:  # pragma: no cover - typing only
    from veritee.platform.emulated.isolation.hypervisor import Hypervisor

__all__ = [
    "TCB_TABLE",
    "Component",
    "Machine",
    "SecureProcessor",
    "TcbRow",
    "Technology",
    "Trust",
]


class Component(Enum):
    """The layers of the stack, bottom to top."""

    HARDWARE = "hardware"
    FIRMWARE = "firmware"
    SECURE_PROCESSOR = "secure processor"
    HYPERVISOR = "hypervisor"
    HOST_OS = "host OS"
    GUEST_OS = "guest OS"
    APPLICATION = "application"


class Technology(Enum):
    """Isolation technologies in the TCB table (TDX is tabled, not emulated)."""

    PLAIN_VM = "plain VM"
    SEV = "SEV"
    SEV_SNP = "SEV-SNP"
    SGX = "SGX"
    TDX = "TDX"


class Trust(Enum):
    """Whether a component is inside a guest's trusted computing base."""

    TRUSTED = "yes"
    PARTIAL = "partial"
    UNTRUSTED = "no"
    ABSENT = "-"


@dataclass(frozen=True)
class TcbRow:
    """One technology's TCB: a trust level per component, and why (with sources)."""

    technology: Technology
    trust: Mapping[Component, Trust]
    notes: tuple[str, ...]
    mode: Mode | None  # the emulated mode, when there is one

    def inside(self) -> list[Component]:
        """Components fully inside the TCB."""
        return [c for c in Component if self.trust[c] is Trust.TRUSTED]


def _row(tech: Technology, mode: Mode | None, marks: str, *notes: str) -> TcbRow:
    """``marks``: one letter per Component in order: Y trusted, P partial, N no, - absent."""
    letters = {"Y": Trust.TRUSTED, "P": Trust.PARTIAL, "N": Trust.UNTRUSTED, "-": Trust.ABSENT}
    trust = dict(zip(Component, (letters[m] for m in marks), strict=True))
    return TcbRow(tech, MappingProxyType(trust), notes, mode)


#: Component order: hardware, firmware, secure processor, hypervisor, host OS, guest OS, app.
TCB_TABLE: tuple[TcbRow, ...] = (
    _row(Technology.PLAIN_VM, Mode.PLAIN, "YY-YYYY",
         "the hypervisor manages guest memory and reads it in the clear",
         "DRAM and the memory bus are trusted too (no memory encryption)"),
    _row(Technology.SEV, Mode.SEV, "YNYPPYY",
         "AMD-SP firmware generates the per-guest key (SEV API LAUNCH_START)",
         "hypervisor/host OS: trusted for integrity, not confidentiality: it can remap, "
         "replay and corrupt guest memory undetected (APM Vol. 2 'Secure Encrypted "
         "Virtualization'; no integrity protection); without SEV-ES it also sees registers"),
    _row(Technology.SEV_SNP, Mode.SEV_SNP, "YNYNNYY",
         "AMD SEV-SNP whitepaper: the SoC hardware, the AMD-SP and the VM are trusted; BIOS, "
         "hypervisor, host OS, devices and other VMs are not",
         "integrity from the RMP targets software attackers; DRAM outside the package is "
         "not trusted for confidentiality but physical replay is out of scope"),
    _row(Technology.SGX, Mode.SGX, "YN-NNNY",
         "Intel SDM Vol. 3D / 'Intel SGX Explained': only the CPU package (cores, microcode, "
         "the MEE; Intel's architectural enclaves for attestation) and the enclave are "
         "trusted; there is no separate secure processor; BIOS/SMM, hypervisor and the OS "
         "(which pages the EPC) are not",
         "the MEE integrity tree covers physical DRAM replay (client SGX; not scalable SGX)"),
    _row(Technology.TDX, None, "YNYNNYY",
         "Intel TDX module spec: the CPU and the Intel-signed TDX module (in SEAM mode, "
         "standing in for the secure processor) are trusted; the VMM, host OS and BIOS are not",
         "not emulated here: listed for comparison"),
)


class SecureProcessor:
    """The AMD secure processor's part in isolation: it generates each guest's memory key
    and installs it in the memory controller by ASID (SEV API LAUNCH_START/ACTIVATE); the
    key never passes through the hypervisor."""

    def __init__(self, engine: MemoryEncryptionEngine) -> None:
        self._engine = engine

    def launch_start(self, asid: int) -> None:
        """Generate the VM encryption key for ``asid`` and install it."""
        if self._engine.has_key(asid):
            raise PlatformError(f"ASID {asid} is in use")
        self._engine.generate_key(asid)


class Machine:
    """One emulated host for one protection mode: the whole stack, wired.

    ``frames`` is all of DRAM; for ``sgx`` the first ``epc_frames`` of it are the EPC.
    """

    def __init__(self, mode: Mode, frames: int, *, epc_frames: int | None = None,
                 rng: Callable[[int], bytes] = os.urandom) -> None:
        from veritee.platform.emulated.isolation.hypervisor import Hypervisor

        self.mode = mode
        self.memory = PhysicalMemory(frames)
        self.engine = MemoryEncryptionEngine(rng)
        self.secure_processor: SecureProcessor | None = None
        self.rules: MemoryRules
        if mode is Mode.PLAIN:
            self.rules = PlainRules(self.memory, self.engine)
        elif mode is Mode.SEV:
            self.rules = SevRules(self.memory, self.engine)
        elif mode is Mode.SEV_SNP:
            self.rules = SnpRules(self.memory, self.engine)
        else:
            epc = range(epc_frames if epc_frames is not None else frames)
            self.rules = SgxRules(self.memory, self.engine, epc, rng=rng)
        if mode in (Mode.SEV, Mode.SEV_SNP):
            self.secure_processor = SecureProcessor(self.engine)
        self.hypervisor: Hypervisor = Hypervisor(self)
        self.guests: list[Guest] = []
        self._next_id = 1

    @classmethod
    def for_guest(cls, mode: Mode, guest_pages: int, *, spare_pages: int = 8,
                  rng: Callable[[int], bytes] = os.urandom) -> Machine:
        """A machine sized for one guest of ``guest_pages`` plus some host frames.

        Under ``sgx`` the EPC holds the enclave plus half the spare frames; the rest is
        ordinary host memory.
        """
        frames = guest_pages + spare_pages
        epc = guest_pages + spare_pages // 2 if mode is Mode.SGX else None
        return cls(mode, frames, epc_frames=epc, rng=rng)

    def tcb(self) -> TcbRow:
        """This machine's row of :data:`TCB_TABLE`."""
        return next(row for row in TCB_TABLE if row.mode is self.mode)

    def launch(self, pages: int, *, vmpl: int = 0) -> Guest:
        """Launch a guest (VM or enclave) of ``pages`` pages, frames chosen by the host.

        SEV/SEV-SNP: the secure processor installs the ASID's key first. SEV-SNP: the
        hypervisor assigns the frames in the RMP, then the guest's VMPL0 firmware PVALIDATEs
        every page before the guest OS runs at ``vmpl``.
        """
        check_vmpl(vmpl)
        guest_id = self._next_id
        self._next_id += 1
        if self.secure_processor is not None:
            self.secure_processor.launch_start(guest_id)
        frames = self.hypervisor.allocate(pages, protected=True)
        guest = Guest(guest_id=guest_id, pages=pages, table=[None] * pages)
        self.rules.launch(guest, frames)
        if isinstance(self.rules, SnpRules):
            for page in range(pages):
                self.rules.pvalidate(guest, page)
                guest.validated.add(page)
        guest.vmpl = vmpl
        self.guests.append(guest)
        return guest

    # -- the guest's side ------------------------------------------------------------------
    def guest_load(self, guest: Guest, page: int) -> bytes:
        """The guest reads one of its pages (through the mode's rules)."""
        return self.rules.guest_load(guest, page)

    def guest_store(self, guest: Guest, page: int, data: bytes) -> None:
        """The guest writes one of its pages (through the mode's rules)."""
        self.rules.guest_store(guest, page, data)

    def guest_set_shared(self, guest: Guest, page: int, shared: bool) -> None:
        """The guest asks for a page-state change (GHCB Page State Change under SEV-SNP).

        Private -> shared: the guest rescinds validation, then the hypervisor makes the frame
        host-owned. Shared -> private: the hypervisor assigns the frame, then the guest
        validates it. Under ``sev`` only the guest's C-bit changes; ``plain``/``sgx`` have
        no shared pages.
        """
        if self.mode in (Mode.PLAIN, Mode.SGX):
            raise PlatformError(f"{self.mode.value} guests have no private/shared pages")
        rules = self.rules
        if shared:
            if isinstance(rules, SnpRules):
                rules.pvalidate(guest, page, validate=False)
                guest.validated.discard(page)
            self.hypervisor.page_state_change(guest, page, shared=True)
            guest.shared.add(page)
        else:
            self.hypervisor.page_state_change(guest, page, shared=False)
            guest.shared.discard(page)
            if isinstance(rules, SnpRules):
                rules.pvalidate(guest, page)
                guest.validated.add(page)
