"""Attested certificates from every emulated platform, through the scheme registry.

The certificate carries each platform's own evidence (an SEV-SNP report, a TDX quote, an SGX
quote) under its CMW media type, bound to the certificate's key with the scheme's binding;
verification finds the scheme from the media type and runs attest.Verifier. The Intel tests
need the ``tdx``/``sgx`` schemes in the registry (issue 11) and skip until they are there.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from veritee import schemes
from veritee.crypto.certs import KeyType, generate_private_key, self_signed_leaf
from veritee.errors import ConfigError, FormatError, PolicyRejected
from veritee.formats.sevsnp import Product
from veritee.platform.adapters import SgxPlatform, SnpPlatform, TdxPlatform
from veritee.platform.emulated.intel import EmulatedIntelCpu, EmulatedIntelVendor
from veritee.platform.emulated.measurement import simple_guest_image
from veritee.platform.emulated.sgx import InsecureEmulatedSgxMachine
from veritee.platform.emulated.snp import EmulatedAmdVendor, InsecureEmulatedSnpMachine
from veritee.platform.emulated.tdx import InsecureEmulatedTdxMachine
from veritee.policy.sevsnp import SevSnpPolicy
from veritee.ratls import (
    MEDIA_TYPE_SGX_QUOTE,
    MEDIA_TYPE_SNP_REPORT,
    MEDIA_TYPE_TDX_QUOTE,
    OID_TCG_DICE_CMW,
    OID_TCG_DICE_ENDORSEMENT_MANIFEST,
    CmwRecord,
    extract_evidence,
    issue_attested_certificate,
    media_type_for,
    scheme_for_media_type,
    verify_attested_certificate,
)
from veritee.schemes import Anchors, Collateral
from veritee.trust.sevsnp import AmdCertificates

NOW = datetime(2026, 6, 1, tzinfo=UTC)
FIRMWARE = b"TDVF for the attested server".ljust(8192, b"\0")
ENCLAVE = b"enclave serving TLS".ljust(4096, b"\0")

needs_intel = pytest.mark.skipif(
    not {"tdx", "sgx"} <= set(schemes.names()),
    reason="the tdx/sgx schemes are not in the registry yet (issue 11)")


@pytest.fixture(scope="module")
def intel() -> EmulatedIntelVendor:
    return EmulatedIntelVendor.generate(now=NOW)


@pytest.fixture(scope="module")
def tdx(intel: EmulatedIntelVendor) -> TdxPlatform:
    machine = InsecureEmulatedTdxMachine(intel, cpu=EmulatedIntelCpu(intel, now=NOW))
    return TdxPlatform(machine.launch(FIRMWARE))


@pytest.fixture(scope="module")
def sgx(intel: EmulatedIntelVendor) -> SgxPlatform:
    machine = InsecureEmulatedSgxMachine(intel, cpu=EmulatedIntelCpu(intel, now=NOW))
    signer = rsa.generate_private_key(public_exponent=3, key_size=3072)
    return SgxPlatform(machine.load(ENCLAVE, signer, isv_svn=2))


def _intel_args(intel: EmulatedIntelVendor, tee: str) -> dict[str, object]:
    # Emulated roots are trusted only when passed: here as the Intel vendor's anchors.
    return {"anchors": Anchors({"intel": [intel.root]}),
            "collateral": Collateral({"intel": intel.collateral(tee.upper(), NOW)}),
            "now": NOW}


def _policy(platform: TdxPlatform | SgxPlatform) -> object:
    from veritee.policy.intel import SgxPolicy, TdxPolicy

    if isinstance(platform, TdxPlatform):
        return TdxPolicy(mrtd=frozenset({platform.td.mr_td}))
    return SgxPolicy(mrenclave=frozenset({platform.enclave.mr_enclave}))


def _resign(cert: x509.Certificate) -> x509.Certificate:
    """The same evidence extension in a certificate for an attacker's key."""
    attacker = ec.generate_private_key(ec.SECP256R1())
    carried = [e for e in cert.extensions if e.oid in (OID_TCG_DICE_CMW,
                                                       OID_TCG_DICE_ENDORSEMENT_MANIFEST)]
    return self_signed_leaf(attacker, "CN=attacker", now=NOW, extensions=carried)


