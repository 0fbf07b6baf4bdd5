"""The component stack, with explicit trust, and the machine that wires it together.

::

    Application 1 .. n          the workload (here: one that keeps a secret)
    VM 1 .. n / enclave         guest OS, or an enclave inside an untrusted process
    Hypervisor (+ host OS)      manages guest memory: page tables, frame allocation
    Firmware                    host BIOS/UEFI (and SMM)
    Physical hardware           CPU package (cores, memory controller with its memory
                                encryption engine, on-die keys), the secure processor
                                (AMD-SP) or its equivalent, and DRAM outside the package

:data:`ISOLATION_TCB` says, per technology, which components can break a guest's isolation
(its isolation TCB); :data:`ATTESTATION_TCB` which ones can forge or taint its evidence. The
two sets differ (vendor quoting enclaves are in the second only), and every cell cites its
source. :class:`Machine` builds the emulated stack for one protection
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
from veritee.platform.emulated.isolation.epc import SgxFlavour, SgxRules
from veritee.platform.emulated.isolation.guest import Guest, Mode
from veritee.platform.emulated.isolation.memory import (
    CpuGeneration,
    MemoryEncryptionEngine,
    PhysicalMemory,
)
from veritee.platform.emulated.isolation.modes import MemoryRules, PlainRules, SevRules
from veritee.platform.emulated.isolation.rmp import SnpRules, check_vmpl
from veritee.platform.emulated.isolation.tdx import TdxRules

if TYPE_CHECKING:  # pragma: no cover - typing only
    from veritee.platform.emulated.isolation.hypervisor import Hypervisor

__all__ = [
    "ATTESTATION_TCB",
    "ISOLATION_TCB",
    "Component",
    "Machine",
    "SecureProcessor",
    "TcbCell",
    "TcbRow",
    "Technology",
    "Trust",
]


class Component(Enum):
    """The components of the stack, bottom to top."""

    CPU = "CPU"
    DRAM = "DRAM/bus"
    HOST_FIRMWARE = "host firmware"
    SECURITY_MODULE = "security module"
    VENDOR_ENCLAVES = "vendor enclaves"
    HYPERVISOR = "hypervisor"
    HOST_OS = "host OS"
    GUEST_FIRMWARE = "guest firmware"
    GUEST_OS = "guest OS"
    APPLICATION = "application"


class Technology(Enum):
    """Technologies in the TCB tables, one per emulated mode."""

    PLAIN_VM = "plain VM"
    SEV = "SEV"
    SEV_SNP = "SEV-SNP"
    SGX_CLIENT = "SGX client"
    SGX_SCALABLE = "SGX scalable"
    TDX = "TDX"


class Trust(Enum):
    """Whether a component is inside a TCB."""

    TRUSTED = "yes"
    PARTIAL = "partial"
    UNTRUSTED = "no"
    ABSENT = "-"


@dataclass(frozen=True)
class TcbCell:
    """One component's trust in one technology, and the document that says so."""

    trust: Trust
    source: str


@dataclass(frozen=True)
class TcbRow:
    """One technology's TCB: a cell per component, notes, and the emulated mode if any."""

    technology: Technology
    cells: Mapping[Component, TcbCell]
    notes: tuple[str, ...]
    mode: Mode | None  # the emulated mode, when there is one

    @property
    def trust(self) -> Mapping[Component, Trust]:
        """The trust level per component."""
        return MappingProxyType({c: cell.trust for c, cell in self.cells.items()})

    def inside(self) -> list[Component]:
        """Components fully inside the TCB."""
        return [c for c in Component if self.trust[c] is Trust.TRUSTED]


