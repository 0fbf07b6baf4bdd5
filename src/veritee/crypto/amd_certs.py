"""AMD SEV-SNP certificates (ARK, ASK, ASVK, VCEK, VLEK): a strict reader and AMD-profile builders.

Profiles from AMD publication 57230, "Versioned Chip Endorsement Key (VCEK) Certificate and KDS
Interface Specification": every certificate is signed with RSASSA-PSS, SHA-384, MGF1-SHA-384,
salt length 48; the VCEK/VLEK carries an ECDSA P-384 key and AMD's extensions under
``1.3.6.1.4.1.3704.1`` (structVersion, productName, the SPLs, hwID or cspID).

Why a reader of our own: AMD issues every VCEK with serial number 0. RFC 5280 forbids that and
``cryptography`` loads such certificates only through a deprecated path (it warns today and will
refuse in a future release). :class:`AmdCertificate` therefore splits the DER itself (a small
strict DER walker: definite minimal lengths, no trailing data) and hands every cryptographic
operation -- public-key loading, signature verification, hashing -- to ``cryptography``. Nothing
is relaxed: the signed ``tbsCertificate`` bytes are exactly those in the file, the inner and outer
signature algorithms must be identical, and unknown critical extensions are reported.

The builders (``make_ark``, ``make_ask``, ``make_asvk``, ``make_vek``, ``make_crl``) are shared by
the emulated platform and the test fakes. ``make_vek`` reproduces AMD's serial 0 by re-signing the
``tbsCertificate`` that ``cryptography``'s builder produced (the builder rejects serial 0).
"""

from __future__ import annotations

import base64
import binascii
import re
import threading
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from types import MappingProxyType

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import NameOID

from veritee._memo import remember
from veritee.crypto._x509 import load_certificate
from veritee.errors import FormatError, VerificationError
from veritee.formats.sevsnp import Product, SigningKey, TcbVersion

__all__ = [
    "AMD_PSS",
    "OID_AMD",
    "OID_BASIC_CONSTRAINTS",
    "OID_KEY_USAGE",
    "OID_MGF1",
    "OID_RSASSA_PSS",
    "OID_SHA384",
    "AmdCertificate",
    "CrlParts",
    "PssParams",
    "RawExtension",
    "crl_parts",
    "decode_hwid",
    "decode_ia5string",
    "decode_integer",
    "encode_hwid",
    "load_certificates",
    "make_ark",
    "make_ask",
    "make_asvk",
    "make_crl",
    "make_vek",
    "signature_algorithm",
]

# -- OIDs -------------------------------------------------------------------------------------
OID_RSASSA_PSS = "1.2.840.113549.1.1.10"
OID_MGF1 = "1.2.840.113549.1.1.8"
OID_SHA1 = "1.3.14.3.2.26"
OID_SHA384 = "2.16.840.1.101.3.4.2.2"
OID_BASIC_CONSTRAINTS = "2.5.29.19"
OID_KEY_USAGE = "2.5.29.15"


class OID_AMD:  # noqa: N801 - a namespace of constants, named like the spec's prefix
    """AMD's VCEK/VLEK extension OIDs (57230, "VCEK Certificate Extensions" table)."""

    STRUCT_VERSION = "1.3.6.1.4.1.3704.1.1"
    PRODUCT_NAME = "1.3.6.1.4.1.3704.1.2"
    BL_SPL = "1.3.6.1.4.1.3704.1.3.1"
    TEE_SPL = "1.3.6.1.4.1.3704.1.3.2"
    SNP_SPL = "1.3.6.1.4.1.3704.1.3.3"
    SPL_4 = "1.3.6.1.4.1.3704.1.3.4"
    SPL_5 = "1.3.6.1.4.1.3704.1.3.5"
    SPL_6 = "1.3.6.1.4.1.3704.1.3.6"
    SPL_7 = "1.3.6.1.4.1.3704.1.3.7"
    UCODE_SPL = "1.3.6.1.4.1.3704.1.3.8"
    FMC_SPL = "1.3.6.1.4.1.3704.1.3.9"
    HWID = "1.3.6.1.4.1.3704.1.4"
    CSP_ID = "1.3.6.1.4.1.3704.1.5"


AMD_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)
"""The RSASSA-PSS parameters of every AMD certificate and CRL (57230): MGF1-SHA-384, salt 48."""

_STRUCT = "X509"


def _err(field_name: str, got: object, want: object, *, offset: int | None = None,
         structure: str = _STRUCT) -> FormatError:
    return FormatError(structure, field_name, offset=offset, got=got, want=want)


# -- a strict DER walker (parsing only; no cryptography here) ----------------------------------
def _tlv(data: bytes, pos: int, end: int, what: str) -> tuple[int, int, int]:
    """(tag, content start, content end) of the element at ``pos``; DER rules enforced."""
    if pos + 2 > end:
        raise _err(what, "truncated header", "a DER element", offset=pos)
    tag = data[pos]
    if tag & 0x1F == 0x1F:
        raise _err(what, f"tag 0x{tag:02x}", "a low-number tag", offset=pos)
    first = data[pos + 1]
    if first < 0x80:
        start, length = pos + 2, first
    else:
        n = first & 0x7F
        # DER: definite length, minimal number of length octets (X.690 10.1).
        if n == 0 or n > 4 or pos + 2 + n > end:
            raise _err(what, f"length octet 0x{first:02x}", "a definite DER length", offset=pos)
        length = int.from_bytes(data[pos + 2 : pos + 2 + n], "big")
        if length < 0x80 or data[pos + 2] == 0:
            raise _err(what, "non-minimal length", "minimal DER length", offset=pos)
        start = pos + 2 + n
    if start + length > end:
        raise _err(what, f"{length} bytes", f"<= {end - start} bytes", offset=pos)
    return tag, start, start + length


