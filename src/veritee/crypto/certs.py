"""X.509 certificates: a CA, leaf certificates, CSRs, and a strict leaf-against-CA check.

Everything is built with ``cryptography``'s x509 builders; nothing here implements a primitive.
The profile follows RFC 5280:

* **CA** (:func:`create_ca`): self-signed, ``basicConstraints`` CA=TRUE (critical, with a path
  length), ``keyUsage`` keyCertSign + cRLSign (critical, section 4.2.1.3), a
  ``subjectKeyIdentifier`` (method 1 of section 4.2.1.2: SHA-1 of the subjectPublicKey) and an
  ``authorityKeyIdentifier`` equal to it.
* **Leaf** (:func:`issue_leaf`, :func:`self_signed_leaf`): ``basicConstraints`` CA=FALSE
  (critical), ``keyUsage`` digitalSignature (+ keyEncipherment for RSA, for TLS 1.2 RSA key
  transport), ``extendedKeyUsage`` serverAuth and/or clientAuth, a ``subjectAltName`` with the
  DNS names and IP addresses, SKI, and AKI = the issuer's SKI.
* **CSR** (:func:`build_csr`, :func:`verify_csr`): PKCS#10 with the SAN requested as an
  extension; the CSR's self-signature is checked before a CA issues from it.

Keys: EC P-256 (ECDSA/SHA-256), P-384 (ECDSA/SHA-384), Ed25519 (PureEdDSA), RSA-3072
(PKCS#1 v1.5/SHA-256) and RSA-4096 (PKCS#1 v1.5/SHA-384). Anything else is refused when
issuing (:class:`ConfigError`) and when checking (:class:`VerificationError`
``certs.key.unsupported``): RSA below 3072 bits falls short of 128-bit security (SP 800-57).

:func:`verify_leaf` checks one leaf against one CA certificate at a caller-given ``now`` and
raises :class:`VerificationError` with a stable code (:data:`CHECK_CODES`). Deliberately left
out: path building over intermediates, name constraints, policy mappings, revocation (CRL/OCSP)
and hostname matching -- this is a two-level check for certificates this toolkit issues; use
``cryptography.x509.verification`` for Web PKI path validation.
"""

from __future__ import annotations

import enum
import hashlib
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from veritee.errors import ConfigError, FormatError, VerificationError

__all__ = [
    "CHECK_CODES",
    "CertificateAuthority",
    "KeyType",
    "PrivateKey",
    "PublicKey",
    "Usage",
    "build_csr",
    "certificate_pem",
    "check_validity",
    "create_ca",
    "fingerprint",
    "generate_private_key",
    "issue_leaf",
    "key_type_of",
    "load_certificate",
    "load_csr",
    "load_private_key",
    "parse_name",
    "private_key_pem",
    "self_signed_leaf",
    "spki_der",
    "verify_csr",
    "verify_leaf",
]

PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey
"""The private key types certificates can be issued for and signed with."""
PublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | rsa.RSAPublicKey
"""The public key types a certificate may carry."""

CHECK_CODES: frozenset[str] = frozenset({
    "certs.ca.not_a_ca",
    "certs.ca.expired",
    "certs.ca.not_yet_valid",
    "certs.leaf.expired",
    "certs.leaf.not_yet_valid",
    "certs.leaf.is_ca",
    "certs.leaf.key_usage",
    "certs.issuer.mismatch",
    "certs.aki.mismatch",
    "certs.signature.invalid",
    "certs.eku.missing",
    "certs.key.unsupported",
    "certs.csr.signature",
})
"""Every code :func:`verify_leaf` / :func:`verify_csr` can raise (pinned by a test)."""

_DEFAULT_CA_LIFETIME = timedelta(days=3650)
_DEFAULT_LEAF_LIFETIME = timedelta(days=90)


class KeyType(enum.StrEnum):
    """The supported key types, by the names the CLI and benchmarks use."""

    P256 = "p256"
    P384 = "p384"
    ED25519 = "ed25519"
    RSA3072 = "rsa3072"
    RSA4096 = "rsa4096"


class Usage(enum.StrEnum):
    """Extended key usages a leaf may be issued for (RFC 5280 section 4.2.1.12)."""

    SERVER = "serverAuth"
    CLIENT = "clientAuth"


_EKU_OIDS = {Usage.SERVER: ExtendedKeyUsageOID.SERVER_AUTH,
             Usage.CLIENT: ExtendedKeyUsageOID.CLIENT_AUTH}


