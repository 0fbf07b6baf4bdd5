"""Sealing: data that only the right workload, on the right platform, can read again.

The key is never stored: the platform's secure processor derives it (SEV-SNP MSG_KEY_REQ on
real hardware via ``/dev/sev-guest``, or the emulated secure processor) from the chip's secret
and the guest fields the :class:`SealingPolicy` selects. The header records those selections
and is authenticated, so a tampered header only yields another key.

Every unseal failure raises one :class:`~veritee.errors.SealingError` with one message,
whatever the cause (wrong chip, wrong measurement, lower SVN, tampered or truncated data,
rollback): the error is not an oracle.

::

    blob = seal(guest, b"secret", SealingPolicy.measurement())
    assert unseal(guest, blob) == b"secret"
    seal_to_path(guest, Path("db.key.sealed"), key, SealingPolicy.signer(), counters=machine)
    seal_file(guest, Path("model.bin"), Path("model.sealed"), SealingPolicy.measurement())
    with open_sealed(guest, Path("model.sealed")) as f: f.read(offset, length)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from veritee._fs import atomic_write
from veritee.errors import SealingError
from veritee.formats.sealed import HEADER_SIZE, SealedHeader, SealKind
from veritee.sealing._core import (
    KeySource,
    MonotonicCounters,
    RollbackSlot,
    SealingPolicy,
    check_rollback,
    data_key,
    header_for,
    no_oracle,
    own_report,
    request_from_header,
    with_counter,
)
from veritee.sealing.stream import (
    SealedFileReader,
    existing_counter,
    open_sealed,
    seal_file,
    unseal_file,
)

__all__ = [
    "KeySource",
    "MonotonicCounters",
    "SealedFileReader",
    "SealedHeader",
    "Sealer",
    "SealingPolicy",
    "inspect",
    "open_sealed",
    "reseal",
    "reseal_path",
    "seal",
    "seal_file",
    "seal_to_path",
    "unseal",
    "unseal_file",
    "unseal_path",
]

_LABEL = b"veritee-seal-blob-v1"


def inspect(data: bytes) -> SealedHeader:
    """The header of sealed data, without decrypting (raises FormatError if malformed)."""
    return SealedHeader.from_bytes(data)


def _seal(source: KeySource, data: bytes, policy: SealingPolicy, aad: bytes,
          slot: RollbackSlot | None) -> bytes:
    request = policy.key_request(own_report(source))
    header = with_counter(header_for(request, policy.kind, SealKind.BLOB,
                                     salt=os.urandom(32), nonce=os.urandom(12)), slot)
    key = data_key(source.derived_key(request), header, _LABEL)
    raw = header.to_bytes()
    return raw + AESGCM(key).encrypt(header.nonce, data, raw + aad)


def seal(source: KeySource, data: bytes, policy: SealingPolicy, *, aad: bytes = b"",
         counters: MonotonicCounters | None = None, counter_id: bytes | None = None) -> bytes:
    """Seal ``data`` so that only workloads ``policy`` names can unseal it.

    With ``counters`` the seal is a new version of ``counter_id`` (a new counter when None)
    and the counter advances at once, so every earlier version is refused from now on.
    Prefer :func:`seal_to_path`, which advances only once the new version is durable.
    """
    slot = RollbackSlot.next_for(counters, counter_id) if counters is not None else None
    blob = _seal(source, data, policy, aad, slot)
    if slot is not None:
        slot.commit()
    return blob


def unseal(source: KeySource, blob: bytes, *, aad: bytes = b"",
           counters: MonotonicCounters | None = None) -> bytes:
    """Open a sealed blob, or raise the one :class:`SealingError`."""
    with no_oracle():
        header = SealedHeader.from_bytes(blob)
        if header.kind is not SealKind.BLOB:
            raise SealingError()
        roll_forward = check_rollback(header, counters)
        key = data_key(source.derived_key(request_from_header(header)), header, _LABEL)
        data = AESGCM(key).decrypt(header.nonce, blob[HEADER_SIZE:],
                                   blob[:HEADER_SIZE] + aad)
        roll_forward()
        return data


def reseal(source: KeySource, blob: bytes, policy: SealingPolicy, *, aad: bytes = b"",
           counters: MonotonicCounters | None = None) -> bytes:
    """Move sealed data to a new policy (e.g. a raised SVN floor) in one step."""
    data = unseal(source, blob, aad=aad, counters=counters)
    old = SealedHeader.from_bytes(blob)
    cid = old.counter_id if old.rollback_protected else None
    return seal(source, data, policy, aad=aad, counters=counters, counter_id=cid)


def seal_to_path(source: KeySource, path: Path, data: bytes, policy: SealingPolicy, *,
                 aad: bytes = b"", counters: MonotonicCounters | None = None) -> None:
    """Seal ``data`` into ``path`` atomically (temp file, fsync, rename, directory fsync).

    With ``counters``, the new file is a new version of the file it replaces: the counter
    advances only after the rename, so a crash at any point leaves a file that opens.
    """
    path = Path(path)
    slot = (RollbackSlot.next_for(counters, existing_counter(path))
            if counters is not None else None)
    atomic_write(path, _seal(source, data, policy, aad, slot))
    if slot is not None:
        slot.commit()


def unseal_path(source: KeySource, path: Path, *, aad: bytes = b"",
                counters: MonotonicCounters | None = None) -> bytes:
    """Read and unseal a blob written by :func:`seal_to_path`."""
    with no_oracle():
        blob = Path(path).read_bytes()
    return unseal(source, blob, aad=aad, counters=counters)


def reseal_path(source: KeySource, path: Path, policy: SealingPolicy, *, aad: bytes = b"",
                counters: MonotonicCounters | None = None) -> None:
    """Reseal the blob or sealed file at ``path`` under ``policy``, atomically in place."""
    path = Path(path)
    with no_oracle(), path.open("rb") as fh:
        header = SealedHeader.from_bytes(fh.read(HEADER_SIZE))
    if header.kind is SealKind.STREAM:
        from veritee.sealing.stream import reseal_file

        reseal_file(source, path, policy, counters=counters)
        return
    seal_to_path(source, path, unseal_path(source, path, aad=aad, counters=counters), policy,
                 aad=aad, counters=counters)


@dataclass(frozen=True)
class Sealer:
    """Sealing bound to one workload and policy: what a key store or service holds.

    ``counters`` (optional) adds rollback protection to :meth:`seal_to_path`.
    """

    source: KeySource
    policy: SealingPolicy
    counters: MonotonicCounters | None = None

    def seal(self, data: bytes, *, aad: bytes = b"") -> bytes:
        """Seal a blob (no rollback counter: the caller decides where it lives)."""
        return seal(self.source, data, self.policy, aad=aad)

    def unseal(self, blob: bytes, *, aad: bytes = b"") -> bytes:
        """Open a blob sealed by :meth:`seal`."""
        return unseal(self.source, blob, aad=aad)

    def seal_to_path(self, path: Path, data: bytes, *, aad: bytes = b"",
                     rollback: bool = False) -> None:
        """Seal atomically into ``path`` (a new rollback-protected version if asked)."""
        seal_to_path(self.source, path, data, self.policy, aad=aad,
                     counters=self.counters if rollback else None)

    def unseal_path(self, path: Path, *, aad: bytes = b"") -> bytes:
        """Open a file written by :meth:`seal_to_path`."""
        return unseal_path(self.source, path, aad=aad, counters=self.counters)