def _children(data: bytes, start: int, end: int, what: str) -> list[tuple[int, int, int, int]]:
    """The elements inside ``data[start:end]`` as (tag, element start, content start, end)."""
    out = []
    pos = start
    while pos < end:
        tag, cs, ce = _tlv(data, pos, end, what)
        out.append((tag, pos, cs, ce))
        pos = ce
    return out


def _expect(tag: int, want: int, what: str, offset: int) -> None:
    if tag != want:
        raise _err(what, f"tag 0x{tag:02x}", f"tag 0x{want:02x}", offset=offset)


def _decode_int(content: bytes, what: str) -> int:
    if not content:
        raise _err(what, "empty INTEGER", "at least one octet")
    if len(content) > 1 and (
        (content[0] == 0 and content[1] < 0x80) or (content[0] == 0xFF and content[1] >= 0x80)
    ):
        raise _err(what, content, "a minimally encoded INTEGER")
    return int.from_bytes(content, "big", signed=True)


# Decoded values by their exact bytes. Every AMD certificate repeats the same OIDs, names
# and PSS parameters (a new chip's VCEK has the same issuer and subject as every other), so
# each is decoded once (veritee._memo: bounded; a bad encoding raises every time).
_MEMO_MAX = 1024
_OIDS: dict[bytes, str] = {}
_NAMES: dict[bytes, x509.Name] = {}
_PSS: dict[bytes, PssParams] = {}


def _decode_oid(content: bytes, what: str) -> str:
    known = _OIDS.get(content)
    if known is not None:
        return known
    return remember(_OIDS, content, _decode_oid_arcs(content, what), _MEMO_MAX)


def _decode_oid_arcs(content: bytes, what: str) -> str:
    if not content or content[-1] & 0x80:
        raise _err(what, content, "a complete OBJECT IDENTIFIER")
    arcs: list[int] = []
    value = 0
    fresh = True
    for b in content:
        if fresh and b == 0x80:
            raise _err(what, content, "minimal OID arcs")
        value = value << 7 | (b & 0x7F)
        fresh = not b & 0x80
        if fresh:
            arcs.append(value)
            value = 0
    head = arcs[0]
    first, second = (0, head) if head < 40 else (1, head - 40) if head < 80 else (2, head - 80)
    return ".".join(str(a) for a in (first, second, *arcs[1:]))


_TIME_RE = {0x17: re.compile(rb"(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z"),
            0x18: re.compile(rb"(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z")}


def _decode_time(tag: int, content: bytes, what: str) -> datetime:
    pattern = _TIME_RE.get(tag)
    m = pattern.fullmatch(content) if pattern else None
    if m is None:
        raise _err(what, content, "UTCTime YYMMDDHHMMSSZ or GeneralizedTime YYYYMMDDHHMMSSZ")
    year, month, day, hour, minute, second = (int(g) for g in m.groups())
    if tag == 0x17:  # RFC 5280 4.1.2.5.1: two-digit years 50-99 are 19xx
        year += 1900 if year >= 50 else 2000
    try:
        return datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError as exc:
        raise _err(what, content, "a valid date", structure=_STRUCT) from exc


_STRING_CODECS = {0x0C: "utf-8", 0x13: "ascii", 0x16: "ascii", 0x14: "latin-1",
                  0x1E: "utf-16-be", 0x1C: "utf-32-be"}


def _decode_name(data: bytes, start: int, end: int, what: str) -> x509.Name:
    raw = data[start:end]
    known = _NAMES.get(raw)
    if known is not None:
        return known
    return remember(_NAMES, raw, _decode_rdns(data, start, end, what), _MEMO_MAX)


def _decode_rdns(data: bytes, start: int, end: int, what: str) -> x509.Name:
    rdns = []
    for tag, pos, cs, ce in _children(data, start, end, what):
        _expect(tag, 0x31, what, pos)  # SET OF AttributeTypeAndValue
        attrs = []
        for atag, apos, acs, ace in _children(data, cs, ce, what):
            _expect(atag, 0x30, what, apos)
            parts = _children(data, acs, ace, what)
            if len(parts) != 2:
                raise _err(what, f"{len(parts)} elements", "type and value", offset=apos)
            (otag, opos, ocs, oce), (vtag, vpos, vcs, vce) = parts
            _expect(otag, 0x06, what, opos)
            codec = _STRING_CODECS.get(vtag)
            if codec is None:
                raise _err(what, f"value tag 0x{vtag:02x}", "a directory string", offset=vpos)
            try:
                value = data[vcs:vce].decode(codec)
                attrs.append(x509.NameAttribute(
                    x509.ObjectIdentifier(_decode_oid(data[ocs:oce], what)), value))
            except ValueError as exc:
                raise _err(what, data[vcs:vce], f"a valid {codec} string", offset=vpos) from exc
        if not attrs:
            raise _err(what, "empty RDN", "at least one attribute", offset=pos)
        rdns.append(x509.RelativeDistinguishedName(attrs))
    return x509.Name(rdns)


