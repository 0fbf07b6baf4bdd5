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
0x5C    1     TEE: 0 = SEV-SNP, 1 = SGX, 2 = TDX, 3 = TPM (0 in every header before it)
0x5D    3     reserved, zero
0x60    12    NONCE (blob) / NONCE_PREFIX in bytes 0-6, bytes 7-11 zero (stream)
0x6C    4     reserved, zero
======  ====  ===========================================================================

Bytes 0x07..0x20 are the SEV-SNP MSG_KEY_REQ fields above only when TEE is 0. For the other
TEEs they hold that TEE's key parameters (:class:`SgxKeyParams`, :class:`TdxKeyParams`,
:class:`TpmKeyParams`; byte 0x07 is then zero), each parsed and checked here:

* **SGX** (Intel SDM Vol. 3D 38.17, KEYREQUEST): 0x08 u16 KEYPOLICY, 0x0A u16 ISVSVN, 0x0C u16
  CONFIGSVN, 0x0E two zero bytes, 0x10 16-byte CPUSVN. KEYID is the header's SALT (32 bytes,
  the KEYREQUEST's KEYID size): random per seal, as the SDK's ``sgx_seal_data`` makes it.
* **TDX**: 0x08 u8 the key-service selection (1 ``mrtd``, 2 ``mrtd+rtmr``, 3 ``mrowner``),
  zero to 0x20.
* **TPM** (TPM 2.0 Part 2, TPMS_PCR_SELECTION): 0x08 u16 hash algorithm (big-endian
  TPM_ALG_ID, as the TPM marshals it), 0x0A u8 sizeofSelect (3), 0x0B the 3-byte pcrSelect
  bitmap (PCRs 0-23), zero to 0x20.

A blob is the header followed by the AES-256-GCM ciphertext and its 16-byte tag. A stream is
the header followed by chunks of CHUNK_SIZE + 16 bytes (the last one may be shorter, and is
present even for empty input); see :mod:`veritee.sealing.stream`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TypedDict, TypeVar

from veritee._wire import Reader, Writer
from veritee.errors import FormatError

__all__ = [
    "HEADER_SIZE",
    "MAGIC",
    "SealKind",
    "SealPolicyKind",
    "SealTee",
    "SealedHeader",
    "SgxKeyParams",
    "TdxKeyParams",
    "TpmKeyParams",
]

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


class SealTee(enum.IntEnum):
    """The TEE whose key sealed the data (header byte 0x5C)."""

    SEVSNP = 0
    SGX = 1
    TDX = 2
    TPM = 3


_PARAMS = slice(0x07, 0x20)  # the TEE's key parameters (SEV-SNP: the MSG_KEY_REQ fields)
_PARAMS_SIZE = 0x20 - 0x07


@dataclass(frozen=True)
class SgxKeyParams:
    """The SGX KEYREQUEST fields a seal records (KEYNAME is SEAL; KEYID is the SALT)."""

    key_policy: int
    isv_svn: int
    config_svn: int
    cpu_svn: bytes

    @classmethod
    def from_bytes(cls, params: bytes) -> SgxKeyParams:
        """Parse header bytes 0x07..0x20."""
        rd = Reader(_NAME, bytes(7) + params, size=0x20)
        rd.zero("reserved", 0x07, 1)
        rd.zero("reserved", 0x0E, 2)
        policy = rd.u16("SGX.KEYPOLICY", 0x08)
        if policy & ~0x3F:  # SDM Table 38-21: bits 6..15 reserved
            raise FormatError(_NAME, "SGX.KEYPOLICY", offset=0x08, got=policy,
                              want="bits 0..5 only")
        return cls(key_policy=policy, isv_svn=rd.u16("SGX.ISVSVN", 0x0A),
                   config_svn=rd.u16("SGX.CONFIGSVN", 0x0C),
                   cpu_svn=rd.raw("SGX.CPUSVN", 0x10, 16))

    def to_bytes(self) -> bytes:
        """Header bytes 0x07..0x20."""
        w = Writer(_NAME, _PARAMS_SIZE)
        w.uint("SGX.KEYPOLICY", 0x01, 2, self.key_policy)
        w.uint("SGX.ISVSVN", 0x03, 2, self.isv_svn)
        w.uint("SGX.CONFIGSVN", 0x05, 2, self.config_svn)
        w.raw("SGX.CPUSVN", 0x09, self.cpu_svn, 16)
        return w.getvalue()


TDX_SELECTIONS = {1: "mrtd", 2: "mrtd+rtmr", 3: "mrowner"}
"""The key-service selections a TDX header may name (``platform.emulated.tdx``)."""


