"""Sealing keys, policies and rollback counters shared by blobs and sealed files."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO, Protocol, runtime_checkable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from veritee._fs import atomic_open, fsync_dir
from veritee.errors import ConfigError, FormatError, PlatformError, SealingError
from veritee.formats.sealed import SealedHeader, SealKind, SealPolicyKind, SealTee
from veritee.formats.sevsnp import (
    AttestationReport,
    GuestFieldSelect,
    MsgKeyReq,
    RootKeySelect,
    TcbVersion,
)

__all__ = [
    "KeySource",
    "MonotonicCounters",
    "SealingKeySource",
    "SealingPolicy",
    "SnpSealing",
    "no_oracle",
]

@runtime_checkable
class KeySource(Protocol):
    """What sealing needs from a platform: its own report, and firmware-derived keys.

    An emulated guest (:class:`~veritee.platform.emulated.snp.EmulatedSnpGuest`) and a real
    SEV-SNP guest (:class:`~veritee.platform.sevsnp.SevGuestDevice`) both provide it.
    """

    def attestation_report(self, report_data: bytes, vmpl: int | None = None) -> bytes:
        """A signed report about the caller (used to learn its own identity)."""
        ...

    def derived_key(self, request: MsgKeyReq) -> bytes:
        """SNP_GET_DERIVED_KEY: 32 bytes, or PlatformError when the firmware refuses."""
        ...


@runtime_checkable
class MonotonicCounters(Protocol):
    """Monotonic counters kept outside the sealed data: in the secure processor's NV state
    (emulated) or an external counter service. Values only ever go up."""

    def counter_create(self, counter_id: bytes | None = None) -> bytes:
        """Allocate a counter at 0 under a fresh random 16-byte id; or, given
        ``counter_id`` (a caller-declared id, like a TPM NV index the caller picks), make
        sure that counter exists (created at 0 if absent, left as it is otherwise). Return
        the id."""
        ...

    def counter_read(self, counter_id: bytes) -> int:
        """The current value."""
        ...

    def counter_advance(self, counter_id: bytes, to: int) -> int:
        """Raise the counter to ``to`` (never lowers it); return the new value."""
        ...


@dataclass(frozen=True)
class SealingPolicy:
    """Who may unseal, expressed as the MSG_KEY_REQ fields the key is derived from.

    * ``measurement``: the exact launch identity (MEASUREMENT, and by default GUEST_POLICY):
      like SGX's MRENCLAVE policy. Any change to the image yields another key.
    * ``signer``: the launch signer (the firmware always mixes in the author key digest, or the
      ID key digest without one), FAMILY_ID, IMAGE_ID and GUEST_SVN = ``min_svn``: like SGX's
      MRSIGNER policy. The firmware derives it for any guest whose SVN >= ``min_svn``, so a
      newer version can unseal, an older one cannot.

    ``bind_tcb`` mixes in a TCB floor (``tcb_floor``, default: the sealer's current TCB):
    firmware at that TCB or newer can unseal, a downgraded one cannot.

    The same object is what a *reader* expects (:meth:`check`): the header's policy kind and
    root must match, every field the policy binds must be selected, the VMPL must be the
    reader's own, and GUEST_SVN and TCB must be at or above the reader's floors
    (``min_svn``, default the reader's own SVN; ``tcb_floor``, default the reader's
    COMMITTED_TCB). The header is written by whoever sealed, so it is never trusted to say
    how strong its own key is.
    """

    kind: SealPolicyKind
    min_svn: int | None = None
    bind_tcb: bool = True
    tcb_floor: TcbVersion | None = None
    bind_guest_policy: bool = True
    bind_image_id: bool = True
    root: RootKeySelect = RootKeySelect.VCEK
    min_cpu_svn: bytes | None = None
    """SGX: refuse data sealed under a CPUSVN below this (16 bytes, component-wise)."""
    pcrs: tuple[int, ...] = tuple(range(8))
    """TPM: the SHA-256 PCRs whose current values the key is bound to (a measurement policy
    must select at least these)."""
    bind_rtmrs: bool = False
    """TDX: also bind RTMR0-2 (the boot chain the TD measured), not only MRTD."""

    @classmethod
    def measurement(cls, *, bind_tcb: bool = True, tcb_floor: TcbVersion | None = None,
                    bind_guest_policy: bool = True, min_cpu_svn: bytes | None = None,
                    pcrs: tuple[int, ...] | None = None,
                    bind_rtmrs: bool = False) -> SealingPolicy:
        """Only this exact launch identity can unseal (SEV-SNP MEASUREMENT, SGX MRENCLAVE,
        TDX MRTD (and RTMR0-2 with ``bind_rtmrs``), TPM PCR values of ``pcrs``)."""
        return cls(SealPolicyKind.MEASUREMENT, bind_tcb=bind_tcb, tcb_floor=tcb_floor,
                   bind_guest_policy=bind_guest_policy, min_cpu_svn=_cpu_svn(min_cpu_svn),
                   pcrs=_pcrs(pcrs), bind_rtmrs=bind_rtmrs)

    @classmethod
    def signer(cls, *, min_svn: int | None = None, bind_tcb: bool = True,
               tcb_floor: TcbVersion | None = None, bind_image_id: bool = True,
               min_cpu_svn: bytes | None = None) -> SealingPolicy:
        """The same signer at SVN >= ``min_svn`` (default: the sealer's own SVN) can unseal
        (SEV-SNP ID/author key + GUEST_SVN, SGX MRSIGNER + ISVSVN, TDX MROWNER (no SVN))."""
        if min_svn is not None and not 0 <= min_svn < 1 << 32:
            raise ConfigError(f"min_svn: got {min_svn}, want 0..2**32-1")
        return cls(SealPolicyKind.SIGNER, min_svn=min_svn, bind_tcb=bind_tcb,
                   tcb_floor=tcb_floor, bind_image_id=bind_image_id,
                   min_cpu_svn=_cpu_svn(min_cpu_svn))

    def required_fields(self) -> GuestFieldSelect:
        """The GUEST_FIELD_SELECT bits a seal must select to satisfy this policy."""
        sel = GuestFieldSelect(0)
        if self.bind_guest_policy:
            sel |= GuestFieldSelect.GUEST_POLICY
        if self.kind is SealPolicyKind.MEASUREMENT:
            sel |= GuestFieldSelect.MEASUREMENT
        else:
            sel |= GuestFieldSelect.FAMILY_ID | GuestFieldSelect.GUEST_SVN
            if self.bind_image_id:
                sel |= GuestFieldSelect.IMAGE_ID
        if self.bind_tcb:
            sel |= GuestFieldSelect.TCB_VERSION
        return sel

    def check(self, header: SealedHeader, own: AttestationReport) -> None:
        """Refuse (the one SealingError) a header weaker than this policy, for the reader
        ``own``. The firmware enforces only that the reader *can* derive the header's key;
        this enforces that the key is one only the intended workloads can derive."""
        if header.policy is not self.kind or header.root_key_select != int(self.root):
            raise SealingError()
        required = int(self.required_fields())
        if header.guest_field_select & required != required:
            raise SealingError()  # e.g. "measurement" selecting no field: any guest's key
        if header.vmpl != own.vmpl:
            raise SealingError()  # a less privileged VMPL derives its own keys
        if self.kind is SealPolicyKind.SIGNER:
            if not any(own.author_key_digest) and not any(own.id_key_digest):
                raise SealingError()  # unsigned readers share the all-zero "signer"
            floor = own.guest_svn if self.min_svn is None else self.min_svn
            if header.guest_svn < floor:
                raise SealingError()  # an older (vulnerable) release wrote it
        if self.bind_tcb:
            floor_tcb = self.tcb_floor or own.committed_tcb
            got = TcbVersion.from_u64(header.tcb_version, own.tcb_layout,
                                      structure="SEALED_HEADER", offset=0x18)
            want = floor_tcb.components()
            if any(got.components().get(k, -1) < v for k, v in want.items()):
                raise SealingError()  # sealed under firmware below the reader's floor

    def key_request(self, own: AttestationReport) -> MsgKeyReq:
        """The MSG_KEY_REQ that derives this policy's key for the workload that ``own`` is."""
        sel = GuestFieldSelect(0)
        if self.bind_guest_policy:
            sel |= GuestFieldSelect.GUEST_POLICY
        if self.kind is SealPolicyKind.MEASUREMENT:
            sel |= GuestFieldSelect.MEASUREMENT
            svn = 0
        else:
            if not any(own.author_key_digest) and not any(own.id_key_digest):
                # Without an ID key every unsigned guest shares the "signer": refuse.
                raise PlatformError("signer sealing needs a workload launched with an ID "
                                    "block signed by an ID (or author) key")
            sel |= GuestFieldSelect.FAMILY_ID | GuestFieldSelect.GUEST_SVN
            if self.bind_image_id:
                sel |= GuestFieldSelect.IMAGE_ID
            svn = own.guest_svn if self.min_svn is None else self.min_svn
            if svn > own.guest_svn:
                raise PlatformError(f"min_svn {svn} is above this workload's SVN "
                                    f"{own.guest_svn}: it could not unseal its own data")
        tcb = 0
        if self.bind_tcb:
            sel |= GuestFieldSelect.TCB_VERSION
            tcb = (self.tcb_floor or own.reported_tcb).to_u64()
        return MsgKeyReq(root_key_select=self.root, key_sel=0, guest_field_select=sel,
                         vmpl=own.vmpl, guest_svn=svn, tcb_version=tcb)


def _cpu_svn(value: bytes | None) -> bytes | None:
    if value is not None and len(value) != 16:
        raise ConfigError(f"min_cpu_svn: got {len(value)} bytes, want the 16-byte CPUSVN")
    return value


def _pcrs(value: tuple[int, ...] | None) -> tuple[int, ...]:
    if value is None:
        return tuple(range(8))
    chosen = tuple(sorted(set(value)))
    if not chosen or not all(0 <= i < 24 for i in chosen):
        raise ConfigError(f"pcrs: got {list(value)}, want PCR indices 0..23 (at least one)")
    return chosen


@runtime_checkable
class SealingKeySource(Protocol):
    """What sealing needs from any TEE: one platform-neutral interface.

    ``tee`` names the TEE recorded in every header it writes; ``new_seal`` fills a header's
    TEE fields for ``policy`` and returns the key for it; ``derive`` is the reader's side: it
    refuses (the one :class:`SealingError`) a header of another TEE or weaker than the
    reader's ``policy`` for *this* workload, then derives the key the header records (the
    hardware enforces what only it can: SVNs not above the caller's, the caller's identity);
    ``identity`` names the workload identity ``policy`` binds (a counter namespace).
    Implementations: :class:`SnpSealing` here, and SGX, TDX, TPM in
    :mod:`veritee.sealing.platforms`.
    """

    tee: SealTee

    def new_seal(self, policy: SealingPolicy, header: SealedHeader
                 ) -> tuple[SealedHeader, bytes]:
        """``header`` with this TEE's fields for ``policy``, and the 32-byte derived key."""
        ...

    def derive(self, policy: SealingPolicy, header: SealedHeader) -> bytes:
        """The key for ``header`` once it meets the reader's ``policy`` (SealingError
        otherwise; call inside :func:`no_oracle`)."""
        ...

    def identity(self, policy: SealingPolicy) -> bytes:
        """The workload identity ``policy`` binds (measurement, or signer and family)."""
        ...


class SnpSealing:
    """SEV-SNP sealing over a :class:`KeySource`: MSG_KEY_REQ keys, SealingPolicy's
    :meth:`~SealingPolicy.check` for the reader."""

    tee = SealTee.SEVSNP

    def __init__(self, source: KeySource) -> None:
        self.source = source

    def new_seal(self, policy: SealingPolicy, header: SealedHeader
                 ) -> tuple[SealedHeader, bytes]:
        """MSG_KEY_REQ for ``policy`` (recorded in the header) and its derived key."""
        request = policy.key_request(own_report(self.source))
        filled = replace(header, tee=SealTee.SEVSNP, tee_params=b"", policy=policy.kind,
                         root_key_select=int(request.root_key_select),
                         guest_field_select=int(request.guest_field_select),
                         vmpl=request.vmpl, guest_svn=request.guest_svn,
                         tcb_version=request.tcb_version)
        return filled, self.source.derived_key(request)

    def derive(self, policy: SealingPolicy, header: SealedHeader) -> bytes:
        """:meth:`SealingPolicy.check`, then the firmware derives (and enforces floors)."""
        if header.tee is not SealTee.SEVSNP:
            raise SealingError()
        policy.check(header, own_report(self.source))
        return self.source.derived_key(request_from_header(header))

    def identity(self, policy: SealingPolicy) -> bytes:
        """MEASUREMENT, or (surviving upgrades) the signer digests and FAMILY_ID."""
        own = own_report(self.source)
        if policy.kind is SealPolicyKind.MEASUREMENT:
            return b"measurement:" + own.measurement
        return b"signer:" + own.author_key_digest + own.id_key_digest + own.family_id


def request_from_header(header: SealedHeader) -> MsgKeyReq:
    """The MSG_KEY_REQ recorded in a sealed header (the firmware enforces its floors)."""
    return MsgKeyReq(root_key_select=RootKeySelect(header.root_key_select), key_sel=0,
                     guest_field_select=GuestFieldSelect(header.guest_field_select),
                     vmpl=header.vmpl, guest_svn=header.guest_svn,
                     tcb_version=header.tcb_version)


def header_for(request: MsgKeyReq, policy: SealPolicyKind, kind: SealKind, *, salt: bytes,
               nonce: bytes, chunk_size: int = 0, counter_id: bytes = bytes(16),
               counter_value: int = 0) -> SealedHeader:
    """A header recording ``request`` and the per-seal randomness."""
    return SealedHeader(kind=kind, policy=policy, root_key_select=int(request.root_key_select),
                        guest_field_select=int(request.guest_field_select), vmpl=request.vmpl,
                        guest_svn=request.guest_svn, tcb_version=request.tcb_version,
                        counter_id=counter_id, counter_value=counter_value, salt=salt,
                        chunk_size=chunk_size, nonce=nonce)


def data_key(derived: bytes, header: SealedHeader, label: bytes) -> bytes:
    """The per-seal AES-256 key: HKDF-SHA256(derived key, SALT, label || header[0:0x38]).

    A fresh salt per seal makes every data key unique, so random nonces never repeat under
    one key, and chunks cannot be swapped between sealed files.
    """
    info = label + header.to_bytes()[:0x38]
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=header.salt, info=info).derive(derived)


def own_report(source: KeySource) -> AttestationReport:
    """The workload's own report (report data zero: it attests nothing, it tells us who we are)."""
    return AttestationReport.from_bytes(source.attestation_report(bytes(64)))


def reader_key(source: Sealable, header: SealedHeader, expected: SealingPolicy) -> bytes:
    """The derived key for ``header``, once the header meets the reader's ``expected`` policy
    (raises the one SealingError otherwise). Call inside :func:`no_oracle`."""
    return sealing_source(source).derive(expected, header)


def new_seal(source: Sealable, policy: SealingPolicy, header: SealedHeader
             ) -> tuple[SealedHeader, bytes]:
    """``header`` completed by ``source``'s TEE for ``policy``, and the derived key."""
    return sealing_source(source).new_seal(policy, header)


def blank_header(kind: SealKind, policy: SealingPolicy, *, salt: bytes, nonce: bytes,
                 chunk_size: int = 0) -> SealedHeader:
    """A header with the per-seal randomness and no TEE fields yet (see :func:`new_seal`)."""
    return SealedHeader(kind=kind, policy=policy.kind, root_key_select=0,
                        guest_field_select=0, vmpl=0, guest_svn=0, tcb_version=0,
                        counter_id=bytes(16), counter_value=0, salt=salt,
                        chunk_size=chunk_size, nonce=nonce)


Sealable = object
"""Anything :func:`sealing_source` accepts: a :class:`SealingKeySource`, an SEV-SNP
:class:`KeySource` (emulated guest, ``/dev/sev-guest``), a
:class:`~veritee.platform.base.Platform` adapter, an emulated SGX enclave or TD, a TPM."""


def sealing_source(source: Sealable) -> SealingKeySource:
    """The :class:`SealingKeySource` for ``source`` (PlatformError when it cannot seal)."""
    if isinstance(source, SealingKeySource):
        return source
    if isinstance(source, KeySource):  # an SEV-SNP guest (no other platform has both calls)
        return SnpSealing(source)
    from veritee.sealing.platforms import for_platform

    found = for_platform(source)
    if found is not None:
        return found
    raise PlatformError(f"{type(source).__name__}: not a platform that can seal (no sealing "
                        "key source for it)")


# A rollback counter holds two 32-bit halves, so one monotonic value records both:
#   bits 63..32  RESERVED  the last version number handed to a writer (never reused)
#   bits 31..0   COMMITTED the version that is current (the only one that opens)
# Reserving raises the high half, committing raises the low half to it: the value only
# grows. A write that never committed burned its number, so its file can never match.
_HALF = 32
_LOW = (1 << _HALF) - 1


def _halves(value: int) -> tuple[int, int]:
    committed = value & _LOW
    return max(value >> _HALF, committed), committed


def committed_version(counters: MonotonicCounters, counter_id: bytes) -> int:
    """The version of ``counter_id`` that is current (the only one that opens)."""
    return _halves(counters.counter_read(counter_id))[1]


@dataclass(frozen=True)
class RollbackSlot:
    """A reserved version number of a monotonic counter, for one seal in progress."""

    counters: MonotonicCounters
    counter_id: bytes
    value: int

    @classmethod
    def next_for(cls, counters: MonotonicCounters, counter_id: bytes | None, *,
                 declared: bool = False) -> RollbackSlot:
        """Reserve the next version of ``counter_id`` (a new counter when ``None``; with
        ``declared``, the caller's own id, created on first use).

        The reservation is recorded in the counter at once, so this number is never handed
        out again, whether or not this write completes.
        """
        if declared:
            if counter_id is None or len(counter_id) != 16 or not any(counter_id):
                raise ConfigError("counter_id: want 16 bytes, not all zero")
            cid = counters.counter_create(counter_id)
        else:
            cid = counter_id if counter_id is not None else counters.counter_create()
        reserved, committed = _halves(counters.counter_read(cid))
        value = reserved + 1
        if value > _LOW:
            raise ConfigError("rollback counter exhausted (2**32 versions)")
        counters.counter_advance(cid, value << _HALF | committed)
        return cls(counters, cid, value)

    def commit(self) -> None:
        """Make this version the current one: every other version is refused from now on."""
        self.counters.counter_advance(self.counter_id, self.value << _HALF | self.value)

    def burn(self) -> None:
        """Make no version current (after a failed publish): integrity over availability."""
        dead = self.value + 1
        self.counters.counter_advance(self.counter_id, dead << _HALF | dead)


def counter_id_for(namespace: bytes, name: str) -> bytes:
    """A caller-declared counter id: SHA-256 over a label, ``namespace`` (e.g. the
    workload's identity) and ``name`` (e.g. the absolute path), cut to 16 bytes."""
    h = hashlib.sha256(b"veritee-rollback-counter-v1\0" + namespace + b"\0" + name.encode())
    return h.digest()[:16]


def check_rollback(header: SealedHeader, counters: MonotonicCounters | None,
                   counter_id: bytes | None = None) -> None:
    """Refuse a version that is not exactly the counter's committed one.

    ``counters`` is the caller's declaration that the object is rollback-protected: then
    the header must carry a counter and exactly its committed version (anything else is an
    older, a failed or an unprotected copy). Without ``counters`` a header that carries a
    counter is refused too: its freshness cannot be checked. ``counter_id`` declares *which*
    counter: without it the header names its own counter, so a copy made under a counter
    the writer later abandoned (the host deleted the file before a write) would still match
    its old counter.
    """
    if counters is None:
        if header.rollback_protected:
            raise SealingError()
        return
    if not header.rollback_protected:
        raise SealingError()
    if counter_id is not None and header.counter_id != counter_id:
        raise SealingError()
    if header.counter_value != committed_version(counters, header.counter_id):
        raise SealingError()


def pending_path(path: Path) -> Path:
    """Where a rollback-protected write stages its new version before committing it."""
    return path.with_name(f".{path.name}.pending")


def publish(path: Path, write: Callable[[BinaryIO], object],
            slot: RollbackSlot | None) -> None:
    """Write a new version of ``path`` crash-safely.

    Without ``slot``: ``write`` fills a temp file that is renamed over ``path``. With a
    slot (rollback protection): ``write`` fills the pending file (fsynced), the counter
    commits the new version (the commit point: the old file is refused from here on), then
    the pending file is renamed over ``path``. A crash after the commit leaves the committed
    version in the pending file, and the next open completes the rename; a write that fails
    before the commit leaves a burned version number that never opens; a rename that fails
    after the commit burns the counter, so the caller that saw the error never sees that
    data accepted later (the path then opens nothing: availability, never integrity).
    """
    path = Path(path)
    if slot is None:
        with atomic_open(path) as fh:
            write(fh)
        return
    pending = pending_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_open(pending) as fh:
            write(fh)
    except BaseException:
        with suppress(OSError):
            pending.unlink()
        raise
    slot.commit()
    try:
        os.replace(pending, path)
        fsync_dir(path.parent)
    except OSError:
        slot.burn()
        with suppress(OSError):
            pending.unlink()
        raise


def complete_publish(pending: Path, path: Path) -> None:
    """Finish a committed write whose rename a crash interrupted (best effort)."""
    with suppress(OSError):
        os.replace(pending, path)
        fsync_dir(path.parent)


@contextmanager
def no_oracle() -> Iterator[None]:
    """Turn every failure while unsealing into the one :class:`SealingError`."""
    try:
        yield
    except SealingError:
        raise
    except (FormatError, PlatformError, InvalidTag, ValueError, OSError, EOFError):
        raise SealingError() from None


def with_counter(header: SealedHeader, slot: RollbackSlot | None) -> SealedHeader:
    """``header`` carrying ``slot``'s counter id and version."""
    if slot is None:
        return header
    return replace(header, counter_id=slot.counter_id, counter_value=slot.value)