@dataclass(frozen=True)
class PssParams:
    """Decoded RSASSA-PSS-params (RFC 4055 section 3.1), with the RFC's defaults filled in."""

    hash_oid: str
    mgf_oid: str
    mgf_hash_oid: str
    salt_length: int
    trailer_field: int

    @property
    def is_amd(self) -> bool:
        """True for SHA-384, MGF1-SHA-384, salt 48, trailer 1 (57230's only profile)."""
        return (self.hash_oid, self.mgf_oid, self.mgf_hash_oid, self.salt_length,
                self.trailer_field) == (OID_SHA384, OID_MGF1, OID_SHA384, 48, 1)


def _decode_hash_alg(data: bytes, start: int, end: int, what: str) -> str:
    tag, cs, ce = _tlv(data, start, end, what)
    _expect(tag, 0x30, what, start)
    parts = _children(data, cs, ce, what)
    if not parts or parts[0][0] != 0x06:
        raise _err(what, "no OID", "AlgorithmIdentifier", offset=start)
    if len(parts) > 2 or (len(parts) == 2 and data[parts[1][1]:parts[1][3]] != b"\x05\x00"):
        raise _err(what, "unexpected parameters", "absent or NULL", offset=start)
    return _decode_oid(data[parts[0][2]:parts[0][3]], what)


def _decode_pss(data: bytes, start: int, end: int) -> PssParams:
    raw = data[start:end]
    known = _PSS.get(raw)
    if known is not None:
        return known
    return remember(_PSS, raw, _decode_pss_fields(data, start, end), _MEMO_MAX)


def _decode_pss_fields(data: bytes, start: int, end: int) -> PssParams:
    what = "signatureAlgorithm.RSASSA-PSS-params"
    hash_oid, mgf_oid, mgf_hash, salt, trailer = OID_SHA1, OID_MGF1, OID_SHA1, 20, 1
    last = -1
    for tag, pos, cs, ce in _children(data, start, end, what):
        index = tag - 0xA0
        if not 0 <= index <= 3 or index <= last:
            raise _err(what, f"tag 0x{tag:02x}", "[0]..[3] in order", offset=pos)
        last = index
        if index == 0:
            hash_oid = _decode_hash_alg(data, cs, ce, what + ".hashAlgorithm")
        elif index == 1:
            t, mcs, mce = _tlv(data, cs, ce, what)
            _expect(t, 0x30, what, cs)
            parts = _children(data, mcs, mce, what)
            if len(parts) != 2 or parts[0][0] != 0x06:
                raise _err(what, "malformed maskGenAlgorithm", "MGF1 with a hash", offset=cs)
            mgf_oid = _decode_oid(data[parts[0][2]:parts[0][3]], what)
            mgf_hash = _decode_hash_alg(data, parts[1][1], parts[1][3], what + ".mgf")
        else:
            t, ics, ice = _tlv(data, cs, ce, what)
            _expect(t, 0x02, what, cs)
            value = _decode_int(data[ics:ice], what)
            salt, trailer = (value, trailer) if index == 2 else (salt, value)
    return PssParams(hash_oid, mgf_oid, mgf_hash, salt, trailer)


@dataclass(frozen=True)
class RawExtension:
    """One X.509 extension as it appears in the certificate: OID, critical flag, value octets."""

    oid: str
    critical: bool
    value: bytes


@dataclass(frozen=True)
class _Signed:
    tbs: bytes
    alg_oid: str
    alg_der: bytes
    pss: PssParams | None
    signature: bytes


def _split_signed(der: bytes, what: str) -> tuple[_Signed, int, int]:
    """Split SEQUENCE {tbs, AlgorithmIdentifier, BIT STRING} (certificates and CRLs)."""
    tag, cs, ce = _tlv(der, 0, len(der), what)
    _expect(tag, 0x30, what, 0)
    if ce != len(der):
        raise _err(what, f"{len(der) - ce} trailing bytes", "nothing after the element")
    parts = _children(der, cs, ce, what)
    if len(parts) != 3:
        raise _err(what, f"{len(parts)} elements", "tbs, signatureAlgorithm, signature")
    (ttag, tpos, tcs, tce), (atag, apos, acs, ace), (stag, spos, scs, sce) = parts
    _expect(ttag, 0x30, what + ".tbs", tpos)
    _expect(atag, 0x30, what + ".signatureAlgorithm", apos)
    _expect(stag, 0x03, what + ".signature", spos)
    if sce == scs or der[scs] != 0:
        raise _err(what + ".signature", "unused bits", "a whole-octet BIT STRING", offset=scs)
    alg_parts = _children(der, acs, ace, what)
    if not alg_parts or alg_parts[0][0] != 0x06:
        raise _err(what + ".signatureAlgorithm", "no OID", "AlgorithmIdentifier", offset=apos)
    alg_oid = _decode_oid(der[alg_parts[0][2]:alg_parts[0][3]], what)
    pss = None
    if alg_oid == OID_RSASSA_PSS:
        if len(alg_parts) != 2 or alg_parts[1][0] != 0x30:
            raise _err(what + ".signatureAlgorithm", "no RSASSA-PSS-params", "params present")
        pss = _decode_pss(der, alg_parts[1][2], alg_parts[1][3])
    signed = _Signed(tbs=der[tpos:tce], alg_oid=alg_oid, alg_der=der[apos:ace], pss=pss,
                     signature=der[scs + 1:sce])
    return signed, tcs, tce


