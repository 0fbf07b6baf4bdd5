"""Sealed files for large data: a STREAM-style chunked AEAD with random access.

Construction (Hoang, Reyhanitabar, Rogaway, Vizar, "Online Authenticated-Encryption and its
Nonce-Reuse Misuse-Resistance", CRYPTO 2015, the STREAM scheme) over AES-256-GCM:

* chunk *i* of CHUNK_SIZE plaintext bytes (the last may be shorter, and exists even for empty
  input) is sealed with nonce = NONCE_PREFIX (7 bytes) || i (u32, big-endian) || last (1 byte);
* its associated data is the whole 112-byte header || i (u64, little-endian) || last, so
  every chunk is bound to this file's header and to its position;
* the data key is unique to the file (a fresh salt, see :func:`~._core.data_key`).

Reordering or swapping chunks breaks the nonce/AD, moving chunks between files breaks the key,
truncation drops the chunk flagged last, and extension turns the flagged chunk into a
non-last one: each is detected. Memory use is a few chunks, whatever the file size.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from veritee._fs import atomic_open
from veritee.errors import ConfigError, FormatError, SealingError
from veritee.formats.sealed import HEADER_SIZE, SealedHeader, SealKind
from veritee.sealing._core import (
    MonotonicCounters,
    RollbackSlot,
    Sealable,
    SealingPolicy,
    blank_header,
    check_rollback,
    complete_publish,
    data_key,
    new_seal,
    no_oracle,
    pending_path,
    publish,
    reader_key,
    with_counter,
)

__all__ = ["DEFAULT_CHUNK_SIZE", "SealedFileReader", "open_sealed", "reseal_file", "seal_file",
           "unseal_file"]

DEFAULT_CHUNK_SIZE = 1 << 20
_TAG = 16
_LABEL = b"veritee-seal-stream-v1"
_MAX_CHUNKS = 1 << 32


def _nonce(prefix: bytes, index: int, last: bool) -> bytes:
    return prefix + index.to_bytes(4, "big") + (b"\x01" if last else b"\x00")


def _aad(header: bytes, index: int, last: bool) -> bytes:
    return header + index.to_bytes(8, "little") + (b"\x01" if last else b"\x00")


def _read_chunks(fh: BinaryIO, size: int) -> Iterator[bytes]:
    while True:
        chunk = fh.read(size)
        yield chunk
        if len(chunk) < size:
            return


def _with_last(chunks: Iterable[bytes]) -> Iterator[tuple[bytes, bool]]:
    """Pairs (chunk, is_last), with one empty last chunk for empty input."""
    it = iter(chunks)
    current = next(it, b"")
    for following in it:
        if not following:
            break
        yield current, False
        current = following
    yield current, True


def existing_counter(path: Path) -> bytes | None:
    """The rollback counter id of the sealed file at ``path`` (a new version keeps it), or of
    its pending version when a crash interrupted the rename."""
    for candidate in (path, pending_path(path)):
        try:
            with candidate.open("rb") as fh:
                header = SealedHeader.from_bytes(fh.read(HEADER_SIZE))
        except (OSError, FormatError):
            continue
        if header.rollback_protected:
            return header.counter_id
    return None


def _seal_chunks(source: Sealable, chunks: Iterable[bytes], dst: Path, policy: SealingPolicy,
                 *, chunk_size: int, counters: MonotonicCounters | None,
                 counter_id: bytes | None) -> None:
    if not 1 <= chunk_size <= 1 << 30:
        raise ConfigError(f"chunk_size: got {chunk_size}, want 1..2**30")
    slot = (RollbackSlot.next_for(counters, counter_id or existing_counter(dst),
                                  declared=counter_id is not None)
            if counters is not None else None)
    header = with_counter(blank_header(SealKind.STREAM, policy, salt=os.urandom(32),
                                       nonce=os.urandom(7) + bytes(5),
                                       chunk_size=chunk_size), slot)
    header, derived = new_seal(source, policy, header)
    raw = header.to_bytes()
    aead = AESGCM(data_key(derived, header, _LABEL))
    prefix = header.nonce[:7]

    def write(out: BinaryIO) -> None:
        out.write(raw)
        for index, (chunk, last) in enumerate(_with_last(chunks)):
            if index >= _MAX_CHUNKS:
                raise ConfigError("input too large for this chunk size (2**32 chunks)")
            out.write(aead.encrypt(_nonce(prefix, index, last), chunk, _aad(raw, index, last)))

    publish(dst, write, slot)  # commits only once the new version is durable


def seal_file(source: Sealable, src: Path, dst: Path, policy: SealingPolicy, *,
              chunk_size: int = DEFAULT_CHUNK_SIZE,
              counters: MonotonicCounters | None = None,
              counter_id: bytes | None = None) -> None:
    """Seal the file ``src`` into ``dst`` (atomically), streaming: memory is O(chunk_size).
    ``counters`` / ``counter_id``: as for :func:`~veritee.sealing.seal_to_path`."""
    with Path(src).open("rb") as fh:
        _seal_chunks(source, _read_chunks(fh, chunk_size), Path(dst), policy,
                     chunk_size=chunk_size, counters=counters, counter_id=counter_id)


class SealedFileReader:
    """Random access to a sealed file. Opening checks the header against the reader's
    expected policy and the rollback counter, and authenticates the final chunk (so
    truncation is caught before any read); each read then authenticates the chunks it
    touches."""

    def __init__(self, source: Sealable, path: Path, policy: SealingPolicy,
                 counters: MonotonicCounters | None = None,
                 counter_id: bytes | None = None) -> None:
        self._fh: BinaryIO | None = None
        self._last: bytes | None = None  # the final chunk, authenticated once at open
        try:
            self._open(source, Path(path), policy, counters, counter_id)
        except BaseException:
            self.close()
            raise

    def _open(self, source: Sealable, path: Path, policy: SealingPolicy,
              counters: MonotonicCounters | None, counter_id: bytes | None) -> None:
        with no_oracle():
            self._fh = path.open("rb")
            raw = self._fh.read(HEADER_SIZE)
            header = SealedHeader.from_bytes(raw)
            if header.kind is not SealKind.STREAM:
                raise SealingError()
            check_rollback(header, counters, counter_id)
            self._raw = raw
            self._prefix = header.nonce[:7]
            self._chunk = header.chunk_size
            self._aead = AESGCM(data_key(reader_key(source, header, policy), header, _LABEL))
            body = os.fstat(self._fh.fileno()).st_size - HEADER_SIZE
            step = self._chunk + _TAG
            self._count = -(-body // step)
            last_len = body - (self._count - 1) * step
            if self._count < 1 or last_len < _TAG:
                raise SealingError()
            self.size = (self._count - 1) * self._chunk + last_len - _TAG
            """Plaintext size in bytes."""
            self._last = self._decrypt(self._count - 1)

    def _decrypt(self, index: int) -> bytes:
        assert self._fh is not None
        last = index == self._count - 1
        if last and self._last is not None:
            return self._last
        with no_oracle():
            self._fh.seek(HEADER_SIZE + index * (self._chunk + _TAG))
            sealed = self._fh.read(self._chunk + _TAG)
            return self._aead.decrypt(_nonce(self._prefix, index, last), sealed,
                                      _aad(self._raw, index, last))

    @property
    def chunk_size(self) -> int:
        """Plaintext bytes per chunk."""
        return self._chunk

    def chunks(self) -> Iterator[bytes]:
        """Every plaintext chunk in order."""
        for index in range(self._count):
            yield self._decrypt(index)

    def read(self, offset: int, length: int) -> bytes:
        """``length`` plaintext bytes from ``offset`` (fewer at the end of the file)."""
        if offset < 0 or length < 0:
            raise ValueError(f"offset/length: got {offset}/{length}, want >= 0")
        end = min(offset + length, self.size)
        if offset >= end:
            return b""
        first, last = offset // self._chunk, (end - 1) // self._chunk
        data = b"".join(self._decrypt(i) for i in range(first, last + 1))
        start = offset - first * self._chunk
        return data[start:start + end - offset]

    def close(self) -> None:
        """Close the underlying file."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def __enter__(self) -> SealedFileReader:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()