def generate_private_key(key_type: KeyType | str) -> PrivateKey:
    """A fresh private key of ``key_type`` (from the OS CSPRNG via OpenSSL)."""
    kt = _key_type(key_type)
    if kt is KeyType.P256:
        return ec.generate_private_key(ec.SECP256R1())
    if kt is KeyType.P384:
        return ec.generate_private_key(ec.SECP384R1())
    if kt is KeyType.ED25519:
        return ed25519.Ed25519PrivateKey.generate()
    return rsa.generate_private_key(public_exponent=65537,
                                    key_size=3072 if kt is KeyType.RSA3072 else 4096)


def _key_type(value: KeyType | str) -> KeyType:
    try:
        return KeyType(value)
    except ValueError:
        raise ConfigError(f"key type: got {value!r}, want one of "
                          f"{', '.join(k.value for k in KeyType)}") from None


def key_type_of(key: PrivateKey | PublicKey | object) -> KeyType | None:
    """The :class:`KeyType` of a private or public key, or None if it is not supported."""
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        return {"secp256r1": KeyType.P256, "secp384r1": KeyType.P384}.get(key.curve.name)
    if isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
        return KeyType.ED25519
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return {3072: KeyType.RSA3072, 4096: KeyType.RSA4096}.get(key.key_size)
    return None


def _signing_hash(key: PrivateKey) -> hashes.SHA256 | hashes.SHA384 | None:
    """The hash to sign with: matched to the key's strength; None for Ed25519 (PureEdDSA)."""
    kt = key_type_of(key)
    if kt is None:
        raise ConfigError(f"signing key: unsupported {_describe(key)}; want one of "
                          f"{', '.join(k.value for k in KeyType)}")
    if kt in (KeyType.P384, KeyType.RSA4096):
        return hashes.SHA384()
    if kt is KeyType.ED25519:
        return None
    return hashes.SHA256()


def _checked_public(key: object, what: str) -> PublicKey:
    if key_type_of(key) is None:
        raise ConfigError(f"{what}: unsupported {_describe(key)}; want one of "
                          f"{', '.join(k.value for k in KeyType)}")
    assert isinstance(key, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey
                      | rsa.RSAPublicKey)
    return key


def _describe(key: object) -> str:
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        return f"EC key on {key.curve.name}"
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return f"RSA-{key.key_size} key"
    return type(key).__name__


def spki_der(key: PublicKey | PrivateKey) -> bytes:
    """The DER ``SubjectPublicKeyInfo`` of a key (algorithm + subjectPublicKey)."""
    pub = key.public_key() if isinstance(key, PrivateKey) else key
    return pub.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def parse_name(subject: str | x509.Name) -> x509.Name:
    """An ``x509.Name`` from an RFC 4514 string (``"CN=svc,O=Example"``) or a bare common name."""
    if isinstance(subject, x509.Name):
        return subject
    if "=" not in subject:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    try:
        return x509.Name.from_rfc4514_string(subject)
    except ValueError as exc:
        raise ConfigError(f"subject: got {subject!r}, want an RFC 4514 name ({exc})") from None


@dataclass(frozen=True)
class CertificateAuthority:
    """A CA certificate and its signing key."""

    certificate: x509.Certificate
    key: PrivateKey

    @property
    def key_identifier(self) -> bytes:
        """The CA's subjectKeyIdentifier (its leaves' authorityKeyIdentifier)."""
        return _ski(self.certificate)


def create_ca(key: PrivateKey, subject: str | x509.Name, *, now: datetime,
              valid_for: timedelta = _DEFAULT_CA_LIFETIME,
              path_length: int | None = 0) -> CertificateAuthority:
    """A self-signed CA valid from ``now`` for ``valid_for`` (``path_length`` 0: leaves only)."""
    name = parse_name(subject)
    pub = _checked_public(key.public_key(), "CA key")
    ski = x509.SubjectKeyIdentifier.from_public_key(pub)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(pub)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(now + valid_for)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier(ski.digest, None, None), critical=False)
    )
    cert = builder.sign(key, _signing_hash(key))
    return CertificateAuthority(certificate=cert, key=key)


def _key_usage(*, cert_sign: bool = False, key_encipherment: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign, content_commitment=False,
        key_encipherment=key_encipherment, data_encipherment=False, key_agreement=False,
        key_cert_sign=cert_sign, crl_sign=cert_sign, encipher_only=False, decipher_only=False)