def signature_algorithm(der: bytes, *,
                        what: str = "CertificateList") -> tuple[str, PssParams | None]:
    """The outer signature algorithm OID (and PSS parameters) of a certificate or CRL."""
    signed, _, _ = _split_signed(bytes(der), what)
    return signed.alg_oid, signed.pss


@dataclass(frozen=True)
class CrlParts:
    """A CRL split as signed: the exact ``tbsCertList`` bytes, the outer signature algorithm
    (and PSS parameters), the signature and the issuer Name's encoding."""

    tbs: bytes
    alg_oid: str
    pss: PssParams | None
    signature: bytes
    issuer_der: bytes


_CRLS: dict[bytes, CrlParts] = {}
_CRLS_MAX = 64  # a verifier sees one CRL per product and kind at a time
_CRLS_LOCK = threading.Lock()


def crl_parts(der: bytes, *, what: str = "CertificateList") -> CrlParts:
    """Split a DER CRL (RFC 5280 5.1: tbsCertList = version?, signature, issuer, ...) in one
    walk, strictly; raise :class:`FormatError` naming what is wrong. The same bytes are split
    once (every report of a product carries the same CRL)."""
    der = bytes(der)
    known = _CRLS.get(der)
    if known is not None:
        return known
    parts = _split_crl(der, what)
    with _CRLS_LOCK:
        while len(_CRLS) >= _CRLS_MAX:  # drop the oldest: CRLs are replaced, not revisited
            del _CRLS[next(iter(_CRLS))]
        _CRLS[der] = parts
    return parts


def _split_crl(der: bytes, what: str) -> CrlParts:
    signed, tcs, tce = _split_signed(der, what)
    pos = tcs
    tag, _, end = _tlv(der, pos, tce, what + ".tbsCertList")
    if tag == 0x02:  # version v2 (optional)
        pos = end
        tag, _, end = _tlv(der, pos, tce, what + ".tbsCertList")
    _expect(tag, 0x30, what + ".tbsCertList.signature", pos)
    pos = end
    tag, _, end = _tlv(der, pos, tce, what + ".tbsCertList.issuer")
    _expect(tag, 0x30, what + ".tbsCertList.issuer", pos)
    return CrlParts(signed.tbs, signed.alg_oid, signed.pss, signed.signature, der[pos:end])


