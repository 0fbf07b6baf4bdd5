"""Sealed files: round trips, random access, and every chunk-level attack detected."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from veritee.errors import SealingError
from veritee.formats.sealed import HEADER_SIZE
from veritee.platform.emulated.measurement import simple_guest_image
from veritee.platform.emulated.snp import (
    EmulatedAmdVendor,
    EmulatedSnpGuest,
    InsecureEmulatedSnpMachine,
)
from veritee.sealing import (
    SealingPolicy,
    inspect,
    open_sealed,
    reseal_path,
    seal_file,
    unseal_file,
)

CHUNK = 1024
STEP = CHUNK + 16
IMAGE = simple_guest_image(b"S" * 4096)
P = SealingPolicy.measurement()


@pytest.fixture
def guest(vendor: EmulatedAmdVendor) -> EmulatedSnpGuest:
    return InsecureEmulatedSnpMachine(vendor).launch(IMAGE)


def _sealed(guest: EmulatedSnpGuest, tmp_path: Path, data: bytes, name: str = "f") -> Path:
    src, dst = tmp_path / f"{name}.plain", tmp_path / f"{name}.sealed"
    src.write_bytes(data)
    seal_file(guest, src, dst, SealingPolicy.measurement(), chunk_size=CHUNK)
    return dst


def _refused_open(guest: EmulatedSnpGuest, path: Path) -> None:
    with pytest.raises(SealingError) as exc, open_sealed(guest, path, P) as reader:
        b"".join(reader.chunks())
    assert str(exc.value) == SealingError.MESSAGE


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 3 * CHUNK + 5])
def test_round_trip(guest: EmulatedSnpGuest, tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    sealed = _sealed(guest, tmp_path, data)
    chunks = max(1, -(-size // CHUNK))  # even empty input has one (empty, last) chunk
    assert sealed.stat().st_size == HEADER_SIZE + size + 16 * chunks
    out = tmp_path / "out"
    unseal_file(guest, sealed, out, P)
    assert out.read_bytes() == data
    with open_sealed(guest, sealed, P) as reader:
        assert reader.size == size


def test_random_access_reads(guest: EmulatedSnpGuest, tmp_path: Path) -> None:
    data = os.urandom(5 * CHUNK + 123)
    sealed = _sealed(guest, tmp_path, data)
    with open_sealed(guest, sealed, P) as reader:
        for offset, length in [(0, 10), (CHUNK - 3, 6), (2 * CHUNK, CHUNK), (0, len(data)),
                               (len(data) - 5, 100), (len(data), 10), (4 * CHUNK + 7, 1)]:
            assert reader.read(offset, length) == data[offset:offset + length]


def test_reordered_chunks_detected(guest: EmulatedSnpGuest, tmp_path: Path) -> None:
    sealed = _sealed(guest, tmp_path, os.urandom(4 * CHUNK))
    raw = bytearray(sealed.read_bytes())
    a, b = HEADER_SIZE, HEADER_SIZE + STEP
    raw[a:a + STEP], raw[b:b + STEP] = raw[b:b + STEP], raw[a:a + STEP]
    sealed.write_bytes(bytes(raw))
    _refused_open(guest, sealed)


def test_chunk_swapped_in_from_another_file_detected(guest: EmulatedSnpGuest,
                                                     tmp_path: Path) -> None:
    data = os.urandom(3 * CHUNK)
    one, two = _sealed(guest, tmp_path, data, "one"), _sealed(guest, tmp_path, data, "two")
    raw1, raw2 = bytearray(one.read_bytes()), two.read_bytes()
    raw1[HEADER_SIZE + STEP:HEADER_SIZE + 2 * STEP] = raw2[HEADER_SIZE + STEP:HEADER_SIZE +
                                                           2 * STEP]
    one.write_bytes(bytes(raw1))
    _refused_open(guest, one)


@pytest.mark.parametrize("cut", [1, 16, STEP, STEP + 1, 2 * STEP])
def test_truncation_detected_on_open(guest: EmulatedSnpGuest, tmp_path: Path, cut: int) -> None:
    sealed = _sealed(guest, tmp_path, os.urandom(3 * CHUNK + 10))
    raw = sealed.read_bytes()
    sealed.write_bytes(raw[:-cut])
    with pytest.raises(SealingError):
        open_sealed(guest, sealed, P)


def test_truncation_at_chunk_boundary_detected(guest: EmulatedSnpGuest, tmp_path: Path) -> None:
    sealed = _sealed(guest, tmp_path, os.urandom(3 * CHUNK))
    sealed.write_bytes(sealed.read_bytes()[:HEADER_SIZE + 2 * STEP])
    with pytest.raises(SealingError):
        open_sealed(guest, sealed, P)


def test_extension_detected(guest: EmulatedSnpGuest, tmp_path: Path) -> None:
    sealed = _sealed(guest, tmp_path, os.urandom(2 * CHUNK))
    raw = sealed.read_bytes()
    sealed.write_bytes(raw + raw[HEADER_SIZE:HEADER_SIZE + STEP])
    with pytest.raises(SealingError):
        open_sealed(guest, sealed, P)


def test_flipped_byte_in_middle_chunk_detected_when_read(guest: EmulatedSnpGuest,
                                                         tmp_path: Path) -> None:
    data = os.urandom(4 * CHUNK)
    sealed = _sealed(guest, tmp_path, data)
    raw = bytearray(sealed.read_bytes())
    raw[HEADER_SIZE + STEP + 5] ^= 1
    sealed.write_bytes(bytes(raw))
    with open_sealed(guest, sealed, P) as reader:  # header and last chunk are fine
        assert reader.read(0, 10) == data[:10]
        with pytest.raises(SealingError):
            reader.read(CHUNK, 10)
    with pytest.raises(SealingError):
        unseal_file(guest, sealed, tmp_path / "out", P)
    assert not (tmp_path / "out").exists(), "no partial plaintext is left behind"


@pytest.mark.parametrize("offset", list(range(HEADER_SIZE)))
def test_any_header_byte_tampered_detected(guest: EmulatedSnpGuest, tmp_path: Path,
                                           offset: int) -> None:
    sealed = tmp_path / "f.sealed"
    if not sealed.exists():
        sealed = _sealed(guest, tmp_path, b"z" * (CHUNK + 1))
    raw = bytearray(sealed.read_bytes())
    raw[offset] ^= 0x01
    bad = tmp_path / "bad.sealed"
    bad.write_bytes(bytes(raw))
    with pytest.raises(SealingError):
        open_sealed(guest, bad, P)


def test_stream_is_not_accepted_as_blob_and_vice_versa(guest: EmulatedSnpGuest,
                                                       tmp_path: Path) -> None:
    from veritee.sealing import seal, unseal

    sealed = _sealed(guest, tmp_path, b"abc")
    with pytest.raises(SealingError):
        unseal(guest, sealed.read_bytes(), P)
    blob = tmp_path / "blob"
    blob.write_bytes(seal(guest, b"abc", SealingPolicy.measurement()))
    with pytest.raises(SealingError):
        open_sealed(guest, blob, P)


def test_reseal_file_in_place(vendor: EmulatedAmdVendor, tmp_path: Path) -> None:
    machine = InsecureEmulatedSnpMachine(vendor)
    guest = machine.launch(IMAGE)
    data = os.urandom(3 * CHUNK + 1)
    sealed = _sealed(guest, tmp_path, data)
    before = hashlib.sha256(sealed.read_bytes()).digest()
    untied = SealingPolicy.measurement(bind_tcb=False)
    reseal_path(guest, sealed, untied, expected=P)
    assert hashlib.sha256(sealed.read_bytes()).digest() != before
    assert inspect(sealed.read_bytes()).tcb_version == 0
    with open_sealed(guest, sealed, untied) as reader:
        assert b"".join(reader.chunks()) == data


def test_sealed_file_with_rollback_counter(vendor: EmulatedAmdVendor, tmp_path: Path) -> None:
    machine = InsecureEmulatedSnpMachine(vendor)
    guest = machine.launch(IMAGE)
    src, dst = tmp_path / "p", tmp_path / "s"
    src.write_bytes(b"v1" * 1000)
    seal_file(guest, src, dst, SealingPolicy.measurement(), chunk_size=CHUNK, counters=machine)
    old = dst.read_bytes()
    src.write_bytes(b"v2" * 1000)
    seal_file(guest, src, dst, SealingPolicy.measurement(), chunk_size=CHUNK, counters=machine)
    with open_sealed(guest, dst, P, machine) as reader:
        assert reader.read(0, 2) == b"v2"
    dst.write_bytes(old)
    with pytest.raises(SealingError):
        open_sealed(guest, dst, P, machine)