# -- SEV-SNP through the Platform interface (always registered) --------------------------------
def test_snp_platform_certificate_verifies_through_the_registry() -> None:
    vendor = EmulatedAmdVendor.generate(Product.MILAN, key_size=2048, now=NOW)
    machine = InsecureEmulatedSnpMachine(vendor, clock=NOW)
    guest = machine.launch(simple_guest_image(FIRMWARE))
    key = generate_private_key(KeyType.P256)
    cert = issue_attested_certificate(SnpPlatform(guest), key, now=NOW)
    carried = extract_evidence(cert)
    assert carried.scheme == "sevsnp" and carried.cert_table
    policy = SevSnpPolicy(measurements=frozenset({guest.measurement}))
    args = {"anchors": Anchors({"amd": machine.anchors()}),
            "collateral": Collateral({"amd": AmdCertificates(crl=vendor.crl(NOW))}), "now": NOW}
    appraisal = verify_attested_certificate(cert, policy=policy, **args)  # type: ignore[arg-type]
    assert appraisal.accepted
    assert any(f.code == "sevsnp.binding.mismatch" and f.outcome.name == "PASS"
               for f in appraisal.findings)
    with pytest.raises(PolicyRejected) as exc:
        verify_attested_certificate(_resign(cert), policy=policy, **args)  # type: ignore[arg-type]
    assert exc.value.appraisal.codes() == ["sevsnp.binding.mismatch"]


def test_media_types_name_their_scheme() -> None:
    assert media_type_for("sevsnp") == MEDIA_TYPE_SNP_REPORT
    assert media_type_for("tdx") == MEDIA_TYPE_TDX_QUOTE
    assert media_type_for("sgx") == MEDIA_TYPE_SGX_QUOTE
    assert media_type_for("nitro") == "application/vnd.veritee.nitro-evidence"
    for name in ("sevsnp", "tdx", "sgx", "nitro"):
        assert scheme_for_media_type(media_type_for(name)) == name
    assert scheme_for_media_type("application/vnd.veritee.tdx-evidence") is None  # has a name
    assert scheme_for_media_type("application/eat+cwt") is None


def test_evidence_under_an_unregistered_scheme_is_refused() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    ext = x509.UnrecognizedExtension(OID_TCG_DICE_CMW, CmwRecord(
        "application/vnd.veritee.no-such-tee-evidence", b"\x01" * 64).to_cbor())
    cert = self_signed_leaf(key, "CN=x", now=NOW, extensions=[
        x509.Extension(OID_TCG_DICE_CMW, False, ext)])
    with pytest.raises(ConfigError):  # the registry lists the schemes it knows
        verify_attested_certificate(cert, now=NOW)


def test_evidence_that_is_not_what_its_media_type_says_is_refused(
        intel: EmulatedIntelVendor) -> None:
    vendor = EmulatedAmdVendor.generate(Product.MILAN, key_size=2048, now=NOW)
    guest = InsecureEmulatedSnpMachine(vendor, clock=NOW).launch(simple_guest_image(FIRMWARE))
    key = ec.generate_private_key(ec.SECP256R1())
    report = guest.attestation_report(bytes(64))
    for media_type in ("application/vnd.veritee.sevsnp-report",):
        ext = x509.UnrecognizedExtension(OID_TCG_DICE_CMW, CmwRecord(
            media_type, report[:-1]).to_cbor())
        cert = self_signed_leaf(key, "CN=x", now=NOW, extensions=[
            x509.Extension(OID_TCG_DICE_CMW, False, ext)])
        with pytest.raises(FormatError):
            verify_attested_certificate(cert, now=NOW)