# -- the certificate view ----------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class AmdCertificate:
    """A parsed AMD certificate. Attribute names follow ``cryptography.x509.Certificate``.

    Equality and hashing are by DER. ``to_x509()`` gives a ``cryptography`` object when needed
    (for serial-0 VCEKs that goes through ``cryptography``'s deprecated path and warns).
    """

    der: bytes
    tbs_certificate_bytes: bytes
    signature_algorithm_oid: x509.ObjectIdentifier
    signature_algorithm_der: bytes
    pss: PssParams | None
    signature: bytes
    version: int
    serial_number: int
    issuer: x509.Name
    subject: x509.Name
    not_valid_before_utc: datetime
    not_valid_after_utc: datetime
    public_key_der: bytes
    extensions: tuple[RawExtension, ...] = field(default=())
    issuer_der: bytes = b""  # the Name elements exactly as encoded (b"" when not known)
    subject_der: bytes = b""

    @classmethod
    def from_der(cls, der: bytes) -> AmdCertificate:
        """Parse one DER certificate; raise :class:`FormatError` naming what is wrong."""
        der = bytes(der)
        what = "Certificate"
        signed, tcs, tce = _split_signed(der, what)
        items = _children(der, tcs, tce, "tbsCertificate")
        idx = 0
        version = 1
        if items and items[0][0] == 0xA0:
            _, _, vcs, vce = items[0]
            t, ics, ice = _tlv(der, vcs, vce, "version")
            _expect(t, 0x02, "version", vcs)
            version = _decode_int(der[ics:ice], "version") + 1
            idx = 1
        if version != 3:
            raise _err("version", version, 3)
        fixed = items[idx:idx + 6]
        if len(fixed) != 6:
            raise _err("tbsCertificate", f"{len(items)} elements", "all mandatory fields")
        (stag, spos, scs, sce), alg, iss, val, sub, spki = fixed
        _expect(stag, 0x02, "serialNumber", spos)
        serial = _decode_int(der[scs:sce], "serialNumber")
        if serial < 0:
            raise _err("serialNumber", serial, ">= 0", offset=spos)
        # RFC 5280 4.1.1.2: the signed algorithm must equal the outer one, byte for byte.
        if der[alg[1]:alg[3]] != signed.alg_der:
            raise _err("signature", der[alg[1]:alg[3]], signed.alg_der, offset=alg[1])
        for (t, p, _, _), name in ((iss, "issuer"), (val, "validity"), (sub, "subject"),
                                   (spki, "subjectPublicKeyInfo")):
            _expect(t, 0x30, name, p)
        times = _children(der, val[2], val[3], "validity")
        if len(times) != 2:
            raise _err("validity", f"{len(times)} elements", "notBefore, notAfter", offset=val[1])
        nb, na = (_decode_time(t, der[cs:ce], "validity") for t, _, cs, ce in times)
        extensions: list[RawExtension] = []
        for tag, pos, cs, ce in items[idx + 6:]:
            if tag in (0x81, 0x82):  # issuer/subjectUniqueID: allowed, unused by AMD
                continue
            if tag != 0xA3 or extensions:
                raise _err("tbsCertificate", f"tag 0x{tag:02x}", "[3] extensions", offset=pos)
            extensions = _decode_extensions(der, cs, ce)
            if not extensions:
                raise _err("extensions", "empty", "at least one extension", offset=pos)
        _cross_check(der, serial)
        return cls(
            der=der, tbs_certificate_bytes=signed.tbs,
            signature_algorithm_oid=x509.ObjectIdentifier(signed.alg_oid),
            signature_algorithm_der=signed.alg_der, pss=signed.pss, signature=signed.signature,
            version=version, serial_number=serial,
            issuer=_decode_name(der, iss[2], iss[3], "issuer"),
            subject=_decode_name(der, sub[2], sub[3], "subject"),
            not_valid_before_utc=nb, not_valid_after_utc=na,
            public_key_der=der[spki[1]:spki[3]], extensions=tuple(extensions),
            issuer_der=der[iss[1]:iss[3]], subject_der=der[sub[1]:sub[3]])

    # -- cryptography-shaped accessors -----------------------------------------------------
    @cached_property
    def _public_key(self) -> PublicKeyTypes:
        try:
            return serialization.load_der_public_key(self.public_key_der)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:  # unsupported/malformed
            raise _err("subjectPublicKeyInfo", self.public_key_der[:16], "a supported key",
                       structure="Certificate") from exc

    def public_key(self) -> PublicKeyTypes:
        """The subject public key (parsed once and kept)."""
        return self._public_key

    @cached_property
    def sha256(self) -> str:
        """SHA-256 of the DER encoding, lower-case hex (the pinning fingerprint)."""
        return self.fingerprint(hashes.SHA256()).hex()

    def fingerprint(self, algorithm: hashes.HashAlgorithm) -> bytes:
        """Digest of the DER encoding with ``algorithm``."""
        h = hashes.Hash(algorithm)
        h.update(self.der)
        return h.finalize()

    def public_bytes(self, encoding: serialization.Encoding) -> bytes:
        """DER or PEM encoding of the certificate."""
        if encoding is serialization.Encoding.DER:
            return self.der
        if encoding is serialization.Encoding.PEM:
            b64 = base64.encodebytes(self.der).decode().replace("\n", "")
            lines = [b64[i:i + 64] for i in range(0, len(b64), 64)]
            return ("-----BEGIN CERTIFICATE-----\n" + "\n".join(lines)
                    + "\n-----END CERTIFICATE-----\n").encode()
        raise ValueError(f"unsupported encoding {encoding}")

    def to_x509(self) -> x509.Certificate:
        """The ``cryptography`` object (warns for serial-0 certificates; see module docs).

        Raises :class:`FormatError` if ``cryptography`` refuses the DER (only possible for a
        serial-0 certificate, see :func:`_cross_check`)."""
        try:
            return x509.load_der_x509_certificate(self.der)
        except ValueError as exc:
            raise _err("Certificate", str(exc)[:60], "DER that cryptography accepts") from None

    # The values below are read on every verification; each is a function of the DER only,
    # so it is computed once per certificate object.
    @cached_property
    def common_name(self) -> str | None:
        """The subject CN, if exactly one is present."""
        return _single_cn(self.subject)

    @cached_property
    def issuer_common_name(self) -> str | None:
        """The issuer CN, if exactly one is present."""
        return _single_cn(self.issuer)

    @cached_property
    def _extensions_by_oid(self) -> dict[str, RawExtension]:
        found: dict[str, RawExtension] = {}
        for e in self.extensions:  # the reader refuses duplicate OIDs; the first one wins
            found.setdefault(e.oid, e)
        return found

    def extension(self, oid: str) -> RawExtension | None:
        """The extension with dotted ``oid``, or ``None``."""
        return self._extensions_by_oid.get(oid)

    @cached_property
    def extension_values(self) -> Mapping[str, bytes]:
        """Each extension's value octets by dotted OID (read-only)."""
        return MappingProxyType({oid: e.value for oid, e in self._extensions_by_oid.items()})

    @cached_property
    def critical_extension_oids(self) -> tuple[str, ...]:
        """The OIDs of the extensions marked critical, in certificate order."""
        return tuple(e.oid for e in self.extensions if e.critical)

    @cached_property
    def _basic_constraints_ca(self) -> bool:
        ext = self.extension(OID_BASIC_CONSTRAINTS)
        if ext is None:
            return False
        what = "extensions.basicConstraints"
        tag, cs, ce = _tlv(ext.value, 0, len(ext.value), what)
        _expect(tag, 0x30, what, 0)
        parts = _children(ext.value, cs, ce, what)
        return bool(parts) and parts[0][0] == 0x01 and ext.value[parts[0][2]:parts[0][3]] == b"\xff"

    def basic_constraints_ca(self) -> bool:
        """True when basicConstraints says cA TRUE."""
        return self._basic_constraints_ca

    @cached_property
    def _key_usage_bits(self) -> frozenset[int]:
        ext = self.extension(OID_KEY_USAGE)
        if ext is None:
            return frozenset()
        what = "extensions.keyUsage"
        tag, cs, ce = _tlv(ext.value, 0, len(ext.value), what)
        _expect(tag, 0x03, what, 0)
        bits = ext.value[cs + 1:ce]
        return frozenset(i for i in range(len(bits) * 8) if bits[i // 8] >> (7 - i % 8) & 1)

    def key_usage_bits(self) -> frozenset[int]:
        """The keyUsage bits that are set (5 = keyCertSign, 6 = cRLSign); empty if absent."""
        return self._key_usage_bits

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AmdCertificate) and other.der == self.der

    def __hash__(self) -> int:
        return hash(self.der)

    def __repr__(self) -> str:
        return f"<AmdCertificate {self.subject.rfc4514_string()} serial={self.serial_number}>"


def _single_cn(name: x509.Name) -> str | None:
    cns = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(cns[0].value) if len(cns) == 1 else None


def _cross_check(der: bytes, serial: int) -> None:
    """Refuse DER that ``cryptography`` refuses (or cannot read a field of), so that
    ``to_x509()`` and every later read agree with this reader. Serial-0 certificates are
    exempt from the verdict (not from the check): AMD issues every VCEK with serial 0 and a
    future ``cryptography`` will refuse them all (module docstring)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        try:
            load_certificate(der, structure="Certificate", field="DER")
        except (FormatError, VerificationError) as exc:
            if serial == 0:
                return
            raise _err("DER", str(exc)[:80], "a certificate cryptography also accepts"
                       ) from None


def _decode_extensions(der: bytes, start: int, end: int) -> list[RawExtension]:
    what = "extensions"
    tag, cs, ce = _tlv(der, start, end, what)
    _expect(tag, 0x30, what, start)
    out: list[RawExtension] = []
    seen: set[str] = set()
    for etag, epos, ecs, ece in _children(der, cs, ce, what):
        _expect(etag, 0x30, what, epos)
        parts = _children(der, ecs, ece, what)
        if len(parts) not in (2, 3) or parts[0][0] != 0x06 or parts[-1][0] != 0x04:
            raise _err(what, "malformed Extension", "{OID, critical?, OCTET STRING}", offset=epos)
        critical = False
        if len(parts) == 3:
            _expect(parts[1][0], 0x01, what + ".critical", parts[1][1])
            # DER: DEFAULT FALSE is omitted, so an explicit critical must be TRUE (0xFF).
            if der[parts[1][2]:parts[1][3]] != b"\xff":
                raise _err(what + ".critical", der[parts[1][2]:parts[1][3]], "ff", offset=epos)
            critical = True
        oid = _decode_oid(der[parts[0][2]:parts[0][3]], what)
        if oid in seen:
            raise _err(what, f"duplicate {oid}", "each extension once", offset=epos)
        seen.add(oid)
        out.append(RawExtension(oid, critical, der[parts[-1][2]:parts[-1][3]]))
    return out


_PEM_RE = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\s*(.*?)\s*-----END \1-----", re.S)


def load_certificates(data: bytes, *, source: str = "certificate data") -> list[AmdCertificate]:
    """Certificates from DER (one) or PEM (one or more ``CERTIFICATE`` blocks).

    Raises :class:`FormatError` naming ``source`` when the bytes are neither.
    """
    data = bytes(data)
    if b"-----BEGIN" in data:
        out = []
        for m in _PEM_RE.finditer(data):
            if m.group(1) != b"CERTIFICATE":
                continue
            try:
                der = base64.b64decode(b"".join(m.group(2).split()), validate=True)
            except binascii.Error as exc:
                raise FormatError(source, "PEM", got="invalid base64", want="base64") from exc
            out.append(_parse_named(der, source))
        if not out:
            raise FormatError(source, "PEM", got="no CERTIFICATE block", want="a certificate")
        return out
    return [_parse_named(data, source)]


def _parse_named(der: bytes, source: str) -> AmdCertificate:
    try:
        return AmdCertificate.from_der(der)
    except FormatError as exc:
        raise FormatError(source, exc.field, offset=exc.offset, got=exc.got, want=exc.want,
                          detail="X.509 certificate") from exc


# -- builders ----------------------------------------------------------------------------------
def _der(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        return bytes([tag, n]) + content
    size = (n.bit_length() + 7) // 8
    return bytes([tag, 0x80 | size]) + n.to_bytes(size, "big") + content


def _der_int(value: int) -> bytes:
    return _der(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big", signed=True))


def _amd_name(cn: str) -> x509.Name:
    # The order AMD's certificates use (outermost RDN first): OU, C, L, ST, O, CN.
    return x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Engineering"),
        x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
        x509.NameAttribute(NameOID.LOCALITY_NAME, "Santa Clara"),
        x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "CA"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Advanced Micro Devices"),
        x509.NameAttribute(NameOID.COMMON_NAME, cn),
    ])


_SERIAL_BASE = {Product.MILAN: 0x10000, Product.GENOA: 0x20000, Product.TURIN: 0x30000}


def _pss(salt_length: int) -> padding.PSS:
    return padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=salt_length)


def _sign(builder: x509.CertificateBuilder, key: rsa.RSAPrivateKey, *, serial: int,
          salt_length: int, digest: hashes.HashAlgorithm | None) -> AmdCertificate:
    """Sign with RSASSA-PSS; serial 0 (AMD's VCEK serial) is set by re-signing the TBS."""
    algorithm = digest or hashes.SHA384()
    pss = padding.PSS(mgf=padding.MGF1(algorithm), salt_length=salt_length)
    cert = builder.serial_number(serial or 1).sign(key, algorithm, rsa_padding=pss)  # type: ignore[arg-type]
    der = cert.public_bytes(serialization.Encoding.DER)
    if serial:
        return AmdCertificate.from_der(der)
    signed, tcs, tce = _split_signed(der, "Certificate")
    items = _children(der, tcs, tce, "tbsCertificate")
    _, spos, _, sce = items[1]  # [0] version, then serialNumber
    tbs = _der(0x30, der[tcs:spos] + _der_int(0) + der[sce:tce])
    sig = key.sign(tbs, pss, algorithm)
    return AmdCertificate.from_der(
        _der(0x30, tbs + signed.alg_der + _der(0x03, b"\x00" + sig)))


def _ca_builder(subject: str, issuer: x509.Name, public_key: rsa.RSAPublicKey,
                not_before: datetime, not_after: datetime) -> x509.CertificateBuilder:
    return (x509.CertificateBuilder().subject_name(_amd_name(subject)).issuer_name(issuer)
            .public_key(public_key).not_valid_before(not_before).not_valid_after(not_after))


def make_ark(key: rsa.RSAPrivateKey, product: Product, *, not_before: datetime,
             not_after: datetime, serial: int | None = None, common_name: str | None = None,
             signer_key: rsa.RSAPrivateKey | None = None, salt_length: int = 48,
             digest: hashes.HashAlgorithm | None = None) -> AmdCertificate:
    """A self-signed ARK with AMD's profile (``signer_key`` overrides the signer, for tests)."""
    cn = common_name or f"ARK-{product.value}"
    b = (_ca_builder(cn, _amd_name(cn), key.public_key(), not_before, not_after)
         .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                      False), critical=True)
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
         .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
         .add_extension(_crl_dp("vcek", product), critical=False))
    return _sign(b, signer_key or key, serial=_SERIAL_BASE[product] if serial is None else serial,
                 salt_length=salt_length, digest=digest)


