"""Physical memory (DRAM) and the memory encryption engine in the memory controller.

:class:`PhysicalMemory` is the DRAM: a flat ``bytearray`` of 4 KiB frames plus a metadata
region that hardware carves out for itself (MACs, integrity-tree nodes). It has no access
control at all: DRAM does not know who is asking. Everything that decides what a component
observes sits in front of it, in the hardware rules of each mode (:mod:`.modes`, :mod:`.rmp`,
:mod:`.epc`).

:class:`MemoryEncryptionEngine` encrypts a page on its way to DRAM and decrypts it on its way
back, under a per-key-ID key (an ASID's VM encryption key, SGX's MEE key, a TME-MK key ID),
with the cipher and key size of the processor generation (:class:`CpuGeneration`).
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
from enum import Enum

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from veritee.errors import PlatformError

__all__ = ["PAGE_SIZE", "CpuGeneration", "MemoryEncryptionEngine", "PhysicalMemory", "page_tweak"]

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


class CpuGeneration(Enum):
    """The memory encryption of each processor generation the model knows.

    AMD: EPYC 7001 (Naples, Zen 1), 7002 (Rome, Zen 2) and 7003 (Milan, Zen 3) encrypt with
    AES-128; EPYC 9004 (Genoa, Zen 4) and 9005 (Turin, Zen 5) with AES-256-XTS (AMD,
    "AMD SEV-SNP" whitepaper 2020 and "AMD Memory Encryption" whitepaper; AMD EPYC 9004
    product brief: "AES-256-XTS"). Zen 1's address tweak was a XOR of fixed per-address-bit
    values, so a tweak difference depends only on the XOR of two addresses and ciphertext
    blocks could be moved with a predictable effect (Wilke et al., "SEVurity: No Security
    Without Integrity", IEEE S&P 2020); Zen 2 changed the tweak function. Ciphertext hiding
    (host reads of SNP private memory return all ones) is a Zen 5 feature (Linux 6.18
    ``kvm-amd.ciphertext_hiding_asids``).

    Intel: client SGX's MEE (AES-128 in counter mode; Gueron, ePrint 2016/204), TME-MK on
    3rd-gen Xeon Scalable (AES-XTS-128; Intel "Multi-Key Total Memory Encryption" spec) and
    TDX's MKTME with logical integrity (Intel TDX whitepaper, "Memory Confidentiality and
    Integrity").
    """

    NAPLES = "EPYC 7001 (Zen 1)"
    ROME = "EPYC 7002 (Zen 2)"
    MILAN = "EPYC 7003 (Zen 3)"
    GENOA = "EPYC 9004 (Zen 4)"
    TURIN = "EPYC 9005 (Zen 5)"
    SGX_CLIENT_MEE = "client SGX MEE"
    ICELAKE_TME_MK = "Xeon Scalable TME-MK"
    SAPPHIRE_RAPIDS_TDX = "Xeon 4th gen TDX (MKTME)"

    @property
    def amd(self) -> bool:
        """Whether this is an AMD EPYC generation."""
        return self.value.startswith("EPYC")

    @property
    def cipher(self) -> str:
        """The engine's cipher, as the model runs it."""
        return _CIPHERS[self]

    @property
    def key_bits(self) -> int:
        """The AES key size."""
        return 256 if self in (CpuGeneration.GENOA, CpuGeneration.TURIN) else 128

    @property
    def ciphertext_hiding(self) -> bool:
        """Whether the generation offers SEV-SNP ciphertext hiding."""
        return self is CpuGeneration.TURIN


_CIPHERS = {
    CpuGeneration.NAPLES: "AES-128 XEX, linear address tweak (weak)",
    CpuGeneration.ROME: "AES-128-XTS, address tweak",
    CpuGeneration.MILAN: "AES-128-XTS, address tweak",
    CpuGeneration.GENOA: "AES-256-XTS, address tweak",
    CpuGeneration.TURIN: "AES-256-XTS, address tweak",
    CpuGeneration.SGX_CLIENT_MEE: "AES-128-CTR, counter seeded by address and version",
    CpuGeneration.ICELAKE_TME_MK: "AES-128-XTS, address tweak",
    CpuGeneration.SAPPHIRE_RAPIDS_TDX: "AES-128-XTS, address tweak, TD-owner bit per line "
                                       "(logical integrity)",
}

_BLOCK = 16
_ZEN1_TWEAK_BITS = range(4, 52)  # one tweak value per physical-address bit above the block


class MemoryEncryptionEngine:
    """AES per key ID, tweaked (or seeded) by physical address, as the ``generation`` does.

    The key for a key ID is installed by whoever the technology trusts with it (the AMD
    secure processor for an SEV ASID, the CPU at boot for SGX's MEE) and never read back.
    XTS and CTR come from ``cryptography``; Zen 1's XEX is built from AES-ECB (from
    ``cryptography``) and XOR, because no library offers AMD's weak tweak.
    """

    def __init__(self, rng: Callable[[int], bytes] = os.urandom, *,
                 generation: CpuGeneration = CpuGeneration.MILAN) -> None:
        self._rng = rng
        self.generation = generation
        self._keys: dict[int, bytes] = {}
        self._zen1_tweaks: list[int] = []
        if generation is CpuGeneration.NAPLES:
            self._zen1_tweaks = [int.from_bytes(rng(_BLOCK), "little") for _ in _ZEN1_TWEAK_BITS]

    @property
    def key_bytes(self) -> int:
        """Bytes of key material per key ID (XTS: two keys)."""
        n = self.generation.key_bits // 8
        return n if self.generation in (CpuGeneration.NAPLES,
                                        CpuGeneration.SGX_CLIENT_MEE) else 2 * n

    def generate_key(self, key_id: int) -> None:
        """Generate and install a fresh key for ``key_id`` (replacing any old one)."""
        size = self.key_bytes
        key = self._rng(size)
        while size in (32, 64) and self._xts and key[:size // 2] == key[size // 2:]:
            key = self._rng(size)  # XTS requires two distinct halves
        self._keys[key_id] = key

    @property
    def _xts(self) -> bool:
        return self.generation not in (CpuGeneration.NAPLES, CpuGeneration.SGX_CLIENT_MEE)

    def has_key(self, key_id: int) -> bool:
        """Whether a key is installed for ``key_id``."""
        return key_id in self._keys

    def _key(self, key_id: int) -> bytes:
        try:
            return self._keys[key_id]
        except KeyError:
            raise PlatformError(f"no memory encryption key for key ID {key_id}") from None

    def zen1_tweak(self, block_address: int) -> int:
        """Zen 1's tweak for a 16-byte block: the XOR of one fixed value per set address
        bit (SEVurity, Section 4), so ``T(a) ^ T(b) == T(a ^ b)``."""
        t = 0
        for value, bit in zip(self._zen1_tweaks, _ZEN1_TWEAK_BITS, strict=True):
            if block_address >> bit & 1:
                t ^= value
        return t

    def _zen1_mask(self, physical_address: int, n: int) -> int:
        mask = 0
        for j in range(n // _BLOCK):
            mask |= self.zen1_tweak(physical_address + j * _BLOCK) << (8 * _BLOCK * j)
        return mask

    def _zen1(self, key_id: int, physical_address: int, data: bytes, *, encrypt: bool) -> bytes:
        mask = self._zen1_mask(physical_address, len(data))
        masked = (int.from_bytes(data, "little") ^ mask).to_bytes(len(data), "little")
        ecb = Cipher(algorithms.AES(self._key(key_id)), modes.ECB())  # noqa: S305 - XEX core
        ctx = ecb.encryptor() if encrypt else ecb.decryptor()
        out = ctx.update(masked) + ctx.finalize()
        return (int.from_bytes(out, "little") ^ mask).to_bytes(len(data), "little")

    def _cipher(self, key_id: int, physical_address: int,
                version: int | None) -> Cipher[modes.XTS] | Cipher[modes.CTR]:
        key = self._key(key_id)
        if self.generation is CpuGeneration.SGX_CLIENT_MEE:
            if version is None:
                raise PlatformError("the client MEE needs a version to seed its counter")
            # Counter block = address (8 bytes) | version (6) | block index (2): a new
            # version gives a new keystream, so rewriting equal data changes the ciphertext.
            seed = (physical_address.to_bytes(8, "big") + version.to_bytes(6, "big")
                    + bytes(2))
            return Cipher(algorithms.AES(key), modes.CTR(seed))
        return Cipher(algorithms.AES(key), modes.XTS(page_tweak(physical_address)))

    def encrypt(self, key_id: int, physical_address: int, plaintext: bytes, *,
                version: int | None = None) -> bytes:
        """Encrypt one page for ``physical_address`` (the XTS data unit is the page)."""
        if self.generation is CpuGeneration.NAPLES:
            return self._zen1(key_id, physical_address, plaintext, encrypt=True)
        enc = self._cipher(key_id, physical_address, version).encryptor()
        return enc.update(plaintext) + enc.finalize()

    def decrypt(self, key_id: int, physical_address: int, ciphertext: bytes, *,
                version: int | None = None) -> bytes:
        """Decrypt one page read from ``physical_address``."""
        if self.generation is CpuGeneration.NAPLES:
            return self._zen1(key_id, physical_address, ciphertext, encrypt=False)
        dec = self._cipher(key_id, physical_address, version).decryptor()
        return dec.update(ciphertext) + dec.finalize()
