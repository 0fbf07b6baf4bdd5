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
3. On its way to DRAM every EPC page goes through the memory encryption engine: AES-XTS under
   the MEE key with the physical address as tweak, a MAC over ciphertext, address and
   version, and the version counters in an integrity tree (:mod:`.integrity`) whose root is
   on die. Any replay or corruption of DRAM fails the check on the next read.
4. The OS pages EPC frames out with EWB: the page leaves encrypted and MACed under a paging
   key, its metadata (PCMD: enclave, linear address, permissions) authenticated, and a fresh
   version stored in a Version Array (VA) slot inside the EPC. ELDU loads it back only if the
   MAC verifies *and* the version matches the VA slot, then clears the slot: an old blob
   cannot be loaded twice. (AES-GCM from ``cryptography`` stands in for the paging crypto.)

Modelled is client SGX (SGX1 with the MEE integrity tree). Scalable SGX on 3rd-gen Xeon
Scalable uses TME-MK without the integrity tree and does not detect physical replay.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import IntFlag

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from veritee.errors import PlatformError
from veritee.platform.emulated.isolation.faults import HypervisorFault, IntegrityViolation
from veritee.platform.emulated.isolation.guest import Guest, Mode
from veritee.platform.emulated.isolation.integrity import CounterTree
from veritee.platform.emulated.isolation.memory import (
    PAGE_SIZE,
    MemoryEncryptionEngine,
    PhysicalMemory,
)
from veritee.platform.emulated.isolation.modes import MemoryRules

__all__ = ["ABORT_PAGE", "EpcPerm", "EpcmEntry", "EvictedPage", "SgxRules"]

ABORT_PAGE = b"\xff" * PAGE_SIZE
MEE_KEY_ID = 0
_MAC_BYTES = 32


class EpcPerm(IntFlag):
    """EPCM permissions (SDM Vol. 3D, EPCM: R, W, X)."""

    NONE = 0
    R = 1
    W = 2
    X = 4


@dataclass(slots=True)
class EpcmEntry:
    """One EPCM entry (SDM Vol. 3D "Enclave Page Cache Map")."""

    valid: bool = False
    enclave: int = 0
    linear: int = 0  # linear page number inside the enclave's ELRANGE
    perms: EpcPerm = EpcPerm.NONE


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
    """SGX: EPC frames behind the EPCM and the MEE; the rest of DRAM is ordinary."""

    mode = Mode.SGX

    def __init__(self, memory: PhysicalMemory, engine: MemoryEncryptionEngine, epc: range,
                 *, rng: Callable[[int], bytes] = os.urandom) -> None:
        super().__init__(memory, engine)
        if epc.step != 1 or epc.start < 0 or epc.stop > memory.frames or not epc:
            raise PlatformError(f"EPC {epc} does not fit {memory.frames} frames")
        self.epc = epc
        # At boot the CPU generates the MEE keys and the paging key; none ever leaves it.
        engine.generate_key(MEE_KEY_ID)
        self._mac_key = rng(32)
        self._paging = AESGCM(rng(32))
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

    def _mee_read(self, frame: int) -> bytes:
        leaf = frame - self.epc.start
        version = self.tree.version(leaf)
        address = self.memory.address(frame)
        ciphertext = self.memory.load(frame)
        mac = self.memory.meta_load(self._macs + leaf * _MAC_BYTES, _MAC_BYTES)
        try:
            self._data_mac(ciphertext, address, version).verify(mac)
        except InvalidSignature:
            raise IntegrityViolation(f"MEE: MAC mismatch on EPC frame {frame:#x} "
                                     "(corrupted or replayed data)") from None
        return self.engine.decrypt(MEE_KEY_ID, address, ciphertext)

    def _mee_write(self, frame: int, plaintext: bytes) -> None:
        leaf = frame - self.epc.start
        version = self.tree.advance(leaf)
        address = self.memory.address(frame)
        ciphertext = self.engine.encrypt(MEE_KEY_ID, address, plaintext)
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
                                  "outside the EPC")
        entry = self.entry(frame)
        if not entry.valid or entry.enclave != guest.guest_id or entry.linear != page:
            raise HypervisorFault(
                f"#PF (SGX, EPCM): linear page {page:#x} of enclave {guest.guest_id} maps EPC "
                f"frame {frame:#x} whose EPCM says valid={entry.valid} "
                f"enclave={entry.enclave} linear={entry.linear:#x}")
        if not entry.perms & need:
            raise HypervisorFault(f"#PF (SGX, EPCM): {need.name} not permitted on "
                                  f"linear page {page:#x}")
        return frame

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
            raise HypervisorFault(f"EWB: EPC frame {frame:#x} holds no page")
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
            raise HypervisorFault(f"ELDU: EPC frame {frame:#x} is in use")
        if self._va.get(page.va_slot) != page.version:
            raise HypervisorFault(f"ELDU: version {page.version} does not match VA slot "
                                  f"{page.va_slot} (replayed page)")
        try:
            plaintext = self._paging.decrypt(page.version.to_bytes(12, "little"),
                                             page.ciphertext, page.pcmd())
        except InvalidTag:
            raise HypervisorFault("ELDU: MAC compare failed (page or PCMD modified)") from None
        del self._va[page.va_slot]
        entry.valid, entry.enclave, entry.linear, entry.perms = (
            True, page.enclave, page.linear, page.perms)
        self._mee_write(frame, plaintext)