# Sources of the TCB cells (the text of each is in the JSON output and docs/isolation.md).
_SRC = {
    "plain": "ordinary virtualisation: host software owns the guest's memory and state",
    "apm-sev": "AMD64 APM Vol. 2 15.34 (SEV): per-VM key in the memory controller, no integrity",
    "sev-api": "AMD SEV API (55766): the AMD-SP generates VM keys (LAUNCH_START) and "
               "measures the launch image (LAUNCH_MEASURE)",
    "severed": "SEVered (EuroSec 2018): remapping leaks plaintext through a guest service; "
               "without SEV-ES the VMCB save area (registers) is in the clear",
    "sev-es": "AMD SEV-ES whitepaper (2017): register state is encrypted only with SEV-ES",
    "snp-wp": "AMD SEV-SNP whitepaper (2020), 'Threat Model': AMD SoC, AMD-SP and the VM "
              "are trusted; BIOS, hypervisor, host OS, devices, other VMs are not",
    "snp-naive": "SEV-SNP whitepaper 'Page Validation' + this model's naive-guest matrix: "
                 "the hypervisor is outside only for a guest that validates each GPA once",
    "snp-phys": "SEV-SNP whitepaper 'Threat Model': physical attacks on DRAM (replay) are out "
                "of scope; equal plaintext at one address gives equal ciphertext "
                "(CipherLeaks, USENIX Security 2021) unless ciphertext hiding is on",
    "snp-abi": "SEV-SNP ABI (56860): the AMD-SP firmware signs reports with the VCEK/VLEK",
    "ovmf": "OVMF is measured into MEASUREMENT (SNP_LAUNCH_UPDATE); an SVSM at VMPL0 is "
            "trusted by lower VMPLs (AMD SVSM spec 58019)",
    "sev-guest": "the guest OS and application run inside the VM and choose REPORT_DATA",
    "sgx-cpu": "Intel SDM Vol. 3D / 'Intel SGX Explained': only the CPU package (cores, "
               "microcode, the MEE) and the enclave are trusted",
    "sgx-os": "Intel SDM Vol. 3D: the OS/VMM manage the EPC (EPCM-checked) and are untrusted",
    "sgx-mee": "Gueron (ePrint 2016/204): client SGX's MEE gives DRAM confidentiality, "
               "integrity and replay protection",
    "sgx-tmemk": "scalable SGX uses TME-MK (AES-XTS): no integrity tree, physical replay "
                 "out of scope",
    "sgx-qe": "Intel DCAP: the Quoting Enclave and Provisioning Certification Enclave are "
              "Intel-signed enclaves on the untrusted host; they sign every quote",
    "sgx-none": "SGX has no separate security processor or guest firmware",
    "tdx-cpu": "Intel TDX whitepaper: the CPU package (with its MKTME engine) is trusted",
    "tdx-module": "Intel TDX Module spec: the TDX module is Intel-signed software in SEAM "
                  "mode (loaded by the P-SEAMLDR), not a separate processor",
    "tdx-qe": "Intel TDX DCAP: TD quotes are signed by the SGX-based TD Quoting Enclave",
    "tdx-host": "Intel TDX whitepaper: the VMM, host OS and BIOS are untrusted",
    "tdx-tdvf": "TDVF is measured into MRTD; the TD's firmware is in its TCB",
    "tdx-phys": "Intel TDX: logical integrity by default, no physical replay protection",
    "na": "not involved in this technology",
}


def _row(tech: Technology, mode: Mode | None, cells: str, *notes: str) -> TcbRow:
    """``cells``: one ``MARK:source`` per Component, in order, separated by spaces; MARK is
    Y (trusted), P (partial), N (not) or - (absent)."""
    letters = {"Y": Trust.TRUSTED, "P": Trust.PARTIAL, "N": Trust.UNTRUSTED, "-": Trust.ABSENT}
    parsed = [item.split(":", 1) for item in cells.split()]
    table = {c: TcbCell(letters[m], _SRC[src])
             for c, (m, src) in zip(Component, parsed, strict=True)}
    return TcbRow(tech, MappingProxyType(table), notes, mode)


