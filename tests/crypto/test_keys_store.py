"""The sealed key store: lifecycle, usage policy, rotation, and what a foreign workload sees."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from veritee.crypto.keys import KeyStore, KeyType, Usage
from veritee.errors import KeyStoreError, VerificationError
from veritee.formats.sevsnp import Product
from veritee.platform.emulated.measurement import simple_guest_image
from veritee.platform.emulated.snp import EmulatedAmdVendor, InsecureEmulatedSnpMachine
from veritee.sealing import Sealer, SealingPolicy

IMAGE = simple_guest_image(b"K" * 4096)


@pytest.fixture(scope="module")
def vendor() -> EmulatedAmdVendor:
    return EmulatedAmdVendor.generate(Product.MILAN, key_size=2048,
                                      now=datetime(2026, 6, 1, tzinfo=UTC))


@pytest.fixture
def machine(vendor: EmulatedAmdVendor) -> InsecureEmulatedSnpMachine:
    return InsecureEmulatedSnpMachine(vendor)


def store_for(machine: InsecureEmulatedSnpMachine, path: Path, image: object = IMAGE) -> KeyStore:
    guest = machine.launch(image)  # type: ignore[arg-type]
    return KeyStore(path, Sealer(guest, SealingPolicy.measurement(), counters=machine))


@pytest.fixture
def store(machine: InsecureEmulatedSnpMachine, tmp_path: Path) -> KeyStore:
    return store_for(machine, tmp_path / "keys")


@pytest.mark.parametrize(("kt", "cls"), [(KeyType.EC_P256, ec.EllipticCurvePublicKey),
                                         (KeyType.EC_P384, ec.EllipticCurvePublicKey),
                                         (KeyType.ED25519, ed25519.Ed25519PublicKey),
                                         (KeyType.RSA_3072, rsa.RSAPublicKey)])
def test_sign_verify_each_type(store: KeyStore, kt: KeyType, cls: type) -> None:
    store.create("k", kt, [Usage.SIGN])
    assert isinstance(store.public_key("k"), cls)
    version, sig = store.sign("k", b"msg")
    assert version == 1
    store.verify("k", 1, b"msg", sig)
    with pytest.raises(VerificationError):
        store.verify("k", 1, b"other", sig)


def test_rotation_old_versions_still_verify_and_decrypt(store: KeyStore) -> None:
    store.create("s", KeyType.EC_P384, ["sign"])
    store.create("e", KeyType.AES_256, ["decrypt", "wrap"])
    v1, sig1 = store.sign("s", b"m")
    ct1 = store.encrypt("e", b"secret", aad=b"ctx")
    wrapped1 = store.wrap("e", b"k" * 32)
    assert store.rotate("s").versions == (1, 2)
    assert store.rotate("e").latest == 2
    v2, _ = store.sign("s", b"m")
    assert (v1, v2) == (1, 2)
    store.verify("s", 1, b"m", sig1)
    assert store.encrypt("e", b"x")[:4] == (2).to_bytes(4, "big")
    assert store.decrypt("e", ct1, aad=b"ctx") == b"secret"
    assert store.unwrap("e", wrapped1) == b"k" * 32
    with pytest.raises(VerificationError):
        store.decrypt("e", ct1, aad=b"other ctx")


def test_rsa_decrypt_and_wrap(store: KeyStore) -> None:
    store.create("r", KeyType.RSA_3072, ["decrypt", "wrap"])
    assert store.decrypt("r", store.encrypt("r", b"hi")) == b"hi"
    assert store.unwrap("r", store.wrap("r", b"key")) == b"key"


def test_wrong_usage_is_refused(store: KeyStore) -> None:
    store.create("s", KeyType.ED25519, ["sign"])
    with pytest.raises(KeyStoreError) as exc:
        store.encrypt("s", b"x")
    assert exc.value.reason == "wrong-usage"
    store.create("e", KeyType.AES_256, ["decrypt"])
    with pytest.raises(KeyStoreError) as exc:
        store.wrap("e", b"k" * 16)
    assert exc.value.reason == "wrong-usage"


def test_usage_not_possible_for_type_is_bad_request(store: KeyStore) -> None:
    with pytest.raises(KeyStoreError) as exc:
        store.create("a", KeyType.AES_256, ["sign"])
    assert exc.value.reason == "bad-request"
    with pytest.raises(ValueError):
        store.create("a", "dsa-1024", ["sign"])


@pytest.mark.parametrize("name", ["", "../etc", ".hidden", "a/b", "x" * 129, "sp ace"])
def test_bad_handles(store: KeyStore, name: str) -> None:
    with pytest.raises(KeyStoreError) as exc:
        store.info(name)
    assert exc.value.reason == "bad-request"


def test_unknown_key_and_version(store: KeyStore) -> None:
    with pytest.raises(KeyStoreError) as exc:
        store.sign("nope", b"x")
    assert exc.value.reason == "unknown-key"
    store.create("s", KeyType.EC_P256, ["sign"])
    with pytest.raises(KeyStoreError) as exc:
        store.verify("s", 7, b"x", b"sig")
    assert exc.value.reason == "unknown-key"


def test_duplicate_create_refused(store: KeyStore) -> None:
    store.create("s", KeyType.EC_P256, ["sign"])
    with pytest.raises(KeyStoreError) as exc:
        store.create("s", KeyType.EC_P256, ["sign"])
    assert exc.value.reason == "exists"


def test_export_only_when_exportable(store: KeyStore) -> None:
    store.create("n", KeyType.AES_256, ["decrypt"])
    with pytest.raises(KeyStoreError) as exc:
        store.export("n")
    assert exc.value.reason == "not-exportable"
    store.create("x", KeyType.AES_256, ["decrypt"], exportable=True)
    assert len(store.export("x")) == 32


def test_no_key_material_on_disk_in_the_clear(store: KeyStore, tmp_path: Path) -> None:
    store.create("x", KeyType.AES_256, ["decrypt"], exportable=True)
    store.create("p", KeyType.EC_P256, ["sign"], exportable=True)
    secrets = [store.export("x"), store.export("p")[-32:]]
    blobs = b"".join(p.read_bytes() for p in (tmp_path / "keys").rglob("*") if p.is_file())
    for secret in secrets:
        assert secret not in blobs


def test_destroy_is_final_even_with_an_old_metadata_copy(store: KeyStore,
                                                         tmp_path: Path) -> None:
    store.create("d", KeyType.AES_256, ["decrypt"])
    meta = tmp_path / "keys" / "d" / "meta.sealed"
    old_meta = meta.read_bytes()
    store.destroy("d")
    assert not (tmp_path / "keys" / "d" / "v1.sealed").exists()
    with pytest.raises(KeyStoreError) as exc:
        store.encrypt("d", b"x")
    assert exc.value.reason == "destroyed"
    meta.write_bytes(old_meta)  # the host restores yesterday's metadata
    with pytest.raises(KeyStoreError) as exc:
        store.info("d")
    assert exc.value.reason == "locked"


def test_store_opened_by_another_measurement_is_locked(machine: InsecureEmulatedSnpMachine,
                                                       tmp_path: Path) -> None:
    store_for(machine, tmp_path / "keys").create("k", KeyType.EC_P256, ["sign"])
    other = store_for(machine, tmp_path / "keys", simple_guest_image(b"O" * 4096))
    with pytest.raises(KeyStoreError) as exc:
        other.sign("k", b"x")
    assert exc.value.reason == "locked"
    assert [i.name for i in store_for(machine, tmp_path / "keys").entries()] == ["k"]


def test_material_swapped_between_keys_is_refused(store: KeyStore, tmp_path: Path) -> None:
    store.create("a", KeyType.AES_256, ["decrypt"])
    store.create("b", KeyType.AES_256, ["decrypt"])
    root = tmp_path / "keys"
    (root / "b" / "v1.sealed").write_bytes((root / "a" / "v1.sealed").read_bytes())
    with pytest.raises(KeyStoreError) as exc:
        store.encrypt("b", b"x")
    assert exc.value.reason == "locked"


def test_keys_from_platform_rng(machine: InsecureEmulatedSnpMachine, tmp_path: Path) -> None:
    """EC and AES material comes from the injected RNG (the TEE's DRBG in production)."""
    calls: list[int] = []

    def rng(n: int) -> bytes:
        calls.append(n)
        return os.urandom(n)

    guest = machine.launch(IMAGE)
    store = KeyStore(tmp_path / "k", Sealer(guest, SealingPolicy.measurement(), machine), rng=rng)
    store.create("e", KeyType.EC_P384, ["sign"])
    store.create("a", KeyType.AES_256, ["decrypt"])
    assert calls[:2] == [56, 32]
