"""Sealing keys, policies and rollback counters shared by blobs and sealed files."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Protocol, runtime_checkable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from veritee.errors import ConfigError, FormatError, PlatformError, SealingError
from veritee.formats.sealed import SealedHeader, SealKind, SealPolicyKind
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
    "SealingPolicy",
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

    def counter_create(self) -> bytes:
        """Allocate a counter at 0; return its 16-byte id."""
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
    """

    kind: SealPolicyKind
    min_svn: int | None = None
    bind_tcb: bool = True
    tcb_floor: TcbVersion | None = None
    bind_guest_policy: bool = True
    bind_image_id: bool = True
    root: RootKeySelect = RootKeySelect.VCEK

    @classmethod
    def measurement(cls, *, bind_tcb: bool = True, tcb_floor: TcbVersion | None = None,
                    bind_guest_policy: bool = True) -> SealingPolicy:
        """Only this exact launch identity can unseal."""
        return cls(SealPolicyKind.MEASUREMENT, bind_tcb=bind_tcb, tcb_floor=tcb_floor,
                   bind_guest_policy=bind_guest_policy)

    @classmethod
    def signer(cls, *, min_svn: int | None = None, bind_tcb: bool = True,
               tcb_floor: TcbVersion | None = None, bind_image_id: bool = True) -> SealingPolicy:
        """The same signer at SVN >= ``min_svn`` (default: the sealer's own SVN) can unseal."""
        if min_svn is not None and not 0 <= min_svn < 1 << 32:
            raise ConfigError(f"min_svn: got {min_svn}, want 0..2**32-1")
        return cls(SealPolicyKind.SIGNER, min_svn=min_svn, bind_tcb=bind_tcb,
                   tcb_floor=tcb_floor, bind_image_id=bind_image_id)

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


@dataclass(frozen=True)
class RollbackSlot:
    """A monotonic counter and the value a seal in progress will write."""

    counters: MonotonicCounters
    counter_id: bytes
    value: int

    @classmethod
    def next_for(cls, counters: MonotonicCounters, counter_id: bytes | None) -> RollbackSlot:
        """The next version for ``counter_id`` (a new counter when ``None``)."""
        cid = counter_id if counter_id is not None else counters.counter_create()
        return cls(counters, cid, counters.counter_read(cid) + 1)

    def commit(self) -> None:
        """Record that this version is now the newest: older ones are refused from now on."""
        self.counters.counter_advance(self.counter_id, self.value)


def check_rollback(header: SealedHeader,
                   counters: MonotonicCounters | None) -> Callable[[], object]:
    """Check a seal's version against its counter; return the roll-forward to run after the
    payload authenticated.

    The version is accepted when it equals the counter, or is exactly one ahead: a writer that
    crashed between renaming the new file into place and advancing the counter left the
    newest data with an un-advanced counter, and that data must still open (crash safety);
    opening it completes the advance. Anything older is a rollback and is refused.
    """
    if not header.rollback_protected:
        return lambda: None
    if counters is None:
        raise SealingError()
    current = counters.counter_read(header.counter_id)
    if header.counter_value == current:
        return lambda: None
    if header.counter_value == current + 1:
        return lambda: counters.counter_advance(header.counter_id, header.counter_value)
    raise SealingError()


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
