"""veritee.sealing on a TPM 2.0 (swtpm): the same API as on SEV-SNP, keys bound to PCR values,
rollback protection from the TPM's NV counters, and the key store on them."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from veritee.errors import KeyStoreError, PlatformError, SealingError
from veritee.formats.eventlog import EventType
from veritee.formats.sealed import SealedHeader, SealTee, TpmKeyParams
from veritee.formats.tpm import HashAlg
from veritee.platform.adapters import TpmAdapter
from veritee.platform.tpm import BootEvent, InsecureSwtpmPlatform, swtpm_unavailable_reason
from veritee.sealing import (
    Sealer,
    SealingPolicy,
    seal,
    seal_to_path,
    unseal,
    unseal_path,
)

REASON = swtpm_unavailable_reason()
pytestmark = pytest.mark.skipif(REASON is not None, reason=REASON or "")

POLICY = SealingPolicy.measurement(pcrs=(0, 7, 9))


@pytest.fixture(scope="module")
def template() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="veritee-swtpm-seal-"))
    InsecureSwtpmPlatform.open(root / "state").close()
    yield root / "state"
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def tpm(template: Path, tmp_path: Path) -> Iterator[InsecureSwtpmPlatform]:
    shutil.copytree(template, tmp_path / "tpm")
    platform = InsecureSwtpmPlatform.open(tmp_path / "tpm")
    yield platform
    platform.close()


def _extend(tpm: InsecureSwtpmPlatform, pcr: int, what: bytes) -> None:
    tpm.extend(BootEvent(pcr, EventType.EV_IPL, what))


def test_tpm_seal_opens_while_the_pcrs_hold(tpm: InsecureSwtpmPlatform) -> None:
    blob = seal(TpmAdapter(tpm), b"disk key", POLICY, aad=b"vol1")
    header = SealedHeader.from_bytes(blob)
    assert header.tee is SealTee.TPM
    assert header.key_params() == TpmKeyParams(int(HashAlg.SHA256), (0, 7, 9))
    assert unseal(tpm, blob, POLICY, aad=b"vol1") == b"disk key"
    _extend(tpm, 12, b"an unbound PCR changes: still opens")
    assert unseal(tpm, blob, POLICY, aad=b"vol1") == b"disk key"


def test_tpm_pcr_change_refused(tpm: InsecureSwtpmPlatform) -> None:
    blob = seal(tpm, b"disk key", POLICY)
    _extend(tpm, 9, b"another boot loader")
    with pytest.raises(SealingError):
        unseal(tpm, blob, POLICY)


def test_tpm_header_binding_fewer_pcrs_than_the_reader_expects_is_refused(
        tpm: InsecureSwtpmPlatform) -> None:
    weak = seal(tpm, b"x", SealingPolicy.measurement(pcrs=(0,)))
    with pytest.raises(SealingError):
        unseal(tpm, weak, POLICY)


def test_tpm_other_tpm_refused(tpm: InsecureSwtpmPlatform, tmp_path: Path) -> None:
    blob = seal(tpm, b"disk key", POLICY)
    other = InsecureSwtpmPlatform.open(tmp_path / "another")  # its own seeds
    try:
        with pytest.raises(SealingError):
            unseal(other, blob, POLICY)
    finally:
        other.close()


def test_tpm_tampered_blob_refused(tpm: InsecureSwtpmPlatform) -> None:
    blob = seal(tpm, b"disk key", POLICY)
    for offset in (0x0B, 0x40, len(blob) - 1):  # the PCR bitmap, the salt, the tag
        bad = bytearray(blob)
        bad[offset] ^= 0x02
        with pytest.raises(SealingError):
            unseal(tpm, bytes(bad), POLICY)


def test_tpm_has_no_signer_policy(tpm: InsecureSwtpmPlatform) -> None:
    with pytest.raises(PlatformError):
        seal(tpm, b"x", SealingPolicy.signer())


def test_tpm_nv_counters_refuse_a_rolled_back_file(tpm: InsecureSwtpmPlatform,
                                                   tmp_path: Path) -> None:
    path = tmp_path / "state.sealed"
    sealer = Sealer(TpmAdapter(tpm), POLICY, counters=tpm)
    sealer.seal_to_path(path, b"version 1", rollback=True)
    old = path.read_bytes()
    sealer.seal_to_path(path, b"version 2", rollback=True)
    assert sealer.unseal_path(path, rollback=True) == b"version 2"
    path.write_bytes(old)  # the host restores the older copy
    with pytest.raises(SealingError):
        sealer.unseal_path(path, rollback=True)
    # And through the plain functions with a TPM-created counter.
    seal_to_path(tpm, tmp_path / "b", b"one", POLICY, counters=tpm)
    first = (tmp_path / "b").read_bytes()
    seal_to_path(tpm, tmp_path / "b", b"two", POLICY, counters=tpm)
    (tmp_path / "b").write_bytes(first)
    with pytest.raises(SealingError):
        unseal_path(tpm, tmp_path / "b", POLICY, counters=tpm)


def test_key_store_on_the_tpm_with_rollback_protection(tpm: InsecureSwtpmPlatform,
                                                       tmp_path: Path) -> None:
    from veritee.crypto.keys import KeyStore, KeyType, Usage

    platform = TpmAdapter(tpm)
    store = KeyStore(tmp_path / "keys", Sealer(platform, POLICY, counters=tpm))
    store.create("db", KeyType.AES_256, [Usage.DECRYPT])
    ciphertext = store.encrypt("db", b"row")
    snapshot = {p: p.read_bytes() for p in (tmp_path / "keys").rglob("*") if p.is_file()}
    store.destroy("db")
    for p, data in snapshot.items():  # the host restores every file from before the destroy
        p.write_bytes(data)
    reopened = KeyStore(tmp_path / "keys", Sealer(platform, POLICY, counters=tpm))
    with pytest.raises((KeyStoreError, SealingError)):
        reopened.decrypt("db", ciphertext)
    _extend(tpm, 7, b"secure boot turned off")
    with pytest.raises(KeyStoreError):  # another PCR state: the store is locked
        KeyStore(tmp_path / "keys", Sealer(platform, POLICY, counters=tpm)).entries()
