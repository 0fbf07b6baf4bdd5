"""The sealed-data header: bytes <-> :class:`SealedHeader`. No crypto, no I/O.

Every sealed blob and sealed file starts with this 112-byte header (little-endian integers).
It is stored in the clear, so ``veritee seal --inspect`` can show it without the key, and it is
authenticated: the whole header is part of the AEAD associated data of every ciphertext.
Authenticated is not trusted: whoever sealed chose these fields, so a reader compares them
with the policy it expects (``veritee.sealing.SealingPolicy.check``) before using them.

======  ====  ===========================================================================
offset  size  field
======  ====  ===========================================================================
0x00    4     MAGIC ``b"VTSL"``
0x04    1     FORMAT_VERSION (1)
0x05    1     KIND: 1 = blob (one AES-256-GCM message), 2 = stream (chunked file)
0x06    1     POLICY: 1 = measurement (exact launch identity), 2 = signer (key + SVN floor)
0x07    1     ROOT_KEY_SELECT of MSG_KEY_REQ: 0 = chip (VCEK root), 1 = VM root key
0x08    8     GUEST_FIELD_SELECT of MSG_KEY_REQ (which guest fields the key mixes in)
0x10    4     VMPL of MSG_KEY_REQ
0x14    4     GUEST_SVN of MSG_KEY_REQ (signer policy: the minimum SVN that can unseal)
0x18    8     TCB_VERSION of MSG_KEY_REQ (the TCB floor; 0 when not selected)
0x20    16    ROLLBACK_COUNTER_ID (all zero: no rollback protection)
0x30    8     ROLLBACK_COUNTER_VALUE (the version this seal wrote)
0x38    32    SALT: per-seal random; the data key is HKDF(derived key, SALT, header[0:0x38])
0x58    4     CHUNK_SIZE (stream: plaintext bytes per chunk; blob: 0)
0x5C    4     reserved, zero
0x60    12    NONCE (blob) / NONCE_PREFIX in bytes 0-6, bytes 7-11 zero (stream)
0x6C    4     reserved, zero
======  ====  ===========================================================================

A blob is the header followed by the AES-256-GCM ciphertext and its 16-byte tag. A stream is
the header followed by chunks of CHUNK_SIZE + 16 bytes (the last one may be shorter, and is
present even for empty input); see :mod:`veritee.sealing.stream`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TypeVar

from veritee._wire import Reader, Writer
from veritee.errors import FormatError

__all__ = ["HEADER_SIZE", "MAGIC", "SealKind", "SealPolicyKind", "SealedHeader"]

MAGIC = b"VTSL"
FORMAT_VERSION = 1
HEADER_SIZE = 0x70
_NAME = "SEALED_HEADER"


class SealKind(enum.IntEnum):
    """Whether the payload is one AEAD message or a chunked stream."""

    BLOB = 1
    STREAM = 2


class SealPolicyKind(enum.IntEnum):
    """Who may unseal: the exact launch identity, or a signer at an SVN floor."""

    MEASUREMENT = 1
    SIGNER = 2


@dataclass(frozen=True)
class SealedHeader:
    """The parsed 112-byte sealed-data header (see the module docstring for the layout)."""

    kind: SealKind
    policy: SealPolicyKind
    root_key_select: int
    guest_field_select: int
    vmpl: int
    guest_svn: int
    tcb_version: int
    counter_id: bytes
    counter_value: int
    salt: bytes
    chunk_size: int
    nonce: bytes

    @property
    def rollback_protected(self) -> bool:
        """True when a monotonic counter guards this seal against rollback."""
        return any(self.counter_id)

    @classmethod
    def from_bytes(cls, data: bytes) -> SealedHeader:
        """Parse the first 112 bytes of ``data`` (which may be longer)."""
        if len(data) < HEADER_SIZE:
            raise FormatError(_NAME, "<length>", got=len(data), want=f">= {HEADER_SIZE}")
        rd = Reader(_NAME, data[:HEADER_SIZE], size=HEADER_SIZE)
        magic = rd.raw("MAGIC", 0, 4)
        if magic != MAGIC:
            raise FormatError(_NAME, "MAGIC", offset=0, got=magic, want=MAGIC)
        version = rd.u8("FORMAT_VERSION", 4)
        if version != FORMAT_VERSION:
            raise FormatError(_NAME, "FORMAT_VERSION", offset=4, got=version, want=FORMAT_VERSION)
        kind = _enum(SealKind, rd.u8("KIND", 5), "KIND", 5)
        policy = _enum(SealPolicyKind, rd.u8("POLICY", 6), "POLICY", 6)
        root = rd.u8("ROOT_KEY_SELECT", 7)
        if root > 1:
            raise FormatError(_NAME, "ROOT_KEY_SELECT", offset=7, got=root, want="0 or 1")
        rd.zero("reserved", 0x5C, 4)
        rd.zero("reserved", 0x6C, 4)
        chunk = rd.u32("CHUNK_SIZE", 0x58)
        if (kind is SealKind.BLOB) != (chunk == 0):
            raise FormatError(_NAME, "CHUNK_SIZE", offset=0x58, got=chunk,
                              want="0 for a blob, > 0 for a stream")
        if kind is SealKind.STREAM:
            rd.zero("NONCE_PREFIX.padding", 0x67, 5)
        return cls(kind=kind, policy=policy, root_key_select=root,
                   guest_field_select=rd.u64("GUEST_FIELD_SELECT", 0x08),
                   vmpl=rd.u32("VMPL", 0x10), guest_svn=rd.u32("GUEST_SVN", 0x14),
                   tcb_version=rd.u64("TCB_VERSION", 0x18),
                   counter_id=rd.raw("ROLLBACK_COUNTER_ID", 0x20, 16),
                   counter_value=rd.u64("ROLLBACK_COUNTER_VALUE", 0x30),
                   salt=rd.raw("SALT", 0x38, 32), chunk_size=chunk,
                   nonce=rd.raw("NONCE", 0x60, 12))

    def to_bytes(self) -> bytes:
        """Serialise to 112 bytes."""
        w = Writer(_NAME, HEADER_SIZE)
        w.raw("MAGIC", 0, MAGIC)
        w.u8("FORMAT_VERSION", 4, FORMAT_VERSION)
        w.u8("KIND", 5, int(self.kind))
        w.u8("POLICY", 6, int(self.policy))
        w.u8("ROOT_KEY_SELECT", 7, self.root_key_select)
        w.u64("GUEST_FIELD_SELECT", 0x08, self.guest_field_select)
        w.u32("VMPL", 0x10, self.vmpl)
        w.u32("GUEST_SVN", 0x14, self.guest_svn)
        w.u64("TCB_VERSION", 0x18, self.tcb_version)
        w.raw("ROLLBACK_COUNTER_ID", 0x20, self.counter_id, 16)
        w.u64("ROLLBACK_COUNTER_VALUE", 0x30, self.counter_value)
        w.raw("SALT", 0x38, self.salt, 32)
        w.u32("CHUNK_SIZE", 0x58, self.chunk_size)
        w.raw("NONCE", 0x60, self.nonce, 12)
        return w.getvalue()

    def to_dict(self) -> dict[str, object]:
        """JSON-friendly form for ``veritee seal --inspect``."""
        return {
            "format_version": FORMAT_VERSION, "kind": self.kind.name.lower(),
            "policy": self.policy.name.lower(), "root_key_select": self.root_key_select,
            "guest_field_select": f"0x{self.guest_field_select:x}", "vmpl": self.vmpl,
            "guest_svn": self.guest_svn, "tcb_version": f"0x{self.tcb_version:016x}",
            "rollback_counter_id": self.counter_id.hex() if self.rollback_protected else None,
            "rollback_counter_value": self.counter_value if self.rollback_protected else None,
            "salt": self.salt.hex(), "chunk_size": self.chunk_size, "nonce": self.nonce.hex(),
        }


_E = TypeVar("_E", bound=enum.IntEnum)


def _enum(cls: type[_E], value: int, field: str, offset: int) -> _E:
    try:
        return cls(value)
    except ValueError:
        raise FormatError(_NAME, field, offset=offset, got=value,
                          want=" or ".join(f"{m.value} ({m.name})" for m in cls)) from None