# -- TDX and SGX --------------------------------------------------------------------------------
@needs_intel
@pytest.mark.parametrize("tee", ["tdx", "sgx"])
def test_intel_attested_certificate_verifies(tee: str, request: pytest.FixtureRequest,
                                             intel: EmulatedIntelVendor) -> None:
    platform = request.getfixturevalue(tee)
    key = generate_private_key(KeyType.P384)
    cert = issue_attested_certificate(platform, key, now=NOW, dns_names=["svc.local"])
    carried = extract_evidence(cert)
    assert carried.scheme == tee and carried.cert_table is None  # the quote has its chain
    appraisal = verify_attested_certificate(cert, policy=_policy(platform),
                                            **_intel_args(intel, tee))  # type: ignore[arg-type]
    assert appraisal.accepted
    assert any(f.code == f"{tee}.binding.mismatch" and f.outcome.name == "PASS"
               for f in appraisal.findings)
    assert any(f.code == "ratls.key_binding" for f in appraisal.verification)


@needs_intel
@pytest.mark.parametrize("tee", ["tdx", "sgx"])
def test_intel_evidence_bound_to_another_key_is_refused(
        tee: str, request: pytest.FixtureRequest, intel: EmulatedIntelVendor) -> None:
    platform = request.getfixturevalue(tee)
    cert = issue_attested_certificate(platform, generate_private_key(KeyType.P256), now=NOW)
    with pytest.raises(PolicyRejected) as exc:
        verify_attested_certificate(_resign(cert), policy=_policy(platform),
                                    **_intel_args(intel, tee))  # type: ignore[arg-type]
    assert exc.value.appraisal.codes() == [f"{tee}.binding.mismatch"]


@needs_intel
def test_intel_certificate_of_another_workload_is_refused(
        tdx: TdxPlatform, intel: EmulatedIntelVendor) -> None:
    from veritee.policy.intel import TdxPolicy

    cert = issue_attested_certificate(tdx, generate_private_key(KeyType.P256), now=NOW)
    with pytest.raises(PolicyRejected) as exc:
        verify_attested_certificate(cert, policy=TdxPolicy(mrtd=frozenset({bytes(48)})),
                                    **_intel_args(intel, "tdx"))  # type: ignore[arg-type]
    assert "tdx.mrtd.mismatch" in exc.value.appraisal.codes()


@needs_intel
def test_intel_certificate_from_an_untrusted_root_is_refused(
        tdx: TdxPlatform, intel: EmulatedIntelVendor) -> None:
    from veritee.errors import VerificationError

    cert = issue_attested_certificate(tdx, generate_private_key(KeyType.P256), now=NOW)
    args = _intel_args(intel, "tdx")
    args["anchors"] = Anchors()  # the production Intel root pin: the emulated root fails
    with pytest.raises(VerificationError):
        verify_attested_certificate(cert, policy=_policy(tdx), **args)  # type: ignore[arg-type]


# -- an attested TLS connection to an emulated TDX peer ----------------------------------------
@pytest.fixture
def tdx_server(tdx: TdxPlatform) -> Iterator[object]:
    from veritee.tls import AttestedHttpsServer

    with AttestedHttpsServer.in_guest(tdx, now=NOW, routes={"/": b"hello from a TD\n"}) as srv:
        yield srv


@needs_intel
def test_attested_tls_to_an_emulated_td(tdx: TdxPlatform, tdx_server: object,
                                        intel: EmulatedIntelVendor) -> None:
    from veritee.policy.intel import TdxPolicy
    from veritee.tls import AttestedHttpsServer, connect_attested

    assert isinstance(tdx_server, AttestedHttpsServer)
    host, port = tdx_server.address
    args = _intel_args(intel, "tdx")
    with connect_attested(host, port, policy=_policy(tdx), **args) as conn:  # type: ignore[arg-type]
        conn.sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        response = b""
        for _ in range(100):  # bounded: the response is small
            chunk = conn.sock.recv(4096)
            if not chunk:
                break
            response += chunk
        assert b"hello from a TD" in response
        assert conn.appraisal.accepted
    served = tdx_server.requests_served
    with pytest.raises(PolicyRejected):  # another MRTD pinned: refused before any request
        connect_attested(host, port, policy=TdxPolicy(mrtd=frozenset({bytes(48)})),
                         **args)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):  # MROWNER alone pins nothing the TD runs
        connect_attested(host, port, policy=TdxPolicy(mrowner=frozenset({bytes(48)})),
                         **args)  # type: ignore[arg-type]
    assert tdx_server.requests_served == served


