"""TPM endorsement-key (EK) certificate chains: signatures, validity, the TCG EK profile.

EK certificates do not pass generic X.509 path validators: their subject is usually empty with a
*critical* subjectAltName holding a directoryName of TPM attributes, and some carry
subjectDirectoryAttributes; ``cryptography``'s policy verifier refuses them. This module therefore
builds and checks the path itself, with ``cryptography`` primitives, and checks no less:

Steps, in the order :func:`verify_ek_chain` runs them (each a stable code; the first failure
raises :class:`~veritee.errors.VerificationError` with it, each success is a passed
:class:`~veritee.findings.Finding` in :attr:`VerifiedEkChain.checks`):

1. ``tpm.ek.chain``       a path leaf -> intermediates -> a given root exists: each issuer's
                          subject equals the child's issuer name (issuers whose key verifies
                          the child are preferred; step 2 then checks every link); every issuer
                          is a CA (basicConstraints cA, keyUsage keyCertSign when present,
                          pathLenConstraint respected); no certificate carries a critical
                          extension this module does not process (RFC 5280 4.2: "MUST
                          reject"); the path ends at a root given by the caller (compared by
                          DER), at most :data:`MAX_DEPTH` certificates long.
2. ``tpm.ek.signature``   every signature on the path verifies (explicit
                          ``public_key().verify`` over ``tbs_certificate_bytes`` with the
                          certificate's own padding and hash); SHA-1/MD5 signatures are
                          rejected unless ``allow_sha1=True``.
3. ``tpm.ek.validity``    every certificate on the path, the root included, is valid at ``now``
                          (fails as ``tpm.ek.expired`` / ``tpm.ek.not_yet_valid``)
                          (RFC 5280 6.1.3: validity is checked at the time of use, not nested: an
                          Infineon CA re-issued after its EK certificate is accepted from the
                          re-issue's notBefore on, and rejected before it).
4. ``tpm.ek.profile``     TCG EK Credential Profile for TPM 2.0 (2.5, 3.2): X.509 v3; not a CA;
                          a subjectAltName with a directoryName carrying tcg-at-tpmManufacturer
                          (2.23.133.2.1, ``id:`` + 8 hex digits), tcg-at-tpmModel (2.23.133.2.2)
                          and tcg-at-tpmVersion (2.23.133.2.3); the SAN is critical when the
                          subject is empty (RFC 5280 4.2.1.6); keyUsage keyEncipherment for an RSA
                          EK, keyAgreement for an ECC EK; an extendedKeyUsage, when present,
                          contains tcg-kp-EKCertificate (2.23.133.8.1).
5. ``tpm.ek.public_key``  with ``ek_public`` (a TPM2B_PUBLIC / TPMT_PUBLIC or a key read from the
                          TPM): it is the certificate's key. Skipped without it.

:func:`verify_tpm_cert_chain` runs steps 1-3 only, for certificates outside the EK profile: AK
certificates, and GCE's newer ``pca`` EK certificates, which carry the instance in the subject
and no TPM SAN (they fail step 4, which is reported, not relaxed).

Deliberately not checked: revocation (CRL distribution points need network I/O: that belongs in
``veritee.collateral``), certificate policies, and the subjectDirectoryAttributes contents
(TPM family/level); the TPM manufacturer is returned for a policy to judge.
Reference read, not copied: keylime ``keylime/tpm/tpm_ek_ca.py`` / ``cert_utils.py`` (EK chain
checks with per-vendor quirks), go-attestation ``attest/certification.go``.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, ObjectIdentifier

from veritee.crypto._x509 import load_certificate_chain
from veritee.errors import FormatError, VerificationError
from veritee.findings import Finding, skipped
from veritee.findings import passed as _ok
from veritee.formats.tpm import TpmtPublic
from veritee.trust._common import check_validity, extension, require_aware
from veritee.trust.tpm import PublicKey, public_key

__all__ = [
    "MAX_DEPTH",
    "OID_TCG_KP_EK_CERTIFICATE",
    "OID_TPM_MANUFACTURER",
    "OID_TPM_MODEL",
    "OID_TPM_VERSION",
    "CertificateInput",
    "VerifiedEkChain",
    "load_certificate",
    "verify_ek_chain",
    "verify_tpm_cert_chain",
]

MAX_DEPTH = 8
"""Longest accepted path, leaf and root included."""
OID_TPM_MANUFACTURER = ObjectIdentifier("2.23.133.2.1")
OID_TPM_MODEL = ObjectIdentifier("2.23.133.2.2")
OID_TPM_VERSION = ObjectIdentifier("2.23.133.2.3")
OID_TCG_KP_EK_CERTIFICATE = ObjectIdentifier("2.23.133.8.1")

CertificateInput = x509.Certificate | bytes

# Critical extensions this module processes (everything else that is critical is rejected).
_PROCESSED = frozenset({ExtensionOID.BASIC_CONSTRAINTS, ExtensionOID.KEY_USAGE,
                        ExtensionOID.SUBJECT_ALTERNATIVE_NAME, ExtensionOID.EXTENDED_KEY_USAGE})
_WEAK_HASHES = ("sha1", "md5")
_MANUFACTURER_RE = re.compile(r"id:[0-9A-Fa-f]{8}")


@dataclass(frozen=True)
class VerifiedEkChain:
    """A certificate whose path to a given root verified (and, for an EK, its TCG profile).

    ``path`` runs leaf first, root last. ``manufacturer``/``model``/``version`` are the TPM
    SAN attributes (``None`` from :func:`verify_tpm_cert_chain`), ``manufacturer_id`` the
    4-byte TCG vendor id (``IFX\\0``, ``GOOG``).
    """

    certificate: x509.Certificate
    path: tuple[x509.Certificate, ...]
    checks: tuple[Finding, ...]
    manufacturer: str | None = None
    model: str | None = None
    version: str | None = None

    @property
    def root(self) -> x509.Certificate:
        """The trust anchor the path ends at."""
        return self.path[-1]

    @property
    def manufacturer_id(self) -> bytes | None:
        """tcg-at-tpmManufacturer as 4 bytes (TCG vendor id registry)."""
        if self.manufacturer is None:
            return None
        return bytes.fromhex(self.manufacturer[3:])


def load_certificate(data: CertificateInput) -> x509.Certificate:
    """A certificate from DER or PEM bytes (or as given); every field is parsed at this edge
    (:mod:`veritee.crypto._x509`), and malformed input is a FormatError."""
    if isinstance(data, x509.Certificate):
        return data
    if not isinstance(data, bytes | bytearray):
        raise FormatError("X509", "<buffer>", got=type(data).__name__, want="bytes")
    chain = load_certificate_chain(bytes(data), structure="X509", field="certificate",
                                   max_certs=1)
    return chain[0]


def _who(cert: x509.Certificate) -> str:
    subject = cert.subject.rfc4514_string() or "<empty subject>"
    return f"{subject} (serial {cert.serial_number:#x})"


def _ext(cert: x509.Certificate, cls: type[x509.ExtensionType]) -> x509.Extension[
        x509.ExtensionType] | None:
    return extension(cert, cls, code="tpm.ek.chain")


def _check_signature(child: x509.Certificate, parent: x509.Certificate) -> bool:
    """True when ``parent``'s key verifies ``child``'s signature (explicit primitives)."""
    key = parent.public_key()
    algo = child.signature_hash_algorithm
    if algo is None:
        return False
    params = child.signature_algorithm_parameters
    try:
        if isinstance(key, rsa.RSAPublicKey):
            if not isinstance(params, padding.PKCS1v15 | padding.PSS):
                return False
            key.verify(child.signature, child.tbs_certificate_bytes, params, algo)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(child.signature, child.tbs_certificate_bytes, ec.ECDSA(algo))
        else:
            return False
    except (InvalidSignature, UnsupportedAlgorithm, ValueError, TypeError):
        return False
    return True


def _critical_unknown(cert: x509.Certificate) -> list[str]:
    return [e.oid.dotted_string for e in cert.extensions
            if e.critical and e.oid not in _PROCESSED]


def _is_ca(cert: x509.Certificate) -> tuple[bool, int | None]:
    bc = _ext(cert, x509.BasicConstraints)
    if bc is None or not isinstance(bc.value, x509.BasicConstraints) or not bc.value.ca:
        return False, None
    ku = _ext(cert, x509.KeyUsage)
    if ku is not None and isinstance(ku.value, x509.KeyUsage) and not ku.value.key_cert_sign:
        return False, None
    return True, bc.value.path_length


def _build_path(leaf: x509.Certificate, pool: Sequence[x509.Certificate],
                roots: Sequence[x509.Certificate]) -> list[x509.Certificate]:
    """Depth-first search for a path leaf -> ... -> a root; raise ``tpm.ek.chain`` if none."""
    code = "tpm.ek.chain"
    root_ders = {r.public_bytes(serialization.Encoding.DER) for r in roots}
    candidates = [*roots, *pool]

    def extend(path: list[x509.Certificate]) -> list[x509.Certificate] | None:
        current = path[-1]
        if current.public_bytes(serialization.Encoding.DER) in root_ders:
            return path
        if len(path) >= MAX_DEPTH:
            return None
        named = [c for c in candidates if c not in path and c.subject == current.issuer]
        # Issuers whose key verifies the signature first; a name-only match is still followed
        # so that a bad signature is reported as such by step 2 rather than as "no path".
        named.sort(key=lambda c: not _check_signature(current, c))
        for parent in named:
            found = extend([*path, parent])
            if found is not None:
                return found
        return None

    found = extend([leaf])
    if found is None:
        raise VerificationError(code, f"no path from {_who(leaf)} (issuer "
                                      f"{leaf.issuer.rfc4514_string()}) to a given root")
    return found


def _check_path(path: Sequence[x509.Certificate]) -> Finding:
    code = "tpm.ek.chain"
    for index, cert in enumerate(path):
        unknown = _critical_unknown(cert)
        if unknown:
            raise VerificationError(code, f"{_who(cert)}: unprocessed critical extension(s) "
                                          f"{', '.join(unknown)}")
        if index == 0:
            continue
        ca, path_len = _is_ca(cert)
        if not ca:
            raise VerificationError(code, f"{_who(cert)} issues a certificate but is not a CA "
                                          "(basicConstraints cA / keyUsage keyCertSign)")
        below = index - 1  # non-self-issued intermediates under this CA
        if path_len is not None and below > path_len:
            raise VerificationError(code, f"{_who(cert)}: pathLenConstraint {path_len}, "
                                          f"{below} CA(s) below it")
    return _ok(code, "path", " <- ".join(c.subject.rfc4514_string() or "<leaf>" for c in path))


def _check_signatures(path: Sequence[x509.Certificate], allow_sha1: bool) -> Finding:
    code = "tpm.ek.signature"
    links = list(itertools.pairwise(path))
    root = path[-1]
    if root.issuer == root.subject:  # a self-signed anchor: check it too
        links.append((root, root))
    for child, parent in links:
        algo = child.signature_hash_algorithm
        name = algo.name if algo is not None else "none"
        if name in _WEAK_HASHES and not allow_sha1:
            raise VerificationError(code, f"{_who(child)}: signature hash {name}, want SHA-256 "
                                          "or stronger")
        if not _check_signature(child, parent):
            raise VerificationError(code, f"{_who(child)}: signature does not verify under "
                                          f"{_who(parent)}")
    return _ok(code, "signatures", f"{len(links)} verified")


def _check_validity(path: Sequence[x509.Certificate], now: datetime) -> Finding:
    for cert in path:
        check_validity(cert, now, code="tpm.ek", what=_who(cert))
    return _ok("tpm.ek.validity", "validity", now.isoformat())


def _tpm_attributes(cert: x509.Certificate) -> tuple[str, str, str]:
    code = "tpm.ek.profile"
    san = _ext(cert, x509.SubjectAlternativeName)
    if san is None or not isinstance(san.value, x509.SubjectAlternativeName):
        raise VerificationError(code, f"{_who(cert)}: no subjectAltName (want the TPM "
                                      "manufacturer, model and version)")
    if len(cert.subject) == 0 and not san.critical:
        raise VerificationError(code, "subjectAltName: got non-critical, want critical "
                                      "(the subject is empty)")
    values: dict[ObjectIdentifier, str] = {}
    for name in san.value.get_values_for_type(x509.DirectoryName):
        for attr in name:
            if attr.oid in (OID_TPM_MANUFACTURER, OID_TPM_MODEL, OID_TPM_VERSION):
                raw = attr.value
                text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
                if attr.oid in values and values[attr.oid] != text:
                    raise VerificationError(code, f"subjectAltName: two values for "
                                                  f"{attr.oid.dotted_string}")
                values[attr.oid] = text
    missing = [o.dotted_string for o in (OID_TPM_MANUFACTURER, OID_TPM_MODEL, OID_TPM_VERSION)
               if o not in values]
    if missing:
        raise VerificationError(code, f"subjectAltName directoryName: missing {missing}")
    manufacturer = values[OID_TPM_MANUFACTURER]
    if not _MANUFACTURER_RE.fullmatch(manufacturer):
        raise VerificationError(code, f"tpmManufacturer: got {manufacturer!r}, want "
                                      "'id:' + 8 hex digits")
    return manufacturer, values[OID_TPM_MODEL], values[OID_TPM_VERSION]


def _check_profile(cert: x509.Certificate) -> tuple[Finding, tuple[str, str, str]]:
    code = "tpm.ek.profile"
    if cert.version is not x509.Version.v3:
        raise VerificationError(code, f"version: got {cert.version.name}, want v3")
    bc = _ext(cert, x509.BasicConstraints)
    if bc is not None and isinstance(bc.value, x509.BasicConstraints) and bc.value.ca:
        raise VerificationError(code, "basicConstraints: got cA true, want false")
    attrs = _tpm_attributes(cert)
    key = cert.public_key()
    ku = _ext(cert, x509.KeyUsage)
    usage = ku.value if ku is not None and isinstance(ku.value, x509.KeyUsage) else None
    if isinstance(key, rsa.RSAPublicKey):
        if usage is None or not usage.key_encipherment:
            raise VerificationError(code, "keyUsage: want keyEncipherment for an RSA EK")
    elif isinstance(key, ec.EllipticCurvePublicKey):
        if usage is None or not usage.key_agreement:
            raise VerificationError(code, "keyUsage: want keyAgreement for an ECC EK")
    else:
        raise VerificationError(code, f"public key: got {type(key).__name__}, want RSA or EC")
    eku = _ext(cert, x509.ExtendedKeyUsage)
    if eku is not None and isinstance(eku.value, x509.ExtendedKeyUsage):
        if OID_TCG_KP_EK_CERTIFICATE not in list(eku.value):
            raise VerificationError(code, "extendedKeyUsage: want tcg-kp-EKCertificate")
        if ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE in list(eku.value):
            raise VerificationError(code, "extendedKeyUsage: anyExtendedKeyUsage on an EK")
    return _ok(code, "subjectAltName", f"{attrs[0]} {attrs[1]} {attrs[2]}"), attrs


def _spki(key: object) -> bytes:
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise VerificationError("tpm.ek.public_key", f"got {type(key).__name__}, want RSA/EC")
    return key.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def _prepare(cert: CertificateInput, intermediates: Sequence[CertificateInput],
             roots: Sequence[CertificateInput]) -> tuple[x509.Certificate,
                                                         list[x509.Certificate],
                                                         list[x509.Certificate]]:
    if isinstance(roots, bytes | x509.Certificate) or isinstance(
            intermediates, bytes | x509.Certificate):
        raise TypeError("roots and intermediates are sequences of certificates")
    root_certs = [load_certificate(r) for r in roots]
    if not root_certs:
        raise VerificationError("tpm.ek.chain", "no roots given (there is no default root)")
    return load_certificate(cert), [load_certificate(c) for c in intermediates], root_certs


def verify_tpm_cert_chain(cert: CertificateInput, intermediates: Sequence[CertificateInput] = (),
                          *, roots: Sequence[CertificateInput], now: datetime,
                          allow_sha1: bool = False) -> VerifiedEkChain:
    """Steps 1-3 (path, signatures, validity) for a TPM certificate of any profile."""
    require_aware(now)
    leaf, pool, root_certs = _prepare(cert, intermediates, roots)
    path = _build_path(leaf, pool, root_certs)
    checks = (_check_path(path), _check_signatures(path, allow_sha1),
              _check_validity(path, now))
    return VerifiedEkChain(certificate=leaf, path=tuple(path), checks=checks)


def verify_ek_chain(ek_cert: CertificateInput, intermediates: Sequence[CertificateInput] = (),
                    *, roots: Sequence[CertificateInput], now: datetime,
                    ek_public: TpmtPublic | PublicKey | None = None,
                    allow_sha1: bool = False) -> VerifiedEkChain:
    """Verify an EK certificate (steps in the module docstring); raise on the first failure.

    ``roots`` are the trusted TPM-vendor roots (never a default set); ``now`` the time of use;
    ``ek_public`` the EK as the TPM reports it (TPM2B_PUBLIC parsed with
    ``veritee.formats.tpm.parse_tpm2b_public``, or a key).
    """
    chain = verify_tpm_cert_chain(ek_cert, intermediates, roots=roots, now=now,
                                  allow_sha1=allow_sha1)
    leaf = chain.certificate
    profile, (manufacturer, model, version) = _check_profile(leaf)
    code = "tpm.ek.public_key"
    if ek_public is None:
        key_check = skipped(code, "ek_public", "no TPM public key given")
    else:
        tpm_key = public_key(ek_public) if isinstance(ek_public, TpmtPublic) else ek_public
        if _spki(tpm_key) != _spki(leaf.public_key()):
            raise VerificationError(code, "the TPM's EK public key is not the certificate's")
        key_check = _ok(code, "ek_public", "matches the certificate")
    return VerifiedEkChain(certificate=leaf, path=chain.path,
                           checks=(*chain.checks, profile, key_check),
                           manufacturer=manufacturer, model=model, version=version)
