"""Every TPM / GCE vTPM / Azure vTPM / event-log sample in both manifests gets its manifest
verdict through the one front door (``attest.verify``), or, for bare event logs and
certificate-only samples, through the event-log / certificate API.

Samples whose files are loose tpm2-tools outputs (keylime) or another container (Parsec CBOR)
are put into the ``tpm`` scheme's container here, byte for byte (nothing is copied into the
repository). Where the default policy refuses a sample the manifest calls valid, the test says
why and shows the policy setting that accepts it.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from veritee import attest
from veritee.collateral.tpm import (
    load_go_attestation_dump,
    load_spki_public_key,
    load_trustee_azure_vtpm,
    load_trustee_tpm,
)
from veritee.crypto.amd_certs import load_certificates
from veritee.errors import PolicyRejected, VerificationError
from veritee.formats.eventlog import EventLog
from veritee.formats.tpm import (
    HashAlg,
    TpmsAttest,
    TpmtSignature,
    encode_tpm_evidence_json,
    parse_tpm2b_public,
    parse_tpm2tools_pcrs,
)
from veritee.policy import Appraisal
from veritee.policy.tpm import TpmPolicy, ak_pin
from veritee.schemes import Collateral, get, recognise
from veritee.trust.sevsnp import AmdCertificates, parse_vek_extensions
from veritee.trust.tpm import TpmAnchors, ak_spki, replay_event_log
from veritee.trust.tpm_ek import verify_ek_chain, verify_tpm_cert_chain

from _evidence import EVIDENCE_DIR, evidence_available, sample_time
from _tpm_support import file_of, samples

pytestmark = [pytest.mark.evidence,
              pytest.mark.filterwarnings("ignore:Attribute's length:UserWarning")]

FAMILIES = ("tpm", "gcp-vtpm", "azure-vtpm", "eventlog")
ALL = samples(*FAMILIES)
GCE_TIME = datetime(2025, 1, 1, tzinfo=UTC)  # inside every GCE chain's validity window
AZURE_SNP_TIME = datetime(2025, 6, 1, tzinfo=UTC)  # the Azure VCEKs: 2025-01 .. 2032-01


def _by_id(sid: str) -> dict[str, Any]:
    found = next((s for s in ALL if s["id"] == sid), None)
    if found is None:
        pytest.skip("shared evidence not present")
    return found


def _pinned(ak: Any, **kw: Any) -> TpmPolicy:
    return TpmPolicy(ak_pins=frozenset({ak_pin(ak)}), **kw)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# -- tpm ---------------------------------------------------------------------------------------
def test_keylime_checkquote_through_the_front_door() -> None:
    """keylime's checkquote sample: AK as PEM (bare: pinned by the relying party), nonce ASCII
    in extraData, PCR 16 of the SHA-256 bank. Valid; a tampered quote byte fails the
    signature (keylime's own negative test), a wrong nonce the binding."""
    s = _by_id("keylime-checkquote-rsa2048-sha256")
    ak = load_spki_public_key(file_of(s, "ak_public_key").read_bytes())
    attest_bytes = file_of(s, "quote_tpms_attest").read_bytes()
    sig = TpmtSignature.from_bytes(file_of(s, "signature_tpmt_signature").read_bytes())
    pcrs = parse_tpm2tools_pcrs(file_of(s, "pcr_values").read_bytes())
    nonce = file_of(s, "nonce").read_bytes().strip()
    ev = encode_tpm_evidence_json(ak_spki_der=ak_spki(ak), attest=attest_bytes, signature=sig,
                                  pcrs=pcrs)
    a = attest.verify(ev, policy=_pinned(ak), expected_binding=nonce)
    assert isinstance(a, Appraisal) and a.accepted
    assert a.claims["pcrs"]["sha256"]["16"] == s["known_fields"]["pcr_values"]["sha256"]["16"]
    flipped = bytearray(attest_bytes)
    flipped[5] ^= 1
    bad = encode_tpm_evidence_json(ak_spki_der=ak_spki(ak), attest=bytes(flipped),
                                   signature=sig, pcrs=pcrs)
    with pytest.raises(VerificationError) as info:
        attest.verify(bad, policy=_pinned(ak), expected_binding=nonce)
    assert info.value.code == "tpm.quote.signature"
    with pytest.raises(PolicyRejected) as rejected:
        attest.verify(ev, policy=_pinned(ak), expected_binding=b"B" + nonce[1:])
    assert rejected.value.appraisal.codes() == ["tpm.binding.mismatch"]


def test_keylime_tpm2tools_files_with_the_ak_attributes() -> None:
    """The TPM2B_PUBLIC AK (0x50072: fixedTPM|fixedParent|sensitiveDataOrigin|restricted|sign)
    travels as ak_tpmt_public, so its attributes are checked; the curator's verdict: valid."""
    s = _by_id("keylime-tpm2tools-quote-files")
    ak = parse_tpm2b_public(file_of(s, "ak_tpm2b_public").read_bytes())
    ev = encode_tpm_evidence_json(
        ak_spki_der=ak_spki(ak), attest=file_of(s, "quote_tpms_attest").read_bytes(),
        signature=TpmtSignature.from_bytes(file_of(s, "signature_tpmt_signature").read_bytes()),
        pcrs=parse_tpm2tools_pcrs(file_of(s, "pcr_values").read_bytes()), ak_public=ak)
    nonce = bytes.fromhex(s["known_fields"]["extraData_hex"])
    a = attest.verify(ev, policy=_pinned(ak), expected_binding=nonce)
    assert isinstance(a, Appraisal) and a.accepted
    assert a.claims["ak_name"] == s["known_fields"]["ak_name"]
    assert a.claims["ak_attributes"] == "0x00050072"


def test_trustee_tpm_fixture_as_it_is() -> None:
    """Trustee's own tpm evidence JSON, unchanged: valid under a pin (Trustee's AK trust comes
    from registration; the sample has no AK certificate); refused by default as unbound."""
    s = _by_id("trustee-tpm-verifier-fixture")
    data = file_of(s, "evidence_json").read_bytes()
    assert recognise(data).name == "tpm"
    ev = load_trustee_tpm(data)
    extra = bytes.fromhex(s["known_fields"]["extraData"])
    a = attest.verify(data, policy=_pinned(ev.ak), expected_binding=extra)
    assert isinstance(a, Appraisal) and len(a.claims["pcrs"]["sha256"]) == 24
    assert a.claims["binding"] == s["known_fields"]["extraData"]
    with pytest.raises(PolicyRejected) as info:
        attest.verify(data, policy=TpmPolicy(), expected_binding=extra)
    assert info.value.appraisal.codes() == ["tpm.ak.properties", "tpm.ak.unbound"]


def test_parsec_platform_attestation_token() -> None:
    """Veraison's Parsec TPM evidence: the platform attestation token (a TPM2_Quote signed by
    the CoMID trust anchor's ECC key) through the tpm scheme. It carries no PCR values (the
    digest is compared with CoRIM reference values by Veraison), so the digest check is
    skipped and no PCR is claimed; the key attestation token is a TPM2_Certify, outside the
    quote scheme (trust.tpm.verify_certify, tests/tpm)."""
    import cbor2

    s = _by_id("veraison-parsec-tpm-certify-quote")
    doc = cbor2.loads(file_of(s, "evidence_cbor").read_bytes())
    pat = doc["pat"]
    ak = load_spki_public_key(file_of(s, "attestation_key_pem").read_bytes())
    ev = json.dumps({"ak_public": _b64(ak_spki(ak)),
                     "tpm_quote": {"message": _b64(pat["attestInfo"]),
                                   "signature": _b64(pat["sig"]), "pcrs": {}}}).encode()
    a = attest.verify(ev, policy=_pinned(ak), expected_binding=bytes.fromhex("deadbeefdeadbeef"))
    assert isinstance(a, Appraisal) and a.claims["pcrs"] == {}
    skipped = [c for c in a.verification if c.code == "tpm.quote.pcr_digest"]
    assert skipped and skipped[0].outcome.value == "skip"


@pytest.mark.parametrize("sid", ["infineon-slb9670-ek-rsa", "infineon-slb9670-ek-ecc"])
def test_ek_certificate_samples_chain_to_their_roots(sid: str) -> None:
    """Certificate-only samples (no evidence to send): the EK chain the tpm anchors would use,
    at a time inside the manifest's common validity window."""
    s = _by_id(sid)
    chain = verify_ek_chain(file_of(s, "ek_certificate").read_bytes(),
                            [file_of(s, "intermediate_ca").read_bytes()],
                            roots=[file_of(s, "root_ca").read_bytes()],
                            now=datetime(2024, 1, 1, tzinfo=UTC),
                            ek_public=parse_tpm2b_public(
                                file_of(s, "ek_public_tpm2b").read_bytes()))
    assert chain.model == "SLB 9670 TPM2.0"


# -- gcp-vtpm ----------------------------------------------------------------------------------
def test_gce_attestation_protobuf_with_the_ak_certificate() -> None:
    """go-tpm-tools' GCE COS attestation: both quotes (SHA-1 and SHA-256 banks), the event
    log replayed in both, the AK certificate chained to GCE's EK/AK CA: valid, and the AK is
    bound by certificate (hardware affirming). Without the roots the AK is unbound; a quote
    whose extraData is not the challenge fails the binding."""
    s = _by_id("gce-cos-85-no-nonce")
    data = file_of(s, "attestation_protobuf").read_bytes()
    assert recognise(data).name == "tpm"
    roots = get("tpm").load_collateral([file_of(s, "ek_ak_root"),
                                        file_of(s, "ek_ak_intermediate")])
    assert isinstance(roots, TpmAnchors) and len(roots.roots) == 1
    a = attest.verify(data, policy=TpmPolicy(), collateral=Collateral({"tpm": roots}),
                      now=GCE_TIME, expected_binding=b"")
    assert isinstance(a, Appraisal)
    assert a.claims["ak_binding"] == "certificate"
    assert a.vector is not None and a.vector["hardware"] == 2
    assert {"sha1", "sha256"} <= set(a.claims["pcrs"])
    for q in s["known_fields"]["quotes"]:
        for index, value in q["pcr_values"].items():
            assert a.claims["pcrs"][q["bank"]][index] == value
        replayed = {int(x.split(":")[1]) for x in a.claims["event_log_replayed"]
                    if x.startswith(q["bank"] + ":")}
        assert set(q["replay_matches_pcrs"]) <= replayed
    revocation = next(c for c in a.verification if c.code == "tpm.ak.revocation")
    assert revocation.outcome.value == "skip"  # said, not hidden
    from veritee.errors import CollateralError

    with pytest.raises(CollateralError):  # a verifier that requires revocation refuses
        attest.verify(data, policy=TpmPolicy(), collateral=Collateral({"tpm": roots}),
                      now=GCE_TIME, expected_binding=b"", require_revocation=True)
    with pytest.raises(PolicyRejected) as info:
        attest.verify(data, policy=TpmPolicy(), now=GCE_TIME, expected_binding=b"")
    assert info.value.appraisal.codes() == ["tpm.ak.unbound"]
    with pytest.raises(PolicyRejected) as info:
        attest.verify(data, policy=TpmPolicy(), collateral=Collateral({"tpm": roots}),
                      now=GCE_TIME, expected_binding=bytes(32))
    assert info.value.appraisal.codes() == ["tpm.binding.mismatch"]


def test_gce_ak_certificate_from_the_wrong_ca_is_a_verification_error() -> None:
    """Roots that do not issue this AK certificate (GCE's newer EK/AK CA): the presented
    certificate does not chain, which is an error, not an unbound AK."""
    s = _by_id("gce-cos-85-no-nonce")
    cas = _by_id("gce-vtpm-ek-ak-certs")
    other = get("tpm").load_collateral([file_of(cas, "ca_gcp_ek_ak_ca_root"),
                                        file_of(cas, "ca_gcp_ek_ak_ca_intermediate_v3")])
    with pytest.raises(VerificationError) as info:
        attest.verify(file_of(s, "attestation_protobuf").read_bytes(), policy=TpmPolicy(),
                      collateral=Collateral({"tpm": other}), now=GCE_TIME,
                      expected_binding=b"")
    assert info.value.code.startswith("tpm.ek.") or info.value.code == "tpm.ak.certificate"


def test_gce_certificates_sample_chains_and_loads_as_tpm_collateral() -> None:
    """The GCE vTPM EK/AK certificates (no evidence): each leaf chains along the manifest's
    verified path, and the directory loads as tpm collateral (CAs only, leaves left out)."""
    s = _by_id("gce-vtpm-ek-ak-certs")
    loaded = get("tpm").load_collateral([EVIDENCE_DIR / s["dir"]])
    assert isinstance(loaded, TpmAnchors)
    subjects = {c.subject for c in loaded.roots}
    for role, fields in s["known_fields"].items():
        if not isinstance(fields, dict) or "verified_path" not in fields:
            continue
        path = [file_of(s, r if r in s["files"] else f"ca_{r}").read_bytes()
                for r in fields["verified_path"]]
        chain = verify_tpm_cert_chain(path[0], path[1:-1], roots=[path[-1]], now=GCE_TIME)
        assert chain.root.subject in subjects, role


def test_gce_windows_dump_is_sha1_refused_by_default_and_valid_when_allowed() -> None:
    """go-attestation's Windows Shielded VM dump: SHA-1 bank signed with SHA-1. The default
    policy refuses SHA-1 (tpm.hash.weak); with allow_sha1 (and the AK pinned: the dump has no
    AK certificate) it is valid, as go-attestation's test asserts."""
    s = _by_id("gce-windows-shielded-vm-quote-eventlog")
    data = file_of(s, "dump_json").read_bytes()
    ak = load_go_attestation_dump(data).ak
    with pytest.raises(PolicyRejected) as info:
        attest.verify(data, policy=_pinned(ak), expected_binding=b"")
    assert info.value.appraisal.codes() == ["tpm.hash.weak"]
    a = attest.verify(data, policy=_pinned(ak, allow_sha1=True), expected_binding=b"")
    assert isinstance(a, Appraisal)
    assert a.claims["pcrs"]["sha1"]["0"] == s["known_fields"]["pcrs"]["sha1"]["0"]


# -- azure-vtpm --------------------------------------------------------------------------------
def _amd_collateral(vcek: bytes) -> Collateral:
    vek = load_certificates(vcek, source="vcek")[0]
    product = parse_vek_extensions(vek).product
    chain = EVIDENCE_DIR / "roots" / f"amd_{product.value.lower()}_cert_chain_vcek.pem"
    ask, ark = load_certificates(chain.read_bytes(), source=str(chain))
    return Collateral({"amd": AmdCertificates(ark=ark, ask=ask)})


def _azure_snp_cases() -> list[tuple[str, str]]:
    out = []
    for s in samples("azure-vtpm"):
        for role in ("evidence_json",):
            if role in s["files"]:
                out.append((s["id"], role))
    return out


@pytest.mark.parametrize(("sid", "role"), _azure_snp_cases())
def test_azure_snp_vtpm_evidence(sid: str, role: str) -> None:
    """Trustee's az-snp-vtpm evidence (v0, v1, v2, Genoa): the SNP report verified to the
    genuine AMD ARK, bound to the HCL runtime claims and the AK; valid with the report data the
    manifest names. Another challenge fails the binding."""
    s = _by_id(sid)
    data = file_of(s, role).read_bytes()
    assert recognise(data).name == "az-snp-vtpm"
    ev = load_trustee_azure_vtpm(data)
    assert ev.vcek is not None
    extra = bytes.fromhex(s["known_fields"]["quote"]["extraData"])
    a = attest.verify(data, policy=TpmPolicy(), collateral=_amd_collateral(ev.vcek),
                      now=AZURE_SNP_TIME, expected_binding=extra)
    assert isinstance(a, Appraisal) and a.claims["ak_binding"] == "azure-hcl"
    assert a.claims["debug"] is False
    want0 = s["known_fields"].get("pcrs_sha256", {}).get("0")
    if want0:
        assert a.claims["pcrs"]["sha256"]["0"] == want0
    with pytest.raises(PolicyRejected) as info:
        attest.verify(data, policy=TpmPolicy(), collateral=_amd_collateral(ev.vcek),
                      now=AZURE_SNP_TIME, expected_binding=extra[::-1])
    assert info.value.appraisal.codes() == ["az-snp-vtpm.binding.mismatch"]


def test_azure_unit_hcl_and_quote_and_trustees_negative_mutations() -> None:
    """Trustee's unit-test files (a raw HCL report and a quote JSON) in one container: valid
    with 'challenge'; the source's mutations are refused (flipped signature byte, HCL variable
    data changed, a PCR changed)."""
    s = _by_id("azure-snp-vtpm-unit-hcl-and-quote")
    quote = json.loads(file_of(s, "tpm_quote_json").read_text())
    hcl = file_of(s, "hcl_report").read_bytes()
    vcek = file_of(s, "vcek_pem").read_bytes()

    def container(q: dict[str, Any], h: bytes) -> bytes:
        return json.dumps({"version": 1, "tpm_quote": q, "vcek": vcek.decode(),
                           "hcl_report": base64.urlsafe_b64encode(h).decode().rstrip("=")
                           }).encode()

    col = _amd_collateral(vcek)
    ok = attest.verify(container(quote, hcl), policy=TpmPolicy(), collateral=col,
                       now=AZURE_SNP_TIME, expected_binding=b"challenge")
    assert isinstance(ok, Appraisal) and ok.accepted
    sig = bytearray.fromhex(quote["signature"])
    sig[0] ^= 1
    with pytest.raises(VerificationError) as info:
        attest.verify(container({**quote, "signature": sig.hex()}, hcl), policy=TpmPolicy(),
                      collateral=col, now=AZURE_SNP_TIME, expected_binding=b"challenge")
    assert info.value.code == "tpm.quote.signature"
    changed = bytearray(hcl)
    changed[0x06E0] ^= 1  # inside the runtime claims: no longer the hash in REPORT_DATA
    with pytest.raises(VerificationError) as info:
        attest.verify(container(quote, bytes(changed)), policy=TpmPolicy(), collateral=col,
                      now=AZURE_SNP_TIME, expected_binding=b"challenge")
    assert info.value.code in ("tpm.azure.report_data", "sevsnp.report.signature")
    pcrs = list(quote["pcrs"])
    first = bytearray.fromhex(pcrs[0])
    first[0] ^= 1
    pcrs[0] = first.hex()
    with pytest.raises(VerificationError) as info:
        attest.verify(container({**quote, "pcrs": pcrs}, hcl), policy=TpmPolicy(),
                      collateral=col, now=AZURE_SNP_TIME, expected_binding=b"challenge")
    assert info.value.code == "tpm.quote.pcr_digest"


def _tdx_time() -> datetime:
    data = json.loads((EVIDENCE_DIR / "MANIFEST.json").read_text())
    sample = next(s for s in data["samples"] if s["dir"] == "azure-tdx/v4-trustee")
    return sample_time(sample)


@pytest.mark.parametrize("role", ["evidence_json_v0", "evidence_json_v1"])
def test_azure_tdx_vtpm_evidence(role: str) -> None:
    """Trustee's az-tdx-vtpm evidence: the TD quote verified to the genuine Intel root (at the
    time the MANIFEST.json TDX sample records), its REPORTDATA = the TDREPORT's, the HCL
    binding, the quote by HCLAkPub: valid with 'challenge'."""
    s = _by_id("azure-tdx-vtpm")
    data = file_of(s, role).read_bytes()
    assert recognise(data).name == "az-tdx-vtpm"
    a = attest.verify(data, policy=TpmPolicy(), now=_tdx_time(), expected_binding=b"challenge")
    assert isinstance(a, Appraisal) and a.claims["ak_binding"] == "azure-hcl"
    passed = {c.code for c in a.verification if c.outcome.value == "pass"}
    assert {"tpm.azure.hw_report", "tpm.azure.report_data", "tpm.quote.signature"} <= passed


def _manifest1_azure() -> list[dict[str, Any]]:
    if not evidence_available():
        return []
    data = json.loads((EVIDENCE_DIR / "MANIFEST.json").read_text())
    return [s for s in data["samples"] if s["dir"].startswith("azure-snp/")
            and "evidence_json" in s["files"]]


@pytest.mark.parametrize("sample", _manifest1_azure(), ids=lambda s: s["id"])
def test_manifest1_azure_snp_evidence_json(sample: dict[str, Any]) -> None:
    """MANIFEST.json's Trustee Azure SNP evidence JSONs through the same front door, at the
    time the manifest records."""
    base = EVIDENCE_DIR / sample["dir"]
    data = (base / sample["files"]["evidence_json"]).read_bytes()
    ev = load_trustee_azure_vtpm(data)
    assert ev.vcek is not None
    extra = TpmsAttest.from_bytes(ev.attest).extra_data
    a = attest.verify(data, policy=TpmPolicy(), collateral=_amd_collateral(ev.vcek),
                      now=sample_time(sample), expected_binding=extra)
    assert isinstance(a, Appraisal) and a.accepted


# -- eventlog ----------------------------------------------------------------------------------
LOGS = samples("eventlog")


@pytest.mark.parametrize("sample", LOGS, ids=lambda s: s["id"])
def test_event_log_sample_gets_its_verdict(sample: dict[str, Any]) -> None:
    """Bare logs (no quote): parsed and replayed; where the source asserts PCR values, the
    replay equals them (trust.tpm.replay_event_log, what 'tpm eventlog --pcrs' runs)."""
    log = EventLog.from_bytes(file_of(sample, "event_log").read_bytes())
    assert len(log.events) + (1 if log.crypto_agile else 0) == sample["known_fields"]["n_events"]
    assert log.replay_all()
    asserted = sample["known_fields"].get("source_asserted_pcrs")
    if not asserted:
        return  # the manifest's verdict is "parses"
    values = {HashAlg.from_name(b): {int(i): bytes.fromhex(v) for i, v in pcrs.items()}
              for b, pcrs in asserted.items()}
    result = replay_event_log(log, values)
    assert result.ok, result.mismatched
    assert result.workaround is None


def test_every_sample_is_covered() -> None:
    """Each sample of the four families is exercised by a test above (by id or family)."""
    if not ALL:
        pytest.skip("shared evidence not present")
    named = {"keylime-checkquote-rsa2048-sha256", "keylime-tpm2tools-quote-files",
             "trustee-tpm-verifier-fixture", "veraison-parsec-tpm-certify-quote",
             "infineon-slb9670-ek-rsa", "infineon-slb9670-ek-ecc", "gce-cos-85-no-nonce",
             "gce-vtpm-ek-ak-certs", "gce-windows-shielded-vm-quote-eventlog",
             "azure-snp-vtpm-unit-hcl-and-quote", "azure-tdx-vtpm",
             *(sid for sid, _ in _azure_snp_cases())}
    assert {s["id"] for s in ALL if s["family"] != "eventlog"} <= named
    assert Path(EVIDENCE_DIR).is_dir() and isinstance(x509.Certificate, type)


@pytest.mark.parametrize("name", ["tpm", "az-snp-vtpm", "az-tdx-vtpm"])
def test_scheme_contract(name: str) -> None:
    """Registered, a Scheme, the default policy round-trips through its mapping form."""
    from veritee.schemes import Scheme, names

    scheme = get(name)
    assert isinstance(scheme, Scheme) and name in names()
    policy = scheme.default_policy()
    assert isinstance(policy, scheme.policy_type)
    assert scheme.policy_from_mapping(scheme.policy_to_mapping(policy)) == policy
    assert scheme.binding_size == 32


def test_common_claims_of_each_scheme() -> None:
    from veritee.schemes import COMMON_CLAIMS

    s = _by_id("trustee-tpm-verifier-fixture")
    data = file_of(s, "evidence_json").read_bytes()
    a = attest.verify(data, policy=_pinned(load_trustee_tpm(data).ak),
                      expected_binding=bytes.fromhex(s["known_fields"]["extraData"]))
    assert isinstance(a, Appraisal) and set(COMMON_CLAIMS) <= set(a.claims)
    json.dumps(a.claims)  # JSON-ready
    az = _by_id("azure-snp-vtpm-evidence-v2")
    data = file_of(az, "evidence_json").read_bytes()
    ev = load_trustee_azure_vtpm(data)
    assert ev.vcek is not None
    b = attest.verify(data, policy=TpmPolicy(), collateral=_amd_collateral(ev.vcek),
                      now=AZURE_SNP_TIME,
                      expected_binding=bytes.fromhex(az["known_fields"]["quote"]["extraData"]))
    assert isinstance(b, Appraisal) and set(COMMON_CLAIMS) <= set(b.claims)
    assert b.claims["measurement"] and json.dumps(b.claims)