#: Who can break the isolation of a guest's memory and state. Component order: CPU, DRAM,
#: host firmware, security module, vendor enclaves, hypervisor, host OS, guest firmware,
#: guest OS, application.
ISOLATION_TCB: tuple[TcbRow, ...] = (
    _row(Technology.PLAIN_VM, Mode.PLAIN,
         "Y:plain Y:plain Y:plain -:na -:na Y:plain Y:plain Y:plain Y:plain Y:plain",
         "the hypervisor manages guest memory and reads it in the clear"),
    _row(Technology.SEV, Mode.SEV,
         "Y:apm-sev P:apm-sev N:apm-sev Y:sev-api -:na Y:severed Y:severed Y:sev-api "
         "Y:sev-guest Y:sev-guest",
         "the hypervisor is inside: it corrupts memory undetected, leaks plaintext by "
         "remapping through a guest service (SEVered; the service-leak row), and without "
         "SEV-ES reads the guest's registers",
         "DRAM is partial: encrypted (confidentiality) but not integrity-protected"),
    _row(Technology.SEV_SNP, Mode.SEV_SNP,
         "Y:snp-wp P:snp-phys N:snp-wp Y:snp-wp -:na N:snp-naive N:snp-wp Y:ovmf "
         "Y:sev-guest Y:sev-guest",
         "the hypervisor is outside only if the guest validates each GPA once: a guest that "
         "re-validates on #VC loses remap, alias, page-state and service-leak (naive column)",
         "DRAM is partial: physical replay goes undetected and equal plaintext gives equal "
         "ciphertext at one address"),
    _row(Technology.SGX_CLIENT, Mode.SGX_CLIENT,
         "Y:sgx-cpu N:sgx-mee N:sgx-os -:sgx-none -:na N:sgx-os N:sgx-os -:sgx-none "
         "N:sgx-os Y:sgx-cpu",
         "DRAM is outside: the MEE's integrity tree turns a physical replay into a platform "
         "lock"),
    _row(Technology.SGX_SCALABLE, Mode.SGX_SCALABLE,
         "Y:sgx-cpu P:sgx-tmemk N:sgx-os -:sgx-none -:na N:sgx-os N:sgx-os -:sgx-none "
         "N:sgx-os Y:sgx-cpu",
         "DRAM is partial: TME-MK encrypts but a physical replay goes undetected"),
    _row(Technology.TDX, Mode.TDX,
         "Y:tdx-cpu P:tdx-phys N:tdx-host Y:tdx-module -:na N:tdx-host N:tdx-host "
         "Y:tdx-tdvf Y:sev-guest Y:sev-guest",
         "the Secure EPT stops remapping in the TDX module; a host write is a #MC for the "
         "TD; a physical replay goes undetected (DRAM partial)"),
)

#: Who can forge or taint the evidence a verifier appraises.
ATTESTATION_TCB: tuple[TcbRow, ...] = (
    _row(Technology.PLAIN_VM, Mode.PLAIN,
         "Y:plain -:na Y:plain -:na -:na Y:plain Y:plain Y:plain Y:plain Y:plain",
         "no hardware attestation: any evidence (e.g. a vTPM) comes from the host"),
    _row(Technology.SEV, Mode.SEV,
         "Y:sev-api -:na N:sev-api Y:sev-api -:na N:sev-api N:sev-api Y:sev-api -:na -:na",
         "launch attestation only (LAUNCH_MEASURE): the guest OS and application are "
         "not measured or involved"),
    _row(Technology.SEV_SNP, Mode.SEV_SNP,
         "Y:snp-abi -:na N:snp-wp Y:snp-abi -:na N:snp-wp N:snp-wp Y:ovmf Y:sev-guest "
         "Y:sev-guest",
         "the AMD-SP signs the report; an SVSM at VMPL0 can serve a vTPM"),
    _row(Technology.SGX_CLIENT, Mode.SGX_CLIENT,
         "Y:sgx-cpu -:na N:sgx-os -:sgx-none Y:sgx-qe N:sgx-os N:sgx-os -:sgx-none "
         "N:sgx-os Y:sgx-cpu",
         "the QE and PCE are Intel-signed enclaves running on the untrusted host"),
    _row(Technology.SGX_SCALABLE, Mode.SGX_SCALABLE,
         "Y:sgx-cpu -:na N:sgx-os -:sgx-none Y:sgx-qe N:sgx-os N:sgx-os -:sgx-none "
         "N:sgx-os Y:sgx-cpu",
         "as client SGX (DCAP QE and PCE)"),
    _row(Technology.TDX, Mode.TDX,
         "Y:tdx-cpu -:na N:tdx-host Y:tdx-module Y:tdx-qe N:tdx-host N:tdx-host "
         "Y:tdx-tdvf Y:sev-guest Y:sev-guest",
         "the TDX module makes the TDREPORT; the SGX-based TD Quoting Enclave signs it"),
)