@dataclass(frozen=True)
class TdxKeyParams:
    """Which TD identity fields the key-service TD mixed in."""

    selection: str

    @classmethod
    def from_bytes(cls, params: bytes) -> TdxKeyParams:
        """Parse header bytes 0x07..0x20."""
        rd = Reader(_NAME, bytes(7) + params, size=0x20)
        rd.zero("reserved", 0x07, 1)
        rd.zero("reserved", 0x09, 0x20 - 0x09)
        code = rd.u8("TDX.SELECTION", 0x08)
        if code not in TDX_SELECTIONS:
            raise FormatError(_NAME, "TDX.SELECTION", offset=0x08, got=code,
                              want=" or ".join(f"{k} ({v})" for k, v in TDX_SELECTIONS.items()))
        return cls(TDX_SELECTIONS[code])

    def to_bytes(self) -> bytes:
        """Header bytes 0x07..0x20."""
        codes = {v: k for k, v in TDX_SELECTIONS.items()}
        if self.selection not in codes:
            raise FormatError(_NAME, "TDX.SELECTION", got=self.selection,
                              want=" or ".join(codes))
        return bytes([0, codes[self.selection]]) + bytes(_PARAMS_SIZE - 2)


@dataclass(frozen=True)
class TpmKeyParams:
    """The PCRs (one bank) whose current values the TPM key is bound to."""

    hash_alg: int
    pcrs: tuple[int, ...]

    @classmethod
    def from_bytes(cls, params: bytes) -> TpmKeyParams:
        """Parse header bytes 0x07..0x20."""
        rd = Reader(_NAME, bytes(7) + params, size=0x20)
        rd.zero("reserved", 0x07, 1)
        rd.zero("reserved", 0x0E, 0x20 - 0x0E)
        alg = int.from_bytes(rd.raw("TPM.HASH", 0x08, 2), "big")
        size = rd.u8("TPM.SIZEOF_SELECT", 0x0A)
        if size != 3:
            raise FormatError(_NAME, "TPM.SIZEOF_SELECT", offset=0x0A, got=size, want=3)
        bitmap = rd.raw("TPM.PCR_SELECT", 0x0B, 3)
        # TPMS_PCR_SELECTION: bit (i % 8) of byte (i // 8) selects PCR i.
        pcrs = tuple(i for i in range(24) if bitmap[i // 8] >> (i % 8) & 1)
        if not pcrs:
            raise FormatError(_NAME, "TPM.PCR_SELECT", offset=0x0B, got=bitmap.hex(),
                              want="at least one PCR")
        return cls(alg, pcrs)

    def to_bytes(self) -> bytes:
        """Header bytes 0x07..0x20."""
        bitmap = bytearray(3)
        for i in self.pcrs:
            if not 0 <= i < 24:
                raise FormatError(_NAME, "TPM.PCR_SELECT", got=i, want="PCRs 0..23")
            bitmap[i // 8] |= 1 << (i % 8)
        return (bytes(1) + self.hash_alg.to_bytes(2, "big") + b"\x03" + bytes(bitmap)
                + bytes(_PARAMS_SIZE - 7))


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
    tee: SealTee = SealTee.SEVSNP
    tee_params: bytes = b""
    """Header bytes 0x07..0x20 for a TEE other than SEV-SNP (empty for SEV-SNP, whose fields
    are the MSG_KEY_REQ ones above, zero otherwise)."""

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
        tee = _enum(SealTee, rd.u8("TEE", 0x5C), "TEE", 0x5C)
        rd.zero("reserved", 0x5D, 3)
        rd.zero("reserved", 0x6C, 4)
        if tee is not SealTee.SEVSNP:
            params = rd.raw("KEY_PARAMS", 0x07, _PARAMS_SIZE)
            _TEE_PARAMS[tee].from_bytes(params)  # typed check of the TEE's own fields
            return cls(kind=kind, policy=policy, root_key_select=0, guest_field_select=0,
                       vmpl=0, guest_svn=0, tcb_version=0, tee=tee, tee_params=params,
                       **_common(rd, kind))
        root = rd.u8("ROOT_KEY_SELECT", 7)
        if root > 1:
            raise FormatError(_NAME, "ROOT_KEY_SELECT", offset=7, got=root, want="0 or 1")
        return cls(kind=kind, policy=policy, root_key_select=root,
                   guest_field_select=rd.u64("GUEST_FIELD_SELECT", 0x08),
                   vmpl=rd.u32("VMPL", 0x10), guest_svn=rd.u32("GUEST_SVN", 0x14),
                   tcb_version=rd.u64("TCB_VERSION", 0x18), **_common(rd, kind))

    def to_bytes(self) -> bytes:
        """Serialise to 112 bytes."""
        w = Writer(_NAME, HEADER_SIZE)
        w.raw("MAGIC", 0, MAGIC)
        w.u8("FORMAT_VERSION", 4, FORMAT_VERSION)
        w.u8("KIND", 5, int(self.kind))
        w.u8("POLICY", 6, int(self.policy))
        if self.tee is SealTee.SEVSNP:
            w.u8("ROOT_KEY_SELECT", 7, self.root_key_select)
            w.u64("GUEST_FIELD_SELECT", 0x08, self.guest_field_select)
            w.u32("VMPL", 0x10, self.vmpl)
            w.u32("GUEST_SVN", 0x14, self.guest_svn)
            w.u64("TCB_VERSION", 0x18, self.tcb_version)
        else:
            w.raw("KEY_PARAMS", 0x07, self.tee_params, _PARAMS_SIZE)
            w.u8("TEE", 0x5C, int(self.tee))
        w.raw("ROLLBACK_COUNTER_ID", 0x20, self.counter_id, 16)
        w.u64("ROLLBACK_COUNTER_VALUE", 0x30, self.counter_value)
        w.raw("SALT", 0x38, self.salt, 32)
        w.u32("CHUNK_SIZE", 0x58, self.chunk_size)
        w.raw("NONCE", 0x60, self.nonce, 12)
        return w.getvalue()

    def key_params(self) -> SgxKeyParams | TdxKeyParams | TpmKeyParams | None:
        """The typed key parameters of a TEE other than SEV-SNP (``None`` for SEV-SNP)."""
        if self.tee is SealTee.SEVSNP:
            return None
        return _TEE_PARAMS[self.tee].from_bytes(self.tee_params)

    def to_dict(self) -> dict[str, object]:
        """JSON-friendly form for ``veritee seal --inspect``."""
        if self.tee is not SealTee.SEVSNP:
            params = self.key_params()
            shown = {k: (v.hex() if isinstance(v, bytes) else list(v) if isinstance(v, tuple)
                         else v) for k, v in vars(params).items()}
            return {
                "format_version": FORMAT_VERSION, "tee": self.tee.name.lower(),
                "kind": self.kind.name.lower(), "policy": self.policy.name.lower(),
                "key_params": shown,
                "rollback_counter_id": self.counter_id.hex() if self.rollback_protected
                else None,
                "rollback_counter_value": self.counter_value if self.rollback_protected
                else None,
                "salt": self.salt.hex(), "chunk_size": self.chunk_size,
                "nonce": self.nonce.hex(),
            }
        return {
            "format_version": FORMAT_VERSION, "tee": "sevsnp", "kind": self.kind.name.lower(),
            "policy": self.policy.name.lower(), "root_key_select": self.root_key_select,
            "guest_field_select": f"0x{self.guest_field_select:x}", "vmpl": self.vmpl,
            "guest_svn": self.guest_svn, "tcb_version": f"0x{self.tcb_version:016x}",
            "rollback_counter_id": self.counter_id.hex() if self.rollback_protected else None,
            "rollback_counter_value": self.counter_value if self.rollback_protected else None,
            "salt": self.salt.hex(), "chunk_size": self.chunk_size, "nonce": self.nonce.hex(),
        }


_E = TypeVar("_E", bound=enum.IntEnum)

_TEE_PARAMS: dict[SealTee, type[SgxKeyParams] | type[TdxKeyParams] | type[TpmKeyParams]] = {
    SealTee.SGX: SgxKeyParams, SealTee.TDX: TdxKeyParams, SealTee.TPM: TpmKeyParams}


class _Common(TypedDict):
    counter_id: bytes
    counter_value: int
    salt: bytes
    chunk_size: int
    nonce: bytes


def _common(rd: Reader, kind: SealKind) -> _Common:
    """The fields every TEE's header shares (counter, salt, chunking, nonce)."""
    chunk = rd.u32("CHUNK_SIZE", 0x58)
    if (kind is SealKind.BLOB) != (chunk == 0):
        raise FormatError(_NAME, "CHUNK_SIZE", offset=0x58, got=chunk,
                          want="0 for a blob, > 0 for a stream")
    if kind is SealKind.STREAM:
        rd.zero("NONCE_PREFIX.padding", 0x67, 5)
    return {"counter_id": rd.raw("ROLLBACK_COUNTER_ID", 0x20, 16),
            "counter_value": rd.u64("ROLLBACK_COUNTER_VALUE", 0x30),
            "salt": rd.raw("SALT", 0x38, 32), "chunk_size": chunk,
            "nonce": rd.raw("NONCE", 0x60, 12)}


def _enum(cls: type[_E], value: int, field: str, offset: int) -> _E:
    try:
        return cls(value)
    except ValueError:
        raise FormatError(_NAME, field, offset=offset, got=value,
                          want=" or ".join(f"{m.value} ({m.name})" for m in cls)) from None
