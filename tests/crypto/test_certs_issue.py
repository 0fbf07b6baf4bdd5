"""crypto.certs: CA and leaf profiles, CSRs, and the leaf-against-CA check (one attack each)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

from veritee.crypto.certs import (
    CHECK_CODES,
    CertificateAuthority,
    KeyType,
    PrivateKey,
    Usage,
    build_csr,
    certificate_pem,
    create_ca,
    generate_private_key,
    issue_leaf,
    key_type_of,
    load_certificate,
    load_csr,
    load_private_key,
    private_key_pem,
    self_signed_leaf,
    verify_csr,
    verify_leaf,
)
from veritee.errors import ConfigError, FormatError, VerificationError

NOW = datetime(2026, 6, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def keys() -> dict[KeyType, PrivateKey]:
    """One key per supported type (RSA generation is slow: once per module)."""
    return {kt: generate_private_key(kt) for kt in KeyType}


@pytest.fixture(scope="module")
def ca(keys: dict[KeyType, PrivateKey]) -> CertificateAuthority:
    return create_ca(keys[KeyType.P384], "CN=veritee test CA,O=veritee", now=NOW)


def _code(exc: pytest.ExceptionInfo[VerificationError]) -> str:
    return exc.value.code


# -- profiles --------------------------------------------------------------------------------

@pytest.mark.parametrize("kt", list(KeyType))
def test_generate_private_key_types(kt: KeyType, keys: dict[KeyType, PrivateKey]) -> None:
    assert key_type_of(keys[kt]) is kt
    assert key_type_of(keys[kt].public_key()) is kt


def test_unknown_key_type_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        generate_private_key("rsa2048")


def test_ca_profile(ca: CertificateAuthority) -> None:
    cert = ca.certificate
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 0
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign
    assert not ku.value.digital_signature
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ski.digest == ca.key_identifier
    assert cert.issuer == cert.subject
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA384)  # P-384 -> SHA-384
    cert.verify_directly_issued_by(cert)


@pytest.mark.parametrize("kt", list(KeyType))
def test_leaf_profile_for_every_key_type(kt: KeyType, keys: dict[KeyType, PrivateKey],
                                         ca: CertificateAuthority) -> None:
    leaf = issue_leaf(ca, keys[kt].public_key(), now=NOW, subject="CN=svc",
                      dns_names=["svc.example"], ip_addresses=["127.0.0.1"])
    verify_leaf(leaf, ca.certificate, now=NOW, usage=Usage.SERVER)
    verify_leaf(leaf, ca.certificate, now=NOW, usage=Usage.CLIENT)
    bc = leaf.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and not bc.value.ca
    ku = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.digital_signature and not ku.key_cert_sign
    assert ku.key_encipherment is (kt in (KeyType.RSA3072, KeyType.RSA4096))
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["svc.example"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ca.key_identifier


@pytest.mark.parametrize("kt", list(KeyType))
def test_ca_of_every_key_type_signs_verifiable_leaves(kt: KeyType,
                                                      keys: dict[KeyType, PrivateKey]) -> None:
    own_ca = create_ca(keys[kt], f"CN={kt.value} CA", now=NOW)
    leaf = issue_leaf(own_ca, keys[KeyType.P256].public_key(), now=NOW, subject="CN=x")
    verify_leaf(leaf, own_ca.certificate, now=NOW)


def test_leaf_never_outlives_its_ca(keys: dict[KeyType, PrivateKey]) -> None:
    short = create_ca(keys[KeyType.P256], "CN=short", now=NOW, valid_for=timedelta(days=10))
    leaf = issue_leaf(short, keys[KeyType.P256].public_key(), now=NOW, subject="CN=x",
                      valid_for=timedelta(days=90))
    assert leaf.not_valid_after_utc == short.certificate.not_valid_after_utc


def test_csr_round_trip_and_issue(keys: dict[KeyType, PrivateKey],
                                  ca: CertificateAuthority) -> None:
    csr = build_csr(keys[KeyType.ED25519], "CN=from-csr,O=veritee", dns_names=["a.example"])
    csr = load_csr(csr.public_bytes(Encoding.PEM))
    assert verify_csr(csr) is not None
    leaf = issue_leaf(ca, csr, now=NOW, usages=[Usage.CLIENT])
    assert leaf.subject == csr.subject
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["a.example"]
    verify_leaf(leaf, ca.certificate, now=NOW, usage=Usage.CLIENT)
    with pytest.raises(VerificationError) as exc:
        verify_leaf(leaf, ca.certificate, now=NOW, usage=Usage.SERVER)
    assert _code(exc) == "certs.eku.missing"


def test_ca_overrides_what_the_csr_asks_for(keys: dict[KeyType, PrivateKey],
                                            ca: CertificateAuthority) -> None:
    csr = build_csr(keys[KeyType.P256], "CN=asks-for-this", dns_names=["bank.example"])
    leaf = issue_leaf(ca, csr, now=NOW, subject="CN=gets-this", dns_names=["svc.example"])
    assert leaf.subject.rfc4514_string() == "CN=gets-this"
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["svc.example"]


def test_csr_with_forged_signature_is_refused(keys: dict[KeyType, PrivateKey],
                                              ca: CertificateAuthority) -> None:
    """A CSR whose public key is not the key that signed it proves no possession."""
    good = build_csr(keys[KeyType.P256], "CN=victim")
    der = bytearray(good.public_bytes(Encoding.DER))
    der[-5] ^= 0x01  # inside the signature value
    forged = load_csr(bytes(der))
    with pytest.raises(VerificationError) as exc:
        issue_leaf(ca, forged, now=NOW)
    assert _code(exc) == "certs.csr.signature"


def test_weak_rsa_key_is_refused_for_issuance(ca: CertificateAuthority) -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(ConfigError):
        issue_leaf(ca, weak.public_key(), now=NOW, subject="CN=weak")
    with pytest.raises(ConfigError):
        create_ca(weak, "CN=weak CA", now=NOW)


def test_subject_required_for_bare_public_key(keys: dict[KeyType, PrivateKey],
                                              ca: CertificateAuthority) -> None:
    with pytest.raises(ConfigError):
        issue_leaf(ca, keys[KeyType.P256].public_key(), now=NOW)


# -- verify_leaf: one attack, one code ---------------------------------------------------------

@pytest.fixture(scope="module")
def leaf(keys: dict[KeyType, PrivateKey], ca: CertificateAuthority) -> x509.Certificate:
    return issue_leaf(ca, keys[KeyType.P256].public_key(), now=NOW, subject="CN=leaf",
                      usages=[Usage.SERVER], valid_for=timedelta(days=30))


def test_leaf_signed_by_another_ca_with_the_same_name(keys: dict[KeyType, PrivateKey],
                                                      ca: CertificateAuthority,
                                                      leaf: x509.Certificate) -> None:
    impostor = create_ca(keys[KeyType.P256], ca.certificate.subject, now=NOW)
    forged = issue_leaf(impostor, keys[KeyType.P256].public_key(), now=NOW, subject="CN=leaf")
    with pytest.raises(VerificationError) as exc:
        verify_leaf(forged, ca.certificate, now=NOW)
    assert _code(exc) == "certs.aki.mismatch"


def test_leaf_signed_by_impostor_without_aki(keys: dict[KeyType, PrivateKey],
                                             ca: CertificateAuthority) -> None:
    """Same issuer name, no AKI to give it away: the signature check catches it."""
    impostor = keys[KeyType.P256]
    forged = (x509.CertificateBuilder().subject_name(x509.Name.from_rfc4514_string("CN=leaf"))
              .issuer_name(ca.certificate.subject).public_key(impostor.public_key())
              .serial_number(1).not_valid_before(NOW).not_valid_after(NOW + timedelta(days=1))
              .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
              .sign(impostor, hashes.SHA256()))
    with pytest.raises(VerificationError) as exc:
        verify_leaf(forged, ca.certificate, now=NOW, usage=None)
    assert _code(exc) == "certs.signature.invalid"


def test_leaf_of_another_issuer(keys: dict[KeyType, PrivateKey], leaf: x509.Certificate) -> None:
    other = create_ca(keys[KeyType.P256], "CN=other CA", now=NOW)
    with pytest.raises(VerificationError) as exc:
        verify_leaf(leaf, other.certificate, now=NOW)
    assert _code(exc) == "certs.issuer.mismatch"


def test_expired_leaf(ca: CertificateAuthority, leaf: x509.Certificate) -> None:
    with pytest.raises(VerificationError) as exc:
        verify_leaf(leaf, ca.certificate, now=NOW + timedelta(days=31))
    assert _code(exc) == "certs.leaf.expired"


def test_leaf_not_yet_valid(keys: dict[KeyType, PrivateKey], ca: CertificateAuthority) -> None:
    later = issue_leaf(ca, keys[KeyType.P256].public_key(), now=NOW + timedelta(days=1),
                       subject="CN=later")
    with pytest.raises(VerificationError) as exc:
        verify_leaf(later, ca.certificate, now=NOW + timedelta(hours=1))
    assert _code(exc) == "certs.leaf.not_yet_valid"


def test_validity_bounds_are_inclusive(ca: CertificateAuthority, leaf: x509.Certificate) -> None:
    verify_leaf(leaf, ca.certificate, now=leaf.not_valid_before_utc)
    verify_leaf(leaf, ca.certificate, now=leaf.not_valid_after_utc)


def test_expired_ca(keys: dict[KeyType, PrivateKey]) -> None:
    old = create_ca(keys[KeyType.P256], "CN=old", now=NOW - timedelta(days=20),
                    valid_for=timedelta(days=10))
    leaf = issue_leaf(old, keys[KeyType.P256].public_key(), now=NOW - timedelta(days=15),
                      subject="CN=x")
    with pytest.raises(VerificationError) as exc:
        verify_leaf(leaf, old.certificate, now=NOW)
    assert _code(exc) == "certs.ca.expired"


def test_leaf_used_as_a_ca(keys: dict[KeyType, PrivateKey], ca: CertificateAuthority,
                           leaf: x509.Certificate) -> None:
    """A leaf's key cannot issue certificates: basicConstraints CA=FALSE."""
    fake_ca = CertificateAuthority(certificate=leaf, key=keys[KeyType.P256])
    grandchild = issue_leaf(fake_ca, keys[KeyType.P256].public_key(), now=NOW, subject="CN=g")
    with pytest.raises(VerificationError) as exc:
        verify_leaf(grandchild, leaf, now=NOW)
    assert _code(exc) == "certs.ca.not_a_ca"