def open_sealed(source: Sealable, path: Path, policy: SealingPolicy,
                counters: MonotonicCounters | None = None,
                counter_id: bytes | None = None) -> SealedFileReader:
    """Open a sealed file for random access (raises the one SealingError on any failure).

    ``policy`` is what the reader expects; ``counters`` declares the file rollback-protected
    (exact committed version only; a committed version left pending by a crash is found and
    its rename completed); ``counter_id`` declares which counter guards it.
    """
    path = Path(path)
    try:
        return SealedFileReader(source, path, policy, counters, counter_id)
    except SealingError:
        if counters is None:
            raise
        pending = pending_path(path)
        reader = SealedFileReader(source, pending, policy, counters, counter_id)
        complete_publish(pending, path)  # the open file descriptor stays valid
        return reader


def unseal_file(source: Sealable, src: Path, dst: Path, policy: SealingPolicy, *,
                counters: MonotonicCounters | None = None,
                counter_id: bytes | None = None) -> None:
    """Unseal ``src`` into ``dst``; ``dst`` appears only once every chunk authenticated."""
    with open_sealed(source, src, policy, counters, counter_id) as reader, \
            atomic_open(Path(dst)) as out:
        for chunk in reader.chunks():
            out.write(chunk)


def reseal_file(source: Sealable, path: Path, policy: SealingPolicy, *,
                expected: SealingPolicy, counters: MonotonicCounters | None = None,
                counter_id: bytes | None = None) -> None:
    """Reseal a sealed file that meets ``expected`` under ``policy`` in place (atomically)."""
    path = Path(path)
    with open_sealed(source, path, expected, counters, counter_id) as reader:
        _seal_chunks(source, reader.chunks(), path, policy, chunk_size=reader.chunk_size,
                     counters=counters, counter_id=counter_id)
