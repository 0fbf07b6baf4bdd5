"""Intel SGX: the EPC, the EPCM, abort-page semantics, EPC paging and the MEE.

Modelled on the Intel SDM Vol. 3D (SGX chapters: "Enclave Page Cache", "Enclave Page Cache
Map (EPCM)", "Access-control requirements", the ENCLS leaves EADD/EWB/ELDU and the Version
Array), V. Costan and S. Devadas, "Intel SGX Explained" (IACR ePrint 2016/086) and S. Gueron,
"A Memory Encryption Engine Suitable for General Purpose Processors" (ePrint 2016/204):

1. The EPC is a range of physical frames inside the processor reserved memory (PRM). Software
   outside enclave mode that touches the PRM gets *abort-page semantics*: reads return all
   ones, writes are silently dropped. The hypervisor/OS therefore never sees EPC bytes.
2. The EPCM, inaccessible to software, records for each EPC frame: valid, the owning enclave,
   the linear address it was added at, and permissions. An enclave access to a linear page
   of its ELRANGE must translate (through the OS's page table) to an EPC frame whose EPCM
   entry is valid, owned by this enclave, at this linear address, with the permission;
   otherwise the CPU raises #PF (SGX error code) to the OS.
3. On its way to DRAM every EPC page is encrypted, and here the two products differ:

   * **client SGX** (``sgx-client``): the memory encryption engine (MEE) encrypts with AES
     in counter mode, the counter seeded by the physical address and the page's *version*,
     MACs ciphertext, address and version, and keeps the versions in an integrity tree
     (:mod:`.integrity`) whose root is on die. Rewriting the same data changes the
     ciphertext; any replay or corruption of DRAM fails the check on the next read, and the
     MEE then *locks the platform* ("drop and lock": the memory controller stops until
     reset). The enclave is not told: nothing runs any more.
   * **scalable SGX** (``sgx-scalable``, 3rd-gen Xeon Scalable on): TME-MK encrypts the EPC
     with AES-XTS under a key ID, the physical address as tweak; no MAC, no tree. Equal
     data at the same address gives equal ciphertext, and a physical replay goes
     undetected. (The EPCM and abort-page semantics are the same.)
4. SGX2 (EAUG, EMODPR, EACCEPT) is the page-state analogue of SEV-SNP's PVALIDATE: the OS
   adds a page (EAUG) or restricts its permissions (EMODPR), the EPCM entry is then PENDING
   or MODIFIED, and an enclave access to it is a #PF reported to the enclave until the
   enclave EACCEPTs it. As with PVALIDATE, the hardware does not know whether the enclave
   asked for the page: an enclave that EACCEPTs whatever faults accepts a substitute.
   EREMOVE frees a page of an enclave no thread is executing in.
5. The OS pages EPC frames out with EWB: the page leaves encrypted and MACed under a paging
   key, its metadata (PCMD: enclave, linear address, permissions) authenticated, and a fresh
   version stored in a Version Array (VA) slot inside the EPC. ELDU loads it back only if the
   MAC verifies *and* the version matches the VA slot, then clears the slot: an old blob
   cannot be loaded twice. (AES-GCM from ``cryptography`` stands in for the paging crypto.)

The MEE's data unit here is a 4 KiB page (real MEEs use 64-byte lines) and its MAC is
HMAC-SHA-256; neither changes which attacks are detected.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import Enum, IntFlag

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from veritee.errors import PlatformError
from veritee.platform.emulated.isolation import sources
from veritee.platform.emulated.isolation.faults import (
    GuestException,
    HypervisorFault,
    IntegrityViolation,
    PlatformLocked,
)
from veritee.platform.emulated.isolation.guest import Guest, Mode
from veritee.platform.emulated.isolation.integrity import CounterTree
from veritee.platform.emulated.isolation.memory import (
    PAGE_SIZE,
    MemoryEncryptionEngine,
    PhysicalMemory,
)
from veritee.platform.emulated.isolation.modes import MemoryRules

__all__ = ["ABORT_PAGE", "EpcPerm", "EpcmEntry", "EvictedPage", "SgxFlavour", "SgxRules"]

ABORT_PAGE = b"\xff" * PAGE_SIZE
MEE_KEY_ID = 0
_MAC_BYTES = 32


class EpcPerm(IntFlag):
    """EPCM permissions (SDM Vol. 3D, EPCM: R, W, X)."""

    NONE = 0
    R = 1
    W = 2
    X = 4


class SgxFlavour(Enum):
    """Client SGX (MEE) or scalable SGX (TME-MK)."""

    CLIENT = "client"
    SCALABLE = "scalable"


@dataclass(slots=True)
class EpcmEntry:
    """One EPCM entry (SDM Vol. 3D "Enclave Page Cache Map")."""

    valid: bool = False
    enclave: int = 0
    linear: int = 0  # linear page number inside the enclave's ELRANGE
    perms: EpcPerm = EpcPerm.NONE
    pending: bool = False  # SGX2: EAUGed, not yet EACCEPTed
    modified: bool = False  # SGX2: EMODPRed, not yet EACCEPTed


@dataclass(frozen=True)
class EvictedPage:
    """What EWB hands to the OS: encrypted page, its PCMD, and the VA slot it used."""

    ciphertext: bytes
    enclave: int
    linear: int
    perms: EpcPerm
    version: int
    va_slot: int

    def pcmd(self) -> bytes:
        """The authenticated metadata (enclave, linear page, permissions, version)."""
        return (self.enclave.to_bytes(8, "little") + self.linear.to_bytes(8, "little")
                + int(self.perms).to_bytes(1, "little") + self.version.to_bytes(8, "little"))


class SgxRules(MemoryRules):
    """SGX: EPC frames behind the EPCM and the MEE (client) or TME-MK (scalable); the rest
    of DRAM is ordinary."""

    mode = Mode.SGX_CLIENT

    def __init__(self, memory: PhysicalMemory, engine: MemoryEncryptionEngine, epc: range,
                 *, flavour: SgxFlavour = SgxFlavour.CLIENT,
                 rng: Callable[[int], bytes] = os.urandom) -> None:
        super().__init__(memory, engine)
        if epc.step != 1 or epc.start < 0 or epc.stop > memory.frames or not epc:
            raise PlatformError(f"EPC {epc} does not fit {memory.frames} frames")
        self.epc = epc
        self.flavour = flavour
        self.mode = Mode.SGX_CLIENT if flavour is SgxFlavour.CLIENT else Mode.SGX_SCALABLE
        self.locked = False
        # At boot the CPU generates the MEE keys and the paging key; none ever leaves it.
        engine.generate_key(MEE_KEY_ID)
        self._mac_key = rng(32)
        self._paging = AESGCM(rng(32))
        self.tree: CounterTree | None = None
        self._macs = 0
        if flavour is SgxFlavour.CLIENT:
            self.tree = CounterTree(memory, len(epc), rng(32))
            self._macs = memory.reserve(len(epc) * _MAC_BYTES)
        self.epcm = [EpcmEntry() for _ in epc]
        self._va: dict[int, int] = {}  # Version Array slots (inside the EPC: not in DRAM here)
        self._next_slot = 0
        self._next_version = 1

    def in_epc(self, frame: int) -> bool:
        """Whether the frame is part of the EPC (and so of the PRM)."""
        return frame in self.epc

    def entry(self, frame: int) -> EpcmEntry:
        """The EPCM entry of an EPC frame."""
        if not self.in_epc(frame):
            raise PlatformError(f"frame {frame:#x} is not in the EPC")
        return self.epcm[frame - self.epc.start]

    # -- the memory encryption engine ------------------------------------------------------
    def _data_mac(self, ciphertext: bytes, address: int, version: int) -> hmac.HMAC:
        h = hmac.HMAC(self._mac_key, hashes.SHA256())
        h.update(b"veritee-mee-data" + address.to_bytes(8, "little")
                 + version.to_bytes(8, "little") + ciphertext)
        return h

    def _lock(self, exc: IntegrityViolation) -> PlatformLocked:
        """Drop and lock: the memory controller stops; every later EPC access fails too."""
        self.locked = True
        return PlatformLocked(f"{exc} -> MEE drop-and-lock: platform locked until reset",
                              rule="MEE integrity failure locks the platform (the enclave is "
                              "not told)", source=sources.MEE)

    def _check_lock(self) -> None:
        if self.locked:
            raise PlatformLocked("MEE: platform locked after an integrity failure",
                                 rule="MEE integrity failure locks the platform",
                                 source=sources.MEE)

    def _mee_read(self, frame: int) -> bytes:
        self._check_lock()
        address = self.memory.address(frame)
        ciphertext = self.memory.load(frame)
        if self.tree is None:  # TME-MK: decrypt whatever DRAM holds
            return self.engine.decrypt(MEE_KEY_ID, address, ciphertext)
        leaf = frame - self.epc.start
        try:
            version = self.tree.version(leaf)
        except IntegrityViolation as exc:
            raise self._lock(exc) from None
        mac = self.memory.meta_load(self._macs + leaf * _MAC_BYTES, _MAC_BYTES)
        try:
            self._data_mac(ciphertext, address, version).verify(mac)
        except InvalidSignature:
            raise self._lock(IntegrityViolation(
                f"MEE: MAC mismatch on EPC frame {frame:#x} (corrupted or replayed data)")) \
                from None
        return self.engine.decrypt(MEE_KEY_ID, address, ciphertext, version=version)

    def _mee_write(self, frame: int, plaintext: bytes) -> None:
        self._check_lock()
        address = self.memory.address(frame)
        if self.tree is None:
            self.memory.store(frame, self.engine.encrypt(MEE_KEY_ID, address, plaintext))
            return
        leaf = frame - self.epc.start
        try:
            version = self.tree.advance(leaf)
        except IntegrityViolation as exc:
            raise self._lock(exc) from None
        ciphertext = self.engine.encrypt(MEE_KEY_ID, address, plaintext, version=version)
        self.memory.store(frame, ciphertext)
        self.memory.meta_store(self._macs + leaf * _MAC_BYTES,
                               self._data_mac(ciphertext, address, version).finalize())

    # -- launch: ECREATE + EADD ------------------------------------------------------------
    def launch(self, guest: Guest, frames: list[int]) -> None:
        """EADD each frame at its linear page with R|W (content: a zero page)."""
        for page, frame in enumerate(frames):
            entry = self.entry(frame)
            if entry.valid:
                raise HypervisorFault(f"EADD: EPC frame {frame:#x} is already in use")
            entry.valid, entry.enclave, entry.linear = True, guest.guest_id, page
            entry.perms = EpcPerm.R | EpcPerm.W
            self._mee_write(frame, bytes(PAGE_SIZE))
        guest.table[:] = list(frames)

    # -- the enclave's accesses ------------------------------------------------------------
    def _check(self, guest: Guest, page: int, need: EpcPerm) -> int:
        frame = self.translate(guest, page)
        if not self.in_epc(frame):
            raise HypervisorFault(f"#PF (SGX): ELRANGE page {page:#x} maps frame {frame:#x} "
                                  "outside the EPC",
                                  rule="EPCM: an ELRANGE page must map an EPC frame",
                                  source=sources.SDM_SGX_EPCM)
        entry = self.entry(frame)
        if not entry.valid or entry.enclave != guest.guest_id or entry.linear != page:
            raise HypervisorFault(
                f"#PF (SGX, EPCM): linear page {page:#x} of enclave {guest.guest_id} maps EPC "
                f"frame {frame:#x} whose EPCM says valid={entry.valid} "
                f"enclave={entry.enclave} linear={entry.linear:#x}",
                rule="EPCM: owner enclave and linear address must match",
                source=sources.SDM_SGX_EPCM)
        if entry.pending or entry.modified:
            state = "PENDING" if entry.pending else "MODIFIED"
            raise GuestException(f"#PF (SGX2, EPCM {state}): linear page {page:#x} -> frame "
                                 f"{frame:#x}, reported to the enclave", code=0,
                                 rule=f"SGX2: access to a {state} page faults until EACCEPT",
                                 source=sources.SDM_SGX2)
        if not entry.perms & need:
            raise HypervisorFault(f"#PF (SGX, EPCM): {need.name} not permitted on "
                                  f"linear page {page:#x}",
                                  rule="EPCM: permission check", source=sources.SDM_SGX_EPCM)
        return frame

    # -- SGX2: EAUG / EMODPR (OS), EACCEPT (enclave), EREMOVE (OS) -------------------------
    def eaug(self, guest: Guest, frame: int, page: int) -> None:
        """EAUG: add a zeroed page to a running enclave at ``page``; it is PENDING until the
        enclave EACCEPTs it (SDM Vol. 3D, EAUG)."""
        entry = self.entry(frame)
        if entry.valid:
            raise HypervisorFault(f"EAUG: EPC frame {frame:#x} is in use",
                                  source=sources.SDM_SGX2)
        entry.valid, entry.enclave, entry.linear = True, guest.guest_id, page
        entry.perms, entry.pending, entry.modified = EpcPerm.R | EpcPerm.W, True, False
        self._mee_write(frame, bytes(PAGE_SIZE))

    def emodpr(self, frame: int, perms: EpcPerm) -> None:
        """EMODPR: restrict a page's permissions; MODIFIED until the enclave EACCEPTs."""
        entry = self.entry(frame)
        if not entry.valid or entry.pending:
            raise HypervisorFault(f"EMODPR: EPC frame {frame:#x} is not a regular page",
                                  source=sources.SDM_SGX2)
        entry.perms &= perms
        entry.modified = True

    def eaccept(self, guest: Guest, page: int) -> None:
        """EACCEPT (enclave): accept the PENDING or MODIFIED page at ``page``; the EPCM entry
        must belong to this enclave at this linear address."""
        frame = self.translate(guest, page)
        entry = self.entry(frame) if self.in_epc(frame) else EpcmEntry()
        if not entry.valid or entry.enclave != guest.guest_id or entry.linear != page:
            raise GuestException(f"EACCEPT: linear page {page:#x} is not this enclave's",
                                 code=0, source=sources.SDM_SGX2)
        if not (entry.pending or entry.modified):
            raise GuestException(f"EACCEPT: linear page {page:#x} is neither PENDING nor "
                                 "MODIFIED (SGX_PAGE_NOT_MODIFIABLE)", code=0,
                                 source=sources.SDM_SGX2)
        entry.pending = entry.modified = False

    def eremove(self, frame: int) -> None:
        """EREMOVE: free an EPC page (allowed while no thread executes in the enclave)."""
        entry = self.entry(frame)
        if not entry.valid:
            raise HypervisorFault(f"EREMOVE: EPC frame {frame:#x} holds no page",
                                  source=sources.SDM_SGX2)
        self.epcm[frame - self.epc.start] = EpcmEntry()

    def guest_load(self, guest: Guest, page: int) -> bytes:
        """EPCM check, then the MEE's verified decryption."""
        return self._mee_read(self._check(guest, page, EpcPerm.R))

    def guest_store(self, guest: Guest, page: int, data: bytes) -> None:
        """EPCM check, then the MEE's encryption with a new version."""
        self._check_size(data)
        self._mee_write(self._check(guest, page, EpcPerm.W), data)

    # -- the host's accesses: abort-page semantics on the PRM ------------------------------
    def host_load(self, frame: int) -> bytes:
        """Reads of the PRM from outside enclave mode return all ones."""
        return ABORT_PAGE if self.in_epc(frame) else super().host_load(frame)

    def host_store(self, frame: int, data: bytes) -> None:
        """Writes to the PRM from outside enclave mode are dropped."""
        if not self.in_epc(frame):
            super().host_store(frame, data)

    # -- EPC paging: the OS's only way to move enclave pages (ENCLS[EWB], ENCLS[ELDU]) -----
    def ewb(self, frame: int) -> EvictedPage:
        """EWB: evict an EPC page; the frame becomes free and the page's version goes to a
        VA slot."""
        entry = self.entry(frame)
        if not entry.valid:
            raise HypervisorFault(f"EWB: EPC frame {frame:#x} holds no page",
                                  source=sources.SDM_SGX_PAGING)
        plaintext = self._mee_read(frame)
        slot, version = self._next_slot, self._next_version
        self._next_slot += 1
        self._next_version += 1
        self._va[slot] = version
        page = EvictedPage(b"", entry.enclave, entry.linear, entry.perms, version, slot)
        sealed = self._paging.encrypt(version.to_bytes(12, "little"), plaintext, page.pcmd())
        entry.valid = False
        return replace(page, ciphertext=sealed)

    def eldu(self, page: EvictedPage, frame: int) -> None:
        """ELDU: load an evicted page into a free EPC frame, if its MAC and version verify."""
        entry = self.entry(frame)
        if entry.valid:
            raise HypervisorFault(f"ELDU: EPC frame {frame:#x} is in use",
                                  source=sources.SDM_SGX_PAGING)
        if self._va.get(page.va_slot) != page.version:
            raise HypervisorFault(f"ELDU: version {page.version} does not match VA slot "
                                  f"{page.va_slot} (replayed page)",
                                  rule="ELDU: the blob's version must match its VA slot",
                                  source=sources.SDM_SGX_PAGING)
        try:
            plaintext = self._paging.decrypt(page.version.to_bytes(12, "little"),
                                             page.ciphertext, page.pcmd())
        except InvalidTag:
            raise HypervisorFault("ELDU: MAC compare failed (page or PCMD modified)",
                                  rule="ELDU: the page and its PCMD are MACed",
                                  source=sources.SDM_SGX_PAGING) from None
        del self._va[page.va_slot]
        entry.valid, entry.enclave, entry.linear, entry.perms = (
            True, page.enclave, page.linear, page.perms)
        self._mee_write(frame, plaintext)