def test_ca_certificate_presented_as_a_leaf(keys: dict[KeyType, PrivateKey],
                                            ca: CertificateAuthority) -> None:
    sub = x509.CertificateBuilder().subject_name(x509.Name.from_rfc4514_string("CN=sub CA")) \
        .issuer_name(ca.certificate.subject).public_key(keys[KeyType.P256].public_key()) \
        .serial_number(2).not_valid_before(NOW).not_valid_after(NOW + timedelta(days=1)) \
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True) \
        .add_extension(x509.AuthorityKeyIdentifier(ca.key_identifier, None, None), False) \
        .sign(ca.key, hashes.SHA384())
    with pytest.raises(VerificationError) as exc:
        verify_leaf(sub, ca.certificate, now=NOW, usage=None)
    assert _code(exc) == "certs.leaf.is_ca"


def test_leaf_without_server_eku(keys: dict[KeyType, PrivateKey],
                                 ca: CertificateAuthority) -> None:
    client_only = issue_leaf(ca, keys[KeyType.P256].public_key(), now=NOW, subject="CN=c",
                             usages=[Usage.CLIENT])
    with pytest.raises(VerificationError) as exc:
        verify_leaf(client_only, ca.certificate, now=NOW, usage=Usage.SERVER)
    assert _code(exc) == "certs.eku.missing"


