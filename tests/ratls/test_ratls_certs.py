"""Attested certificates: issue in an emulated guest, verify; each attack rejected on its own."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import cbor2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given, settings
from hypothesis import strategies as st

from veritee.crypto.certs import (
    CertificateAuthority,
    KeyType,
    PrivateKey,
    create_ca,
    generate_private_key,
)
from veritee.errors import (
    CollateralError,
    ConfigError,
    FormatError,
    PolicyRejected,
    VerificationError,
)
from veritee.findings import Outcome
from veritee.formats.sevsnp import AttestationReport, Product
from veritee.platform.emulated.snp import (
    EmulatedAmdVendor,
    EmulatedSnpGuest,
    InsecureEmulatedSnpMachine,
)
from veritee.policy.sevsnp import SevSnpPolicy
from veritee.ratls import (
    MEDIA_TYPE_SNP_CERT_TABLE,
    MEDIA_TYPE_SNP_REPORT,
    OID_TCG_DICE_CMW,
    OID_TCG_DICE_ENDORSEMENT_MANIFEST,
    CmwRecord,
    extract_evidence,
    issue_attested_certificate,
    report_data_for,
    verify_attested_certificate,
)
from veritee.trust.sevsnp import AmdCertificates

NOW = datetime(2026, 6, 1, tzinfo=UTC)  # the conftest machine's clock


@pytest.fixture(scope="module")
def key() -> ec.EllipticCurvePrivateKey:
    k = generate_private_key(KeyType.P256)
    assert isinstance(k, ec.EllipticCurvePrivateKey)
    return k


@pytest.fixture(scope="module")
def cert(good_guest: EmulatedSnpGuest, key: PrivateKey) -> x509.Certificate:
    return issue_attested_certificate(good_guest, key, now=NOW, dns_names=["svc.local"])


def _policy(guest: EmulatedSnpGuest) -> SevSnpPolicy:
    return SevSnpPolicy(policy_id="workload", measurements=frozenset({guest.measurement}))


def _verify(cert: x509.Certificate, machine: InsecureEmulatedSnpMachine,
            guest: EmulatedSnpGuest, **kw: object) -> object:
    # The ARK's CRL is the relying party's own collateral (the certificate carries none);
    # without it the default policy refuses (sevsnp.revocation.unchecked).
    args: dict[str, object] = {"policy": _policy(guest), "anchors": machine.anchors(),
                               "now": NOW, "collateral": AmdCertificates(
                                   crl=machine.vendor.crl(NOW))}
    args.update(kw)
    return verify_attested_certificate(cert, **args)  # type: ignore[arg-type]


def _resign(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey,
            edit: Callable[[x509.ObjectIdentifier, bytes], bytes] | None = None,
            extra: list[x509.Extension[x509.ExtensionType]] | None = None) -> x509.Certificate:
    """Rebuild ``cert`` with ``key`` (a valid signature), editing the opaque extensions."""
    b = (x509.CertificateBuilder().subject_name(cert.subject).issuer_name(cert.issuer)
         .public_key(key.public_key()).serial_number(cert.serial_number)
         .not_valid_before(cert.not_valid_before_utc).not_valid_after(cert.not_valid_after_utc))
    for ext in cert.extensions:
        value = ext.value
        if isinstance(value, x509.UnrecognizedExtension) and edit is not None:
            value = x509.UnrecognizedExtension(ext.oid, edit(ext.oid, value.value))
        if isinstance(value, x509.SubjectKeyIdentifier):
            value = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        b = b.add_extension(value, critical=ext.critical)
    for ext in extra or []:
        b = b.add_extension(ext.value, critical=ext.critical)
    return b.sign(key, hashes.SHA256())  # P-256 keys only here


# -- the happy path ----------------------------------------------------------------------------

@pytest.mark.parametrize("kt", list(KeyType))
def test_attested_certificate_verifies_for_every_key_type(
        kt: KeyType, ratls_machine: InsecureEmulatedSnpMachine,
        good_guest: EmulatedSnpGuest) -> None:
    k = generate_private_key(kt)
    c = issue_attested_certificate(good_guest, k, now=NOW)
    appraisal = _verify(c, ratls_machine, good_guest)
    assert appraisal.accepted  # type: ignore[attr-defined]
    codes = {f.code: f.outcome for f in appraisal.verification}  # type: ignore[attr-defined]
    assert codes["ratls.certificate.validity"] is Outcome.PASS
    assert codes["ratls.certificate.signature"] is Outcome.PASS
    assert codes["ratls.key_binding"] is Outcome.PASS


def test_report_data_is_sha512_of_the_spki(cert: x509.Certificate, key: PrivateKey) -> None:
    spki = key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    expected = hashlib.sha512(spki).digest()
    assert report_data_for(key) == report_data_for(key.public_key()) == expected
    report = AttestationReport.from_bytes(extract_evidence(cert).report)
    assert report.report_data == expected and len(expected) == 64


def test_extension_encoding_follows_interoperable_ra_tls(cert: x509.Certificate) -> None:
    """OID 2.23.133.5.4.9, non-critical, extnValue = CBOR CMW record [type, bytes]."""
    ext = cert.extensions.get_extension_for_oid(OID_TCG_DICE_CMW)
    assert not ext.critical
    raw = ext.value.value  # type: ignore[attr-defined]
    assert raw[0] == 0x82  # CMW demux: a 2-element CBOR array is a record
    media_type, value = cbor2.loads(raw)
    assert media_type == MEDIA_TYPE_SNP_REPORT and len(value) == 1184
    # The OID's DER, as Gramine's TCG_DICE_TAGGED_EVIDENCE_OID_RAW spells it.
    assert bytes.fromhex("0606678105050409") in cert.public_bytes(Encoding.DER)
    endorsement = cert.extensions.get_extension_for_oid(OID_TCG_DICE_ENDORSEMENT_MANIFEST)
    assert not endorsement.critical
    assert cbor2.loads(endorsement.value.value)[0] == MEDIA_TYPE_SNP_CERT_TABLE  # type: ignore[attr-defined]


def test_ca_signed_attested_certificate(ratls_machine: InsecureEmulatedSnpMachine,
                                        good_guest: EmulatedSnpGuest, key: PrivateKey) -> None:
    ca: CertificateAuthority = create_ca(generate_private_key(KeyType.P384), "CN=workload CA",
                                         now=NOW)
    c = issue_attested_certificate(good_guest, key, now=NOW, ca=ca)
    assert c.issuer == ca.certificate.subject
    with_ca = _verify(c, ratls_machine, good_guest, ca=ca.certificate)
    by_code = {f.code: f for f in with_ca.verification}  # type: ignore[attr-defined]
    assert by_code["ratls.certificate.signature"].outcome is Outcome.PASS
    without = _verify(c, ratls_machine, good_guest)
    by_code = {f.code: f for f in without.verification}  # type: ignore[attr-defined]
    assert by_code["ratls.certificate.signature"].outcome is Outcome.SKIP


def test_without_endorsements_collateral_is_needed(ratls_machine: InsecureEmulatedSnpMachine,
                                                   good_guest: EmulatedSnpGuest,
                                                   key: PrivateKey) -> None:
    c = issue_attested_certificate(good_guest, key, now=NOW, include_endorsements=False)
    with pytest.raises(x509.ExtensionNotFound):
        c.extensions.get_extension_for_oid(OID_TCG_DICE_ENDORSEMENT_MANIFEST)
    with pytest.raises(CollateralError):
        _verify(c, ratls_machine, good_guest)
    assert _verify(c, ratls_machine, good_guest,
                   collateral=ratls_machine.certificates()).accepted  # type: ignore[attr-defined]


# -- attacks: each rejected, each its own test ---------------------------------------------------

def test_tampered_evidence_is_rejected(cert: x509.Certificate, key: PrivateKey,
                                       ratls_machine: InsecureEmulatedSnpMachine,
                                       good_guest: EmulatedSnpGuest) -> None:
    """One bit of the report flipped (certificate re-signed, so only the evidence is bad)."""
    def flip(oid: x509.ObjectIdentifier, raw: bytes) -> bytes:
        if oid != OID_TCG_DICE_CMW:
            return raw
        media_type, report = cbor2.loads(raw)
        report = bytearray(report)
        report[0x90] ^= 0x01  # MEASUREMENT (ABI 56860 Table 23), inside the signed region
        return bytes(cbor2.dumps([media_type, bytes(report)]))

    tampered = _resign(cert, key, flip)
    with pytest.raises(VerificationError) as exc:
        _verify(tampered, ratls_machine, good_guest)
    assert exc.value.code == "sevsnp.report.signature"
    assert not isinstance(exc.value, PolicyRejected)


def test_evidence_bound_to_another_key_is_rejected(cert: x509.Certificate,
                                                   ratls_machine: InsecureEmulatedSnpMachine,
                                                   good_guest: EmulatedSnpGuest) -> None:
    """Genuine evidence lifted into a certificate for the attacker's own key."""
    attacker = ec.generate_private_key(ec.SECP256R1())
    stolen = _resign(cert, attacker)
    assert extract_evidence(stolen) == extract_evidence(cert)
    with pytest.raises(PolicyRejected) as exc:
        _verify(stolen, ratls_machine, good_guest)
    assert exc.value.appraisal.codes() == ["sevsnp.binding.mismatch"]


