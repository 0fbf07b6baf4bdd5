"""TPM 2.0 attestation structures: bytes <-> frozen typed objects. No crypto, no I/O, no policy.

Sources (cited below by these short names):

* **Part 2** - TCG "TPM 2.0 Library, Part 2: Structures" (Level 00, revision 1.59). Section numbers
  are given with the structure name because table numbers shift between revisions:
  ``TPM_GENERATED`` (6.2), ``TPM_ALG_ID`` (6.3), ``TPM_ECC_CURVE`` (6.4), ``TPM_ST`` (6.9),
  ``TPMA_OBJECT`` (8.3), ``TPMS_PCR_SELECTION`` (10.6.2), ``TPML_PCR_SELECTION`` (10.9.7),
  ``TPMS_CLOCK_INFO`` (10.11.1), ``TPMS_CERTIFY_INFO`` (10.12.3), ``TPMS_QUOTE_INFO``
  (10.12.4), ``TPMS_CREATION_INFO`` (10.12.7), ``TPMU_ATTEST`` / ``TPMS_ATTEST`` (10.12.11 /
  10.12.12), ``TPMT_SIGNATURE`` (11.3.4), ``TPMT_PUBLIC`` and its parameters (12.2.x).
* **Part 1** - "Part 1: Architecture", 16 (Names): an object's Name is
  ``nameAlg || H_nameAlg(TPMT_PUBLIC)``.
* **tpm2-tools** - tpm2-tools ``tpm2_quote -o`` / ``lib/tpm2_util`` PCR output, written as the
  host's (little-endian) C structures (see :func:`parse_tpm2tools_pcrs`).

All TPM wire structures are big-endian and sequential (every ``TPM2B_*`` is a u16 size followed by
that many bytes), so they are read with :class:`Cursor`, which checks every read against the end
of the buffer and raises :class:`~veritee.errors.FormatError` only.

Checks deliberately left out here: signatures, Names against keys, nonces and PCR digests are
``veritee.trust.tpm``'s job. Algorithms this module does not know (SM2, ECDAA, ...) are
rejected with a :class:`FormatError` rather than carried as opaque bytes, except in
``TPMU_ATTEST`` arms other than quote/certify/creation, which are kept raw.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from veritee.errors import FormatError

__all__ = [
    "TPM_GENERATED_VALUE",
    "Cursor",
    "EccCurve",
    "HashAlg",
    "ObjectType",
    "PcrSelection",
    "PcrValues",
    "SigAlg",
    "StructureTag",
    "TpmsAttest",
    "TpmsCertifyInfo",
    "TpmsClockInfo",
    "TpmsCreationInfo",
    "TpmsQuoteInfo",
    "TpmtPublic",
    "TpmtSignature",
    "encode_tpm_evidence_json",
    "parse_pcr_values_text",
    "parse_tpm2b_public",
    "parse_tpm2tools_pcrs",
    "sm3_available",
]

TPM_GENERATED_VALUE = 0xFF544347
"""``TPM_GENERATED_VALUE`` (Part 2, 6.2): "\\xffTCG", first field of every TPMS_ATTEST."""

MAX_TPM2B = 4096
"""Upper bound on any TPM2B we accept. The largest in these structures is an RSA-4096 public
modulus / signature (512 bytes); MAX_DIGEST_BUFFER and MAX_NV_BUFFER_SIZE are 1024-2048 on real
TPMs. A tighter bound than the u16 size keeps a hostile size from meaning anything."""

MAX_PCR_SELECTIONS = 16
"""Upper bound on ``TPML_PCR_SELECTION.count`` (Part 2: count <= HASH_COUNT; tpm2-tss sizes the
array at TPM2_NUM_PCR_BANKS = 16)."""

PCR_SELECT_MAX = 4
"""``PCR_SELECT_MAX`` for 24..32 PCRs: sizeofSelect is 3 on PC-client TPMs, at most 4."""

_E = TypeVar("_E", bound=enum.IntEnum)


class HashAlg(enum.IntEnum):
    """``TPM_ALG_ID`` hash algorithms (Part 2, 6.3).

    ``SM3_256`` (0x0012, GB/T 32905) appears as a PCR bank on TPMs sold in China (a Hygon
    server's crypto-agile log carries it beside SHA-256); it is hashed with
    ``cryptography``'s SM3 where the OpenSSL build has it (:func:`sm3_available`).
    """

    SHA1 = 0x0004
    SHA256 = 0x000B
    SHA384 = 0x000C
    SHA512 = 0x000D
    SM3_256 = 0x0012

    @property
    def digest_size(self) -> int:
        """Digest length in bytes."""
        return _DIGEST_SIZES[self]

    @property
    def hashlib_name(self) -> str:
        """The name ``hashlib.new`` takes (``sha1``, ``sha256``, ...)."""
        return self.name.lower()

    def digest(self, data: bytes) -> bytes:
        """``H(data)`` under this algorithm (:class:`FormatError` for SM3 where this OpenSSL
        build has no SM3: see :func:`sm3_available`)."""
        if self is HashAlg.SM3_256:
            return _sm3(data)
        return hashlib.new(self.hashlib_name, data).digest()

    @classmethod
    def from_name(cls, name: str) -> HashAlg:
        """``sha256`` / ``SHA-256`` / ``SHA256`` -> :attr:`SHA256` (``sm3`` / ``sm3_256`` ->
        :attr:`SM3_256`); unknown names raise."""
        key = name.replace("-", "").replace("_", "").upper()
        if key in ("SM3", "SM3256"):
            return cls.SM3_256
        try:
            return cls[key]
        except KeyError:
            raise FormatError("TPM_ALG_ID", "hash", got=name,
                              want="sha1, sha256, sha384, sha512 or sm3_256") from None


_DIGEST_SIZES = {HashAlg.SHA1: 20, HashAlg.SHA256: 32, HashAlg.SHA384: 48, HashAlg.SHA512: 64,
                 HashAlg.SM3_256: 32}


@functools.cache
def sm3_available() -> bool:
    """True when ``cryptography``'s OpenSSL build can hash SM3 (some FIPS builds cannot);
    asked once per process (the OpenSSL build does not change under it)."""
    try:
        _sm3(b"")
    except FormatError:
        return False
    return True


def _sm3(data: bytes) -> bytes:
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import hashes

    try:
        h = hashes.Hash(hashes.SM3())
    except (UnsupportedAlgorithm, AttributeError):
        raise FormatError("TPM_ALG_ID", "hash", got="SM3_256",
                          want="a hash this OpenSSL build provides (no SM3 here)") from None
    h.update(bytes(data))
    return h.finalize()


class SigAlg(enum.IntEnum):
    """``TPM_ALG_ID`` signature schemes used in ``TPMT_SIGNATURE`` (Part 2, 6.3)."""

    NULL = 0x0010
    RSASSA = 0x0014
    RSAPSS = 0x0016
    ECDSA = 0x0018


class ObjectType(enum.IntEnum):
    """``TPMI_ALG_PUBLIC`` (Part 2, 12.2.2): the public-key object types parsed here."""

    RSA = 0x0001
    ECC = 0x0023


class EccCurve(enum.IntEnum):
    """``TPM_ECC_CURVE`` (Part 2, 6.4), NIST curves only."""

    NIST_P256 = 0x0003
    NIST_P384 = 0x0004
    NIST_P521 = 0x0005


class StructureTag(enum.IntEnum):
    """``TPM_ST`` attestation structure tags (Part 2, 6.9)."""

    ATTEST_NV = 0x8014
    ATTEST_COMMAND_AUDIT = 0x8015
    ATTEST_SESSION_AUDIT = 0x8016
    ATTEST_CERTIFY = 0x8017
    ATTEST_QUOTE = 0x8018
    ATTEST_TIME = 0x8019
    ATTEST_CREATION = 0x801A
    ATTEST_NV_DIGEST = 0x801C


_ALG_NULL = 0x0010
_ALG_RSAES = 0x0015
_ALG_ECDAA = 0x001A


# -- sequential big-endian reader ----------------------------------------------------------
class Cursor:
    """Reads big-endian TPM fields one after another from ``data`` for structure ``name``.

    Every read is bounds-checked; failures raise :class:`FormatError` with the offset. ``base``
    is added to reported offsets when the buffer is a slice of a larger structure.
    """

    __slots__ = ("base", "data", "name", "pos")

    def __init__(self, name: str, data: bytes, *, base: int = 0) -> None:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise FormatError(name, "<buffer>", got=type(data).__name__, want="bytes")
        self.name = name
        self.data = bytes(data)
        self.pos = 0
        self.base = base

    @property
    def remaining(self) -> int:
        """Bytes not yet read."""
        return len(self.data) - self.pos

    def raw(self, field_name: str, length: int) -> bytes:
        """The next ``length`` bytes."""
        if length < 0 or length > self.remaining:
            raise FormatError(self.name, field_name, offset=self.base + self.pos,
                              got=f"{self.remaining} bytes left", want=f"{length} bytes")
        out = self.data[self.pos:self.pos + length]
        self.pos += length
        return out

    def uint(self, field_name: str, length: int) -> int:
        """The next unsigned big-endian integer of ``length`` bytes."""
        return int.from_bytes(self.raw(field_name, length), "big")

    def u8(self, field_name: str) -> int:
        """Next byte."""
        return self.uint(field_name, 1)

    def u16(self, field_name: str) -> int:
        """Next big-endian u16."""
        return self.uint(field_name, 2)

    def u32(self, field_name: str) -> int:
        """Next big-endian u32."""
        return self.uint(field_name, 4)

    def u64(self, field_name: str) -> int:
        """Next big-endian u64."""
        return self.uint(field_name, 8)

    def tpm2b(self, field_name: str, *, max_size: int = MAX_TPM2B) -> bytes:
        """A ``TPM2B_*``: u16 size then that many bytes (size bounded by ``max_size``)."""
        at = self.base + self.pos
        size = self.u16(field_name + ".size")
        if size > max_size:
            raise FormatError(self.name, field_name + ".size", offset=at, got=size,
                              want=f"<= {max_size}")
        return self.raw(field_name, size)

    def enum(self, kind: type[_E], field_name: str, size: int = 2) -> _E:
        """The next ``size``-byte value decoded as ``kind``; unknown values raise."""
        at = self.base + self.pos
        value = self.uint(field_name, size)
        try:
            return kind(value)
        except ValueError:
            raise FormatError(self.name, field_name, offset=at, got=f"0x{value:04x}",
                              want=", ".join(f"0x{int(m):04x} ({m.name})" for m in kind)
                              ) from None

    def end(self) -> None:
        """Require the whole buffer to have been read (no trailing bytes)."""
        if self.remaining:
            raise FormatError(self.name, "<trailing>", offset=self.base + self.pos,
                              got=f"{self.remaining} trailing bytes", want="end of structure")


def _u16(v: int) -> bytes:
    return struct.pack(">H", v)


def _tpm2b(b: bytes) -> bytes:
    return _u16(len(b)) + b


# -- PCR selection -------------------------------------------------------------------------
@dataclass(frozen=True)
class PcrSelection:
    """One ``TPMS_PCR_SELECTION`` (Part 2, 10.6.2): a bank and the PCRs selected in it.

    ``pcrs`` is ascending (the order the TPM concatenates PCR values in, Part 2 TPMS_QUOTE_INFO:
    "the selected PCR are in the order of the PCR selection: bank by bank, lowest index
    first"). ``size_of_select`` keeps the bitmap length for exact re-encoding.
    """

    hash_alg: HashAlg
    pcrs: tuple[int, ...]
    size_of_select: int = 3

    def to_bytes(self) -> bytes:
        """Marshal as TPMS_PCR_SELECTION."""
        bitmap = bytearray(self.size_of_select)
        for i in self.pcrs:
            bitmap[i // 8] |= 1 << (i % 8)
        return _u16(self.hash_alg) + bytes([self.size_of_select]) + bytes(bitmap)


def _read_pcr_selection_list(cur: Cursor, prefix: str) -> tuple[PcrSelection, ...]:
    """``TPML_PCR_SELECTION`` (Part 2, 10.9.7): u32 count, then count TPMS_PCR_SELECTION."""
    at = cur.base + cur.pos
    count = cur.u32(prefix + ".count")
    if count > MAX_PCR_SELECTIONS:
        raise FormatError(cur.name, prefix + ".count", offset=at, got=count,
                          want=f"<= {MAX_PCR_SELECTIONS}")
    out: list[PcrSelection] = []
    seen: set[HashAlg] = set()
    for n in range(count):
        f = f"{prefix}[{n}]"
        at = cur.base + cur.pos
        alg = cur.enum(HashAlg, f + ".hash")
        if alg in seen:
            raise FormatError(cur.name, f + ".hash", offset=at, got=alg.name,
                              want="each bank selected once")
        seen.add(alg)
        at = cur.base + cur.pos
        size = cur.u8(f + ".sizeofSelect")
        if size > PCR_SELECT_MAX:
            raise FormatError(cur.name, f + ".sizeofSelect", offset=at, got=size,
                              want=f"<= {PCR_SELECT_MAX}")
        bitmap = cur.raw(f + ".pcrSelect", size)
        pcrs = tuple(i for i in range(size * 8) if bitmap[i // 8] >> (i % 8) & 1)
        out.append(PcrSelection(alg, pcrs, size))
    return tuple(out)


# -- TPMS_ATTEST and its arms --------------------------------------------------------------
@dataclass(frozen=True)
class TpmsClockInfo:
    """``TPMS_CLOCK_INFO`` (Part 2, 10.11.1)."""

    clock: int
    reset_count: int
    restart_count: int
    safe: bool


@dataclass(frozen=True)
class TpmsQuoteInfo:
    """``TPMS_QUOTE_INFO`` (Part 2, 10.12.4): the PCR selection and the digest of the PCRs."""

    pcr_select: tuple[PcrSelection, ...]
    pcr_digest: bytes

    def selected(self) -> list[tuple[HashAlg, int]]:
        """(bank, index) pairs in the order their values are hashed into ``pcr_digest``."""
        return [(s.hash_alg, i) for s in self.pcr_select for i in s.pcrs]


@dataclass(frozen=True)
class TpmsCertifyInfo:
    """``TPMS_CERTIFY_INFO`` (Part 2, 10.12.3): Name and Qualified Name of a certified object."""

    name: bytes
    qualified_name: bytes


@dataclass(frozen=True)
class TpmsCreationInfo:
    """``TPMS_CREATION_INFO`` (Part 2, 10.12.7): Name of a created object, its creation hash."""

    object_name: bytes
    creation_hash: bytes


@dataclass(frozen=True)
class TpmsAttest:
    """``TPMS_ATTEST`` (Part 2, 10.12.12): what a TPM signs in Quote/Certify/... .

    ``attested`` is the ``TPMU_ATTEST`` arm selected by ``type``: a :class:`TpmsQuoteInfo`,
    :class:`TpmsCertifyInfo` or :class:`TpmsCreationInfo`, or the raw bytes of the other arms.
    ``raw`` is the exact signed input, kept because the signature is over these bytes.
    """

    magic: int
    type: StructureTag
    qualified_signer: bytes
    extra_data: bytes
    clock_info: TpmsClockInfo
    firmware_version: int
    attested: TpmsQuoteInfo | TpmsCertifyInfo | TpmsCreationInfo | bytes
    raw: bytes = field(repr=False, compare=False, default=b"")

    @property
    def quote(self) -> TpmsQuoteInfo:
        """The quote arm; :class:`FormatError` when this is not a TPM_ST_ATTEST_QUOTE."""
        if not isinstance(self.attested, TpmsQuoteInfo):
            raise FormatError("TPMS_ATTEST", "type", offset=4, got=self.type.name,
                              want="ATTEST_QUOTE")
        return self.attested

    @classmethod
    def from_bytes(cls, data: bytes) -> TpmsAttest:
        """Parse a marshalled TPMS_ATTEST; the whole buffer must be consumed.

        The magic is *not* required to be TPM_GENERATED here (so a forgery can be shown and
        rejected by ``trust`` with a named check); it is parsed and kept.
        """
        cur = Cursor("TPMS_ATTEST", data)
        magic = cur.u32("magic")
        tag = cur.enum(StructureTag, "type")
        signer = cur.tpm2b("qualifiedSigner")
        extra = cur.tpm2b("extraData")
        clock = TpmsClockInfo(
            clock=cur.u64("clockInfo.clock"),
            reset_count=cur.u32("clockInfo.resetCount"),
            restart_count=cur.u32("clockInfo.restartCount"),
            safe=_yes_no(cur, "clockInfo.safe"),
        )
        fw = cur.u64("firmwareVersion")
        attested: TpmsQuoteInfo | TpmsCertifyInfo | TpmsCreationInfo | bytes
        if tag is StructureTag.ATTEST_QUOTE:
            sel = _read_pcr_selection_list(cur, "attested.quote.pcrSelect")
            attested = TpmsQuoteInfo(sel, cur.tpm2b("attested.quote.pcrDigest"))
        elif tag is StructureTag.ATTEST_CERTIFY:
            attested = TpmsCertifyInfo(cur.tpm2b("attested.certify.name"),
                                       cur.tpm2b("attested.certify.qualifiedName"))
        elif tag is StructureTag.ATTEST_CREATION:
            attested = TpmsCreationInfo(cur.tpm2b("attested.creation.objectName"),
                                        cur.tpm2b("attested.creation.creationHash"))
        else:
            attested = cur.raw("attested", cur.remaining)
        cur.end()
        return cls(magic, tag, signer, extra, clock, fw, attested, raw=bytes(data))

    def to_bytes(self) -> bytes:
        """Marshal; ``TpmsAttest.from_bytes(a.to_bytes()) == a``."""
        out = struct.pack(">IH", self.magic, self.type) + _tpm2b(self.qualified_signer)
        out += _tpm2b(self.extra_data)
        c = self.clock_info
        out += struct.pack(">QIIB", c.clock, c.reset_count, c.restart_count, int(c.safe))
        out += struct.pack(">Q", self.firmware_version)
        a = self.attested
        if isinstance(a, TpmsQuoteInfo):
            out += struct.pack(">I", len(a.pcr_select))
            out += b"".join(s.to_bytes() for s in a.pcr_select) + _tpm2b(a.pcr_digest)
        elif isinstance(a, TpmsCertifyInfo):
            out += _tpm2b(a.name) + _tpm2b(a.qualified_name)
        elif isinstance(a, TpmsCreationInfo):
            out += _tpm2b(a.object_name) + _tpm2b(a.creation_hash)
        else:
            out += a
        return out


def _yes_no(cur: Cursor, name: str) -> bool:
    at = cur.base + cur.pos
    v = cur.u8(name)
    if v > 1:
        raise FormatError(cur.name, name, offset=at, got=v, want="0 or 1 (TPMI_YES_NO)")
    return v == 1


# -- TPMT_SIGNATURE ------------------------------------------------------------------------
@dataclass(frozen=True)
class TpmtSignature:
    """``TPMT_SIGNATURE`` (Part 2, 11.3.4) for RSASSA, RSAPSS and ECDSA.

    For RSA schemes ``signature`` is the PKCS#1 signature (``TPMS_SIGNATURE_RSA.sig``); for
    ECDSA ``r`` and ``s`` hold the big-endian integers (``TPMS_SIGNATURE_ECC``) and
    ``signature`` is empty.
    """

    sig_alg: SigAlg
    hash_alg: HashAlg
    signature: bytes = b""
    r: bytes = b""
    s: bytes = b""

    @classmethod
    def from_bytes(cls, data: bytes) -> TpmtSignature:
        """Parse a marshalled TPMT_SIGNATURE; the whole buffer must be consumed."""
        cur = Cursor("TPMT_SIGNATURE", data)
        alg = cur.enum(SigAlg, "sigAlg")
        if alg is SigAlg.NULL:
            raise FormatError("TPMT_SIGNATURE", "sigAlg", offset=0, got="TPM_ALG_NULL",
                              want="RSASSA, RSAPSS or ECDSA")
        hash_alg = cur.enum(HashAlg, "hash")
        if alg is SigAlg.ECDSA:
            r = cur.tpm2b("signatureR", max_size=66)
            s = cur.tpm2b("signatureS", max_size=66)
            cur.end()
            return cls(alg, hash_alg, r=r, s=s)
        sig = cur.tpm2b("sig", max_size=512)
        cur.end()
        return cls(alg, hash_alg, signature=sig)

    @classmethod
    def rsassa(cls, signature: bytes, hash_alg: HashAlg = HashAlg.SHA256) -> TpmtSignature:
        """A bare RSASSA-PKCS1-v1_5 signature (as Azure's vTPM evidence carries it)."""
        return cls(SigAlg.RSASSA, hash_alg, signature=bytes(signature))

    def to_bytes(self) -> bytes:
        """Marshal; inverse of :meth:`from_bytes`."""
        head = _u16(self.sig_alg) + _u16(self.hash_alg)
        if self.sig_alg is SigAlg.ECDSA:
            return head + _tpm2b(self.r) + _tpm2b(self.s)
        return head + _tpm2b(self.signature)


# -- TPMT_PUBLIC ---------------------------------------------------------------------------
class ObjectAttr(enum.IntFlag):
    """``TPMA_OBJECT`` bits (Part 2, 8.3)."""

    FIXED_TPM = 1 << 1
    ST_CLEAR = 1 << 2
    FIXED_PARENT = 1 << 4
    SENSITIVE_DATA_ORIGIN = 1 << 5
    USER_WITH_AUTH = 1 << 6
    ADMIN_WITH_POLICY = 1 << 7
    NO_DA = 1 << 10
    ENCRYPTED_DUPLICATION = 1 << 11
    RESTRICTED = 1 << 16
    DECRYPT = 1 << 17
    SIGN_ENCRYPT = 1 << 18


@dataclass(frozen=True)
class TpmtPublic:
    """``TPMT_PUBLIC`` (Part 2, 12.2.4) of an RSA or ECC key.

    ``scheme``/``scheme_hash`` are the key's signing or decryption scheme (``TPM_ALG_NULL`` =
    0x0010 and ``None`` when unset); ``symmetric`` is the symmetric algorithm of a storage key
    (0x0010 for none) with its raw key bits/mode. RSA keys set ``rsa_bits``, ``exponent`` and
    ``modulus``; ECC keys set ``curve``, ``x`` and ``y``. ``raw`` is the exact encoding, whose
    hash under ``name_alg`` is the key's Name (Part 1, 16).
    """

    type: ObjectType
    name_alg: HashAlg
    object_attributes: int
    auth_policy: bytes
    symmetric: int
    symmetric_detail: bytes
    scheme: int
    scheme_hash: HashAlg | None
    scheme_detail: bytes = b""
    rsa_bits: int = 0
    exponent: int = 0
    modulus: bytes = b""
    curve: EccCurve | None = None
    kdf: int = _ALG_NULL
    kdf_hash: HashAlg | None = None
    x: bytes = b""
    y: bytes = b""
    raw: bytes = field(repr=False, compare=False, default=b"")

    @property
    def attributes(self) -> ObjectAttr:
        """``object_attributes`` as flags."""
        return ObjectAttr(self.object_attributes)

    def name(self) -> bytes:
        """The object's Name: ``nameAlg || H_nameAlg(TPMT_PUBLIC)`` (Part 1, 16)."""
        return _u16(self.name_alg) + self.name_alg.digest(self.raw or self.to_bytes())

    @classmethod
    def from_bytes(cls, data: bytes) -> TpmtPublic:
        """Parse a marshalled TPMT_PUBLIC (no size prefix); the buffer must be consumed."""
        cur = Cursor("TPMT_PUBLIC", data)
        out = _read_public(cur)
        cur.end()
        return out

    def to_bytes(self) -> bytes:
        """Marshal; inverse of :meth:`from_bytes`."""
        out = _u16(self.type) + _u16(self.name_alg) + struct.pack(">I", self.object_attributes)
        out += _tpm2b(self.auth_policy) + _u16(self.symmetric) + self.symmetric_detail
        out += _u16(self.scheme)
        if self.scheme_hash is not None:
            out += _u16(self.scheme_hash) + self.scheme_detail
        if self.type is ObjectType.RSA:
            return out + struct.pack(">HI", self.rsa_bits, self.exponent) + _tpm2b(self.modulus)
        assert self.curve is not None
        out += _u16(self.curve) + _u16(self.kdf)
        if self.kdf_hash is not None:
            out += _u16(self.kdf_hash)
        return out + _tpm2b(self.x) + _tpm2b(self.y)


def _read_public(cur: Cursor) -> TpmtPublic:
    start = cur.pos
    kind = cur.enum(ObjectType, "type")
    name_alg = cur.enum(HashAlg, "nameAlg")
    attrs = cur.u32("objectAttributes")
    policy = cur.tpm2b("authPolicy", max_size=64)
    # TPMT_SYM_DEF_OBJECT (Part 2, 11.1.7): algorithm, then keyBits and mode unless NULL.
    sym = cur.u16("parameters.symmetric.algorithm")
    sym_detail = b"" if sym == _ALG_NULL else cur.raw("parameters.symmetric.keyBits+mode", 4)
    # TPMT_RSA_SCHEME / TPMT_ECC_SCHEME (Part 2, 11.2.4.x / 11.2.5.x): scheme, then the
    # scheme's hash unless NULL (RSAES has no details); ECDAA adds a u16 count.
    scheme = cur.u16("parameters.scheme.scheme")
    scheme_hash: HashAlg | None = None
    scheme_detail = b""
    if scheme not in (_ALG_NULL, _ALG_RSAES):
        scheme_hash = cur.enum(HashAlg, "parameters.scheme.hashAlg")
        if scheme == _ALG_ECDAA:
            scheme_detail = cur.raw("parameters.scheme.count", 2)
    if kind is ObjectType.RSA:
        # TPMS_RSA_PARMS (Part 2, 12.2.3.5): keyBits, exponent (0 = 65537); unique: modulus.
        bits = cur.u16("parameters.keyBits")
        exponent = cur.u32("parameters.exponent")
        modulus = cur.tpm2b("unique.rsa", max_size=512)
        if bits not in (1024, 2048, 3072, 4096) or len(modulus) * 8 != bits:
            raise FormatError(cur.name, "unique.rsa", offset=cur.base + cur.pos,
                              got=f"{len(modulus)}-byte modulus, keyBits {bits}",
                              want="modulus of keyBits bits (1024..4096)")
        return TpmtPublic(kind, name_alg, attrs, policy, sym, sym_detail, scheme, scheme_hash,
                          scheme_detail, rsa_bits=bits, exponent=exponent, modulus=modulus,
                          raw=cur.data[start:cur.pos])
    # TPMS_ECC_PARMS (Part 2, 12.2.3.6): curveID, kdf (TPMT_KDF_SCHEME); unique: x, y.
    curve = cur.enum(EccCurve, "parameters.curveID")
    kdf = cur.u16("parameters.kdf.scheme")
    kdf_hash = None if kdf == _ALG_NULL else cur.enum(HashAlg, "parameters.kdf.hashAlg")
    x = cur.tpm2b("unique.ecc.x", max_size=66)
    y = cur.tpm2b("unique.ecc.y", max_size=66)
    return TpmtPublic(kind, name_alg, attrs, policy, sym, sym_detail, scheme, scheme_hash,
                      scheme_detail, curve=curve, kdf=kdf, kdf_hash=kdf_hash, x=x, y=y,
                      raw=cur.data[start:cur.pos])


def parse_tpm2b_public(data: bytes) -> TpmtPublic:
    """Parse a ``TPM2B_PUBLIC`` (u16 size, then a TPMT_PUBLIC of exactly that size)."""
    cur = Cursor("TPM2B_PUBLIC", data)
    size = cur.u16("size")
    body = cur.raw("publicArea", size)
    cur.end()
    inner = Cursor("TPM2B_PUBLIC", body, base=2)
    out = _read_public(inner)
    inner.end()
    return out


# -- PCR values ----------------------------------------------------------------------------
PcrValues = Mapping[HashAlg, Mapping[int, bytes]]
"""PCR values by bank then index, as the samples carry them next to a quote."""

_T2T_SLOTS = 16  # TPML_PCR_SELECTION.pcrSelections[TPM2_NUM_PCR_BANKS]
_T2T_SEL_SIZE = 8  # TPMS_PCR_SELECTION as a C struct: u16 hash, u8 size, u8[4] bitmap, 1 pad
_T2T_DIGESTS = 8  # TPML_DIGEST.digests[8]
_T2T_DIGEST_SIZE = 2 + 64  # TPM2B_DIGEST as a C struct: u16 size, u8[64] buffer
_T2T_MAX_LISTS = 64


def parse_tpm2tools_pcrs(data: bytes) -> dict[HashAlg, dict[int, bytes]]:
    """Parse the PCR file ``tpm2_quote -o`` writes (tpm2-tools): host-endian C structures.

    Layout (little-endian, as written on x86/ARM hosts): ``TPML_PCR_SELECTION`` (u32 count +
    16 slots of 8 bytes), a u32 number of ``TPML_DIGEST`` that follow, then each ``TPML_DIGEST``
    (u32 count + 8 slots of ``TPM2B_DIGEST`` = u16 size + 64-byte buffer). The digests, taken
    in order across the lists, are the values of the selected PCRs bank by bank, lowest index
    first - the same order a quote hashes them in.
    """
    name = "TPM2TOOLS_PCRS"
    buf = bytes(data)
    sel_end = 4 + _T2T_SLOTS * _T2T_SEL_SIZE
    if len(buf) < sel_end + 4:
        raise FormatError(name, "<length>", got=len(buf), want=f">= {sel_end + 4}")
    count = int.from_bytes(buf[0:4], "little")
    if count > _T2T_SLOTS:
        raise FormatError(name, "pcr_selections.count", offset=0, got=count,
                          want=f"<= {_T2T_SLOTS}")
    order: list[tuple[HashAlg, int]] = []
    for n in range(count):
        o = 4 + n * _T2T_SEL_SIZE
        alg_id = int.from_bytes(buf[o:o + 2], "little")
        try:
            alg = HashAlg(alg_id)
        except ValueError:
            raise FormatError(name, f"pcr_selections[{n}].hash", offset=o,
                              got=f"0x{alg_id:04x}", want="a known hash algorithm") from None
        size = buf[o + 2]
        if size > PCR_SELECT_MAX:
            raise FormatError(name, f"pcr_selections[{n}].sizeofSelect", offset=o + 2,
                              got=size, want=f"<= {PCR_SELECT_MAX}")
        bitmap = buf[o + 3:o + 3 + size]
        order += [(alg, i) for i in range(size * 8) if bitmap[i // 8] >> (i % 8) & 1]
    lists = int.from_bytes(buf[sel_end:sel_end + 4], "little")
    list_size = 4 + _T2T_DIGESTS * _T2T_DIGEST_SIZE
    if lists > _T2T_MAX_LISTS or len(buf) != sel_end + 4 + lists * list_size:
        raise FormatError(name, "pcrs.count", offset=sel_end, got=lists,
                          want=f"a count matching the file length ({len(buf)} bytes)")
    digests: list[bytes] = []
    for n in range(lists):
        o = sel_end + 4 + n * list_size
        c = int.from_bytes(buf[o:o + 4], "little")
        if c > _T2T_DIGESTS:
            raise FormatError(name, f"pcrs.pcr_values[{n}].count", offset=o, got=c,
                              want=f"<= {_T2T_DIGESTS}")
        for k in range(c):
            d = o + 4 + k * _T2T_DIGEST_SIZE
            size = int.from_bytes(buf[d:d + 2], "little")
            if size > 64:
                raise FormatError(name, f"pcrs.pcr_values[{n}].digests[{k}].size", offset=d,
                                  got=size, want="<= 64")
            digests.append(buf[d + 2:d + 2 + size])
    if len(digests) != len(order):
        raise FormatError(name, "pcrs", got=f"{len(digests)} values",
                          want=f"{len(order)} (one per selected PCR)")
    out: dict[HashAlg, dict[int, bytes]] = {}
    for (alg, idx), value in zip(order, digests, strict=True):
        if len(value) != alg.digest_size:
            raise FormatError(name, f"pcr {alg.name}:{idx}", got=f"{len(value)} bytes",
                              want=f"{alg.digest_size} bytes")
        out.setdefault(alg, {})[idx] = value
    return out


_MAX_PCR_TEXT = 1 << 20


def parse_pcr_values_text(data: bytes) -> dict[HashAlg, dict[int, bytes]]:
    """PCR values a person has in hand: ``tpm2_pcrread`` YAML output or JSON.

    YAML (tpm2-tools ``tpm2_pcrread``, also the ``pcrs:`` section ``tpm2_eventlog`` prints)::

        sha256:
          0 : 0x3D458CFE55CC03EA1F443F1562BEEC8DF51C75E14A9FCF9A7234A13F198E7969

    JSON: ``{"sha256": {"0": "3d45..."}}`` (``0x`` prefixes allowed), optionally under a
    top-level ``"pcrs"`` key. Only this line shape is read, not general YAML: a bank name at
    the start of a line, then ``index : hex`` lines indented below it. Values must have the
    bank's digest size; a PCR given twice is an error.
    """
    name = "PCR_VALUES"
    raw = bytes(data)
    if len(raw) > _MAX_PCR_TEXT:
        raise FormatError(name, "<length>", got=len(raw), want=f"<= {_MAX_PCR_TEXT} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise FormatError(name, "<encoding>", got="non-UTF-8 bytes",
                          want="tpm2_pcrread YAML or JSON text") from None
    if text.lstrip().startswith("{"):
        return _pcrs_from_json(text, name)
    out: dict[HashAlg, dict[int, bytes]] = {}
    bank: HashAlg | None = None
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.split("#", 1)[0].rstrip()
        if not stripped.strip() or stripped.strip() == "pcrs:":
            continue
        key, sep, value = stripped.partition(":")
        if not sep:
            raise FormatError(name, f"line {number}", got=stripped[:40],
                              want="'bank:' or 'index : 0xHEX'")
        if not value.strip():
            bank = HashAlg.from_name(key.strip())
            if bank in out:
                raise FormatError(name, f"line {number}", got=f"{bank.name} twice",
                                  want="each bank once")
            out[bank] = {}
            continue
        if bank is None:
            raise FormatError(name, f"line {number}", got=stripped[:40],
                              want="a bank line ('sha256:') first")
        _put_pcr(out[bank], bank, key.strip(), value.strip(), name=name,
                 where=f"line {number}")
    if not any(out.values()):
        raise FormatError(name, "<pcrs>", got="no PCR values", want="at least one")
    return out


def _put_pcr(bank_values: dict[int, bytes], bank: HashAlg, index_text: str, hex_text: str,
             *, name: str, where: str) -> None:
    try:
        index = int(index_text, 10)
    except ValueError:
        raise FormatError(name, where, got=index_text[:20], want="a PCR index") from None
    if not 0 <= index <= 31:
        raise FormatError(name, where, got=index, want="PCR 0..31")
    if index in bank_values:
        raise FormatError(name, where, got=f"PCR {bank.name}:{index} twice", want="once")
    digits = hex_text[2:] if hex_text[:2].lower() == "0x" else hex_text
    try:
        value = bytes.fromhex(digits)
    except ValueError:
        raise FormatError(name, where, got=hex_text[:20], want="hex digits") from None
    if len(value) != bank.digest_size:
        raise FormatError(name, where, got=f"{len(value)} bytes",
                          want=f"{bank.digest_size} bytes for {bank.name}")
    bank_values[index] = value


def _pcrs_from_json(text: str, name: str) -> dict[HashAlg, dict[int, bytes]]:
    from veritee._decode import load_json

    doc = load_json(text, structure=name, max_size=_MAX_PCR_TEXT)
    if isinstance(doc, dict) and isinstance(doc.get("pcrs"), dict):
        doc = doc["pcrs"]
    if not isinstance(doc, dict):
        raise FormatError(name, "<json>", got=type(doc).__name__, want="an object")
    out: dict[HashAlg, dict[int, bytes]] = {}
    for bank_name, values in doc.items():
        bank = HashAlg.from_name(str(bank_name))
        if bank in out or not isinstance(values, dict):
            raise FormatError(name, str(bank_name), got=type(values).__name__,
                              want="one object of index -> hex per bank")
        out[bank] = {}
        for index, value in values.items():
            if not isinstance(value, str):
                raise FormatError(name, f"{bank_name}.{index}", got=type(value).__name__,
                                  want="a hex string")
            _put_pcr(out[bank], bank, str(index), value, name=name,
                     where=f"{bank_name}.{index}")
    if not any(out.values()):
        raise FormatError(name, "<pcrs>", got="no PCR values", want="at least one")
    return out


def encode_tpm_evidence_json(*, ak_spki_der: bytes, attest: bytes, signature: TpmtSignature,
                             pcrs: Mapping[HashAlg, Mapping[int, bytes]],
                             ak_public: TpmtPublic | None = None,
                             event_log: bytes | None = None,
                             ak_certificate: bytes | None = None) -> bytes:
    """Trustee's ``tpm`` verifier evidence JSON (``ak_public``: base64 SPKI DER; ``tpm_quote``
    {``message``, ``signature``: base64; ``pcrs``}), with veritee's optional members
    (``ak_tpmt_public``, ``event_log``, ``ak_certificate``: base64).

    ``pcrs`` is trustee's list of hex values when it is one SHA-256 bank numbered from PCR 0,
    else an object ``{bank: {index: hex}}``. Read back by
    :func:`veritee.collateral.tpm.load_trustee_tpm`.
    """
    import base64
    import json

    def b64(data: bytes) -> str:
        return base64.b64encode(bytes(data)).decode()

    banks = {b: dict(v) for b, v in pcrs.items() if v}
    sha = banks.get(HashAlg.SHA256, {})
    pcr_doc: object
    if list(banks) == [HashAlg.SHA256] and sorted(sha) == list(range(len(sha))):
        pcr_doc = [sha[i].hex() for i in range(len(sha))]
    else:
        pcr_doc = {b.name.lower(): {str(i): v.hex() for i, v in sorted(values.items())}
                   for b, values in banks.items()}
    doc: dict[str, object] = {
        "ak_public": b64(ak_spki_der),
        "tpm_quote": {"message": b64(attest), "signature": b64(signature.to_bytes()),
                      "pcrs": pcr_doc},
    }
    if ak_public is not None:
        doc["ak_tpmt_public"] = b64(ak_public.raw or ak_public.to_bytes())
    if event_log is not None:
        doc["event_log"] = b64(event_log)
    if ak_certificate is not None:
        doc["ak_certificate"] = b64(ak_certificate)
    return json.dumps(doc, sort_keys=True).encode()
