"""Intel TDX: MKTME with logical integrity, and the Secure EPT the host cannot write.

Modelled on the Intel TDX Module Base Architecture specification (Secure EPT, PAMT,
TDH.MEM.PAGE.ADD/AUG/REMOVE, TDG.MEM.PAGE.ACCEPT) and the Intel TDX whitepaper ("Memory
Confidentiality and Integrity"). The rules, as emulated here:

1. A TD's private memory is encrypted by MKTME with AES-XTS-128 under the TD's private key
   ID (usable only by the TDX module and the TD), the physical address as tweak.
2. Logical integrity: every line carries a TD-owner bit (in the ECC bits: DRAM, here the
   metadata region). A read by non-TD software of a TD-owned line returns zeros; a write by
   non-TD software goes through and clears the bit; a TD read of a line whose bit is clear
   is poisoned: a machine check, and the TDX module tears the TD down.
3. The private GPA -> HPA mapping is the Secure EPT, written only by the TDX module; the
   host asks with SEAMCALLs. TDH.MEM.PAGE.AUG maps a PENDING page at a free GPA only (the
   PAMT lets a page be mapped once, to one TD); TDH.MEM.PAGE.REMOVE unmaps one. So the host
   cannot point a private GPA at another frame while one is mapped: no remap, swap, alias.
4. A TD access to a PENDING page is a #VE to the TD; the TD accepts it with
   TDG.MEM.PAGE.ACCEPT (an already accepted page reports TDX_PAGE_ALREADY_ACCEPTED). As with
   SEV-SNP and SGX2, whether a #VE on a page the TD already accepted is *detected* is the TD's
   code (:mod:`.kernel`).
5. Nothing protects against a physical replay: ciphertext and TD-owner bits restored
   together read back as valid.

Not modelled: cryptographic integrity (Ci, a 28-bit MAC per line: it would turn the
physical write into a #MC, not the replay), SEPT_VE_DISABLE (a pending-page access then
exits to the host instead of a #VE), shared memory (the shared EPT), TD partitioning.
"""

from __future__ import annotations

from veritee.platform.emulated.isolation import sources
from veritee.platform.emulated.isolation.faults import (
    GuestException,
    HypervisorFault,
    MachineCheck,
)
from veritee.platform.emulated.isolation.guest import Guest, Mode
from veritee.platform.emulated.isolation.memory import (
    PAGE_SIZE,
    MemoryEncryptionEngine,
    PhysicalMemory,
)
from veritee.platform.emulated.isolation.modes import MemoryRules

__all__ = ["TdxRules"]

_TD_BIT = 1
_PENDING = 2