def test_expired_certificate_is_rejected(cert: x509.Certificate,
                                         ratls_machine: InsecureEmulatedSnpMachine,
                                         good_guest: EmulatedSnpGuest) -> None:
    with pytest.raises(VerificationError) as exc:
        _verify(cert, ratls_machine, good_guest, now=NOW + timedelta(days=2))
    assert exc.value.code == "certs.leaf.expired"


def test_certificate_not_yet_valid_is_rejected(cert: x509.Certificate,
                                               ratls_machine: InsecureEmulatedSnpMachine,
                                               good_guest: EmulatedSnpGuest) -> None:
    with pytest.raises(VerificationError) as exc:
        _verify(cert, ratls_machine, good_guest, now=NOW - timedelta(minutes=1))
    assert exc.value.code == "certs.leaf.not_yet_valid"


def test_evidence_from_untrusted_root_is_rejected(cert: x509.Certificate,
                                                  good_guest: EmulatedSnpGuest) -> None:
    """The emulated ARK is not passed: only the genuine AMD roots are trusted."""
    with pytest.raises(VerificationError) as exc:
        verify_attested_certificate(cert, policy=_policy(good_guest), now=NOW)
    assert exc.value.code == "sevsnp.chain.ark_untrusted"


def test_evidence_from_another_emulated_vendor_is_rejected(
        cert: x509.Certificate, good_guest: EmulatedSnpGuest) -> None:
    other = EmulatedAmdVendor.generate(Product.MILAN, key_size=2048, now=NOW)
    with pytest.raises(VerificationError) as exc:
        verify_attested_certificate(cert, policy=_policy(good_guest), anchors=other.anchors(),
                                    now=NOW)
    assert exc.value.code == "sevsnp.chain.ark_untrusted"


