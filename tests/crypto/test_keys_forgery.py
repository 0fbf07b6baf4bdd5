"""Issue 16, findings 1 and 3 in the key store: forged files and undone destruction.

The attacker is another guest on the same chip and VMPL (an unsigned workload: the host
launches it at will); it derives the key for an empty field selection and writes well-formed
sealed files into the victim's store directory.
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from veritee.crypto.keys import KeyStore, KeyType, Usage
from veritee.errors import ConfigError, KeyStoreError
from veritee.formats.sealed import SealedHeader, SealKind, SealPolicyKind
from veritee.formats.sevsnp import GuestFieldSelect, MsgKeyReq, Product
from veritee.platform.emulated.measurement import simple_guest_image
from veritee.platform.emulated.snp import (
    EmulatedAmdVendor,
    EmulatedSnpGuest,
    InsecureEmulatedSnpMachine,
)
from veritee.sealing import Sealer, SealingPolicy
from veritee.sealing._core import KeySource, data_key, header_for

VICTIM = simple_guest_image(b"K" * 4096)
ATTACKER = simple_guest_image(b"X" * 4096)
WEAK = MsgKeyReq(guest_field_select=GuestFieldSelect(0), vmpl=0)


def forge_blob(attacker: KeySource, data: bytes, request: MsgKeyReq, *, aad: bytes,
               like: bytes) -> bytes:
    """A blob under ``attacker``'s key, carrying the counter id and value of ``like``."""
    old = SealedHeader.from_bytes(like)
    header = header_for(request, SealPolicyKind.MEASUREMENT, SealKind.BLOB,
                        salt=os.urandom(32), nonce=os.urandom(12),
                        counter_id=old.counter_id, counter_value=old.counter_value)
    key = data_key(attacker.derived_key(request), header, b"veritee-seal-blob-v1")
    raw = header.to_bytes()
    return raw + AESGCM(key).encrypt(header.nonce, data, raw + aad)


def aad(name: str, what: str) -> bytes:
    return f"veritee-keystore-v1\0{name}\0{what}".encode()


@pytest.fixture(scope="module")
def vendor() -> EmulatedAmdVendor:
    return EmulatedAmdVendor.generate(Product.MILAN, key_size=2048,
                                      now=datetime(2026, 6, 1, tzinfo=UTC))


@pytest.fixture
def machine(vendor: EmulatedAmdVendor) -> InsecureEmulatedSnpMachine:
    return InsecureEmulatedSnpMachine(vendor)


def store_for(guest: EmulatedSnpGuest, machine: InsecureEmulatedSnpMachine,
              path: Path) -> KeyStore:
    return KeyStore(path, Sealer(guest, SealingPolicy.measurement(), counters=machine))


def test_forged_keystore_meta_refused(machine: InsecureEmulatedSnpMachine,
                                      tmp_path: Path) -> None:
    victim, attacker = machine.launch(VICTIM), machine.launch(ATTACKER)
    store = store_for(victim, machine, tmp_path)
    store.create("root", KeyType.AES_256, [Usage.WRAP], exportable=False)
    meta = tmp_path / "root" / "meta.sealed"
    info = store.info("root").to_dict()
    info["exportable"] = True
    meta.write_bytes(forge_blob(attacker, json.dumps(info).encode(), WEAK,
                                aad=aad("root", "meta"), like=meta.read_bytes()))
    with pytest.raises(KeyStoreError) as exc:
        store.export("root")
    assert exc.value.reason == "locked"


def test_forged_keystore_version_material_refused(machine: InsecureEmulatedSnpMachine,
                                                  tmp_path: Path) -> None:
    victim, attacker = machine.launch(VICTIM), machine.launch(ATTACKER)
    store = store_for(victim, machine, tmp_path)
    store.create("data", KeyType.AES_256, [Usage.DECRYPT])
    v1 = tmp_path / "data" / "v1.sealed"
    known = bytes(32)  # key material the attacker chose
    v1.write_bytes(forge_blob(attacker, known, WEAK, aad=aad("data", "v1"),
                              like=v1.read_bytes()))
    with pytest.raises(KeyStoreError) as exc:
        store.encrypt("data", b"what the victim then encrypts")
    assert exc.value.reason == "locked"


def test_destroyed_key_stays_destroyed_after_restore(machine: InsecureEmulatedSnpMachine,
                                                     tmp_path: Path) -> None:
    guest = machine.launch(VICTIM)
    # A store without a counter source refuses to run (a real SEV-SNP guest has none) ...
    with pytest.raises(ConfigError):
        KeyStore(tmp_path / "nocounters", Sealer(guest, SealingPolicy.measurement()))
    # ... and a sealer asked for rollback protection without counters refuses to write.
    with pytest.raises(ConfigError):
        Sealer(guest, SealingPolicy.measurement()).seal_to_path(tmp_path / "x", b"m",
                                                                rollback=True)
    store = store_for(guest, machine, tmp_path / "keys")
    store.create("signing", KeyType.EC_P256, [Usage.SIGN])
    backup = tmp_path / "backup"
    shutil.copytree(tmp_path / "keys", backup)
    store.destroy("signing")
    shutil.rmtree(tmp_path / "keys")
    shutil.copytree(backup, tmp_path / "keys")  # the host restores yesterday's directory
    with pytest.raises(KeyStoreError):
        store.sign("signing", b"m")


def test_unsafe_no_rollback_opt_out_is_loud(machine: InsecureEmulatedSnpMachine,
                                            tmp_path: Path) -> None:
    guest = machine.launch(VICTIM)
    store = KeyStore(tmp_path, Sealer(guest, SealingPolicy.measurement()),
                     unsafe_allow_no_rollback_protection=True)
    store.create("k", KeyType.ED25519, [Usage.SIGN])
    assert store.sign("k", b"m")[0] == 1