def _san(dns_names: Iterable[str],
         ip_addresses: Iterable[str]) -> x509.SubjectAlternativeName | None:
    names: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    for ip in ip_addresses:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(ip)))
        except ValueError:
            raise ConfigError(f"IP address: got {ip!r}, want an IPv4 or IPv6 address") from None
    return x509.SubjectAlternativeName(names) if names else None


def build_csr(key: PrivateKey, subject: str | x509.Name, *, dns_names: Sequence[str] = (),
              ip_addresses: Sequence[str] = ()) -> x509.CertificateSigningRequest:
    """A PKCS#10 request signed by ``key``, asking for ``subject`` and a SAN."""
    builder = x509.CertificateSigningRequestBuilder().subject_name(parse_name(subject))
    san = _san(dns_names, ip_addresses)
    if san is not None:
        builder = builder.add_extension(san, critical=False)
    return builder.sign(key, _signing_hash(key))


def verify_csr(csr: x509.CertificateSigningRequest) -> PublicKey:
    """Check a CSR's self-signature (proof of possession) and key type; return its key."""
    if not csr.is_signature_valid:
        raise VerificationError("certs.csr.signature",
                                "the CSR's signature does not verify with its own public key")
    key = csr.public_key()
    if key_type_of(key) is None:
        raise VerificationError("certs.key.unsupported", f"CSR key: {_describe(key)}")
    assert isinstance(key, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey
                      | rsa.RSAPublicKey)
    return key


def _leaf_builder(public_key: PublicKey, subject: x509.Name, issuer: x509.Name,
                  issuer_ski: bytes, *, now: datetime, valid_for: timedelta,
                  not_before: datetime | None, usages: Iterable[Usage],
                  san: x509.SubjectAlternativeName | None,
                  extensions: Sequence[x509.Extension[x509.ExtensionType]]
                  ) -> x509.CertificateBuilder:
    usage_list = sorted(set(usages))
    if not usage_list:
        raise ConfigError("usages: want at least one of serverAuth, clientAuth")
    start = now if not_before is None else not_before
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(issuer).public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(now + valid_for)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(key_encipherment=isinstance(public_key, rsa.RSAPublicKey)),
                       critical=True)
        .add_extension(x509.ExtendedKeyUsage([_EKU_OIDS[u] for u in usage_list]),
                       critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier(issuer_ski, None, None), critical=False)
    )
    if san is not None:
        builder = builder.add_extension(san, critical=False)
    for ext in extensions:
        builder = builder.add_extension(ext.value, critical=ext.critical)
    return builder


def issue_leaf(ca: CertificateAuthority,
               subject_key: PublicKey | x509.CertificateSigningRequest, *,
               now: datetime, subject: str | x509.Name | None = None,
               dns_names: Sequence[str] | None = None,
               ip_addresses: Sequence[str] | None = None,
               usages: Iterable[Usage] = (Usage.SERVER, Usage.CLIENT),
               valid_for: timedelta = _DEFAULT_LEAF_LIFETIME,
               not_before: datetime | None = None,
               extensions: Sequence[x509.Extension[x509.ExtensionType]] = ()
               ) -> x509.Certificate:
    """Issue a leaf for a public key or a CSR, signed by ``ca``.

    From a CSR, its signature is checked first and its subject and SAN are used unless
    ``subject`` / ``dns_names`` / ``ip_addresses`` override them (a CA decides what it
    certifies; the CSR only asks). The leaf never outlives the CA.
    """
    if isinstance(subject_key, x509.CertificateSigningRequest):
        public_key = verify_csr(subject_key)
        name = parse_name(subject) if subject is not None else subject_key.subject
        san = _csr_san(subject_key) if dns_names is None and ip_addresses is None else None
    else:
        public_key = _checked_public(subject_key, "subject key")
        if subject is None:
            raise ConfigError("subject: required when issuing for a bare public key")
        name = parse_name(subject)
        san = None
    if san is None:
        san = _san(dns_names or (), ip_addresses or ())
    ca_end = ca.certificate.not_valid_after_utc
    valid_for = min(valid_for, ca_end - now)  # RFC 5280 6.1.3: a leaf past its CA is useless
    builder = _leaf_builder(public_key, name, ca.certificate.subject, ca.key_identifier,
                            now=now, valid_for=valid_for, not_before=not_before, usages=usages,
                            san=san, extensions=extensions)
    return builder.sign(ca.key, _signing_hash(ca.key))