def test_wrong_measurement_is_rejected(ratls_machine: InsecureEmulatedSnpMachine,
                                       good_guest: EmulatedSnpGuest,
                                       other_guest: EmulatedSnpGuest, key: PrivateKey) -> None:
    c = issue_attested_certificate(other_guest, key, now=NOW)
    with pytest.raises(PolicyRejected) as exc:
        _verify(c, ratls_machine, good_guest)  # policy pins good_guest's measurement
    assert exc.value.appraisal.codes() == ["sevsnp.measurement.mismatch"]
    trace = {f.code for f in exc.value.appraisal.verification}
    assert "ratls.key_binding" in trace  # the rejection carries the certificate checks too


def test_debug_guest_is_rejected_by_the_default_policy(
        ratls_machine: InsecureEmulatedSnpMachine, debug_guest: EmulatedSnpGuest,
        key: PrivateKey) -> None:
    c = issue_attested_certificate(debug_guest, key, now=NOW)
    with pytest.raises(PolicyRejected) as exc:
        verify_attested_certificate(c, anchors=ratls_machine.anchors(), now=NOW,
                                    collateral=AmdCertificates(
                                        crl=ratls_machine.vendor.crl(NOW)))
    assert exc.value.appraisal.codes() == ["sevsnp.policy.debug"]


def test_certificate_without_evidence_is_rejected(ratls_machine: InsecureEmulatedSnpMachine,
                                                  good_guest: EmulatedSnpGuest) -> None:
    from veritee.crypto.certs import self_signed_leaf

    plain = self_signed_leaf(generate_private_key(KeyType.P256), "CN=plain", now=NOW)
    with pytest.raises(VerificationError) as exc:
        _verify(plain, ratls_machine, good_guest)
    assert exc.value.code == "ratls.evidence.missing"


