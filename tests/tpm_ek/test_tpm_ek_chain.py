"""TPM EK certificate chains: the real Infineon and GCE vTPM certificates verify to their roots;
one-change attacks (untrusted root, bad signature, expiry, wrong TPM key, profile breaks) each
raise one code. Fakes sign with real keys so the production path runs."""

from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from veritee.errors import FormatError, VerificationError
from veritee.findings import Outcome
from veritee.formats.tpm import parse_tpm2b_public
from veritee.trust.tpm_ek import (
    OID_TCG_KP_EK_CERTIFICATE,
    OID_TPM_MANUFACTURER,
    OID_TPM_MODEL,
    OID_TPM_VERSION,
    load_certificate,
    verify_ek_chain,
    verify_tpm_cert_chain,
)

from _evidence import EVIDENCE_DIR, evidence_available

NOW = datetime(2024, 1, 1, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _quiet_long_cn() -> Iterator[None]:
    # GCE CA names exceed the 64-character CN upper bound; cryptography warns, we do not care.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        yield


def _manifest() -> dict[str, Any]:
    path = EVIDENCE_DIR / "MANIFEST-2.json"
    if not evidence_available() or not path.is_file():
        pytest.skip("shared evidence (MANIFEST-2) not present")
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _sample(sample_id: str) -> dict[str, Any]:
    for s in _manifest()["samples"]:
        if s["id"] == sample_id:
            return s  # type: ignore[no-any-return]
    pytest.skip(f"sample {sample_id} not present")


def _read(rel: str) -> bytes:
    return Path(EVIDENCE_DIR / rel).read_bytes()


def _infineon(kind: str) -> tuple[bytes, bytes, bytes, bytes]:
    s = _sample(f"infineon-slb9670-ek-{kind}")
    d = s["dir"]
    return (_read(f"{d}/ek_cert.der"), _read(f"{d}/intermediate_ca.der"),
            _read(f"roots/infineon-optiga-{kind}-root-ca.pem"),
            _read(f"{d}/ek_public.tpm2b_public.bin"))


GCE = "gcp-vtpm/gce-vtpm-ek-ak-certs"
GCE_INTERMEDIATES = ("tpm_ek_intermediate_3.crt", "tpm_ek_intermediate_2.crt",
                     "gcp_ek_ak_ca_intermediate_v3.crt")
GCE_ROOTS = ("roots/gce-tpm-ek-root-1.der", "roots/gcp-ek-ak-ca-root.der")


def _gce(name: str) -> tuple[bytes, list[bytes], list[bytes]]:
    _sample("gce-vtpm-ek-ak-certs")
    return (_read(f"{GCE}/{name}.pem"), [_read(f"{GCE}/{i}") for i in GCE_INTERMEDIATES],
            [_read(r) for r in GCE_ROOTS])


# -- real certificates ---------------------------------------------------------------------
@pytest.mark.evidence
@pytest.mark.parametrize("kind", ["rsa", "ecc"])
def test_infineon_ek_chain_verifies_with_its_tpm_key(kind: str) -> None:
    ek, inter, root, tpm2b = _infineon(kind)
    kf = _sample(f"infineon-slb9670-ek-{kind}")["known_fields"]
    v = verify_ek_chain(ek, [inter], roots=[root], now=NOW, ek_public=parse_tpm2b_public(tpm2b))
    assert [c.code for c in v.checks] == ["tpm.ek.chain", "tpm.ek.signature",
                                          "tpm.ek.validity", "tpm.ek.profile",
                                          "tpm.ek.public_key"]
    assert all(c.outcome is Outcome.PASS for c in v.checks)
    san = kf["tpm_san_attributes"]
    assert (v.manufacturer, v.model, v.version) == (san["2.23.133.2.1"], san["2.23.133.2.2"],
                                                    san["2.23.133.2.3"])
    assert v.manufacturer_id == b"IFX\0"
    assert [c.serial_number for c in v.path] == [int(kf[k]["serial"], 16) for k in
                                                 ("ek_cert", "intermediate_ca", "root_ca")]


@pytest.mark.evidence
@pytest.mark.parametrize("kind", ["rsa", "ecc"])
def test_infineon_sample_root_is_the_pinned_root(kind: str) -> None:
    _, _, root, _ = _infineon(kind)
    d = _sample(f"infineon-slb9670-ek-{kind}")["dir"]
    assert load_certificate(root) == load_certificate(_read(f"{d}/root_ca.pem"))


@pytest.mark.evidence
def test_infineon_reissued_ca_is_not_valid_before_its_own_not_before() -> None:
    # The public CA 035 is a 2023 re-issue; at a time before it, the chain is not valid.
    ek, inter, root, _ = _infineon("rsa")
    with pytest.raises(VerificationError) as exc:
        verify_ek_chain(ek, [inter], roots=[root], now=datetime(2020, 1, 1, tzinfo=UTC))
    assert exc.value.code == "tpm.ek.not_yet_valid"


@pytest.mark.evidence
@pytest.mark.parametrize("name", ["uca_tpm_rsa_enc_cert", "uca_tpm_ecc_enc_cert"])
def test_gce_vtpm_ek_certificate_verifies_to_the_gce_ek_root(name: str) -> None:
    cert, inters, roots = _gce(name)
    v = verify_ek_chain(cert, inters, roots=roots, now=NOW)
    assert v.manufacturer_id == b"GOOG" and v.model == "vTPM"
    kf = _sample("gce-vtpm-ek-ak-certs")["known_fields"][name]
    assert len(v.path) == len(kf["verified_path"])
    assert v.root == load_certificate(_read("roots/gce-tpm-ek-root-1.der"))


@pytest.mark.evidence
@pytest.mark.parametrize("name,root", [
    ("uca_tpm_rsa_sign_cert", "roots/gce-tpm-ek-root-1.der"),
    ("uca_tpm_ecc_sign_cert", "roots/gce-tpm-ek-root-1.der"),
    ("pca_tpm_rsa_enc_cert", "roots/gcp-ek-ak-ca-root.der"),
    ("pca_tpm_ecc_enc_cert", "roots/gcp-ek-ak-ca-root.der"),
    ("pca_tpm_rsa_sign_cert", "roots/gcp-ek-ak-ca-root.der"),
    ("pca_tpm_ecc_sign_cert", "roots/gcp-ek-ak-ca-root.der"),
])
def test_gce_ak_and_pca_certificates_chain_but_are_not_tcg_ek_certificates(
        name: str, root: str) -> None:
    cert, inters, roots = _gce(name)
    v = verify_tpm_cert_chain(cert, inters, roots=roots, now=NOW)
    assert v.root == load_certificate(_read(root)) and len(v.path) == 3
    with pytest.raises(VerificationError) as exc:
        verify_ek_chain(cert, inters, roots=roots, now=NOW)
    assert exc.value.code == "tpm.ek.profile"


@pytest.mark.evidence
def test_gce_cos_ak_certificate_chains_to_the_gce_root() -> None:
    _sample("gce-cos-85-no-nonce")
    d = "gcp-vtpm/gce-cos-85-no-nonce"
    v = verify_tpm_cert_chain(_read(f"{d}/ak_cert.der"), [_read(f"{d}/gce_ek_intermediate_2.crt")],
                              roots=[_read("roots/gce-tpm-ek-root-1.der")], now=NOW)
    assert len(v.path) == 3


# -- attacks on real certificates -----------------------------------------------------------
@pytest.mark.evidence
def test_ek_certificate_under_another_vendors_root_is_rejected() -> None:
    ek, inter, _, _ = _infineon("rsa")
    with pytest.raises(VerificationError) as exc:
        verify_ek_chain(ek, [inter], roots=[_read("roots/gce-tpm-ek-root-1.der")], now=NOW)
    assert exc.value.code == "tpm.ek.chain"


@pytest.mark.evidence
def test_ek_certificate_without_its_intermediate_is_rejected() -> None:
    ek, _, root, _ = _infineon("ecc")
    with pytest.raises(VerificationError) as exc:
        verify_ek_chain(ek, [], roots=[root], now=NOW)
    assert exc.value.code == "tpm.ek.chain"


@pytest.mark.evidence
def test_gce_certificate_with_the_wrong_ca_family_is_rejected() -> None:
    cert, inters, _ = _gce("uca_tpm_rsa_enc_cert")
    with pytest.raises(VerificationError) as exc:
        verify_ek_chain(cert, inters, roots=[_read("roots/gcp-ek-ak-ca-root.der")], now=NOW)
    assert exc.value.code == "tpm.ek.chain"


@pytest.mark.evidence
def test_ek_certificate_with_a_flipped_signature_byte_is_rejected() -> None:
    ek, inter, root, _ = _infineon("rsa")
    cert = load_certificate(ek)
    der = bytearray(ek)
    sig_at = bytes(der).rfind(cert.signature)
    der[sig_at + 10] ^= 0x01
    with pytest.raises(VerificationError) as exc:
        verify_ek_chain(bytes(der), [inter], roots=[root], now=NOW)
    assert exc.value.code == "tpm.ek.signature"


@pytest.mark.evidence
def test_tpm_key_that_is_not_the_certificates_key_is_rejected() -> None:
    ek, inter, root, _ = _infineon("rsa")
    _, _, _, ecc_tpm2b = _infineon("ecc")
    with pytest.raises(VerificationError) as exc:
        verify_ek_chain(ek, [inter], roots=[root], now=NOW,
                        ek_public=parse_tpm2b_public(ecc_tpm2b))
    assert exc.value.code == "tpm.ek.public_key"


@pytest.mark.evidence
def test_expired_chain_is_rejected() -> None:
    ek, inter, root, _ = _infineon("ecc")
    with pytest.raises(VerificationError) as exc:
        verify_ek_chain(ek, [inter], roots=[root], now=datetime(2034, 1, 1, tzinfo=UTC))
    assert exc.value.code == "tpm.ek.expired"


def test_no_roots_is_not_a_default_trust() -> None:
    with pytest.raises(VerificationError) as exc:
        verify_ek_chain(b"", [], roots=[], now=NOW)
    assert exc.value.code == "tpm.ek.chain"


def test_naive_time_is_refused() -> None:
    pki = _Pki()
    with pytest.raises(ValueError, match="timezone"):
        verify_ek_chain(pki.ek(), [pki.inter_cert], roots=[pki.root_cert],
                        now=datetime(2024, 1, 1))


# -- a fake EK PKI with real keys -----------------------------------------------------------
def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


TPM_SAN = x509.SubjectAlternativeName([x509.DirectoryName(x509.Name([
    x509.NameAttribute(OID_TPM_MANUFACTURER, "id:49465800"),
    x509.NameAttribute(OID_TPM_MODEL, "FAKE"),
    x509.NameAttribute(OID_TPM_VERSION, "id:0001"),
]))])


class _Pki:
    """Root -> intermediate -> EK, all signed with freshly generated keys."""

    def __init__(self, *, inter_ca: bool = True) -> None:
        self.root_key = ec.generate_private_key(ec.SECP256R1())
        self.inter_key = ec.generate_private_key(ec.SECP256R1())
        self.ek_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.root_cert = self._ca(_name("Fake Root"), self.root_key, self.root_key,
                                  _name("Fake Root"), ca=True)
        self.inter_cert = self._ca(_name("Fake Mfr CA"), self.inter_key, self.root_key,
                                   _name("Fake Root"), ca=inter_ca)

    @staticmethod
    def _ca(subject: x509.Name, key: ec.EllipticCurvePrivateKey,
            signer: ec.EllipticCurvePrivateKey, issuer: x509.Name, *, ca: bool
            ) -> x509.Certificate:
        return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(NOW - timedelta(days=365))
                .not_valid_after(NOW + timedelta(days=365))
                .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
                .sign(signer, hashes.SHA256()))

    def ek(self, *, san: x509.SubjectAlternativeName | None = TPM_SAN, san_critical: bool = True,
           key_usage: x509.KeyUsage | None = None, extra: x509.ExtensionType | None = None,
           eku: list[x509.ObjectIdentifier] | None = None, signer: Any = None) -> x509.Certificate:
        b = (x509.CertificateBuilder().subject_name(x509.Name([]))
             .issuer_name(_name("Fake Mfr CA")).public_key(self.ek_key.public_key())
             .serial_number(x509.random_serial_number())
             .not_valid_before(NOW - timedelta(days=30)).not_valid_after(NOW + timedelta(days=30))
             .add_extension(key_usage or x509.KeyUsage(
                 digital_signature=False, content_commitment=False, key_encipherment=True,
                 data_encipherment=False, key_agreement=False, key_cert_sign=False,
                 crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
             .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True))
        if san is not None:
            b = b.add_extension(san, critical=san_critical)
        if eku is not None:
            b = b.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
        if extra is not None:
            b = b.add_extension(extra, critical=True)
        return b.sign(signer or self.inter_key, hashes.SHA256())

    def verify(self, cert: x509.Certificate, **kw: Any) -> Any:
        return verify_ek_chain(cert, [self.inter_cert], roots=[self.root_cert], now=NOW, **kw)


def test_fake_pki_ek_verifies_with_its_key() -> None:
    pki = _Pki()
    v = pki.verify(pki.ek(eku=[OID_TCG_KP_EK_CERTIFICATE]), ek_public=pki.ek_key.public_key())
    assert v.manufacturer_id == b"IFX\0" and v.model == "FAKE"


def _code(pki: _Pki, cert: x509.Certificate) -> str:
    with pytest.raises(VerificationError) as exc:
        pki.verify(cert)
    return exc.value.code


def test_ek_without_tpm_san_is_rejected() -> None:
    pki = _Pki()
    assert _code(pki, pki.ek(san=None)) == "tpm.ek.profile"


def test_non_critical_san_on_an_empty_subject_is_rejected() -> None:
    pki = _Pki()
    assert _code(pki, pki.ek(san_critical=False)) == "tpm.ek.profile"


def test_san_missing_the_tpm_model_is_rejected() -> None:
    pki = _Pki()
    san = x509.SubjectAlternativeName([x509.DirectoryName(x509.Name([
        x509.NameAttribute(OID_TPM_MANUFACTURER, "id:49465800"),
        x509.NameAttribute(OID_TPM_VERSION, "id:0001")]))])
    assert _code(pki, pki.ek(san=san)) == "tpm.ek.profile"


def test_malformed_manufacturer_id_is_rejected() -> None:
    pki = _Pki()
    san = x509.SubjectAlternativeName([x509.DirectoryName(x509.Name([
        x509.NameAttribute(OID_TPM_MANUFACTURER, "Infineon"),
        x509.NameAttribute(OID_TPM_MODEL, "FAKE"),
        x509.NameAttribute(OID_TPM_VERSION, "id:0001")]))])
    assert _code(pki, pki.ek(san=san)) == "tpm.ek.profile"


def test_signing_key_usage_on_an_rsa_ek_is_rejected() -> None:
    pki = _Pki()
    ku = x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                       data_encipherment=False, key_agreement=False, key_cert_sign=False,
                       crl_sign=False, encipher_only=False, decipher_only=False)
    assert _code(pki, pki.ek(key_usage=ku)) == "tpm.ek.profile"


