"""Real SEV-SNP evidence from ../shared/evidence: every ``snp/`` sample gets its manifest verdict.

Read in place (never copied); every test skips when the corpus is absent.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest

from veritee.crypto.amd_certs import AmdCertificate, load_certificates
from veritee.errors import VerificationError
from veritee.formats.sevsnp import AttestationReport, Product, SigningKey
from veritee.trust.roots import AMD_ARK_SHA256, TrustAnchors, fingerprint
from veritee.trust.sevsnp import (
    AmdCertificates,
    VerifiedReport,
    parse_vek_extensions,
    verify_chain,
    verify_report,
)

from _evidence import load_manifest, manifest_samples, sample_time

pytestmark = pytest.mark.evidence

SAMPLES = manifest_samples("snp/")

# The step that rejects each negative sample. tcb-byte384 changes REPORTED_TCB: the VEK binding
# (step 7) runs before the report signature (step 9), so the TCB mismatch is what is reported.
EXPECTED_CODE = {
    "snp-neg-trustee-report-byte42": "sevsnp.report.signature",
    "snp-neg-virtee-report-byte21": "sevsnp.report.signature",
    "snp-neg-trustee-report-tcb-byte384": "sevsnp.vek.tcb_mismatch",
}
SYNTHETIC_HWID = "snp-milan-synthetic-vcek-hwid-encodings-trustee"
TURIN_CHAIN = "snp-turin-vcek-chain-virtee-sev"


def _certs_in(path: Path) -> list[AmdCertificate]:
    return load_certificates(path.read_bytes(), source=str(path))


def _report(path: Path) -> AttestationReport:
    data = path.read_bytes()
    if path.suffix == ".hex":
        data = bytes.fromhex(data.decode().strip())
    return AttestationReport.from_bytes(data)


def _collateral(evidence: Path, sample: dict[str, Any]) -> AmdCertificates:
    """The sample's own certificates, completed from roots/amd_<product>_cert_chain_vcek.pem."""
    base = evidence / sample["dir"]
    certs: dict[str, AmdCertificate] = {}
    for role, name in sample["files"].items():
        if role in ("vcek", "ask", "ark") or "chain" in role:
            for cert in _certs_in(base / name):
                cn = cert.common_name or ""
                key = ("ark" if cn.startswith("ARK-") else "vek" if cn in ("SEV-VCEK", "SEV-VLEK")
                       else "asvk" if cn.startswith("SEV-VLEK-") else "ask")
                certs[key] = cert
    vek = certs["vek"]
    info = parse_vek_extensions(vek)
    vlek = info.kind is SigningKey.VLEK
    chain = f"amd_{info.product.value.lower()}_cert_chain_{'vlek' if vlek else 'vcek'}.pem"
    ask, ark = _certs_in(evidence / "roots" / chain)
    return AmdCertificates(ark=certs.get("ark"), ask=certs.get("asvk" if vlek else "ask"),
                           vek=vek).merged(AmdCertificates(ark=ark, ask=ask))


def _ids(samples: list[dict[str, Any]]) -> list[str]:
    return [s["id"] for s in samples]


# The chain-only Turin sample and the parse-only hwID fixtures have their own tests below.
REPORT_SAMPLES = [s for s in SAMPLES if s["id"] not in (SYNTHETIC_HWID, TURIN_CHAIN)]


@pytest.mark.parametrize("sample", REPORT_SAMPLES, ids=_ids(REPORT_SAMPLES))
def test_snp_sample_gets_the_manifest_verdict(evidence_dir: Path, sample: dict[str, Any]) -> None:
    certs = _collateral(evidence_dir, sample)
    report = _report(evidence_dir / sample["dir"] / sample["files"]["report"])
    now = sample_time(sample)
    if sample["expected"].startswith("valid"):
        v = verify_report(report, certs, anchors=TrustAnchors.amd(), now=now)
        assert isinstance(v, VerifiedReport)
        assert v.ark_fingerprint == AMD_ARK_SHA256[v.product]
        assert v.vek.tcb == report.reported_tcb
    else:
        assert sample["expected"].startswith("invalid")
        with pytest.raises(VerificationError) as info:
            verify_report(report, certs, anchors=TrustAnchors.amd(), now=now)
        assert info.value.code == EXPECTED_CODE.get(sample["id"], info.value.code)


