"""Physical memory (DRAM) and the memory encryption engine in the memory controller.

:class:`PhysicalMemory` is the DRAM: a flat ``bytearray`` of 4 KiB frames plus a metadata
region that hardware carves out for itself (MACs, integrity-tree nodes). It has no access
control at all: DRAM does not know who is asking. Everything that decides what a component
observes sits in front of it, in the hardware rules of each mode (:mod:`.modes`, :mod:`.rmp`,
:mod:`.epc`).

:class:`MemoryEncryptionEngine` encrypts a page on its way to DRAM and decrypts it on its way
back, with AES-XTS under a per-key-ID key (an ASID's VM encryption key, or SGX's MEE key).
The tweak is the page's *physical address*, as AMD SME/SEV do: "the AES engine ... uses
additional physical address-based tweaks to protect against ciphertext block move attacks"
(AMD, "AMD Memory Encryption" whitepaper, 2016; APM Vol. 2 "Secure Encrypted Virtualization").
So the same plaintext encrypts differently at two addresses, and ciphertext moved to another
frame decrypts to garbage. Keys live inside the engine (on-die in real parts) and are never
stored in :class:`PhysicalMemory`, so a scan of DRAM cannot find them.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from veritee.errors import PlatformError

__all__ = ["PAGE_SIZE", "MemoryEncryptionEngine", "PhysicalMemory", "page_tweak"]

PAGE_SIZE = 4096


def page_tweak(physical_address: int) -> bytes:
    """The XTS tweak for a page: its physical address, 16 bytes little-endian."""
    return physical_address.to_bytes(16, "little")


class PhysicalMemory:
    """DRAM: ``frames`` pages of 4 KiB plus a hardware metadata region, no access control."""

    def __init__(self, frames: int) -> None:
        if frames <= 0:
            raise PlatformError(f"physical memory needs at least one frame, got {frames}")
        self.frames = frames
        self._dram = bytearray(frames * PAGE_SIZE)
        self._meta = bytearray()

    @staticmethod
    def address(frame: int) -> int:
        """The physical address of a frame."""
        return frame * PAGE_SIZE

    def _check(self, frame: int) -> int:
        if not 0 <= frame < self.frames:
            raise PlatformError(f"frame {frame} outside physical memory (0..{self.frames - 1})")
        return frame * PAGE_SIZE

    def load(self, frame: int) -> bytes:
        """The 4 KiB stored in a frame, exactly as on the DRAM chips."""
        base = self._check(frame)
        return bytes(self._dram[base:base + PAGE_SIZE])

    def store(self, frame: int, data: bytes) -> None:
        """Overwrite a frame with 4 KiB."""
        base = self._check(frame)
        if len(data) != PAGE_SIZE:
            raise PlatformError(f"a page is {PAGE_SIZE} bytes, got {len(data)}")
        self._dram[base:base + PAGE_SIZE] = data

    # -- the metadata region (MACs, integrity-tree nodes): also plain DRAM ------------------
    def reserve(self, nbytes: int) -> int:
        """Carve ``nbytes`` of metadata DRAM for the hardware; return the region's offset."""
        offset = len(self._meta)
        self._meta.extend(bytes(nbytes))
        return offset

    @property
    def metadata_size(self) -> int:
        """Bytes of metadata DRAM carved so far."""
        return len(self._meta)

    def meta_load(self, offset: int, n: int) -> bytes:
        """Read metadata DRAM."""
        if offset < 0 or offset + n > len(self._meta):
            raise PlatformError(f"metadata read {offset}+{n} outside 0..{len(self._meta)}")
        return bytes(self._meta[offset:offset + n])

    def meta_store(self, offset: int, data: bytes) -> None:
        """Write metadata DRAM."""
        if offset < 0 or offset + len(data) > len(self._meta):
            raise PlatformError(f"metadata write {offset}+{len(data)} outside "
                                f"0..{len(self._meta)}")
        self._meta[offset:offset + len(data)] = data

    # -- the whole of DRAM, as a cold-boot or bus attacker sees it -------------------------
    def find_all(self, needle: bytes) -> list[int]:
        """Every physical address where ``needle`` occurs, in frames or metadata.

        Metadata addresses follow the frames (``frames * PAGE_SIZE + offset``).
        """
        if not needle:
            raise PlatformError("cannot scan for an empty byte string")
        hits: list[int] = []
        for base, region in ((0, self._dram), (len(self._dram), self._meta)):
            at = region.find(needle)
            while at != -1:
                hits.append(base + at)
                at = region.find(needle, at + 1)
        return hits

    @property
    def size(self) -> int:
        """Total bytes of DRAM (frames and metadata)."""
        return len(self._dram) + len(self._meta)


class MemoryEncryptionEngine:
    """AES-XTS (512-bit keys) per key ID, tweaked by physical address.

    The key for a key ID is installed by whoever the technology trusts with it (the AMD
    secure processor for an SEV ASID, the CPU at boot for SGX's MEE) and never read back.
    """

    KEY_BYTES = 64  # AES-256-XTS: two 256-bit keys

    def __init__(self, rng: Callable[[int], bytes] = os.urandom) -> None:
        self._rng = rng
        self._keys: dict[int, bytes] = {}

    def generate_key(self, key_id: int) -> None:
        """Generate and install a fresh key for ``key_id`` (replacing any old one)."""
        key = self._rng(self.KEY_BYTES)
        while key[:32] == key[32:]:  # XTS requires two distinct halves
            key = self._rng(self.KEY_BYTES)
        self._keys[key_id] = key

    def has_key(self, key_id: int) -> bool:
        """Whether a key is installed for ``key_id``."""
        return key_id in self._keys

    def _cipher(self, key_id: int, physical_address: int) -> Cipher[modes.XTS]:
        try:
            key = self._keys[key_id]
        except KeyError:
            raise PlatformError(f"no memory encryption key for key ID {key_id}") from None
        return Cipher(algorithms.AES(key), modes.XTS(page_tweak(physical_address)))

    def encrypt(self, key_id: int, physical_address: int, plaintext: bytes) -> bytes:
        """Encrypt one page for ``physical_address`` (the XTS data unit is the page)."""
        enc = self._cipher(key_id, physical_address).encryptor()
        return enc.update(plaintext) + enc.finalize()

    def decrypt(self, key_id: int, physical_address: int, ciphertext: bytes) -> bytes:
        """Decrypt one page read from ``physical_address``."""
        dec = self._cipher(key_id, physical_address).decryptor()
        return dec.update(ciphertext) + dec.finalize()