def test_leaf_with_unsupported_key(ca: CertificateAuthority) -> None:
    weak = ec.generate_private_key(ec.SECP521R1())
    cert = (x509.CertificateBuilder().subject_name(x509.Name.from_rfc4514_string("CN=w"))
            .issuer_name(ca.certificate.subject).public_key(weak.public_key())
            .serial_number(3).not_valid_before(NOW).not_valid_after(NOW + timedelta(days=1))
            .sign(ca.key, hashes.SHA384()))
    with pytest.raises(VerificationError) as exc:
        verify_leaf(cert, ca.certificate, now=NOW, usage=None)
    assert _code(exc) == "certs.key.unsupported"


def test_tampered_leaf_signature(ca: CertificateAuthority, leaf: x509.Certificate) -> None:
    der = bytearray(leaf.public_bytes(Encoding.DER))
    der[-3] ^= 0x01
    with pytest.raises(VerificationError) as exc:
        verify_leaf(x509.load_der_x509_certificate(bytes(der)), ca.certificate, now=NOW)
    assert _code(exc) == "certs.signature.invalid"


def test_naive_now_is_refused(ca: CertificateAuthority, leaf: x509.Certificate) -> None:
    with pytest.raises(ConfigError):
        verify_leaf(leaf, ca.certificate, now=datetime(2026, 6, 1))


def test_check_codes_are_pinned() -> None:
    assert len(CHECK_CODES) == 13
    assert all(code.startswith("certs.") for code in CHECK_CODES)


# -- self-signed leaves and encoding -----------------------------------------------------------

def test_self_signed_leaf_is_not_a_ca(keys: dict[KeyType, PrivateKey]) -> None:
    cert = self_signed_leaf(keys[KeyType.ED25519], "CN=self", now=NOW, dns_names=["x"])
    cert.verify_directly_issued_by(cert)
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    with pytest.raises(VerificationError) as exc:
        verify_leaf(cert, cert, now=NOW)  # cannot serve as its own CA
    assert _code(exc) == "certs.ca.not_a_ca"


@pytest.mark.parametrize("kt", [KeyType.P256, KeyType.ED25519, KeyType.RSA3072])
def test_pem_round_trips(kt: KeyType, keys: dict[KeyType, PrivateKey],
                         ca: CertificateAuthority) -> None:
    assert load_certificate(certificate_pem(ca.certificate)) == ca.certificate
    back = load_private_key(private_key_pem(keys[kt]))
    assert key_type_of(back) is kt


def test_garbage_is_a_format_error() -> None:
    for loader in (load_certificate, load_csr, load_private_key):
        with pytest.raises(FormatError):
            loader(b"\x30\x03\x02\x01")
        with pytest.raises(FormatError):
            loader(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