def _crl_dp(kind: str, product: Product) -> x509.CRLDistributionPoints:
    uri = f"https://kdsintf.amd.com/{kind}/v1/{product.value}/crl"
    return x509.CRLDistributionPoints([x509.DistributionPoint(
        [x509.UniformResourceIdentifier(uri)], None, None, None)])


def make_ask(ark_key: rsa.RSAPrivateKey, ark_cert: AmdCertificate | x509.Certificate,
             ask_public_key: rsa.RSAPublicKey,
             product: Product, *, not_before: datetime, not_after: datetime,
             serial: int | None = None, common_name: str | None = None, vlek: bool = False,
             salt_length: int = 48, digest: hashes.HashAlgorithm | None = None) -> AmdCertificate:
    """An ASK ("SEV-<product>") or, with ``vlek=True``, an ASVK ("SEV-VLEK-<product>")."""
    cn = common_name or (f"SEV-VLEK-{product.value}" if vlek else f"SEV-{product.value}")
    aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(
        ark_cert.public_key())  # type: ignore[arg-type]
    b = (_ca_builder(cn, ark_cert.subject, ask_public_key, not_before, not_after)
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(ask_public_key), False)
         .add_extension(aki, critical=False)
         .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
         .add_extension(x509.KeyUsage(False, False, False, False, False, True, False, False,
                                      False), critical=True)
         .add_extension(_crl_dp("vlek" if vlek else "vcek", product), critical=False))
    default_serial = _SERIAL_BASE[product] + (0x101 if vlek else 1)
    return _sign(b, ark_key, serial=default_serial if serial is None else serial,
                 salt_length=salt_length, digest=digest)


