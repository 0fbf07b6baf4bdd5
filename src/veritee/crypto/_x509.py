"""The one place where X.509 certificates and CRLs from evidence and collateral are loaded.

``cryptography`` parses certificate fields lazily: ``load_der_x509_certificate`` succeeds on a
certificate whose subject, validity or extensions are malformed, and the error surfaces later,
as ``ValueError``, ``TypeError``, ``x509.InvalidVersion``, ``UnsupportedAlgorithm``,
``x509.DuplicateExtension`` or ``x509.UnsupportedGeneralNameType``, in the middle of a
verifier. Here every field the verifiers read is parsed eagerly, at the edge, and whatever
``cryptography`` raises becomes :class:`~veritee.errors.FormatError` naming the structure, the
certificate's position and the field. Past this module a certificate's fields can be read
without a ``try``.

Fields parsed eagerly (what ``trust/*`` reads): version, serial number, issuer and subject
(and their RFC 4514 strings), validity, signature algorithm OID, every
extension, the TBS bytes, the signature and the subject public key. A public key of a type
``cryptography`` does not support is a :class:`~veritee.errors.VerificationError`
(``x509.unsupported_algorithm``: well-formed, but no verifier here can use it).

:func:`issued_by` is the one signature check over two loaded certificates: every exception of
``verify_directly_issued_by`` (wrong signature, unsupported or mismatched algorithm, wrong
issuer name) is ``False``.
"""

from __future__ import annotations

import re

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm

from veritee._decode import decode_base64
from veritee.errors import FormatError, VerificationError

__all__ = [
    "MAX_CHAIN",
    "issued_by",
    "load_certificate",
    "load_certificate_chain",
    "load_crl",
]

MAX_CHAIN = 16
"""Most certificates accepted in one chain or bundle (real ones hold 2-5)."""

_PEM_RE = re.compile(rb"-----BEGIN ([A-Z0-9 ]{1,40})-----(.*?)-----END \1-----", re.S)


def load_certificate(der: bytes, *, structure: str, field: str = "certificate"
                     ) -> x509.Certificate:
    """One DER certificate, every field parsed (see the module docstring)."""
    if not isinstance(der, bytes | bytearray | memoryview):
        raise FormatError(structure, field, got=type(der).__name__, want="DER bytes")
    try:
        cert = x509.load_der_x509_certificate(bytes(der))
    except Exception as exc:  # every loader error is malformed input
        raise FormatError(structure, field, got=_why(exc), want="a DER X.509 certificate"
                          ) from None
    _touch(cert, structure, field)
    return cert


def load_certificate_chain(data: bytes | str, *, structure: str, field: str = "certificates",
                           max_certs: int = MAX_CHAIN) -> tuple[x509.Certificate, ...]:
    """Certificates from PEM text (``CERTIFICATE`` blocks; others ignored) or concatenated
    DER (trailing NUL bytes ignored), at most ``max_certs``, each parsed as
    :func:`load_certificate`. Raises :class:`FormatError` when there is none."""
    if isinstance(data, str):
        try:
            data = data.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError as exc:  # a lone surrogate outside U+DC80..U+DCFF
            raise FormatError(structure, field, offset=exc.start, got="a lone surrogate",
                              want="PEM text") from None
    if not isinstance(data, bytes | bytearray | memoryview):
        raise FormatError(structure, field, got=type(data).__name__, want="bytes")
    # Only PEM text may be trimmed: DER ends wherever its lengths say, and its last byte may
    # well be a NUL or a whitespace byte (trimming those truncated one certificate in ~30).
    raw = bytes(data).lstrip()
    ders: list[bytes] = []
    if raw[:1] != b"\x30":  # DER starts with a SEQUENCE; anything else is PEM text
        for m in _PEM_RE.finditer(raw.rstrip(b"\x00").strip()):
            if m.group(1) != b"CERTIFICATE":
                continue
            if len(ders) >= max_certs:
                raise FormatError(structure, field, got=f"> {max_certs} certificates",
                                  want=f"<= {max_certs}")
            ders.append(decode_base64(m.group(2), structure=structure,
                                      field=f"{field}[{len(ders)}].PEM", alphabet="standard"))
    else:
        ders = _split_der(raw, structure, field, max_certs)
    if not ders:
        raise FormatError(structure, field, got="no certificate", want="PEM or DER X.509")
    return tuple(load_certificate(d, structure=structure, field=f"{field}[{i}]")
                 for i, d in enumerate(ders))