def test_forged_self_signature_is_rejected(cert: x509.Certificate, key: PrivateKey,
                                           ratls_machine: InsecureEmulatedSnpMachine,
                                           good_guest: EmulatedSnpGuest) -> None:
    der = bytearray(cert.public_bytes(Encoding.DER))
    der[-3] ^= 0x01  # inside the signature
    forged = x509.load_der_x509_certificate(bytes(der))
    with pytest.raises(VerificationError) as exc:
        _verify(forged, ratls_machine, good_guest)
    assert exc.value.code == "certs.signature.invalid"


def test_endorsements_cannot_add_trust(cert: x509.Certificate, key: PrivateKey,
                                       good_guest: EmulatedSnpGuest) -> None:
    """The embedded ARK is collateral, not an anchor: without anchors it is still refused."""
    with pytest.raises(VerificationError) as exc:
        verify_attested_certificate(cert, policy=_policy(good_guest), now=NOW, anchors=None)
    assert exc.value.code == "sevsnp.chain.ark_untrusted"


def test_preset_report_data_is_a_config_error(cert: x509.Certificate,
                                              ratls_machine: InsecureEmulatedSnpMachine,
                                              good_guest: EmulatedSnpGuest) -> None:
    import dataclasses

    policy = dataclasses.replace(_policy(good_guest), report_data=bytes(64))
    with pytest.raises(ConfigError):
        _verify(cert, ratls_machine, good_guest, policy=policy)


# -- the CMW parser ----------------------------------------------------------------------------

def test_cmw_record_round_trip() -> None:
    for rec in (CmwRecord("application/x", b"\x00\x01"), CmwRecord("a/b", b"", 4)):
        assert CmwRecord.from_cbor(rec.to_cbor()) == rec


@pytest.mark.parametrize("data", [
    b"",
    bytes(cbor2.dumps({"a": b"x"})),  # a collection, not a record
    bytes(cbor2.dumps(["a/b"])),  # one element
    bytes(cbor2.dumps(["a/b", b"x"])) + b"\x00",  # trailing bytes
    bytes.fromhex("9f6361") + b"/bx" + bytes.fromhex("41 78 ff".replace(" ", "")),  # indefinite
    bytes(cbor2.dumps(["a/b", "text, not bytes"])),
    bytes(cbor2.dumps([7, b"x"])),  # CoAP content-format ids are not used here
    bytes(cbor2.dumps(["", b"x"])),
    bytes(cbor2.dumps(["a/b", b"x", 0])),
    bytes(cbor2.dumps(["a/b", b"x", 16])),
    bytes(cbor2.dumps(["a/b", b"x", True])),
    bytes.fromhex("82 78 03 612f62 41 78".replace(" ", "")),  # non-minimal length
], ids=lambda d: d[:6].hex() or "empty")
def test_malformed_cmw_is_a_format_error(data: bytes) -> None:
    with pytest.raises(FormatError):
        CmwRecord.from_cbor(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_cmw_parser_only_raises_format_error(data: bytes) -> None:
    with contextlib.suppress(FormatError):
        CmwRecord.from_cbor(data)


@settings(max_examples=200, deadline=None)
@given(st.one_of(
    st.binary(min_size=1, max_size=64).map(lambda b: b"\x82" + b),
    st.binary(min_size=1, max_size=64).map(lambda b: b"\x82\xc1" + b),  # a tagged item
))
def test_cmw_parser_on_array_prefixed_bytes(data: bytes) -> None:
    with contextlib.suppress(FormatError):
        CmwRecord.from_cbor(data)


def test_wrong_media_type_is_a_format_error(cert: x509.Certificate, key: PrivateKey) -> None:
    def retype(oid: x509.ObjectIdentifier, raw: bytes) -> bytes:
        if oid != OID_TCG_DICE_CMW:
            return raw
        return bytes(cbor2.dumps(["application/eat+cwt", cbor2.loads(raw)[1]]))

    with pytest.raises(FormatError):
        extract_evidence(_resign(cert, key, retype))
