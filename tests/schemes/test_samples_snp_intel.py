"""Every real SEV-SNP / Azure SNP / TDX / Azure TDX / GCP TDX / SGX sample of both manifests goes
through the one front door, ``attest.verify``, and gets its manifest verdict.

Read in place from ../shared/evidence (never copied); every test skips without it. Each sample
is verified at the time the manifest records (``sample_time``), with the collateral the sample
ships (completed from ``roots/`` as the manifest says), under the production anchors unless the
manifest says the sample chains to its own (non-production) root. Valid samples are appraised
under :data:`~veritee.attest.UNSAFE_DEFAULT_POLICIES` without raising, so the test sees the
verification trace and the claims (TCB status, advisory IDs) whatever the default policy thinks
of them; invalid ones must raise the verification error the manifest describes.

Not evidence, so not here: ``snp-turin-vcek-chain-virtee-sev`` (a certificate chain alone,
tests/trust) and ``azure-tdx-hcl-kinvolk`` (an HCL format sample with nothing signed).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from veritee import attest, schemes
from veritee.errors import PolicyRejected, VerificationError
from veritee.findings import Outcome
from veritee.formats.intel import Quote
from veritee.policy import Appraisal

from _evidence import EVIDENCE_DIR, manifest_samples, sample_time
from _intel_support import INTEL_PREFIXES, load_sample, quote_file

pytestmark = pytest.mark.evidence

ROOTS = EVIDENCE_DIR / "roots"
NOT_EVIDENCE = {"snp-turin-vcek-chain-virtee-sev", "azure-tdx-hcl-kinvolk"}

# -- AMD -----------------------------------------------------------------------------------------

AMD = [s for p in ("snp/", "azure-snp/") for s in manifest_samples(p)
       if s["id"] not in NOT_EVIDENCE]
# MANIFEST-2: the Azure vTPM evidence carries an HCL-wrapped SEV-SNP report and its VCEK.
AZURE_VTPM_SNP = [s for s in manifest_samples("azure-vtpm/", "MANIFEST-2.json")
                  if "hcl_report" in s["files"] and "snp" in s["id"]]

# The step that refuses each invalid sample (tcb-byte384: the VEK/TCB binding runs before the
# report signature; kinvolk: the VCEK's hwID is another chip's, caught before the signature).
AMD_CODES = {
    "snp-neg-trustee-report-byte42": "sevsnp.report.signature",
    "snp-neg-virtee-report-byte21": "sevsnp.report.signature",
    "snp-neg-trustee-report-tcb-byte384": "sevsnp.vek.tcb_mismatch",
    "snp-milan-synthetic-vcek-hwid-encodings-trustee": "sevsnp.chain.vek_signature",
    "azure-snp-milan-v2-kinvolk-vcek-mismatch": "sevsnp.vek.hwid_mismatch",
}
_CERT_ROLES = ("vcek", "vcek_pem", "ask", "ark", "vcek_chain", "certs")


def _product(sample: dict[str, Any]) -> str:
    text = f"{sample.get('product') or ''} {sample['id']}".lower()
    return next((p for p in ("genoa", "turin") if p in text), "milan")


def _file(d: Path, name: str) -> Path:
    # MANIFEST-2 roles may carry a note after the file name.
    return d / name.split(" ", maxsplit=1)[0]


def _amd_evidence(sample: dict[str, Any]) -> tuple[bytes, list[list[Path]]]:
    """The report bytes and the collateral path lists to verify it with (one per VEK)."""
    d = EVIDENCE_DIR / sample["dir"]
    f = sample["files"]
    data = _file(d, f.get("hcl_report") or f["report"]).read_bytes()
    if data[:1] != b"\x02" and all(c in b"0123456789abcdefABCDEF\r\n " for c in data[:64]):
        data = bytes.fromhex(data.decode())
    base = [_file(d, n) for role, n in f.items() if role in _CERT_ROLES or "chain" in role]
    base.append(ROOTS / f"amd_{_product(sample)}_cert_chain_vcek.pem")
    veks = [_file(d, n) for role, n in f.items() if role.startswith("vcek_") and "hwid" in role]
    return data, ([[*base, v] for v in veks] if veks else [base])


def _amd_collateral(paths: list[Path]) -> schemes.Collateral:
    certs = schemes.get("sevsnp").load_collateral(paths)
    assert certs is not None
    return schemes.Collateral({"amd": certs})


def _accepted_verification(appraisal: Appraisal) -> None:
    assert appraisal.verification
    assert all(c.outcome is not Outcome.FAIL for c in appraisal.verification)


def _same_through_verify(evidence: bytes | attest.EvidencePart, appraisal: Appraisal,
                         **kwargs: Any) -> None:
    """``attest.verify`` (which raises on rejection) reaches the same verdict."""
    try:
        result = attest.verify(evidence, policy=attest.UNSAFE_DEFAULT_POLICIES, **kwargs)
    except PolicyRejected as rejected:
        assert not appraisal.accepted
        assert rejected.appraisal.codes() == appraisal.codes()
    else:
        assert appraisal.accepted and isinstance(result, Appraisal)
        assert result.claims == appraisal.claims


@pytest.mark.parametrize("sample", AMD, ids=lambda s: s["id"])
def test_amd_sample_gets_its_manifest_verdict(sample: dict[str, Any]) -> None:
    data, collaterals = _amd_evidence(sample)
    now = sample_time(sample)
    for paths in collaterals:
        verifier = attest.Verifier(collateral=_amd_collateral(paths))
        if sample["expected"].startswith("valid"):
            appraisal = verifier.appraise(data, policy=attest.UNSAFE_DEFAULT_POLICIES, now=now)
            assert isinstance(appraisal, Appraisal)
            _accepted_verification(appraisal)
            assert appraisal.tee == "sevsnp"
            codes = {c.code for c in appraisal.verification}
            assert "sevsnp.report.signature" in codes
            assert ("azure.hcl.report_data_binding" in codes) == ("hcl_report" in sample["files"])
            _same_through_verify(data, appraisal, collateral=_amd_collateral(paths), now=now)
        else:
            assert sample["expected"].startswith("invalid")
            with pytest.raises(VerificationError) as info:
                verifier.appraise(data, policy=attest.UNSAFE_DEFAULT_POLICIES, now=now)
            assert info.value.code == AMD_CODES[sample["id"]]


def test_every_invalid_amd_sample_has_its_code() -> None:
    if not AMD:
        pytest.skip("shared evidence not present")
    assert {s["id"] for s in AMD if not s["expected"].startswith("valid")} == set(AMD_CODES)


@pytest.mark.parametrize("sample", AZURE_VTPM_SNP, ids=lambda s: s["id"])
def test_azure_vtpm_hcl_report_verifies(sample: dict[str, Any]) -> None:
    """MANIFEST-2 records no time for these; the VCEK was valid from its notBefore, and the
    report is verified a month after it (the curator verified the chain and signature)."""
    data, [paths] = _amd_evidence(sample)
    collateral = _amd_collateral(paths)
    vek = collateral.get("amd").vek
    now = vek.not_valid_before_utc + timedelta(days=30)
    appraisal = attest.Verifier(collateral=collateral).appraise(
        data, policy=attest.UNSAFE_DEFAULT_POLICIES, now=now)
    assert isinstance(appraisal, Appraisal)
    _accepted_verification(appraisal)
    assert "azure.hcl.report_data_binding" in {c.code for c in appraisal.verification}


# -- Intel ---------------------------------------------------------------------------------------

INTEL = [s for p in INTEL_PREFIXES for s in manifest_samples(p) if quote_file(s)]
NO_MATCH, CHAIN_ONLY = "TcbNotSupported", None
# TCB status per Intel QVL rules as the manifest's curator records it (see
# tests/intel/test_intel_quotes.py for where teekit's simplified matching differs).
INTEL_STATUS: dict[str, tuple[str | None, tuple[str, ...] | None]] = {
    "tdx/v4-dcap-qvl-b0c06f-uptodate": ("UpToDate", ()),
    "tdx/v5-dcap-qvl-90c06f-outdated": (NO_MATCH, None),
    "tdx/v4-dcap-qvl-hex-b0c06f": (NO_MATCH, None),
    "tdx/v4-dcap-qvl-near-20a06f": ("UpToDate", None),
    "tdx/v4-go-tdx-guest-spr-50806f": (NO_MATCH, None),
    "tdx/v4-go-tdx-qpl-00806f05": ("UpToDate", None),
    "tdx/v4-trustee-gnr-a06d08": ("OutOfDate", None),
    "tdx/v4-trustee-50806f": ("OutOfDate", None),
    "tdx/v5-trustee-alibaba-90c06f": (NO_MATCH, None),
    "tdx/v4-moemahhouk-90c06f": (NO_MATCH, None),
    "tdx/v4-zkdcap-00806f05": ("OutOfDate", None),
    "gcp/tdx-v4-go-tdx-guest-cos113": ("UpToDate", None),
    "gcp/tdx-v4-teekit": ("UpToDate", None),
    "azure-tdx/v4-trustee": ("OutOfDate", None),
    "azure-tdx/v4-teekit": ("UpToDate", None),
    "sgx/v3-dcap-qvl-00a067": ("ConfigurationAndSWHardeningNeeded",
                               ("INTEL-SA-00289", "INTEL-SA-00615")),
    "sgx/v3-trustee-occlum-00606a": (CHAIN_ONLY, None),
    "sgx/v3-occlum-30606a": ("OutOfDate", None),
    "sgx/v3-tlsn-quote9-00906ed5": ("SWHardeningNeeded", None),
}
# Chains to Intel's non-production sample root: refused by the production pin; under the
# sample root (given explicitly) the SGX one is valid and the TDX one's QE Identity mismatches.
NON_PRODUCTION = {"tdx/v4-intel-qvl-sample-nonprod-root": "intel.qe_identity.mismatch",
                  "sgx/v3-intel-qvl-sample-nonprod-root": None}


def _part(data: bytes) -> attest.EvidencePart:
    """The quote as evidence; a quote with bytes after its signature data (go-tdx-guest's
    test quote) goes to the scheme configured to accept them, as ``--allow-nonzero-trailer``."""
    scheme = schemes.recognise(data)
    quote = Quote.from_bytes(data, allow_nonzero_trailer=True)
    if any(quote.trailer):
        return attest.EvidencePart(data, scheme=scheme.with_options(  # type: ignore[attr-defined]
            allow_nonzero_trailer=True))
    return attest.EvidencePart(data, scheme=scheme)


def test_every_intel_sample_has_an_expectation() -> None:
    if not INTEL:
        pytest.skip("shared evidence not present")
    assert {s["dir"] for s in INTEL} == set(INTEL_STATUS) | set(NON_PRODUCTION)


@pytest.mark.parametrize("sample", INTEL, ids=lambda s: s["dir"])
def test_intel_sample_gets_its_manifest_verdict(sample: dict[str, Any]) -> None:
    s = load_sample(sample)
    part = _part(s.quote_bytes)
    coll = schemes.Collateral({"intel": s.collateral})
    production = attest.Verifier(collateral=coll)
    if sample["dir"] in NON_PRODUCTION:
        with pytest.raises(VerificationError) as info:
            production.appraise(part, policy=attest.UNSAFE_DEFAULT_POLICIES, now=s.now)
        assert info.value.code == "intel.chain.root_untrusted"
        assert s.sample_root is not None
        own = attest.Verifier(collateral=coll,
                              anchors=schemes.Anchors({"intel": [s.sample_root]}))
        code = NON_PRODUCTION[sample["dir"]]
        if code is not None:
            with pytest.raises(VerificationError) as info:
                own.appraise(part, policy=attest.UNSAFE_DEFAULT_POLICIES, now=s.now)
            assert info.value.code == code
            return
        appraisal = own.appraise(part, policy=attest.UNSAFE_DEFAULT_POLICIES, now=s.now)
        assert isinstance(appraisal, Appraisal)
        _accepted_verification(appraisal)
        assert appraisal.claims["tcb_status"] == "UpToDate"
        return
    appraisal = production.appraise(part, policy=attest.UNSAFE_DEFAULT_POLICIES, now=s.now)
    assert isinstance(appraisal, Appraisal)
    _accepted_verification(appraisal)
    _same_through_verify(part, appraisal, collateral=coll, now=s.now)
    tee = "sgx" if sample["dir"].startswith("sgx/") else "tdx"
    assert appraisal.tee == tee and appraisal.claims["tee"] == tee
    status, advisories = INTEL_STATUS[sample["dir"]]
    assert appraisal.claims["tcb_status"] == status
    if advisories is not None:
        assert tuple(appraisal.claims["advisory_ids"]) == advisories
    assert appraisal.vector is not None
    # Only an UpToDate TCB whose QE Identity and CRLs were checked affirms the hardware (AR4SI).
    hardware = appraisal.vector["hardware"]
    if (status == "UpToDate" and appraisal.claims["qe_identity_verified"]
            and appraisal.claims["revocation_checked"]):
        assert hardware == 2
    elif status in (NO_MATCH, CHAIN_ONLY):
        assert hardware in (0, 32)  # a failed TCB status check: not affirmed
    else:
        assert hardware != 2


def test_a_tampered_real_quote_is_refused_through_the_front_door() -> None:
    found = [s for s in INTEL if s["dir"] == "tdx/v4-dcap-qvl-b0c06f-uptodate"]
    if not found:
        pytest.skip("sample not present")
    s = load_sample(found[0])
    data = bytearray(s.quote_bytes)
    data[48 + 520] ^= 1  # inside REPORTDATA of the TD 1.0 body
    with pytest.raises(VerificationError) as info:
        attest.verify(bytes(data), policy=attest.UNSAFE_DEFAULT_POLICIES, now=s.now,
                      collateral=schemes.Collateral({"intel": s.collateral}))
    assert info.value.code == "intel.quote.signature"


AZURE_VTPM_TDX = [s for s in manifest_samples("azure-vtpm/", "MANIFEST-2.json")
                  if "td_quote" in s["files"]]


@pytest.mark.parametrize("sample", AZURE_VTPM_TDX, ids=lambda s: s["id"])
def test_azure_vtpm_td_quote_chain_verifies(sample: dict[str, Any]) -> None:
    """MANIFEST-2 leaves DCAP to the TDX samples and records no time: the PCK chain and the
    quote signature are verified a month after the PCK certificate's notBefore (no TCB Info
    ships with it, so the TCB status is unknown)."""
    d = EVIDENCE_DIR / sample["dir"]
    data = _file(d, sample["files"]["td_quote"]).read_bytes()
    quote = Quote.from_bytes(data, allow_nonzero_trailer=True)
    chain = quote.signature_data.qe.certification_data.pck_chain_bytes
    assert chain is not None
    pck = x509.load_pem_x509_certificates(chain)[0]
    now = pck.not_valid_before_utc + timedelta(days=30)
    appraisal = attest.Verifier().appraise(_part(data), policy=attest.UNSAFE_DEFAULT_POLICIES,
                                           now=now)
    assert isinstance(appraisal, Appraisal)
    _accepted_verification(appraisal)
    assert appraisal.claims["tcb_status"] is None


# -- the same samples through `veritee verify` and `veritee appraise` ----------------------------


def _intel_files(sample: dict[str, Any]) -> list[Path]:
    """The sample's collateral files as a user names them with --certs (as load_sample reads
    them: the minified TCB Info where the shipped one was pretty-printed, the 2025 TCB
    Signing certificate where no issuer chain ships)."""
    from _intel_support import TCB_SIGNING_2025

    d = EVIDENCE_DIR / sample["dir"]
    f = sample["files"]
    roles = ["collateral", "collateral_same_fmspc", "qe_identity", "pck_crl", "root_crl",
             "pck_cert", "pck_sign_chain", "tcb_info_issuer_chain", "tcb_signing_chain",
             "tcb_sign_chain", "qe_identity_issuer_chain"]
    roles.append("tcb_info_minified" if "tcb_info_minified" in f else "tcb_info")
    files = [d / f[r] for r in roles if r in f]
    if "tcb_info" in f and not any(r in f for r in ("tcb_info_issuer_chain",
                                                    "tcb_signing_chain", "tcb_sign_chain")):
        files.append(TCB_SIGNING_2025)
    return files


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    import json

    from veritee.cli import main

    code = main([*argv, "--format", "json"])
    return code, json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("sample", INTEL, ids=lambda s: s["dir"])
def test_intel_sample_through_the_cli(sample: dict[str, Any],
                                      capsys: pytest.CaptureFixture[str]) -> None:
    s = load_sample(sample)
    argv = [str(EVIDENCE_DIR / sample["dir"] / str(quote_file(sample))),
            "--at", s.now.isoformat()]
    for path in _intel_files(sample):
        argv += ["--certs", str(path)]
    if any(Quote.from_bytes(s.quote_bytes, allow_nonzero_trailer=True).trailer):
        argv.append("--allow-nonzero-trailer")
    if sample["dir"] in NON_PRODUCTION:
        code, doc = _cli(capsys, "verify", *argv)
        assert code == 4 and doc["error"]["code"] == "intel.chain.root_untrusted"
        root = EVIDENCE_DIR / sample["dir"] / sample["files"]["sample_root"]
        argv += ["--trust-root", str(root)]
        want = NON_PRODUCTION[sample["dir"]]
        code, doc = _cli(capsys, "verify", *argv)
        if want is not None:
            assert code == 4 and doc["error"]["code"] == want
            return
        assert code == 0 and doc["tcb_status"] == "UpToDate"
        return
    code, doc = _cli(capsys, "verify", *argv)
    assert code == 0, doc
    assert doc["tcb_status"] == INTEL_STATUS[sample["dir"]][0]
    code, doc = _cli(capsys, "appraise", *argv)
    assert code in (0, 6)
    assert doc["verdict"] == ("accepted" if code == 0 else "rejected")
    assert doc["claims"]["tcb_status"] == INTEL_STATUS[sample["dir"]][0]


@pytest.mark.parametrize("sample", AMD, ids=lambda s: s["id"])
def test_amd_sample_through_the_cli(sample: dict[str, Any], tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    data, collaterals = _amd_evidence(sample)
    (tmp_path / "evidence.bin").write_bytes(data)
    for paths in collaterals:
        argv = [str(tmp_path / "evidence.bin"), "--at", sample_time(sample).isoformat()]
        for path in paths:
            argv += ["--certs", str(path)]
        code, doc = _cli(capsys, "verify", *argv)
        if not sample["expected"].startswith("valid"):
            assert code == 4 and doc["error"]["code"] == AMD_CODES[sample["id"]]
            continue
        assert code == 0 and doc["scheme"] == "sevsnp", doc
        assert doc["revocation"]["checked"] is False  # no sample ships the ARK's CRL
        code, doc = _cli(capsys, "appraise", *argv)
        assert code == 6 and "sevsnp.revocation.unchecked" in doc["error"]["message"]