def make_asvk(ark_key: rsa.RSAPrivateKey, ark_cert: AmdCertificate | x509.Certificate,
              asvk_public_key: rsa.RSAPublicKey, product: Product, *, not_before: datetime,
              not_after: datetime, serial: int | None = None, common_name: str | None = None,
              salt_length: int = 48) -> AmdCertificate:
    """The ASVK, the ARK-signed key that signs VLEKs ("SEV-VLEK-<product>")."""
    return make_ask(ark_key, ark_cert, asvk_public_key, product, not_before=not_before,
                    not_after=not_after, serial=serial, common_name=common_name, vlek=True,
                    salt_length=salt_length)


def encode_hwid(hwid: bytes, *, octet_string: bool = False) -> bytes:
    """hwID extension value: raw bytes as KDS issues it, or wrapped in an OCTET STRING."""
    return _der(0x04, hwid) if octet_string else hwid


def make_vek(issuer_key: rsa.RSAPrivateKey, issuer_cert: AmdCertificate | x509.Certificate,
             vek_public_key: ec.EllipticCurvePublicKey, product: Product, tcb: TcbVersion, *,
             kind: SigningKey = SigningKey.VCEK, hwid: bytes | None = None,
             csp_id: str | None = None, not_before: datetime, not_after: datetime,
             serial: int = 0, product_name: str | None = None,
             struct_version: int | None = None, common_name: str | None = None,
             hwid_octet_string: bool = False, salt_length: int = 48,
             digest: hashes.HashAlgorithm | None = None,
             omit: Iterable[str] = (),
             extra: Sequence[RawExtension] = ()) -> AmdCertificate:
    """A VCEK (``hwid``) or VLEK (``csp_id``) with AMD's extensions encoded as KDS encodes them.

    Milan/Genoa (structVersion 0): bl, tee, spl_4..7, snp, ucode SPLs and a 64-byte hwID.
    Turin (structVersion 1, ``tcb.fmc`` set): fmc, bl, tee, snp, spl_5..7, ucode and an 8-byte
    hwID. SPLs are DER INTEGERs, productName an IA5String, hwID raw bytes. ``omit`` drops
    extensions by OID and ``extra`` appends raw ones (both for negative tests).
    """
    if kind not in (SigningKey.VCEK, SigningKey.VLEK):
        raise ValueError("kind must be VCEK or VLEK")
    turin = tcb.fmc is not None
    name = product_name or ("Milan-B0" if product is Product.MILAN else product.value)
    ext: list[tuple[str, bytes]] = [
        (OID_AMD.STRUCT_VERSION, _der_int(struct_version if struct_version is not None
                                          else int(turin))),
        (OID_AMD.PRODUCT_NAME, _der(0x16, name.encode("ascii"))),
    ]
    if turin:
        ext += [(OID_AMD.FMC_SPL, _der_int(tcb.fmc or 0)),
                (OID_AMD.BL_SPL, _der_int(tcb.bootloader)), (OID_AMD.TEE_SPL, _der_int(tcb.tee)),
                (OID_AMD.SNP_SPL, _der_int(tcb.snp)),
                (OID_AMD.SPL_5, _der_int(0)), (OID_AMD.SPL_6, _der_int(0)),
                (OID_AMD.SPL_7, _der_int(0)), (OID_AMD.UCODE_SPL, _der_int(tcb.microcode))]
    else:
        ext += [(OID_AMD.BL_SPL, _der_int(tcb.bootloader)), (OID_AMD.TEE_SPL, _der_int(tcb.tee)),
                (OID_AMD.SPL_4, _der_int(0)), (OID_AMD.SPL_5, _der_int(0)),
                (OID_AMD.SPL_6, _der_int(0)), (OID_AMD.SPL_7, _der_int(0)),
                (OID_AMD.SNP_SPL, _der_int(tcb.snp)), (OID_AMD.UCODE_SPL, _der_int(tcb.microcode))]
    if kind is SigningKey.VCEK:
        if hwid is None:
            raise ValueError("a VCEK needs hwid")
        ext.append((OID_AMD.HWID, encode_hwid(hwid, octet_string=hwid_octet_string)))
    else:
        ext.append((OID_AMD.CSP_ID, _der(0x16, (csp_id or "").encode("ascii"))))
    dropped = set(omit)
    cn = common_name or ("SEV-VCEK" if kind is SigningKey.VCEK else "SEV-VLEK")
    b = (x509.CertificateBuilder().subject_name(_amd_name(cn)).issuer_name(issuer_cert.subject)
         .public_key(vek_public_key).not_valid_before(not_before).not_valid_after(not_after))
    for oid, value in ext:
        if oid not in dropped:
            b = b.add_extension(x509.UnrecognizedExtension(x509.ObjectIdentifier(oid), value),
                                critical=False)
    for raw in extra:
        b = b.add_extension(x509.UnrecognizedExtension(x509.ObjectIdentifier(raw.oid), raw.value),
                            critical=raw.critical)
    return _sign(b, issuer_key, serial=serial, salt_length=salt_length, digest=digest)


