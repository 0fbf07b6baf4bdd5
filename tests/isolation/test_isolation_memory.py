"""DRAM and the memory encryption engine: AES-XTS with the physical address as tweak."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from veritee.errors import PlatformError
from veritee.platform.emulated.isolation import (
    PAGE_SIZE,
    CpuGeneration,
    MemoryEncryptionEngine,
    PhysicalMemory,
)
from veritee.platform.emulated.isolation.memory import page_tweak

DATA = (b"confidential page content " * 158)[:PAGE_SIZE]


def test_tweak_is_the_physical_address_little_endian() -> None:
    assert page_tweak(0x1234_5000) == bytes.fromhex("0050341200000000") + bytes(8)


def test_genoa_engine_is_aes_256_xts_with_address_tweak() -> None:
    engine = MemoryEncryptionEngine(rng=lambda n: bytes(range(n)),
                                    generation=CpuGeneration.GENOA)
    engine.generate_key(7)
    key = bytes(range(64))
    want = Cipher(algorithms.AES(key), modes.XTS(page_tweak(0x3000))).encryptor().update(DATA)
    assert engine.encrypt(7, 0x3000, DATA) == want
    assert engine.decrypt(7, 0x3000, want) == DATA


def test_same_plaintext_differs_per_address_and_moved_ciphertext_is_garbage() -> None:
    engine = MemoryEncryptionEngine()
    engine.generate_key(1)
    a, b = engine.encrypt(1, 0x1000, DATA), engine.encrypt(1, 0x2000, DATA)
    assert a != b
    assert engine.decrypt(1, 0x2000, a) != DATA


def test_keys_are_per_key_id() -> None:
    engine = MemoryEncryptionEngine()
    engine.generate_key(1)
    engine.generate_key(2)
    assert engine.decrypt(2, 0, engine.encrypt(1, 0, DATA)) != DATA
    with pytest.raises(PlatformError, match="no memory encryption key"):
        engine.encrypt(3, 0, DATA)


def test_physical_memory_bounds_and_scan() -> None:
    memory = PhysicalMemory(4)
    assert len(DATA) == PAGE_SIZE
    memory.store(2, DATA)
    assert memory.load(2) == DATA
    assert memory.find_all(b"confidential")[0] == 2 * PAGE_SIZE
    with pytest.raises(PlatformError):
        memory.load(4)
    with pytest.raises(PlatformError):
        memory.store(0, b"short")


@pytest.mark.parametrize(("generation", "key_bytes"), [
    (CpuGeneration.NAPLES, 16), (CpuGeneration.ROME, 32), (CpuGeneration.MILAN, 32),
    (CpuGeneration.GENOA, 64), (CpuGeneration.TURIN, 64),
    (CpuGeneration.SGX_CLIENT_MEE, 16), (CpuGeneration.ICELAKE_TME_MK, 32)],
    ids=lambda v: v.name.lower() if isinstance(v, CpuGeneration) else str(v))
def test_key_size_per_generation(generation: CpuGeneration, key_bytes: int) -> None:
    """Regression: every AMD generation used AES-256-XTS; EPYC 7001-7003 use AES-128."""
    engine = MemoryEncryptionEngine(generation=generation)
    assert engine.key_bytes == key_bytes
    assert generation.key_bits == (256 if key_bytes == 64 else 128)


def test_milan_engine_is_aes_128_xts() -> None:
    engine = MemoryEncryptionEngine(rng=lambda n: bytes(range(n)),
                                    generation=CpuGeneration.MILAN)
    engine.generate_key(1)
    want = Cipher(algorithms.AES(bytes(range(32))),
                  modes.XTS(page_tweak(0x5000))).encryptor().update(DATA)
    assert engine.encrypt(1, 0x5000, DATA) == want


def test_zen1_tweak_is_linear_so_block_moves_are_predictable() -> None:
    """SEVurity: Zen 1's tweak is a XOR of per-address-bit values, so the tweak difference
    of two blocks depends only on their address distance. Once known for a distance, it
    moves *any* ciphertext block that far with a predictable plaintext (p XOR delta)."""
    engine = MemoryEncryptionEngine(generation=CpuGeneration.NAPLES)
    engine.generate_key(1)
    t = engine.zen1_tweak
    assert t(0x1000) ^ t(0x2030) == t(0x1000 ^ 0x2030)
    delta = t(0x10)  # block 0 -> block 1: the same distance in every page
    secret_block = b"\x5a" * 16
    c = engine.encrypt(1, 0x7000, secret_block * (PAGE_SIZE // 16))
    moved = (int.from_bytes(c[:16], "little") ^ delta).to_bytes(16, "little")
    got = engine.decrypt(1, 0x7000, c[:16] + moved + c[32:])[16:32]
    assert got == (int.from_bytes(secret_block, "little") ^ delta).to_bytes(16, "little")


def test_client_mee_ciphertext_depends_on_the_version() -> None:
    engine = MemoryEncryptionEngine(generation=CpuGeneration.SGX_CLIENT_MEE)
    engine.generate_key(0)
    v1, v2 = (engine.encrypt(0, 0x1000, DATA, version=v) for v in (1, 2))
    assert v1 != v2
    assert engine.decrypt(0, 0x1000, v2, version=2) == DATA
    with pytest.raises(PlatformError, match="version"):
        engine.encrypt(0, 0x1000, DATA)