#: The processor generation each mode runs on unless told otherwise.
DEFAULT_GENERATION: Mapping[Mode, CpuGeneration] = MappingProxyType({
    Mode.PLAIN: CpuGeneration.MILAN,
    Mode.SEV: CpuGeneration.MILAN,
    Mode.SEV_SNP: CpuGeneration.MILAN,
    Mode.SGX_CLIENT: CpuGeneration.SGX_CLIENT_MEE,
    Mode.SGX_SCALABLE: CpuGeneration.ICELAKE_TME_MK,
    Mode.TDX: CpuGeneration.SAPPHIRE_RAPIDS_TDX,
})


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
                 generation: CpuGeneration | None = None, ciphertext_hiding: bool = False,
                 rng: Callable[[int], bytes] = os.urandom) -> None:
        from veritee.platform.emulated.isolation.hypervisor import Hypervisor

        self.mode = mode
        self.generation = generation or DEFAULT_GENERATION[mode]
        if (self.generation.amd != mode.amd
                or (not mode.amd and self.generation is not DEFAULT_GENERATION[mode])):
            raise PlatformError(f"{mode.value} cannot run on {self.generation.value}")
        if mode is Mode.SEV_SNP and self.generation in (CpuGeneration.NAPLES,
                                                        CpuGeneration.ROME):
            raise PlatformError(f"SEV-SNP needs {CpuGeneration.MILAN.value} or later, not "
                                f"{self.generation.value}")
        if ciphertext_hiding and not (mode is Mode.SEV_SNP
                                      and self.generation.ciphertext_hiding):
            raise PlatformError(f"ciphertext hiding needs sev-snp on "
                                f"{CpuGeneration.TURIN.value}, not {mode.value} on "
                                f"{self.generation.value}")
        self.memory = PhysicalMemory(frames)
        self.engine = MemoryEncryptionEngine(rng, generation=self.generation)
        self.secure_processor: SecureProcessor | None = None
        self.rules: MemoryRules
        if mode is Mode.PLAIN:
            self.rules = PlainRules(self.memory, self.engine)
        elif mode is Mode.SEV:
            self.rules = SevRules(self.memory, self.engine)
        elif mode is Mode.SEV_SNP:
            self.rules = SnpRules(self.memory, self.engine, ciphertext_hiding=ciphertext_hiding)
        elif mode is Mode.TDX:
            self.rules = TdxRules(self.memory, self.engine)
        else:
            epc = range(epc_frames if epc_frames is not None else frames)
            flavour = SgxFlavour.CLIENT if mode is Mode.SGX_CLIENT else SgxFlavour.SCALABLE
            self.rules = SgxRules(self.memory, self.engine, epc, flavour=flavour, rng=rng)
        if mode in (Mode.SEV, Mode.SEV_SNP):
            self.secure_processor = SecureProcessor(self.engine)
        self.hypervisor: Hypervisor = Hypervisor(self)
        self.guests: list[Guest] = []
        self._next_id = 1

    @classmethod
    def for_guest(cls, mode: Mode, guest_pages: int, *, spare_pages: int = 8,
                  generation: CpuGeneration | None = None, ciphertext_hiding: bool = False,
                  rng: Callable[[int], bytes] = os.urandom) -> Machine:
        """A machine sized for one guest of ``guest_pages`` plus some host frames.

        Under SGX the EPC holds the enclave plus half the spare frames; the rest is
        ordinary host memory.
        """
        frames = guest_pages + spare_pages
        epc = guest_pages + spare_pages // 2 if mode.sgx else None
        return cls(mode, frames, epc_frames=epc, generation=generation,
                   ciphertext_hiding=ciphertext_hiding, rng=rng)

    def tcb(self) -> TcbRow:
        """This machine's row of :data:`ISOLATION_TCB`."""
        return next(row for row in ISOLATION_TCB if row.mode is self.mode)

    def launch(self, pages: int, *, vmpl: int = 0) -> Guest:
        """Launch a guest (VM or enclave) of ``pages`` pages, frames chosen by the host.

        SEV/SEV-SNP: the secure processor installs the ASID's key first. SEV-SNP: the
        hypervisor assigns the frames in the RMP and the firmware validates them with
        SNP_LAUNCH_UPDATE (the guest never PVALIDATEs launch pages); the guest knows which
        pages those are, so its validated bitmap starts with them. SGX: EADD.
        """
        check_vmpl(vmpl)
        guest_id = self._next_id
        self._next_id += 1
        if self.secure_processor is not None:
            self.secure_processor.launch_start(guest_id)
        frames = self.hypervisor.allocate(pages, protected=True)
        guest = Guest(guest_id=guest_id, pages=pages, table=[None] * pages)
        self.rules.launch(guest, frames)
        guest.validated.update(range(pages))
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
        """The guest asks for a page-state change (GHCB Page State Change under SEV-SNP),
        through a careful guest kernel (:meth:`.GuestKernel.set_shared`)."""
        from veritee.platform.emulated.isolation.kernel import CarefulGuest, GuestKernel

        GuestKernel(self, guest, CarefulGuest()).set_shared(page, shared)