class TdxRules(MemoryRules):
    """TDX: MKTME with logical integrity, Secure EPT, PENDING pages and ACCEPT."""

    mode = Mode.TDX

    def __init__(self, memory: PhysicalMemory, engine: MemoryEncryptionEngine) -> None:
        super().__init__(memory, engine)
        # One byte per frame in DRAM's ECC bits: bit 0 the TD-owner bit (per line in real
        # parts; per page here). PENDING lives in the SEPT, which the host cannot touch.
        self._bits = memory.reserve(memory.frames)
        self._owner: dict[int, tuple[int, int]] = {}  # PAMT: frame -> (TD, GPA page)
        self._pending: set[int] = set()

    def _td_bit(self, frame: int) -> bool:
        return bool(self.memory.meta_load(self._bits + frame, 1)[0] & _TD_BIT)

    def _set_td_bit(self, frame: int, on: bool) -> None:
        self.memory.meta_store(self._bits + frame, bytes([_TD_BIT if on else 0]))

    # -- build: TDH.MEM.PAGE.ADD ----------------------------------------------------------
    def launch(self, guest: Guest, frames: list[int]) -> None:
        """TDH.MEM.PAGE.ADD each page (mapped and accepted, content zero)."""
        if not self.engine.has_key(guest.guest_id):
            self.engine.generate_key(guest.guest_id)  # TDH.MNG.KEY.CONFIG
        for page, frame in enumerate(frames):
            self._owner[frame] = (guest.guest_id, page)
            guest.table[page] = frame
            self._write(guest, frame, bytes(PAGE_SIZE))

    # -- the host: SEAMCALLs only -------------------------------------------------------
    def host_map(self, guest: Guest, page: int, frame: int | None) -> None:
        """The host cannot write the Secure EPT: only the TDX module maps private GPAs."""
        raise HypervisorFault(
            f"SEAMCALL refused: the Secure EPT of TD {guest.guest_id} maps GPA page "
            f"{page:#x}; the host cannot point it at frame {frame} (TDX_EPT_ENTRY_NOT_FREE)",
            rule="Secure EPT: private GPA mappings are the TDX module's, one page per GPA",
            source=sources.TDX_SEPT)

    def page_aug(self, guest: Guest, page: int, frame: int) -> None:
        """TDH.MEM.PAGE.AUG: map a free page, PENDING, at a GPA that has no mapping."""
        if guest.table[page] is not None:
            self.host_map(guest, page, frame)
        if frame in self._owner:
            raise HypervisorFault(f"TDH.MEM.PAGE.AUG: frame {frame:#x} is owned (PAMT)",
                                  rule="PAMT: a page belongs to one TD at one GPA",
                                  source=sources.TDX_SEPT)
        self._owner[frame] = (guest.guest_id, page)
        self._pending.add(frame)
        guest.table[page] = frame
        self._write(guest, frame, bytes(PAGE_SIZE))

    def page_remove(self, guest: Guest, page: int) -> int:
        """TDH.MEM.RANGE.BLOCK + TDH.MEM.TRACK + TDH.MEM.PAGE.REMOVE: unmap a GPA."""
        frame = self.translate(guest, page)
        del self._owner[frame]
        self._pending.discard(frame)
        guest.table[page] = None
        self._set_td_bit(frame, False)
        return frame

    def host_load(self, frame: int) -> bytes:
        """Logical integrity: non-TD reads of a TD-owned line return zeros."""
        if self._td_bit(frame):
            return bytes(PAGE_SIZE)
        return super().host_load(frame)

    def host_store(self, frame: int, data: bytes) -> None:
        """Non-TD writes go through (host key ID) and clear the TD-owner bit."""
        super().host_store(frame, data)
        self._set_td_bit(frame, False)

    # -- the TD ---------------------------------------------------------------------------
    def _frame(self, guest: Guest, page: int) -> int:
        frame = self.translate(guest, page)
        if self._owner.get(frame) != (guest.guest_id, page):
            raise HypervisorFault(f"EPT violation: GPA page {page:#x} maps frame {frame:#x} "
                                  "not owned by this TD", source=sources.TDX_SEPT)
        if frame in self._pending:
            raise GuestException(f"#VE (PENDING page): GPA page {page:#x} -> frame "
                                 f"{frame:#x} is not accepted", code=0,
                                 rule="TDX: access to a PENDING page is #VE until "
                                 "TDG.MEM.PAGE.ACCEPT", source=sources.TDX_SEPT)
        return frame

    def accept(self, guest: Guest, page: int) -> bool:
        """TDG.MEM.PAGE.ACCEPT; False when the page was already accepted."""
        frame = self.translate(guest, page)
        if self._owner.get(frame) != (guest.guest_id, page):
            raise GuestException(f"TDG.MEM.PAGE.ACCEPT: GPA page {page:#x} not mapped "
                                 "for this TD", code=0, source=sources.TDX_SEPT)
        if frame not in self._pending:
            return False  # TDX_PAGE_ALREADY_ACCEPTED
        self._pending.discard(frame)
        return True

    def _write(self, guest: Guest, frame: int, data: bytes) -> None:
        address = self.memory.address(frame)
        self.memory.store(frame, self.engine.encrypt(guest.guest_id, address, data))
        self._set_td_bit(frame, True)

    def guest_load(self, guest: Guest, page: int) -> bytes:
        """SEPT walk, then the TD-owner bit, then MKTME decryption."""
        frame = self._frame(guest, page)
        if not self._td_bit(frame):
            raise MachineCheck(f"#MC: TD {guest.guest_id} read frame {frame:#x} whose "
                               "TD-owner bit was cleared by a non-TD write; TD torn down",
                               rule="logical integrity: TD-owner bit clear -> poison, #MC",
                               source=sources.TDX_LI)
        return self.engine.decrypt(guest.guest_id, self.memory.address(frame),
                                   self.memory.load(frame))

    def guest_store(self, guest: Guest, page: int, data: bytes) -> None:
        """SEPT walk, then MKTME encryption; the TD-owner bit is set."""
        self._check_size(data)
        self._write(guest, self._frame(guest, page), data)
