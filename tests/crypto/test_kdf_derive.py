"""veritee.crypto.kdf: the labelled derive_key helper and the wrappers' argument checks."""

from __future__ import annotations

import pytest

from veritee.crypto.kdf import (
    HASH_NAMES,
    CounterLocation,
    derive_key,
    hash_algorithm,
    hkdf,
    hkdf_expand,
    hkdf_extract,
    kbkdf_cmac,
    kbkdf_hmac,
)

SECRET = bytes(range(32))


def test_hkdf_matches_rfc5869_test_case_1() -> None:
    okm = hkdf(
        b"\x0b" * 22,
        length=42,
        salt=bytes(range(13)),
        info=bytes(range(0xF0, 0xFA)),
        hash_name="SHA-256",
    )
    assert okm.hex() == (
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
    )
    prk = hkdf_extract(b"\x0b" * 22, salt=bytes(range(13)))
    assert prk.hex() == "077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5"
    assert hkdf_expand(prk, length=42, info=bytes(range(0xF0, 0xFA))) == okm


def test_derive_key_is_kbkdf_hmac_sha256_with_a_namespaced_label() -> None:
    key = derive_key(SECRET, "sealing/aes-256-gcm", b"ctx", 32)
    assert key == kbkdf_hmac(
        SECRET, length=32, hash_name="SHA-256", label=b"veritee/sealing/aes-256-gcm", context=b"ctx"
    )
    assert derive_key(SECRET, "sealing/aes-256-gcm", b"ctx", 32) == key


def test_derive_key_separates_labels_contexts_lengths_and_secrets() -> None:
    base = derive_key(SECRET, "a", b"x", 32)
    assert base != derive_key(SECRET, "b", b"x", 32)
    assert base != derive_key(SECRET, "a", b"y", 32)
    assert base[:16] != derive_key(SECRET, "a", b"x", 16)  # L is in the fixed data
    assert base != derive_key(SECRET[::-1], "a", b"x", 32)
    # label and context cannot be shifted into each other: the 0x00 separator
    assert derive_key(SECRET, "ab", b"c") != derive_key(SECRET, "a", b"bc")


@pytest.mark.parametrize(
    ("secret", "label", "length", "match"),
    [
        (b"short", "a", 32, "16 bytes"),
        (SECRET, "", 32, "label"),
        (SECRET, "a\x00b", 32, "label"),
        (SECRET, "caf\u00e9", 32, "label"),
        (SECRET, "a", 0, "length"),
        (SECRET, "a", 1025, "length"),
    ],
)
def test_derive_key_rejects_bad_arguments(
    secret: bytes, label: str, length: int, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        derive_key(secret, label, b"", length)


def test_kbkdf_argument_checks() -> None:
    with pytest.raises(ValueError, match="break_location"):
        kbkdf_hmac(SECRET, length=16, fixed_data=b"abc", location=CounterLocation.MIDDLE_FIXED)
    with pytest.raises(ValueError, match="either"):
        kbkdf_hmac(SECRET, length=16, fixed_data=b"abc", label=b"x")
    with pytest.raises(ValueError, match="counter_bytes"):
        kbkdf_hmac(SECRET, length=16, label=b"x", counter_bytes=5)
    with pytest.raises(ValueError, match="AES"):
        kbkdf_cmac(b"k" * 15, length=16, label=b"x")
    assert len(kbkdf_cmac(b"k" * 32, length=40, label=b"x", context=b"y")) == 40


def test_every_named_hash_resolves() -> None:
    for name in HASH_NAMES:
        assert hash_algorithm(name).digest_size >= 20
    assert hash_algorithm("SHA2-512/256").name == "sha512-256"
    with pytest.raises(ValueError, match="unsupported"):
        hash_algorithm("MD5")
