"""Quote verification on every real TPM / vTPM sample, and the attacks each check stops."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from veritee.collateral.tpm import load_trustee_azure_vtpm
from veritee.crypto.amd_certs import load_certificates
from veritee.errors import FormatError, VerificationError
from veritee.findings import Outcome
from veritee.formats.azure import HclReport
from veritee.formats.tpm import (
    HashAlg,
    SigAlg,
    StructureTag,
    TpmsAttest,
    TpmtPublic,
    TpmtSignature,
)
from veritee.trust.roots import TrustAnchors
from veritee.trust.sevsnp import AmdCertificates, parse_vek_extensions, verify_report
from veritee.trust.tpm import (
    VerifiedTpmQuote,
    jwk_public_key,
    verify_azure_vtpm_quote,
    verify_quote,
)

from _evidence import EVIDENCE_DIR, sample_time
from _tpm_support import (
    QuoteCase,
    azure_snp_manifest1_samples,
    file_of,
    make_attest,
    pcr_values,
    quote_cases,
    samples,
    sign,
)

pytestmark = pytest.mark.evidence

QUOTE_SAMPLES = [s for s in samples("tpm", "gcp-vtpm", "azure-vtpm") if quote_cases(s)]
CASES: list[QuoteCase] = [c for s in QUOTE_SAMPLES for c in quote_cases(s)]


def _verify(case: QuoteCase, **overrides: object) -> VerifiedTpmQuote:
    c = replace(case, **overrides)  # type: ignore[arg-type]
    if c.hcl is not None:
        return verify_azure_vtpm_quote(c.attest, c.signature, c.hcl, nonce=c.nonce,
                                       pcrs=c.pcrs, event_log=c.event_log)
    assert c.ak is not None
    return verify_quote(c.attest, c.signature, c.ak, nonce=c.nonce, pcrs=c.pcrs,
                        event_log=c.event_log)


def _expect(code: str, case: QuoteCase, **overrides: object) -> None:
    with pytest.raises(VerificationError) as info:
        _verify(case, **overrides)
    assert info.value.code == code, str(info.value)


def test_corpus_has_every_quote_sample() -> None:
    if not QUOTE_SAMPLES:
        pytest.skip("shared evidence not present")
    ids = {s["id"] for s in QUOTE_SAMPLES}
    # Every tpm/gcp-vtpm/azure-vtpm sample that carries a quote is exercised; the others
    # carry only EK/AK certificates (or a Parsec CBOR bundle, see the docs' "not done").
    others = {s["id"] for s in samples("tpm", "gcp-vtpm", "azure-vtpm")} - ids
    assert others <= {"infineon-slb9670-ek-rsa", "infineon-slb9670-ek-ecc",
                      "gce-vtpm-ek-ak-certs", "veraison-parsec-tpm-certify-quote"}
    assert len(CASES) >= 14


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_real_quote_verifies(case: QuoteCase) -> None:
    verified = _verify(case)
    passed = {f.code for f in verified.checks if f.outcome is Outcome.PASS}
    assert {"tpm.quote.signature", "tpm.quote.magic", "tpm.quote.type", "tpm.quote.nonce",
            "tpm.quote.pcr_digest"} <= passed
    assert not [f for f in verified.checks if f.outcome is Outcome.FAIL]
    assert verified.nonce == case.nonce
    if case.event_log is not None:
        assert "tpm.eventlog.replay" in passed and verified.replayed
    if case.hcl is not None:
        assert {"tpm.azure.report_data", "tpm.azure.ak"} <= passed


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_flipped_attest_byte_breaks_the_signature(case: QuoteCase) -> None:
    attest = bytearray(case.attest)
    attest[5] ^= 1  # keylime's own negative test flips byte 5
    _expect("tpm.quote.signature", case, attest=bytes(attest))


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_wrong_nonce_is_rejected(case: QuoteCase) -> None:
    _expect("tpm.quote.nonce", case, nonce=case.nonce[::-1] + b"x")


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_changed_pcr_value_breaks_the_digest(case: QuoteCase) -> None:
    assert case.pcrs is not None
    quote = TpmsAttest.from_bytes(case.attest).quote
    bank, index = quote.selected()[-1]
    pcrs = {b: dict(v) for b, v in case.pcrs.items()}
    value = bytearray(pcrs[bank][index])
    value[0] ^= 1
    pcrs[bank][index] = bytes(value)
    _expect("tpm.quote.pcr_digest", case, pcrs=pcrs)


def test_missing_pcr_value_is_rejected() -> None:
    case = next((c for c in CASES if c.hcl is None), None)
    if case is None:
        pytest.skip("no samples")
    assert case.pcrs is not None
    bank, index = TpmsAttest.from_bytes(case.attest).quote.selected()[0]
    pcrs = {b: {i: v for i, v in vals.items() if (b, i) != (bank, index)}
            for b, vals in case.pcrs.items()}
    _expect("tpm.quote.pcr_values", case, pcrs=pcrs)


LOG_CASES = [c for c in CASES if c.event_log is not None]


@pytest.mark.parametrize("case", LOG_CASES, ids=lambda c: c.name)
def test_changed_event_log_entry_fails_replay(case: QuoteCase) -> None:
    assert case.event_log is not None
    verified = _verify(case)
    bank, pcr = verified.replayed[0]
    log = case.event_log
    victim = next(e for e in log.measured() if e.pcr == pcr)
    digest = bytearray(victim.digests[int(bank)])
    digest[0] ^= 0xFF
    tampered = replace(victim, digests={**victim.digests, int(bank): bytes(digest)})
    events = tuple(tampered if e is victim else e for e in log.events)
    _expect("tpm.eventlog.replay_mismatch", case, event_log=replace(log, events=events))


@pytest.mark.parametrize("case", LOG_CASES, ids=lambda c: c.name)
def test_dropped_event_fails_replay(case: QuoteCase) -> None:
    assert case.event_log is not None
    log = case.event_log
    first = next(iter(log.measured()))
    events = tuple(e for e in log.events if e is not first)
    _expect("tpm.eventlog.replay_mismatch", case, event_log=replace(log, events=events))


AZURE_CASES = [c for c in CASES if c.hcl is not None]


def test_ak_from_another_hcl_report_is_rejected() -> None:
    if len(AZURE_CASES) < 2:
        pytest.skip("no azure samples")
    a = AZURE_CASES[0]
    other = next(c for c in AZURE_CASES
                 if c.hcl is not None and a.hcl is not None
                 and c.hcl.ak_public_jwk() != a.hcl.ak_public_jwk())
    _expect("tpm.quote.signature", a, hcl=other.hcl)


def test_hcl_claims_not_bound_by_report_data_are_rejected() -> None:
    if not AZURE_CASES:
        pytest.skip("no azure samples")
    case = AZURE_CASES[0]
    assert case.hcl is not None
    claims = bytearray(case.hcl.variable_data)
    claims[claims.index(b"true")] = ord("T")  # JSON stays valid-ish; the hash changes
    _expect("tpm.azure.report_data", case, hcl=replace(case.hcl, variable_data=bytes(claims)))


def test_azure_quote_with_a_flipped_signature_byte() -> None:
    if not AZURE_CASES:
        pytest.skip("no azure samples")
    case = AZURE_CASES[0]
    sig = bytearray(case.signature.signature)
    sig[0] ^= 1  # trustee's negative test
    _expect("tpm.quote.signature", case,
            signature=TpmtSignature.rsassa(bytes(sig)))


M1_AZURE = azure_snp_manifest1_samples()


@pytest.mark.parametrize("sample", M1_AZURE, ids=lambda s: s["id"])
def test_manifest1_azure_snp_vtpm_quote_bound_to_a_verified_snp_report(
        sample: dict[str, Any]) -> None:
    base = EVIDENCE_DIR / sample["dir"]
    ev = load_trustee_azure_vtpm((base / sample["files"]["evidence_json"]).read_text())
    assert ev.hcl_report is not None
    hcl = HclReport.from_bytes(ev.hcl_report)
    assert hcl.snp_report is not None
    # The SNP report inside the HCL report, verified by the SEV-SNP trust layer.
    vcek_path = base / sample["files"]["vcek"]
    vek = load_certificates(vcek_path.read_bytes(), source=str(vcek_path))[0]
    product = parse_vek_extensions(vek).product
    roots = EVIDENCE_DIR / "roots" / f"amd_{product.value.lower()}_cert_chain_vcek.pem"
    ask, ark = load_certificates(roots.read_bytes(), source=str(roots))
    snp = verify_report(hcl.snp_report, AmdCertificates(ark=ark, ask=ask, vek=vek),
                        anchors=TrustAnchors.amd(), now=sample_time(sample))
    nonce = TpmsAttest.from_bytes(ev.attest).extra_data
    verified = verify_azure_vtpm_quote(ev.attest, ev.signature, hcl, nonce=nonce,
                                       pcrs=ev.pcrs, snp=snp)
    passed = {f.code for f in verified.checks if f.outcome is Outcome.PASS}
    assert {"tpm.azure.report_data", "tpm.azure.hw_report", "tpm.azure.ak",
            "tpm.quote.signature", "tpm.quote.pcr_digest"} <= passed
    assert len(verified.pcrs[HashAlg.SHA256]) == 24
    # A verified SNP report that is not the one in this HCL report breaks the binding.
    others = [s for s in M1_AZURE if s["id"] != sample["id"]]
    if others:
        other_ev = load_trustee_azure_vtpm(
            (EVIDENCE_DIR / others[0]["dir"] / others[0]["files"]["evidence_json"]).read_text())
        assert other_ev.hcl_report is not None
        other = HclReport.from_bytes(other_ev.hcl_report)
        if other.snp_report is not None and other.snp_report != hcl.snp_report:
            with pytest.raises(VerificationError) as info:
                verify_azure_vtpm_quote(ev.attest, ev.signature, hcl, nonce=nonce,
                                        pcrs=ev.pcrs, snp=replace(snp, report=other.snp_report))
            assert info.value.code == "tpm.azure.hw_report"


def test_source_asserted_claims_of_azure_v2() -> None:
    s = next((s for s in samples("azure-vtpm") if s["id"] == "azure-snp-vtpm-evidence-v2"), None)
    if s is None:
        pytest.skip("no evidence")
    case = quote_cases(s)[0]
    verified = _verify(case)
    assert verified.pcrs[HashAlg.SHA256][0].hex().startswith("84275b2f4312cd4f")
    assert verified.nonce.hex().startswith("982f5c6e45df0ed3f1")
    # v2 evidence: the runtime claims' user-data starts with the quote's report_data.
    assert case.hcl is not None
    user = bytes.fromhex(case.hcl.runtime_claims()["user-data"])
    assert user.startswith(verified.nonce)


def test_tpm2tools_ak_name_matches_the_file() -> None:
    s = next((s for s in samples("tpm") if s["id"] == "keylime-tpm2tools-quote-files"), None)
    if s is None:
        pytest.skip("no evidence")
    verified = _verify(quote_cases(s)[0])
    assert verified.ak_name == file_of(s, "ak_name").read_bytes()
    assert verified.ak_name is not None
    # The quote's qualifiedSigner is a Qualified Name (hashes in the parent): not the Name.
    assert verified.attest.qualified_signer != verified.ak_name


def test_gce_windows_replay_covers_the_manifest_pcrs() -> None:
    s = next((s for s in samples("gcp-vtpm")
              if s["id"] == "gce-windows-shielded-vm-quote-eventlog"), None)
    if s is None:
        pytest.skip("no evidence")
    verified = _verify(quote_cases(s)[0])
    # The manifest's replay matches [0, 4, 5, 7, 11-14]; 1, 2, 3, 6 have no events and are
    # checked at their reset value.
    assert sorted(i for _, i in verified.replayed) == [*range(8), 11, 12, 13, 14]
    raw = json.loads(file_of(s, "dump_json").read_text())
    assert raw["Quote"]["Nonce"] == ""


def test_ak_from_another_sample_is_rejected() -> None:
    plain = [c for c in CASES if c.hcl is None and c.ak is not None]
    if len(plain) < 2:
        pytest.skip("no samples")
    _expect("tpm.quote.signature", plain[0], ak=plain[-1].ak)


def test_evidence_dir_is_outside_the_project() -> None:
    assert "main" not in EVIDENCE_DIR.resolve().parts[-2:]


# -- synthetic quotes: every scheme, and forged structure --------------------------------
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
PCRS = {HashAlg.SHA256: pcr_values(HashAlg.SHA256, [0, 1, 7]),
        HashAlg.SHA1: pcr_values(HashAlg.SHA1, [0, 4])}


@pytest.mark.parametrize(("key", "alg", "hash_alg"), [
    (RSA_KEY, SigAlg.RSASSA, HashAlg.SHA256),
    (RSA_KEY, SigAlg.RSAPSS, HashAlg.SHA256),
    (RSA_KEY, SigAlg.RSASSA, HashAlg.SHA384),
    (EC_KEY, SigAlg.ECDSA, HashAlg.SHA256),
], ids=["rsassa", "rsapss", "rsassa-sha384", "ecdsa"])
def test_fake_tpm_quote_verifies_in_every_scheme(
        key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, alg: SigAlg,
        hash_alg: HashAlg) -> None:
    attest = make_attest(PCRS, b"nonce", hash_alg).to_bytes()
    sig = TpmtSignature.from_bytes(sign(key, attest, alg, hash_alg).to_bytes())
    verified = verify_quote(attest, sig, key.public_key(), nonce=b"nonce", pcrs=PCRS)
    assert verified.pcrs == PCRS


def test_quote_signed_with_the_wrong_scheme_key_type() -> None:
    attest = make_attest(PCRS, b"n", HashAlg.SHA256).to_bytes()
    sig = sign(EC_KEY, attest, SigAlg.ECDSA)
    with pytest.raises(VerificationError) as info:
        verify_quote(attest, sig, RSA_KEY.public_key(), nonce=b"n", pcrs=PCRS)
    assert info.value.code == "tpm.quote.signature"


def test_signed_data_without_tpm_generated_magic_is_rejected() -> None:
    # A non-restricted key can sign anything; the magic check stops such a "quote".
    attest = make_attest(PCRS, b"n", HashAlg.SHA256, magic=0x12345678).to_bytes()
    with pytest.raises(VerificationError) as info:
        verify_quote(attest, sign(RSA_KEY, attest), RSA_KEY.public_key(), nonce=b"n",
                     pcrs=PCRS)
    assert info.value.code == "tpm.quote.magic"


def test_certify_structure_is_not_a_quote() -> None:
    attest = make_attest(PCRS, b"n", HashAlg.SHA256, tag=StructureTag.ATTEST_TIME)
    raw = attest.to_bytes()
    with pytest.raises(VerificationError) as info:
        verify_quote(raw, sign(RSA_KEY, raw), RSA_KEY.public_key(), nonce=b"n", pcrs=PCRS)
    assert info.value.code == "tpm.quote.type"


def test_pcr_values_are_optional_but_recorded_as_skipped() -> None:
    attest = make_attest(PCRS, b"n", HashAlg.SHA256).to_bytes()
    verified = verify_quote(attest, sign(RSA_KEY, attest), RSA_KEY.public_key(), nonce=b"n",
                            pcrs=None)
    skipped = {f.code for f in verified.checks if f.outcome is Outcome.SKIP}
    assert "tpm.quote.pcr_digest" in skipped and verified.pcrs == {}


def test_unrestricted_ak_is_rejected() -> None:
    s = next((s for s in samples("tpm") if s["id"] == "keylime-tpm2tools-quote-files"), None)
    if s is None:
        pytest.skip("no evidence")
    case = quote_cases(s)[0]
    assert isinstance(case.ak, TpmtPublic)
    ak = replace(case.ak, object_attributes=case.ak.object_attributes & ~(1 << 16), raw=b"")
    _expect("tpm.ak.attributes", case, ak=ak)


def test_jwk_with_wrong_type_is_a_format_error() -> None:
    with pytest.raises(FormatError):
        jwk_public_key({"kty": "EC", "x": "AA", "y": "AA"})


# -- Parsec key attestation (veraison): TPM2_Certify + TPM2_Quote in CBOR ---------------------
def _parsec() -> tuple[dict[str, dict[str, bytes]], object, dict[str, object]]:
    import cbor2

    from veritee.collateral.tpm import load_spki_public_key

    s = next((s for s in samples("tpm") if s["id"] == "veraison-parsec-tpm-certify-quote"),
             None)
    if s is None:
        pytest.skip("no evidence")
    doc = cbor2.loads(file_of(s, "evidence_cbor").read_bytes())
    ak = load_spki_public_key(file_of(s, "attestation_key_pem").read_bytes())
    return doc, ak, s["known_fields"]


@pytest.mark.evidence
def test_parsec_platform_quote_verifies() -> None:
    doc, ak, kf = _parsec()
    pat = doc["pat"]
    sig = TpmtSignature.from_bytes(pat["sig"])
    assert sig.sig_alg is SigAlg.ECDSA
    verified = verify_quote(pat["attestInfo"], sig, ak,  # type: ignore[arg-type]
                            nonce=bytes.fromhex("deadbeefdeadbeef"), pcrs=None)
    quote = verified.quote
    assert quote.pcr_digest.hex() == kf["pat_quote"]["pcrDigest"]  # type: ignore[index]
    assert quote.selected() == [(HashAlg.SHA256, 0), (HashAlg.SHA256, 1), (HashAlg.SHA256, 2)]
    with pytest.raises(VerificationError) as info:
        verify_quote(pat["attestInfo"], sig, ak, nonce=b"\xde\xad",  # type: ignore[arg-type]
                     pcrs=None)
    assert info.value.code == "tpm.quote.nonce"


@pytest.mark.evidence
def test_parsec_key_certification_verifies() -> None:
    from veritee.trust.tpm import verify_certify

    doc, ak, kf = _parsec()
    kat = doc["kat"]
    pub = TpmtPublic.from_bytes(kat["pubArea"])
    verified = verify_certify(kat["certInfo"], TpmtSignature.from_bytes(kat["sig"]),
                              ak, nonce=bytes.fromhex("deadbeefdeadbeef"),  # type: ignore[arg-type]
                              certified=pub)
    assert pub.name().hex() == kf["attested_key"]["name"]  # type: ignore[index]
    assert verified.checks[-1].code == "tpm.certify.name"
    other = replace(pub, object_attributes=pub.object_attributes ^ 0x40, raw=b"")
    with pytest.raises(VerificationError) as info:
        verify_certify(kat["certInfo"], TpmtSignature.from_bytes(kat["sig"]), ak,  # type: ignore[arg-type]
                       nonce=bytes.fromhex("deadbeefdeadbeef"), certified=other)
    assert info.value.code == "tpm.certify.name"
    # A certify structure is not a quote.
    with pytest.raises(VerificationError) as info:
        verify_quote(kat["certInfo"], TpmtSignature.from_bytes(kat["sig"]), ak,  # type: ignore[arg-type]
                     nonce=bytes.fromhex("deadbeefdeadbeef"), pcrs=None)
    assert info.value.code == "tpm.quote.type"