def make_crl(ark_key: rsa.RSAPrivateKey, ark_cert: AmdCertificate | x509.Certificate,
             revoked_serials: Iterable[int], last_update: datetime, next_update: datetime, *,
             salt_length: int = 48) -> x509.CertificateRevocationList:
    """A CRL issued by the ARK (as KDS's ``/vcek/v1/<product>/crl``), RSASSA-PSS SHA-384."""
    b = (x509.CertificateRevocationListBuilder().issuer_name(ark_cert.subject)
         .last_update(last_update).next_update(next_update))
    for s in revoked_serials:
        b = b.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(s).revocation_date(last_update)
            .build())
    return b.sign(ark_key, hashes.SHA384(), rsa_padding=_pss(salt_length))


# -- decoders for AMD extension values (57230: INTEGER, IA5String, raw or OCTET STRING hwID) --
def decode_integer(value: bytes, what: str) -> int:
    """A whole-value DER INTEGER (``what`` names it in errors)."""
    if len(value) == 3 and value[0] == 0x02 and value[1] == 1:  # one octet, as every SPL
        return value[2] - 0x100 if value[2] >= 0x80 else value[2]
    tag, cs, ce = _tlv(value, 0, len(value), what)
    _expect(tag, 0x02, what, 0)
    if ce != len(value):
        raise _err(what, f"{len(value) - ce} trailing bytes", "one INTEGER", structure="VEK")
    return _decode_int(value[cs:ce], what)


def decode_ia5string(value: bytes, what: str) -> str:
    """A whole-value DER IA5String."""
    tag, cs, ce = _tlv(value, 0, len(value), what)
    _expect(tag, 0x16, what, 0)
    if ce != len(value):
        raise _err(what, f"{len(value) - ce} trailing bytes", "one IA5String", structure="VEK")
    try:
        return value[cs:ce].decode("ascii")
    except UnicodeDecodeError as exc:
        raise _err(what, value[cs:ce], "ASCII", structure="VEK") from exc


def decode_hwid(value: bytes, size: int) -> bytes:
    """The hwID: ``size`` raw bytes (as KDS issues it) or an OCTET STRING of ``size`` bytes.

    A raw value of exactly ``size`` bytes is taken as raw, so a raw hwID that happens to start
    like an OCTET STRING header is never misread.
    """
    if len(value) == size:
        return value
    if len(value) == size + 2 and value[0] == 0x04 and value[1] == size:
        return value[2:]
    raise _err("hwID", f"{len(value)} bytes", f"{size} raw bytes or an OCTET STRING of them",
               structure="VEK")