def test_a_der_certificate_is_never_searched_for_embedded_pem() -> None:
    """``cert inspect FILE`` reads the certificate in FILE, not one smuggled inside it."""
    from cryptography.hazmat.primitives.serialization import Encoding

    from veritee.crypto.certs import certificate_pem, load_certificate

    inner = self_signed_leaf(ec.generate_private_key(ec.SECP256R1()), "CN=genuine", now=NOW)
    oid = x509.ObjectIdentifier("1.3.6.1.4.1.55555.1")
    outer = self_signed_leaf(ec.generate_private_key(ec.SECP256R1()), "CN=outer", now=NOW,
                             extensions=[x509.Extension(oid, False, x509.UnrecognizedExtension(
                                 oid, b"\n" + certificate_pem(inner)))])
    assert load_certificate(outer.public_bytes(Encoding.DER)) == outer
    assert load_certificate(certificate_pem(outer)) == outer


def test_a_td_object_that_is_not_a_platform_is_refused(tdx: TdxPlatform) -> None:
    """An emulated TD passed without its Platform adapter must not be taken for an SEV-SNP
    guest (its quote would be labelled an SEV-SNP report)."""
    with pytest.raises(ConfigError):
        issue_attested_certificate(tdx.td, generate_private_key(KeyType.P256), now=NOW)


# -- a TPM (swtpm): a 32-byte binding in the quote's qualifying data --------------------------
def _swtpm_reason() -> str | None:
    try:
        from veritee.platform.tpm import swtpm_unavailable_reason
    except ImportError as exc:  # pragma: no cover - tpm2-pytss missing
        return str(exc)
    return swtpm_unavailable_reason()


@pytest.mark.skipif(_swtpm_reason() is not None, reason=str(_swtpm_reason()))
def test_tpm_attested_certificate_with_an_enrolled_ak(tmp_path: object) -> None:
    from pathlib import Path

    from veritee.platform.adapters import TpmAdapter
    from veritee.platform.tpm import InsecureSwtpmPlatform, register_ak
    from veritee.policy.tpm import TpmPolicy
    from veritee.trust.tpm import TpmAnchors

    tpm = InsecureSwtpmPlatform.open(Path(str(tmp_path)) / "tpm")
    # After manufacturing: the EK certificate's notBefore is that moment, to the second.
    now = datetime.now(UTC) + timedelta(seconds=2)
    try:
        key = generate_private_key(KeyType.P256)
        cert = issue_attested_certificate(TpmAdapter(tpm), key, now=now)
        assert extract_evidence(cert).scheme == "tpm"
        enrolled = register_ak(tpm, roots=[tpm.ca_root()], intermediates=tpm.ca_intermediates(),
                               now=now)
        anchors = Anchors({"tpm": TpmAnchors(registered_aks=(enrolled,))})
        appraisal = verify_attested_certificate(cert, policy=TpmPolicy(), anchors=anchors,
                                                now=now)
        assert appraisal.accepted
        assert any(f.code == "tpm.binding.mismatch" and f.outcome.name == "PASS"
                   for f in appraisal.findings)
        attacker = ec.generate_private_key(ec.SECP256R1())
        stolen = self_signed_leaf(attacker, "CN=attacker", now=now, extensions=[
            cert.extensions.get_extension_for_oid(OID_TCG_DICE_CMW)])
        with pytest.raises(PolicyRejected) as exc:
            verify_attested_certificate(stolen, policy=TpmPolicy(), anchors=anchors, now=now)
        assert exc.value.appraisal.codes() == ["tpm.binding.mismatch"]
    finally:
        tpm.close()