def load_crl(data: bytes, *, structure: str, field: str = "crl"
             ) -> x509.CertificateRevocationList:
    """A CRL from DER or PEM, with its issuer, dates, algorithm and every revoked entry (and
    its extensions) parsed eagerly."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise FormatError(structure, field, got=type(data).__name__, want="bytes")
    raw = bytes(data).lstrip()
    try:
        if raw.startswith(b"-----BEGIN"):
            crl = x509.load_pem_x509_crl(raw.rstrip(b"\x00").strip())
        else:  # DER ends where its length says (its last byte may be NUL or whitespace)
            crl = x509.load_der_x509_crl(_split_der(raw, structure, field, 1)[0])
    except Exception as exc:  # every loader error is malformed input
        raise FormatError(structure, field, got=_why(exc), want="a DER or PEM X.509 CRL"
                          ) from None
    step = "issuer"
    try:
        crl.issuer.rfc4514_string()
        step = "thisUpdate"
        _ = crl.last_update_utc
        step = "nextUpdate"
        _ = crl.next_update_utc
        step = "signatureAlgorithm"
        _ = crl.signature_algorithm_oid
        _ = crl.signature
        _ = crl.tbs_certlist_bytes
        step = "crlExtensions"
        _ = crl.extensions
        step = "revokedCertificates"
        for entry in crl:
            _ = entry.serial_number
            _ = entry.revocation_date_utc
            _ = entry.extensions
    except Exception as exc:  # lazily parsed fields: any error is a malformed CRL
        raise FormatError(structure, f"{field}.{step}", got=_why(exc), want="a well-formed "
                          "CRL field") from None
    return crl


def issued_by(child: x509.Certificate, parent: x509.Certificate) -> bool:
    """True when ``parent`` names and signs ``child`` (any failure, of any kind, is False)."""
    try:
        child.verify_directly_issued_by(parent)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def _touch(cert: x509.Certificate, structure: str, field: str) -> None:
    """Parse every field the verifiers read, so that reading them later cannot raise."""
    step = "version"
    try:
        _ = cert.version
        step = "serialNumber"
        _ = cert.serial_number
        step = "issuer"
        cert.issuer.rfc4514_string()
        step = "subject"
        cert.subject.rfc4514_string()
        step = "validity"
        _ = cert.not_valid_before_utc
        _ = cert.not_valid_after_utc
        step = "signatureAlgorithm"
        _ = cert.signature_algorithm_oid
        _ = cert.signature
        _ = cert.tbs_certificate_bytes
        step = "extensions"
        _ = cert.extensions
        step = "subjectPublicKeyInfo"
        cert.public_key()
    except UnsupportedAlgorithm as exc:
        if step == "subjectPublicKeyInfo":
            raise VerificationError("x509.unsupported_algorithm",
                                    f"{structure}.{field}: {_why(exc)}") from None
        raise FormatError(structure, f"{field}.{step}", got=_why(exc),
                          want="a supported algorithm") from None
    except Exception as exc:  # lazily parsed fields: any error is a malformed certificate
        raise FormatError(structure, f"{field}.{step}", got=_why(exc),
                          want="a well-formed X.509 field") from None


def _why(exc: BaseException) -> str:
    """``TypeName: message`` of an exception, short; cannot raise."""
    try:
        text = str(exc)
    except Exception:  # str() of a hostile value: fall back to the type
        text = ""
    return f"{type(exc).__name__}: {text[:80]}" if text else type(exc).__name__


def _split_der(data: bytes, structure: str, field: str, max_certs: int) -> list[bytes]:
    """Split concatenated DER SEQUENCEs (X.690 s8.1: tag, definite length, contents).

    Padding after the last complete SEQUENCE (NUL bytes, as a fixed-size NV index or a
    certificate table has, or whitespace, as a text editor adds) is ignored; nothing inside
    a SEQUENCE ever is.
    """
    out: list[bytes] = []
    off = 0
    while off < len(data):
        if out and not data[off:].strip(b"\x00 \t\r\n"):
            break
        if len(out) >= max_certs:
            raise FormatError(structure, field, offset=off, got=f"> {max_certs} certificates",
                              want=f"<= {max_certs}")
        if data[off] != 0x30 or off + 2 > len(data):
            raise FormatError(structure, f"{field}[{len(out)}]", offset=off,
                              got=data[off:off + 2], want="a DER SEQUENCE (0x30)")
        first = data[off + 1]
        if first < 0x80:
            start, length = off + 2, first
        else:
            n = first & 0x7F
            if n == 0 or n > 4 or off + 2 + n > len(data):
                raise FormatError(structure, f"{field}[{len(out)}].length", offset=off + 1,
                                  got=first, want="a definite length of 1-4 bytes")
            start = off + 2 + n
            length = int.from_bytes(data[off + 2:start], "big")
        end = start + length
        if end > len(data):
            raise FormatError(structure, f"{field}[{len(out)}].length", offset=off,
                              got=length, want=f"<= {len(data) - start} (bytes left)")
        out.append(data[off:end])
        off = end
    return out
