"""Hardware memory rules per protection mode: the only path from a component to guest memory.

A :class:`MemoryRules` object sits between every component and :class:`.PhysicalMemory`:
the guest's loads and stores (through the host-controlled page table and, for the encrypted
modes, the memory encryption engine) and the host's own loads and stores of physical frames.
What a component observes is whatever these rules return; nothing else reads DRAM except the
physical attacker (a bus interposer or cold-boot dump), which bypasses the CPU by definition.

This module holds the base class and the two modes without access control:

* :class:`PlainRules`: an ordinary VM. Guest memory is plaintext in DRAM and the hypervisor's
  loads and stores reach it unchanged.
* :class:`SevRules`: AMD SEV. Guest private pages are encrypted by the memory controller with
  the guest's key (key ID = ASID) and the page's physical address as the XTS tweak (APM Vol. 2
  "Secure Encrypted Virtualization"; AMD Memory Encryption whitepaper). The hypervisor's
  accesses carry no guest key, so it sees ciphertext; but nothing checks integrity or
  mappings: the hypervisor controls the nested page table and can write any frame, so a
  remap, a swap or a replay of old ciphertext at the same address decrypts "successfully" and
  the guest consumes it unaware. This is the documented SEV weakness that SEV-SNP closes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from veritee.platform.emulated.isolation import sources
from veritee.platform.emulated.isolation.faults import HypervisorFault, UndefinedInstruction
from veritee.platform.emulated.isolation.guest import Guest, Mode
from veritee.platform.emulated.isolation.memory import (
    PAGE_SIZE,
    MemoryEncryptionEngine,
    PhysicalMemory,
)

__all__ = ["MemoryRules", "PlainRules", "SevRules"]


class MemoryRules(ABC):
    """The memory-access rules the emulated hardware enforces for one protection mode."""

    mode: Mode

    def __init__(self, memory: PhysicalMemory, engine: MemoryEncryptionEngine) -> None:
        self.memory = memory
        self.engine = engine

    # -- launch ----------------------------------------------------------------------------
    @abstractmethod
    def launch(self, guest: Guest, frames: list[int]) -> None:
        """Back the guest's pages with ``frames`` (chosen by the host) and set up hardware."""

    # -- the guest's accesses --------------------------------------------------------------
    @abstractmethod
    def guest_load(self, guest: Guest, page: int) -> bytes:
        """A guest read of one of its pages, as the hardware resolves it."""

    @abstractmethod
    def guest_store(self, guest: Guest, page: int, data: bytes) -> None:
        """A guest write of one of its pages, as the hardware resolves it."""

    # -- the host's (hypervisor's) own accesses to physical frames -------------------------
    def host_load(self, frame: int) -> bytes:
        """A load by host software from a physical frame (default: DRAM as it is)."""
        return self.memory.load(frame)

    def host_store(self, frame: int, data: bytes) -> None:
        """A store by host software to a physical frame (default: reaches DRAM)."""
        self.memory.store(frame, data)

    def host_map(self, guest: Guest, page: int, frame: int | None) -> None:
        """The host points a guest page at a frame: its nested (or OS) page table."""
        guest.table[page] = frame

    # -- host instructions the mode may lack ----------------------------------------------
    def rmpupdate(self, frame: int, *, asid: int | None, gpn: int = 0) -> None:
        """RMPUPDATE exists only under SEV-SNP: anywhere else it is #UD."""
        raise UndefinedInstruction(f"#UD: RMPUPDATE on a {self.mode.value} host (no RMP)",
                                   rule="no hardware page state to change (RMPUPDATE is #UD)",
                                   source=sources.UD)

    # -- helpers ---------------------------------------------------------------------------
    @staticmethod
    def translate(guest: Guest, page: int) -> int:
        """Walk the host-controlled table; an unmapped page is a fault to the host."""
        frame = guest.frame(page)
        if frame is None:
            raise HypervisorFault(f"#NPF: guest page {page} is not mapped",
                                  rule="nested page fault on an unmapped page",
                                  source=sources.APM_SEV)
        return frame

    @staticmethod
    def _check_size(data: bytes) -> None:
        if len(data) != PAGE_SIZE:
            raise ValueError(f"a page is {PAGE_SIZE} bytes, got {len(data)}")


class PlainRules(MemoryRules):
    """An ordinary VM: no encryption, no ownership; the hypervisor sees everything."""

    mode = Mode.PLAIN

    def launch(self, guest: Guest, frames: list[int]) -> None:
        """Map the frames; nothing else to set up."""
        guest.table[:] = list(frames)

    def guest_load(self, guest: Guest, page: int) -> bytes:
        """Plaintext straight from DRAM."""
        return self.memory.load(self.translate(guest, page))

    def guest_store(self, guest: Guest, page: int, data: bytes) -> None:
        """Plaintext straight to DRAM."""
        self._check_size(data)
        self.memory.store(self.translate(guest, page), data)


class SevRules(MemoryRules):
    """AMD SEV: encryption with a per-ASID key and physical-address tweak, no integrity."""

    mode = Mode.SEV

    def launch(self, guest: Guest, frames: list[int]) -> None:
        """Map the frames; the secure processor has installed the ASID's key already."""
        if not self.engine.has_key(guest.guest_id):
            raise HypervisorFault(f"ASID {guest.guest_id} has no key: LAUNCH_START not run")
        guest.table[:] = list(frames)

    def guest_load(self, guest: Guest, page: int) -> bytes:
        """C-bit set: decrypt with the ASID key; C-bit clear (shared): DRAM as it is."""
        frame = self.translate(guest, page)
        raw = self.memory.load(frame)
        if page in guest.shared:
            return raw
        return self.engine.decrypt(guest.guest_id, self.memory.address(frame), raw)

    def guest_store(self, guest: Guest, page: int, data: bytes) -> None:
        """C-bit set: encrypt with the ASID key at this physical address."""
        self._check_size(data)
        frame = self.translate(guest, page)
        if page in guest.shared:
            self.memory.store(frame, data)
            return
        self.memory.store(frame, self.engine.encrypt(guest.guest_id,
                                                     self.memory.address(frame), data))
