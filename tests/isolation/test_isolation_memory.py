"""DRAM and the memory encryption engine: AES-XTS with the physical address as tweak."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from veritee.errors import PlatformError
from veritee.platform.emulated.isolation import PAGE_SIZE, MemoryEncryptionEngine, PhysicalMemory
from veritee.platform.emulated.isolation.memory import page_tweak

DATA = (b"confidential page content " * 158)[:PAGE_SIZE]


def test_tweak_is_the_physical_address_little_endian() -> None:
    assert page_tweak(0x1234_5000) == bytes.fromhex("0050341200000000") + bytes(8)


def test_engine_is_aes_xts_with_address_tweak() -> None:
    engine = MemoryEncryptionEngine(rng=lambda n: bytes(range(n)))
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