def test_eku_without_the_ek_purpose_is_rejected() -> None:
    pki = _Pki()
    server_auth = x509.ObjectIdentifier("1.3.6.1.5.5.7.3.1")
    assert _code(pki, pki.ek(eku=[server_auth])) == "tpm.ek.profile"


def test_unprocessed_critical_extension_is_rejected() -> None:
    pki = _Pki()
    odd = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.2.3.4.5"), b"\x05\x00")
    assert _code(pki, pki.ek(extra=odd)) == "tpm.ek.chain"


def test_intermediate_that_is_not_a_ca_is_rejected() -> None:
    pki = _Pki(inter_ca=False)
    assert _code(pki, pki.ek()) == "tpm.ek.chain"


def test_ek_signed_by_an_impostor_with_the_ca_name_is_rejected() -> None:
    pki = _Pki()
    impostor = ec.generate_private_key(ec.SECP256R1())
    assert _code(pki, pki.ek(signer=impostor)) == "tpm.ek.signature"


def test_pem_and_der_inputs_load_the_same_certificate() -> None:
    pki = _Pki()
    cert = pki.ek()
    assert load_certificate(cert.public_bytes(serialization.Encoding.PEM)) == cert
    assert load_certificate(cert.public_bytes(serialization.Encoding.DER)) == cert


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_certificate_loader_only_raises_format_error(data: bytes) -> None:
    with contextlib.suppress(FormatError):
        load_certificate(data)