def test_negative_samples_have_expected_codes_listed() -> None:
    listed = {s["id"] for s in SAMPLES if s["expected"].startswith("invalid")} - {SYNTHETIC_HWID}
    assert listed <= set(EXPECTED_CODE)


def _sample(sample_id: str) -> dict[str, Any]:
    found = [s for s in SAMPLES if s["id"] == sample_id]
    if not found:
        pytest.skip(f"{sample_id} not in the manifest")
    return found[0]


def test_turin_chain_verifies_at_its_time(evidence_dir: Path) -> None:
    sample = _sample(TURIN_CHAIN)
    base = evidence_dir / sample["dir"]
    (vek,) = _certs_in(base / sample["files"]["vcek"])
    ask, ark = _certs_in(base / sample["files"]["ask_ark_chain"])
    findings = verify_chain(AmdCertificates(ark=ark, ask=ask, vek=vek),
                            anchors=TrustAnchors.amd(), now=sample_time(sample),
                            kind=SigningKey.VCEK)
    assert all(f.passed for f in findings)
    info = parse_vek_extensions(vek)
    assert info.product is Product.TURIN and info.struct_version == 1
    assert info.tcb.fmc is not None and info.hwid is not None and len(info.hwid) == 8


def test_synthetic_hwid_encodings_parse_and_fail_verification(evidence_dir: Path) -> None:
    sample = _sample(SYNTHETIC_HWID)
    base = evidence_dir / sample["dir"]
    certs = _certs_in(base / sample["files"]["ask_ark_asvk_chain"])
    ask, ark = certs[0], certs[1]
    report = _report(base / sample["files"]["report"])
    for role in ("vcek_legacy_hwid", "vcek_octetstring_hwid"):
        (vek,) = _certs_in(base / sample["files"][role])
        assert parse_vek_extensions(vek).hwid == bytes(range(64))
        with pytest.raises(VerificationError) as info:
            verify_report(report, AmdCertificates(ark=ark, ask=ask, vek=vek),
                          anchors=TrustAnchors.amd(), now=sample_time(sample))
        assert info.value.code == "sevsnp.chain.vek_signature"


def test_amd_pins_match_the_manifest_and_the_root_files(evidence_dir: Path) -> None:
    roots = {r["id"]: r for r in load_manifest()["roots"]}
    for product, pin in AMD_ARK_SHA256.items():
        entry = roots[f"amd-{product.value.lower()}-ark"]
        assert entry["sha256_der"] == pin
        der = (evidence_dir / "roots" / entry["files"]["der"]).read_bytes()
        assert fingerprint(der) == pin
        (ark,) = load_certificates(der)
        assert TrustAnchors.amd().product_of(ark) is product
        assert ark.common_name == f"ARK-{product.value}"


def test_real_certificates_load_and_verify_without_warnings(evidence_dir: Path) -> None:
    sample = _sample("snp-milan-v2-go-sev-guest")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # cryptography's serial-0 deprecation path must not run
        for path in sorted((evidence_dir / "roots").glob("amd_*")):
            for cert in _certs_in(path):
                cert.public_key()
        for path in sorted((evidence_dir / "snp").glob("*/*")):
            if path.suffix in (".der", ".pem"):
                for cert in _certs_in(path):
                    cert.public_key()
        certs = _collateral(evidence_dir, sample)
        assert certs.vek is not None and certs.vek.serial_number == 0  # AMD's VCEK serial
        report = _report(evidence_dir / sample["dir"] / sample["files"]["report"])
        verify_report(report, certs, anchors=TrustAnchors.amd(), now=sample_time(sample))


def test_real_asvk_chains_to_the_ark(evidence_dir: Path) -> None:
    """No real VLEK is in the corpus; the ASVK half of the VLEK chain is checked directly."""
    from veritee.trust.sevsnp import _verify_pss  # the exact primitive the chain step uses

    for product in Product:
        root = evidence_dir / "roots"
        asvk, ark = _certs_in(root / f"amd_{product.value.lower()}_cert_chain_vlek.pem")
        assert asvk.common_name == f"SEV-VLEK-{product.value}" and asvk.issuer == ark.subject
        assert asvk.pss is not None and asvk.pss.is_amd
        _verify_pss(ark.public_key(), asvk.signature, asvk.tbs_certificate_bytes,
                    "sevsnp.chain.ask_signature", "ASVK.signature")