def _csr_san(csr: x509.CertificateSigningRequest) -> x509.SubjectAlternativeName | None:
    try:
        return csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None


def self_signed_leaf(key: PrivateKey, subject: str | x509.Name, *, now: datetime,
                     dns_names: Sequence[str] = (), ip_addresses: Sequence[str] = (),
                     usages: Iterable[Usage] = (Usage.SERVER, Usage.CLIENT),
                     valid_for: timedelta = _DEFAULT_LEAF_LIFETIME,
                     not_before: datetime | None = None,
                     extensions: Sequence[x509.Extension[x509.ExtensionType]] = ()
                     ) -> x509.Certificate:
    """A self-signed end-entity certificate (CA=FALSE), as RA-TLS uses."""
    pub = _checked_public(key.public_key(), "key")
    name = parse_name(subject)
    ski = x509.SubjectKeyIdentifier.from_public_key(pub).digest
    builder = _leaf_builder(pub, name, name, ski, now=now, valid_for=valid_for,
                            not_before=not_before, usages=usages,
                            san=_san(dns_names, ip_addresses), extensions=extensions)
    return builder.sign(key, _signing_hash(key))


# -- checking --------------------------------------------------------------------------------

def check_validity(cert: x509.Certificate, *, now: datetime, what: str = "leaf") -> None:
    """Raise ``certs.<what>.expired`` / ``.not_yet_valid`` unless notBefore <= now <= notAfter."""
    if now.tzinfo is None:
        raise ConfigError("now: want a timezone-aware datetime")
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    if now < start:
        raise VerificationError(f"certs.{what}.not_yet_valid",
                                f"notBefore {start.isoformat()} is after {now.isoformat()}")
    if now > end:
        raise VerificationError(f"certs.{what}.expired",
                                f"notAfter {end.isoformat()} is before {now.isoformat()}")


def _ski(cert: x509.Certificate) -> bytes:
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        # RFC 5280 4.2.1.2 method 1, so a CA without the extension still gets a stable AKI.
        return x509.SubjectKeyIdentifier.from_public_key(
            _checked_public(cert.public_key(), "CA key")).digest


def _ext(cert: x509.Certificate, cls: type[x509.ExtensionType]) -> x509.ExtensionType | None:
    try:
        return cert.extensions.get_extension_for_class(cls).value
    except x509.ExtensionNotFound:
        return None


