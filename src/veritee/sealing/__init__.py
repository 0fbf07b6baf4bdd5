"""Sealing: data that only the right workload, on the right platform, can read again.

The key is never stored: the platform derives it from its own secret and the workload
identity the :class:`SealingPolicy` selects, through one platform-neutral interface
(:class:`SealingKeySource`): SEV-SNP MSG_KEY_REQ (``/dev/sev-guest`` or the emulated secure
processor), SGX EGETKEY (MRENCLAVE / MRSIGNER, ISVSVN and CPUSVN), the TDX key-service TD
(MRTD / MROWNER), a TPM 2.0 key bound to PCR values (see docs/sealing.md for each TEE's
table). Every ``source`` argument below may be any of them, or a
:class:`~veritee.platform.base.Platform` (:func:`sealing_source`). The header records the
TEE and its selections and is authenticated, so a tampered header only yields another key;
a blob sealed on one TEE is refused on another.

Every unseal takes the policy the *reader* expects and refuses a header weaker than it
(the header is written by whoever sealed: it cannot vouch for itself). Every unseal failure
raises one :class:`~veritee.errors.SealingError` with one message, whatever the cause (wrong
chip, wrong measurement, lower SVN, weaker header, tampered or truncated data, rollback): the
error is not an oracle.

::

    policy = SealingPolicy.measurement()
    blob = seal(guest, b"secret", policy)
    assert unseal(guest, blob, policy) == b"secret"      # the reader states what it expects
    seal_to_path(guest, Path("db.key.sealed"), key, policy, counters=machine)
    seal_file(guest, Path("model.bin"), Path("model.sealed"), policy)
    with open_sealed(guest, Path("model.sealed"), policy) as f: f.read(offset, length)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from veritee.errors import ConfigError, SealingError
from veritee.formats.sealed import HEADER_SIZE, SealedHeader, SealKind
from veritee.sealing._core import (
    KeySource,
    MonotonicCounters,
    RollbackSlot,
    Sealable,
    SealingKeySource,
    SealingPolicy,
    SnpSealing,
    blank_header,
    check_rollback,
    complete_publish,
    counter_id_for,
    data_key,
    new_seal,
    no_oracle,
    pending_path,
    publish,
    reader_key,
    sealing_source,
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
    "Sealable",
    "SealedFileReader",
    "SealedHeader",
    "Sealer",
    "SealingKeySource",
    "SealingPolicy",
    "SnpSealing",
    "counter_id_for",
    "inspect",
    "open_sealed",
    "reseal",
    "reseal_path",
    "seal",
    "seal_file",
    "seal_to_path",
    "sealing_source",
    "unseal",
    "unseal_file",
    "unseal_path",
]

_LABEL = b"veritee-seal-blob-v1"


def inspect(data: bytes) -> SealedHeader:
    """The header of sealed data, without decrypting (raises FormatError if malformed)."""
    return SealedHeader.from_bytes(data)


def _seal(source: Sealable, data: bytes, policy: SealingPolicy, aad: bytes,
          slot: RollbackSlot | None) -> bytes:
    header = with_counter(blank_header(SealKind.BLOB, policy, salt=os.urandom(32),
                                       nonce=os.urandom(12)), slot)
    header, derived = new_seal(source, policy, header)
    key = data_key(derived, header, _LABEL)
    raw = header.to_bytes()
    return raw + AESGCM(key).encrypt(header.nonce, data, raw + aad)


def seal(source: Sealable, data: bytes, policy: SealingPolicy, *, aad: bytes = b"",
         counters: MonotonicCounters | None = None, counter_id: bytes | None = None) -> bytes:
    """Seal ``data`` so that only workloads ``policy`` names can unseal it.

    With ``counters`` the seal is a new version of ``counter_id`` (the caller's declared id,
    created on first use; a new random counter when None) and becomes the current version at
    once, so every earlier version is refused from now on. Prefer :func:`seal_to_path`,
    which commits only once the new version is durable.
    """
    slot = (RollbackSlot.next_for(counters, counter_id, declared=counter_id is not None)
            if counters is not None else None)
    blob = _seal(source, data, policy, aad, slot)
    if slot is not None:
        slot.commit()
    return blob


def unseal(source: Sealable, blob: bytes, policy: SealingPolicy, *, aad: bytes = b"",
           counters: MonotonicCounters | None = None,
           counter_id: bytes | None = None) -> bytes:
    """Open a sealed blob, or raise the one :class:`SealingError`.

    ``policy`` is what the *reader* expects (:meth:`SealingPolicy.check`): a blob whose
    header is weaker in any way (another policy kind, a field not selected, another VMPL, an
    SVN or TCB below the floors) is refused even though its key derives. ``counters``
    declares the blob rollback-protected: it must then carry exactly the committed version
    (of ``counter_id``, when the caller declares which counter guards it).
    """
    with no_oracle():
        header = SealedHeader.from_bytes(blob)
        if header.kind is not SealKind.BLOB:
            raise SealingError()
        check_rollback(header, counters, counter_id)
        key = data_key(reader_key(source, header, policy), header, _LABEL)
        return AESGCM(key).decrypt(header.nonce, blob[HEADER_SIZE:], blob[:HEADER_SIZE] + aad)


def reseal(source: Sealable, blob: bytes, policy: SealingPolicy, *, expected: SealingPolicy,
           aad: bytes = b"", counters: MonotonicCounters | None = None,
           counter_id: bytes | None = None) -> bytes:
    """Move sealed data that meets ``expected`` to ``policy`` (e.g. a raised SVN floor)."""
    data = unseal(source, blob, expected, aad=aad, counters=counters, counter_id=counter_id)
    if counters is None:
        return seal(source, data, policy, aad=aad)
    cid = counter_id or SealedHeader.from_bytes(blob).counter_id
    return seal(source, data, policy, aad=aad, counters=counters, counter_id=cid)


def seal_to_path(source: Sealable, path: Path, data: bytes, policy: SealingPolicy, *,
                 aad: bytes = b"", counters: MonotonicCounters | None = None,
                 counter_id: bytes | None = None) -> None:
    """Seal ``data`` into ``path`` atomically (temp file, fsync, rename, directory fsync).

    With ``counters``, the new file is a new version of the file it replaces, committed in
    the counter before it becomes visible (:func:`~veritee.sealing._core.publish`): from the
    commit on, only the new version opens; a crash before it leaves the old version.
    ``counter_id`` declares the path's counter (see :func:`counter_id_for`); without it the
    counter named by the file being replaced is continued (a new one if there is none).
    """
    path = Path(path)
    slot = (RollbackSlot.next_for(counters, counter_id or existing_counter(path),
                                  declared=counter_id is not None)
            if counters is not None else None)
    blob = _seal(source, data, policy, aad, slot)
    publish(path, lambda fh: fh.write(blob), slot)


def unseal_path(source: Sealable, path: Path, policy: SealingPolicy, *, aad: bytes = b"",
                counters: MonotonicCounters | None = None,
                counter_id: bytes | None = None) -> bytes:
    """Read and unseal a blob written by :func:`seal_to_path` (``policy``, ``counters``: as
    for :func:`unseal`). A version committed by a writer that crashed before its rename is
    found in the pending file, and the rename is completed."""
    path = Path(path)
    try:
        with no_oracle():
            blob = path.read_bytes()
        return unseal(source, blob, policy, aad=aad, counters=counters, counter_id=counter_id)
    except SealingError:
        if counters is None:
            raise
        pending = pending_path(path)
        with no_oracle():
            staged = pending.read_bytes()
        data = unseal(source, staged, policy, aad=aad, counters=counters,
                      counter_id=counter_id)
        complete_publish(pending, path)
        return data


def reseal_path(source: Sealable, path: Path, policy: SealingPolicy, *,
                expected: SealingPolicy, aad: bytes = b"",
                counters: MonotonicCounters | None = None,
                counter_id: bytes | None = None) -> None:
    """Reseal the blob or sealed file at ``path`` (which must meet ``expected``) under
    ``policy``, atomically in place."""
    path = Path(path)
    with no_oracle(), path.open("rb") as fh:
        header = SealedHeader.from_bytes(fh.read(HEADER_SIZE))
    if header.kind is SealKind.STREAM:
        from veritee.sealing.stream import reseal_file

        reseal_file(source, path, policy, expected=expected, counters=counters,
                    counter_id=counter_id)
        return
    data = unseal_path(source, path, expected, aad=aad, counters=counters, counter_id=counter_id)
    seal_to_path(source, path, data, policy, aad=aad, counters=counters, counter_id=counter_id)


@dataclass(frozen=True)
class Sealer:
    """Sealing bound to one workload and policy: what a key store or service holds.

    ``policy`` is both how new data is sealed and what reading expects (so a signer policy
    that must survive upgrades states its ``min_svn``). ``counters`` makes
    ``rollback=True`` possible; asking for rollback protection without them raises. A
    rollback-protected path is guarded by a counter the Sealer declares itself
    (:func:`counter_id_for` of ``counter_namespace`` and the absolute path; the namespace
    defaults to the workload identity the policy binds), never by the id in the file.
    """

    source: Sealable
    policy: SealingPolicy
    counters: MonotonicCounters | None = None
    counter_namespace: bytes | None = None

    def seal(self, data: bytes, *, aad: bytes = b"") -> bytes:
        """Seal a blob (no rollback counter: the caller decides where it lives)."""
        return seal(self.source, data, self.policy, aad=aad)

    def unseal(self, blob: bytes, *, aad: bytes = b"") -> bytes:
        """Open a blob sealed by :meth:`seal`."""
        return unseal(self.source, blob, self.policy, aad=aad)

    def _counters(self, rollback: bool) -> MonotonicCounters | None:
        if not rollback:
            return None
        if self.counters is None:
            raise ConfigError("rollback protection was asked for, but this Sealer has no "
                              "monotonic counters (MonotonicCounters): refusing to write or "
                              "read without it")
        return self.counters

    def counter_for(self, path: Path) -> bytes:
        """The counter id this Sealer declares for a rollback-protected ``path``."""
        namespace = self.counter_namespace
        if namespace is None:
            # measurement: the image; signer: what survives upgrades (signer and family)
            namespace = sealing_source(self.source).identity(self.policy)
        return counter_id_for(namespace, str(Path(path).resolve()))

    def seal_to_path(self, path: Path, data: bytes, *, aad: bytes = b"",
                     rollback: bool = False) -> None:
        """Seal atomically into ``path`` (a new rollback-protected version if asked)."""
        counters = self._counters(rollback)
        seal_to_path(self.source, path, data, self.policy, aad=aad, counters=counters,
                     counter_id=self.counter_for(path) if counters is not None else None)

    def unseal_path(self, path: Path, *, aad: bytes = b"", rollback: bool = False) -> bytes:
        """Open a file written by :meth:`seal_to_path` (with the same ``rollback``)."""
        counters = self._counters(rollback)
        return unseal_path(self.source, path, self.policy, aad=aad, counters=counters,
                           counter_id=self.counter_for(path) if counters is not None else None)