def verify_leaf(leaf: x509.Certificate, ca: x509.Certificate, *, now: datetime,
                usage: Usage | None = Usage.SERVER) -> None:
    """Check ``leaf`` was issued by ``ca`` and is usable for ``usage`` at ``now``; else raise.

    Steps, in order (the first failure raises :class:`VerificationError` with its code):

    1. the CA is a CA: basicConstraints CA=TRUE and, if keyUsage is present, keyCertSign
       (``certs.ca.not_a_ca``); the CA is valid at ``now`` (``certs.ca.expired`` / ...);
    2. the leaf's issuer is the CA's subject (``certs.issuer.mismatch``) and, when both are
       present, its AKI equals the CA's SKI (``certs.aki.mismatch``);
    3. both keys are supported types (``certs.key.unsupported``) and the CA's signature over
       the leaf verifies (``certs.signature.invalid``);
    4. the leaf is valid at ``now`` (``certs.leaf.expired`` / ``certs.leaf.not_yet_valid``);
    5. the leaf is not a CA (``certs.leaf.is_ca``) and, if keyUsage is present, allows
       digitalSignature (``certs.leaf.key_usage``);
    6. ``usage`` (if not None) is in its extendedKeyUsage (``certs.eku.missing``).
    """
    bc = _ext(ca, x509.BasicConstraints)
    ku = _ext(ca, x509.KeyUsage)
    if not (isinstance(bc, x509.BasicConstraints) and bc.ca):
        raise VerificationError("certs.ca.not_a_ca", "issuer lacks basicConstraints CA=TRUE")
    if isinstance(ku, x509.KeyUsage) and not ku.key_cert_sign:
        raise VerificationError("certs.ca.not_a_ca", "issuer keyUsage lacks keyCertSign")
    check_validity(ca, now=now, what="ca")

    if leaf.issuer != ca.subject:
        raise VerificationError("certs.issuer.mismatch",
                                f"leaf issuer {leaf.issuer.rfc4514_string()} is not the CA "
                                f"{ca.subject.rfc4514_string()}")
    aki = _ext(leaf, x509.AuthorityKeyIdentifier)
    if isinstance(aki, x509.AuthorityKeyIdentifier) and aki.key_identifier is not None \
            and aki.key_identifier != _ski(ca):
        raise VerificationError("certs.aki.mismatch", f"leaf AKI {aki.key_identifier.hex()} is "
                                f"not the CA's SKI {_ski(ca).hex()}")
    for what, cert in (("CA", ca), ("leaf", leaf)):
        if key_type_of(cert.public_key()) is None:
            raise VerificationError("certs.key.unsupported",
                                    f"{what} key: {_describe(cert.public_key())}")
    try:
        leaf.verify_directly_issued_by(ca)
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm) as exc:
        # ValueError: name/algorithm mismatch; TypeError: unsupported key; all are a bad sig.
        raise VerificationError("certs.signature.invalid",
                                f"the CA's signature over the leaf does not verify ({exc!r})"
                                ) from None

    check_validity(leaf, now=now, what="leaf")
    leaf_bc = _ext(leaf, x509.BasicConstraints)
    if isinstance(leaf_bc, x509.BasicConstraints) and leaf_bc.ca:
        raise VerificationError("certs.leaf.is_ca", "leaf has basicConstraints CA=TRUE")
    leaf_ku = _ext(leaf, x509.KeyUsage)
    if isinstance(leaf_ku, x509.KeyUsage) and not leaf_ku.digital_signature:
        raise VerificationError("certs.leaf.key_usage", "leaf keyUsage lacks digitalSignature")
    if usage is not None:
        eku = _ext(leaf, x509.ExtendedKeyUsage)
        if not (isinstance(eku, x509.ExtendedKeyUsage) and _EKU_OIDS[usage] in eku):
            raise VerificationError("certs.eku.missing",
                                    f"extendedKeyUsage lacks {usage.value}")


# -- encoding --------------------------------------------------------------------------------

def _is_pem(data: bytes) -> bool:
    # DER starts with a SEQUENCE tag (0x30). Bytes that start so are DER even when PEM text
    # appears inside them (an extension can carry any bytes): looking for the PEM marker first
    # would load a certificate embedded in the one given (an attested TLS peer could smuggle
    # a genuine attested certificate into its own).
    return data[:1] != b"\x30" and b"-----BEGIN" in data


def load_certificate(data: bytes, *, source: str = "certificate") -> x509.Certificate:
    """One certificate from PEM or DER bytes; :class:`FormatError` if it does not parse."""
    try:
        if _is_pem(data):
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError as exc:
        # cryptography's reason without the Rust parser's debug dump that follows it
        reason = str(exc).split(": ParseError", 1)[0]
        raise FormatError("X.509 certificate", "<der>", got=source,
                          want="a PEM or DER certificate", detail=reason) from None


def load_csr(data: bytes, *, source: str = "CSR") -> x509.CertificateSigningRequest:
    """A PKCS#10 request from PEM or DER bytes; :class:`FormatError` if it does not parse."""
    try:
        if _is_pem(data):
            return x509.load_pem_x509_csr(data)
        return x509.load_der_x509_csr(data)
    except ValueError as exc:
        raise FormatError("PKCS#10 request", "<der>", got=f"{source} ({exc})",
                          want="a PEM or DER CSR") from None


def load_private_key(data: bytes, *, source: str = "private key") -> PrivateKey:
    """An unencrypted PEM (PKCS#8 / traditional) or DER private key of a supported type."""
    try:
        if _is_pem(data):
            key = serialization.load_pem_private_key(data, password=None)
        else:
            key = serialization.load_der_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise FormatError("private key", "<der>", got=f"{source} ({exc})",
                          want="an unencrypted PEM or DER private key") from None
    if key_type_of(key) is None:
        raise ConfigError(f"{source}: unsupported {_describe(key)}")
    assert isinstance(key, PrivateKey)
    return key


def certificate_pem(cert: x509.Certificate) -> bytes:
    """PEM encoding of a certificate."""
    return cert.public_bytes(serialization.Encoding.PEM)


def private_key_pem(key: PrivateKey) -> bytes:
    """Unencrypted PKCS#8 PEM: write it only with mode 0600 (or keep it sealed)."""
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 fingerprint of the DER certificate, hex."""
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()

